package kernel

import (
	"bytes"
	"fmt"
	"time"

	"github.com/emuckpt/emuckpt/guestmm"
	"github.com/emuckpt/emuckpt/kernel/vfs"
)

// vmaTyper is implemented by device mapping backings that register their
// own VMA type with the checkpoint (devices/hpet: "hpet", devices/bsr:
// "bsr"). Any other device mapping gets the generic "vanilla" type.
type vmaTyper interface{ VMAType() string }

// VanillaDevice is the generic mapping-only VMA type.
const VanillaDevice = "vanilla"

var zeroPage [guestmm.PageSize]byte

// Snapshot captures the process at the current exit boundary. The vCPU
// must be stopped in Run's loop (between two vCPU runs), so the user state
// in the vCPU is complete. rax overrides the saved RAX when non-nil (the
// value the restored guest sees from emuckpt_checkpoint).
func (k *Kernel) Snapshot(rax *uint64) (*Snapshot, error) {
	started := time.Now()
	p := k.proc
	t := p.tasks[0]
	as := p.as
	st := &State{
		Program:  k.progRef,
		MemSize:  k.m.MemSize(),
		Syscalls: k.syscalls,
	}
	if vc, ok := k.clock.(*VirtualClock); ok {
		st.Clock.Virtual = true
		st.Clock.NS = vc.Elapsed()
		if sr, ok := k.rand.(*seededRand); ok {
			st.Clock.Rand = sr.s
		}
	}
	brkStart, brk := as.BrkRange()
	ps := ProcessState{
		PID: p.pid, PPID: p.ppid, Cwd: p.cwd, Exe: p.exe,
		BrkStart: brkStart, Brk: brk,
		FDLimit: p.fds.Limit(), FDs: p.fds.Snapshot(),
	}
	for _, fd := range ps.FDs {
		if fd.File.Kind == vfs.KindPipe {
			return nil, fmt.Errorf("cannot checkpoint: descriptor %d is a pipe, and pipes are not saved yet", fd.FD)
		}
	}
	for sig := 1; sig <= numSignals; sig++ {
		if a := p.actions[sig]; a != (sigAction{}) {
			ps.Actions = append(ps.Actions, SigAction{Signal: sig, Handler: a.Handler, Flags: a.Flags, Restorer: a.Restorer, Mask: a.Mask})
		}
	}
	snap := &Snapshot{State: st, Mem: k.m.Mem(), Started: started}
	mem := k.m.Mem()
	objrefs := map[string]int{}
	objref := func(v *guestmm.VMA) (int, error) {
		if ref, ok := objrefs[v.Name]; ok {
			return ref, nil
		}
		o := Object{Ref: len(st.Objects) + 1, Kind: "file", Path: v.Name}
		switch b := v.Backing.(type) {
		case *programBacking:
			o.Kind = "program"
		case vfs.Identifiable:
			id, err := b.Identity()
			if err != nil {
				return 0, fmt.Errorf("cannot checkpoint: %s: %w", v.Name, err)
			}
			o.Identity = &id
		}
		st.Objects = append(st.Objects, o)
		objrefs[v.Name] = o.Ref
		return o.Ref, nil
	}
	stored := map[uint64]uint64{} // frame -> page index: shared frames are stored once
	for _, v := range as.VMAs() {
		vs := VMAState{
			Type: vmaType(&v), Start: v.Start, End: v.End,
			Prot: uint32(v.Prot), MaxProt: uint32(v.MaxProt),
			Shared: v.Shared, Anonymous: v.Anonymous, GrowsDown: v.GrowsDown,
			DontDump: v.DontDump, NoReserve: v.NoReserve,
			Kind: vmaKindName(v.Kind), Name: v.Name, Offset: v.Offset,
		}
		if v.Kind == guestmm.KindFile {
			var err error
			if vs.Objref, err = objref(&v); err != nil {
				return nil, err
			}
		}
		switch vs.Type {
		case VMADevice:
			ty, err := k.vmaTypeOf(v.Backing)
			if err != nil {
				return nil, fmt.Errorf("cannot checkpoint: %w", err)
			}
			vs.Device = ty.Name
			if ty.Save != nil {
				if vs.DeviceParams, err = ty.Save(v.Backing); err != nil {
					return nil, fmt.Errorf("cannot checkpoint: device %s: %w", v.Name, err)
				}
			}
		case VMAScratch, VMAFileShared:
		default:
			for va, pte := range as.PresentPages(v.Start, v.End) {
				if pte.Has(guestmm.Special) || vs.Type == VMAFile && !pte.Has(guestmm.Copied) {
					continue
				}
				pa := pte.Addr()
				if bytes.Equal(mem[pa:pa+guestmm.PageSize], zeroPage[:]) {
					vs.ZeroPages++
					continue
				}
				idx, seen := stored[pa]
				if !seen {
					idx = uint64(len(snap.Pages))
					stored[pa] = idx
					snap.Pages = append(snap.Pages, pa)
				}
				copied := pte.Has(guestmm.Copied)
				if n := len(vs.Pages); n > 0 {
					last := &vs.Pages[n-1]
					if last.VA+last.Count*guestmm.PageSize == va && last.Index+last.Count == idx && last.Copied == copied {
						last.Count++
						continue
					}
				}
				vs.Pages = append(vs.Pages, PageRun{VA: va, Count: 1, Index: idx, Copied: copied})
			}
		}
		ps.VMAs = append(ps.VMAs, vs)
	}
	st.Process = ps
	st.PageCount = uint64(len(snap.Pages))

	fpu, err := k.vcpu.FPUState()
	if err != nil {
		return nil, err
	}
	regs := *k.vcpu.Regs()
	if rax != nil {
		regs.RAX = *rax
	}
	st.Tasks = []TaskState{{
		TID: t.tid, Regs: regs, FSBase: k.vcpu.FSBase(), GSBase: k.vcpu.GSBase(), FPU: fpu,
		ClearTID: t.clearTID, Robust: t.robust, RobustSz: t.robustSz,
		Sigmask: t.sigmask, Pending: t.pending, PendingCodes: pendingCodes(t),
		AltSP: t.altstack.SP, AltFlags: t.altstack.Flags, AltSize: t.altstack.Size,
	}}
	for _, d := range k.deviceStates {
		data, err := d.Save()
		if err != nil {
			return nil, fmt.Errorf("saving %s state: %w", d.Name, err)
		}
		st.Devices = append(st.Devices, DeviceRecord{Name: d.Name, Data: data})
	}
	return snap, nil
}

func pendingCodes(t *Task) map[int]int {
	var m map[int]int
	for sig := 1; sig <= numSignals; sig++ {
		if t.pending&sigBit(sig) != 0 {
			if m == nil {
				m = map[int]int{}
			}
			m[sig] = t.pendingCode[sig]
		}
	}
	return m
}
