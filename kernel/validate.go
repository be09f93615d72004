package kernel

import (
	"encoding/hex"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"

	"github.com/emuckpt/emuckpt/guestmm"
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
	ps := &st.Process
	if ps.BrkStart%guestmm.PageSize != 0 || ps.Brk < ps.BrkStart || ps.Brk > guestmm.TaskSize {
		return fmt.Errorf("process: bad heap break %#x-%#x", ps.BrkStart, ps.Brk)
	}
	seen := map[int]bool{}
	for i, a := range ps.Actions {
		if a.Signal < 1 || a.Signal > numSignals || seen[a.Signal] {
			return fmt.Errorf("process.sigactions[%d]: bad or repeated signal %d", i, a.Signal)
		}
		seen[a.Signal] = true
	}
	if err := ps.validateAttributes(); err != nil {
		return err
	}
	var prevEnd uint64
	for i := range ps.VMAs {
		v := &ps.VMAs[i]
		if err := st.validateVMA(v, prevEnd, objects); err != nil {
			return fmt.Errorf("process.vmas[%d] %#x-%#x (%.20q): %v", i, v.Start, v.End, v.Type, err)
		}
		prevEnd = v.End
	}
	if err := st.validateTmpfs(); err != nil {
		return err
	}
	if err := st.validateTasks(); err != nil {
		return err
	}
	return st.Time.validate()
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
	for _, v := range st.Process.VMAs {
		for _, r := range v.Pages { // inside the page data (validateVMA)
			k, _ := slices.BinarySearch(pages, r.Index)
			if k < len(pages) && pages[k] < r.Index+r.Count {
				return fmt.Errorf("%s of the page data is also a VMA's", owner[pages[k]])
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
	for i, fd := range st.Process.FDs {
		if fd.File.Kind == vfs.KindTmpfs && !regular[fd.File.Mount][fd.File.Ino] {
			return fmt.Errorf("process.fds[%d] (fd %d): names inode %d of tmpfs %.200q, which is not a saved regular file", i, fd.FD, fd.File.Ino, fd.File.Mount)
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
	anonymous := kind == guestmm.KindAnon || kind == guestmm.KindHeap || kind == guestmm.KindStack
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
	case VMAScratch, VMAFileShared, VMADevice:
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
	if len(st.Tasks) == 0 {
		return fmt.Errorf("tasks: none")
	}
	tids := make(map[int]bool, len(st.Tasks))
	for i, t := range st.Tasks {
		if t.TID < 1 || tids[t.TID] {
			return fmt.Errorf("tasks[%d]: bad or repeated tid %d", i, t.TID)
		}
		tids[t.TID] = true
		if t.FSBase >= guestmm.TaskSize || t.GSBase >= guestmm.TaskSize {
			return fmt.Errorf("tasks[%d] (tid %d): FS/GS base outside user space", i, t.TID)
		}
		if t.Comm != nil && (len(*t.Comm) >= taskCommLen || strings.IndexByte(*t.Comm, 0) >= 0) {
			return fmt.Errorf("tasks[%d] (tid %d): comm %.40q is longer than %d bytes or holds a NUL", i, t.TID, *t.Comm, taskCommLen-1)
		}
		if t.Pdeathsig < 0 || t.Pdeathsig > numSignals || t.Nice < -20 || t.Nice > 19 {
			return fmt.Errorf("tasks[%d] (tid %d): bad pdeathsig %d or nice %d", i, t.TID, t.Pdeathsig, t.Nice)
		}
		for sig := range t.PendingCodes {
			if sig < 1 || sig > numSignals {
				return fmt.Errorf("tasks[%d] (tid %d): pending code for bad signal %d", i, t.TID, sig)
			}
		}
		if t.Blocked && (t.WaitLeft < -1 || syscalls[t.Regs.RAX] == nil) || !t.Blocked && (t.WaitLeft != 0 || t.SavedMask != nil) {
			return fmt.Errorf("tasks[%d] (tid %d): bad wait (blocked %v in call %d, %d ns left)", i, t.TID, t.Blocked, t.Regs.RAX, t.WaitLeft)
		}
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
