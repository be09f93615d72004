package vfs

import (
	"fmt"
	"sort"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Limits on descriptor numbers.
const (
	// DefaultFDLimit is the default soft RLIMIT_NOFILE.
	DefaultFDLimit = 1024
	// NrOpen is the ceiling of RLIMIT_NOFILE (Linux's fs.nr_open default).
	NrOpen = 1 << 20
)

// FDCloexec is FD_CLOEXEC, the only descriptor flag (F_GETFD, F_SETFD).
const FDCloexec = unix.FD_CLOEXEC

// description is an open file description with the count of descriptors,
// in any table, that refer to it.
type description struct {
	file File
	refs atomic.Int64
	// own is the description's fown_struct (F_SETOWN, F_SETSIG), guarded
	// by the table's mu.
	own Owner
}

// Owner is what Linux keeps in a description's fown_struct for O_ASYNC:
// who gets its signals and which signal.
type Owner struct {
	// PID is the F_SETOWN argument: a process, or minus a process group;
	// 0 means none (no signal is sent).
	PID int `json:",omitempty"`
	// Signal is the F_SETSIG signal; 0 means SIGIO with SI_KERNEL.
	Signal int `json:",omitempty"`
	// FD is the descriptor on which O_ASYNC was last turned on: the si_fd
	// of an F_SETSIG signal (the fd of Linux's fasync entry).
	FD int `json:",omitempty"`
}

func (d *description) hold() *description {
	d.refs.Add(1)
	return d
}

// release drops one reference, closing the file with the last one.
func (d *description) release() unix.Errno {
	if d.refs.Add(-1) == 0 {
		return d.file.Close()
	}
	return 0
}

type fdSlot struct {
	desc    *description // nil for a free descriptor number
	cloexec bool
}

// FDTable maps a process's descriptor numbers to open file descriptions.
// It is safe for concurrent use; the guest's threads share one table.
// Descriptions are reference counted: the File is closed when the last
// descriptor for it, in any table, is closed.
type FDTable struct {
	mu    sync.Mutex
	slots []fdSlot
	limit int
}

// NewFDTable makes an empty table with the default limit.
func NewFDTable() *FDTable {
	return &FDTable{limit: DefaultFDLimit}
}

// NewFDTable makes a process's first table: descriptors 0, 1 and 2 are the
// FS's standard streams (Options.Stdin, Stdout, Stderr).
func (fs *FS) NewFDTable() *FDTable {
	t := NewFDTable()
	for fd, name := range []string{"stdin", "stdout", "stderr"} {
		if f := fs.stdio(name); f != nil {
			t.installAt(fd, f, false)
		}
	}
	return t
}

// Limit is the current RLIMIT_NOFILE: descriptors are allocated below it.
func (t *FDTable) Limit() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.limit
}

// SetLimit changes RLIMIT_NOFILE. Descriptors already at or above the new
// limit stay open, as in Linux. EPERM above NrOpen.
func (t *FDTable) SetLimit(n int) unix.Errno {
	if n < 0 {
		return unix.EINVAL
	}
	if n > NrOpen {
		return unix.EPERM
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.limit = n
	return 0
}

// Install gives f the lowest free descriptor (EMFILE if none is below the
// limit). The table takes over f: closing the descriptor closes it.
func (t *FDTable) Install(f File, cloexec bool) (int, unix.Errno) {
	if f == nil {
		return -1, unix.EINVAL
	}
	d := &description{file: f}
	d.refs.Store(1)
	t.mu.Lock()
	defer t.mu.Unlock()
	fd, errno := t.allocLocked(0)
	if errno != 0 {
		return -1, errno
	}
	t.slots[fd] = fdSlot{desc: d, cloexec: cloexec}
	return fd, 0
}

// allocLocked finds the lowest free descriptor at or above min, growing the
// table as needed, and reserves nothing: the caller fills the slot.
func (t *FDTable) allocLocked(min int) (int, unix.Errno) {
	for fd := min; fd < t.limit; fd++ {
		if fd >= len(t.slots) {
			t.growLocked(fd)
			return fd, 0
		}
		if t.slots[fd].desc == nil {
			return fd, 0
		}
	}
	return -1, unix.EMFILE
}

// growLocked makes slot fd exist.
func (t *FDTable) growLocked(fd int) {
	if fd >= len(t.slots) {
		t.slots = append(t.slots, make([]fdSlot, fd+1-len(t.slots))...)
	}
}

// installAt puts a new description for f at fd, which is free.
func (t *FDTable) installAt(fd int, f File, cloexec bool) {
	d := &description{file: f}
	d.refs.Store(1)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.growLocked(fd)
	t.slots[fd] = fdSlot{desc: d, cloexec: cloexec}
}

func (t *FDTable) lookupLocked(fd int) *fdSlot {
	if fd < 0 || fd >= len(t.slots) || t.slots[fd].desc == nil {
		return nil
	}
	return &t.slots[fd]
}

// Get returns the File of a descriptor, EBADF if it is not open. The File
// stays safe to use if the descriptor is closed meanwhile (its operations
// then fail with EBADF).
func (t *FDTable) Get(fd int) (File, unix.Errno) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.lookupLocked(fd)
	if s == nil {
		return nil, unix.EBADF
	}
	return s.desc.file, 0
}

// Owner returns the owner state of fd's description (F_GETOWN, F_GETSIG).
func (t *FDTable) Owner(fd int) (Owner, unix.Errno) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.lookupLocked(fd)
	if s == nil {
		return Owner{}, unix.EBADF
	}
	return s.desc.own, 0
}

// SetOwner changes the owner state of fd's description with set (F_SETOWN,
// F_SETSIG, and the fasync fd of F_SETFL).
func (t *FDTable) SetOwner(fd int, set func(*Owner)) unix.Errno {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.lookupLocked(fd)
	if s == nil {
		return unix.EBADF
	}
	set(&s.desc.own)
	return 0
}

// AsyncFile is a description with O_ASYNC set.
type AsyncFile struct {
	File  File
	Owner Owner
}

// AsyncFiles lists the descriptions that have O_ASYNC set, each once: the
// files whose events signal their owner (none while Owner.PID is 0).
func (t *FDTable) AsyncFiles() []AsyncFile {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []AsyncFile
	seen := make(map[*description]bool, len(t.slots))
	for _, s := range t.slots {
		d := s.desc
		if d == nil || seen[d] {
			continue
		}
		seen[d] = true
		if d.file.Flags()&unix.O_ASYNC != 0 {
			out = append(out, AsyncFile{File: d.file, Owner: d.own})
		}
	}
	return out
}

// FDFlags is fcntl(F_GETFD): FDCloexec or 0.
func (t *FDTable) FDFlags(fd int) (int, unix.Errno) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.lookupLocked(fd)
	if s == nil {
		return 0, unix.EBADF
	}
	if s.cloexec {
		return FDCloexec, 0
	}
	return 0, 0
}

// SetFDFlags is fcntl(F_SETFD), and FIOCLEX/FIONCLEX.
func (t *FDTable) SetFDFlags(fd, flags int) unix.Errno {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.lookupLocked(fd)
	if s == nil {
		return unix.EBADF
	}
	s.cloexec = flags&FDCloexec != 0
	return 0
}

// Close is close(2). It returns the File's Close error when this was the
// last descriptor of the description.
func (t *FDTable) Close(fd int) unix.Errno {
	t.mu.Lock()
	s := t.lookupLocked(fd)
	if s == nil {
		t.mu.Unlock()
		return unix.EBADF
	}
	d := s.desc
	*s = fdSlot{}
	t.mu.Unlock()
	return d.release()
}

// Dup is dup(2): the lowest free descriptor, without close-on-exec.
func (t *FDTable) Dup(fd int) (int, unix.Errno) {
	return t.DupFrom(fd, 0, false)
}

// DupFrom is fcntl(F_DUPFD) and, with cloexec, F_DUPFD_CLOEXEC: the lowest
// free descriptor at or above min. EINVAL if min is not below the limit.
func (t *FDTable) DupFrom(fd, min int, cloexec bool) (int, unix.Errno) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.lookupLocked(fd)
	if s == nil {
		return -1, unix.EBADF
	}
	if min < 0 || min >= t.limit {
		return -1, unix.EINVAL
	}
	nfd, errno := t.allocLocked(min)
	if errno != 0 {
		return -1, errno
	}
	t.slots[nfd] = fdSlot{desc: t.slots[fd].desc.hold(), cloexec: cloexec}
	return nfd, 0
}

// Dup2 is dup2(2): newfd, closed first if open, refers to oldfd's
// description. With oldfd == newfd it only checks oldfd.
func (t *FDTable) Dup2(oldfd, newfd int) (int, unix.Errno) {
	if oldfd == newfd {
		if _, errno := t.Get(oldfd); errno != 0 {
			return -1, errno
		}
		return newfd, 0
	}
	return t.dup3(oldfd, newfd, false)
}

// Dup3 is dup3(2): like Dup2 but EINVAL for oldfd == newfd, and flags may
// only be O_CLOEXEC.
func (t *FDTable) Dup3(oldfd, newfd, flags int) (int, unix.Errno) {
	if flags&^unix.O_CLOEXEC != 0 || oldfd == newfd {
		return -1, unix.EINVAL
	}
	return t.dup3(oldfd, newfd, flags&unix.O_CLOEXEC != 0)
}

func (t *FDTable) dup3(oldfd, newfd int, cloexec bool) (int, unix.Errno) {
	t.mu.Lock()
	if newfd < 0 || newfd >= t.limit {
		t.mu.Unlock()
		return -1, unix.EBADF
	}
	s := t.lookupLocked(oldfd)
	if s == nil {
		t.mu.Unlock()
		return -1, unix.EBADF
	}
	d := s.desc.hold()
	t.growLocked(newfd)
	replaced := t.slots[newfd].desc
	t.slots[newfd] = fdSlot{desc: d, cloexec: cloexec}
	t.mu.Unlock()
	if replaced != nil {
		replaced.release() // dup2 ignores errors closing newfd
	}
	return newfd, 0
}

// CloseRange is close_range(2) with flags 0 or CLOSE_RANGE_CLOEXEC (which
// sets close-on-exec instead of closing); CLOSE_RANGE_UNSHARE is accepted
// and left to the caller, which owns table sharing.
func (t *FDTable) CloseRange(first, last uint64, flags uint32) unix.Errno {
	if flags&^(unix.CLOSE_RANGE_UNSHARE|unix.CLOSE_RANGE_CLOEXEC) != 0 || first > last {
		return unix.EINVAL
	}
	var closed []*description
	t.mu.Lock()
	for fd := first; fd <= last && fd < uint64(len(t.slots)); fd++ {
		s := &t.slots[fd]
		if s.desc == nil {
			continue
		}
		if flags&unix.CLOSE_RANGE_CLOEXEC != 0 {
			s.cloexec = true
			continue
		}
		closed = append(closed, s.desc)
		*s = fdSlot{}
	}
	t.mu.Unlock()
	for _, d := range closed {
		d.release()
	}
	return 0
}

// CloseOnExec closes the close-on-exec descriptors, as execve(2) does.
func (t *FDTable) CloseOnExec() {
	t.closeWhere(func(s fdSlot) bool { return s.cloexec })
}

// CloseAll closes every descriptor, as exit does.
func (t *FDTable) CloseAll() {
	t.closeWhere(func(fdSlot) bool { return true })
}

func (t *FDTable) closeWhere(match func(fdSlot) bool) {
	var closed []*description
	t.mu.Lock()
	for fd := range t.slots {
		s := &t.slots[fd]
		if s.desc != nil && match(*s) {
			closed = append(closed, s.desc)
			*s = fdSlot{}
		}
	}
	t.mu.Unlock()
	for _, d := range closed {
		d.release()
	}
}

// Clone copies the table for fork(2): the new table's descriptors share
// the descriptions, offsets included.
func (t *FDTable) Clone() *FDTable {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := &FDTable{limit: t.limit, slots: make([]fdSlot, len(t.slots))}
	for fd, s := range t.slots {
		if s.desc != nil {
			c.slots[fd] = fdSlot{desc: s.desc.hold(), cloexec: s.cloexec}
		}
	}
	return c
}

// FDEntry is one open descriptor as plain data, for a checkpoint.
type FDEntry struct {
	FD          int
	CloseOnExec bool
	// Desc numbers the open file descriptions of the snapshot: entries
	// with the same Desc share one (dup'ed descriptors share the offset).
	Desc int
	File FileState
	// Owner is the description's O_ASYNC owner (F_SETOWN, F_SETSIG).
	Owner Owner `json:",omitzero"`
}

// Snapshot describes the open descriptors in increasing order.
func (t *FDTable) Snapshot() []FDEntry { return t.SnapshotShared(NewShared()) }

// Shared numbers what the descriptor tables of one checkpoint share: open
// file descriptions (shared after fork, with one offset) and pipes (whose
// ends may sit in different processes). Each is recorded once.
type Shared struct {
	descs map[*description]int
	pipes map[*pipe]int
	// Pipes are the pipes met, by PipeState.Ref.
	Pipes []PipeState
}

// PipeState is a pipe in a checkpoint: the bytes queued in it.
type PipeState struct {
	Ref  int
	Data []byte `json:",omitempty"`
}

// NewShared starts the numbering of one checkpoint.
func NewShared() *Shared {
	return &Shared{descs: map[*description]int{}, pipes: map[*pipe]int{}}
}

// SnapshotShared is Snapshot with descriptions and pipes numbered across
// every table of a checkpoint (see Shared).
func (t *FDTable) SnapshotShared(sh *Shared) []FDEntry {
	type open struct {
		fd      int
		cloexec bool
		desc    *description
	}
	var fds []open
	t.mu.Lock()
	for fd, s := range t.slots {
		if s.desc != nil {
			fds = append(fds, open{fd, s.cloexec, s.desc.hold()})
		}
	}
	t.mu.Unlock()

	out := make([]FDEntry, 0, len(fds))
	for _, o := range fds {
		id, ok := sh.descs[o.desc]
		if !ok {
			id = len(sh.descs)
			sh.descs[o.desc] = id
		}
		st := o.desc.file.Describe()
		if pe, ok := o.desc.file.(*pipeEnd); ok {
			st.Pipe = sh.pipe(pe.p)
		}
		t.mu.Lock()
		own := o.desc.own
		t.mu.Unlock()
		out = append(out, FDEntry{FD: o.fd, CloseOnExec: o.cloexec, Desc: id, File: st, Owner: own})
	}
	for _, o := range fds {
		o.desc.release()
	}
	return out
}

// pipe is the objref of p, recording its bytes the first time.
func (sh *Shared) pipe(p *pipe) int {
	if ref, ok := sh.pipes[p]; ok {
		return ref
	}
	ref := len(sh.pipes) + 1
	sh.pipes[p] = ref
	p.mu.Lock()
	sh.Pipes = append(sh.Pipes, PipeState{Ref: ref, Data: append([]byte(nil), p.buf...)})
	p.mu.Unlock()
	return ref
}

// Restored is what a restore re-opened so far across the tables of one
// checkpoint: descriptions by Desc, pipes by Ref.
type Restored struct {
	descs map[int]*description
	// kinds are the descriptions' kinds as the image gives them (a
	// standard stream with no host file re-opens as /dev/null).
	kinds map[int]FileKind
	pipes map[int]*pipe
	data  map[int][]byte
}

// NewRestored starts a restore of the tables of one checkpoint, whose
// pipes are pipes.
func NewRestored(pipes []PipeState) *Restored {
	r := &Restored{descs: map[int]*description{}, kinds: map[int]FileKind{}, pipes: map[int]*pipe{}, data: map[int][]byte{}}
	for _, p := range pipes {
		r.data[p.Ref] = p.Data
	}
	return r
}

// reopenPipe makes the end of pipe s.Pipe that s describes; the pipe is
// made (with its bytes) the first time one of its ends is.
func (r *Restored) reopenPipe(s FileState) (File, unix.Errno) {
	data, ok := r.data[s.Pipe]
	if !ok || len(data) > PipeCapacity {
		return nil, unix.EINVAL
	}
	p := r.pipes[s.Pipe]
	if p == nil {
		p = &pipe{buf: append([]byte(nil), data...)}
		r.pipes[s.Pipe] = p
	}
	e := &pipeEnd{p: p, write: s.Flags&unix.O_ACCMODE == unix.O_WRONLY}
	e.flags = s.Flags & (unix.O_ACCMODE | StatusFlagsMask | unix.O_DIRECT)
	if e.write {
		p.writers++
	} else {
		p.readers++
	}
	return e, 0
}

// RestoreFDTable rebuilds a table from a Snapshot, re-opening each
// description once with Reopen, with limit as its RLIMIT_NOFILE.
func (fs *FS) RestoreFDTable(entries []FDEntry, limit int) (*FDTable, error) {
	return fs.RestoreFDTableShared(entries, limit, NewRestored(nil))
}

// RestoreFDTableShared is RestoreFDTable for one of the tables of a
// checkpoint: descriptions and pipes recorded once (SnapshotShared) are
// re-opened once, in r, and shared by every table that uses them.
func (fs *FS) RestoreFDTableShared(entries []FDEntry, limit int, r *Restored) (*FDTable, error) {
	t := NewFDTable()
	if errno := t.SetLimit(limit); errno != 0 {
		return nil, fmt.Errorf("vfs: restore fd table: limit %d: %w", limit, errno)
	}
	sorted := append([]FDEntry(nil), entries...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].FD < sorted[j].FD })
	descs := r.descs
	for i, e := range sorted {
		if e.FD < 0 || e.FD >= NrOpen || (i > 0 && sorted[i-1].FD == e.FD) {
			t.CloseAll()
			return nil, fmt.Errorf("vfs: restore fd table: bad or repeated descriptor %d", e.FD)
		}
		d := descs[e.Desc]
		if d == nil {
			reopen := fs.Reopen
			if e.File.Kind == KindPipe {
				reopen = r.reopenPipe
			}
			f, errno := reopen(e.File)
			if errno != 0 {
				t.CloseAll()
				return nil, fmt.Errorf("vfs: restore fd %d (%s %q): %w", e.FD, e.File.Kind, e.File.Path, errno)
			}
			d = &description{file: f, own: e.Owner}
			descs[e.Desc] = d
			r.kinds[e.Desc] = e.File.Kind
		} else if r.kinds[e.Desc] != e.File.Kind {
			t.CloseAll()
			return nil, fmt.Errorf("vfs: restore fd %d: description %d has two kinds", e.FD, e.Desc)
		}
		d.refs.Add(1)
		t.growLocked(e.FD)
		t.slots[e.FD] = fdSlot{desc: d, cloexec: e.CloseOnExec}
	}
	return t, nil
}

// Open lists the open descriptors in increasing order (/proc/PID/fd).
func (t *FDTable) Open() []int {
	t.mu.Lock()
	defer t.mu.Unlock()
	var fds []int
	for fd, s := range t.slots {
		if s.desc != nil {
			fds = append(fds, fd)
		}
	}
	return fds
}
