package vfs

import (
	"sync"

	"golang.org/x/sys/unix"
)

// PipeCapacity is the buffer size of a pipe (Linux's default, 16 pages).
const PipeCapacity = 65536

// pipe is the shared buffer behind a pair of pipe ends.
type pipe struct {
	mu      sync.Mutex
	buf     []byte
	readers int
	writers int
	changed chan struct{} // closed and replaced whenever buf or the ends change
	abort   <-chan struct{}
}

func (p *pipe) notifyLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// NewPipe returns the read and write ends of a new pipe (pipe2(2)) with
// flags O_NONBLOCK and/or O_DIRECT already validated by the caller.
// A blocking read or write waits until it can proceed or abort is closed,
// in which case it fails with EINTR.
func NewPipe(flags int, abort <-chan struct{}) (r, w File) {
	p := &pipe{readers: 1, writers: 1, changed: make(chan struct{}), abort: abort}
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

// wait blocks until the pipe changes; false means the wait was aborted.
func (e *pipeEnd) wait(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	case <-e.p.abort:
		return false
	}
}

func (e *pipeEnd) Read(b []byte) (int, unix.Errno) {
	if e.write {
		return 0, unix.EBADF
	}
	for {
		p := e.p
		p.mu.Lock()
		if len(b) == 0 {
			p.mu.Unlock()
			return 0, 0
		}
		if len(p.buf) > 0 {
			n := copy(b, p.buf)
			p.buf = p.buf[n:]
			p.notifyLocked()
			p.mu.Unlock()
			return n, 0
		}
		if p.writers == 0 {
			p.mu.Unlock()
			return 0, 0
		}
		ch := p.changed
		p.mu.Unlock()
		if e.Flags()&unix.O_NONBLOCK != 0 {
			return 0, unix.EAGAIN
		}
		if !e.wait(ch) {
			return 0, unix.EINTR
		}
	}
}

func (e *pipeEnd) Write(b []byte) (int, unix.Errno) {
	if !e.write {
		return 0, unix.EBADF
	}
	done := 0
	for {
		p := e.p
		p.mu.Lock()
		if p.readers == 0 {
			p.mu.Unlock()
			if done > 0 {
				return done, 0
			}
			return 0, unix.EPIPE
		}
		room := PipeCapacity - len(p.buf)
		if room > 0 {
			n := min(room, len(b)-done)
			p.buf = append(p.buf, b[done:done+n]...)
			done += n
			p.notifyLocked()
		}
		ch := p.changed
		p.mu.Unlock()
		if done == len(b) {
			return done, 0
		}
		if e.Flags()&unix.O_NONBLOCK != 0 {
			if done > 0 {
				return done, 0
			}
			return 0, unix.EAGAIN
		}
		if !e.wait(ch) {
			if done > 0 {
				return done, 0
			}
			return 0, unix.EINTR
		}
	}
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
	if e.write {
		p.writers--
	} else {
		p.readers--
	}
	p.notifyLocked()
	return 0
}

func (e *pipeEnd) Describe() FileState {
	return FileState{Kind: KindPipe, Flags: e.Flags()}
}
