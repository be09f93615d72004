package kernel

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emuckpt/emuckpt/guestmm"
	"github.com/emuckpt/emuckpt/vmm"
	"golang.org/x/sys/unix"
)

// Several vCPUs.
//
// Each vCPU is driven by a host thread of its own (a goroutine locked to
// it for the whole run: KVM makes a vCPU pay an RCU grace period each time
// a different thread runs it). The kernel's state is guarded by one lock,
// the big kernel lock (Kernel.bkl): a vCPU thread holds it whenever it is
// not in user mode, so system calls, faults and the scheduler run one at
// a time, as on the single vCPU, while user code runs in parallel. The
// lock is released only around vmm.VCPU.Run and in the waits below.
//
// Three things need the other vCPUs out of user mode:
//
//   - Page-table changes (munmap, mprotect, copy-on-write) in an address
//     space that another vCPU has loaded: before the vCPU that made them
//     returns to user mode, the others get the changed pages in their
//     refresh lists and are kicked out of user mode (stopOut), so that
//     they cannot use a stale translation after the call returned.
//   - Freed page tables and full flushes: KVM forgets every translation
//     (vmm.Machine.FlushTranslations), and no vCPU may go on with one it
//     cached before.
//   - Killing a task that runs on another vCPU: its vCPU leaves user mode
//     before its memory can be freed.
//
// stopOut waits only until the vCPU left user mode: it then waits for the
// big kernel lock, with its exit not yet handled, and cannot enter user
// mode again before the lock holder has done its work. A checkpoint needs
// more: every task at a clean boundary with its exits handled, as on one
// vCPU. stopAll asks every other vCPU to park at the top of its loop, where
// its task's last exit is settled, and waits until all have.

// cpu is one vCPU and the host thread that drives it.
type cpu struct {
	k    *Kernel
	id   int
	vcpu *vmm.VCPU
	// cur is the task in its turn on the vCPU (nil between turns).
	cur *Task
	// as is the address space whose page tables the vCPU has loaded: the
	// one of the last task it ran. Page-table changes in it concern the
	// vCPU even between turns.
	as *guestmm.AddressSpace
	// inGuest is set while the thread runs the vCPU (vmm.VCPU.Run) with
	// the big kernel lock released.
	inGuest atomic.Bool
	// parked is set while the vCPU waits in park for a stopAll.
	parked bool
	// turnStart is when the current turn began (host clock).
	turnStart time.Time
	// kick preempts a turn or ends it for a blocked task's deadline
	// (host clock); kickAt is when it fires.
	kick   *time.Timer
	kickAt time.Time
	// tid is the host thread; cpuStart its CPU times when the run began.
	tid      int
	cpuStart cpuTimes
}

// smp is the state the vCPUs share besides the kernel itself.
type smp struct {
	// idle is signalled when a task becomes runnable, for vCPUs that
	// have none; stopped is broadcast when a vCPU parks.
	idle, stopped *sync.Cond
	// holder is the vCPU whose thread holds the big kernel lock.
	holder *cpu
	// stopping is set during a stopAll.
	stopping bool
	// done ends every vCPU's loop: the run is over (Kernel.end, the
	// context, or err).
	done bool
	err  error
}

// newCPUs creates n vCPUs.
func (k *Kernel) newCPUs(n int) error {
	k.smp.idle = sync.NewCond(&k.bkl)
	k.smp.stopped = sync.NewCond(&k.bkl)
	for i := range n {
		v, err := k.m.NewVCPU()
		if err != nil {
			return err
		}
		k.cpus = append(k.cpus, &cpu{k: k, id: i, vcpu: v})
	}
	return nil
}

// lock takes the big kernel lock for c's thread.
func (c *cpu) lock() {
	c.k.bkl.Lock()
	c.k.smp.holder = c
}

// unlock releases it.
func (c *cpu) unlock() { c.k.bkl.Unlock() }

// wait waits on cond, which releases the big kernel lock meanwhile.
func (c *cpu) wait(cond *sync.Cond) {
	cond.Wait()
	c.k.sched.cur, c.k.smp.holder = c.cur, c
}

// run enters user mode with the big kernel lock released.
func (c *cpu) run() (vmm.Exit, error) {
	c.inGuest.Store(true)
	c.k.sched.cur = nil
	c.unlock()
	ex, err := c.vcpu.Run()
	c.inGuest.Store(false)
	c.lock()
	c.k.sched.cur = c.cur
	return ex, err
}

// stopOut makes vCPU c leave user mode and waits until it has. It may then
// wait for the big kernel lock, which the caller holds, but it cannot run
// user code again before the caller releases it.
func (c *cpu) stopOut() {
	if !c.inGuest.Load() {
		return
	}
	c.vcpu.Kick()
	for i := 0; c.inGuest.Load(); i++ {
		if i < 100 {
			runtime.Gosched()
		} else {
			time.Sleep(10 * time.Microsecond)
		}
	}
}

// stopTask makes a task that runs user code on another vCPU leave user
// mode, and waits until it has (it is being killed).
func (k *Kernel) stopTask(t *Task) {
	if c := t.cpu; c != nil && c != k.smp.holder {
		c.stopOut()
	}
}

// interrupt makes a task that runs user code on another vCPU come to the
// kernel soon, to see a signal.
func (k *Kernel) interrupt(t *Task) {
	if c := t.cpu; c != nil && c != k.smp.holder {
		c.vcpu.Kick()
	}
}

// stopOthers makes every vCPU but self leave user mode.
func (k *Kernel) stopOthers(self *cpu) {
	for _, c := range k.cpus {
		if c != self {
			c.stopOut()
		}
	}
}

// kickAll makes every vCPU in user mode return to the kernel soon (a
// checkpoint request, a timer, the end of the run). It is safe from any
// goroutine.
func (k *Kernel) kickAll() {
	for _, c := range k.cpus {
		c.vcpu.Kick()
	}
}

// stopAll parks every vCPU but self at the top of its loop (see park) and
// returns with all of them parked; resumeAll lets them go on. With one
// vCPU it does nothing.
//
// inCall says that self's task is in the middle of a system call (a
// checkpoint the guest asked for): if another vCPU stops everything first,
// its image shows that task about to make the call, which it makes again
// after a restore.
//
// It reports false when the run ended meanwhile: there is nothing left to
// save, and the vCPUs that ended their loops never park.
func (k *Kernel) stopAll(self *cpu, inCall bool) bool {
	if len(k.cpus) == 1 {
		return true
	}
	for k.smp.stopping {
		// Another vCPU stops the others first.
		if t := self.cur; t != nil && inCall {
			t.inCall = true
			k.park(self)
			t.inCall = false
		} else {
			k.park(self)
		}
	}
	if k.smp.done {
		return false
	}
	k.smp.stopping = true
	for {
		if k.smp.done {
			k.resumeAll()
			return false
		}
		all := true
		for _, c := range k.cpus {
			if c != self && !c.parked {
				all = false
				if c.inGuest.Load() {
					c.vcpu.Kick()
				}
			}
		}
		if all {
			return true
		}
		k.smp.idle.Broadcast()
		self.waitTimeout(k.smp.stopped, time.Millisecond)
	}
}

// resumeAll ends a stopAll.
func (k *Kernel) resumeAll() {
	if !k.smp.stopping {
		return
	}
	k.smp.stopping = false
	k.smp.stopped.Broadcast()
}

// park waits while a stopAll is in progress. The vCPU has no exit left to
// handle and its task (if any) is at a clean boundary.
func (k *Kernel) park(c *cpu) {
	if !k.smp.stopping {
		return
	}
	c.parked = true
	k.smp.stopped.Broadcast()
	for k.smp.stopping && !k.smp.done {
		c.wait(k.smp.stopped)
	}
	c.parked = false
}

// waitTimeout waits on cond for at most d: a kick may not reach a vCPU
// that is just entering user mode, so the waiter looks again.
func (c *cpu) waitTimeout(cond *sync.Cond, d time.Duration) {
	t := time.AfterFunc(d, func() {
		c.k.bkl.Lock()
		cond.Broadcast()
		c.k.bkl.Unlock()
	})
	c.wait(cond)
	t.Stop()
}

// finish ends the run for every vCPU, with err if it failed.
func (k *Kernel) finish(err error) {
	if !k.smp.done {
		k.smp.done = true
		k.smp.err = err
	}
	k.smp.idle.Broadcast()
	k.smp.stopped.Broadcast()
	k.kickAll()
	k.poke()
}

// flushAll makes KVM forget every translation on every vCPU, now: the
// other vCPUs are stopped out of user mode first.
func (k *Kernel) flushAll(self *cpu) error {
	k.stopOthers(self)
	return k.m.FlushTranslations()
}

// publishChanges hands the page-table changes of every address space
// that a vCPU in a turn has loaded to all the vCPUs that have it loaded
// (refresh lists, or a full flush), and stops the ones in user mode, so
// that no task uses a stale translation after the call that changed it
// returns. It runs before self enters user mode and, with several vCPUs,
// after each exit. Changes in an address space no turn has loaded stay
// logged in its page tables until a vCPU enters it.
func (k *Kernel) publishChanges(self *cpu) error {
	flush := k.zapPending
	for _, c := range k.cpus {
		as := c.as
		if c.cur == nil || as == nil || !as.PageTables().NeedFlush() {
			continue
		}
		runs, all := as.PageTables().TakeChanged()
		for _, o := range k.cpus {
			if o.as != as {
				continue
			}
			if o != self {
				o.stopOut() // before its refresh list is touched
			}
			if all {
				flush = true
			} else {
				o.vcpu.RefreshPages(runs)
			}
		}
	}
	for _, c := range k.cpus {
		flush = flush || c.vcpu.FlushPending()
	}
	if !flush {
		return nil
	}
	k.zapPending = false
	return k.flushAll(self)
}

// threadCPU reads the CPU time of host thread tid of this process (user
// and system time together, counted as user time).
func threadCPU(tid int) cpuTimes {
	var ts unix.Timespec
	clock := int32(^tid<<3 | 6) // MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED)
	if err := unix.ClockGettime(clock, &ts); err != nil {
		return cpuTimes{}
	}
	return cpuTimes{user: ts.Nano()}
}
