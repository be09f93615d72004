package kernel

import (
	"encoding/binary"

	"github.com/emuckpt/emuckpt/kernel/vfs"
	"golang.org/x/sys/unix"
)

// eventfd: a 64-bit counter in a file (eventfd(2)). A write adds to it, a
// read takes it all (or 1 with EFD_SEMAPHORE); a read of a zero counter
// and a write that would take it past 2^64-2 wait on a blocking
// descriptor (vfs.EBLOCK, see mayBlock) and fail with EAGAIN on a
// non-blocking one.

// KindEventFD is the FileState kind of an eventfd descriptor. Images do
// not hold eventfds yet: a checkpoint of a process that has one is
// refused.
const KindEventFD vfs.FileKind = "eventfd"

const (
	efdSemaphore = 1
	efdCloexec   = unix.O_CLOEXEC
	efdNonblock  = unix.O_NONBLOCK
	// efdMax is the largest count (ULLONG_MAX - 1).
	efdMax = ^uint64(0) - 1
)

// eventFile is an open eventfd.
type eventFile struct {
	count     uint64
	semaphore bool
	flags     int
	// events counts reads and writes that changed the count
	// (vfs.EventCounter, for edge-triggered epoll).
	events uint64
}

func (f *eventFile) wouldBlock() unix.Errno {
	if f.flags&unix.O_NONBLOCK != 0 {
		return unix.EAGAIN
	}
	return vfs.EBLOCK
}

// Read is eventfd_read: 8 bytes at least, the count (or 1) as a uint64.
func (f *eventFile) Read(p []byte) (int, unix.Errno) {
	if len(p) < 8 {
		return 0, unix.EINVAL
	}
	if f.count == 0 {
		return 0, f.wouldBlock()
	}
	v := f.count
	if f.semaphore {
		v = 1
	}
	f.count -= v
	f.events++
	binary.LittleEndian.PutUint64(p, v)
	return 8, 0
}

// Write is eventfd_write: 8 bytes at least, a uint64 other than 2^64-1
// added to the count.
func (f *eventFile) Write(p []byte) (int, unix.Errno) {
	if len(p) < 8 {
		return 0, unix.EINVAL
	}
	v := binary.LittleEndian.Uint64(p)
	if v == ^uint64(0) {
		return 0, unix.EINVAL
	}
	if v > efdMax-f.count {
		return 0, f.wouldBlock()
	}
	if v > 0 {
		f.count += v
		f.events++
	}
	return 8, 0
}

// Poll is eventfd_poll.
func (f *eventFile) Poll() uint32 {
	var m uint32
	if f.count > 0 {
		m |= vfs.PollIn | vfs.PollRdnorm
	}
	if f.count == ^uint64(0) {
		m |= vfs.PollErr
	}
	if f.count < efdMax {
		m |= vfs.PollOut | vfs.PollWrnorm
	}
	return m
}

func (f *eventFile) PollEvents() uint64                     { return f.events }
func (f *eventFile) Pread([]byte, int64) (int, unix.Errno)  { return 0, unix.ESPIPE }
func (f *eventFile) Pwrite([]byte, int64) (int, unix.Errno) { return 0, unix.ESPIPE }
func (f *eventFile) Lseek(int64, int) (int64, unix.Errno)   { return 0, 0 } // noop_llseek, as Linux
func (f *eventFile) Getdents64(int) ([]byte, unix.Errno)    { return nil, unix.ENOTDIR }
func (f *eventFile) Ioctl(uint64, uint64, vfs.Memory) (uint64, unix.Errno) {
	return 0, unix.ENOTTY
}

// Stat is an anonymous inode's (see timerFile.Stat).
func (f *eventFile) Stat() (vfs.Stat, unix.Errno) {
	return vfs.Stat{Mode: 0o600, Nlink: 1, Uid: uint32(unix.Getuid()), Gid: uint32(unix.Getgid()), Blksize: 4096}, 0
}

func (f *eventFile) Close() unix.Errno { return 0 }
func (f *eventFile) Flags() int        { return f.flags }

func (f *eventFile) SetFlags(arg int) {
	f.flags = f.flags&^vfs.StatusFlagsMask | arg&vfs.StatusFlagsMask
}

func (f *eventFile) Describe() vfs.FileState {
	return vfs.FileState{Kind: KindEventFD, Path: "anon_inode:[eventfd]", Flags: f.flags}
}

// sysEventfd is eventfd(initval): eventfd2 without flags.
func (k *Kernel) sysEventfd(t *Task, a *args) (uint64, unix.Errno) {
	return k.eventfd(t, a[0], 0)
}

// sysEventfd2 is eventfd2(initval, flags).
func (k *Kernel) sysEventfd2(t *Task, a *args) (uint64, unix.Errno) {
	return k.eventfd(t, a[0], int(int32(a[1])))
}

func (k *Kernel) eventfd(t *Task, initval uint64, flags int) (uint64, unix.Errno) {
	if flags&^(efdSemaphore|efdCloexec|efdNonblock) != 0 {
		return 0, unix.EINVAL
	}
	f := &eventFile{count: uint64(uint32(initval)), semaphore: flags&efdSemaphore != 0, flags: unix.O_RDWR | flags&efdNonblock}
	fd, e := t.proc.fds.Install(f, flags&efdCloexec != 0)
	if e != 0 {
		return 0, e
	}
	return uint64(fd), 0
}
