package vfs

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func pathAddr(p string) ([]byte, string) {
	b := append([]byte{unix.AF_UNIX, 0}, p...)
	addr, path, _, errno := ParseUnixAddr(b)
	if errno != 0 {
		panic(errno)
	}
	return addr, path
}

func TestParseUnixAddr(t *testing.T) {
	tests := []struct {
		name     string
		in       []byte
		addr     []byte
		path     string
		autobind bool
		errno    unix.Errno
	}{
		{"short", []byte{1}, nil, "", false, unix.EINVAL},
		{"family", []byte{2, 0, 'a'}, nil, "", false, unix.EINVAL},
		{"autobind", []byte{1, 0}, nil, "", true, 0},
		{"path", []byte{1, 0, 'a', 'b', 0, 'x'}, []byte{1, 0, 'a', 'b', 0}, "ab", false, 0},
		{"path without NUL", []byte{1, 0, 'a'}, []byte{1, 0, 'a', 0}, "a", false, 0},
		{"abstract", []byte{1, 0, 0, 'a', 0}, []byte{1, 0, 0, 'a', 0}, "", false, 0},
		{"too long", make([]byte, 111), nil, "", false, unix.EINVAL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, path, autobind, errno := ParseUnixAddr(tt.in)
			assert.Equal(t, tt.errno, errno)
			assert.Equal(t, tt.addr, addr)
			assert.Equal(t, tt.path, path)
			assert.Equal(t, tt.autobind, autobind)
		})
	}
}

func TestSocketPairStream(t *testing.T) {
	ns := NewSocketNamespace()
	a, b := NewSocketPair(ns, unix.SOCK_STREAM, true, Cred{PID: 7})
	assert.Equal(t, uint32(PollOut|PollWrnorm|PollWrband), a.Poll())
	n, errno := a.Write([]byte("hello"))
	require.Zero(t, errno)
	assert.Equal(t, 5, n)
	assert.NotZero(t, b.Poll()&PollIn)
	buf := make([]byte, 3)
	r, errno, _ := b.Recv(buf, true, false, false)
	require.Zero(t, errno)
	assert.Equal(t, "hel", string(buf[:r.N]))
	n, errno = b.Read(make([]byte, 10))
	require.Zero(t, errno)
	assert.Equal(t, 5, n, "the peek left the bytes")
	_, errno = b.Read(buf)
	assert.Equal(t, unix.EAGAIN, errno)

	// Fill a's send buffer: writes stop at sndbuf, then EAGAIN.
	total := 0
	for {
		n, errno := a.Write(make([]byte, 65536))
		if errno != 0 {
			assert.Equal(t, unix.EAGAIN, errno)
			break
		}
		total += n
	}
	assert.Equal(t, SockBufDefault, total)
	assert.Zero(t, a.Poll()&PollOut)

	// Closing b with data unread: a sees the end with ECONNRESET once,
	// EPIPE on write.
	b.Close()
	assert.Equal(t, uint32(PollErr|PollHup|PollRdhup|PollIn|PollRdnorm|PollOut|PollWrnorm|PollWrband), a.Poll())
	_, errno = a.Write([]byte("x"))
	assert.Equal(t, unix.EPIPE, errno)
	_, errno = a.Read(buf)
	assert.Equal(t, unix.ECONNRESET, errno)
	n, errno = a.Read(buf)
	assert.Zero(t, errno)
	assert.Zero(t, n)
	assert.Equal(t, Cred{PID: 7}, a.PeerCred())
}

func TestSocketBlockingWaits(t *testing.T) {
	ns := NewSocketNamespace()
	a, b := NewSocketPair(ns, unix.SOCK_STREAM, false, Cred{})
	_, errno, ready := b.Recv(make([]byte, 4), false, false, false)
	require.Equal(t, EBLOCK, errno)
	assert.False(t, ready())
	a.Write([]byte("ab"))
	assert.True(t, ready())
	// MSG_WAITALL waits for all four bytes.
	_, errno, ready = b.Recv(make([]byte, 4), false, true, false)
	require.Equal(t, EBLOCK, errno)
	assert.False(t, ready())
	a.Write([]byte("cd"))
	assert.True(t, ready())
	r, errno, _ := b.Recv(make([]byte, 4), false, true, false)
	require.Zero(t, errno)
	assert.Equal(t, 4, r.N)
	// MSG_DONTWAIT on a blocking socket.
	_, errno, _ = b.Recv(make([]byte, 4), false, false, true)
	assert.Equal(t, unix.EAGAIN, errno)
}

func TestSocketDatagrams(t *testing.T) {
	fs := newTmpFS(t, 1<<20)
	ns := fs.Sockets()
	s1 := NewSocket(ns, unix.SOCK_DGRAM, true, Cred{})
	s2 := NewSocket(ns, unix.SOCK_DGRAM, true, Cred{})
	a1, p1 := pathAddr("/tmp/d1")
	a2, p2 := pathAddr("/tmp/d2")
	require.Zero(t, s1.Bind(fs, "/", a1, p1, false, 0o755))
	require.Zero(t, s2.Bind(fs, "/tmp", a2, "d2", false, 0o755))
	assert.Equal(t, a2, s2.Name())
	for i := range maxDgramQlen + 1 {
		n, errno, _ := s1.Send(fs, "/", &SendMsg{Data: make([]byte, i+1), To: a2, ToPath: p2})
		require.Zero(t, errno)
		require.Equal(t, i+1, n)
	}
	_, errno, _ := s1.Send(fs, "/", &SendMsg{Data: []byte("x"), To: a2, ToPath: p2})
	assert.Equal(t, unix.EAGAIN, errno, "the receiver's queue is full")
	buf := make([]byte, 1)
	r, errno, _ := s2.Recv(buf, false, false, false)
	require.Zero(t, errno)
	assert.Equal(t, RecvMsg{N: 1, Len: 1, From: a1}, r)
	r, errno, _ = s2.Recv(buf, false, false, false)
	require.Zero(t, errno)
	assert.True(t, r.Trunc)
	assert.Equal(t, 2, r.Len)
	s2.Close()
	_, errno, _ = s1.Send(fs, "/", &SendMsg{Data: []byte("x"), To: a2, ToPath: p2})
	assert.Equal(t, unix.ECONNREFUSED, errno, "the name stays, nobody is bound")
	require.Zero(t, fs.Unlink("/", "/tmp/d2"))
	_, errno, _ = s1.Send(fs, "/", &SendMsg{Data: []byte("x"), To: a2, ToPath: p2})
	assert.Equal(t, unix.ENOENT, errno)
	s1.Close()
}

func TestSocketBindNames(t *testing.T) {
	fs := newTmpFS(t, 1<<20)
	ns := fs.Sockets()
	s := NewSocket(ns, unix.SOCK_STREAM, false, Cred{})
	a, p := pathAddr("/tmp/s")
	require.Zero(t, s.Bind(fs, "/", a, p, false, 0o755))
	st, errno := fs.Stat("/", "/tmp/s")
	require.Zero(t, errno)
	assert.Equal(t, uint32(unix.S_IFSOCK|0o755), st.Mode)
	_, errno = fs.Open("/", "/tmp/s", unix.O_RDONLY)
	assert.Equal(t, unix.ENXIO, errno)

	other := NewSocket(ns, unix.SOCK_STREAM, false, Cred{})
	for _, tt := range []struct {
		path  string
		errno unix.Errno
	}{
		{"/tmp/s", unix.EADDRINUSE},
		{"/tmp/missing/s", unix.ENOENT},
		{"/s", unix.EROFS},
	} {
		a, p := pathAddr(tt.path)
		assert.Equal(t, tt.errno, other.Bind(fs, "/", a, p, false, 0o755), tt.path)
	}
	abs := []byte{unix.AF_UNIX, 0, 0, 'n'}
	require.Zero(t, other.Bind(fs, "/", abs, "", false, 0))
	third := NewSocket(ns, unix.SOCK_STREAM, false, Cred{})
	assert.Equal(t, unix.EADDRINUSE, third.Bind(fs, "/", abs, "", false, 0))
	require.Zero(t, third.Bind(fs, "/", nil, "", true, 0))
	assert.Equal(t, []byte{unix.AF_UNIX, 0, 0, '0', '0', '0', '0', '0'}, third.Name())
	other.Close()
	require.Zero(t, NewSocket(ns, unix.SOCK_STREAM, false, Cred{}).Bind(fs, "/", abs, "", false, 0), "a closed socket frees its abstract name")

	// A socket name is saved with the tmpfs and comes back as a name
	// nothing is bound to.
	s.Close()
	states := fs.TmpfsState(func(uint64) uint64 { return 0 })
	require.NoError(t, states[0].Validate())
	fs2, err := New(Options{})
	require.NoError(t, err)
	defer fs2.Close()
	require.NoError(t, fs2.RestoreTmpfs(states, func(uint64) (uint64, error) { return 0, nil }))
	st2, errno := fs2.Stat("/", "/tmp/s")
	require.Zero(t, errno)
	assert.Equal(t, st.Mode, st2.Mode)
	_, errno = fs2.LookupSocket("/", "/tmp/s")
	assert.Equal(t, unix.ECONNREFUSED, errno)
}

func TestSocketListenAccept(t *testing.T) {
	fs := newTmpFS(t, 1<<20)
	ns := fs.Sockets()
	l := NewSocket(ns, unix.SOCK_STREAM, true, Cred{PID: 1})
	a, p := pathAddr("/tmp/l")
	assert.Equal(t, unix.EINVAL, l.Listen(1), "unbound")
	require.Zero(t, l.Bind(fs, "/", a, p, false, 0o777))
	require.Zero(t, l.Listen(1))
	var clients []*Socket
	for range 2 {
		c := NewSocket(ns, unix.SOCK_STREAM, false, Cred{PID: 2})
		errno, _ := c.Connect(fs, "/", a, p, false, Cred{PID: 2})
		require.Zero(t, errno)
		clients = append(clients, c)
	}
	c := NewSocket(ns, unix.SOCK_STREAM, false, Cred{PID: 2})
	errno, ready := c.Connect(fs, "/", a, p, false, Cred{PID: 2})
	require.Equal(t, EBLOCK, errno, "the backlog is full")
	assert.False(t, ready())
	assert.NotZero(t, l.Poll()&PollIn)
	srv, errno := l.Accept(false)
	require.Zero(t, errno)
	assert.True(t, ready())
	assert.Equal(t, Cred{PID: 2}, srv.PeerCred())
	assert.Equal(t, Cred{PID: 1}, clients[0].PeerCred())
	name, errno := clients[0].PeerName()
	require.Zero(t, errno)
	assert.Equal(t, a, name)
	assert.Equal(t, a, srv.Name())

	// Closing the listener resets the connection never accepted.
	l.Close()
	_, errno = clients[1].Write([]byte("x"))
	assert.Equal(t, unix.EPIPE, errno)
	errno, _ = c.Connect(fs, "/", a, p, false, Cred{})
	assert.Equal(t, unix.ECONNREFUSED, errno)
	d := NewSocket(ns, unix.SOCK_DGRAM, false, Cred{})
	l2 := NewSocket(ns, unix.SOCK_STREAM, false, Cred{})
	a2, p2 := pathAddr("/tmp/l2")
	require.Zero(t, l2.Bind(fs, "/", a2, p2, false, 0o777))
	errno, _ = d.Connect(fs, "/", a2, p2, false, Cred{})
	assert.Equal(t, unix.EPROTOTYPE, errno)
}

// closeCounter records its Close, for descriptors in flight.
type closeCounter struct {
	DeviceBase
	closed int
}

func (f *closeCounter) Close() unix.Errno { f.closed++; return 0 }

func TestSocketRightsInFlight(t *testing.T) {
	ns := NewSocketNamespace()
	for _, tt := range []struct {
		name   string
		finish func(a, b *Socket)
	}{
		{"receiver closes with the message unread", func(_, b *Socket) { b.Close() }},
		{"receiver takes and releases them", func(_, b *Socket) {
			r, errno, _ := b.Recv(make([]byte, 1), false, false, false)
			require.Zero(t, errno)
			require.Len(t, r.Rights, 1)
			r.Rights[0].Release()
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a, b := NewSocketPair(ns, unix.SOCK_STREAM, true, Cred{})
			f := &closeCounter{}
			table := NewFDTable()
			fd, errno := table.Install(f, false)
			require.Zero(t, errno)
			h, errno := table.Hold(fd)
			require.Zero(t, errno)
			n, errno, _ := a.Send(nil, "/", &SendMsg{Data: []byte("F"), Rights: []Held{h}})
			require.Zero(t, errno)
			require.Equal(t, 1, n)
			require.Zero(t, table.Close(fd))
			assert.Zero(t, f.closed, "the message holds the file")
			tt.finish(a, b)
			assert.Equal(t, 1, f.closed)
			a.Close()
		})
	}
}
