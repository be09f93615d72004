package kernel

import (
	"math"
	"time"

	"github.com/emuckpt/emuckpt/kernel/vfs"
	"golang.org/x/sys/unix"
)

// Asynchronous notification (O_ASYNC), as Linux's fasync: a file that
// sends signals (a vfs.AsyncSource, such as /dev/hpet) signals the owner
// of its description (F_SETOWN) at each event while O_ASYNC is set: SIGIO
// with SI_KERNEL, or the F_SETSIG signal with si_code POLL_IN, si_band
// POLLIN|POLLRDNORM and si_fd the descriptor O_ASYNC was set on (Linux's
// send_sigio_to_task). Standard signals do not queue, so events that come
// while the signal is pending merge into one.
//
// The kernel looks for events at every exit of the vCPU (checkAsync) and
// in the waits of poll, select and pause. So that a guest running user
// code hears of an event in time, under the host clock a timer kicks the
// vCPU at the next event; under the virtual clock time only moves at
// exits, so the check at each exit is on time by construction.

// checkAsync turns the events of O_ASYNC files since the last check into
// pending signals, and (host clock) arms the kick for the next event.
func (k *Kernel) checkAsync(t *Task) {
	if !k.asyncUsed {
		return
	}
	next := int64(math.MaxInt64)
	for _, af := range t.proc.fds.AsyncFiles() {
		src, ok := vfs.As[vfs.AsyncSource](af.File)
		if !ok {
			continue
		}
		// Without an owner the events are dropped, as send_sigio does.
		if src.AsyncEvents() != 0 && k.ownsSignals(t, af.Owner.PID) {
			if sig := af.Owner.Signal; sig != 0 {
				k.sendSignal(t, sig, pollIn)
				t.pendingFD[sig] = af.Owner.FD
			} else {
				k.sendSignal(t, int(unix.SIGIO), siKernel)
			}
		}
		if rt, ok := vfs.As[vfs.ReadyTimer](af.File); ok && af.Owner.PID != 0 {
			if at, ok := rt.NextReady(); ok && at < next {
				next = at
			}
		}
	}
	k.armAsyncTimer(next)
}

// nextAsync is the time of the next event of an O_ASYNC file of t's
// process, math.MaxInt64 if none is due.
func (k *Kernel) nextAsync(t *Task) int64 {
	next := int64(math.MaxInt64)
	if !k.asyncUsed {
		return next
	}
	for _, af := range t.proc.fds.AsyncFiles() {
		if rt, ok := vfs.As[vfs.ReadyTimer](af.File); ok && af.Owner.PID != 0 {
			if at, ok := rt.NextReady(); ok && at < next {
				next = at
			}
		}
	}
	return next
}

// ownsSignals reports whether an F_SETOWN value names t's process (or its
// process group, which has the process's id).
func (k *Kernel) ownsSignals(t *Task, pid int) bool {
	return pid == t.proc.pid || pid == -t.proc.pid
}

// armAsyncTimer makes sure the vCPU is kicked at guest time at (host
// clock only; math.MaxInt64: never).
func (k *Kernel) armAsyncTimer(at int64) {
	if _, virtual := k.clock.(*VirtualClock); virtual {
		return
	}
	if at == math.MaxInt64 {
		k.stopAsyncTimer()
		return
	}
	if at == k.asyncAt && k.asyncTimer != nil {
		return
	}
	k.stopAsyncTimer()
	k.asyncAt = at
	k.asyncTimer = time.AfterFunc(time.Duration(at-k.monotonic()), func() {
		k.kickAll()
		select {
		case k.wake <- struct{}{}:
		default:
		}
	})
}

func (k *Kernel) stopAsyncTimer() {
	if k.asyncTimer != nil {
		k.asyncTimer.Stop()
		k.asyncTimer, k.asyncAt = nil, 0
	}
}

// fcntlOwner handles F_GETOWN, F_SETOWN, F_GETSIG, F_SETSIG and the
// O_ASYNC part of F_SETFL; ok is false for any other command.
func (k *Kernel) fcntlOwner(t *Task, fd int, cmd, arg uint64) (ret uint64, e unix.Errno, ok bool) {
	fds := t.proc.fds
	switch cmd {
	case unix.F_GETOWN:
		own, e := fds.Owner(fd)
		return uint64(int64(own.PID)), e, true
	case unix.F_SETOWN:
		// Linux's f_setown: a negative value is a process group; a
		// process or group that does not exist is ESRCH.
		pid := int(int32(arg))
		if pid != 0 && !k.ownsSignals(t, pid) {
			if _, e := fds.Get(fd); e != 0 {
				return 0, e, true
			}
			return 0, unix.ESRCH, true
		}
		return 0, fds.SetOwner(fd, func(o *vfs.Owner) { o.PID = pid }), true
	case unix.F_GETSIG:
		own, e := fds.Owner(fd)
		return uint64(own.Signal), e, true
	case unix.F_SETSIG:
		if arg > numSignals {
			if _, e := fds.Get(fd); e != 0 {
				return 0, e, true
			}
			return 0, unix.EINVAL, true
		}
		return 0, fds.SetOwner(fd, func(o *vfs.Owner) { o.Signal = int(arg) }), true
	}
	return 0, 0, false
}

// setAsync is the fasync part of F_SETFL on fd's file f: turning O_ASYNC
// on records fd as the one signals name (si_fd) and forgets events from
// before; the caller then sets the flags.
func (k *Kernel) setAsync(t *Task, fd int, f vfs.File, arg int) {
	if arg&unix.O_ASYNC == 0 || f.Flags()&unix.O_ASYNC != 0 {
		return
	}
	k.asyncUsed = true
	t.proc.fds.SetOwner(fd, func(o *vfs.Owner) { o.FD = fd })
	if src, ok := vfs.As[vfs.AsyncSource](f); ok {
		src.AsyncEvents()
	}
}
