package kernel

import (
	"context"
	"encoding/binary"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/emuckpt/emuckpt/guestmm"

	"github.com/emuckpt/emuckpt/vmm"
	"golang.org/x/arch/x86/x86asm"
	"golang.org/x/sys/unix"
)

// ExitStatus is how a run ended.
type ExitStatus struct {
	Code     int  `json:"code,omitempty"`   // exit status when the program exited
	Signal   int  `json:"signal,omitempty"` // signal number when a signal killed it
	TimedOut bool `json:"-"`                // the context ended the run
	// Checkpointed means the run stopped after writing a checkpoint
	// (status 0).
	Checkpointed bool `json:"-"`
}

// ShellStatus is the status a shell reports: Code, or 128+Signal, or 124
// for a timeout (the convention of timeout(1)).
func (s ExitStatus) ShellStatus() int {
	switch {
	case s.TimedOut:
		return 124
	case s.Signal != 0:
		return 128 + s.Signal
	}
	return s.Code
}

// errExit is how system calls end the run.
type errExit struct{ status ExitStatus }

func (e *errExit) Error() string { return fmt.Sprintf("exit %+v", e.status) }

// Run runs the guest until its first process exits, a signal kills that
// process, or ctx ends. Processes still running then are dropped with the
// machine. Each vCPU runs on a host thread of its own (see cpus.go); the
// calling goroutine drives vCPU 0.
func (k *Kernel) Run(ctx context.Context) (ExitStatus, error) {
	k.ctx = ctx
	k.setHostTimer()
	defer k.stopHostTimer()
	stop := context.AfterFunc(ctx, func() {
		k.kickAll()
		k.poke()
	})
	defer stop()
	done := make(chan struct{})
	defer close(done)
	k.watchRequests(done)
	defer k.stopAsyncTimer()
	var wg sync.WaitGroup
	for _, c := range k.cpus[1:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.loop()
		}()
	}
	k.cpus[0].loop()
	wg.Wait()
	k.awaitBackground()
	for _, c := range k.cpus {
		c.stopKick()
	}
	switch {
	case k.smp.err != nil:
		return ExitStatus{}, k.smp.err
	case k.end != nil:
		return *k.end, nil
	}
	return ExitStatus{TimedOut: true}, nil
}

// loop is the life of one vCPU's thread: turns of tasks from the run
// queue until the run ends.
func (c *cpu) loop() {
	k := c.k
	// The vCPU must always be run by the same thread, and the thread's
	// CPU time is the guest's (see cpuTime).
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	c.lock()
	c.tid = unix.Gettid()
	c.cpuStart = hostThreadCPU()
	defer func() {
		k.timers.cpuBase = k.timers.cpuBase.add(c.used())
		c.tid = 0
		c.unlock()
	}()
	for !k.smp.done {
		if err := k.loopStep(c); err != nil {
			k.finish(err)
		}
		if k.end != nil || k.ctx.Err() != nil {
			k.finish(nil)
		}
	}
}

// loopStep is one round of a vCPU's loop: a requested checkpoint, then
// the next task's turn.
func (k *Kernel) loopStep(c *cpu) error {
	k.park(c)
	if k.smp.done {
		return nil
	}
	if k.ckpt.requested.Swap(false) {
		if err := k.endOrFail(k.checkpoint(nil)); err != nil || k.end != nil {
			return err
		}
	}
	t := k.next(c)
	if t == nil {
		return nil
	}
	return k.runTurn(c, t)
}

// poke wakes an idle scheduler.
func (k *Kernel) poke() {
	select {
	case k.wake <- struct{}{}:
	default:
	}
}

// endOrFail sorts out an error from checkpointing or exiting: an errExit
// that ends the run sets k.end; anything else is returned.
func (k *Kernel) endOrFail(err error) error {
	if e, ok := err.(*errExit); ok {
		k.end = &e.status
		return nil
	}
	return err
}

// runTurn runs task t on vCPU c until it blocks, exits or its turn is
// over, or the run ends. A resumed task first makes its blocked call again.
func (k *Kernel) runTurn(c *cpu, t *Task) error {
	if err := k.takeTask(c, t); err != nil {
		return err
	}
	defer func() { c.cur, t.cpu, k.sched.cur = nil, nil, nil }()
	t.slice = 0
	c.turnStart = time.Now()
	cc := &k.cfg.Checkpoint
	for t.state == taskRunnable && k.end == nil && !k.smp.done {
		k.park(c)
		if t.state != taskRunnable {
			break // killed meanwhile
		}
		if k.turnOver(c, t) || k.affinity(t)&(1<<c.id) == 0 {
			k.enqueue(t)
			return nil
		}
		if t.resume {
			// The call it waited in is made again first. It counts
			// in the turn like an exit, so that a call that blocks
			// again at once cannot keep the vCPU from the others.
			t.resume = false
			t.slice++
			if err := k.awaitPages(); err != nil {
				return err
			}
			if err := k.settle(c, t, vmm.ExitSyscall, k.syscall(t, true)); err != nil {
				return err
			}
			continue
		}
		k.armKick(c)
		// Page-table changes reach every vCPU before this one enters.
		if err := k.publishChanges(c); err != nil {
			return fmt.Errorf("internal error: %w", err)
		}
		k.armDeviceTurn(c, t)
		ex, err := c.run()
		if err != nil {
			return fmt.Errorf("internal error: %w", err)
		}
		if err := k.awaitPages(); err != nil {
			return err
		}
		if t.state != taskRunnable {
			// Killed by another vCPU while it ran: the exit is moot.
			break
		}
		t.slice++
		switch ex.Kind {
		case vmm.ExitSyscall:
			err = k.syscall(t, false)
			// Timers first, so that an image taken here holds what a
			// run going on would have seen next.
			if err == nil && k.timersDue(ex.Kind) {
				k.checkTimers()
			}
			if cc.syscallDue(k.syscalls) {
				// Taken in settle, after an exit the call made is done.
				k.ckpt.requested.Store(true)
			}
		case vmm.ExitMMIOLimit:
			if k.deviceCheckpointDue() {
				err = k.checkpoint(nil)
			} else {
				t.slice = turnExits // the turn's device accesses are done
			}
		case vmm.ExitException:
			err = k.exception(t, ex)
			if ex.Vector == vmm.VecPF {
				k.countFault()
			}
		case vmm.ExitMMIOFault:
			reason := ex.Fault.Reason
			if ex.MMIOWrite {
				reason += " (the CPU completed the store before the device refused it: rip is the instruction after it)"
			}
			err = k.fatalSignal(t, sigInfo{signo: ex.Fault.Signal, code: ex.Fault.Code, addr: k.deviceVA(t, ex.MMIOAddr), reason: reason})
		case vmm.ExitPortIO:
			err = k.fatalSignal(t, sigInfo{signo: int(unix.SIGSEGV), code: siKernel, reason: "I/O instruction in user mode"})
		case vmm.ExitKicked:
			if k.ctx.Err() != nil {
				k.enqueue(t)
				return nil
			}
		}
		if err := k.settle(c, t, ex.Kind, err); err != nil {
			return err
		}
	}
	return nil
}

// takeTask puts task t on vCPU c: its context is taken off the vCPU that
// ran it last, if another, and loaded.
func (k *Kernel) takeTask(c *cpu, t *Task) error {
	if l := t.last; l != nil && l != c && l.vcpu.Holds(&t.ctx) {
		if err := l.vcpu.Release(); err != nil {
			return fmt.Errorf("internal error: %w", err)
		}
	}
	if err := c.vcpu.Switch(&t.ctx); err != nil {
		return fmt.Errorf("internal error: %w", err)
	}
	c.cur, t.cpu, t.last, k.sched.cur = t, c, c, t
	c.as = t.proc.as
	return nil
}

// settle finishes an exit of task t: timers, O_ASYNC events and pending
// signals, a requested checkpoint, the end of a process, and the waits
// that the exit may have ended. err is what handling the exit returned.
func (k *Kernel) settle(c *cpu, t *Task, kind vmm.ExitKind, err error) error {
	if err == nil && kind != vmm.ExitSyscall && k.timersDue(kind) {
		k.checkTimers()
	}
	if err == nil && t.state == taskRunnable {
		k.checkAsync(t)
		if t.pending != 0 || t.restoreMask {
			err = k.deliverPending(t)
		}
	}
	t.restartNr = 0
	if e, ok := err.(*errExit); ok && !e.status.Checkpointed {
		k.exitProcess(t.proc, e.status)
		err = nil
	}
	if err == nil && k.end == nil && k.ckpt.requested.Swap(false) {
		err = k.checkpoint(nil)
	}
	if err := k.endOrFail(err); err != nil {
		return err
	}
	pt := t.proc.as.PageTables()
	if pt.NeedFlush() && pt.FlushAll() {
		// Freed page tables: no task may run before every shadow page
		// is gone (see guestmm's pagetables_free.go).
		pt.TakeChanged()
		k.zapPending = true
	}
	if len(k.cpus) > 1 {
		// Other vCPUs must not go on with translations this exit
		// made stale (see publishChanges).
		if err := k.publishChanges(c); err != nil {
			return fmt.Errorf("internal error: %w", err)
		}
	}
	// A kick (a blocked task's deadline, host clock) and the end of a
	// turn's device accesses also look: a task spinning in user mode
	// would otherwise keep the others blocked past their wait.
	if kind == vmm.ExitSyscall || kind == vmm.ExitKicked || kind == vmm.ExitMMIOLimit {
		k.wakeBlocked()
	}
	k.traceCounters(t) // --trace-json (traceevents.go)
	return nil
}

// exception turns a CPU exception into what Linux would do with it.
func (k *Kernel) exception(t *Task, ex vmm.Exit) error {
	regs := &t.ctx.Regs
	switch ex.Vector {
	case vmm.VecPF:
		r := t.proc.as.HandleFault(ex.CR2, ex.ErrorCode)
		if r.Resolved {
			return nil
		}
		if r.Signal == unix.SIGKILL {
			return k.kill(t, sigInfo{signo: int(r.Signal), code: siKernel, addr: r.Addr, reason: "out of guest memory, or corrupt page tables"})
		}
		return k.fatalSignal(t, sigInfo{signo: int(r.Signal), code: int(r.Code), addr: r.Addr, trapno: vmm.VecPF, errCode: ex.ErrorCode})
	case vmm.VecGP:
		if k.cfg.Deterministic && k.emulateTSC(t) {
			return nil
		}
		return k.fatalSignal(t, sigInfo{signo: int(unix.SIGSEGV), code: siKernel, reason: "general protection fault", trapno: vmm.VecGP, errCode: ex.ErrorCode})
	case vmm.VecUD:
		if inst, ok := k.decodeAt(t, regs.RIP); ok && inst.Op == x86asm.INT {
			return k.softwareInterrupt(t, inst)
		}
		return k.fatalSignal(t, sigInfo{signo: int(unix.SIGILL), code: illIllopn, addr: regs.RIP, trapno: vmm.VecUD})
	case vmm.VecDE:
		return k.fatalSignal(t, sigInfo{signo: int(unix.SIGFPE), code: fpeIntdiv, addr: regs.RIP, trapno: vmm.VecDE})
	case vmm.VecMF, vmm.VecXM:
		code, err := k.mathErrorCode(t, ex.Vector)
		if err != nil {
			return err
		}
		if code == 0 {
			return nil // no unmasked exception: spurious, as Linux's math_error ignores it
		}
		return k.fatalSignal(t, sigInfo{signo: int(unix.SIGFPE), code: code, addr: regs.RIP, trapno: uint64(ex.Vector)})
	case vmm.VecBP, vmm.VecDB:
		return k.fatalSignal(t, sigInfo{signo: int(unix.SIGTRAP), code: siKernel})
	case vmm.VecOF, vmm.VecBR:
		return k.fatalSignal(t, sigInfo{signo: int(unix.SIGSEGV), code: siKernel})
	case vmm.VecAC:
		return k.fatalSignal(t, sigInfo{signo: int(unix.SIGBUS), code: busAdraln})
	case vmm.VecSS, vmm.VecNP:
		return k.fatalSignal(t, sigInfo{signo: int(unix.SIGBUS), code: siKernel})
	}
	return fmt.Errorf("internal error: unexpected exception %d at %#x", ex.Vector, regs.RIP)
}

// softwareInterrupt is `int n` from user mode. PVM raises #UD for it; on
// hardware the gates it names are either beyond the IDT or kernel-only
// and raise #GP, which Linux turns into SIGSEGV, except `int 3`, whose
// gate user mode may use (SIGTRAP, as int3). emuckpt does not run 32-bit
// system calls through `int 0x80`; Linux without IA32 emulation gives
// SIGSEGV for it too.
func (k *Kernel) softwareInterrupt(t *Task, inst x86asm.Inst) error {
	n, _ := inst.Args[0].(x86asm.Imm)
	if n == 3 {
		return k.fatalSignal(t, sigInfo{signo: int(unix.SIGTRAP), code: siKernel, trapno: vmm.VecBP})
	}
	return k.fatalSignal(t, sigInfo{signo: int(unix.SIGSEGV), code: siKernel, trapno: vmm.VecGP, errCode: uint64(n)<<3 | 2,
		reason: fmt.Sprintf("int %#x from user mode", uint64(n))})
}

// mathErrorCode is the si_code of SIGFPE for an x87 (#MF) or SIMD (#XM)
// exception, from the unmasked exception flags in the FPU state, in the
// order Linux's fpu__exception_code checks them; 0 means none.
func (k *Kernel) mathErrorCode(t *Task, vector int) (int, error) {
	xs, err := t.cpu.vcpu.FPUState()
	if err != nil {
		return 0, err
	}
	le := binary.LittleEndian
	var pending uint32
	if vector == vmm.VecMF {
		cwd, swd := le.Uint16(xs[0:]), le.Uint16(xs[2:])
		pending = uint32(swd &^ cwd)
	} else {
		mxcsr := le.Uint32(xs[24:])
		pending = mxcsr &^ (mxcsr >> 7)
	}
	switch {
	case pending&0x01 != 0:
		return fpeFltinv, nil
	case pending&0x04 != 0:
		return fpeFltdiv, nil
	case pending&0x08 != 0:
		return fpeFltovf, nil
	case pending&0x12 != 0:
		return fpeFltund, nil
	case pending&0x20 != 0:
		return fpeFltres, nil
	}
	return 0, nil
}

// emulateTSC completes a trapped rdtsc/rdtscp with the clock's TSC: one
// that raised #GP under CR4.TSD, or one patched to trap on a KVM that
// ignores CR4.TSD (guestmm.TSCPatch; the patched byte raises #GP too, and
// decodeAt reads the original bytes). It reports false if the instruction
// at RIP is something else.
func (k *Kernel) emulateTSC(t *Task) bool {
	regs := &t.ctx.Regs
	inst, ok := k.decodeAt(t, regs.RIP)
	if !ok || (inst.Op != x86asm.RDTSC && inst.Op != x86asm.RDTSCP) {
		return false
	}
	k.clock.Tick()
	tsc := k.clock.TSC()
	regs.RAX = tsc & 0xffffffff
	regs.RDX = tsc >> 32
	if inst.Op == x86asm.RDTSCP {
		regs.RCX = 0 // IA32_TSC_AUX: CPU 0
	}
	regs.RIP += uint64(inst.Len)
	return true
}

// decodeAt decodes the user instruction at va.
func (k *Kernel) decodeAt(t *Task, va uint64) (x86asm.Inst, bool) {
	var buf [15]byte
	n, _ := t.proc.as.CopyInPartial(va, buf[:])
	if n == 0 {
		return x86asm.Inst{}, false
	}
	inst, err := x86asm.Decode(buf[:n], 64)
	return inst, err == nil
}

// deviceVA turns the guest-physical address of a refused MMIO access into
// the virtual address the task used (si_addr), through its device VMAs.
func (k *Kernel) deviceVA(t *Task, pa uint64) uint64 {
	for _, v := range t.proc.as.VMAs() {
		d, ok := v.Backing.(guestmm.DeviceBacking)
		if !ok || v.Kind != guestmm.KindDevice {
			continue
		}
		lo := d.MMIOBase() + v.Offset
		if pa >= lo && pa < lo+(v.End-v.Start) {
			return v.Start + (pa - lo)
		}
	}
	return pa
}

// timersDue says whether to check the timers after an exit of this kind.
// In host mode that is whenever the host timer went off; under
// --deterministic it is after every system call and fault, never at a
// kick (whose timing is the host's).
func (k *Kernel) timersDue(kind vmm.ExitKind) bool {
	if len(k.timers.list) == 0 {
		return false
	}
	if _, virtual := k.clock.(*VirtualClock); virtual {
		return kind == vmm.ExitSyscall || kind == vmm.ExitException
	}
	return k.timers.hostDue.Load()
}

// countFault counts a page fault for getrusage and follows the peak of
// guest RAM in use (ru_maxrss).
func (k *Kernel) countFault() {
	k.timers.minFaults++
	k.timers.maxRSSKB = max(k.timers.maxRSSKB, uint64(k.frames.Used())*4)
}
