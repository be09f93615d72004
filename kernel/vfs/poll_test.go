package vfs

import (
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestPollFile(t *testing.T) {
	fs := newTestFS(t, newTestTree(t), false)
	open := func(p string, flags int) File {
		f, errno := fs.Open("/", p, flags)
		require.Zero(t, errno, p)
		t.Cleanup(func() { f.Close() })
		return f
	}
	// Pipes in each state, as pipe_poll reports them.
	emptyR, emptyW := NewPipe(0)
	dataR, dataW := NewPipe(0)
	_, errno := dataW.Write([]byte("x"))
	require.Zero(t, errno)
	fullR, fullW := NewPipe(0)
	_, errno = fullW.Write(make([]byte, PipeCapacity))
	require.Zero(t, errno)
	hupR, hupW := NewPipe(0)
	require.Zero(t, hupW.Close())
	errR, errW := NewPipe(0)
	require.Zero(t, errR.Close())
	_, _, _ = dataR, fullR, errW

	for _, tt := range []struct {
		name string
		f    File
		want uint32
	}{
		{"regular file", open("/etc/passwd", unix.O_RDONLY), DefaultPollMask},
		{"directory", open("/dev", unix.O_RDONLY|unix.O_DIRECTORY), DefaultPollMask},
		{"/dev/null", open("/dev/null", unix.O_RDWR), DefaultPollMask},
		{"/dev/zero", open("/dev/zero", unix.O_RDONLY), DefaultPollMask},
		{"/dev/urandom", open("/dev/urandom", unix.O_RDONLY), DefaultPollMask},
		{"/proc/self/maps", open("/proc/self/maps", unix.O_RDONLY), DefaultPollMask},
		{"empty pipe, read end", emptyR, 0},
		{"empty pipe, write end", emptyW, PollOut | PollWrnorm},
		{"pipe with data, read end", dataR, PollIn | PollRdnorm},
		{"full pipe, write end", fullW, 0},
		{"full pipe, read end", fullR, PollIn | PollRdnorm},
		{"no writer left, read end", hupR, PollHup},
		{"no reader left, write end", errW, PollOut | PollWrnorm | PollErr},
	} {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, PollFile(tt.f))
		})
	}
}

// TestPollHostStream: the host's standard streams are polled on the host.
func TestPollHostStream(t *testing.T) {
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	defer w.Close()
	fs, err := New(Options{Stdin: r, Stdout: w})
	require.NoError(t, err)
	defer fs.Close()
	in, out := fs.stdio("stdin"), fs.stdio("stdout")
	assert.Zero(t, PollFile(in)&PollIn, "nothing written yet")
	assert.NotZero(t, PollFile(out)&PollOut)
	_, err = w.Write([]byte("line\n"))
	require.NoError(t, err)
	assert.Equal(t, uint32(PollIn|PollRdnorm), PollFile(in)&(PollIn|PollRdnorm))
	_, ok := As[HostPoller](in)
	assert.True(t, ok)
}

// asyncDevice is a device with an AsyncSource, registered like /dev/hpet.
type asyncDevice struct {
	DeviceBase
	events uint64
}

func (d *asyncDevice) AsyncEvents() uint64 { n := d.events; d.events = 0; return n }
func (d *asyncDevice) Poll() uint32        { return PollIn }

func TestAsFindsWrappedDevice(t *testing.T) {
	fs := newTestFS(t, newTestTree(t), false)
	dev := &asyncDevice{events: 3}
	require.NoError(t, fs.AddDevice("/dev/async", DeviceInfo{Major: 1, Minor: 99, Perm: 0o444},
		func(int) (File, unix.Errno) { return dev, 0 }))
	f, errno := fs.Open("/", "/dev/async", unix.O_RDONLY)
	require.Zero(t, errno)
	src, ok := As[AsyncSource](f)
	require.True(t, ok, "the registered device's own File is found through the wrapper")
	assert.Equal(t, uint64(3), src.AsyncEvents())
	assert.Equal(t, uint32(PollIn), PollFile(f))
	_, ok = As[ReadyTimer](f)
	assert.False(t, ok)
}

func TestFDTableOwner(t *testing.T) {
	tab := NewFDTable()
	a := &countingFile{name: "a"}
	fd, errno := tab.Install(a, false)
	require.Zero(t, errno)
	dup, errno := tab.Dup(fd)
	require.Zero(t, errno)
	other, errno := tab.Install(&countingFile{name: "b"}, false)
	require.Zero(t, errno)

	_, errno = tab.Owner(99)
	assert.Equal(t, unix.EBADF, errno)
	assert.Equal(t, unix.EBADF, tab.SetOwner(99, func(*Owner) {}))

	require.Zero(t, tab.SetOwner(fd, func(o *Owner) { o.PID, o.Signal, o.FD = 2, 12, fd }))
	own, errno := tab.Owner(dup)
	require.Zero(t, errno)
	assert.Equal(t, Owner{PID: 2, Signal: 12, FD: fd}, own, "dup'ed descriptors share the description's owner")
	own, _ = tab.Owner(other)
	assert.Equal(t, Owner{}, own)

	assert.Empty(t, tab.AsyncFiles(), "an owner without O_ASYNC")
	b, _ := tab.Get(other)
	b.SetFlags(unix.O_ASYNC)
	assert.Equal(t, []AsyncFile{{File: b}}, tab.AsyncFiles(), "O_ASYNC without an owner")
	b.SetFlags(0)
	a.SetFlags(unix.O_ASYNC)
	assert.Equal(t, []AsyncFile{{File: a, Owner: Owner{PID: 2, Signal: 12, FD: fd}}}, tab.AsyncFiles(), "listed once for two descriptors")
	require.Zero(t, tab.SetOwner(fd, func(o *Owner) { o.PID = 0 }))
	assert.Equal(t, []AsyncFile{{File: a, Owner: Owner{Signal: 12, FD: fd}}}, tab.AsyncFiles(), "O_ASYNC without an owner: listed, so that its events are dropped")
}

func TestSnapshotRestoreOwner(t *testing.T) {
	fs := newTestFS(t, newTestTree(t), false)
	tab := fs.NewFDTable()
	f, errno := fs.Open("/", "/dev/null", unix.O_RDONLY)
	require.Zero(t, errno)
	fd, errno := tab.Install(f, false)
	require.Zero(t, errno)
	f.SetFlags(unix.O_ASYNC)
	require.Zero(t, tab.SetOwner(fd, func(o *Owner) { *o = Owner{PID: -2, Signal: 34, FD: fd} }))
	snap := tab.Snapshot()
	restored, err := fs.RestoreFDTable(snap, 64)
	require.NoError(t, err)
	own, errno := restored.Owner(fd)
	require.Zero(t, errno)
	assert.Equal(t, Owner{PID: -2, Signal: 34, FD: fd}, own)
	rf, _ := restored.Get(fd)
	assert.NotZero(t, rf.Flags()&unix.O_ASYNC, "O_ASYNC is a status flag and comes back with the flags")
}
