package kernel

import (
	"encoding/binary"
	"fmt"
	"strconv"

	"github.com/emuckpt/emuckpt/kernel/vfs"
	"golang.org/x/sys/unix"
)

// timerfd: a timer whose expiries are counted in a file instead of
// signalled. The timer is an ordinary Timer of kind TimerFD in the
// kernel's table (so it fires, and is saved, like the others); the file
// only reads and resets its count.

// TimerFD is the Timer kind of a timerfd.
const TimerFD = "timerfd"

// KindTimerFD is the FileState kind of a timerfd descriptor. Its Device
// field is the timer's id in the image's time.timers.
const KindTimerFD vfs.FileKind = "timerfd"

const (
	tfdTimerAbstime     = 1
	tfdTimerCancelOnSet = 2
	tfdCloexec          = unix.O_CLOEXEC
	tfdNonblock         = unix.O_NONBLOCK
)

// timerFile is an open timerfd.
type timerFile struct {
	k     *Kernel
	tm    *Timer
	flags int
}

// Readable reports whether a read would return at once: the timer has
// expired since the last read. poll/select readiness is this.
func (f *timerFile) Readable() bool { return f.tm.Ticks > 0 }

// Poll is timerfd_poll: readable once the timer has expired.
func (f *timerFile) Poll() uint32 {
	if f.Readable() {
		return vfs.PollIn | vfs.PollRdnorm
	}
	return 0
}

// Read returns the number of expiries since the last read as a uint64
// and resets it; with none it waits (EAGAIN with O_NONBLOCK).
func (f *timerFile) Read(p []byte) (int, unix.Errno) {
	if len(p) < 8 {
		return 0, unix.EINVAL
	}
	if f.tm.Ticks == 0 {
		if f.flags&unix.O_NONBLOCK != 0 {
			return 0, unix.EAGAIN
		}
		return 0, vfs.EBLOCK
	}
	binary.LittleEndian.PutUint64(p, f.tm.Ticks)
	f.tm.Ticks = 0
	return 8, 0
}

func (f *timerFile) Write([]byte) (int, unix.Errno)         { return 0, unix.EINVAL }
func (f *timerFile) Pread([]byte, int64) (int, unix.Errno)  { return 0, unix.ESPIPE }
func (f *timerFile) Pwrite([]byte, int64) (int, unix.Errno) { return 0, unix.ESPIPE }
func (f *timerFile) Lseek(int64, int) (int64, unix.Errno)   { return 0, 0 } // noop_llseek, as Linux
func (f *timerFile) Getdents64(int) ([]byte, unix.Errno)    { return nil, unix.ENOTDIR }
func (f *timerFile) Ioctl(uint64, uint64, vfs.Memory) (uint64, unix.Errno) {
	return 0, unix.ENOTTY
}

// Stat is an anonymous inode's, as Linux's anon_inode files are: mode 0600
// with no file type bits.
func (f *timerFile) Stat() (vfs.Stat, unix.Errno) {
	return vfs.Stat{Mode: 0o600, Nlink: 1, Uid: uint32(unix.Getuid()), Gid: uint32(unix.Getgid()), Blksize: 4096}, 0
}

// Close deletes the timer.
func (f *timerFile) Close() unix.Errno {
	f.k.removeTimer(f.tm)
	return 0
}

func (f *timerFile) Flags() int { return f.flags }

func (f *timerFile) SetFlags(arg int) {
	f.flags = f.flags&^vfs.StatusFlagsMask | arg&vfs.StatusFlagsMask
}

func (f *timerFile) Describe() vfs.FileState {
	return vfs.FileState{Kind: KindTimerFD, Path: "anon_inode:[timerfd]", Flags: f.flags, Device: []byte(strconv.Itoa(f.tm.ID))}
}

// removeTimer takes tm out of the table.
func (k *Kernel) removeTimer(tm *Timer) {
	list := k.timers.list[:0]
	for _, x := range k.timers.list {
		if x != tm {
			list = append(list, x)
		}
	}
	k.timers.list = list
	k.setHostTimer()
}

// timerfdClockErr is timerfd_create's answer for clock id.
func timerfdClockErr(id int32) unix.Errno {
	switch id {
	case unix.CLOCK_REALTIME, unix.CLOCK_MONOTONIC, unix.CLOCK_BOOTTIME:
		return 0
	case unix.CLOCK_REALTIME_ALARM, unix.CLOCK_BOOTTIME_ALARM:
		return unix.EPERM // needs CAP_WAKE_ALARM
	}
	return unix.EINVAL
}

// sysTimerfdCreate is timerfd_create(clockid, flags).
func (k *Kernel) sysTimerfdCreate(t *Task, a *args) (uint64, unix.Errno) {
	if e := timerfdClockErr(int32(a[0])); e != 0 {
		return 0, e
	}
	flags := int(a[1])
	if flags&^(tfdCloexec|tfdNonblock) != 0 || a[1]>>32 != 0 {
		return 0, unix.EINVAL
	}
	tm := &Timer{Kind: TimerFD, ID: k.timers.nextFD, Clock: int32(a[0])}
	f := &timerFile{k: k, tm: tm, flags: unix.O_RDWR | flags&tfdNonblock}
	fd, e := t.proc.fds.Install(f, flags&tfdCloexec != 0)
	if e != 0 {
		return 0, e
	}
	k.timers.nextFD++
	k.timers.list = append(k.timers.list, tm)
	return uint64(fd), 0
}

// timerfdArg finds the timerfd a call names: EBADF for no descriptor,
// EINVAL for one that is not a timerfd.
func (k *Kernel) timerfdArg(t *Task, fd uint64) (*timerFile, unix.Errno) {
	f, e := k.file(t, fd)
	if e != 0 {
		return nil, e
	}
	tf, ok := f.(*timerFile)
	if !ok {
		return nil, unix.EINVAL
	}
	return tf, 0
}

// sysTimerfdSettime is timerfd_settime(fd, flags, new, old). Arming
// resets the expiry count. TFD_TIMER_CANCEL_ON_SET is accepted with
// TFD_TIMER_ABSTIME on CLOCK_REALTIME, but nothing sets the guest's
// realtime clock, so it never cancels.
func (k *Kernel) sysTimerfdSettime(t *Task, a *args) (uint64, unix.Errno) {
	f, e := k.timerfdArg(t, a[0])
	if e != 0 {
		return 0, e
	}
	flags := a[1]
	if flags&^(tfdTimerAbstime|tfdTimerCancelOnSet) != 0 {
		return 0, unix.EINVAL
	}
	interval, value, e := k.readItimerspec(t, a[2])
	if e != 0 {
		return 0, e
	}
	if a[3] != 0 {
		if e := k.copyOut(t, a[3], k.itimerspec(f.tm)); e != 0 {
			return 0, e
		}
	}
	f.tm.Ticks = 0
	k.arm(f.tm, value, interval, flags&tfdTimerAbstime != 0)
	return 0, 0
}

func (k *Kernel) sysTimerfdGettime(t *Task, a *args) (uint64, unix.Errno) {
	f, e := k.timerfdArg(t, a[0])
	if e != 0 {
		return 0, e
	}
	return 0, k.copyOut(t, a[1], k.itimerspec(f.tm))
}

// restoreTimerFDs installs the timerfd descriptors of an image, which
// vfs cannot re-open: each description once, dup'ed to each of its
// descriptors. The other descriptors are already in place.
func (k *Kernel) restoreTimerFDs(fds *vfs.FDTable, entries []vfs.FDEntry) error {
	byDesc := map[int][]vfs.FDEntry{}
	var order []int
	for _, e := range entries {
		if e.File.Kind != KindTimerFD {
			continue
		}
		if byDesc[e.Desc] == nil {
			order = append(order, e.Desc)
		}
		byDesc[e.Desc] = append(byDesc[e.Desc], e)
	}
	for _, desc := range order {
		es := byDesc[desc]
		id, err := strconv.Atoi(string(es[0].File.Device))
		var tm *Timer
		for _, x := range k.timers.list {
			if x.Kind == TimerFD && x.ID == id {
				tm = x
			}
		}
		if err != nil || tm == nil {
			return fmt.Errorf("%w: descriptor %d: timerfd %q has no timer", ErrRestore, es[0].FD, es[0].File.Device)
		}
		f := &timerFile{k: k, tm: tm, flags: unix.O_RDWR | es[0].File.Flags&vfs.StatusFlagsMask}
		tmp, e := fds.Install(f, false)
		if e != 0 {
			return fmt.Errorf("%w: timerfd: %v", ErrRestore, e)
		}
		keep := false
		for _, x := range es {
			if x.FD == tmp {
				keep = true
				if x.CloseOnExec {
					fds.SetFDFlags(tmp, unix.FD_CLOEXEC)
				}
				continue
			}
			cloexec := 0
			if x.CloseOnExec {
				cloexec = unix.O_CLOEXEC
			}
			if _, e := fds.Dup3(tmp, x.FD, cloexec); e != 0 {
				return fmt.Errorf("%w: timerfd at descriptor %d: %v", ErrRestore, x.FD, e)
			}
		}
		if !keep {
			fds.Close(tmp)
		}
	}
	return nil
}
