package kernel

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strings"
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

// Snapshot captures the process tree at the current exit boundary: every
// task is stopped between two exits (the one on the vCPU at the exit being
// handled, the others in the run queue or blocked in a call). rax
// overrides the saved RAX of the task on the vCPU when non-nil (the value
// the restored guest sees from emuckpt_checkpoint).
func (k *Kernel) Snapshot(rax *uint64) (*Snapshot, error) {
	return k.snapshot(rax, false)
}

// snapshot is Snapshot; with deferPages the page lists are left to
// finish (Snapshot.pages, see finishPages), for a checkpoint whose pages
// are written while the guest runs on (bgsave.go).
func (k *Kernel) snapshot(rax *uint64, deferPages bool) (*Snapshot, error) {
	started := time.Now()
	st := &State{
		Program:  k.progRef,
		Root:     k.cfg.Root,
		MemSize:  k.m.MemSize(),
		Syscalls: k.syscalls,
		Time:     k.timeState(),
		NextPID:  k.sched.nextPID,
	}
	if vc, ok := k.clock.(*VirtualClock); ok {
		st.Clock.Virtual = true
		st.Clock.NS = vc.Elapsed()
		if sr, ok := k.rand.(*seededRand); ok {
			st.Clock.Rand = sr.s
		}
	}
	snap := &Snapshot{State: st, Mem: k.m.Mem(), Started: started}
	ms := memorySnapshot{k: k, st: st, snap: snap, objrefs: map[string]int{}, stored: map[uint64]uint64{}}
	if b := k.ckpt.buffers; b != nil {
		// Room made before the guest stopped.
		ms.exts, ms.refs = b.exts[:0], b.refs[:0]
	}
	ms.delta = k.newDelta(snap)
	shared := vfs.NewShared()
	memOwner := map[*guestmm.AddressSpace]int{}
	filesOwner := map[*vfs.FDTable]int{}
	for _, p := range k.processOrder() {
		ps, err := k.saveProcess(p, &ms, shared, memOwner, filesOwner, rax)
		if err != nil {
			return nil, err
		}
		st.Processes = append(st.Processes, ps)
	}
	st.Pipes = shared.Pipes
	// tmpfs files' pages are recorded for finishPages, which numbers
	// them after the VMAs' pages.
	st.Tmpfs = k.fs.TmpfsState(func(pa uint64) uint64 {
		ms.tmpfs = append(ms.tmpfs, pa)
		return uint64(len(ms.tmpfs) - 1)
	})
	for _, d := range k.deviceStates {
		data, err := d.Save()
		if err != nil {
			return nil, fmt.Errorf("saving %s state: %w", d.Name, err)
		}
		st.Devices = append(st.Devices, DeviceRecord{Name: d.Name, Data: data})
	}
	if deferPages {
		snap.pages = &ms
	} else if err := ms.finishPages(ms.checkZero); err != nil {
		return nil, err
	}
	return snap, nil
}

// processOrder is the processes of an image: the first process, then the
// others by pid (a child's pid is always above its parent's).
func (k *Kernel) processOrder() []*Process {
	ps := []*Process{k.first}
	for _, p := range k.procs {
		if p != k.first {
			ps = append(ps, p)
		}
	}
	slices.SortFunc(ps[1:], func(a, b *Process) int { return a.pid - b.pid })
	return ps
}

// savableKinds are the descriptor kinds an image can hold.
var savableKinds = map[vfs.FileKind]bool{
	vfs.KindStdio: true, vfs.KindRegular: true, vfs.KindDirectory: true, vfs.KindDevice: true,
	vfs.KindGenerated: true, vfs.KindPath: true, vfs.KindTmpfs: true, vfs.KindPipe: true, KindTimerFD: true,
}

// article is "a" or "an" for a word.
func article(w string) string {
	if w != "" && strings.ContainsRune("aeiou", rune(w[0])) {
		return "an"
	}
	return "a"
}

// saveProcess describes one process; what it shares with an earlier one
// (memOwner, filesOwner) is named, not saved again.
func (k *Kernel) saveProcess(p *Process, ms *memorySnapshot, shared *vfs.Shared, memOwner map[*guestmm.AddressSpace]int, filesOwner map[*vfs.FDTable]int, rax *uint64) (ProcessState, error) {
	ps := ProcessState{
		PID: p.pid, PPID: p.ppid(), PGID: p.pgid, SID: p.sid, ExitSignal: p.exitSignal,
		Execed: p.execed, Program: p.prog != nil, Args: p.args, Cwd: p.cwd, Exe: p.exe,
		Umask: &p.umask, Dumpable: &p.dumpable, Groups: p.groups,
		LockFuture: p.lockFuture, LockOnFault: p.lockOnFault,
	}
	if p.parent != nil {
		ps.Parent = p.parent.pid
	}
	for sig := 1; sig <= numSignals; sig++ {
		if a := p.actions[sig]; a != (sigAction{}) {
			ps.Actions = append(ps.Actions, SigAction{Signal: sig, Handler: a.Handler, Flags: a.Flags, Restorer: a.Restorer, Mask: a.Mask})
		}
	}
	if p.exited {
		ps.Zombie, ps.Status = true, &p.status
		return ps, nil
	}
	if owner, ok := memOwner[p.as]; ok {
		ps.SharesMemoryWith = owner
	} else {
		memOwner[p.as] = p.pid
		ps.BrkStart, ps.Brk = p.as.BrkRange()
		for _, v := range p.as.VMAs() {
			vs, err := ms.vma(p.as, &v, len(ps.VMAs))
			if err != nil {
				return ps, err
			}
			ps.VMAs = append(ps.VMAs, vs)
		}
	}
	if owner, ok := filesOwner[p.fds]; ok {
		ps.SharesFilesWith = owner
	} else {
		filesOwner[p.fds] = p.pid
		ps.FDLimit, ps.FDs = p.fds.Limit(), p.fds.SnapshotShared(shared)
		for _, fd := range ps.FDs {
			if !savableKinds[fd.File.Kind] {
				return ps, fmt.Errorf("cannot checkpoint: descriptor %d of process %d is %s %s, which images do not hold yet", fd.FD, p.pid, article(string(fd.File.Kind)), fd.File.Kind)
			}
		}
	}
	if p.vforkParent != nil {
		ps.VforkParent = p.vforkParent.tid
	}
	for _, t := range p.tasks {
		ts, err := k.saveTask(t)
		if err != nil {
			return ps, err
		}
		switch {
		case rax != nil && t == k.sched.cur:
			ts.Regs.RAX = *rax
		case t.inCall:
			ts.Blocked, ts.WaitLeft = true, -1 // the call is made again
		}
		ps.Tasks = append(ps.Tasks, ts)
	}
	return ps, nil
}

// taskFPU is t's FPU state: its context's, or the vCPU's that holds it.
func (k *Kernel) taskFPU(t *Task) ([]byte, error) {
	if t.last != nil {
		return t.last.vcpu.ContextFPU(&t.ctx)
	}
	if t.ctx.FPU == nil {
		return k.cpus[0].vcpu.InitialFPU(), nil
	}
	return t.ctx.FPU, nil
}

// saveTask describes one task.
func (k *Kernel) saveTask(t *Task) (TaskState, error) {
	fpu, err := k.taskFPU(t)
	if err != nil {
		return TaskState{}, err
	}
	ts := TaskState{
		TID: t.tid, Regs: t.ctx.Regs, FSBase: t.ctx.FSBase, GSBase: t.ctx.GSBase, FPU: fpu,
		ClearTID: t.clearTID, Robust: t.robust, RobustSz: t.robustSz,
		Sigmask: t.sigmask, Pending: t.pending, PendingCodes: pendingCodes(t),
		AltSP: t.altstack.SP, AltFlags: t.altstack.Flags, AltSize: t.altstack.Size,
		Comm: &t.comm, Pdeathsig: t.pdeathsig, Nice: t.nice, Affinity: t.affinity,
	}
	k.saveWait(t, &ts)
	return ts, nil
}

// memorySnapshot turns VMAs into VMAStates, collecting the objects they
// map and the frames whose contents the image stores.
//
// The page lists are made in two steps. With every task stopped, pages
// walks the page tables and records the present pages each VMA stores as
// extents (runs of pages consecutive in virtual and physical address; a
// 2 MiB page is one), with the frames' reference counts; TmpfsState's
// frames are recorded too. finishPages then checks those pages for zeros
// and numbers the others, which fills the VMAs' Pages and ZeroPages, the
// tmpfs pages' indexes and PageCount. A stop-mode checkpoint finishes at
// once; one written in the background (bgsave.go) after the guest runs
// on again, from the page data as it was (the guard's), so the image is
// the same.
type memorySnapshot struct {
	k       *Kernel
	st      *State
	snap    *Snapshot
	objrefs map[string]int    // file path -> objref
	stored  map[uint64]uint64 // frame -> page index: shared frames are stored once
	delta   *deltaState       // incremental checkpoints (incremental.go); nil: none
	// cands is finishPages' buffer, kept from one VMA to the next.
	cands []pageCand
	// pend are the VMAs whose pages finishPages numbers, in order, exts
	// their extents, refs the reference count of each page of exts, in
	// order, and tmpfs the tmpfs files' frames, in TmpfsState's order.
	pend  []pendingVMA
	exts  []pageExtent
	refs  []int32
	tmpfs []uint64
}

// pendingVMA is a VMA of the State (Processes[proc].VMAs[vma]) whose
// present pages are exts[ext0:ext1].
type pendingVMA struct {
	proc, vma  int
	ext0, ext1 int
	shm        bool
}

// pageExtent is n present pages from va, in the frames from pa; refs
// [ref, ref+n) of memorySnapshot are their frames' reference counts.
type pageExtent struct {
	va, pa, n uint64
	ref       int
	copied    bool
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
func (ms *memorySnapshot) vma(as *guestmm.AddressSpace, v *guestmm.VMA, idx int) (VMAState, error) {
	vs := VMAState{
		Type: vmaType(v), Start: v.Start, End: v.End,
		Prot: uint32(v.Prot), MaxProt: uint32(v.MaxProt),
		Shared: v.Shared, Anonymous: v.Anonymous, GrowsDown: v.GrowsDown,
		DontDump: v.DontDump, NoReserve: v.NoReserve, Locked: v.Locked, NoHugePage: v.NoHugePage,
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
	case VMAScratch, VMAFileShared, VMAVVar:
	default:
		ms.pages(as, &vs, idx)
	}
	return vs, nil
}

// pageCand is a present page of a VMA that the VMA's type stores, before
// it is numbered.
type pageCand struct {
	va, pa uint64
	refs   int32
	copied bool
	zero   bool
}

// pages records the present pages of vs, VMA idx of the process being
// saved, that its type stores (FILE VMAs: just the pages copied on
// write), for finishPages.
func (ms *memorySnapshot) pages(as *guestmm.AddressSpace, vs *VMAState, idx int) {
	pv := pendingVMA{proc: len(ms.st.Processes), vma: idx, ext0: len(ms.exts), shm: vs.Type == VMAShm}
	file := vs.Type == VMAFile
	frames := ms.k.frames
	as.PresentLeaves(vs.Start, vs.End, func(va uint64, pte guestmm.PTE, n uint64) bool {
		if pte.Has(guestmm.Special) || file && !pte.Has(guestmm.Copied) {
			return true
		}
		pa, copied := pte.Addr(), pte.Has(guestmm.Copied)
		ref := len(ms.refs)
		ms.refs = slices.Grow(ms.refs, int(n))[:ref+int(n)]
		// Every task is stopped: the counts can be read without the
		// allocator's lock.
		frames.RefCountsStopped(pa, ms.refs[ref:])
		if k := len(ms.exts) - 1; k >= pv.ext0 {
			if e := &ms.exts[k]; e.copied == copied && e.va+e.n*guestmm.PageSize == va && e.pa+e.n*guestmm.PageSize == pa {
				e.n += n
				return true
			}
		}
		ms.exts = append(ms.exts, pageExtent{va: va, pa: pa, n: n, ref: ref, copied: copied})
		return true
	})
	pv.ext1 = len(ms.exts)
	if pv.ext1 > pv.ext0 {
		ms.pend = append(ms.pend, pv)
	}
}

// zeroChecker sets the zero flag of each page of cands, pages of a VMA
// whose zero check needs their bytes (knownZero did not tell): whether
// it is all zero, and then not stored but counted.
type zeroChecker func(cands []pageCand)

// checkZero is the zeroChecker of a snapshot with the guest stopped: the
// pages are read in guest RAM. A zero page comes back as a fresh zero
// page at its first touch. The check has a loop of its own: the first
// line of each page is a cache miss, and without other work between
// them the CPU has several in flight.
func (ms *memorySnapshot) checkZero(cands []pageCand) {
	for i := range cands {
		cands[i].zero = ms.isZero(cands[i].pa)
	}
}

// finishPages makes the page lists that pages recorded: all-zero pages
// (zero says which) are only counted, the others get their index in the
// page data, each frame once; then the tmpfs files' frames. It looks at
// nothing of the kernel's but through zero, so it can run after the
// guest goes on.
func (ms *memorySnapshot) finishPages(zero zeroChecker) error {
	if ms.snap.Pages == nil {
		ms.snap.Pages = make([]uint64, 0, len(ms.refs)+len(ms.tmpfs))
	}
	for _, pv := range ms.pend {
		vs := &ms.st.Processes[pv.proc].VMAs[pv.vma]
		vs.Pages, vs.ZeroPages = nil, 0
		// The pages whose zero check needs their bytes go to zero in
		// batches; those knownZero tells about (most pages of a delta)
		// are numbered at once, in the same order.
		cands := ms.cands[:0]
		flush := func() {
			zero(cands)
			for i := range cands {
				ms.number(vs, &cands[i])
			}
			cands = cands[:0]
		}
		for _, e := range ms.exts[pv.ext0:pv.ext1] {
			for j := range e.n {
				c := pageCand{va: e.va + j*guestmm.PageSize, pa: e.pa + j*guestmm.PageSize, refs: ms.refs[e.ref+int(j)], copied: e.copied}
				if z, ok := ms.knownZero(c.pa, c.refs, pv.shm); ok {
					flush()
					c.zero = z
					ms.number(vs, &c)
					continue
				}
				cands = append(cands, c)
			}
		}
		flush()
		ms.cands = cands
	}
	// tmpfs files' pages go to the page data too, each once: no VMA
	// stores them (a shared mapping of one stores nothing, a private one
	// only its own copies).
	j := 0
	for m := range ms.st.Tmpfs {
		for i := range ms.st.Tmpfs[m].Inodes {
			for p := range ms.st.Tmpfs[m].Inodes[i].Pages {
				if j >= len(ms.tmpfs) {
					return fmt.Errorf("cannot checkpoint: more tmpfs pages than recorded")
				}
				ms.st.Tmpfs[m].Inodes[i].Pages[p].Page = ms.addPage(ms.tmpfs[j])
				j++
			}
		}
	}
	if j != len(ms.tmpfs) {
		return fmt.Errorf("cannot checkpoint: %d tmpfs pages recorded, %d in the state", len(ms.tmpfs), j)
	}
	ms.st.PageCount = uint64(len(ms.snap.Pages))
	return nil
}

// number gives page c of vs, the next one, its index in the page data,
// in a run in vs.Pages, unless it is zero: then it is counted in
// vs.ZeroPages.
func (ms *memorySnapshot) number(vs *VMAState, c *pageCand) {
	if c.zero {
		vs.ZeroPages++
		return
	}
	// Only a frame with other references can be met again (and only
	// those are looked up: a map lookup per page is a good part of the
	// cost of a snapshot of a large guest).
	idx, seen := uint64(0), false
	if c.refs > 1 {
		idx, seen = ms.stored[c.pa]
	}
	if !seen {
		idx = ms.addPage(c.pa)
		if c.refs > 1 {
			ms.stored[c.pa] = idx
		}
	}
	if n := len(vs.Pages); n > 0 {
		last := &vs.Pages[n-1]
		if last.VA+last.Count*guestmm.PageSize == c.va && last.Index+last.Count == idx && last.Copied == c.copied {
			last.Count++
			return
		}
	}
	vs.Pages = append(vs.Pages, PageRun{VA: c.va, Count: 1, Index: idx, Copied: c.copied})
}

// isZeroPage says whether page is all zero bytes.
func isZeroPage(page []byte) bool {
	return binary.LittleEndian.Uint64(page) == 0 && bytes.Equal(page, zeroPage[:])
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
	if t.resume {
		// Woken, with its call not made again yet: a call whose result
		// is settled (a futex wake, vfork's child gone) returns it.
		switch {
		case t.futex != nil && t.futex.woken:
			ts.Regs.RAX = 0
			return
		case t.wait != nil && t.wait.finish != nil:
			ret, e := t.wait.finish()
			if e != 0 {
				ret = uint64(-int64(e))
			}
			ts.Regs.RAX = ret
			return
		}
	}
	ts.Blocked, ts.WaitLeft = true, -1
	ts.VforkChild = t.vforkChild
	if t.wait != nil && t.wait.deadline != math.MaxInt64 {
		ts.WaitLeft = k.timeLeft(t.wait.deadline)
	}
	if t.waitMask {
		ts.SavedMask = &t.savedMask
	}
}
