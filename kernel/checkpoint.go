package kernel

import (
	"bytes"
	"fmt"
	"math"
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
	p := k.first
	if n := len(k.procs); n != 1 || len(p.tasks) != 1 || p.exited {
		return nil, fmt.Errorf("cannot checkpoint: the guest has %d processes and %d threads; checkpoints of process trees and threads are not implemented yet", n, len(k.sched.all))
	}
	t := p.tasks[0]
	as := p.as
	st := &State{
		Program:  k.progRef,
		Root:     k.cfg.Root,
		MemSize:  k.m.MemSize(),
		Syscalls: k.syscalls,
		Time:     k.timeState(),
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
		Umask: &p.umask, Dumpable: &p.dumpable, Groups: p.groups,
		LockFuture: p.lockFuture, LockOnFault: p.lockOnFault,
	}
	for _, fd := range ps.FDs {
		if fd.File.Kind == vfs.KindPipe {
			return nil, fmt.Errorf("cannot checkpoint: descriptor %d is a pipe, and pipes are not saved yet", fd.FD)
		}
		if fd.File.Kind == KindEpoll || fd.File.Kind == KindEventFD {
			return nil, fmt.Errorf("cannot checkpoint: descriptor %d is an %s, and %ss are not saved yet", fd.FD, fd.File.Kind, fd.File.Kind)
		}
	}
	for sig := 1; sig <= numSignals; sig++ {
		if a := p.actions[sig]; a != (sigAction{}) {
			ps.Actions = append(ps.Actions, SigAction{Signal: sig, Handler: a.Handler, Flags: a.Flags, Restorer: a.Restorer, Mask: a.Mask})
		}
	}
	snap := &Snapshot{State: st, Mem: k.m.Mem(), Started: started}
	ms := memorySnapshot{k: k, st: st, snap: snap, objrefs: map[string]int{}, stored: map[uint64]uint64{}}
	for _, v := range as.VMAs() {
		vs, err := ms.vma(as, &v)
		if err != nil {
			return nil, err
		}
		ps.VMAs = append(ps.VMAs, vs)
	}
	st.Process = ps
	// tmpfs files' pages go to the page data too, each once: no VMA
	// stores them (a shared mapping of one stores nothing, a private one
	// only its own copies).
	st.Tmpfs = k.fs.TmpfsState(func(frame uint64) uint64 {
		snap.Pages = append(snap.Pages, frame)
		return uint64(len(snap.Pages) - 1)
	})
	st.PageCount = uint64(len(snap.Pages))

	fpu, err := k.vcpu.ContextFPU(&t.ctx)
	if err != nil {
		return nil, err
	}
	regs := t.ctx.Regs
	if rax != nil {
		regs.RAX = *rax
	}
	st.Tasks = []TaskState{{
		TID: t.tid, Regs: regs, FSBase: t.ctx.FSBase, GSBase: t.ctx.GSBase, FPU: fpu,
		ClearTID: t.clearTID, Robust: t.robust, RobustSz: t.robustSz,
		Sigmask: t.sigmask, Pending: t.pending, PendingCodes: pendingCodes(t),
		AltSP: t.altstack.SP, AltFlags: t.altstack.Flags, AltSize: t.altstack.Size,
		Comm: &t.comm, Pdeathsig: t.pdeathsig, Nice: t.nice,
	}}
	k.saveWait(t, &st.Tasks[0])
	for _, d := range k.deviceStates {
		data, err := d.Save()
		if err != nil {
			return nil, fmt.Errorf("saving %s state: %w", d.Name, err)
		}
		st.Devices = append(st.Devices, DeviceRecord{Name: d.Name, Data: data})
	}
	return snap, nil
}

// memorySnapshot turns VMAs into VMAStates, collecting the objects they
// map and the frames whose contents the image stores.
type memorySnapshot struct {
	k       *Kernel
	st      *State
	snap    *Snapshot
	objrefs map[string]int    // file path -> objref
	stored  map[uint64]uint64 // frame -> page index: shared frames are stored once
}

// object returns the objref of the file v maps, recording it once.
func (ms *memorySnapshot) object(v *guestmm.VMA) (int, error) {
	key := v.Name
	tb, isTmpfs := v.Backing.(vfs.TmpfsBacking)
	if isTmpfs {
		// A tmpfs file is its inode: it may have been renamed, unlinked
		// or have several names.
		mount, ino := tb.Inode()
		key = fmt.Sprintf("tmpfs\x00%s\x00%d", mount, ino)
	}
	if ref, ok := ms.objrefs[key]; ok {
		return ref, nil
	}
	o := Object{Ref: len(ms.st.Objects) + 1, Kind: "file", Path: v.Name}
	switch b := v.Backing.(type) {
	case *programBacking:
		o.Kind = "program"
	case vfs.TmpfsBacking:
		o.Kind = "tmpfs"
		o.Mount, o.Ino = b.Inode()
	case vfs.Identifiable:
		id, err := b.Identity()
		if err != nil {
			return 0, fmt.Errorf("cannot checkpoint: %s: %w", v.Name, err)
		}
		o.Identity = &id
	}
	ms.st.Objects = append(ms.st.Objects, o)
	ms.objrefs[key] = o.Ref
	return o.Ref, nil
}

// vma describes v and the pages of it that its type stores.
func (ms *memorySnapshot) vma(as *guestmm.AddressSpace, v *guestmm.VMA) (VMAState, error) {
	vs := VMAState{
		Type: vmaType(v), Start: v.Start, End: v.End,
		Prot: uint32(v.Prot), MaxProt: uint32(v.MaxProt),
		Shared: v.Shared, Anonymous: v.Anonymous, GrowsDown: v.GrowsDown,
		DontDump: v.DontDump, NoReserve: v.NoReserve, Locked: v.Locked,
		Kind: vmaKindName(v.Kind), Name: v.Name, Offset: v.Offset,
	}
	var err error
	if v.Kind == guestmm.KindFile {
		if vs.Objref, err = ms.object(v); err != nil {
			return vs, err
		}
	}
	switch vs.Type {
	case VMADevice:
		ty, err := ms.k.vmaTypeOf(v.Backing)
		if err != nil {
			return vs, fmt.Errorf("cannot checkpoint: %w", err)
		}
		vs.Device = ty.Name
		if ty.Save != nil {
			if vs.DeviceParams, err = ty.Save(v.Backing); err != nil {
				return vs, fmt.Errorf("cannot checkpoint: device %s: %w", v.Name, err)
			}
		}
	case VMAScratch, VMAFileShared:
	default:
		ms.pages(as, &vs)
	}
	return vs, nil
}

// pages records the present pages of vs that its type stores: all-zero
// pages are only counted, FILE VMAs store just the pages copied on write.
func (ms *memorySnapshot) pages(as *guestmm.AddressSpace, vs *VMAState) {
	mem := ms.snap.Mem
	for va, pte := range as.PresentPages(vs.Start, vs.End) {
		if pte.Has(guestmm.Special) || vs.Type == VMAFile && !pte.Has(guestmm.Copied) {
			continue
		}
		pa := pte.Addr()
		if bytes.Equal(mem[pa:pa+guestmm.PageSize], zeroPage[:]) {
			vs.ZeroPages++
			continue
		}
		idx, seen := ms.stored[pa]
		if !seen {
			idx = uint64(len(ms.snap.Pages))
			ms.stored[pa] = idx
			ms.snap.Pages = append(ms.snap.Pages, pa)
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

func pendingCodes(t *Task) map[int]int {
	var m map[int]int
	for sig := 1; sig <= numSignals; sig++ {
		if t.pending&sigBit(sig) != 0 { // a POSIX timer's: Timer.Queued
			if m == nil {
				m = map[int]int{}
			}
			m[sig] = t.pendingCode[sig]
		}
	}
	return m
}

// saveWait records a task that waits in a system call (or was woken and
// has not made the call again yet): the restored task makes the call
// again, with the time its wait had left.
func (k *Kernel) saveWait(t *Task, ts *TaskState) {
	if t.state != taskBlocked && !t.resume {
		return
	}
	ts.Blocked, ts.WaitLeft = true, -1
	if t.wait != nil && t.wait.deadline != math.MaxInt64 {
		ts.WaitLeft = k.timeLeft(t.wait.deadline)
	}
	if t.waitMask {
		ts.SavedMask = &t.savedMask
	}
}
