package kernel

import (
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// validTimes is a TimeState with one timer of every kind, as a checkpoint
// writes them.
func validTimes() TimeState {
	return TimeState{
		NextTimerID: 2, NextTimerFD: 1, UserNS: 5e6, SysNS: 1e6, MinFaults: 12, MaxRSSKB: 400,
		Timers: []Timer{
			{Kind: TimerReal, Clock: unix.CLOCK_MONOTONIC, Signo: int(unix.SIGALRM), Remaining: 1e6, Interval: 3e7},
			{Kind: TimerVirtual, Clock: itimerClock(TimerVirtual), Signo: int(unix.SIGVTALRM)},
			{Kind: TimerProf, Clock: itimerClock(TimerProf), Signo: int(unix.SIGPROF), Remaining: 5},
			{Kind: TimerPOSIX, ID: 0, Clock: unix.CLOCK_REALTIME, Signo: 34, Expiry: 946684801e9, Queued: true, Overrun: 3},
			{Kind: TimerPOSIX, ID: 1, Clock: ^int32(0)<<3 | cpuclockSched, Notify: sigevNone, Signo: 14, Remaining: 10},
			{Kind: TimerFD, ID: 0, Clock: unix.CLOCK_BOOTTIME, Remaining: 7, Interval: 7, Ticks: 2},
		},
	}
}

func TestValidateTimers(t *testing.T) {
	st := validState()
	st.Time = validTimes()
	require.NoError(t, st.Validate())

	for _, tc := range []struct {
		name   string
		change func(ts *TimeState)
		want   string
	}{
		{"unknown kind", func(ts *TimeState) { ts.Timers[0].Kind = "cron" }, "unknown kind"},
		{"two ITIMER_REAL", func(ts *TimeState) { ts.Timers[1] = ts.Timers[0] }, "repeated interval timer"},
		{"itimer with another signal", func(ts *TimeState) { ts.Timers[0].Signo = 10 }, "not as setitimer makes it"},
		{"itimer on another clock", func(ts *TimeState) { ts.Timers[0].Clock = unix.CLOCK_REALTIME }, "not as setitimer makes it"},
		{"repeated POSIX id", func(ts *TimeState) { ts.Timers[4].ID = 0 }, "bad or repeated id"},
		{"POSIX id past next", func(ts *TimeState) { ts.Timers[4].ID = 2 }, "bad or repeated id"},
		{"bad notify", func(ts *TimeState) { ts.Timers[3].Notify = 99 }, "bad sigev_notify"},
		{"bad clock", func(ts *TimeState) { ts.Timers[3].Clock = 99 }, "bad clock"},
		{"bad CPU clock", func(ts *TimeState) { ts.Timers[4].Clock = -1 }, "bad clock"},
		{"signal 0", func(ts *TimeState) { ts.Timers[3].Signo = 0 }, "bad signal"},
		{"signal 65", func(ts *TimeState) { ts.Timers[3].Signo = 65 }, "bad signal"},
		{"negative remaining", func(ts *TimeState) { ts.Timers[0].Remaining = -1 }, "negative"},
		{"negative interval", func(ts *TimeState) { ts.Timers[0].Interval = -1 }, "negative"},
		{"absolute monotonic expiry", func(ts *TimeState) { ts.Timers[0].Expiry = 5 }, "only for CLOCK_REALTIME"},
		{"timerfd with a signal", func(ts *TimeState) { ts.Timers[5].Signo = 14 }, "not as timerfd_create makes it"},
		{"timerfd on a CPU clock", func(ts *TimeState) { ts.Timers[5].Clock = unix.CLOCK_PROCESS_CPUTIME_ID }, "not as timerfd_create makes it"},
		{"timerfd id past next", func(ts *TimeState) { ts.Timers[5].ID = 1 }, "bad or repeated id"},
		{"negative CPU time", func(ts *TimeState) { ts.UserNS = -1 }, "negative CPU time"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := validState()
			st.Time = validTimes()
			tc.change(&st.Time)
			err := st.Validate()
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestItimerClocks(t *testing.T) {
	for _, tc := range []struct {
		kind  string
		clock int32
	}{
		{TimerReal, unix.CLOCK_MONOTONIC},
		{TimerVirtual, -7}, // clock_getcpuclockid(0) with CPUCLOCK_VIRT
		{TimerProf, -8},    // CPUCLOCK_PROF
	} {
		require.Equal(t, tc.clock, itimerClock(tc.kind), tc.kind)
	}
}

func TestCPUClockIDs(t *testing.T) {
	k := &Kernel{}
	k.adopt(newProcess(nil, nil, "/", "prog")) // pid and tid 2
	for _, tc := range []struct {
		name          string
		id            int32
		which         int
		isCPU, usable bool
	}{
		{"CLOCK_PROCESS_CPUTIME_ID", unix.CLOCK_PROCESS_CPUTIME_ID, cpuclockSched, true, true},
		{"CLOCK_THREAD_CPUTIME_ID", unix.CLOCK_THREAD_CPUTIME_ID, cpuclockSched, true, true},
		{"CLOCK_MONOTONIC", unix.CLOCK_MONOTONIC, 0, false, false},
		{"clock_getcpuclockid(0)", -6, cpuclockSched, true, true},
		{"clock_getcpuclockid(2)", -22, cpuclockSched, true, true},
		{"clock_getcpuclockid(3)", -30, cpuclockSched, true, false},
		{"pthread_getcpuclockid(tid 2)", -18, cpuclockSched, true, true},
		{"CPUCLOCK_MAX", -5, 0, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			which, isCPU, ok := k.cpuClock(tc.id)
			require.Equal(t, tc.isCPU, isCPU)
			require.Equal(t, tc.usable, ok)
			if ok {
				require.Equal(t, tc.which, which)
			}
		})
	}
}

// TestTimerExpiry fires timers on a virtual clock: a periodic POSIX timer
// whose signal is still pending counts overruns, the count moves to the
// delivery, and an interval timer sends one signal however late.
func TestTimerExpiry(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		kind                 string
		advance              []int64 // clock steps, each followed by a check
		wantPending          bool
		wantOverrun, wantRem int64
	}{
		{"posix not yet due", TimerPOSIX, []int64{9}, false, 0, 1},
		{"posix due", TimerPOSIX, []int64{10}, true, 0, 10},
		{"posix three periods late", TimerPOSIX, []int64{35}, true, 2, 5},
		{"posix pending, fires again", TimerPOSIX, []int64{10, 10, 10}, true, 2, 10},
		{"itimer three periods late", TimerReal, []int64{35}, true, 0, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := &Kernel{clock: NewVirtualClock()}
			k.adopt(newProcess(nil, nil, "/", "prog"))
			task := k.first.tasks[0]
			tm := k.itimer(task, TimerReal)
			if tc.kind == TimerPOSIX {
				tm = &Timer{Kind: TimerPOSIX, ID: 0, Clock: unix.CLOCK_MONOTONIC, Signo: 34, Value: 7, PID: task.proc.pid}
				k.timers.list = append(k.timers.list, tm)
			}
			k.arm(tm, 10, 10, false)
			for _, d := range tc.advance {
				k.clock.Sleep(d)
				k.checkTimers()
			}
			require.Equal(t, tc.wantPending, task.pending&sigBit(tm.Signo) != 0)
			require.Equal(t, tc.wantRem, k.remaining(tm))
			if tc.kind != TimerPOSIX || !tc.wantPending {
				return
			}
			require.Equal(t, siTimer, task.pendingCode[tm.Signo])
			si := sigInfo{signo: tm.Signo}
			k.dequeueTimer(task, tm.Signo, &si)
			require.Equal(t, sigInfo{signo: 34, overrun: int32(tc.wantOverrun), value: 7}, si)
			require.Equal(t, tc.wantOverrun, tm.LastOverrun)
			require.False(t, tm.Queued)
		})
	}
}
