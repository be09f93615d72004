package kernel

import (
	"encoding/binary"
	"math"
	"time"

	"github.com/emuckpt/emuckpt/kernel/vfs"
	"golang.org/x/sys/unix"
)

// epoll. An epoll file holds items, each a (descriptor, open file) pair
// with the events it asks for and the data to report. There are no
// wake-up callbacks: an item's readiness is its file's poll operation
// (vfs.PollFile), asked again each time epoll_wait looks, as for poll.
//
//   - Level-triggered items are reported while their file is ready;
//     a reported one goes to the end of the list, so that a wait with a
//     small maxevents does not starve the others (Linux requeues them at
//     the tail of its ready list likewise). Otherwise items are looked at
//     in the order they were added.
//   - Edge-triggered items (EPOLLET) are reported once per event: files
//     that count their wake-ups (vfs.EventCounter: pipes, eventfds,
//     epolls) again after each one, as Linux's ep_poll_callback queues
//     the item on each wake-up; other files when their readiness gains a
//     bit that the last epoll_wait did not see.
//   - EPOLLONESHOT disables an item once reported, until EPOLL_CTL_MOD.
//   - EPOLLEXCLUSIVE is accepted with Linux's checks; with one waiter per
//     wake-up being the only difference it makes, nothing else changes.
//   - An item lives until EPOLL_CTL_DEL, or until its descriptor in the
//     table of the process that added it is closed or refers to another
//     file. (Linux keeps it while the open file description lives, dup'ed
//     descriptors included.)
//   - An epoll file polls readable while one of its items would be
//     reported, so it can be watched by another epoll or poll; adding an
//     epoll that reaches back to the one it is added to, or a chain deeper
//     than Linux's EP_MAX_NESTS below it, fails with ELOOP.

// KindEpoll is the FileState kind of an epoll descriptor. Images do not
// hold epolls yet: a checkpoint of a process that has one is refused.
const KindEpoll vfs.FileKind = "epoll"

// epoll_ctl operations and event flags (uapi/linux/eventpoll.h).
const (
	epollCtlAdd = 1
	epollCtlDel = 2
	epollCtlMod = 3

	epollRdhup     = 0x2000
	epollExclusive = 1 << 28
	epollWakeup    = 1 << 29
	epollOneshot   = 1 << 30
	epollET        = 1 << 31

	// epPrivate are the item's flags, not events (EP_PRIVATE_BITS).
	epPrivate = epollWakeup | epollOneshot | epollET | epollExclusive
	// epExclusiveOK are the bits EPOLLEXCLUSIVE may come with
	// (EPOLLEXCLUSIVE_OK_BITS).
	epExclusiveOK = vfs.PollIn | vfs.PollOut | vfs.PollErr | vfs.PollHup | epollWakeup | epollET | epollExclusive
	// epMaxNests is how deep epolls may be nested (EP_MAX_NESTS).
	epMaxNests = 4
	// epEventSize is sizeof(struct epoll_event): packed on x86-64.
	epEventSize = 12
	// epMaxEvents is EP_MAX_EVENTS.
	epMaxEvents = math.MaxInt32 / epEventSize
)

// epollFile is an open epoll instance.
type epollFile struct {
	flags int
	items []*epItem
	// ctls counts the changes made by epoll_ctl (part of PollEvents).
	ctls uint64
}

// epItem is one watched descriptor.
type epItem struct {
	fd   int
	file vfs.File
	fds  *vfs.FDTable // the table fd was added from
	// events are the requested events and flags; a oneshot item that
	// fired keeps only its flags.
	events uint32
	data   uint64
	// Edge-triggered state: fresh is set by ADD and MOD (report if
	// ready); count is the file's event count at the last report;
	// seen is the readiness epoll_wait last saw (for files that count
	// no events).
	fresh bool
	count uint64
	seen  uint32
}

// live reports whether the item's descriptor still refers to its file.
func (it *epItem) live() bool {
	f, e := it.fds.Get(it.fd)
	return e == 0 && f == it.file
}

// due returns the events the item would report now (0: none). It changes
// nothing.
func (it *epItem) due() uint32 {
	m := vfs.PollFile(it.file) & it.events &^ epPrivate
	if m == 0 || it.events&epollET == 0 || it.fresh {
		return m
	}
	if c, ok := vfs.As[vfs.EventCounter](it.file); ok {
		if c.PollEvents() != it.count {
			return m
		}
		return 0
	}
	if m&^it.seen != 0 {
		return m
	}
	return 0
}

// reported updates the item after it was reported with events m.
func (it *epItem) reported(m uint32) {
	it.fresh = false
	it.seen = m
	if c, ok := vfs.As[vfs.EventCounter](it.file); ok {
		it.count = c.PollEvents()
	}
	if it.events&epollOneshot != 0 {
		it.events &= epPrivate
	}
}

// prune drops the items whose descriptor was closed.
func (ep *epollFile) prune() {
	items := ep.items[:0]
	for _, it := range ep.items {
		if it.live() {
			items = append(items, it)
		}
	}
	clear(ep.items[len(items):])
	ep.items = items
}

// readyCount is how many items would be reported now, at most max.
func (ep *epollFile) readyCount(max int) int {
	n := 0
	for _, it := range ep.items {
		if n < max && it.live() && it.due() != 0 {
			n++
		}
	}
	return n
}

// epEvent is one struct epoll_event to report.
type epEvent struct {
	events uint32
	data   uint64
}

// collect takes up to max events: the items reported are updated (edge
// and oneshot state) and level-triggered ones move to the end.
func (ep *epollFile) collect(max int) []epEvent {
	ep.prune()
	var out []epEvent
	var keep, again []*epItem
	for _, it := range ep.items {
		m := uint32(0)
		if len(out) < max {
			m = it.due()
		}
		if m == 0 {
			if it.events&epollET != 0 && !it.fresh {
				it.seen = vfs.PollFile(it.file) & it.events &^ epPrivate
			}
			keep = append(keep, it)
			continue
		}
		out = append(out, epEvent{m, it.data})
		it.reported(m)
		if it.events&(epollET|epollOneshot) == 0 {
			again = append(again, it)
		} else {
			keep = append(keep, it)
		}
	}
	ep.items = append(keep, again...)
	return out
}

// files lists the files the epoll watches, through nested epolls: what a
// wait on it polls on the host or times by a device.
func (ep *epollFile) files(out []vfs.File, depth int) []vfs.File {
	for _, it := range ep.items {
		if inner, ok := it.file.(*epollFile); ok && depth < epMaxNests+1 {
			out = inner.files(out, depth+1)
		} else {
			out = append(out, it.file)
		}
	}
	return out
}

// watchedFiles is files with each epoll replaced by the files it watches
// (through nested ones): what a wait on them polls on the host and times
// by a device.
func watchedFiles(files []vfs.File) []vfs.File {
	var out []vfs.File
	for i, f := range files {
		if ep, ok := f.(*epollFile); ok {
			if out == nil {
				out = append(out, files[:i]...)
			}
			out = ep.files(out, 1)
		} else if out != nil {
			out = append(out, f)
		}
	}
	if out == nil {
		return files
	}
	return out
}

// reaches reports whether target is ep or is nested in ep, and depth is
// how many levels of epolls ep has below it (1: none).
func (ep *epollFile) reaches(target *epollFile, level int) (found bool, depth int) {
	if ep == target {
		return true, 1
	}
	depth = 1
	if level > epMaxNests+1 {
		return false, depth
	}
	for _, it := range ep.items {
		if inner, ok := it.file.(*epollFile); ok {
			f, d := inner.reaches(target, level+1)
			if f {
				return true, 0
			}
			depth = max(depth, d+1)
		}
	}
	return false, depth
}

// Poll is ep_eventpoll_poll: readable while an item would be reported.
func (ep *epollFile) Poll() uint32 {
	if ep.readyCount(1) > 0 {
		return vfs.PollIn | vfs.PollRdnorm
	}
	return 0
}

// PollEvents counts the epoll's own changes and its files' events.
func (ep *epollFile) PollEvents() uint64 {
	n := ep.ctls
	for _, it := range ep.items {
		if c, ok := vfs.As[vfs.EventCounter](it.file); ok {
			n += c.PollEvents()
		}
	}
	return n
}

func (ep *epollFile) Read([]byte) (int, unix.Errno)          { return 0, unix.EINVAL }
func (ep *epollFile) Write([]byte) (int, unix.Errno)         { return 0, unix.EINVAL }
func (ep *epollFile) Pread([]byte, int64) (int, unix.Errno)  { return 0, unix.EINVAL }
func (ep *epollFile) Pwrite([]byte, int64) (int, unix.Errno) { return 0, unix.EINVAL }
func (ep *epollFile) Lseek(int64, int) (int64, unix.Errno)   { return 0, unix.ESPIPE }
func (ep *epollFile) Getdents64(int) ([]byte, unix.Errno)    { return nil, unix.ENOTDIR }
func (ep *epollFile) Close() unix.Errno                      { ep.items = nil; return 0 }
func (ep *epollFile) Flags() int                             { return ep.flags }
func (ep *epollFile) SetFlags(arg int) {
	ep.flags = ep.flags&^vfs.StatusFlagsMask | arg&vfs.StatusFlagsMask
}
func (ep *epollFile) Ioctl(uint64, uint64, vfs.Memory) (uint64, unix.Errno) { return 0, unix.ENOTTY }

// Stat is an anonymous inode's (see timerFile.Stat).
func (ep *epollFile) Stat() (vfs.Stat, unix.Errno) {
	return vfs.Stat{Mode: 0o600, Nlink: 1, Uid: uint32(unix.Getuid()), Gid: uint32(unix.Getgid()), Blksize: 4096}, 0
}

func (ep *epollFile) Describe() vfs.FileState {
	return vfs.FileState{Kind: KindEpoll, Path: "anon_inode:[eventpoll]", Flags: ep.flags}
}

// canPoll is Linux's file_can_poll: the file has a poll operation.
// Regular files and directories have none.
func canPoll(f vfs.File) bool {
	if _, ok := vfs.As[vfs.Poller](f); ok {
		return true
	}
	_, ok := vfs.As[vfs.HostPoller](f)
	return ok
}

// sysEpollCreate is epoll_create(size): size is only checked.
func (k *Kernel) sysEpollCreate(t *Task, a *args) (uint64, unix.Errno) {
	if int32(a[0]) <= 0 {
		return 0, unix.EINVAL
	}
	return k.epollCreate(t, 0)
}

// sysEpollCreate1 is epoll_create1(flags).
func (k *Kernel) sysEpollCreate1(t *Task, a *args) (uint64, unix.Errno) {
	flags := int(int32(a[0]))
	if flags&^unix.EPOLL_CLOEXEC != 0 {
		return 0, unix.EINVAL
	}
	return k.epollCreate(t, flags)
}

func (k *Kernel) epollCreate(t *Task, flags int) (uint64, unix.Errno) {
	fd, e := t.proc.fds.Install(&epollFile{flags: unix.O_RDWR}, flags&unix.EPOLL_CLOEXEC != 0)
	if e != 0 {
		return 0, e
	}
	return uint64(fd), 0
}

// sysEpollCtl is epoll_ctl(epfd, op, fd, event), with do_epoll_ctl's
// order of checks.
func (k *Kernel) sysEpollCtl(t *Task, a *args) (uint64, unix.Errno) {
	op := int(int32(a[1]))
	fd := int(int32(a[2]))
	var events uint32
	var data uint64
	if op != epollCtlDel {
		var b [epEventSize]byte
		if e := k.copyIn(t, a[3], b[:]); e != 0 {
			return 0, e
		}
		events = binary.LittleEndian.Uint32(b[:])
		data = binary.LittleEndian.Uint64(b[4:])
		// EPOLLWAKEUP needs CAP_BLOCK_SUSPEND; without it, it is dropped.
		events &^= epollWakeup
	}
	ef, e := k.file(t, a[0])
	if e != 0 {
		return 0, e
	}
	tf, e := k.file(t, a[2])
	if e != 0 {
		return 0, e
	}
	if !canPoll(tf) {
		return 0, unix.EPERM
	}
	ep, ok := ef.(*epollFile)
	if !ok || ef == tf {
		return 0, unix.EINVAL
	}
	inner, nested := tf.(*epollFile)
	if op != epollCtlDel && events&epollExclusive != 0 {
		if op == epollCtlMod || op == epollCtlAdd && (nested || events&^epExclusiveOK != 0) {
			return 0, unix.EINVAL
		}
	}
	if op == epollCtlAdd && nested {
		if found, depth := inner.reaches(ep, 1); found || depth >= epMaxNests+1 {
			return 0, unix.ELOOP
		}
	}
	ep.prune()
	var it *epItem
	at := -1
	for i, x := range ep.items {
		if x.fd == fd && x.file == tf {
			it, at = x, i
		}
	}
	switch op {
	case epollCtlAdd:
		if it != nil {
			return 0, unix.EEXIST
		}
		ep.items = append(ep.items, &epItem{fd: fd, file: tf, fds: t.proc.fds, events: events | vfs.PollErr | vfs.PollHup, data: data, fresh: true})
	case epollCtlDel:
		if it == nil {
			return 0, unix.ENOENT
		}
		ep.items = append(ep.items[:at], ep.items[at+1:]...)
	case epollCtlMod:
		if it == nil {
			return 0, unix.ENOENT
		}
		if it.events&epollExclusive != 0 {
			return 0, unix.EINVAL
		}
		it.events, it.data, it.fresh = events|vfs.PollErr|vfs.PollHup, data, true
	default:
		return 0, unix.EINVAL
	}
	ep.ctls++
	return 0, 0
}

// epollWait is the work of the epoll_wait family: up to maxevents events
// to the array at va, waiting until deadline.
func (k *Kernel) epollWait(t *Task, epfd, va uint64, maxevents int, deadline int64) (uint64, unix.Errno) {
	if maxevents <= 0 || maxevents > epMaxEvents {
		return 0, unix.EINVAL
	}
	f, e := k.file(t, epfd)
	if e != 0 {
		return 0, e
	}
	ep, ok := f.(*epollFile)
	if !ok {
		return 0, unix.EINVAL
	}
	ep.prune()
	if _, e := k.pollWait(t, []vfs.File{ep}, deadline, func() int { return ep.readyCount(maxevents) }); e != 0 {
		return 0, e
	}
	// Events that cannot be copied out stay to be reported (Linux puts
	// them back on its ready list): the items are as they were.
	order := append([]*epItem(nil), ep.items...)
	saved := make([]epItem, len(order))
	for i, it := range order {
		saved[i] = *it
	}
	evs := ep.collect(maxevents)
	b := make([]byte, epEventSize*len(evs))
	for i, ev := range evs {
		binary.LittleEndian.PutUint32(b[epEventSize*i:], ev.events)
		binary.LittleEndian.PutUint64(b[epEventSize*i+4:], ev.data)
	}
	if e := k.copyOut(t, va, b); e != 0 {
		for i, it := range order {
			*it = saved[i]
		}
		ep.items = order
		return 0, e
	}
	return uint64(len(evs)), 0
}

// epollTimeout is the deadline of a timeout in milliseconds (negative:
// none).
func (k *Kernel) epollTimeout(t *Task, ms int32) int64 {
	d := int64(-1)
	if ms >= 0 {
		d = int64(ms) * int64(time.Millisecond)
	}
	return k.deadline(t, d)
}

// sysEpollWait is epoll_wait(epfd, events, maxevents, timeout_ms).
func (k *Kernel) sysEpollWait(t *Task, a *args) (uint64, unix.Errno) {
	return k.epollWait(t, a[0], a[1], int(int32(a[2])), k.epollTimeout(t, int32(a[3])))
}

// sysEpollPwait is epoll_pwait(epfd, events, maxevents, timeout_ms,
// sigmask, sigsetsize): the mask holds during the wait, as ppoll's.
func (k *Kernel) sysEpollPwait(t *Task, a *args) (uint64, unix.Errno) {
	if a[4] != 0 && a[5] != sigsetSize {
		return 0, unix.EINVAL
	}
	deadline := k.epollTimeout(t, int32(a[3]))
	return k.withSigmask(t, a[4], func() (uint64, unix.Errno) {
		return k.epollWait(t, a[0], a[1], int(int32(a[2])), deadline)
	})
}

// sysEpollPwait2 is epoll_pwait2(epfd, events, maxevents, timeout,
// sigmask, sigsetsize): the timeout is a timespec (NULL: none).
func (k *Kernel) sysEpollPwait2(t *Task, a *args) (uint64, unix.Errno) {
	if a[4] != 0 && a[5] != sigsetSize {
		return 0, unix.EINVAL
	}
	deadline, e := k.timespecDeadline(t, a[3])
	if e != 0 {
		return 0, e
	}
	return k.withSigmask(t, a[4], func() (uint64, unix.Errno) {
		return k.epollWait(t, a[0], a[1], int(int32(a[2])), deadline)
	})
}
