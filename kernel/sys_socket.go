package kernel

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/emuckpt/emuckpt/kernel/vfs"
	"golang.org/x/sys/unix"
)

// AF_UNIX sockets (vfs/socket.go holds the sockets themselves): the
// system calls, their arguments (addresses, msghdr, control messages) and
// SCM_RIGHTS, whose descriptors travel as held descriptions. Other
// address families are EAFNOSUPPORT.

const (
	sockTypeMask    = 0xf
	msgOOB          = 0x1
	msgPeek         = 0x2
	msgCtrunc       = 0x8
	msgTrunc        = 0x20
	msgDontwait     = 0x40
	msgEOR          = 0x80
	msgWaitall      = 0x100
	msgNosignal     = 0x4000
	msgMore         = 0x8000
	msgCmsgCloexec  = 0x40000000
	solSocket       = 1
	scmRights       = 1
	scmCredentials  = 2
	soType          = 3
	soError         = 4
	soSndbuf        = 7
	soRcvbuf        = 8
	soPasscred      = 16
	soPeercred      = 17
	soAcceptconn    = 30
	soProtocol      = 38
	soDomain        = 39
	sizeofMsghdr    = 56
	sizeofCmsghdr   = 16
	sizeofUcred     = 12
	scmMaxFD        = 253
	sockaddrStorage = 128
)

// socketOf is the socket behind fd: EBADF, or ENOTSOCK for another file.
func (k *Kernel) socketOf(t *Task, fd uint64) (*vfs.Socket, unix.Errno) {
	f, e := k.file(t, fd)
	if e != 0 {
		return nil, e
	}
	s, ok := f.(*vfs.Socket)
	if !ok {
		return nil, unix.ENOTSOCK
	}
	return s, 0
}

func (k *Kernel) cred(t *Task) vfs.Cred {
	return vfs.Cred{PID: uint32(t.proc.pid), UID: uint32(unix.Getuid()), GID: uint32(unix.Getgid())}
}

// socketType checks socket(2)'s domain, type and protocol, in Linux's
// order, and returns the socket type and flags.
func (k *Kernel) socketType(domain, typ, protocol uint64) (int, bool, bool, unix.Errno) {
	ty := int(int32(typ))
	if ty&^(sockTypeMask|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC) != 0 {
		return 0, false, false, unix.EINVAL
	}
	base := ty & sockTypeMask
	if int32(domain) != unix.AF_UNIX {
		if int32(domain) < 0 || int32(domain) >= unix.AF_MAX {
			return 0, false, false, unix.EAFNOSUPPORT
		}
		k.noteOnce(fmt.Sprintf("socket-family-%d", domain), fmt.Sprintf("socket: address family %d is not supported, only AF_UNIX: EAFNOSUPPORT", domain))
		return 0, false, false, unix.EAFNOSUPPORT
	}
	if p := int32(protocol); p != 0 && p != unix.AF_UNIX {
		return 0, false, false, unix.EPROTONOSUPPORT
	}
	switch base {
	case unix.SOCK_STREAM, unix.SOCK_DGRAM, unix.SOCK_SEQPACKET:
	case unix.SOCK_RAW:
		base = unix.SOCK_DGRAM // as Linux's unix_create
	default:
		return 0, false, false, unix.ESOCKTNOSUPPORT
	}
	return base, ty&unix.SOCK_NONBLOCK != 0, ty&unix.SOCK_CLOEXEC != 0, 0
}

func (k *Kernel) sysSocket(t *Task, a *args) (uint64, unix.Errno) {
	typ, nonblock, cloexec, e := k.socketType(a[0], a[1], a[2])
	if e != 0 {
		return 0, e
	}
	s := vfs.NewSocket(k.fs.Sockets(), typ, nonblock, k.cred(t))
	fd, e := t.proc.fds.Install(s, cloexec)
	if e != 0 {
		s.Close()
		return 0, e
	}
	return uint64(fd), 0
}

func (k *Kernel) sysSocketpair(t *Task, a *args) (uint64, unix.Errno) {
	typ, nonblock, cloexec, e := k.socketType(a[0], a[1], a[2])
	if e != 0 {
		return 0, e
	}
	s1, s2 := vfs.NewSocketPair(k.fs.Sockets(), typ, nonblock, k.cred(t))
	fd1, e := t.proc.fds.Install(s1, cloexec)
	if e != 0 {
		s1.Close()
		s2.Close()
		return 0, e
	}
	fd2, e := t.proc.fds.Install(s2, cloexec)
	if e != 0 {
		t.proc.fds.Close(fd1)
		s2.Close()
		return 0, e
	}
	var b [8]byte
	binary.LittleEndian.PutUint32(b[0:], uint32(fd1))
	binary.LittleEndian.PutUint32(b[4:], uint32(fd2))
	if e := k.copyOut(t, a[3], b[:]); e != 0 {
		t.proc.fds.Close(fd1)
		t.proc.fds.Close(fd2)
		return 0, e
	}
	return 0, 0
}

// sockaddr copies in an address of length n (move_addr_to_kernel) and
// parses it as AF_UNIX.
func (k *Kernel) sockaddr(t *Task, va, n uint64) (addr []byte, path string, autobind bool, e unix.Errno) {
	if int32(n) < 0 || n > sockaddrStorage {
		return nil, "", false, unix.EINVAL
	}
	b := make([]byte, n)
	if n > 0 {
		if e := k.copyIn(t, va, b); e != 0 {
			return nil, "", false, e
		}
	}
	return vfs.ParseUnixAddr(b)
}

// putSockaddr is move_addr_to_user: at most *lenVA bytes of addr go to va,
// and the full length to *lenVA. Nothing happens when va is 0.
func (k *Kernel) putSockaddr(t *Task, addr []byte, va, lenVA uint64) unix.Errno {
	if va == 0 || lenVA == 0 {
		return 0
	}
	var lb [4]byte
	if e := k.copyIn(t, lenVA, lb[:]); e != 0 {
		return e
	}
	n := int32(binary.LittleEndian.Uint32(lb[:]))
	if n < 0 {
		return unix.EINVAL
	}
	if c := min(int(n), len(addr)); c > 0 {
		if e := k.copyOut(t, va, addr[:c]); e != 0 {
			return e
		}
	}
	binary.LittleEndian.PutUint32(lb[:], uint32(len(addr)))
	return k.copyOut(t, lenVA, lb[:])
}

func (k *Kernel) sysBind(t *Task, a *args) (uint64, unix.Errno) {
	s, e := k.socketOf(t, a[0])
	if e != 0 {
		return 0, e
	}
	addr, path, autobind, e := k.sockaddr(t, a[1], a[2])
	if e != 0 {
		return 0, e
	}
	return 0, s.Bind(k.fs, t.proc.cwd, addr, path, autobind, 0o777&^t.proc.umask)
}

func (k *Kernel) sysListen(t *Task, a *args) (uint64, unix.Errno) {
	s, e := k.socketOf(t, a[0])
	if e != 0 {
		return 0, e
	}
	return 0, s.Listen(int(int32(a[1])))
}

func (k *Kernel) sysAccept(t *Task, a *args) (uint64, unix.Errno) {
	return k.accept(t, a[0], a[1], a[2], 0)
}

func (k *Kernel) sysAccept4(t *Task, a *args) (uint64, unix.Errno) {
	return k.accept(t, a[0], a[1], a[2], a[3])
}

func (k *Kernel) accept(t *Task, fd, addrVA, lenVA, flags uint64) (uint64, unix.Errno) {
	if int32(flags)&^(unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK) != 0 {
		return 0, unix.EINVAL
	}
	s, e := k.socketOf(t, fd)
	if e != 0 {
		return 0, e
	}
	n, e := s.Accept(flags&unix.SOCK_NONBLOCK != 0)
	if e != 0 {
		return k.mayBlock(t, s, vfs.PollIn)(0, e)
	}
	peer, _ := n.PeerName()
	nfd, e := t.proc.fds.Install(n, flags&unix.SOCK_CLOEXEC != 0)
	if e != 0 {
		n.Close()
		return 0, e
	}
	if e := k.putSockaddr(t, peer, addrVA, lenVA); e != 0 {
		// Linux fails the call after the connection is taken.
		t.proc.fds.Close(nfd)
		return 0, e
	}
	return uint64(nfd), 0
}

func (k *Kernel) sysConnect(t *Task, a *args) (uint64, unix.Errno) {
	s, e := k.socketOf(t, a[0])
	if e != 0 {
		return 0, e
	}
	var addr []byte
	var path string
	var autobind bool
	if s.Type() == unix.SOCK_DGRAM && a[2] >= 2 && int32(a[2]) > 0 {
		var fam [2]byte
		if e := k.copyIn(t, a[1], fam[:]); e != 0 {
			return 0, e
		}
		if fam == [2]byte{} { // AF_UNSPEC: dissolve the association
			e, _ := s.Connect(k.fs, t.proc.cwd, nil, "", true, k.cred(t))
			return 0, e
		}
	}
	addr, path, autobind, e = k.sockaddr(t, a[1], a[2])
	if e != 0 {
		return 0, e
	}
	if autobind {
		return 0, unix.EINVAL
	}
	e, ready := s.Connect(k.fs, t.proc.cwd, addr, path, false, k.cred(t))
	if e == vfs.EBLOCK {
		return k.block(t, waitSpec{deadline: math.MaxInt64, ready: ready, restartable: true})
	}
	return 0, e
}

func (k *Kernel) sysShutdown(t *Task, a *args) (uint64, unix.Errno) {
	s, e := k.socketOf(t, a[0])
	if e != 0 {
		return 0, e
	}
	return 0, s.Shutdown(int(int32(a[1])))
}

func (k *Kernel) sysGetsockname(t *Task, a *args) (uint64, unix.Errno) {
	s, e := k.socketOf(t, a[0])
	if e != 0 {
		return 0, e
	}
	return 0, k.putSockaddr(t, s.Name(), a[1], a[2])
}

func (k *Kernel) sysGetpeername(t *Task, a *args) (uint64, unix.Errno) {
	s, e := k.socketOf(t, a[0])
	if e != 0 {
		return 0, e
	}
	addr, e := s.PeerName()
	if e != 0 {
		return 0, e
	}
	return 0, k.putSockaddr(t, addr, a[1], a[2])
}

// sendMessage is the common part of sendto and sendmsg: data from the
// iovecs, an optional destination and control messages.
func (k *Kernel) sendMessage(t *Task, fd uint64, iov [][2]uint64, nameVA, nameLen uint64, control []byte, flags uint64) (uint64, unix.Errno) {
	s, e := k.socketOf(t, fd)
	if e != 0 {
		return 0, e
	}
	if flags&msgOOB != 0 {
		k.noteOnce("msg-oob", "send: MSG_OOB is not supported on AF_UNIX sockets: EOPNOTSUPP")
		return 0, unix.EOPNOTSUPP
	}
	m := &vfs.SendMsg{Cred: k.cred(t), DontWait: flags&msgDontwait != 0}
	if nameVA != 0 && nameLen != 0 {
		addr, path, autobind, e := k.sockaddr(t, nameVA, nameLen)
		if e != 0 {
			return 0, e
		}
		if autobind {
			return 0, unix.EINVAL
		}
		m.To, m.ToPath = addr, path
	}
	rights, e := k.parseControl(t, control, &m.Cred)
	if e != 0 {
		return 0, e
	}
	m.Rights = rights
	defer func() {
		for _, h := range m.Rights { // not sent
			h.Release()
		}
	}()
	var total uint64
	for _, v := range iov {
		total += v[1]
	}
	data := make([]byte, 0, min(total, maxIO*16))
	for _, v := range iov {
		if v[1] == 0 {
			continue
		}
		n := min(v[1], uint64(cap(data)-len(data)))
		if n == 0 {
			break
		}
		buf := make([]byte, n)
		if e := k.copyIn(t, v[0], buf); e != 0 {
			return 0, e
		}
		data = append(data, buf...)
	}
	m.Data = data
	n, e, ready := s.Send(k.fs, t.proc.cwd, m)
	switch {
	case e == vfs.EBLOCK:
		return k.block(t, waitSpec{deadline: math.MaxInt64, ready: ready, restartable: true})
	case e == unix.EPIPE && flags&msgNosignal == 0:
		k.sigpipe(t, s)
	}
	return uint64(n), e
}

// sigpipe sends SIGPIPE for an EPIPE from a write to f: a pipe or a
// stream socket (Linux's pipe_write and unix_stream_sendmsg).
func (k *Kernel) sigpipe(t *Task, f vfs.File) {
	if s, ok := f.(*vfs.Socket); ok && s.Type() != unix.SOCK_STREAM {
		return
	}
	k.sendSignal(t, int(unix.SIGPIPE), siUser)
}

// parseControl reads sendmsg's control messages: SCM_RIGHTS descriptors
// (held here) and SCM_CREDENTIALS, which must be the sender's own.
func (k *Kernel) parseControl(t *Task, b []byte, cred *vfs.Cred) ([]vfs.Held, unix.Errno) {
	var rights []vfs.Held
	fail := func(e unix.Errno) ([]vfs.Held, unix.Errno) {
		for _, h := range rights {
			h.Release()
		}
		return nil, e
	}
	for off := 0; off+sizeofCmsghdr <= len(b); {
		l := binary.LittleEndian.Uint64(b[off:])
		level := int32(binary.LittleEndian.Uint32(b[off+8:]))
		typ := int32(binary.LittleEndian.Uint32(b[off+12:]))
		if l < sizeofCmsghdr || l > uint64(len(b)-off) {
			return fail(unix.EINVAL)
		}
		data := b[off+sizeofCmsghdr : off+int(l)]
		if level == solSocket {
			switch typ {
			case scmRights:
				if len(data)%4 != 0 || len(data) == 0 {
					return fail(unix.EINVAL)
				}
				if len(rights)+len(data)/4 > scmMaxFD {
					return fail(unix.EINVAL)
				}
				for i := 0; i < len(data); i += 4 {
					h, e := t.proc.fds.Hold(int(int32(binary.LittleEndian.Uint32(data[i:]))))
					if e != 0 {
						return fail(e)
					}
					rights = append(rights, h)
				}
			case scmCredentials:
				if len(data) != sizeofUcred {
					return fail(unix.EINVAL)
				}
				c := vfs.Cred{PID: binary.LittleEndian.Uint32(data), UID: binary.LittleEndian.Uint32(data[4:]), GID: binary.LittleEndian.Uint32(data[8:])}
				if c.PID != cred.PID || c.UID != cred.UID || c.GID != cred.GID {
					return fail(unix.EPERM)
				}
			default:
				return fail(unix.EINVAL)
			}
		}
		off += int((l + 7) &^ 7)
	}
	return rights, 0
}

func (k *Kernel) sysSendto(t *Task, a *args) (uint64, unix.Errno) {
	if int64(a[2]) < 0 {
		return 0, unix.EINVAL
	}
	return k.sendMessage(t, a[0], [][2]uint64{{a[1], min(a[2], maxRWCount)}}, a[4], a[5], nil, a[3])
}

// msghdr is struct msghdr.
type msghdr struct {
	name, namelen, iov, iovlen, control, controllen uint64
	flags                                           uint32
}

func (k *Kernel) readMsghdr(t *Task, va uint64) (msghdr, unix.Errno) {
	var b [sizeofMsghdr]byte
	if e := k.copyIn(t, va, b[:]); e != 0 {
		return msghdr{}, e
	}
	le := binary.LittleEndian
	return msghdr{name: le.Uint64(b[0:]), namelen: uint64(le.Uint32(b[8:])), iov: le.Uint64(b[16:]),
		iovlen: le.Uint64(b[24:]), control: le.Uint64(b[32:]), controllen: le.Uint64(b[40:]), flags: le.Uint32(b[48:])}, 0
}

// msgArgs is what sendmsg and recvmsg take first: the socket, the msghdr
// at a[1] and its iovecs.
func (k *Kernel) msgArgs(t *Task, a *args) (*vfs.Socket, msghdr, [][2]uint64, unix.Errno) {
	s, e := k.socketOf(t, a[0])
	if e != 0 {
		return nil, msghdr{}, nil, e
	}
	h, e := k.readMsghdr(t, a[1])
	if e != 0 {
		return nil, msghdr{}, nil, e
	}
	iov, e := k.iovecs(t, h.iov, h.iovlen)
	if e != 0 {
		return nil, msghdr{}, nil, e
	}
	if int32(h.namelen) < 0 {
		return nil, msghdr{}, nil, unix.EINVAL
	}
	return s, h, iov, 0
}

func (k *Kernel) sysSendmsg(t *Task, a *args) (uint64, unix.Errno) {
	_, h, iov, e := k.msgArgs(t, a)
	if e != 0 {
		return 0, e
	}
	if h.controllen > math.MaxInt32 {
		return 0, unix.ENOBUFS
	}
	var control []byte
	if h.controllen >= sizeofCmsghdr {
		control = make([]byte, h.controllen)
		if e := k.copyIn(t, h.control, control); e != 0 {
			return 0, e
		}
	}
	return k.sendMessage(t, a[0], iov, h.name, h.namelen, control, a[2])
}

// recvMessage is the common part of recvfrom and recvmsg: it fills the
// iovecs and returns the byte count and what came with the data.
func (k *Kernel) recvMessage(t *Task, s *vfs.Socket, iov [][2]uint64, flags uint64) (uint64, vfs.RecvMsg, unix.Errno) {
	if flags&msgOOB != 0 {
		k.noteOnce("msg-oob", "recv: MSG_OOB is not supported on AF_UNIX sockets: EOPNOTSUPP")
		return 0, vfs.RecvMsg{}, unix.EOPNOTSUPP
	}
	var total uint64
	for _, v := range iov {
		total += v[1]
	}
	buf := make([]byte, min(total, maxIO*16))
	r, e, ready := s.Recv(buf, flags&msgPeek != 0, flags&msgWaitall != 0, flags&msgDontwait != 0)
	if e == vfs.EBLOCK {
		_, e = k.block(t, waitSpec{deadline: math.MaxInt64, ready: ready, restartable: true})
		return 0, r, e
	}
	if e != 0 {
		return 0, r, e
	}
	data := buf[:r.N]
	for _, v := range iov {
		if len(data) == 0 {
			break
		}
		n := min(uint64(len(data)), v[1])
		if e := k.copyOut(t, v[0], data[:n]); e != 0 {
			for _, h := range r.Rights {
				h.Release()
			}
			return 0, vfs.RecvMsg{}, e
		}
		data = data[n:]
	}
	ret := uint64(r.N)
	if flags&msgTrunc != 0 && s.Type() != unix.SOCK_STREAM {
		ret = uint64(r.Len)
	}
	return ret, r, 0
}

// socketReadv is readv(2) of a socket: recvmsg without flags, whose
// descriptors, if any, are closed as Linux's read does.
func (k *Kernel) socketReadv(t *Task, s *vfs.Socket, iov [][2]uint64) (uint64, unix.Errno) {
	n, r, e := k.recvMessage(t, s, iov, 0)
	releaseAll(r.Rights)
	return n, e
}

func (k *Kernel) sysRecvfrom(t *Task, a *args) (uint64, unix.Errno) {
	s, e := k.socketOf(t, a[0])
	if e != 0 {
		return 0, e
	}
	n, r, e := k.recvMessage(t, s, [][2]uint64{{a[1], min(a[2], maxRWCount)}}, a[3])
	if e != 0 {
		return 0, e
	}
	for _, h := range r.Rights {
		h.Release()
	}
	from := r.From
	if from == nil {
		from = []byte{}
	}
	if e := k.putSockaddr(t, from, a[4], a[5]); e != 0 {
		return 0, e
	}
	return n, 0
}

func (k *Kernel) sysRecvmsg(t *Task, a *args) (uint64, unix.Errno) {
	s, h, iov, e := k.msgArgs(t, a)
	if e != 0 {
		return 0, e
	}
	flags := a[2]
	n, r, e := k.recvMessage(t, s, iov, flags)
	if e != 0 {
		return 0, e
	}
	outFlags := uint32(flags & msgCmsgCloexec)
	if r.Trunc {
		outFlags |= msgTrunc
	}
	// The name: msg_namelen becomes its length (0 for an unbound sender).
	namelen := uint32(0)
	if h.name != 0 && r.From != nil {
		c := min(int(h.namelen), len(r.From))
		if e := k.copyOut(t, h.name, r.From[:c]); e != 0 {
			releaseAll(r.Rights)
			return 0, e
		}
		namelen = uint32(len(r.From))
	}
	// Control messages: credentials first, then the descriptors, as
	// Linux's scm_recv.
	var control []byte
	room := int(min(h.controllen, math.MaxInt32))
	if r.Cred != nil {
		cm := cmsg(scmCredentials, 12)
		binary.LittleEndian.PutUint32(cm[16:], r.Cred.PID)
		binary.LittleEndian.PutUint32(cm[20:], r.Cred.UID)
		binary.LittleEndian.PutUint32(cm[24:], r.Cred.GID)
		if len(control)+sizeofCmsghdr+12 <= room {
			control = append(control, cm[:min(len(cm), room-len(control))]...)
		} else {
			outFlags |= msgCtrunc
		}
	}
	if len(r.Rights) > 0 {
		fit := (room - len(control) - sizeofCmsghdr) / 4
		if fit < 0 {
			fit = 0
		}
		if fit < len(r.Rights) {
			outFlags |= msgCtrunc
		}
		var fds []int
		for i, hd := range r.Rights {
			if i >= fit {
				hd.Release()
				continue
			}
			nfd, e := t.proc.fds.InstallHeld(hd, flags&msgCmsgCloexec != 0)
			if e != 0 {
				hd.Release()
				outFlags |= msgCtrunc
				continue
			}
			fds = append(fds, nfd)
		}
		if len(fds) > 0 {
			cm := cmsg(scmRights, 4*len(fds))
			for i, fd := range fds {
				binary.LittleEndian.PutUint32(cm[sizeofCmsghdr+4*i:], uint32(fd))
			}
			control = append(control, cm[:min(len(cm), room-len(control))]...)
		}
	}
	if len(control) > 0 {
		if e := k.copyOut(t, h.control, control); e != 0 {
			return 0, e
		}
	}
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], namelen)
	if e := k.copyOut(t, a[1]+8, b[:]); e != 0 {
		return 0, e
	}
	var cl [8]byte
	binary.LittleEndian.PutUint64(cl[:], uint64(len(control)))
	if e := k.copyOut(t, a[1]+40, cl[:]); e != 0 {
		return 0, e
	}
	binary.LittleEndian.PutUint32(b[:], outFlags)
	if e := k.copyOut(t, a[1]+48, b[:]); e != 0 {
		return 0, e
	}
	return n, 0
}

func releaseAll(hs []vfs.Held) {
	for _, h := range hs {
		h.Release()
	}
}

// cmsg makes a SOL_SOCKET control message with n data bytes, padded to
// CMSG_SPACE (its cmsg_len is CMSG_LEN).
func cmsg(typ int32, n int) []byte {
	b := make([]byte, (sizeofCmsghdr+n+7)&^7)
	binary.LittleEndian.PutUint64(b, uint64(sizeofCmsghdr+n))
	binary.LittleEndian.PutUint32(b[8:], solSocket)
	binary.LittleEndian.PutUint32(b[12:], uint32(typ))
	return b
}

func (k *Kernel) sysGetsockopt(t *Task, a *args) (uint64, unix.Errno) {
	s, e := k.socketOf(t, a[0])
	if e != 0 {
		return 0, e
	}
	var lb [4]byte
	if e := k.copyIn(t, a[4], lb[:]); e != 0 {
		return 0, e
	}
	n := int32(binary.LittleEndian.Uint32(lb[:]))
	if n < 0 {
		return 0, unix.EINVAL
	}
	if int32(a[1]) != solSocket {
		return 0, unix.EOPNOTSUPP
	}
	var v []byte
	val := func(x int) { v = binary.LittleEndian.AppendUint32(nil, uint32(x)) }
	switch int32(a[2]) {
	case soType:
		val(s.Type())
	case soError:
		val(int(s.TakeError()))
	case soSndbuf:
		snd, _ := s.Buffers()
		val(snd)
	case soRcvbuf:
		_, rcv := s.Buffers()
		val(rcv)
	case soPasscred:
		x := 0
		if s.PassCred() {
			x = 1
		}
		val(x)
	case soPeercred:
		c := s.PeerCred()
		v = binary.LittleEndian.AppendUint32(nil, c.PID)
		v = binary.LittleEndian.AppendUint32(v, c.UID)
		v = binary.LittleEndian.AppendUint32(v, c.GID)
	case soAcceptconn:
		x := 0
		if s.Listening() {
			x = 1
		}
		val(x)
	case soDomain:
		val(unix.AF_UNIX)
	case soProtocol:
		val(0)
	default:
		k.noteOnce(fmt.Sprintf("getsockopt-%d", a[2]), fmt.Sprintf("getsockopt: SOL_SOCKET option %d is not supported: ENOPROTOOPT", a[2]))
		return 0, unix.ENOPROTOOPT
	}
	c := min(int(n), len(v))
	if e := k.copyOut(t, a[3], v[:c]); e != 0 {
		return 0, e
	}
	binary.LittleEndian.PutUint32(lb[:], uint32(c))
	return 0, k.copyOut(t, a[4], lb[:])
}

func (k *Kernel) sysSetsockopt(t *Task, a *args) (uint64, unix.Errno) {
	s, e := k.socketOf(t, a[0])
	if e != 0 {
		return 0, e
	}
	if int32(a[1]) != solSocket {
		return 0, unix.EOPNOTSUPP
	}
	if int32(a[4]) < 4 {
		return 0, unix.EINVAL
	}
	var b [4]byte
	if e := k.copyIn(t, a[3], b[:]); e != 0 {
		return 0, e
	}
	v := int(int32(binary.LittleEndian.Uint32(b[:])))
	switch int32(a[2]) {
	case soSndbuf:
		s.SetBuffer(true, v)
	case soRcvbuf:
		s.SetBuffer(false, v)
	case soPasscred:
		s.SetPassCred(v != 0)
	default:
		k.noteOnce(fmt.Sprintf("setsockopt-%d", a[2]), fmt.Sprintf("setsockopt: SOL_SOCKET option %d is not supported: ENOPROTOOPT", a[2]))
		return 0, unix.ENOPROTOOPT
	}
	return 0, 0
}
