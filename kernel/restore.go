package kernel

import (
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/emuckpt/emuckpt/guestmm"
	"github.com/emuckpt/emuckpt/kernel/vfs"
	"github.com/emuckpt/emuckpt/vmm"
	"golang.org/x/sys/unix"
)

// PageSource is where Restore takes the page data of an image from.
// Restore may go on reading it after it returned, while the guest runs
// (restorefill.go); a PageSource that is also an io.Closer is closed once
// all its pages are in guest RAM, or the kernel is closed.
type PageSource interface {
	// ReadPages copies len(dst)/PageSize pages, from page first on, into
	// dst. When it returns nil, dst must hold exactly bytes that were
	// checked against the image's checksums: restore runs the guest on
	// them and never reads those pages again, so an image changed or
	// deleted afterwards cannot affect them. The background fill calls
	// it from several goroutines at once, for different pages.
	ReadPages(dst []byte, first uint64) error
}

// PageBytes is page data already in memory and trusted (a snapshot taken
// by this process, tests).
type PageBytes []byte

// ReadPages copies pages from p.
func (p PageBytes) ReadPages(dst []byte, first uint64) error {
	if first > uint64(len(p))/guestmm.PageSize || uint64(len(dst)) > uint64(len(p))-first*guestmm.PageSize {
		return fmt.Errorf("%w: image has %d bytes of page data, need %d from page %d", ErrRestore, len(p), len(dst), first)
	}
	copy(dst, p[first*guestmm.PageSize:])
	return nil
}

// ErrRestore wraps errors that mean the image cannot be restored here
// (missing or different device, changed program or file).
var ErrRestore = errors.New("cannot restore")

// Restore builds a new machine from a checkpoint and prepares it to go on
// where the checkpoint was taken. cfg gives the program bytes (checked
// against the image), the root, the standard streams and the devices; its
// memory size and clock mode come from the image. On error nothing is left
// running.
func Restore(cfg Config, st *State, pages PageSource) (*Kernel, error) {
	if err := st.Validate(); err != nil {
		return nil, fmt.Errorf("%w: the image is inconsistent: %v", ErrRestore, err)
	}
	if !st.Program.Matches(cfg.Program) {
		return nil, fmt.Errorf("%w: program %s has changed since the checkpoint (sha256 %s expected)", ErrRestore, st.Program.Path, st.Program.SHA256)
	}
	cfg.Name = st.Program.Name
	cfg.MemSize = st.MemSize
	cfg.Deterministic = st.Clock.Virtual
	if cfg.Deterministic {
		cfg.CPUs = 1 // as the run it comes from
	}
	var clock Clock = HostClock{}
	var random io.Reader = hostRand{}
	if st.Clock.Virtual {
		vc := NewVirtualClock()
		vc.ns = st.Clock.NS
		clock = vc
		random = &seededRand{s: st.Clock.Rand}
	}
	k, err := newKernel(cfg, clock, random)
	if err != nil {
		return nil, err
	}
	k.trapTSC()
	if err := k.restore(st, pages); err != nil {
		k.Close()
		return nil, err
	}
	return k, nil
}

// restorePages puts the page data of an image in guest RAM (placePages:
// 2 MiB blocks for the pages of 2 MiB pages, a run of frames for the
// rest), and brings back the tmpfs mounts whose files use it. It
// returns where each page went.
func (k *Kernel) restorePages(st *State, pages PageSource) (*pagePlace, error) {
	if st.PageCount > uint64(k.frames.Capacity()) {
		return nil, fmt.Errorf("%w: image has %d pages, guest RAM only %d frames", ErrRestore, st.PageCount, k.frames.Capacity())
	}
	// A frame that several VMAs mapped (in one process or in several,
	// after fork) was stored once: it gets one reference per mapping,
	// before any is installed (a private frame with two references is
	// then copied on write, as it was).
	uses := make([]uint32, st.PageCount) // bounded by guest RAM, checked above
	for _, ps := range st.Processes {
		for i := range ps.VMAs {
			for _, r := range ps.VMAs[i].Pages { // inside the page data (Validate)
				for j := uint64(0); j < r.Count; j++ {
					uses[r.Index+j]++
				}
			}
		}
	}
	pl, err := k.placePages(st, uses)
	if err != nil {
		return nil, err
	}
	for i, u := range uses {
		for ; u > 1; u-- {
			k.frames.IncRef(pl.pa[i])
		}
	}
	if st.PageCount > 0 {
		if err := k.fillPages(pl, pages, hotPages(st)); err != nil {
			return nil, err
		}
	}
	// The tmpfs next, its files' pages taken from the page data as they
	// are (Validate made sure no VMA uses them): mappings of its files
	// are restored from it.
	err = k.restoreTmpfs(st.Tmpfs, func(page uint64) (uint64, error) {
		return pl.pa[page], nil // inside the page data (Validate)
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRestore, err)
	}
	return pl, nil
}

// restoreMemory builds the address space of one process of an image: its
// VMAs, with the stored pages mapped where pl put them (a 2 MiB block
// with one 2 MiB page), and the heap break.
func (k *Kernel) restoreMemory(st *State, ps *ProcessState, pl *pagePlace) (*guestmm.AddressSpace, error) {
	as, err := guestmm.NewAddressSpace(k.m.Mem(), k.frames, addressLayout)
	if err != nil {
		return nil, err
	}
	if err := vmm.MapKernel(as.PageTables()); err != nil {
		return nil, err
	}
	objects := map[int]*Object{}
	for i := range st.Objects {
		objects[st.Objects[i].Ref] = &st.Objects[i]
	}
	prog := &programBacking{data: k.cfg.Program, name: st.Program.Name}
	for i := range ps.VMAs {
		vs := &ps.VMAs[i]
		v, err := k.restoreVMA(vs, prog, objects)
		if err != nil {
			return nil, fmt.Errorf("%w: VMA %#x-%#x (%s %s): %v", ErrRestore, vs.Start, vs.End, vs.Type, vs.Name, err)
		}
		if err := as.RestoreVMA(v); err != nil {
			return nil, fmt.Errorf("%w: VMA %#x-%#x (%s): %v", ErrRestore, vs.Start, vs.End, vs.Type, err)
		}
		for _, r := range vs.Pages { // inside the VMA (Validate)
			for j := uint64(0); j < r.Count; j++ {
				va := r.VA + j*guestmm.PageSize
				var err error
				if b := pl.block[r.Index+j]; b < 0 {
					err = as.InstallPage(va, pl.pa[r.Index+j], r.Copied)
				} else if blk := &pl.huge[b]; !blk.installed {
					// The block's first page: all of it, at once.
					err, blk.installed = as.InstallHugePage(blk.va, blk.pa), true
					va = blk.va
				}
				if err != nil {
					return nil, fmt.Errorf("%w: page %#x: %v", ErrRestore, va, err)
				}
			}
		}
		// The program's clean pages are mapped at once, as exec maps
		// them (loadSegment): the guest's first instruction would
		// otherwise be a fault, and an exit waits for the whole
		// background fill (restorefill.go). Only an optimization.
		if v.Backing == prog && v.End-v.Start <= preloadMax && v.Prot != guestmm.ProtNone {
			_ = as.Madvise(v.Start, v.End-v.Start, guestmm.MadvPopulateRead)
		}
	}
	if err := as.RestoreBrk(ps.BrkStart, ps.Brk); err != nil {
		return nil, fmt.Errorf("%w: brk %#x-%#x: %v", ErrRestore, ps.BrkStart, ps.Brk, err)
	}
	return as, nil
}

func (k *Kernel) restore(st *State, pages PageSource) error {
	k.syscalls = st.Syscalls
	pl, err := k.restorePages(st, pages)
	if err != nil {
		return err
	}
	// Under preserve the device models get their registers back first, so
	// that device descriptors re-attach to what they held (the HPET timer
	// of a /dev/hpet descriptor); under fresh they are opened anew.
	if k.cfg.PreserveDevices {
		if err := k.restoreDeviceStates(st.Devices); err != nil {
			return err
		}
	}
	k.procs = map[int]*Process{}
	opened := vfs.NewRestored(st.Pipes)
	fdEntries := map[*vfs.FDTable][]vfs.FDEntry{}
	for i := range st.Processes { // parents first (Validate)
		ps := &st.Processes[i]
		p, err := k.restoreProcess(st, ps, pl, opened, fdEntries)
		if err != nil {
			return err
		}
		k.procs[p.pid] = p
		if i == 0 {
			k.first = p
		}
		if par := k.procs[ps.Parent]; ps.Parent != 0 && par != nil {
			p.parent = par
			par.children = append(par.children, p)
		}
	}
	k.fs.DropUnused()
	k.sched.nextPID = st.NextPID
	for i := range st.Processes {
		ps := &st.Processes[i]
		if ps.VforkParent != 0 {
			k.procs[ps.PID].vforkParent = k.taskByTID(ps.VforkParent)
		}
	}
	k.restoreTimeState(&st.Time, k.first.leader())
	for fds, entries := range fdEntries {
		if err := k.restoreTimerFDs(fds, entries); err != nil {
			return err
		}
		k.asyncUsed = k.asyncUsed || len(fds.AsyncFiles()) > 0
	}
	// Each task's FPU state goes through KVM once, which refuses invalid
	// state from a hostile image here rather than in the middle of a run.
	c := k.cpus[0]
	for _, t := range k.sched.all {
		if err := c.vcpu.StartContext(&t.ctx); err != nil {
			return fmt.Errorf("%w: FPU state of task %d: %v", ErrRestore, t.tid, err)
		}
		t.last = nil
	}
	if n := len(k.sched.all); n > 0 {
		k.sched.all[n-1].last = c
	}
	return k.trackFromImage(st, pl.pa)
}

// restoreProcess builds one process of an image, with its tasks in the run
// queue. opened holds what the tables of the tree share; fdEntries
// collects each table's entries for the timerfds, restored after the
// timers.
func (k *Kernel) restoreProcess(st *State, ps *ProcessState, pl *pagePlace, opened *vfs.Restored, fdEntries map[*vfs.FDTable][]vfs.FDEntry) (*Process, error) {
	p := &Process{pid: ps.PID, pgid: ps.PGID, sid: ps.SID, exitSignal: ps.ExitSignal,
		cwd: ps.Cwd, exe: ps.Exe, args: ps.Args, execed: ps.Execed,
		umask: 0o022, dumpable: 1, groups: ps.Groups, lockFuture: ps.LockFuture, lockOnFault: ps.LockOnFault}
	if ps.Program {
		p.prog = &programBacking{data: k.cfg.Program, name: st.Program.Name}
	}
	if ps.Umask != nil { // ranges checked by Validate
		p.umask = *ps.Umask
	}
	if ps.Dumpable != nil {
		p.dumpable = *ps.Dumpable
	}
	for _, a := range ps.Actions { // signal numbers checked by Validate
		p.actions[a.Signal] = sigAction{Handler: a.Handler, Flags: a.Flags, Restorer: a.Restorer, Mask: a.Mask}
	}
	if ps.Zombie {
		p.exited, p.status = true, *ps.Status
		return p, nil
	}
	if q := k.procs[ps.SharesMemoryWith]; q != nil { // an earlier, live process (Validate)
		p.as, p.asUsers = q.as, q.asUsers
		*p.asUsers++
	} else {
		as, err := k.restoreMemory(st, ps, pl)
		if err != nil {
			return nil, err
		}
		p.as, p.asUsers = as, newCount()
	}
	// The process and its tasks exist before its descriptors are
	// re-opened: a descriptor of /proc/PID/... looks them up.
	k.procs[p.pid] = p
	for i := range ps.Tasks {
		ts := &ps.Tasks[i]
		t := &Task{tid: ts.TID, proc: p, clearTID: ts.ClearTID, robust: ts.Robust, robustSz: ts.RobustSz,
			sigmask: ts.Sigmask &^ unblockable, pending: ts.Pending,
			altstack: stackT{SP: ts.AltSP, Flags: ts.AltFlags, Size: ts.AltSize},
			comm:     commOf(ps.Exe), pdeathsig: ts.Pdeathsig, nice: ts.Nice, affinity: ts.Affinity}
		if ts.Comm != nil {
			t.comm = *ts.Comm
		}
		for sig, code := range ts.PendingCodes {
			t.pendingCode[sig] = code
		}
		t.ctx = vmm.Context{Regs: ts.Regs, FSBase: ts.FSBase, GSBase: ts.GSBase, CR3: p.as.PageTables().Root(), FPU: ts.FPU}
		k.restoreWait(t, ts)
		p.tasks = append(p.tasks, t)
		k.sched.all = append(k.sched.all, t)
		if t.state == taskRunnable {
			k.sched.runq = append(k.sched.runq, t)
		}
	}
	if q := k.procs[ps.SharesFilesWith]; q != nil {
		p.fds, p.fdUsers = q.fds, q.fdUsers
		*p.fdUsers++
	} else {
		entries := ps.FDs
		if !k.cfg.PreserveDevices {
			entries = append([]vfs.FDEntry(nil), ps.FDs...)
			for i := range entries {
				if entries[i].File.Kind != KindTimerFD { // its Device names its timer
					entries[i].File.Device = nil
				}
			}
		}
		// timerfds are the kernel's, not vfs's: restored after the timers.
		var plain []vfs.FDEntry
		for _, e := range entries {
			if e.File.Kind != KindTimerFD {
				plain = append(plain, e)
			}
		}
		fds, err := k.fs.RestoreFDTableShared(plain, ps.FDLimit, opened)
		if err != nil {
			return nil, fmt.Errorf("%w: process %d: %v", ErrRestore, ps.PID, err)
		}
		p.fds, p.fdUsers = fds, newCount()
		fdEntries[fds] = entries
	}
	return p, nil
}

// restoreDeviceStates gives each device model its saved registers
// (--device-state=preserve).
func (k *Kernel) restoreDeviceStates(recs []DeviceRecord) error {
	for _, r := range recs {
		found := false
		for _, d := range k.deviceStates {
			if d.Name == r.Name {
				if err := d.Restore(r.Data); err != nil {
					return fmt.Errorf("%w: restoring the state of %s: %v", ErrRestore, r.Name, err)
				}
				found = true
			}
		}
		if !found {
			return fmt.Errorf("%w: the image holds state of device %s, which this machine lacks", ErrRestore, r.Name)
		}
	}
	return nil
}

// fillPages puts the pages of image data into their frames, where pl
// placed them (the run of small frames is in two parts when it crosses
// the MMIO hole). They are copied, not mapped from the image file: the
// guest runs on exactly the bytes whose checksums were checked. Where it
// can, the copy is made in the background while the guest runs, each
// page checked before the guest can see it (restorefill.go).
func (k *Kernel) fillPages(pl *pagePlace, src PageSource, hot []uint64) error {
	mem := k.m.Mem()
	var spans []physSpan
	for _, s := range k.frames.RunSegments(pl.smallBase, pl.small) {
		if s.Count > 0 {
			spans = append(spans, physSpan{s.PA, s.PA + s.Count*guestmm.PageSize})
		}
	}
	for _, b := range pl.huge {
		spans = append(spans, physSpan{b.pa, b.pa + guestmm.HugePageSize})
	}
	if k.fill = startFill(mem, spans, pl, src, k.kickAll, hot); k.fill != nil {
		return nil
	}
	defer closeSource(src)
	// Synchronously: restoreChunk·fillBatch pages at a time (the image
	// checks the chunks of one read in parallel), each page then copied
	// to its frame; the frames are fresh, so the zero pages of a block
	// are zero already.
	const fillBatch = 16
	n := uint64(len(pl.pa))
	buf := make([]byte, min(n, restoreChunk*fillBatch)*guestmm.PageSize)
	for first := uint64(0); first < n; first += restoreChunk * fillBatch {
		b := buf[:min(n-first, restoreChunk*fillBatch)*guestmm.PageSize]
		if err := src.ReadPages(b, first); err != nil {
			return fmt.Errorf("reading the page data of the image: %w", err)
		}
		for j := range uint64(len(b)) / guestmm.PageSize {
			pa := pl.pa[first+j]
			copy(mem[pa:pa+guestmm.PageSize], b[j*guestmm.PageSize:])
		}
	}
	return nil
}

// restoreVMA turns a VMAState back into a VMA with its backing.
func (k *Kernel) restoreVMA(vs *VMAState, prog *programBacking, objects map[int]*Object) (guestmm.VMA, error) {
	kind, ok := vmaKindFromName(vs.Kind)
	if !ok {
		return guestmm.VMA{}, fmt.Errorf("unknown VMA kind %q", vs.Kind)
	}
	v := guestmm.VMA{
		Start: vs.Start, End: vs.End, Prot: guestmm.Prot(vs.Prot), MaxProt: guestmm.Prot(vs.MaxProt),
		Shared: vs.Shared, Anonymous: vs.Anonymous, GrowsDown: vs.GrowsDown, DontDump: vs.DontDump,
		NoReserve: vs.NoReserve, Locked: vs.Locked, NoHugePage: vs.NoHugePage, Kind: kind, Offset: vs.Offset, Name: vs.Name,
	}
	switch kind {
	case guestmm.KindFile:
		// Validate made sure that a file VMA names its object, except a
		// VMA of the program in images from before objects existed.
		o := objects[vs.Objref]
		if o == nil || o.Kind == "program" {
			v.Backing = prog // checked against the image's SHA-256
			return v, nil
		}
		if o.Kind == "tmpfs" {
			// The file is in the restored tmpfs, as it was.
			b, e := k.fs.TmpfsBackingOf(o.Mount, o.Ino, vs.Name)
			if e != 0 {
				return v, fmt.Errorf("tmpfs file %d of %s: %v", o.Ino, o.Mount, e)
			}
			v.Backing = b
			return v, nil
		}
		b, err := k.openBacking(vs, unix.O_RDONLY)
		if err != nil {
			return v, err
		}
		id, ok := b.(vfs.Identifiable)
		if !ok {
			return v, fmt.Errorf("%s is not a file whose identity can be checked", vs.Name)
		}
		now, err := id.Identity()
		if err != nil {
			return v, err
		}
		if !o.Identity.Matches(now) {
			return v, fmt.Errorf("file %s has changed since the checkpoint (%v then; %v now)", vs.Name, o.Identity, now)
		}
		v.Backing = b
	case guestmm.KindVVar:
		if k.vdso.vvarPA == 0 {
			return v, fmt.Errorf("the image maps a vvar, which a run on the virtual clock does not have")
		}
		v.Backing = vvarBacking{k}
	case guestmm.KindDevice:
		saved, ok := k.vmaTypes[vs.Device]
		if !ok && vs.Device != VanillaDevice {
			return v, fmt.Errorf("the image maps device %s with VMA type %q, and no device here registers that type", vs.Name, vs.Device)
		}
		b, err := k.openBacking(vs, unix.O_RDONLY)
		if err != nil {
			if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EACCES) {
				// A read-write device mapping needs a read-write open.
				b, err = k.openBacking(vs, unix.O_RDWR)
			}
			if err != nil {
				return v, fmt.Errorf("device %s (VMA type %s) is not available here: %v", vs.Name, vs.Device, err)
			}
		}
		got, err := k.vmaTypeOf(b)
		if err != nil {
			return v, err
		}
		if got.Name != vs.Device {
			return v, fmt.Errorf("device %s maps with VMA type %q here, the image has %q", vs.Name, got.Name, vs.Device)
		}
		if saved.Check != nil {
			if err := saved.Check(b, vs.DeviceParams); err != nil {
				return v, fmt.Errorf("device %s is configured differently here: %v", vs.Name, err)
			}
		}
		d, ok := b.(guestmm.DeviceBacking)
		if !ok || vs.Offset+(vs.End-vs.Start) > d.MMIOSize() {
			return v, fmt.Errorf("device %s is configured differently here (its mapping is %d bytes, the image maps %d at offset %d)", vs.Name, devSize(b), vs.End-vs.Start, vs.Offset)
		}
		v.Backing = b
	}
	return v, nil
}

func devSize(b vfs.Backing) uint64 {
	if d, ok := b.(guestmm.DeviceBacking); ok {
		return d.MMIOSize()
	}
	return 0
}

// openBacking opens the file a VMA maps and asks it for the mapping again,
// as restore in linux-cr calls the driver's mmap again.
func (k *Kernel) openBacking(vs *VMAState, flags int) (vfs.Backing, error) {
	f, e := k.fs.Open("/", vs.Name, flags)
	if e != 0 {
		return nil, e
	}
	defer f.Close()
	m, ok := f.(vfs.Mappable)
	if !ok {
		return nil, unix.ENODEV
	}
	b, e := m.MmapBacking(vs.Offset, vs.End-vs.Start, vs.Prot, vs.Shared)
	if e != 0 {
		return nil, e
	}
	return b, nil
}

// restoreWait brings back a task that waited in a system call: it makes
// the call again first (see saveWait).
func (k *Kernel) restoreWait(t *Task, ts *TaskState) {
	if !ts.Blocked {
		return
	}
	if ts.VforkChild != 0 {
		// vfork's parent: it waits on until the child (restored after
		// it) execs or exits.
		pid := ts.VforkChild
		t.vforkChild, t.state = pid, taskBlocked
		t.wait = &waitSpec{deadline: math.MaxInt64, uninterruptible: true,
			ready: func() bool {
				cp := k.procs[pid]
				return cp == nil || cp.vforkParent != t
			},
			finish: func() (uint64, unix.Errno) {
				t.vforkChild = 0
				return uint64(pid), 0
			}}
		return
	}
	t.resume = true
	deadline := int64(math.MaxInt64)
	if ts.WaitLeft >= 0 {
		deadline = k.deadlineAfter(ts.WaitLeft)
	}
	t.wait = &waitSpec{deadline: deadline}
	if ts.SavedMask != nil {
		t.savedMask, t.waitMask = *ts.SavedMask&^unblockable, true
	}
}
