package kernel

import (
	"encoding/binary"
	"math"
	"testing"

	"github.com/emuckpt/emuckpt/kernel/vfs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func u64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }

func TestEventfd(t *testing.T) {
	buf := make([]byte, 8)
	f := &eventFile{count: 2, flags: unix.O_RDWR | unix.O_NONBLOCK}
	steps := []struct {
		name  string
		op    func() (int, unix.Errno)
		n     int
		errno unix.Errno
		count uint64
		poll  uint32
	}{
		{"read all", func() (int, unix.Errno) { return f.Read(buf) }, 8, 0, 0, vfs.PollOut | vfs.PollWrnorm},
		{"read empty", func() (int, unix.Errno) { return f.Read(buf) }, 0, unix.EAGAIN, 0, vfs.PollOut | vfs.PollWrnorm},
		{"short read", func() (int, unix.Errno) { return f.Read(buf[:7]) }, 0, unix.EINVAL, 0, vfs.PollOut | vfs.PollWrnorm},
		{"write 2^64-1", func() (int, unix.Errno) { return f.Write(u64(math.MaxUint64)) }, 0, unix.EINVAL, 0, vfs.PollOut | vfs.PollWrnorm},
		{"write to the top", func() (int, unix.Errno) { return f.Write(u64(efdMax)) }, 8, 0, efdMax, vfs.PollIn | vfs.PollRdnorm},
		{"write past it", func() (int, unix.Errno) { return f.Write(u64(1)) }, 0, unix.EAGAIN, efdMax, vfs.PollIn | vfs.PollRdnorm},
		{"write 0", func() (int, unix.Errno) { return f.Write(u64(0)) }, 8, 0, efdMax, vfs.PollIn | vfs.PollRdnorm},
	}
	for _, s := range steps {
		n, e := s.op()
		assert.Equal(t, s.n, n, s.name)
		assert.Equal(t, s.errno, e, s.name)
		assert.Equal(t, s.count, f.count, s.name)
		assert.Equal(t, s.poll, f.Poll(), s.name)
	}
	assert.Equal(t, uint64(2), binary.LittleEndian.Uint64(buf), "the first read took the count")
	assert.Equal(t, uint64(2), f.PollEvents(), "a read and a write changed the count")

	// A blocking descriptor waits instead of EAGAIN; a semaphore reads 1.
	sem := &eventFile{count: 1, semaphore: true, flags: unix.O_RDWR}
	n, e := sem.Read(buf)
	require.Equal(t, 8, n)
	require.Equal(t, unix.Errno(0), e)
	assert.Equal(t, uint64(1), binary.LittleEndian.Uint64(buf))
	_, e = sem.Read(buf)
	assert.Equal(t, vfs.EBLOCK, e)
	sem.count = efdMax
	_, e = sem.Write(u64(1))
	assert.Equal(t, vfs.EBLOCK, e)
}

// epollFixture is an epoll and a pipe in a test task's table.
type epollFixture struct {
	k      *Kernel
	task   *Task
	ep     *epollFile
	epfd   uint64
	rd, wr int
}

func newEpollFixture(t *testing.T) *epollFixture {
	k, task := newTestTask(t, false)
	epfd, e := call(k, task, (*Kernel).sysEpollCreate1, 0)
	require.Equal(t, unix.Errno(0), e)
	f, _ := task.proc.fds.Get(int(epfd))
	r, w := vfs.NewPipe(unix.O_NONBLOCK)
	rd, _ := task.proc.fds.Install(r, false)
	wr, _ := task.proc.fds.Install(w, false)
	return &epollFixture{k: k, task: task, ep: f.(*epollFile), epfd: epfd, rd: rd, wr: wr}
}

func (x *epollFixture) ctl(op int, fd int, events uint32, data uint64) unix.Errno {
	b := binary.LittleEndian.AppendUint32(nil, events)
	b = binary.LittleEndian.AppendUint64(b, data)
	if err := x.task.proc.as.CopyOut(scratch, b); err != nil {
		panic(err)
	}
	_, e := call(x.k, x.task, (*Kernel).sysEpollCtl, x.epfd, uint64(op), uint64(fd), scratch)
	return e
}

// wait is epoll_wait with timeout 0: the data of the events reported.
func (x *epollFixture) wait(t *testing.T, max int) []uint64 {
	t.Helper()
	n, e := call(x.k, x.task, (*Kernel).sysEpollWait, x.epfd, scratch+64, uint64(max), 0)
	require.Equal(t, unix.Errno(0), e)
	b := getBytes(t, x.task, scratch+64, int(n)*epEventSize)
	var data []uint64
	for i := 0; i < int(n); i++ {
		data = append(data, binary.LittleEndian.Uint64(b[epEventSize*i+4:]))
	}
	return data
}

func (x *epollFixture) write(t *testing.T, fd int, b []byte) {
	f, _ := x.task.proc.fds.Get(fd)
	n, e := f.Write(b)
	require.Equal(t, len(b), n)
	require.Equal(t, unix.Errno(0), e)
}

// TestEpollEdgeTriggered: an edge-triggered pipe is reported again after
// each write, even while it stayed readable (Linux wakes it on each).
func TestEpollEdgeTriggered(t *testing.T) {
	x := newEpollFixture(t)
	require.Equal(t, unix.Errno(0), x.ctl(epollCtlAdd, x.rd, vfs.PollIn|epollET, 7))
	assert.Empty(t, x.wait(t, 4))
	x.write(t, x.wr, []byte("a"))
	assert.Equal(t, []uint64{7}, x.wait(t, 4))
	assert.Empty(t, x.wait(t, 4), "reported once")
	x.write(t, x.wr, []byte("b"))
	assert.Equal(t, []uint64{7}, x.wait(t, 4), "a new write is a new edge")
	require.Equal(t, unix.Errno(0), x.ctl(epollCtlMod, x.rd, vfs.PollIn|epollET, 8))
	assert.Equal(t, []uint64{8}, x.wait(t, 4), "MOD rearms a ready item")
	x.write(t, x.wr, []byte("c"))
	_, e := call(x.k, x.task, (*Kernel).sysEpollWait, x.epfd, 8, 4, 0)
	assert.Equal(t, unix.EFAULT, e)
	assert.Equal(t, []uint64{8}, x.wait(t, 4), "an event that could not be copied out is still there")
}

// pollOnly is a file with a poll operation and no event count.
type pollOnly struct {
	eventFile
	mask uint32
}

func (p *pollOnly) Poll() uint32 { return p.mask }

// TestEpollEdgeWithoutCount: a file that counts no events is reported
// when its readiness gains a bit the last wait did not see.
func TestEpollEdgeWithoutCount(t *testing.T) {
	x := newEpollFixture(t)
	f := &pollOnly{}
	fd, _ := x.task.proc.fds.Install(struct {
		vfs.Poller
		vfs.File
	}{f, f}, false)
	require.Equal(t, unix.Errno(0), x.ctl(epollCtlAdd, fd, vfs.PollIn|vfs.PollOut|epollET, 1))
	f.mask = vfs.PollIn
	assert.Equal(t, []uint64{1}, x.wait(t, 4))
	assert.Empty(t, x.wait(t, 4))
	f.mask = vfs.PollIn | vfs.PollOut
	assert.Equal(t, []uint64{1}, x.wait(t, 4), "POLLOUT is new")
	f.mask = 0
	assert.Empty(t, x.wait(t, 4))
	f.mask = vfs.PollIn
	assert.Equal(t, []uint64{1}, x.wait(t, 4), "readable again after a wait saw it not")
}

// TestEpollLevelAndOneshot: level-triggered items go round, a oneshot item
// is reported once until MOD, a closed descriptor leaves the set.
func TestEpollLevelAndOneshot(t *testing.T) {
	x := newEpollFixture(t)
	var fds []int
	for i := 0; i < 3; i++ {
		fd, _ := x.task.proc.fds.Install(&eventFile{count: 1, flags: unix.O_RDWR}, false)
		fds = append(fds, fd)
		require.Equal(t, unix.Errno(0), x.ctl(epollCtlAdd, fd, vfs.PollIn, uint64(i+1)))
	}
	assert.Equal(t, []uint64{1, 2}, x.wait(t, 2))
	assert.Equal(t, []uint64{3, 1}, x.wait(t, 2))
	require.Equal(t, unix.Errno(0), x.ctl(epollCtlMod, fds[0], vfs.PollIn|epollOneshot, 9))
	assert.ElementsMatch(t, []uint64{9, 2, 3}, x.wait(t, 4))
	assert.ElementsMatch(t, []uint64{2, 3}, x.wait(t, 4), "the oneshot item is disabled")
	assert.Equal(t, unix.EEXIST, x.ctl(epollCtlAdd, fds[0], vfs.PollIn, 0), "a disabled item is still there")
	x.task.proc.fds.Close(fds[1])
	assert.Equal(t, []uint64{3}, x.wait(t, 4))
	assert.Equal(t, unix.EBADF, x.ctl(epollCtlDel, fds[1], 0, 0), "the descriptor is closed")
}

// TestEpollBlocks: a wait with nothing ready blocks on the watched files
// (nested epolls included) and is ready once one is.
func TestEpollBlocks(t *testing.T) {
	x := newEpollFixture(t)
	inner, _ := call(x.k, x.task, (*Kernel).sysEpollCreate1, 0)
	innerFile, _ := x.task.proc.fds.Get(int(inner))
	require.Equal(t, unix.Errno(0), x.ctl(epollCtlAdd, int(inner), vfs.PollIn, 5))
	// Fill the inner epoll through its own ctl.
	outer := x.epfd
	x.epfd = inner
	require.Equal(t, unix.Errno(0), x.ctl(epollCtlAdd, x.rd, vfs.PollIn, 6))
	x.epfd = outer
	assert.Equal(t, unix.ELOOP, func() unix.Errno {
		x.epfd = inner
		defer func() { x.epfd = outer }()
		return x.ctl(epollCtlAdd, int(outer), vfs.PollIn, 0)
	}())

	// poll of the outer epoll waits on the same files.
	pfd := binary.LittleEndian.AppendUint32(nil, uint32(outer))
	pfd = binary.LittleEndian.AppendUint32(pfd, vfs.PollIn)
	require.NoError(t, x.task.proc.as.CopyOut(scratch+0x200, pfd))
	_, e := call(x.k, x.task, (*Kernel).sysPoll, scratch+0x200, 1, math.MaxUint32)
	require.Equal(t, eBlock, e)
	rdFile, _ := x.task.proc.fds.Get(x.rd)
	assert.Equal(t, []vfs.File{rdFile}, x.task.wait.files, "poll waits on the epoll's files")
	x.task.wait = nil

	_, e = call(x.k, x.task, (*Kernel).sysEpollWait, outer, scratch+64, 4, math.MaxUint32)
	require.Equal(t, eBlock, e)
	require.NotNil(t, x.task.wait)
	assert.Equal(t, []vfs.File{rdFile}, x.task.wait.files, "the nested epoll's pipe is waited on")
	assert.Equal(t, int64(math.MaxInt64), x.task.wait.deadline)
	assert.False(t, x.task.wait.ready())
	x.write(t, x.wr, []byte("x"))
	assert.True(t, x.task.wait.ready())
	assert.Equal(t, uint32(vfs.PollIn|vfs.PollRdnorm), vfs.PollFile(innerFile))
	assert.Equal(t, []uint64{5}, x.wait(t, 4))
}

func TestEpollCtlErrors(t *testing.T) {
	x := newEpollFixture(t)
	dir, err := x.k.fs.Open("/", "/", unix.O_RDONLY|unix.O_DIRECTORY)
	require.Equal(t, unix.Errno(0), err)
	dirfd, _ := x.task.proc.fds.Install(dir, false)
	cases := []struct {
		name   string
		op, fd int
		events uint32
		errno  unix.Errno
	}{
		{"bad fd", epollCtlAdd, 99, vfs.PollIn, unix.EBADF},
		{"directory", epollCtlAdd, dirfd, vfs.PollIn, unix.EPERM},
		{"itself", epollCtlAdd, int(x.epfd), vfs.PollIn, unix.EINVAL},
		{"exclusive with oneshot", epollCtlAdd, x.rd, vfs.PollIn | epollExclusive | epollOneshot, unix.EINVAL},
		{"mod missing", epollCtlMod, x.rd, vfs.PollIn, unix.ENOENT},
		{"add exclusive", epollCtlAdd, x.rd, vfs.PollIn | epollExclusive, 0},
		{"mod exclusive item", epollCtlMod, x.rd, vfs.PollIn, unix.EINVAL},
		{"add again", epollCtlAdd, x.rd, vfs.PollIn, unix.EEXIST},
		{"bad op", 7, x.rd, vfs.PollIn, unix.EINVAL},
		{"del", epollCtlDel, x.rd, 0, 0},
	}
	for _, c := range cases {
		assert.Equal(t, c.errno, x.ctl(c.op, c.fd, c.events, 0), c.name)
	}
	_, e := call(x.k, x.task, (*Kernel).sysEpollWait, x.epfd, scratch, 0, 0)
	assert.Equal(t, unix.EINVAL, e, "maxevents 0")
	_, e = call(x.k, x.task, (*Kernel).sysEpollWait, uint64(x.rd), scratch, 1, 0)
	assert.Equal(t, unix.EINVAL, e, "not an epoll")
}

func TestAffinityAndGetcpu(t *testing.T) {
	k, task := newTestTask(t, false)
	require.NoError(t, task.proc.as.CopyOut(scratch, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xee, 0xee}))
	n, e := call(k, task, (*Kernel).sysSchedGetaffinity, 0, 128, scratch)
	require.Equal(t, unix.Errno(0), e)
	assert.Equal(t, uint64(8), n)
	assert.Equal(t, []byte{1, 0, 0, 0, 0, 0, 0, 0, 0xee, 0xee}, getBytes(t, task, scratch, 10), "CPU 0, 8 bytes written")
	for _, c := range []struct {
		name  string
		h     handler
		a     []uint64
		errno unix.Errno
	}{
		{"get: length not whole longs", (*Kernel).sysSchedGetaffinity, []uint64{0, 12, scratch}, unix.EINVAL},
		{"get: no such task", (*Kernel).sysSchedGetaffinity, []uint64{4242, 8, scratch}, unix.ESRCH},
		{"get: own tid", (*Kernel).sysSchedGetaffinity, []uint64{uint64(task.tid), 8, scratch}, 0},
		{"set: CPU 0", (*Kernel).sysSchedSetaffinity, []uint64{0, 1, scratch}, 0},
		{"set: no such task", (*Kernel).sysSchedSetaffinity, []uint64{4242, 8, scratch}, unix.ESRCH},
		{"set: bad pointer", (*Kernel).sysSchedSetaffinity, []uint64{0, 8, 8}, unix.EFAULT},
		{"set: CPU 1 only", (*Kernel).sysSchedSetaffinity, []uint64{0, 1, scratch + 0x100}, unix.EINVAL},
	} {
		require.NoError(t, task.proc.as.CopyOut(scratch, []byte{1}))
		require.NoError(t, task.proc.as.CopyOut(scratch+0x100, []byte{2}))
		_, e := call(k, task, c.h, c.a...)
		assert.Equal(t, c.errno, e, c.name)
	}
	require.NoError(t, task.proc.as.CopyOut(scratch, []byte{9, 9, 9, 9, 9, 9, 9, 9}))
	_, e = call(k, task, (*Kernel).sysGetcpu, scratch, scratch+4, 0)
	require.Equal(t, unix.Errno(0), e)
	assert.Equal(t, make([]byte, 8), getBytes(t, task, scratch, 8))
}

func TestRtSigtimedwait(t *testing.T) {
	k, task := newTestTask(t, false)
	usr2 := sigBit(int(unix.SIGUSR2))
	task.sigmask = usr2
	require.NoError(t, task.proc.as.CopyOut(scratch, u64(usr2)))
	require.NoError(t, task.proc.as.CopyOut(scratch+8, make([]byte, 16))) // zero timeout

	_, e := call(k, task, (*Kernel).sysRtSigtimedwait, scratch, 0, scratch+8, 8)
	assert.Equal(t, unix.EAGAIN, e, "nothing pending, zero timeout")
	_, e = call(k, task, (*Kernel).sysRtSigtimedwait, scratch, 0, 0, 4)
	assert.Equal(t, unix.EINVAL, e, "sigsetsize")

	_, e = call(k, task, (*Kernel).sysRtSigtimedwait, scratch, scratch+0x100, 0, 8)
	require.Equal(t, eBlock, e, "no timeout: waits")
	assert.False(t, task.wait.ready())
	k.sendSignal(task, int(unix.SIGUSR2), siTkill)
	assert.True(t, task.wait.ready())
	task.resuming = true
	sig, e := call(k, task, (*Kernel).sysRtSigtimedwait, scratch, scratch+0x100, 0, 8)
	task.resuming = false
	require.Equal(t, unix.Errno(0), e)
	assert.Equal(t, uint64(unix.SIGUSR2), sig)
	assert.Zero(t, task.pending, "dequeued")
	info := getBytes(t, task, scratch+0x100, 24)
	le := binary.LittleEndian
	assert.Equal(t, uint32(unix.SIGUSR2), le.Uint32(info[0:]))
	assert.Equal(t, int32(siTkill), int32(le.Uint32(info[8:])))
	assert.Equal(t, uint32(task.proc.pid), le.Uint32(info[16:]))
}
