package kernel

import (
	"encoding/binary"
	"math"
	"time"

	"github.com/emuckpt/emuckpt/kernel/vfs"
	"golang.org/x/sys/unix"
)

// poll, ppoll, select and pselect6 share one wait loop (pollWait). Each
// pass asks every file for its readiness (vfs.PollFile: regular files and
// the simple devices are always ready, pipes and /dev/hpet know their
// state, the host's standard streams are polled on the host). While
// nothing is ready the loop waits until the earliest of: the timeout, the
// next event of a device that can tell it in advance (vfs.ReadyTimer: the
// HPET's next interrupt), the next event of an O_ASYNC file, a host
// stream becoming ready, the end of the run and a checkpoint request.
//
// Under the virtual clock the wait jumps the clock to the timeout or the
// device event instead of waiting; host streams are still waited for in
// real time (the clock does not move meanwhile, as for a blocking read of
// standard input), and a finite timeout then also runs in real time
// before the clock jumps by it.
//
// A signal that is pending, unblocked and not ignored ends the wait with
// EINTR. A checkpoint request ends it with EINTR too, and the call is
// made again after the checkpoint (see syscall).

// pollSlice is how long one host poll of standard streams waits before
// the idle scheduler looks again for a checkpoint request or the end of
// the run.
const pollSlice = 50 * time.Millisecond

// pollWait returns what scan reports when it finds ready descriptors, 0
// once the guest's CLOCK_MONOTONIC reaches deadline (math.MaxInt64:
// never), and otherwise blocks the task until one of those holds or a
// signal interrupts the wait (EINTR). files are the files scan looks at.
func (k *Kernel) pollWait(t *Task, files []vfs.File, deadline int64, scan func() int) (int, unix.Errno) {
	k.checkAsync(t)
	if n := scan(); n > 0 {
		return n, 0
	}
	if k.monotonic() >= deadline {
		return 0, 0
	}
	_, e := k.block(t, waitSpec{deadline: deadline, files: watchedFiles(files), ready: func() bool { return scan() > 0 }})
	return 0, e
}

// pollSleep waits, with every task blocked, from guest time now until
// wakeAt, a host descriptor is ready, or something else needs the
// scheduler (a checkpoint request, an O_ASYNC event, the end of the run).
// The virtual clock jumps to wakeAt unless host descriptors are involved.
func (k *Kernel) pollSleep(now, wakeAt int64, hostFDs []unix.PollFd) {
	_, virtual := k.clock.(*VirtualClock)
	var done <-chan struct{}
	if k.ctx != nil {
		done = k.ctx.Done()
	}
	if virtual && len(hostFDs) == 0 {
		if wakeAt == math.MaxInt64 {
			// Nothing in the guest can end a wait: only the end of
			// the run or a checkpoint request.
			select {
			case <-done:
			case <-k.wake:
			}
			return
		}
		k.clock.Sleep(wakeAt - now)
		return
	}
	var realEnd time.Time
	if wakeAt != math.MaxInt64 {
		realEnd = time.Now().Add(time.Duration(wakeAt - now))
	}
	for {
		slice := pollSlice
		if !realEnd.IsZero() {
			slice = min(slice, time.Until(realEnd))
		}
		if slice <= 0 {
			if virtual {
				k.clock.Sleep(wakeAt - now)
			}
			return
		}
		if len(hostFDs) > 0 {
			n, err := unix.Poll(hostFDs, int((slice+time.Millisecond-1)/time.Millisecond))
			if err == nil && n > 0 {
				return
			}
		} else {
			tm := time.NewTimer(slice)
			select {
			case <-tm.C:
			case <-done:
			case <-k.wake:
			}
			tm.Stop()
		}
		if k.interrupted() != 0 || k.timers.hostDue.Load() {
			return
		}
		if !virtual {
			return // host time moved: look again
		}
	}
}

// interrupted is EINTR when the run is ending or a checkpoint is
// requested.
func (k *Kernel) interrupted() unix.Errno {
	if k.ctx != nil && k.ctx.Err() != nil || k.ckpt.requested.Load() {
		return unix.EINTR
	}
	return 0
}

// deadlineAfter is the guest time d nanoseconds from now (d < 0: never).
func (k *Kernel) deadlineAfter(d int64) int64 {
	if d < 0 {
		return math.MaxInt64
	}
	now := k.monotonic()
	if d > math.MaxInt64-now {
		return math.MaxInt64
	}
	return now + d
}

// timeLeft is what is left of a wait that ends at deadline.
func (k *Kernel) timeLeft(deadline int64) int64 {
	return max(0, deadline-k.monotonic())
}

// withSigmask runs a wait with the task's signal mask replaced by the
// sigset at maskVA (if not 0), as ppoll and pselect6 do. When the wait
// ends with EINTR the old mask comes back only after the signal that ended
// it is delivered (the handler's frame holds the old mask), as Linux's
// set_restore_sigmask.
func (k *Kernel) withSigmask(t *Task, maskVA uint64, wait func() (uint64, unix.Errno)) (uint64, unix.Errno) {
	if maskVA == 0 {
		return wait()
	}
	var b [8]byte
	if e := k.copyIn(t, maskVA, b[:]); e != 0 {
		return 0, e
	}
	old := t.sigmask
	if t.resuming && t.waitMask {
		old = t.savedMask // the mask replaced when the call first blocked
	}
	t.sigmask = binary.LittleEndian.Uint64(b[:]) &^ unblockable
	ret, e := wait()
	t.waitMask = false
	switch {
	case e == eBlock:
		// The call's mask holds while the task waits.
		t.savedMask, t.waitMask = old, true
	case e == unix.EINTR && interruptingSignal(t):
		t.savedMask, t.restoreMask = old, true
	default:
		t.sigmask = old
	}
	return ret, e
}

// pollFds is poll's work: nfds struct pollfd at va, waiting until deadline.
func (k *Kernel) pollFds(t *Task, va, nfds uint64, deadline int64) (uint64, unix.Errno) {
	lim, _ := k.rlimit(t, unix.RLIMIT_NOFILE)
	if nfds > lim[0] {
		return 0, unix.EINVAL
	}
	buf := make([]byte, 8*nfds)
	if e := k.copyIn(t, va, buf); e != 0 {
		return 0, e
	}
	le := binary.LittleEndian
	files := make([]vfs.File, nfds)
	for i := range files {
		if fd := int32(le.Uint32(buf[8*i:])); fd >= 0 {
			files[i], _ = t.proc.fds.Get(int(fd))
		}
	}
	scan := func() int {
		ready := 0
		for i := range files {
			var rev uint32
			fd := int32(le.Uint32(buf[8*i:]))
			switch {
			case fd < 0:
			case files[i] == nil:
				rev = vfs.PollNval
			default:
				want := uint32(le.Uint16(buf[8*i+4:])) | vfs.PollErr | vfs.PollHup
				rev = vfs.PollFile(files[i]) & want
			}
			le.PutUint16(buf[8*i+6:], uint16(rev))
			if rev != 0 {
				ready++
			}
		}
		return ready
	}
	n, e := k.pollWait(t, files, deadline, scan)
	if e != 0 {
		return 0, e
	}
	return uint64(n), k.copyOut(t, va, buf)
}

// sysPoll is poll(fds, nfds, timeout_ms): a negative timeout waits
// forever.
func (k *Kernel) sysPoll(t *Task, a *args) (uint64, unix.Errno) {
	ms := int64(int32(a[2]))
	d := int64(-1)
	if ms >= 0 {
		d = ms * int64(time.Millisecond)
	}
	return k.pollFds(t, a[0], a[1], k.deadline(t, d))
}

// sysPpoll is ppoll(fds, nfds, tsp, sigmask, sigsetsize): the timeout is
// a timespec (NULL: forever) and is updated with the time left, as the
// kernel does (glibc's wrapper hides that for pselect, not for ppoll).
func (k *Kernel) sysPpoll(t *Task, a *args) (uint64, unix.Errno) {
	if a[3] != 0 && a[4] != sigsetSize {
		return 0, unix.EINVAL
	}
	deadline, e := k.timespecDeadline(t, a[2])
	if e != 0 {
		return 0, e
	}
	ret, e := k.withSigmask(t, a[3], func() (uint64, unix.Errno) {
		return k.pollFds(t, a[0], a[1], deadline)
	})
	k.writeRemaining(t, a[2], deadline, e, false)
	return ret, e
}

// timespecDeadline reads a relative timespec timeout (0: forever).
func (k *Kernel) timespecDeadline(t *Task, va uint64) (int64, unix.Errno) {
	if va == 0 {
		return math.MaxInt64, 0
	}
	d, e := k.readTimespec(t, va)
	if e != 0 {
		return 0, e
	}
	return k.deadline(t, d), 0
}

// writeRemaining writes the time left until deadline back to the timeout
// at va (a timeval if micro, else a timespec), as Linux's
// poll_select_finish: not for a wait that never ends, and a timeout that
// cannot be written is not an error. EINTR of a checkpoint request leaves
// it alone: the call is made again with what it was given.
func (k *Kernel) writeRemaining(t *Task, va uint64, deadline int64, e unix.Errno, micro bool) {
	if va == 0 || deadline == math.MaxInt64 || e != 0 && e != unix.EINTR {
		return
	}
	if e == unix.EINTR && !interruptingSignal(t) {
		return
	}
	left := k.timeLeft(deadline)
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:], uint64(left/1e9))
	if micro {
		binary.LittleEndian.PutUint64(b[8:], uint64(left%1e9/1e3))
	} else {
		binary.LittleEndian.PutUint64(b[8:], uint64(left%1e9))
	}
	k.copyOut(t, va, b[:])
}

// Readiness that select reports in each set (Linux's POLLIN_SET,
// POLLOUT_SET and POLLEX_SET).
const (
	selectIn  = vfs.PollRdnorm | vfs.PollRdband | vfs.PollIn | vfs.PollHup | vfs.PollErr
	selectOut = vfs.PollWrband | vfs.PollWrnorm | vfs.PollOut | vfs.PollErr
	selectEx  = vfs.PollPri
)

// selectFds is select's work: three fd_sets of nfds bits (each may be 0).
func (k *Kernel) selectFds(t *Task, nfds int, sets [3]uint64, deadline int64) (uint64, unix.Errno) {
	if nfds < 0 {
		return 0, unix.EINVAL
	}
	lim, _ := k.rlimit(t, unix.RLIMIT_NOFILE)
	nfds = min(nfds, int(lim[0]))
	size := (nfds + 63) / 64 * 8
	var in [3][]byte
	for i, va := range sets {
		if va == 0 {
			continue
		}
		in[i] = make([]byte, size)
		if e := k.copyIn(t, va, in[i]); e != 0 {
			return 0, e
		}
	}
	isSet := func(b []byte, fd int) bool { return b != nil && b[fd/8]&(1<<(fd%8)) != 0 }
	files := map[int]vfs.File{}
	var list []vfs.File
	for fd := 0; fd < nfds; fd++ {
		if !isSet(in[0], fd) && !isSet(in[1], fd) && !isSet(in[2], fd) {
			continue
		}
		f, e := t.proc.fds.Get(fd)
		if e != 0 {
			return 0, unix.EBADF
		}
		files[fd] = f
		list = append(list, f)
	}
	var out [3][]byte
	scan := func() int {
		ready := 0
		for i := range out {
			if in[i] != nil {
				out[i] = make([]byte, size)
			}
		}
		for fd, f := range files {
			m := vfs.PollFile(f)
			for i, bits := range [3]uint32{selectIn, selectOut, selectEx} {
				if isSet(in[i], fd) && m&bits != 0 {
					out[i][fd/8] |= 1 << (fd % 8)
					ready++
				}
			}
		}
		return ready
	}
	n, e := k.pollWait(t, list, deadline, scan)
	if e != 0 {
		return 0, e
	}
	for i, va := range sets {
		if va != 0 {
			if e := k.copyOut(t, va, out[i]); e != 0 {
				return 0, e
			}
		}
	}
	return uint64(n), 0
}

// sysSelect is select(nfds, readfds, writefds, exceptfds, timeval): the
// timeval (NULL: forever) is updated with the time left, as Linux does.
func (k *Kernel) sysSelect(t *Task, a *args) (uint64, unix.Errno) {
	deadline := int64(math.MaxInt64)
	if a[4] != 0 {
		var b [16]byte
		if e := k.copyIn(t, a[4], b[:]); e != 0 {
			return 0, e
		}
		sec, usec := int64(binary.LittleEndian.Uint64(b[:])), int64(binary.LittleEndian.Uint64(b[8:]))
		if sec < 0 || usec < 0 {
			return 0, unix.EINVAL
		}
		// Linux normalizes usec beyond a second into seconds.
		sec += usec / 1e6
		usec %= 1e6
		d := int64(math.MaxInt64)
		if sec < math.MaxInt64/int64(time.Second)-1 {
			d = sec*1e9 + usec*1e3
		}
		deadline = k.deadline(t, d)
	}
	ret, e := k.selectFds(t, int(int32(a[0])), [3]uint64{a[1], a[2], a[3]}, deadline)
	k.writeRemaining(t, a[4], deadline, e, true)
	return ret, e
}

// sysPselect6 is pselect6(nfds, readfds, writefds, exceptfds, timespec,
// sig) where sig points to {const sigset_t *ss; size_t ss_len}. The
// kernel updates the timespec with the time left (glibc's pselect passes
// a copy, so a C program does not see it).
func (k *Kernel) sysPselect6(t *Task, a *args) (uint64, unix.Errno) {
	deadline, e := k.timespecDeadline(t, a[4])
	if e != 0 {
		return 0, e
	}
	var maskVA uint64
	if a[5] != 0 {
		var b [16]byte
		if e := k.copyIn(t, a[5], b[:]); e != 0 {
			return 0, e
		}
		maskVA = binary.LittleEndian.Uint64(b[:])
		if maskVA != 0 && binary.LittleEndian.Uint64(b[8:]) != sigsetSize {
			return 0, unix.EINVAL
		}
	}
	ret, e := k.withSigmask(t, maskVA, func() (uint64, unix.Errno) {
		return k.selectFds(t, int(int32(a[0])), [3]uint64{a[1], a[2], a[3]}, deadline)
	})
	k.writeRemaining(t, a[4], deadline, e, false)
	return ret, e
}

// sysPause is pause(): waits until a signal that is not ignored is
// delivered, then fails with EINTR.
func (k *Kernel) sysPause(t *Task, _ *args) (uint64, unix.Errno) {
	_, e := k.pollWait(t, nil, math.MaxInt64, func() int { return 0 })
	if e == 0 {
		e = unix.EINTR
	}
	return 0, e
}
