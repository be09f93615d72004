package vfs

import (
	"fmt"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// AF_UNIX sockets, as Linux's net/unix/af_unix.c behaves: stream,
// datagram and seqpacket sockets, socketpair, names bound in a tmpfs (an
// S_IFSOCK inode) or in the abstract namespace (a name starting with a NUL
// byte), listen/accept/connect, messages that carry descriptors
// (SCM_RIGHTS) and the sender's credentials, shutdown, and poll.
//
// The kernel is single-threaded, but File implementations must be safe
// for concurrent use: every socket's state is guarded by the one sockMu,
// since a send touches two sockets.
//
// A call that cannot go on returns EBLOCK on a blocking socket (EAGAIN on
// a non-blocking one) and says, through Socket.Wait, what the kernel must
// wait for before it makes the call again.

var sockMu sync.Mutex

// Socket buffer defaults: Linux's net.core.wmem_default and rmem_default,
// and net.unix.max_dgram_qlen's default.
const (
	SockBufDefault  = 212992
	sockBufMin      = 4608 // SOCK_MIN_SNDBUF (2 * (2048 + sizeof(sk_buff)) rounded)
	sockBufMax      = 212992
	maxDgramQlen    = 10
	somaxconn       = 4096
	scmMaxFD        = 253
	shutRcv         = 1 // RCV_SHUTDOWN
	shutSend        = 2 // SEND_SHUTDOWN
	unixPathMax     = 108
	sockaddrUnixMax = 2 + unixPathMax
)

// Cred is a process's credentials as SCM_CREDENTIALS and SO_PEERCRED
// give them.
type Cred struct {
	PID, UID, GID uint32
}

// Held is an open file description held outside any descriptor table: a
// descriptor in flight in an SCM_RIGHTS message. The holder must Release
// it or install it (FDTable.InstallHeld).
type Held struct{ d *description }

// Hold returns a new reference to fd's description (EBADF if not open).
func (t *FDTable) Hold(fd int) (Held, unix.Errno) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.lookupLocked(fd)
	if s == nil {
		return Held{}, unix.EBADF
	}
	return Held{s.desc.hold()}, 0
}

// File is the held description's file.
func (h Held) File() File { return h.d.file }

// Release drops the reference, closing the file with the last one.
func (h Held) Release() unix.Errno { return h.d.release() }

// InstallHeld gives the held description the lowest free descriptor; the
// table takes over the reference. On error the reference is still the
// caller's.
func (t *FDTable) InstallHeld(h Held, cloexec bool) (int, unix.Errno) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fd, errno := t.allocLocked(0)
	if errno != 0 {
		return -1, errno
	}
	t.slots[fd] = fdSlot{desc: h.d, cloexec: cloexec}
	return fd, 0
}

// sockState is a socket's connection state.
type sockState int

const (
	sockUnconnected sockState = iota
	sockListening
	sockConnected
)

// sockMsg is one queued message (an skb): for a stream socket, a piece of
// the byte stream that starts where its descriptors and credentials
// apply.
type sockMsg struct {
	data   []byte
	rights []Held
	cred   Cred
	from   *Socket // the sender, whose name recvfrom reports and whose inflight it is
	addr   []byte  // the sender's name when it was sent
}

// Socket is an AF_UNIX socket.
type Socket struct {
	flagSet
	typ    int
	state  sockState
	addr   []byte // bound name as getsockname returns it (sun_family included), nil if unbound
	unbind func()
	peer   *Socket
	closed bool

	recvq    []*sockMsg
	queued   int // bytes in recvq
	inflight int // bytes this socket sent that are still queued at a receiver

	backlog int
	pending []*Socket // accept queue: server-side sockets, already connected

	shutdown int // shutRcv and shutSend, as Linux's sk_shutdown
	err      unix.Errno

	sndbuf, rcvbuf int
	passcred       bool
	cred           Cred // the creator's, for SCM_CREDENTIALS
	peerCred       Cred // SO_PEERCRED
	hasPeerCred    bool

	ns *SocketNamespace
}

// SocketNamespace is where sockets find each other: the abstract names
// and the kernel's credentials.
type SocketNamespace struct {
	mu       sync.Mutex
	abstract map[string]*Socket
	autobind uint32
}

// NewSocketNamespace makes an empty namespace.
func NewSocketNamespace() *SocketNamespace {
	return &SocketNamespace{abstract: map[string]*Socket{}}
}

// NewSocket is socket(AF_UNIX, typ, 0) with the SOCK_NONBLOCK flag in
// flags; the caller checked typ.
func NewSocket(ns *SocketNamespace, typ int, nonblock bool, cred Cred) *Socket {
	s := &Socket{typ: typ, sndbuf: SockBufDefault, rcvbuf: SockBufDefault, cred: cred, ns: ns}
	s.flags = unix.O_RDWR
	if nonblock {
		s.flags |= unix.O_NONBLOCK
	}
	return s
}

// NewSocketPair is socketpair(AF_UNIX, typ, 0).
func NewSocketPair(ns *SocketNamespace, typ int, nonblock bool, cred Cred) (*Socket, *Socket) {
	a, b := NewSocket(ns, typ, nonblock, cred), NewSocket(ns, typ, nonblock, cred)
	a.peer, b.peer = b, a
	a.state, b.state = sockConnected, sockConnected
	a.peerCred, b.peerCred, a.hasPeerCred, b.hasPeerCred = cred, cred, true, true
	return a, b
}

// Type is SO_TYPE.
func (s *Socket) Type() int { return s.typ }

func (s *Socket) wouldBlock() unix.Errno {
	if s.Flags()&unix.O_NONBLOCK != 0 {
		return unix.EAGAIN
	}
	return EBLOCK
}

// connectionless reports a datagram socket.
func (s *Socket) connectionless() bool { return s.typ == unix.SOCK_DGRAM }

// Addr parses a sockaddr_un of length n (already copied in). It returns
// the name as getsockname will give it back (family included), and for a
// path name the path. autobind is true for a bare family (length 2).
func ParseUnixAddr(b []byte) (addr []byte, path string, autobind bool, errno unix.Errno) {
	if len(b) < 2 || len(b) > sockaddrUnixMax {
		return nil, "", false, unix.EINVAL
	}
	if fam := uint16(b[0]) | uint16(b[1])<<8; fam != unix.AF_UNIX {
		return nil, "", false, unix.EINVAL
	}
	if len(b) == 2 {
		return nil, "", true, 0
	}
	if b[2] == 0 {
		return append([]byte(nil), b...), "", false, 0
	}
	p := b[2:]
	for i, c := range p {
		if c == 0 {
			p = p[:i]
			break
		}
	}
	addr = append(append([]byte(nil), b[:2]...), p...)
	return append(addr, 0), string(p), false, 0
}

// Bind binds s to addr (from ParseUnixAddr): a path through fs (relative
// to cwd, with mode for the new inode), an abstract name, or, for
// autobind, a fresh abstract name.
func (s *Socket) Bind(fs *FS, cwd string, addr []byte, path string, autobind bool, mode uint32) unix.Errno {
	sockMu.Lock()
	bound := s.addr != nil
	sockMu.Unlock()
	if bound && autobind {
		return 0
	}
	if bound {
		if path != "" {
			// Linux makes the name before it looks at the socket: a
			// name in use or a bad directory comes first.
			if _, errno := fs.Lstat(cwd, path); errno == 0 {
				return unix.EADDRINUSE
			}
			if _, errno := fs.Stat(cwd, parentDir(path)); errno != 0 {
				return errno
			}
		}
		return unix.EINVAL
	}
	if autobind {
		return s.autobind()
	}
	if path != "" {
		unbind, errno := fs.BindSocket(cwd, path, unix.S_IFSOCK|mode&0o777, s)
		if errno == unix.EEXIST {
			return unix.EADDRINUSE
		}
		if errno != 0 {
			return errno
		}
		sockMu.Lock()
		s.addr, s.unbind = addr, unbind
		sockMu.Unlock()
		return 0
	}
	return s.bindAbstract(addr)
}

func (s *Socket) bindAbstract(addr []byte) unix.Errno {
	ns := s.ns
	ns.mu.Lock()
	defer ns.mu.Unlock()
	key := string(addr[2:])
	if ns.abstract[key] != nil {
		return unix.EADDRINUSE
	}
	ns.abstract[key] = s
	sockMu.Lock()
	s.addr = addr
	s.unbind = func() {
		ns.mu.Lock()
		if ns.abstract[key] == s {
			delete(ns.abstract, key)
		}
		ns.mu.Unlock()
	}
	sockMu.Unlock()
	return 0
}

// parentDir is the directory part of a path, "." for a bare name.
func parentDir(p string) string {
	for len(p) > 1 && p[len(p)-1] == '/' {
		p = p[:len(p)-1]
	}
	i := strings.LastIndexByte(p, '/')
	switch {
	case i < 0:
		return "."
	case i == 0:
		return "/"
	}
	return p[:i]
}

// autobind gives s an abstract name of five hexadecimal digits, as Linux's
// unix_autobind, numbered in order from 0 (Linux starts at a random one).
func (s *Socket) autobind() unix.Errno {
	for range 1 << 20 {
		s.ns.mu.Lock()
		n := s.ns.autobind & 0xfffff
		s.ns.autobind++
		s.ns.mu.Unlock()
		addr := append([]byte{unix.AF_UNIX, 0, 0}, fmt.Sprintf("%05x", n)...)
		if s.bindAbstract(addr) == 0 {
			return 0
		}
	}
	return unix.ENOSPC
}

// lookup finds the socket bound at addr.
func (s *Socket) lookup(fs *FS, cwd string, addr []byte, path string) (*Socket, unix.Errno) {
	if path != "" {
		o, errno := fs.LookupSocket(cwd, path)
		if errno != 0 {
			return nil, errno
		}
		return o.(*Socket), 0
	}
	s.ns.mu.Lock()
	defer s.ns.mu.Unlock()
	o := s.ns.abstract[string(addr[2:])]
	if o == nil {
		return nil, unix.ECONNREFUSED
	}
	return o, 0
}

// Listen is listen(2).
func (s *Socket) Listen(backlog int) unix.Errno {
	sockMu.Lock()
	defer sockMu.Unlock()
	if s.connectionless() {
		return unix.EOPNOTSUPP
	}
	if s.addr == nil || s.state == sockConnected {
		return unix.EINVAL
	}
	if uint32(backlog) > somaxconn {
		backlog = somaxconn
	}
	s.backlog = backlog
	if s.state != sockListening {
		s.state = sockListening
		s.hasPeerCred = true
		s.peerCred = s.cred
	}
	return 0
}

// Accept is accept4(2) without the flags the caller applies (its
// SOCK_NONBLOCK is nonblock). EBLOCK or EAGAIN while no connection waits.
func (s *Socket) Accept(nonblock bool) (*Socket, unix.Errno) {
	sockMu.Lock()
	defer sockMu.Unlock()
	if s.connectionless() {
		return nil, unix.EOPNOTSUPP
	}
	if s.state != sockListening {
		return nil, unix.EINVAL
	}
	if len(s.pending) == 0 {
		return nil, s.wouldBlock()
	}
	n := s.pending[0]
	s.pending = s.pending[1:]
	n.flags = unix.O_RDWR
	if nonblock {
		n.flags |= unix.O_NONBLOCK
	}
	return n, 0
}

// Connect is connect(2) to addr (from ParseUnixAddr; an autobind address
// is EINVAL). On EBLOCK, wait for the ready function it returns (room in
// the listener's backlog).
func (s *Socket) Connect(fs *FS, cwd string, addr []byte, path string, autobind bool, cred Cred) (unix.Errno, func() bool) {
	if autobind {
		if s.connectionless() {
			// AF_UNSPEC-like: dissolve the association.
			sockMu.Lock()
			s.peer = nil
			s.state = sockUnconnected
			sockMu.Unlock()
			return 0, nil
		}
		return unix.EINVAL, nil
	}
	o, errno := s.lookup(fs, cwd, addr, path)
	if errno != 0 {
		return errno, nil
	}
	sockMu.Lock()
	passcred := s.passcred && s.addr == nil
	sockMu.Unlock()
	if passcred {
		if e := s.autobind(); e != 0 {
			return e, nil
		}
	}
	sockMu.Lock()
	defer sockMu.Unlock()
	if o.closed {
		return unix.ECONNREFUSED, nil
	}
	if o.typ != s.typ {
		return unix.EPROTOTYPE, nil
	}
	if s.connectionless() {
		s.peer = o
		s.state = sockConnected
		s.peerCred, s.hasPeerCred = o.cred, true
		return 0, nil
	}
	switch s.state {
	case sockConnected:
		return unix.EISCONN, nil
	case sockListening:
		return unix.EINVAL, nil
	}
	if o.state != sockListening {
		return unix.ECONNREFUSED, nil
	}
	if len(o.pending) > o.backlog {
		if e := s.wouldBlock(); e != EBLOCK {
			return e, nil
		}
		return EBLOCK, func() bool {
			sockMu.Lock()
			defer sockMu.Unlock()
			return o.closed || o.state != sockListening || len(o.pending) <= o.backlog
		}
	}
	n := &Socket{typ: s.typ, sndbuf: o.sndbuf, rcvbuf: o.rcvbuf, cred: o.cred, ns: s.ns,
		state: sockConnected, peer: s, addr: o.addr, passcred: o.passcred,
		peerCred: cred, hasPeerCred: true}
	n.flags = unix.O_RDWR
	s.peer, s.state = n, sockConnected
	s.peerCred, s.hasPeerCred = o.peerCred, true
	o.pending = append(o.pending, n)
	return 0, nil
}

// SendMsg is what a send call hands to Send.
type SendMsg struct {
	Data   []byte
	Rights []Held // taken over by Send when it succeeds
	Cred   Cred   // the sender's credentials
	// To is the destination (sendto), nil for the connected peer.
	To       []byte
	ToPath   string
	DontWait bool
}

// Send is sendmsg(2). It returns how many bytes were sent. On EBLOCK,
// wait for ready.
func (s *Socket) Send(fs *FS, cwd string, m *SendMsg) (n int, errno unix.Errno, ready func() bool) {
	var to *Socket
	if m.To != nil {
		if !s.connectionless() {
			sockMu.Lock()
			connected := s.state == sockConnected
			sockMu.Unlock()
			if connected {
				return 0, unix.EISCONN, nil
			}
			if s.typ == unix.SOCK_STREAM {
				return 0, unix.EOPNOTSUPP, nil
			}
			return 0, unix.ENOTCONN, nil
		}
		o, errno := s.lookup(fs, cwd, m.To, m.ToPath)
		if errno != 0 {
			return 0, errno, nil
		}
		to = o
	}
	sockMu.Lock()
	passcred := s.connectionless() && s.passcred && s.addr == nil
	sockMu.Unlock()
	if passcred {
		if e := s.autobind(); e != 0 {
			return 0, e, nil
		}
	}
	sockMu.Lock()
	defer sockMu.Unlock()
	wouldBlock := func() unix.Errno {
		if m.DontWait {
			return unix.EAGAIN
		}
		return s.wouldBlock()
	}
	if s.connectionless() {
		if to == nil {
			to = s.peer
			if to == nil {
				return 0, unix.ENOTCONN, nil
			}
		}
		if len(m.Data) > s.sndbuf-32 {
			return 0, unix.EMSGSIZE, nil
		}
		if to.closed {
			if to == s.peer {
				s.peer, s.state = nil, sockUnconnected
			}
			return 0, unix.ECONNREFUSED, nil
		}
		if to.typ != s.typ {
			return 0, unix.EPROTOTYPE, nil
		}
		if to.peer != nil && to.peer != s {
			return 0, unix.EPERM, nil
		}
		if to.shutdown&shutRcv != 0 {
			return 0, unix.EPIPE, nil
		}
		full := func() bool {
			return to.peer != s && len(to.recvq) > maxDgramQlen || s.inflight > 0 && s.inflight+len(m.Data) > s.sndbuf
		}
		if full() {
			e := wouldBlock()
			if e != EBLOCK {
				return 0, e, nil
			}
			return 0, e, func() bool {
				sockMu.Lock()
				defer sockMu.Unlock()
				return to.closed || !full()
			}
		}
		s.queue(to, m, m.Data)
		return len(m.Data), 0, nil
	}
	// Stream and seqpacket.
	if s.state != sockConnected {
		return 0, unix.ENOTCONN, nil
	}
	if s.shutdown&shutSend != 0 {
		return 0, unix.EPIPE, nil
	}
	to = s.peer
	if to.closed || to.shutdown&shutRcv != 0 {
		return 0, unix.EPIPE, nil
	}
	if s.typ == unix.SOCK_SEQPACKET {
		if len(m.Data) > s.sndbuf-32 {
			return 0, unix.EMSGSIZE, nil
		}
		if s.inflight > 0 && s.inflight+len(m.Data) > s.sndbuf {
			e := wouldBlock()
			return 0, e, s.writableFn(e)
		}
		s.queue(to, m, m.Data)
		return len(m.Data), 0, nil
	}
	room := s.sndbuf - s.inflight
	if room <= 0 {
		e := wouldBlock()
		return 0, e, s.writableFn(e)
	}
	if len(m.Data) == 0 && len(m.Rights) == 0 {
		return 0, 0, nil
	}
	n = min(room, len(m.Data))
	s.queue(to, m, m.Data[:n])
	return n, 0, nil
}

// writableFn is the wait of a sender whose buffer is full.
func (s *Socket) writableFn(e unix.Errno) func() bool {
	if e != EBLOCK {
		return nil
	}
	return func() bool { return PollFile(s)&(PollOut|PollErr|PollHup) != 0 }
}

// queue appends a message to to's receive queue. The caller holds sockMu.
func (s *Socket) queue(to *Socket, m *SendMsg, data []byte) {
	msg := &sockMsg{data: append([]byte(nil), data...), rights: m.Rights, cred: m.Cred, from: s, addr: s.addr}
	m.Rights = nil
	to.recvq = append(to.recvq, msg)
	to.queued += len(data)
	s.inflight += len(data)
}

// RecvMsg is what Recv returns.
type RecvMsg struct {
	N      int    // bytes copied
	Len    int    // the datagram's full length (MSG_TRUNC)
	Trunc  bool   // a datagram was cut short
	From   []byte // the sender's name, nil if unbound
	Rights []Held // the caller installs or releases them
	Cred   *Cred  // with SO_PASSCRED
}

// Recv is recvmsg(2) into buf. peek leaves the data queued; waitAll (stream
// only) waits until len(buf) bytes or the end are there. On EBLOCK, wait
// for ready.
func (s *Socket) Recv(buf []byte, peek, waitAll, dontWait bool) (RecvMsg, unix.Errno, func() bool) {
	r, e := s.recv(buf, peek, waitAll, dontWait)
	if e != EBLOCK {
		return r, e, nil
	}
	want := 1
	if waitAll {
		want = len(buf)
	}
	return r, e, func() bool {
		sockMu.Lock()
		defer sockMu.Unlock()
		return s.queued >= min(want, s.rcvbuf) || len(s.recvq) > 0 && (s.typ != unix.SOCK_STREAM || !waitAll) ||
			s.err != 0 || s.shutdown&shutRcv != 0 || s.peer != nil && s.peer.closed && !s.connectionless()
	}
}

func (s *Socket) recv(buf []byte, peek, waitAll, dontWait bool) (RecvMsg, unix.Errno) {
	sockMu.Lock()
	defer sockMu.Unlock()
	var r RecvMsg
	wouldBlock := func() unix.Errno {
		if dontWait {
			return unix.EAGAIN
		}
		return s.wouldBlock()
	}
	if s.state == sockListening {
		return r, unix.EINVAL
	}
	if !s.connectionless() && s.state != sockConnected && len(s.recvq) == 0 {
		if s.typ == unix.SOCK_SEQPACKET {
			return r, unix.ENOTCONN
		}
		return r, unix.EINVAL
	}
	if len(s.recvq) == 0 {
		if s.err != 0 {
			e := s.err
			s.err = 0
			return r, e
		}
		if s.shutdown&shutRcv != 0 {
			return r, 0
		}
		return r, wouldBlock()
	}
	if s.passcred {
		c := s.recvq[0].cred
		r.Cred = &c
	}
	if s.typ != unix.SOCK_STREAM {
		m := s.recvq[0]
		r.N = copy(buf, m.data)
		r.Len, r.Trunc = len(m.data), len(m.data) > len(buf)
		r.From = m.addr
		if !peek {
			r.Rights = m.rights
			s.consume(m)
			s.recvq = s.recvq[1:]
		} else {
			r.Rights = holdAll(m.rights)
		}
		return r, 0
	}
	if waitAll && !peek && s.queued < min(len(buf), s.rcvbuf) && s.shutdown&shutRcv == 0 && s.peer != nil && !s.peer.closed {
		if e := wouldBlock(); e == EBLOCK {
			return r, e
		}
	}
	r.From = s.recvq[0].addr
	for i := 0; i < len(s.recvq) && r.N < len(buf); {
		m := s.recvq[i]
		if len(m.rights) > 0 && r.N > 0 {
			break // descriptors start a new read
		}
		if i > 0 && m.cred != s.recvq[0].cred && s.passcred {
			break
		}
		n := copy(buf[r.N:], m.data)
		r.N += n
		if len(m.rights) > 0 {
			if peek {
				r.Rights = holdAll(m.rights)
			} else {
				r.Rights, m.rights = m.rights, nil
			}
		}
		if peek {
			if n < len(m.data) {
				break
			}
			i++
		} else {
			s.queued -= n
			m.from.inflight -= n
			if n < len(m.data) {
				m.data = m.data[n:]
				break
			}
			s.recvq = s.recvq[1:]
		}
		if r.Rights != nil {
			break
		}
	}
	if len(s.recvq) == 0 {
		s.recvq = nil
	}
	return r, 0
}

func holdAll(hs []Held) []Held {
	out := make([]Held, len(hs))
	for i, h := range hs {
		out[i] = Held{h.d.hold()}
	}
	return out
}

// consume takes a whole message off the accounting. The caller holds sockMu.
func (s *Socket) consume(m *sockMsg) {
	s.queued -= len(m.data)
	m.from.inflight -= len(m.data)
}

// Shutdown is shutdown(2) with how SHUT_RD, SHUT_WR or SHUT_RDWR.
func (s *Socket) Shutdown(how int) unix.Errno {
	if how < unix.SHUT_RD || how > unix.SHUT_RDWR {
		return unix.EINVAL
	}
	sockMu.Lock()
	defer sockMu.Unlock()
	mask := how + 1 // SHUT_RD -> RCV, SHUT_WR -> SEND, SHUT_RDWR -> both
	s.shutdown |= mask
	if p := s.peer; p != nil && !s.connectionless() {
		peerMask := 0
		if mask&shutRcv != 0 {
			peerMask |= shutSend
		}
		if mask&shutSend != 0 {
			peerMask |= shutRcv
		}
		p.shutdown |= peerMask
	}
	return 0
}

// Name is getsockname(2): the bound name, or just the family.
func (s *Socket) Name() []byte {
	sockMu.Lock()
	defer sockMu.Unlock()
	if s.addr == nil {
		return []byte{unix.AF_UNIX, 0}
	}
	return s.addr
}

// PeerName is getpeername(2).
func (s *Socket) PeerName() ([]byte, unix.Errno) {
	sockMu.Lock()
	defer sockMu.Unlock()
	if s.peer == nil || s.state != sockConnected {
		return nil, unix.ENOTCONN
	}
	if s.peer.addr == nil {
		return []byte{unix.AF_UNIX, 0}, 0
	}
	return s.peer.addr, 0
}

// Socket options the kernel reads and sets.

// TakeError is SO_ERROR: the pending error, cleared.
func (s *Socket) TakeError() unix.Errno {
	sockMu.Lock()
	defer sockMu.Unlock()
	e := s.err
	s.err = 0
	return e
}

// Buffers returns SO_SNDBUF and SO_RCVBUF.
func (s *Socket) Buffers() (snd, rcv int) {
	sockMu.Lock()
	defer sockMu.Unlock()
	return s.sndbuf, s.rcvbuf
}

// SetBuffer is setsockopt SO_SNDBUF (snd) or SO_RCVBUF: Linux doubles the
// value and clamps it.
func (s *Socket) SetBuffer(snd bool, v int) {
	if v < 0 || v > sockBufMax {
		v = sockBufMax // Linux compares as unsigned
	}
	sockMu.Lock()
	defer sockMu.Unlock()
	if snd {
		s.sndbuf = max(2*v, sockBufMin)
	} else {
		s.rcvbuf = max(2*v, sockBufMin/2)
	}
}

// Listening is SO_ACCEPTCONN.
func (s *Socket) Listening() bool {
	sockMu.Lock()
	defer sockMu.Unlock()
	return s.state == sockListening
}

// PassCred is SO_PASSCRED.
func (s *Socket) PassCred() bool {
	sockMu.Lock()
	defer sockMu.Unlock()
	return s.passcred
}

// SetPassCred sets SO_PASSCRED.
func (s *Socket) SetPassCred(on bool) {
	sockMu.Lock()
	defer sockMu.Unlock()
	s.passcred = on
}

// PeerCred is SO_PEERCRED; without a peer, Linux gives pid 0 and uid and
// gid -1.
func (s *Socket) PeerCred() Cred {
	sockMu.Lock()
	defer sockMu.Unlock()
	if !s.hasPeerCred {
		return Cred{PID: 0, UID: ^uint32(0), GID: ^uint32(0)}
	}
	return s.peerCred
}

// Poll is unix_poll and unix_dgram_poll.
func (s *Socket) Poll() uint32 {
	sockMu.Lock()
	defer sockMu.Unlock()
	var m uint32
	if s.err != 0 {
		m |= PollErr
	}
	if s.shutdown == shutRcv|shutSend {
		m |= PollHup
	}
	if s.shutdown&shutRcv != 0 {
		m |= PollRdhup | PollIn | PollRdnorm
	}
	if len(s.recvq) > 0 || len(s.pending) > 0 {
		m |= PollIn | PollRdnorm
	}
	if s.typ == unix.SOCK_STREAM && s.state == sockUnconnected {
		m |= PollHup
	}
	if s.typ == unix.SOCK_SEQPACKET && s.state != sockConnected && s.state != sockListening {
		m |= PollHup
	}
	if s.state == sockListening {
		return m
	}
	writable := s.inflight*4 <= s.sndbuf
	if s.connectionless() && s.peer != nil && s.peer.peer != s && len(s.peer.recvq) > maxDgramQlen {
		writable = false
	}
	if writable {
		m |= PollOut | PollWrnorm | PollWrband
	}
	return m
}

// PollRdhup is POLLRDHUP.
const PollRdhup = 0x2000

func (s *Socket) Read(b []byte) (int, unix.Errno) {
	r, e := s.recv(b, false, false, false)
	for _, h := range r.Rights {
		h.Release()
	}
	return r.N, e
}

func (s *Socket) Write(b []byte) (int, unix.Errno) {
	n, e, _ := s.Send(nil, "/", &SendMsg{Data: b})
	return n, e
}

func (s *Socket) Pread([]byte, int64) (int, unix.Errno)  { return 0, unix.ESPIPE }
func (s *Socket) Pwrite([]byte, int64) (int, unix.Errno) { return 0, unix.ESPIPE }
func (s *Socket) Lseek(int64, int) (int64, unix.Errno)   { return 0, unix.ESPIPE }
func (s *Socket) Getdents64(int) ([]byte, unix.Errno)    { return nil, unix.ENOTDIR }

func (s *Socket) Stat() (Stat, unix.Errno) {
	return Stat{Mode: unix.S_IFSOCK | 0o777, Nlink: 1, Uid: uint32(unix.Getuid()), Gid: uint32(unix.Getgid()), Blksize: 4096}, 0
}

// Ioctl knows FIONREAD (SIOCINQ) and SIOCOUTQ.
func (s *Socket) Ioctl(req uint64, arg uint64, m Memory) (uint64, unix.Errno) {
	var n int
	sockMu.Lock()
	switch req {
	case 0x541B: // FIONREAD
		if s.state == sockListening {
			sockMu.Unlock()
			return 0, unix.EINVAL
		}
		n = s.queued
		if s.typ != unix.SOCK_STREAM {
			n = 0
			if len(s.recvq) > 0 {
				n = len(s.recvq[0].data)
			}
		}
	case 0x5411: // TIOCOUTQ = SIOCOUTQ
		n = s.inflight
	default:
		sockMu.Unlock()
		return 0, unix.ENOTTY
	}
	sockMu.Unlock()
	b := []byte{byte(n), byte(n >> 8), byte(n >> 16), byte(n >> 24)}
	if err := m.CopyOut(arg, b); err != nil {
		return 0, unix.EFAULT
	}
	return 0, 0
}

// Close releases the socket: its name, its queued messages (and the
// descriptors in them), its pending connections; a connected peer sees
// the end (and ECONNRESET if data was left unread).
func (s *Socket) Close() unix.Errno {
	sockMu.Lock()
	if s.closed {
		sockMu.Unlock()
		return 0
	}
	s.closed = true
	unbind := s.unbind
	s.unbind = nil
	var drop []Held
	var pend []*Socket
	for _, m := range s.recvq {
		drop = append(drop, m.rights...)
		m.from.inflight -= len(m.data)
	}
	if p := s.peer; p != nil && !s.connectionless() {
		p.shutdown = shutRcv | shutSend
		if len(s.recvq) > 0 {
			p.err = unix.ECONNRESET
		}
	}
	s.recvq, s.queued = nil, 0
	pend, s.pending = s.pending, nil
	s.peer = nil
	sockMu.Unlock()
	if unbind != nil {
		unbind()
	}
	for _, n := range pend {
		n.Close()
	}
	for _, h := range drop {
		h.Release()
	}
	return 0
}

// Describe names the socket for a checkpoint, which does not save
// sockets yet: KindSocket.
func (s *Socket) Describe() FileState {
	sockMu.Lock()
	defer sockMu.Unlock()
	st := FileState{Kind: KindSocket, Flags: s.Flags()}
	if s.addr != nil && s.addr[2] != 0 {
		st.Path = string(s.addr[2 : len(s.addr)-1])
	}
	return st
}

// KindSocket is an AF_UNIX socket.
const KindSocket FileKind = "socket"
