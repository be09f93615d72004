package vfs

import "golang.org/x/sys/unix"

// Poll event bits, as Linux's asm-generic/poll.h defines them.
const (
	PollIn     = 0x001
	PollPri    = 0x002
	PollOut    = 0x004
	PollErr    = 0x008
	PollHup    = 0x010
	PollNval   = 0x020
	PollRdnorm = 0x040
	PollRdband = 0x080
	PollWrnorm = 0x100
	PollWrband = 0x200
)

// DefaultPollMask is the readiness of a file without a poll operation
// (Linux's DEFAULT_POLLMASK): always readable and writable. Regular files,
// directories, /dev/null, /dev/zero and /dev/urandom are such files.
const DefaultPollMask = PollIn | PollOut | PollRdnorm | PollWrnorm

// Poller is implemented by files whose readiness can change (pipes, host
// streams, /dev/hpet): the file's poll operation.
type Poller interface {
	// Poll returns the POLL* bits that hold now. It never waits.
	Poll() uint32
}

// HostPoller is implemented by files whose readiness comes from a host
// descriptor: a wait for them polls that descriptor on the host.
type HostPoller interface {
	HostFD() int
}

// ReadyTimer is implemented by files that become ready at a time the model
// can tell in advance (a device timer): NextReady is the guest
// CLOCK_MONOTONIC time of the next event, false if none will come.
type ReadyTimer interface {
	NextReady() (int64, bool)
}

// AsyncSource is implemented by files that signal their owner when an event
// happens while O_ASYNC is set (Linux's fasync): AsyncEvents returns how
// many events happened since the previous call or since the open.
type AsyncSource interface {
	AsyncEvents() uint64
}

// EventCounter is implemented by files that count the events that wake
// their waiters (Linux's wake-ups: data written, room made, an end
// closed). Edge-triggered epoll reports a ready file again each time its
// count moved, as Linux's ep_poll_callback does on each wake-up.
type EventCounter interface {
	PollEvents() uint64
}

// unwrapper is a File that wraps another (a registered device).
type unwrapper interface{ Unwrap() File }

// As finds the File itself or the File it wraps that implements T.
func As[T any](f File) (T, bool) {
	for f != nil {
		if x, ok := f.(T); ok {
			return x, true
		}
		u, ok := f.(unwrapper)
		if !ok {
			break
		}
		f = u.Unwrap()
	}
	var zero T
	return zero, false
}

// PollFile is the readiness of f: its poll operation, or DefaultPollMask.
func PollFile(f File) uint32 {
	if p, ok := As[Poller](f); ok {
		return p.Poll()
	}
	if hp, ok := As[HostPoller](f); ok {
		return PollHost(hp.HostFD())
	}
	return DefaultPollMask
}

// PollHost polls a host descriptor without waiting and returns its revents
// as Linux POLL* bits (the host's are the same numbers).
func PollHost(fd int) uint32 {
	fds := []unix.PollFd{{Fd: int32(fd), Events: PollIn | PollOut | PollPri | PollRdnorm | PollWrnorm}}
	for {
		_, err := unix.Poll(fds, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return PollErr
		}
		return uint32(uint16(fds[0].Revents))
	}
}

// Poll is pipe_poll: the read end is readable while data is buffered and
// hung up once no writer is left; the write end is writable while there
// is room and in error once no reader is left.
func (e *pipeEnd) Poll() uint32 {
	p := e.p
	p.mu.Lock()
	defer p.mu.Unlock()
	var m uint32
	if e.write {
		// Writable while a write of PIPE_BUF bytes fits (Linux: while a
		// page slot is free), so that a write a poll or a blocked
		// writer was told could go on does go on.
		if PipeCapacity-len(p.buf) >= pipeBuf {
			m |= PollOut | PollWrnorm
		}
		if p.readers == 0 {
			m |= PollErr
		}
		return m
	}
	if len(p.buf) > 0 {
		m |= PollIn | PollRdnorm
	}
	if p.writers == 0 {
		m |= PollHup
	}
	return m
}

// HostFD is the host stream's descriptor, which poll asks the host about.
func (s *stdioFile) HostFD() int { return s.fd }

// PollEvents is the pipe's count of wake-ups (EventCounter).
func (e *pipeEnd) PollEvents() uint64 {
	e.p.mu.Lock()
	defer e.p.mu.Unlock()
	return e.p.events
}
