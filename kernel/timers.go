package kernel

import (
	"math"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Timers: alarm/setitimer's interval timers and POSIX timers (timer_create)
// share one mechanism.
//
// Every timer has an expiry on one guest clock. Timers only fire on the
// kernel's Run goroutine, in checkTimers, which compares each armed timer
// with its clock and, for each one due, reloads it and sends its signal.
// checkTimers runs after every exit the kernel handles:
//
//   - In host mode a host timer (hostTimer) is set for the earliest
//     expiry; when it goes off it kicks the vCPU out of user code (as a
//     checkpoint request does) and wakes a waiting system call, so expiry
//     interrupts a program that spins or sleeps.
//   - Under --deterministic there is no host timer: timers are checked
//     after each system call and each fault, against the virtual clock,
//     and fire at the first such point at or after their expiry. A sleep
//     (nanosleep, pause) advances the virtual clock to the next expiry and
//     fires it there. The virtual clock does not move while user code
//     runs without exits, so neither does a timer.
//
// The CPU-time clocks measure the run goroutine's host thread (see
// cpuTimes), which runs the vCPU and the kernel's handlers.

// Timer kinds.
const (
	TimerPOSIX   = "posix"   // timer_create
	TimerReal    = "real"    // ITIMER_REAL, alarm: SIGALRM on CLOCK_MONOTONIC
	TimerVirtual = "virtual" // ITIMER_VIRTUAL: SIGVTALRM on user CPU time
	TimerProf    = "prof"    // ITIMER_PROF: SIGPROF on user+system CPU time
)

// sigevent notify values.
const (
	sigevSignal   = 0
	sigevNone     = 1
	sigevThread   = 2
	sigevThreadID = 4
)

// siTimer is si_code SI_TIMER.
const siTimer = -2

// maxTimers bounds timer_create per process (Linux's bound is
// RLIMIT_SIGPENDING).
const maxTimers = 4096

// CPU clock ids (Linux's CPUCLOCK_*), as clock_getcpuclockid makes them:
// (^pid << 3) | which, with cpuclockPerThread for pthread_getcpuclockid.
const (
	cpuclockProf      = 0
	cpuclockVirt      = 1
	cpuclockSched     = 2
	cpuclockPerThread = 4
)

// Timer is one guest timer: the same struct is the kernel's and the
// checkpoint's (State.Time.Timers).
type Timer struct {
	Kind string `json:"kind"`
	// ID is the timer_create id (POSIX timers).
	ID    int   `json:"id,omitempty"`
	Clock int32 `json:"clock"`
	// Expiry is when the timer next fires, on Clock (0: disarmed). In an
	// image it is replaced by Remaining, except for CLOCK_REALTIME, whose
	// absolute time means the same on any host.
	Expiry    int64 `json:"expiry,omitempty"`
	Remaining int64 `json:"remaining,omitempty"`
	Interval  int64 `json:"interval,omitempty"`
	// Notify, Signo and Value are the sigevent (POSIX timers).
	Notify int32  `json:"notify,omitempty"`
	Signo  int    `json:"signo"`
	Value  uint64 `json:"value,omitempty"`
	// Queued means the timer's signal is pending and not yet delivered;
	// Overrun counts the expiries since it was queued, LastOverrun is
	// what timer_getoverrun reports (the count at the last delivery).
	Queued      bool  `json:"queued,omitempty"`
	Overrun     int64 `json:"overrun,omitempty"`
	LastOverrun int64 `json:"last_overrun,omitempty"`
	// Ticks counts the expiries a timerfd's read has not returned yet.
	Ticks uint64 `json:"ticks,omitempty"`
	// PID is the process the timer belongs to (0 in images from before
	// several processes: the first one); TID the thread that
	// SIGEV_THREAD_ID names.
	PID int `json:"pid,omitempty"`
	TID int `json:"tid,omitempty"`
}

// TimeState is the guest's timers and CPU-time accounting in an image.
type TimeState struct {
	Timers      []Timer `json:"timers,omitempty"`
	NextTimerID int     `json:"next_timer_id,omitempty"`
	// NextTimerFD numbers timerfd timers (their descriptors name them).
	NextTimerFD int `json:"next_timerfd_id,omitempty"`
	// UserNS and SysNS are the CPU time used up to the checkpoint.
	UserNS int64 `json:"user_ns,omitempty"`
	SysNS  int64 `json:"sys_ns,omitempty"`
	// MinFaults counts the page faults served; MaxRSSKB is the peak of
	// guest RAM in use.
	MinFaults uint64 `json:"min_faults,omitempty"`
	MaxRSSKB  uint64 `json:"max_rss_kb,omitempty"`
}

// timerTable is the kernel's timers. Only the Run goroutine touches it,
// except hostDue, which the host timer sets.
type timerTable struct {
	list   []*Timer // armed or not; itimers have one entry each at most
	nextID int      // the next timer_create id
	nextFD int      // the next timerfd timer's id
	host   *time.Timer
	// stopped is set when Run returns: no host timer after that.
	stopped bool
	// hostDue is set by the host timer; it only says "look".
	hostDue atomic.Bool
	// cpuBase is the CPU time before this run (from an image) and of the
	// vCPU threads that ended (see cpu.loop).
	cpuBase   cpuTimes
	minFaults uint64
	maxRSSKB  uint64
}

// cpuTimes is user and system CPU time in nanoseconds.
type cpuTimes struct{ user, sys int64 }

// hostThreadCPU reads the calling thread's CPU times.
func hostThreadCPU() cpuTimes {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		return cpuTimes{}
	}
	return cpuTimes{user: ru.Utime.Nano(), sys: ru.Stime.Nano()}
}

// cpuTime is the guest's CPU time. Under --deterministic it is the virtual
// monotonic clock, all of it user time. In host mode it is what the host
// threads that run the vCPUs and the system calls used since Run began
// (each vCPU has a thread of its own, see cpus.go), plus what earlier runs
// used. Another vCPU's thread is read through its thread CPU clock, which
// does not tell user from system time: it counts as user time.
func (k *Kernel) cpuTime() cpuTimes {
	tt := &k.timers
	if _, virtual := k.clock.(*VirtualClock); virtual {
		ns, _ := k.clock.Now(unix.CLOCK_MONOTONIC)
		return cpuTimes{user: ns}
	}
	sum := tt.cpuBase
	for _, c := range k.cpus {
		switch {
		case c.tid == 0: // not running
		case c == k.smp.holder:
			sum = sum.add(c.used())
		default:
			sum.user += threadCPU(c.tid).user - c.cpuStart.user - c.cpuStart.sys
		}
	}
	return sum
}

func (a cpuTimes) add(b cpuTimes) cpuTimes {
	return cpuTimes{user: a.user + b.user, sys: a.sys + b.sys}
}

// used is the CPU time of c's thread since the run began; only that
// thread may ask.
func (c *cpu) used() cpuTimes {
	now := hostThreadCPU()
	return cpuTimes{user: now.user - c.cpuStart.user, sys: now.sys - c.cpuStart.sys}
}

// cpuClock decodes a CPU-time clock id: CLOCK_PROCESS_CPUTIME_ID,
// CLOCK_THREAD_CPUTIME_ID, or one made by clock_getcpuclockid or
// pthread_getcpuclockid. Only the process itself (pid 0 or its own) and
// its task have CPU clocks here; other ids are not CPU clocks.
func (k *Kernel) cpuClock(id int32) (which int, isCPU, ok bool) {
	switch id {
	case unix.CLOCK_PROCESS_CPUTIME_ID, unix.CLOCK_THREAD_CPUTIME_ID:
		return cpuclockSched, true, true
	}
	if id >= 0 {
		return 0, false, false
	}
	which = int(id & 3)
	pid := int(^(id >> 3))
	if which == 3 {
		return 0, true, false
	}
	if pid == 0 {
		return which, true, true
	}
	if id&cpuclockPerThread != 0 {
		return which, true, k.taskByTID(pid) != nil
	}
	return which, true, k.procs[pid] != nil && !k.procs[pid].exited
}

// clockNow reads guest clock id, including the CPU-time clocks.
func (k *Kernel) clockNow(id int32) (int64, bool) {
	which, isCPU, ok := k.cpuClock(id)
	if !isCPU {
		return k.clock.Now(id)
	}
	if !ok {
		return 0, false
	}
	c := k.cpuTime()
	if which == cpuclockVirt {
		return c.user, true
	}
	return c.user + c.sys, true
}

// itimerClock is the clock each interval timer counts on.
func itimerClock(kind string) int32 {
	switch kind {
	case TimerVirtual:
		return ^int32(0)<<3 | cpuclockVirt
	case TimerProf:
		return ^int32(0)<<3 | cpuclockProf
	}
	return unix.CLOCK_MONOTONIC
}

// itimerKinds is ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF by number.
var itimerKinds = []string{TimerReal, TimerVirtual, TimerProf}

var itimerSignals = map[string]int{TimerReal: int(unix.SIGALRM), TimerVirtual: int(unix.SIGVTALRM), TimerProf: int(unix.SIGPROF)}

// itimer returns the interval timer of a kind of t's process, creating it
// disarmed.
func (k *Kernel) itimer(t *Task, kind string) *Timer {
	for _, tm := range k.timers.list {
		if tm.Kind == kind && tm.PID == t.proc.pid {
			return tm
		}
	}
	tm := &Timer{Kind: kind, Clock: itimerClock(kind), Signo: itimerSignals[kind], PID: t.proc.pid}
	k.timers.list = append(k.timers.list, tm)
	return tm
}

// posixTimer finds a timer_create timer of t's process.
func (k *Kernel) posixTimer(t *Task, id int) *Timer {
	for _, tm := range k.timers.list {
		if tm.Kind == TimerPOSIX && tm.ID == id && tm.PID == t.proc.pid {
			return tm
		}
	}
	return nil
}

// remaining is how long until tm fires (0: disarmed). A timer that is due
// but not yet processed reports 1 ns, as Linux does, so it reads as armed.
// A SIGEV_NONE timer is never processed (it has nothing to send): it is
// brought forward here, as Linux's common_timer_get does.
func (k *Kernel) remaining(tm *Timer) int64 {
	if tm.Expiry == 0 {
		return 0
	}
	now, _ := k.clockNow(tm.Clock)
	if tm.Kind == TimerPOSIX && tm.Notify == sigevNone && now >= tm.Expiry {
		if tm.Interval == 0 {
			tm.Expiry = 0
			return 0
		}
		tm.Expiry += ((now-tm.Expiry)/tm.Interval + 1) * tm.Interval
	}
	return max(tm.Expiry-now, 1)
}

// arm sets tm to fire after value ns (absolute on its clock when abs),
// then every interval ns; value 0 disarms it.
func (k *Kernel) arm(tm *Timer, value, interval int64, abs bool) {
	tm.Interval = interval
	switch {
	case value == 0:
		tm.Expiry = 0
	case abs:
		tm.Expiry = max(value, 1)
	default:
		now, _ := k.clockNow(tm.Clock)
		tm.Expiry = now + value
	}
	k.setHostTimer()
}

// checkTimers fires every timer that is due.
func (k *Kernel) checkTimers() {
	tt := &k.timers
	tt.hostDue.Store(false)
	for _, tm := range tt.list {
		if tm.Expiry == 0 {
			continue
		}
		t := k.timerTask(tm)
		if t == nil {
			continue
		}
		now, _ := k.clockNow(tm.Clock)
		if now < tm.Expiry {
			continue
		}
		n := int64(1)
		if tm.Interval > 0 {
			n += (now - tm.Expiry) / tm.Interval
			tm.Expiry += n * tm.Interval
		} else {
			tm.Expiry = 0
		}
		k.fire(t, tm, n)
	}
	k.setHostTimer()
}

// timerTask is the task a timer signals: the thread SIGEV_THREAD_ID
// names, or the leader of the timer's process; nil when it is gone.
func (k *Kernel) timerTask(tm *Timer) *Task {
	pid := tm.PID
	if pid == 0 && k.first != nil {
		pid = k.first.pid
	}
	if tm.TID != 0 {
		if t := k.taskByTID(tm.TID); t != nil && t.proc.pid == pid {
			return t
		}
		return nil
	}
	p := k.procs[pid]
	if p == nil {
		return nil
	}
	return p.leader()
}

// dropTimers deletes the timers of a process that exits (all) or execs
// (POSIX timers only; interval timers survive execve).
func (k *Kernel) dropTimers(p *Process, all bool) {
	list := k.timers.list[:0]
	for _, tm := range k.timers.list {
		if (tm.PID == p.pid || tm.PID == 0 && p == k.first) && (all || tm.Kind == TimerPOSIX) {
			continue
		}
		list = append(list, tm)
	}
	k.timers.list = list
	k.setHostTimer()
}

// fire sends tm's signal for n expiries. A POSIX timer whose signal is
// still pending counts the expiries as overruns instead, as Linux does;
// interval timers send one signal however late.
func (k *Kernel) fire(t *Task, tm *Timer, n int64) {
	if tm.Kind == TimerFD {
		tm.Ticks += uint64(n)
		return
	}
	if tm.Kind != TimerPOSIX {
		k.sendSignal(t, tm.Signo, siKernel)
		return
	}
	if tm.Notify == sigevNone {
		return
	}
	if tm.Queued {
		tm.Overrun = min(tm.Overrun+n, math.MaxInt32)
		return
	}
	if other := t.pendingTimer[tm.Signo]; other != nil && t.pending&sigBit(tm.Signo) != 0 {
		return // one pending signal per number: another timer's holds it
	}
	tm.Queued, tm.Overrun = true, min(n-1, math.MaxInt32)
	k.sendSignal(t, tm.Signo, siTimer)
	t.pendingTimer[tm.Signo] = tm
}

// dequeueTimer is called as signal sig leaves the pending set: if a POSIX
// timer queued it, the timer's overrun count moves to the delivery.
func (k *Kernel) dequeueTimer(t *Task, sig int, si *sigInfo) {
	tm := t.pendingTimer[sig]
	if tm == nil {
		return
	}
	t.pendingTimer[sig] = nil
	tm.Queued = false
	tm.LastOverrun, tm.Overrun = tm.Overrun, 0
	si.timerID, si.overrun, si.value = int32(tm.ID), int32(tm.LastOverrun), tm.Value
}

// nextExpiry is how long until the earliest armed timer is due, in its
// clock's nanoseconds (a lower bound in host time for CPU clocks, which
// advance no faster than the host's clock); ok is false when none is armed.
func (k *Kernel) nextExpiry() (d int64, ok bool) {
	d = math.MaxInt64
	for _, tm := range k.timers.list {
		if tm.Expiry == 0 || (tm.Kind == TimerPOSIX && tm.Notify == sigevNone) {
			continue
		}
		now, _ := k.clockNow(tm.Clock)
		d, ok = min(d, max(tm.Expiry-now, 0)), true
	}
	return d, ok
}

// setHostTimer points the host timer at the earliest expiry (host mode).
func (k *Kernel) setHostTimer() {
	tt := &k.timers
	if _, virtual := k.clock.(*VirtualClock); virtual || tt.stopped {
		return
	}
	if tt.host != nil {
		tt.host.Stop()
	}
	d, ok := k.nextExpiry()
	if !ok {
		return
	}
	tt.host = time.AfterFunc(time.Duration(d), func() {
		tt.hostDue.Store(true)
		k.kickAll()
		k.poke()
	})
}

// stopHostTimer ends the host timer when Run returns.
func (k *Kernel) stopHostTimer() {
	k.timers.stopped = true
	if k.timers.host != nil {
		k.timers.host.Stop()
	}
}

// interruptingSignal reports whether a pending signal would interrupt a
// waiting system call: one that is not blocked and not ignored.
func interruptingSignal(t *Task) bool {
	for sig := 1; sig <= numSignals; sig++ {
		bit := sigBit(sig)
		if t.pending&bit == 0 || t.sigmask&bit&^unblockable != 0 {
			continue
		}
		act := t.proc.actions[sig]
		if act.Handler == sigIgn || act.Handler == sigDfl && (defaultIgnored(sig) || defaultStops(sig)) {
			continue
		}
		return true
	}
	return false
}

// timeState is the timers and CPU accounting for an image: expiries
// become times remaining on their clocks, except CLOCK_REALTIME's.
func (k *Kernel) timeState() TimeState {
	tt := &k.timers
	c := k.cpuTime()
	ts := TimeState{NextTimerID: tt.nextID, NextTimerFD: tt.nextFD, UserNS: c.user, SysNS: c.sys, MinFaults: tt.minFaults, MaxRSSKB: tt.maxRSSKB}
	for _, tm := range tt.list {
		s := *tm
		if tm.Expiry != 0 && tm.Clock != unix.CLOCK_REALTIME {
			s.Expiry, s.Remaining = 0, k.remaining(tm)
		}
		ts.Timers = append(ts.Timers, s)
	}
	return ts
}

// restoreTimeState brings timers and CPU accounting back from an image
// (after the task exists): remaining times count from the restored clock.
func (k *Kernel) restoreTimeState(ts *TimeState, t *Task) {
	tt := &k.timers
	tt.nextID, tt.nextFD, tt.minFaults, tt.maxRSSKB = ts.NextTimerID, ts.NextTimerFD, ts.MinFaults, ts.MaxRSSKB
	tt.cpuBase = cpuTimes{user: ts.UserNS, sys: ts.SysNS}
	if _, virtual := k.clock.(*VirtualClock); virtual {
		tt.cpuBase = cpuTimes{}
	}
	for i := range ts.Timers {
		tm := ts.Timers[i]
		if tm.Remaining != 0 {
			now, _ := k.clockNow(tm.Clock)
			tm.Expiry, tm.Remaining = now+tm.Remaining, 0
		}
		if tm.PID == 0 {
			tm.PID = t.proc.pid // an image from before several processes
		}
		k.timers.list = append(k.timers.list, &tm)
		if tm.Kind == TimerPOSIX && tm.Queued && tm.Signo >= 1 && tm.Signo <= numSignals && t.pending&sigBit(tm.Signo) != 0 {
			t.pendingTimer[tm.Signo] = &tm
		}
	}
}
