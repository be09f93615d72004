package vfs

import (
	"sync"

	"golang.org/x/sys/unix"
)

// PipeCapacity is the buffer size of a pipe (Linux's default, 16 pages).
const PipeCapacity = 65536

// pipeBuf is PIPE_BUF: writes of at most this many bytes are atomic.
const pipeBuf = 4096

// pipe is the shared buffer behind a pair of pipe ends.
type pipe struct {
	mu      sync.Mutex
	buf     []byte
	readers int
	writers int
	// events counts the changes that wake waiters (data in, room made,
	// an end closed): edge-triggered epoll reports each (EventCounter).
	events uint64
}

// NewPipe returns the read and write ends of a new pipe (pipe2(2)) with
// flags O_NONBLOCK and/or O_DIRECT already validated by the caller. A read
// or write on a blocking end that cannot go on returns EBLOCK: the kernel
// waits for the end to poll ready and makes the call again.
func NewPipe(flags int) (r, w File) {
	p := &pipe{readers: 1, writers: 1}
	fl := flags & unix.O_NONBLOCK
	re := &pipeEnd{p: p}
	re.flags = fl | unix.O_RDONLY
	we := &pipeEnd{p: p, write: true}
	we.flags = fl | unix.O_WRONLY
	return re, we
}

// pipeEnd is one end of a pipe.
type pipeEnd struct {
	flagSet
	p      *pipe
	write  bool
	closed bool
}

// wouldBlock is what a call that cannot go on returns: EAGAIN on a
// non-blocking end, EBLOCK on a blocking one.
func (e *pipeEnd) wouldBlock() unix.Errno {
	if e.Flags()&unix.O_NONBLOCK != 0 {
		return unix.EAGAIN
	}
	return EBLOCK
}

func (e *pipeEnd) Read(b []byte) (int, unix.Errno) {
	if e.write {
		return 0, unix.EBADF
	}
	p := e.p
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case len(b) == 0:
		return 0, 0
	case len(p.buf) > 0:
		n := copy(b, p.buf)
		p.buf = p.buf[n:]
		p.events++
		if len(p.buf) == 0 {
			p.buf = nil
		}
		return n, 0
	case p.writers == 0:
		return 0, 0
	}
	return 0, e.wouldBlock()
}

// Write appends what fits. A write of at most PIPE_BUF bytes is all or
// nothing; a longer one that fills the pipe returns what it wrote (a
// short count, where Linux would wait for the rest).
func (e *pipeEnd) Write(b []byte) (int, unix.Errno) {
	if !e.write {
		return 0, unix.EBADF
	}
	p := e.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.readers == 0 {
		return 0, unix.EPIPE
	}
	room := PipeCapacity - len(p.buf)
	if room == 0 || len(b) <= pipeBuf && room < len(b) {
		return 0, e.wouldBlock()
	}
	n := min(room, len(b))
	p.buf = append(p.buf, b[:n]...)
	p.events++
	return n, 0
}

func (e *pipeEnd) Pread([]byte, int64) (int, unix.Errno)  { return 0, unix.ESPIPE }
func (e *pipeEnd) Pwrite([]byte, int64) (int, unix.Errno) { return 0, unix.ESPIPE }
func (e *pipeEnd) Lseek(int64, int) (int64, unix.Errno)   { return 0, unix.ESPIPE }
func (e *pipeEnd) Getdents64(int) ([]byte, unix.Errno)    { return nil, unix.ENOTDIR }

func (e *pipeEnd) Stat() (Stat, unix.Errno) {
	mode := uint32(unix.S_IFIFO | 0o600)
	return Stat{Mode: mode, Nlink: 1, Uid: uint32(unix.Getuid()), Gid: uint32(unix.Getgid()), Blksize: 4096}, 0
}

func (e *pipeEnd) Ioctl(req uint64, arg uint64, m Memory) (uint64, unix.Errno) {
	if req == 0x541B { // FIONREAD
		e.p.mu.Lock()
		n := len(e.p.buf)
		e.p.mu.Unlock()
		b := []byte{byte(n), byte(n >> 8), byte(n >> 16), byte(n >> 24)}
		if err := m.CopyOut(arg, b); err != nil {
			return 0, unix.EFAULT
		}
		return 0, 0
	}
	return 0, unix.ENOTTY
}

func (e *pipeEnd) Close() unix.Errno {
	p := e.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if e.closed {
		return 0
	}
	e.closed = true
	p.events++
	if e.write {
		p.writers--
	} else {
		p.readers--
	}
	return 0
}

func (e *pipeEnd) Describe() FileState {
	return FileState{Kind: KindPipe, Flags: e.Flags()}
}

// reopenPipe opens another end of the pipe e belongs to, as opening
// /proc/PID/fd/N does on Linux: for reading or writing, whatever e is,
// without waiting for a partner (it is a pipe, not a FIFO). An end for
// both is EINVAL here: an end has one direction.
func reopenPipe(e *pipeEnd, flags int) (File, unix.Errno) {
	acc := flags & unix.O_ACCMODE
	if acc == unix.O_RDWR {
		return nil, unix.EINVAL
	}
	p := e.p
	p.mu.Lock()
	defer p.mu.Unlock()
	n := &pipeEnd{p: p, write: acc == unix.O_WRONLY}
	n.flags = flags&unix.O_NONBLOCK | acc
	if n.write {
		p.writers++
	} else {
		p.readers++
	}
	p.events++
	return n, 0
}
