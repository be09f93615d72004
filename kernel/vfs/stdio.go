package vfs

import (
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// Terminal ioctls passed through to a host terminal.
const (
	ioctlTCGETS     = 0x5401
	ioctlTIOCGWINSZ = 0x5413
)

// termiosSize is the size of the kernel's struct termios on x86-64, which
// TCGETS fills: four tcflag_t, c_line and NCCS=19 control characters.
const termiosSize = 4*4 + 1 + 19

// stdioFile is one of the host's standard streams seen by the guest. The
// guest shares the host descriptor, and with it the offset when it is a
// file; closing the guest's descriptor leaves the host's open. O_NONBLOCK is
// emulated with poll, so the host descriptor's own flags never change.
type stdioFile struct {
	flagSet
	name string // stdin, stdout or stderr
	file *os.File
	fd   int

	mu     sync.RWMutex
	closed bool
}

// stdio returns the guest's view of a host standard stream by name, or nil
// for an unknown name. A stream without a host file is /dev/null.
func (fs *FS) stdio(name string) File {
	var f *os.File
	var acc int
	switch name {
	case "stdin":
		f, acc = fs.opts.Stdin, unix.O_RDONLY
	case "stdout":
		f, acc = fs.opts.Stdout, unix.O_WRONLY
	case "stderr":
		f, acc = fs.opts.Stderr, unix.O_WRONLY
	default:
		return nil
	}
	if f == nil {
		null, errno := fs.Open("/", "/dev/null", acc)
		if errno != 0 {
			return nil
		}
		return null
	}
	s := &stdioFile{name: name, file: f, fd: int(f.Fd())}
	if hostFlags, err := unix.FcntlInt(uintptr(s.fd), unix.F_GETFL, 0); err == nil {
		acc = hostFlags & unix.O_ACCMODE
		s.flags = hostFlags&unix.O_APPEND | acc | oLargefile
	} else {
		s.flags = acc | oLargefile
	}
	return s
}

func (s *stdioFile) Read(p []byte) (int, unix.Errno) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, unix.EBADF
	}
	if errno := s.wouldBlock(unix.POLLIN); errno != 0 {
		return 0, errno
	}
	for {
		n, err := unix.Read(s.fd, p)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, errnoOf(err)
		}
		return n, 0
	}
}

func (s *stdioFile) Write(p []byte) (int, unix.Errno) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, unix.EBADF
	}
	if errno := s.wouldBlock(unix.POLLOUT); errno != 0 {
		return 0, errno
	}
	for {
		n, err := unix.Write(s.fd, p)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, errnoOf(err)
		}
		return n, 0
	}
}

// wouldBlock is EAGAIN when the guest asked for O_NONBLOCK and the host
// stream is not ready.
// waitReadable waits until a blocking read would not block, asking
// interrupted every 50 ms: EINTR when it says so (the run ends, or a
// checkpoint interrupts the call, which is then made again).
// wouldBlock says whether a read (events POLLIN) or write (POLLOUT) of
// the host stream would wait: EAGAIN for a non-blocking descriptor,
// EBLOCK for a blocking one, so that the kernel waits for the stream with
// the task blocked rather than with the host thread.
func (s *stdioFile) wouldBlock(events int16) unix.Errno {
	fds := []unix.PollFd{{Fd: int32(s.fd), Events: events}}
	for {
		n, err := unix.Poll(fds, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return errnoOf(err)
		}
		if n == 0 {
			if s.Flags()&unix.O_NONBLOCK != 0 {
				return unix.EAGAIN
			}
			return EBLOCK
		}
		return 0
	}
}

func (s *stdioFile) Pread(p []byte, off int64) (int, unix.Errno) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, unix.EBADF
	}
	return preadRetry(s.fd, p, off)
}

func (s *stdioFile) Pwrite(p []byte, off int64) (int, unix.Errno) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, unix.EBADF
	}
	for {
		n, err := unix.Pwrite(s.fd, p, off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, errnoOf(err)
		}
		return n, 0
	}
}

// Lseek is the host's lseek: ESPIPE on a pipe or terminal, the real thing on
// a redirected file.
func (s *stdioFile) Lseek(off int64, whence int) (int64, unix.Errno) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, unix.EBADF
	}
	n, err := unix.Seek(s.fd, off, whence)
	return n, errnoOf(err)
}

func (s *stdioFile) Stat() (Stat, unix.Errno) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return Stat{}, unix.EBADF
	}
	return fstatFd(s.fd)
}

func (s *stdioFile) Getdents64(int) ([]byte, unix.Errno) { return nil, unix.ENOTDIR }

// Ioctl passes TCGETS and TIOCGWINSZ to the host when the stream is a
// terminal; anything else is ENOTTY.
func (s *stdioFile) Ioctl(req, arg uint64, m Memory) (uint64, unix.Errno) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, unix.EBADF
	}
	var out []byte
	switch req {
	case ioctlTCGETS:
		t, err := unix.IoctlGetTermios(s.fd, unix.TCGETS)
		if err != nil {
			return 0, unix.ENOTTY
		}
		out = marshalTermios(t)
	case ioctlTIOCGWINSZ:
		if _, err := unix.IoctlGetTermios(s.fd, unix.TCGETS); err != nil {
			return 0, unix.ENOTTY
		}
		ws, err := unix.IoctlGetWinsize(s.fd, unix.TIOCGWINSZ)
		if err != nil {
			return 0, errnoOf(err)
		}
		out = []byte{
			byte(ws.Row), byte(ws.Row >> 8), byte(ws.Col), byte(ws.Col >> 8),
			byte(ws.Xpixel), byte(ws.Xpixel >> 8), byte(ws.Ypixel), byte(ws.Ypixel >> 8),
		}
	default:
		return 0, unix.ENOTTY
	}
	if m == nil || m.CopyOut(arg, out) != nil {
		return 0, unix.EFAULT
	}
	return 0, 0
}

// marshalTermios lays out the kernel's struct termios.
func marshalTermios(t *unix.Termios) []byte {
	b := make([]byte, termiosSize)
	for i, v := range []uint32{t.Iflag, t.Oflag, t.Cflag, t.Lflag} {
		b[4*i], b[4*i+1], b[4*i+2], b[4*i+3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
	}
	b[16] = t.Line
	copy(b[17:], t.Cc[:])
	return b
}

// MmapBacking maps the host stream when it is a regular file, and is ENODEV
// otherwise (a terminal or a pipe).
func (s *stdioFile) MmapBacking(_, _ uint64, prot uint32, shared bool) (Backing, unix.Errno) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, unix.EBADF
	}
	st, errno := fstatFd(s.fd)
	if errno != 0 {
		return nil, errno
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, unix.ENODEV
	}
	// A Backing cannot write back, so a shared writable mapping is refused
	// even where Linux would allow it (a stream open O_RDWR).
	if !readable(s.Flags()) || shared && prot&unix.PROT_WRITE != 0 {
		return nil, unix.EACCES
	}
	return newFileBacking(s.fd, s.name)
}

// Close forgets the host stream without closing it.
func (s *stdioFile) Close() unix.Errno {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return unix.EBADF
	}
	s.closed = true
	return 0
}

func (s *stdioFile) Describe() FileState {
	var off int64
	if n, errno := s.Lseek(0, unix.SEEK_CUR); errno == 0 {
		off = n
	}
	return FileState{Kind: KindStdio, Path: s.name, Flags: s.Flags(), Offset: off}
}
