package kernel

import (
	"encoding/hex"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"

	"github.com/emuckpt/emuckpt/guestmm"
	"github.com/emuckpt/emuckpt/kernel/vdso"
	"github.com/emuckpt/emuckpt/kernel/vfs"
	"golang.org/x/sys/unix"
)

// Validate checks that a State means something restore can do, before
// anything is built from it. An image's checksums only say that its bytes
// are the ones written; a hostile or buggy writer can still produce a
// State whose parts contradict each other (a VMA whose type says DEVICE
// and whose kind says anonymous, stored pages for a SCRATCH VMA, page runs
// that overlap). Restore acts on several of these fields, so every
// combination it could act on differently is refused here, with the
// record named: "process.vmas[3] 0x7f0000000000-0x7f0000001000 (ANON):
// ...".
//
// Validate takes time linear in the number of VMAs, page runs, objects
// and tasks. What only the machine of the restore can tell (whether a
// file or device is there and unchanged, whether the VMAs fit its
// address-space layout) is checked by Restore.
func (st *State) Validate() error {
	if err := st.validateProgram(); err != nil {
		return err
	}
	objects, err := st.validateObjects()
	if err != nil {
		return err
	}
	if st.PageCount > st.MemSize/guestmm.PageSize {
		return fmt.Errorf("page_count: %d pages do not fit mem_size %d", st.PageCount, st.MemSize)
	}
	if err := st.validateTree(); err != nil {
		return err
	}
	for i := range st.Processes {
		if err := st.validateProcess(i, objects); err != nil {
			return err
		}
	}
	if err := st.validateTmpfs(); err != nil {
		return err
	}
	if err := st.validateTasks(); err != nil {
		return err
	}
	if err := st.validatePipes(); err != nil {
		return err
	}
	return st.Time.validate()
}

// validateTree checks the process tree: distinct pids in order, the first
// process live, parents and the processes whose memory or descriptors
// another shares coming earlier and live, zombies with a status and
// nothing else, live processes with tasks.
func (st *State) validateTree() error {
	if len(st.Processes) == 0 {
		return fmt.Errorf("processes: none")
	}
	if st.Processes[0].Zombie {
		return fmt.Errorf("processes[0]: the first process is a zombie")
	}
	index := map[int]int{}
	for i := range st.Processes {
		ps := &st.Processes[i]
		bad := func(format string, args ...any) error {
			return fmt.Errorf("processes[%d] (pid %d): %s", i, ps.PID, fmt.Sprintf(format, args...))
		}
		if ps.PID < 2 || ps.PID > st.NextPID || index[ps.PID] != 0 || i > 0 && ps.PID <= st.Processes[i-1].PID && i > 1 {
			return bad("bad, repeated or unordered pid (next_pid %d)", st.NextPID)
		}
		index[ps.PID] = i + 1
		if ps.PGID < 1 || ps.SID < 1 || ps.PPID < 1 || ps.ExitSignal < 0 || ps.ExitSignal > numSignals {
			return bad("bad ppid, pgid, sid or exit signal")
		}
		earlierLive := func(pid int) bool {
			j := index[pid]
			return j != 0 && j-1 < i && !st.Processes[j-1].Zombie
		}
		if ps.Parent != 0 && (!earlierLive(ps.Parent) || ps.Parent != ps.PPID) {
			return bad("parent %d is not an earlier live process with its ppid", ps.Parent)
		}
		if ps.Zombie {
			if ps.Status == nil || ps.Status.Code < 0 || ps.Status.Code > 255 || ps.Status.Signal < 0 || ps.Status.Signal > numSignals ||
				len(ps.Tasks) > 0 || len(ps.VMAs) > 0 || len(ps.FDs) > 0 || ps.SharesMemoryWith != 0 || ps.SharesFilesWith != 0 || ps.VforkParent != 0 {
				return bad("a zombie has a status and nothing else")
			}
			continue
		}
		if ps.Status != nil || len(ps.Tasks) == 0 {
			return bad("a live process has tasks and no exit status")
		}
		if m := ps.SharesMemoryWith; m != 0 {
			if !earlierLive(m) || st.Processes[index[m]-1].SharesMemoryWith != 0 || len(ps.VMAs) > 0 || ps.BrkStart != 0 || ps.Brk != 0 {
				return bad("shares the memory of %d, which is not an earlier live process with its own, or has VMAs too", m)
			}
		}
		if f := ps.SharesFilesWith; f != 0 {
			if !earlierLive(f) || st.Processes[index[f]-1].SharesFilesWith != 0 || len(ps.FDs) > 0 {
				return bad("shares the descriptors of %d, which is not an earlier live process with its own, or has descriptors too", f)
			}
		}
	}
	return nil
}

// validateProcess checks one process's heap, signal actions, attributes
// and VMAs.
func (st *State) validateProcess(i int, objects map[int]*Object) error {
	ps := &st.Processes[i]
	where := fmt.Sprintf("processes[%d]", i)
	if ps.BrkStart%guestmm.PageSize != 0 || ps.Brk < ps.BrkStart || ps.Brk > guestmm.TaskSize {
		return fmt.Errorf("%s: bad heap break %#x-%#x", where, ps.BrkStart, ps.Brk)
	}
	seen := map[int]bool{}
	for j, a := range ps.Actions {
		if a.Signal < 1 || a.Signal > numSignals || seen[a.Signal] {
			return fmt.Errorf("%s.sigactions[%d]: bad or repeated signal %d", where, j, a.Signal)
		}
		seen[a.Signal] = true
	}
	if err := ps.validateAttributes(); err != nil {
		return fmt.Errorf("%s: %v", where, err)
	}
	var prevEnd uint64
	for j := range ps.VMAs {
		v := &ps.VMAs[j]
		if err := st.validateVMA(v, prevEnd, objects); err != nil {
			return fmt.Errorf("%s.vmas[%d] %#x-%#x (%.20q): %v", where, j, v.Start, v.End, v.Type, err)
		}
		prevEnd = v.End
	}
	return nil
}

// validatePipes checks the pipes (distinct objrefs, at most a pipe's
// capacity queued) and that every pipe end names one.
func (st *State) validatePipes() error {
	pipes := map[int]bool{}
	for i, p := range st.Pipes {
		if p.Ref < 1 || pipes[p.Ref] || len(p.Data) > vfs.PipeCapacity {
			return fmt.Errorf("pipes[%d] (objref %d): bad or repeated objref, or more than a pipe holds", i, p.Ref)
		}
		pipes[p.Ref] = true
	}
	for i := range st.Processes {
		for _, fd := range st.Processes[i].FDs {
			if (fd.File.Kind == vfs.KindPipe) != (fd.File.Pipe != 0) || fd.File.Pipe != 0 && !pipes[fd.File.Pipe] {
				return fmt.Errorf("processes[%d] fd %d: a pipe end must name a saved pipe (objref %d)", i, fd.FD, fd.File.Pipe)
			}
		}
	}
	return nil
}

// validate checks the timers of an image: known kinds, one of each
// interval timer, distinct POSIX timer ids below next_timer_id, clocks a
// timer can use, signals in range and no negative times.
func (ts *TimeState) validate() error {
	if ts.UserNS < 0 || ts.SysNS < 0 || ts.NextTimerID < 0 || ts.NextTimerFD < 0 {
		return fmt.Errorf("time: negative CPU time or timer id")
	}
	seen := map[string]bool{}
	ids, fdIDs := map[int]bool{}, map[int]bool{}
	for i, tm := range ts.Timers {
		bad := func(why string) error { return fmt.Errorf("time.timers[%d] (%s %d): %s", i, tm.Kind, tm.ID, why) }
		switch tm.Kind {
		case TimerReal, TimerVirtual, TimerProf:
			if seen[tm.Kind] {
				return bad("repeated interval timer")
			}
			seen[tm.Kind] = true
			if tm.Clock != itimerClock(tm.Kind) || tm.Signo != itimerSignals[tm.Kind] || tm.Queued || tm.ID != 0 {
				return bad("not as setitimer makes it")
			}
		case TimerPOSIX:
			if tm.ID < 0 || tm.ID >= ts.NextTimerID || ids[tm.ID] {
				return bad("bad or repeated id")
			}
			ids[tm.ID] = true
			switch tm.Notify {
			case sigevNone, sigevSignal, sigevThread, sigevSignal | sigevThreadID:
			default:
				return bad("bad sigev_notify")
			}
			if tm.Clock >= 0 && tm.Clock != unix.CLOCK_REALTIME && tm.Clock != unix.CLOCK_MONOTONIC &&
				tm.Clock != unix.CLOCK_BOOTTIME && tm.Clock != unix.CLOCK_TAI || tm.Clock < 0 && tm.Clock&3 == 3 {
				return bad("bad clock")
			}
		case TimerFD:
			if tm.ID < 0 || tm.ID >= ts.NextTimerFD || fdIDs[tm.ID] {
				return bad("bad or repeated id")
			}
			fdIDs[tm.ID] = true
			if timerfdClockErr(tm.Clock) != 0 || tm.Signo != 0 || tm.Queued {
				return bad("not as timerfd_create makes it")
			}
		default:
			return bad("unknown kind")
		}
		if tm.Kind != TimerFD && (tm.Signo < 1 || tm.Signo > numSignals) {
			return bad("bad signal")
		}
		if tm.Expiry < 0 || tm.Remaining < 0 || tm.Interval < 0 || tm.Overrun < 0 || tm.LastOverrun < 0 {
			return bad("negative time or count")
		}
		if tm.Expiry != 0 && (tm.Clock != unix.CLOCK_REALTIME || tm.Remaining != 0) {
			return bad("an absolute expiry is kept only for CLOCK_REALTIME")
		}
	}
	return nil
}

// validateTmpfsPages checks that the pages of tmpfs files lie in the
// page data, each used by one file page only and by no VMA: restore hands
// each such frame to its file as it is.
func (st *State) validateTmpfsPages() error {
	// Linear in the tmpfs pages and VMA runs (times a log), whatever
	// page_count claims: no per-page table.
	owner := map[uint64]string{}
	var pages []uint64
	for i := range st.Tmpfs {
		m := &st.Tmpfs[i]
		for _, in := range m.Inodes {
			for _, pg := range in.Pages {
				where := fmt.Sprintf("tmpfs[%d] (%.200q): inode %d: page %d", i, m.Path, in.Ino, pg.Page)
				if pg.Page >= st.PageCount {
					return fmt.Errorf("%s is outside the image's %d pages", where, st.PageCount)
				}
				if _, dup := owner[pg.Page]; dup {
					return fmt.Errorf("%s of the page data is used twice", where)
				}
				owner[pg.Page] = where
				pages = append(pages, pg.Page)
			}
		}
	}
	if len(pages) == 0 {
		return nil
	}
	slices.Sort(pages)
	for i := range st.Processes {
		for _, v := range st.Processes[i].VMAs {
			for _, r := range v.Pages { // inside the page data (validateVMA)
				k, _ := slices.BinarySearch(pages, r.Index)
				if k < len(pages) && pages[k] < r.Index+r.Count {
					return fmt.Errorf("%s of the page data is also a VMA's", owner[pages[k]])
				}
			}
		}
	}
	return nil
}

// validateTmpfs checks each tmpfs mount (vfs.MountState.Validate), that
// mount points are distinct, and that every tmpfs object and descriptor
// names a regular file of a saved mount.
func (st *State) validateTmpfs() error {
	regular := map[string]map[uint64]bool{}
	for i := range st.Tmpfs {
		m := &st.Tmpfs[i]
		if err := m.Validate(); err != nil {
			return fmt.Errorf("tmpfs[%d]: %v", i, err)
		}
		if regular[m.Path] != nil {
			return fmt.Errorf("tmpfs[%d]: a second mount at %s", i, m.Path)
		}
		regular[m.Path] = map[uint64]bool{}
		for _, in := range m.Inodes {
			if in.Mode&unix.S_IFMT == unix.S_IFREG {
				regular[m.Path][in.Ino] = true
			}
		}
	}
	if err := st.validateTmpfsPages(); err != nil {
		return err
	}
	for i, o := range st.Objects {
		if o.Kind == "tmpfs" && !regular[o.Mount][o.Ino] {
			return fmt.Errorf("objects[%d] (objref %d): names inode %d of tmpfs %.200q, which is not a saved regular file", i, o.Ref, o.Ino, o.Mount)
		}
	}
	for j := range st.Processes {
		for i, fd := range st.Processes[j].FDs {
			if fd.File.Kind == vfs.KindTmpfs && !regular[fd.File.Mount][fd.File.Ino] {
				return fmt.Errorf("processes[%d].fds[%d] (fd %d): names inode %d of tmpfs %.200q, which is not a saved regular file", j, i, fd.FD, fd.File.Ino, fd.File.Mount)
			}
		}
	}
	return nil
}

func (st *State) validateProgram() error {
	p := st.Program
	if sum, err := hex.DecodeString(p.SHA256); err != nil || len(sum) != 32 {
		return fmt.Errorf("program: sha256 %.80q is not a SHA-256 in hex", p.SHA256)
	}
	if p.Name == "" || p.Size < 0 {
		return fmt.Errorf("program: no name, or a negative size")
	}
	if st.Root != "" && !filepath.IsAbs(st.Root) {
		return fmt.Errorf("root: %.200q is not an absolute path", st.Root)
	}
	return nil
}

// validateObjects checks the objects and returns them by objref.
func (st *State) validateObjects() (map[int]*Object, error) {
	objects := make(map[int]*Object, len(st.Objects))
	for i := range st.Objects {
		o := &st.Objects[i]
		bad := func(format string, args ...any) error {
			return fmt.Errorf("objects[%d] (objref %d, %.200q): %s", i, o.Ref, o.Path, fmt.Sprintf(format, args...))
		}
		if o.Ref < 1 || objects[o.Ref] != nil {
			return nil, bad("objref must be positive and unique")
		}
		switch o.Kind {
		case "program":
			if o.Path != st.Program.Name {
				return nil, bad("a program object must name the program %.200q", st.Program.Name)
			}
		case "file":
			if o.Path == "" {
				return nil, bad("a file object without a path")
			}
			id := o.Identity
			if id == nil {
				return nil, bad("a file object without an identity, so a changed file could not be detected")
			}
			if sum, err := hex.DecodeString(id.SHA256); id.Size < 0 || id.SHA256 != "" && (err != nil || len(sum) != 32) {
				return nil, bad("bad identity (size %d, sha256 %.80q)", id.Size, id.SHA256)
			}
		case "tmpfs":
			// validateTmpfs checks that mount and ino name a saved file.
			if o.Path == "" || o.Mount == "" || o.Ino == 0 || o.Identity != nil {
				return nil, bad("a tmpfs object needs a path, a mount and an inode, and no identity")
			}
		default:
			return nil, bad("unknown kind %.20q", o.Kind)
		}
		objects[o.Ref] = o
	}
	return objects, nil
}

// validateVMA checks one VMA; prevEnd is where the previous one ended
// (VMAs are in address order and do not overlap).
func (st *State) validateVMA(v *VMAState, prevEnd uint64, objects map[int]*Object) error {
	const page = guestmm.PageSize
	if v.Start%page != 0 || v.End%page != 0 || v.Start >= v.End || v.End > guestmm.TaskSize {
		return fmt.Errorf("not a page-aligned range of user space")
	}
	if v.Start < prevEnd {
		return fmt.Errorf("overlaps or precedes the VMA before it (which ends at %#x)", prevEnd)
	}
	const rwx = 7
	if v.Prot&^rwx != 0 || v.MaxProt&^rwx != 0 || v.Prot&^v.MaxProt != 0 {
		return fmt.Errorf("bad protection %#x (max %#x)", v.Prot, v.MaxProt)
	}
	kind, ok := vmaKindFromName(v.Kind)
	if !ok {
		return fmt.Errorf("unknown VMA kind %.20q", v.Kind)
	}
	// The type is what the checkpoint decided to store; it follows from
	// the kind and flags, which are what restore builds the VMA from.
	if want := vmaTypeFor(kind, v.DontDump, v.Shared); v.Type != want {
		return fmt.Errorf("type %.20q does not match kind %s (shared %v, dont_dump %v), which make it %s", v.Type, v.Kind, v.Shared, v.DontDump, want)
	}
	if v.Locked && kind == guestmm.KindDevice {
		return fmt.Errorf("a device mapping cannot be locked")
	}
	anonymous := kind == guestmm.KindAnon || kind == guestmm.KindHeap || kind == guestmm.KindStack || kind == guestmm.KindVDSO
	if kind == guestmm.KindVVar && (v.Shared || v.Prot&unix.PROT_WRITE != 0 || v.MaxProt&unix.PROT_WRITE != 0 || v.End-v.Start != vdso.VVarSize || v.Offset != 0) {
		return fmt.Errorf("a vvar VMA is one private read-only page at offset 0")
	}
	if v.Anonymous != anonymous {
		return fmt.Errorf("anonymous is %v for kind %s", v.Anonymous, v.Kind)
	}
	// An offset is a file position (off_t): the mapping must end below
	// 2^63, and so must it for the other kinds, which restore passes on.
	if v.Offset%page != 0 || v.Offset > math.MaxInt64-(v.End-v.Start) {
		return fmt.Errorf("bad offset %#x", v.Offset)
	}
	if kind == guestmm.KindDevice {
		if v.Device == "" {
			return fmt.Errorf("a device VMA without a device VMA type")
		}
	} else if v.Device != "" || len(v.DeviceParams) > 0 {
		return fmt.Errorf("device VMA type %.20q on a VMA that maps no device", v.Device)
	}
	if err := st.validateObjref(v, kind, objects); err != nil {
		return err
	}
	return st.validatePages(v)
}

// validateObjref checks that a file VMA names the object it maps, so that
// restore checks that file's identity, and that other VMAs name none.
func (st *State) validateObjref(v *VMAState, kind guestmm.VMAKind, objects map[int]*Object) error {
	if kind != guestmm.KindFile {
		if v.Objref != 0 {
			return fmt.Errorf("objref %d on a VMA that maps no file", v.Objref)
		}
		return nil
	}
	if v.Objref == 0 {
		// Images written before objects existed name the program's VMAs
		// only by the program's name (the program is identified by its
		// SHA-256); any other file needs an objref.
		if v.Name != st.Program.Name {
			return fmt.Errorf("file %.200q has no objref, so its identity could not be checked", v.Name)
		}
		return nil
	}
	o := objects[v.Objref]
	if o == nil {
		return fmt.Errorf("objref %d names no object", v.Objref)
	}
	// A tmpfs file is named by its inode: VMAs may map it by different
	// names (hard links, a rename between two mmaps).
	if o.Path != v.Name && o.Kind != "tmpfs" {
		return fmt.Errorf("maps %.200q, but its objref %d is %.200q", v.Name, v.Objref, o.Path)
	}
	return nil
}

// validatePages checks a VMA's page runs: only the types that store pages
// have any, each lies inside the VMA and the page data, and no two cover
// the same address (a page restored twice). Two runs may name the same
// page data: a frame that several mappings share is stored once.
func (st *State) validatePages(v *VMAState) error {
	const page = guestmm.PageSize
	pages := (v.End - v.Start) / page
	if v.ZeroPages > pages {
		return fmt.Errorf("%d zero pages in a VMA of %d pages", v.ZeroPages, pages)
	}
	switch v.Type {
	case VMAScratch, VMAFileShared, VMADevice, VMAVVar:
		if len(v.Pages) > 0 || v.ZeroPages > 0 {
			return fmt.Errorf("a %s VMA stores no pages, this one has %d runs and %d zero pages", v.Type, len(v.Pages), v.ZeroPages)
		}
		return nil
	}
	next := v.Start // the first address the next run may cover
	for j, r := range v.Pages {
		switch {
		case r.Count == 0 || r.VA%page != 0:
			return fmt.Errorf("pages[%d]: empty or unaligned run at %#x", j, r.VA)
		case r.VA < next:
			return fmt.Errorf("pages[%d] at %#x overlaps or precedes the run before it", j, r.VA)
		case r.VA >= v.End || r.Count > (v.End-r.VA)/page:
			return fmt.Errorf("pages[%d]: %d pages at %#x reach past the VMA", j, r.Count, r.VA)
		case r.Index > st.PageCount || r.Count > st.PageCount-r.Index:
			return fmt.Errorf("pages[%d]: pages %d+%d are outside the image's %d pages", j, r.Index, r.Count, st.PageCount)
		case r.Copied != (v.Type == VMAFile):
			// A FILE VMA stores only the pages copied on write; other
			// types have no file for a page to differ from.
			return fmt.Errorf("pages[%d]: copied is %v in a %s VMA", j, r.Copied, v.Type)
		}
		next = r.VA + r.Count*page
	}
	return nil
}

func (st *State) validateTasks() error {
	tids := map[int]int{} // tid -> index of its process + 1
	for pi := range st.Processes {
		ps := &st.Processes[pi]
		for i, t := range ps.Tasks {
			if err := st.validateTask(pi, i, &t, tids); err != nil {
				return err
			}
		}
	}
	for pi := range st.Processes {
		ps := &st.Processes[pi]
		if v := ps.VforkParent; v != 0 && (tids[v] == 0 || tids[v]-1 >= pi) {
			return fmt.Errorf("processes[%d]: vfork parent %d is not a task of an earlier process", pi, v)
		}
		for i, t := range ps.Tasks {
			c := t.VforkChild
			if c == 0 {
				continue
			}
			found := false
			for _, q := range st.Processes[pi+1:] {
				found = found || q.PID == c && q.VforkParent == t.TID
			}
			if !found || !t.Blocked {
				return fmt.Errorf("processes[%d].tasks[%d]: waits in vfork for %d, which is not a later process it vforked", pi, i, c)
			}
		}
	}
	return nil
}

// validateTask checks one task; tids collects the tids seen.
func (st *State) validateTask(pi, i int, t *TaskState, tids map[int]int) error {
	if t.TID < 1 || t.TID > st.NextPID || tids[t.TID] != 0 {
		return fmt.Errorf("processes[%d].tasks[%d]: bad or repeated tid %d", pi, i, t.TID)
	}
	tids[t.TID] = pi + 1
	if t.FSBase >= guestmm.TaskSize || t.GSBase >= guestmm.TaskSize {
		return fmt.Errorf("processes[%d].tasks[%d] (tid %d): FS/GS base outside user space", pi, i, t.TID)
	}
	if t.Comm != nil && (len(*t.Comm) >= taskCommLen || strings.IndexByte(*t.Comm, 0) >= 0) {
		return fmt.Errorf("processes[%d].tasks[%d] (tid %d): comm %.40q is longer than %d bytes or holds a NUL", pi, i, t.TID, *t.Comm, taskCommLen-1)
	}
	if t.Pdeathsig < 0 || t.Pdeathsig > numSignals || t.Nice < -20 || t.Nice > 19 {
		return fmt.Errorf("processes[%d].tasks[%d] (tid %d): bad pdeathsig %d or nice %d", pi, i, t.TID, t.Pdeathsig, t.Nice)
	}
	for sig := range t.PendingCodes {
		if sig < 1 || sig > numSignals {
			return fmt.Errorf("processes[%d].tasks[%d] (tid %d): pending code for bad signal %d", pi, i, t.TID, sig)
		}
	}
	if t.Blocked && (t.WaitLeft < -1 || syscalls[t.Regs.RAX] == nil) || !t.Blocked && (t.WaitLeft != 0 || t.SavedMask != nil || t.VforkChild != 0) {
		return fmt.Errorf("processes[%d].tasks[%d] (tid %d): bad wait (blocked %v in call %d, %d ns left)", pi, i, t.TID, t.Blocked, t.Regs.RAX, t.WaitLeft)
	}
	return nil
}

// validateAttributes checks the process attributes saved as numbers.
func (ps *ProcessState) validateAttributes() error {
	if ps.Umask != nil && *ps.Umask&^0o777 != 0 {
		return fmt.Errorf("process: umask %#o is not a permission mask", *ps.Umask)
	}
	if ps.Dumpable != nil && *ps.Dumpable != 0 && *ps.Dumpable != 1 {
		return fmt.Errorf("process: dumpable %d is neither 0 nor 1", *ps.Dumpable)
	}
	if len(ps.Groups) > ngroupsMax {
		return fmt.Errorf("process: %d groups, more than NGROUPS_MAX", len(ps.Groups))
	}
	if ps.LockOnFault && !ps.LockFuture {
		return fmt.Errorf("process: lock_on_fault without lock_future")
	}
	return nil
}
