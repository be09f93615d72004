package kernel

import (
	"encoding/binary"
	"math"

	"golang.org/x/sys/unix"
)

// System calls of timers and CPU time: alarm, getitimer, setitimer,
// timer_*, getrusage, times, pause. The timers themselves are in
// timers.go.

const (
	timerAbstime = 1 // TIMER_ABSTIME
	userHZ       = 100

	rusageSelf     = 0
	rusageChildren = -1
	rusageThread   = 1
)

// readTimeval reads a struct timeval as nanoseconds (EINVAL when out of
// range, as setitimer checks it).
func (k *Kernel) readTimeval(t *Task, va uint64) (int64, unix.Errno) {
	var b [16]byte
	if e := k.copyIn(t, va, b[:]); e != 0 {
		return 0, e
	}
	sec, usec := int64(binary.LittleEndian.Uint64(b[:])), int64(binary.LittleEndian.Uint64(b[8:]))
	if sec < 0 || usec < 0 || usec >= 1e6 {
		return 0, unix.EINVAL
	}
	if sec > math.MaxInt64/int64(1e9)-1 {
		return math.MaxInt64 / 2, 0
	}
	return sec*1e9 + usec*1e3, 0
}

func putTimeval(b []byte, ns int64) {
	binary.LittleEndian.PutUint64(b, uint64(ns/1e9))
	binary.LittleEndian.PutUint64(b[8:], uint64(ns%1e9/1e3))
}

// itimerval is the current value of interval timer tm as struct
// itimerval. A timer less than a microsecond from firing shows 1 µs, as
// Linux rounds it up rather than show a running timer as stopped.
func (k *Kernel) itimerval(tm *Timer) []byte {
	b := make([]byte, 32)
	putTimeval(b, tm.Interval)
	rem := k.remaining(tm)
	if rem > 0 && rem < 1000 {
		rem = 1000
	}
	putTimeval(b[16:], rem)
	return b
}

func (k *Kernel) sysGetitimer(t *Task, a *args) (uint64, unix.Errno) {
	which := int64(int32(a[0]))
	if which < 0 || which >= int64(len(itimerKinds)) {
		return 0, unix.EINVAL
	}
	return 0, k.copyOut(t, a[1], k.itimerval(k.itimer(t, itimerKinds[which])))
}

// sysSetitimer is setitimer(which, new, old). A NULL new value disarms
// the timer, as Linux still allows.
func (k *Kernel) sysSetitimer(t *Task, a *args) (uint64, unix.Errno) {
	which := int64(int32(a[0]))
	if which < 0 || which >= int64(len(itimerKinds)) {
		return 0, unix.EINVAL
	}
	var interval, value int64
	if a[1] != 0 {
		var e unix.Errno
		if interval, e = k.readTimeval(t, a[1]); e != 0 {
			return 0, e
		}
		if value, e = k.readTimeval(t, a[1]+16); e != 0 {
			return 0, e
		}
	}
	tm := k.itimer(t, itimerKinds[which])
	if a[2] != 0 {
		if e := k.copyOut(t, a[2], k.itimerval(tm)); e != 0 {
			return 0, e
		}
	}
	k.arm(tm, value, interval, false)
	return 0, 0
}

// sysAlarm is alarm(seconds): ITIMER_REAL one-shot; it returns the
// seconds that were left, rounded to the nearest (at least 1 while armed).
func (k *Kernel) sysAlarm(t *Task, a *args) (uint64, unix.Errno) {
	tm := k.itimer(t, TimerReal)
	rem := k.remaining(tm)
	old := rem / 1e9
	if rem%1e9 >= 5e8 || old == 0 && rem > 0 {
		old++
	}
	k.arm(tm, int64(uint32(a[0]))*1e9, 0, false)
	return uint64(old), 0
}

// timerClockErr is timer_create's answer for clock id: 0 for the clocks
// it accepts, EOPNOTSUPP for clocks that exist but have no timers (as
// Linux's), EPERM for the alarm clocks (they need CAP_WAKE_ALARM), EINVAL
// for the rest.
func (k *Kernel) timerClockErr(id int32) unix.Errno {
	switch id {
	case unix.CLOCK_REALTIME, unix.CLOCK_MONOTONIC, unix.CLOCK_BOOTTIME, unix.CLOCK_TAI:
		return 0
	case unix.CLOCK_MONOTONIC_RAW, unix.CLOCK_REALTIME_COARSE, unix.CLOCK_MONOTONIC_COARSE:
		return unix.EOPNOTSUPP
	case unix.CLOCK_REALTIME_ALARM, unix.CLOCK_BOOTTIME_ALARM:
		return unix.EPERM
	}
	if _, isCPU, ok := k.cpuClock(id); isCPU && ok {
		return 0
	}
	return unix.EINVAL
}

// sysTimerCreate is timer_create(clockid, sevp, timerid).
func (k *Kernel) sysTimerCreate(t *Task, a *args) (uint64, unix.Errno) {
	clock := int32(a[0])
	if e := k.timerClockErr(clock); e != 0 {
		return 0, e
	}
	tt := &k.timers
	tm := &Timer{Kind: TimerPOSIX, ID: tt.nextID, Clock: clock, Notify: sigevSignal, Signo: int(unix.SIGALRM), Value: uint64(tt.nextID), PID: t.proc.pid}
	if a[1] != 0 {
		var b [20]byte // sigev_value, sigev_signo, sigev_notify, sigev_notify_thread_id
		if e := k.copyIn(t, a[1], b[:]); e != 0 {
			return 0, e
		}
		le := binary.LittleEndian
		tm.Value = le.Uint64(b[0:])
		tm.Signo = int(int32(le.Uint32(b[8:])))
		tm.Notify = int32(le.Uint32(b[12:]))
		switch tm.Notify {
		case sigevNone:
		case sigevSignal | sigevThreadID:
			tid := int(int32(le.Uint32(b[16:])))
			if target := k.taskByTID(tid); target == nil || target.proc != t.proc {
				return 0, unix.EINVAL
			}
			tm.TID = tid
			fallthrough
		case sigevSignal, sigevThread:
			if tm.Signo < 1 || tm.Signo > numSignals {
				return 0, unix.EINVAL
			}
		default:
			return 0, unix.EINVAL
		}
	}
	n := 0
	for _, x := range tt.list {
		if x.Kind == TimerPOSIX {
			n++
		}
	}
	if n >= maxTimers {
		return 0, unix.EAGAIN
	}
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], uint32(tm.ID))
	if e := k.copyOut(t, a[2], b[:]); e != 0 {
		return 0, e
	}
	tt.nextID++
	tt.list = append(tt.list, tm)
	return 0, 0
}

// timerArg finds the POSIX timer a call names (EINVAL if none).
func (k *Kernel) timerArg(t *Task, a uint64) (*Timer, unix.Errno) {
	id := int64(int32(a))
	if id < 0 || uint64(id) != a&0xffffffff {
		return nil, unix.EINVAL
	}
	tm := k.posixTimer(t, int(id))
	if tm == nil {
		return nil, unix.EINVAL
	}
	return tm, 0
}

// readItimerspec reads a struct itimerspec: it_interval, then it_value.
func (k *Kernel) readItimerspec(t *Task, va uint64) (interval, value int64, e unix.Errno) {
	if interval, e = k.readTimespec(t, va); e != 0 {
		return 0, 0, e
	}
	value, e = k.readTimespec(t, va+16)
	return interval, value, e
}

// itimerspec is the value of POSIX timer tm as struct itimerspec.
func (k *Kernel) itimerspec(tm *Timer) []byte {
	b := make([]byte, 32)
	putTimespec(b, tm.Interval)
	putTimespec(b[16:], k.remaining(tm))
	return b
}

// sysTimerSettime is timer_settime(id, flags, new, old).
func (k *Kernel) sysTimerSettime(t *Task, a *args) (uint64, unix.Errno) {
	tm, e := k.timerArg(t, a[0])
	if e != 0 {
		return 0, e
	}
	if a[2] == 0 {
		return 0, unix.EFAULT
	}
	interval, value, e := k.readItimerspec(t, a[2])
	if e != 0 {
		return 0, e
	}
	if a[3] != 0 {
		if e := k.copyOut(t, a[3], k.itimerspec(tm)); e != 0 {
			return 0, e
		}
	}
	tm.Overrun = 0
	k.arm(tm, value, interval, a[1]&timerAbstime != 0)
	return 0, 0
}

func (k *Kernel) sysTimerGettime(t *Task, a *args) (uint64, unix.Errno) {
	tm, e := k.timerArg(t, a[0])
	if e != 0 {
		return 0, e
	}
	return 0, k.copyOut(t, a[1], k.itimerspec(tm))
}

func (k *Kernel) sysTimerGetoverrun(t *Task, a *args) (uint64, unix.Errno) {
	tm, e := k.timerArg(t, a[0])
	if e != 0 {
		return 0, e
	}
	return uint64(min(tm.LastOverrun, math.MaxInt32)), 0
}

// sysTimerDelete is timer_delete(id); a signal the timer queued and that
// is still pending goes with it, as on Linux.
func (k *Kernel) sysTimerDelete(t *Task, a *args) (uint64, unix.Errno) {
	tm, e := k.timerArg(t, a[0])
	if e != 0 {
		return 0, e
	}
	if tm.Queued && t.pendingTimer[tm.Signo] == tm {
		t.pendingTimer[tm.Signo] = nil
		t.pending &^= sigBit(tm.Signo)
	}
	k.removeTimer(tm)
	return 0, 0
}

// sysGetrusage is getrusage(who, usage). The process has no children
// yet, so RUSAGE_CHILDREN is all zeros; SELF and THREAD are the same.
func (k *Kernel) sysGetrusage(t *Task, a *args) (uint64, unix.Errno) {
	b := make([]byte, 144) // struct rusage
	switch int64(int32(a[0])) {
	case rusageSelf, rusageThread:
		c := k.cpuTime()
		putTimeval(b[0:], c.user)
		putTimeval(b[16:], c.sys)
		le := binary.LittleEndian
		k.timers.maxRSSKB = max(k.timers.maxRSSKB, uint64(k.frames.Used())*4)
		le.PutUint64(b[32:], k.timers.maxRSSKB)  // ru_maxrss
		le.PutUint64(b[64:], k.timers.minFaults) // ru_minflt
	case rusageChildren:
	default:
		return 0, unix.EINVAL
	}
	return 0, k.copyOut(t, a[1], b)
}

// sysTimes is times(buf): CPU times in clock ticks (USER_HZ, 100 Hz); it
// returns the monotonic time in ticks.
func (k *Kernel) sysTimes(t *Task, a *args) (uint64, unix.Errno) {
	const tick = 1e9 / userHZ
	if a[0] != 0 {
		c := k.cpuTime()
		var b [32]byte
		binary.LittleEndian.PutUint64(b[0:], uint64(c.user/tick))
		binary.LittleEndian.PutUint64(b[8:], uint64(c.sys/tick))
		if e := k.copyOut(t, a[0], b[:]); e != 0 {
			return 0, e
		}
	}
	now, _ := k.clock.Now(unix.CLOCK_MONOTONIC)
	return uint64(now / tick), 0
}
