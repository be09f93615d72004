package kernel

import (
	"math"
	"time"

	"github.com/emuckpt/emuckpt/kernel/vfs"
	"golang.org/x/sys/unix"
)

// The scheduler.
//
// The guest's tasks run on the vCPUs (cpus.go: one host thread per vCPU,
// one big kernel lock). A task runs a *turn* on a vCPU: the loop in
// runTurn enters user mode, handles each exit, and goes on until the task
// blocks, exits or is preempted; then the vCPU takes the next task from
// the run queue, or waits for one.
//
// A system call that has to wait does not wait in Go. It records what it
// waits for (a waitSpec: a deadline, a readiness test, the files whose
// host descriptors or device timers can end it) and returns eBlock; the
// task is then blocked with its registers at the system-call boundary
// (RAX still the call number). When the wait is over — the test holds,
// the deadline passed, or a signal that would interrupt it is pending —
// the task goes back to the run queue and, at its next turn, the call is
// made again (resume) before user mode is entered. Handlers are written
// so that calling them again is correct: they look at the world afresh
// and keep their deadline in the waitSpec. So a blocked task has no state
// outside its Task, and a checkpoint can save it as it is.
//
// Order. The run queue is first in, first out (a vCPU takes the first
// task its affinity allows); blocked tasks are looked at in the order they
// were created; a task's turn ends after turnExits exits when others are
// waiting for a vCPU, or (host clock only) after turnTime. Under
// --deterministic there is one vCPU, the clock is virtual and nothing
// depends on host timing, so two runs with the same seed schedule alike. A task that spins in user mode without ever making an exit is
// not preempted under the virtual clock: no exit, no time, no turn end.
// Under the host clock a kick ends its turn after turnTime.

type taskState int

const (
	taskRunnable taskState = iota // on the vCPU or in the run queue
	taskBlocked                   // waits in a system call (Task.wait)
	taskExited                    // gone
)

// eBlock is what a system call handler returns (with Task.wait set by
// block) when it must wait. It never reaches the guest.
const eBlock = vfs.EBLOCK

// Turn lengths (see the notes above).
const (
	turnExits = 64
	turnTime  = 10 * time.Millisecond
)

// waitSpec is what a blocked task waits for.
type waitSpec struct {
	// deadline is the guest CLOCK_MONOTONIC time at which the wait is
	// over by itself (math.MaxInt64: never). A resumed call reads it
	// back with deadline(), so time already waited is not waited again.
	deadline int64
	// ready reports that the call can go on; nil means only the
	// deadline or a signal end the wait.
	ready func() bool
	// files are what the call waits on: their host descriptors are
	// polled and their device timers bound the wait when all tasks are
	// blocked.
	files []vfs.File
	// uninterruptible waits ignore signals (vfork's parent).
	uninterruptible bool
	// finish, if set, is the result of the call once the wait is over:
	// it is not made again (vfork's parent, whose child exists).
	finish func() (uint64, unix.Errno)
	// restartable calls are made again after a handler with SA_RESTART
	// (read, write, wait4, futex without timeout), as Linux's
	// -ERESTARTSYS; the others fail with EINTR.
	restartable bool
}

// scheduler is the run queue and the tasks.
type scheduler struct {
	runq []*Task
	// all is every live task, in creation order.
	all []*Task
	// cur is the task whose exit the kernel handles now: the one in its
	// turn on the vCPU that holds the big kernel lock (nil when none).
	cur *Task
	// nextPID numbers new tasks and processes.
	nextPID int
}

// block makes the calling task wait for w: it returns eBlock, or EINTR at
// once if a signal that interrupts waits is already pending. Handlers
// return what it returns.
func (k *Kernel) block(t *Task, w waitSpec) (uint64, unix.Errno) {
	if !w.uninterruptible && interruptingSignal(t) {
		if w.restartable {
			t.restartNr = t.ctx.Regs.RAX + 1
		}
		return 0, unix.EINTR
	}
	t.wait = &w
	return 0, eBlock
}

// deadline is the end of a wait of d ns that starts now, or, for a call
// made again after it blocked, the deadline it had then.
func (k *Kernel) deadline(t *Task, d int64) int64 {
	if t.resuming && t.wait != nil {
		return t.wait.deadline
	}
	return k.deadlineAfter(d)
}

// enqueue puts a task at the end of the run queue, and wakes a vCPU that
// has none.
func (k *Kernel) enqueue(t *Task) {
	t.state = taskRunnable
	k.sched.runq = append(k.sched.runq, t)
	if k.smp.idle != nil {
		k.smp.idle.Broadcast() // few vCPUs; one may not take every task (affinity)
	}
}

// waitOver reports whether a blocked task's wait has ended.
func (k *Kernel) waitOver(t *Task, now int64) bool {
	w := t.wait
	switch {
	case w == nil:
		return true
	case now >= w.deadline:
		return true
	case !w.uninterruptible && interruptingSignal(t):
		return true
	}
	return w.ready != nil && w.ready()
}

// wakeBlocked puts every blocked task whose wait is over back in the run
// queue, to make its call again.
func (k *Kernel) wakeBlocked() {
	now := int64(-1) // read once, and only when a task is blocked: this runs at every system call
	for _, t := range k.sched.all {
		if t.state != taskBlocked {
			continue
		}
		if now < 0 {
			now = k.monotonic()
		}
		if k.waitOver(t, now) {
			t.resume = true
			if t.cpu != nil {
				t.state = taskRunnable // its turn goes on with the call
			} else {
				k.enqueue(t)
			}
		}
	}
}

// next takes the next task from the run queue for vCPU c; with none it
// waits for one, or, when no vCPU runs a task, for an event that can end
// a wait, and returns nil.
func (k *Kernel) next(c *cpu) *Task {
	k.wakeBlocked()
	if len(k.sched.runq) == 0 {
		if k.busyCPUs() > 0 {
			// The busy vCPUs look at the blocked tasks at their exits
			// and kicks (armKick) and wake this one (enqueue).
			c.wait(k.smp.idle)
		} else {
			k.idle()
		}
		return nil
	}
	for i, t := range k.sched.runq {
		if k.affinity(t)&(1<<c.id) != 0 {
			k.sched.runq = append(k.sched.runq[:i:i], k.sched.runq[i+1:]...)
			return t
		}
	}
	c.wait(k.smp.idle) // none may run here
	return nil
}

// busyCPUs counts the vCPUs in a turn.
func (k *Kernel) busyCPUs() int {
	n := 0
	for _, c := range k.cpus {
		if c.cur != nil {
			n++
		}
	}
	return n
}

// idle waits, with every task blocked, until a wait can be over: the
// earliest deadline (the virtual clock jumps there), a timer or O_ASYNC
// event, a host descriptor, a checkpoint request or the end of the run.
func (k *Kernel) idle() {
	now := k.monotonic()
	wakeAt := int64(math.MaxInt64)
	var hostFDs []unix.PollFd
	for _, t := range k.sched.all {
		if t.state != taskBlocked || t.wait == nil {
			continue
		}
		wakeAt = min(wakeAt, t.wait.deadline, k.nextAsync(t))
		for _, f := range t.wait.files {
			if rt, ok := vfs.As[vfs.ReadyTimer](f); ok {
				if at, ok := rt.NextReady(); ok {
					wakeAt = min(wakeAt, at)
				}
			}
			if hp, ok := vfs.As[vfs.HostPoller](f); ok {
				hostFDs = append(hostFDs, unix.PollFd{Fd: int32(hp.HostFD()), Events: vfs.PollIn | vfs.PollOut | vfs.PollPri})
			}
		}
	}
	if d, ok := k.nextExpiry(); ok && d < wakeAt-now {
		wakeAt = now + d
	}
	k.pollSleep(now, max(wakeAt, now), hostFDs)
	if k.timersDueIdle() {
		k.checkTimers()
	}
	for _, p := range k.liveProcesses() {
		if t := p.leader(); t != nil {
			k.checkAsync(t)
		}
	}
}

// timersDueIdle says whether the timers may have fired during idle.
func (k *Kernel) timersDueIdle() bool {
	if len(k.timers.list) == 0 {
		return false
	}
	if _, virtual := k.clock.(*VirtualClock); virtual {
		return true
	}
	return k.timers.hostDue.Load()
}

// turnOver reports whether the current turn of t on c should end for
// another task.
func (k *Kernel) turnOver(c *cpu, t *Task) bool {
	if len(k.sched.runq) == 0 {
		return false
	}
	if t.slice >= turnExits {
		return true
	}
	if _, virtual := k.clock.(*VirtualClock); virtual {
		return false
	}
	return time.Since(c.turnStart) >= turnTime
}

// armKick makes sure a task running user code on c is interrupted when
// another task's turn is due or a blocked task's deadline passes (host
// clock only; under the virtual clock time moves only at exits, where
// both are looked at).
func (k *Kernel) armKick(c *cpu) {
	if _, virtual := k.clock.(*VirtualClock); virtual {
		return
	}
	var at time.Time
	if len(k.sched.runq) > 0 {
		at = c.turnStart.Add(turnTime)
	}
	now := int64(-1) // read only when a task is blocked: this runs at every entry
	for _, t := range k.sched.all {
		if t.state != taskBlocked || t.wait == nil {
			continue
		}
		if now < 0 {
			now = k.monotonic()
		}
		d := t.wait.deadline
		if len(t.wait.files) > 0 {
			d = min(d, now+int64(pollSlice)) // host descriptors: look now and then
		}
		if d != math.MaxInt64 {
			if wt := time.Now().Add(time.Duration(max(d-now, 0))); at.IsZero() || wt.Before(at) {
				at = wt
			}
		}
	}
	if at.IsZero() {
		return
	}
	if c.kick != nil && !c.kickAt.After(at) && c.kickAt.After(time.Now()) {
		return // an earlier kick is armed
	}
	if c.kick != nil {
		c.kick.Stop()
	}
	c.kickAt = at
	c.kick = time.AfterFunc(time.Until(at), c.vcpu.Kick)
}

func (c *cpu) stopKick() {
	if c.kick != nil {
		c.kick.Stop()
		c.kick = nil
	}
}

// newTask makes a task of process p with a fresh tid.
func (k *Kernel) newTask(p *Process) *Task {
	k.sched.nextPID++
	t := &Task{tid: k.sched.nextPID, proc: p, altstack: stackT{Flags: ssDisable}}
	p.tasks = append(p.tasks, t)
	k.sched.all = append(k.sched.all, t)
	return t
}

// removeTask takes an exited task out of the scheduler.
func (k *Kernel) removeTask(t *Task) {
	k.stopTask(t)
	t.state = taskExited
	t.wait = nil
	if t.futex != nil {
		k.dropFutexWaiter(t.futex)
		t.futex = nil
	}
	s := &k.sched
	for i, x := range s.runq {
		if x == t {
			s.runq = append(s.runq[:i:i], s.runq[i+1:]...)
			break
		}
	}
	for i, x := range s.all {
		if x == t {
			s.all = append(s.all[:i:i], s.all[i+1:]...)
			break
		}
	}
	p := t.proc
	for i, x := range p.tasks {
		if x == t {
			p.tasks = append(p.tasks[:i:i], p.tasks[i+1:]...)
			break
		}
	}
}

// liveProcesses are the processes with live tasks, by pid.
func (k *Kernel) liveProcesses() []*Process {
	var ps []*Process
	seen := map[*Process]bool{}
	for _, t := range k.sched.all {
		if !seen[t.proc] {
			seen[t.proc] = true
			ps = append(ps, t.proc)
		}
	}
	return ps
}

// taskByTID finds a live task.
func (k *Kernel) taskByTID(tid int) *Task {
	for _, t := range k.sched.all {
		if t.tid == tid {
			return t
		}
	}
	return nil
}

// process finds a process (live or zombie) by pid.
func (k *Kernel) process(pid int) *Process {
	return k.procs[pid]
}

// armDeviceTurn makes device accesses count as exits of the turn: a task
// that spins on a device register (a BSR barrier waiting for other tasks)
// makes no system call, and under the virtual clock nothing else would
// end its turn. While other tasks exist, the vCPU stops after the
// accesses left in the turn (vmm.ExitMMIOLimit), or earlier at the access
// a --checkpoint-at-device checkpoint is due at.
func (k *Kernel) armDeviceTurn(c *cpu, t *Task) {
	n := k.cfg.Checkpoint.devicesToNext(k.m.Bus.TotalAccesses())
	if len(k.sched.all) > 1 {
		left := uint64(turnExits)
		if t.slice < turnExits {
			left = uint64(turnExits - t.slice)
		}
		if n == 0 || left < n {
			n = left
		}
	}
	c.vcpu.StopAfterMMIO(n)
}

// deviceCheckpointDue says, at an ExitMMIOLimit, whether a --checkpoint-at
// device checkpoint is due at the access just done (rather than the end of
// the turn's device accesses, see armDeviceTurn).
func (k *Kernel) deviceCheckpointDue() bool {
	done := k.m.Bus.TotalAccesses()
	return done > 0 && k.cfg.Checkpoint.devicesToNext(done-1) == 1
}
