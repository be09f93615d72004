package vmm

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/bobuhiro11/gokvm/kvm"
	"github.com/emuckpt/emuckpt/guestmm"
	"golang.org/x/sys/unix"
)

// The run loop. Run enters the guest and returns to the kernel layer only
// at a *clean stop*: the CPU is at a user instruction boundary and KVM has
// nothing half done (no MMIO or port access waiting for completion, no
// exception being delivered), so the user context the vCPU holds is exactly
// what the program would see. Clean stops are:
//
//   - a port exit from the syscall trampoline or an exception stub (the
//     user state is taken from RCX/R11 or the interrupt frame);
//   - an MMIO access that the vCPU finished before returning (finishIO);
//   - a kick that found the CPU in user code with no event pending.
//
// A kick that finds the CPU anywhere else (in a ring-0 stub, at the
// trampoline's `out`, with an exception about to be delivered) lets it
// run on: each of those places reaches an exit or user code within a few
// instructions, and the kick is repeated shortly until it lands on a
// clean stop.

// rekickDelay is how long a kick that could not stop the vCPU waits before
// it tries again.
const rekickDelay = 50 * time.Microsecond

// Exits counts the VM exits this vCPU has taken.
func (c *VCPU) Exits() uint64 { return c.exits }

// Kick makes Run return ExitKicked at its next clean stop: at once if the
// guest is running user code, a few instructions later if it is in a stub,
// and at the start of the next Run if the kernel layer holds the vCPU. It
// is safe to call from any goroutine.
func (c *VCPU) Kick() {
	c.kicked.Store(true)
	c.setImmediateExit(true)
	if tid := c.tid.Load(); tid != 0 {
		unix.Tgkill(unix.Getpid(), int(tid), unix.SIGURG)
	}
}

// setImmediateExit sets kvm_run.immediate_exit, which makes KVM_RUN return
// EINTR instead of entering the guest (after completing pending I/O). It
// writes the first four bytes of kvm_run (request_interrupt_window, unused
// here, immediate_exit and padding) atomically, since Kick and Run race.
func (c *VCPU) setImmediateExit(on bool) {
	c.kickMu.Lock()
	defer c.kickMu.Unlock()
	if c.run == nil {
		return
	}
	v := uint32(0)
	if on {
		v = 1 << (8 * runImmediateExt)
	}
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&c.run[0])), v)
}

// StopAfterMMIO makes Run return ExitMMIOLimit once n more device accesses
// have completed (0 cancels).
func (c *VCPU) StopAfterMMIO(n uint64) { c.mmioLeft = n }

// Run enters the guest and returns at the next event the kernel layer
// must handle, at a clean stop (see above). Errors are failures of the
// machine itself (KVM refused to run, the guest triple-faulted, a stub
// stopped where it must not).
func (c *VCPU) Run() (Exit, error) {
	if !c.started {
		return Exit{}, fmt.Errorf("vcpu: Run before Start")
	}
	if ex, ok := c.unreachableRIP(); ok {
		return ex, nil
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	c.tid.Store(int64(unix.Gettid()))
	defer c.tid.Store(0)
	if err := c.load(); err != nil {
		return Exit{}, err
	}
	runOn := false // a kick found the vCPU where it cannot stop
	for {
		if !runOn && c.kicked.Load() {
			c.setImmediateExit(true)
		}
		reason, err := c.enter()
		if err != nil {
			return Exit{}, err
		}
		c.exits++
		c.settleRefresh()
		runOn = false
		switch reason {
		case kvm.EXITINTR:
			c.setImmediateExit(false)
			if !c.kicked.Load() {
				continue // a signal meant for the Go runtime
			}
			stop, err := c.stopForKick()
			if err != nil {
				return Exit{}, err
			}
			if stop {
				c.kicked.Store(false)
				return Exit{Kind: ExitKicked}, nil
			}
			runOn = true
			time.AfterFunc(rekickDelay, c.Kick)
		case kvm.EXITIO:
			return c.portExit()
		case kvm.EXITMMIO:
			ex, stop, err := c.mmioExit()
			if err != nil || stop {
				return ex, err
			}
		case kvm.EXITINTERNALERROR:
			if c.sregs.CS.DPL != 3 {
				return Exit{}, c.fatal(uint32(reason))
			}
			// KVM could not emulate a user instruction on device memory
			// (an AVX or fxsave access, a jump into a device page): the
			// task gets SIGBUS, not the VMM an error.
			c.cur.Regs, c.place = Regs(*c.sync), stoppedUser
			sub := binary.LittleEndian.Uint32(c.run[runExitData:])
			return Exit{Kind: ExitMMIOFault, Fault: &AccessFault{Signal: 7, Code: 2,
				Reason: fmt.Sprintf("KVM cannot emulate this instruction on device memory (internal error, suberror %d)", sub)}}, nil
		default:
			return Exit{}, c.fatal(uint32(reason))
		}
	}
}

var kvmRunIoctl = kvm.IIO(0x80)

// enter is one KVM_RUN. An interrupted call is reported as EXITINTR.
func (c *VCPU) enter() (kvm.ExitType, error) {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, c.fd, kvmRunIoctl, 0)
	switch errno {
	case 0:
		return kvm.ExitType(binary.LittleEndian.Uint32(c.run[runExitReason:])), nil
	case unix.EINTR, unix.EAGAIN:
		return kvm.EXITINTR, nil
	}
	return 0, fmt.Errorf("KVM_RUN: %w", errno)
}

// User addresses end below the trampoline page, where Linux's TASK_SIZE
// ends; the kernel half of the canonical space starts at kernelHalf.
const kernelHalf = 0xffff800000000000

// unreachableRIP stands in for the CPU when the user state holds a RIP
// that user code cannot run at: a non-canonical RIP (#GP, which hardware
// KVM would even refuse at VM entry) or one at or above TASK_SIZE (a #PF
// on the fetch: on Linux nothing is mapped there for user mode; here the
// trampoline and the VMM's own pages are). Rt_sigreturn, a signal handler
// address or a system call made by jumping to the trampoline can all put
// such a RIP there; the kernel layer turns the exception into SIGSEGV.
func (c *VCPU) unreachableRIP() (Exit, bool) {
	rip := c.cur.Regs.RIP
	switch {
	case rip < TrampolineVA:
		return Exit{}, false
	case rip < 1<<47:
		return Exit{Kind: ExitException, Vector: VecPF, ErrorCode: pfUser | pfFetch, CR2: rip}, true
	case rip >= kernelHalf:
		return Exit{Kind: ExitException, Vector: VecPF, ErrorCode: pfPresent | pfUser | pfFetch, CR2: rip}, true
	}
	return Exit{Kind: ExitException, Vector: VecGP}, true
}

// #PF error code bits.
const (
	pfPresent = 1 << 0
	pfUser    = 1 << 2
	pfFetch   = 1 << 4
)

// stopForKick decides whether a kicked vCPU that KVM returned with EINTR
// is at a clean stop, and if so takes the user state.
func (c *VCPU) stopForKick() (bool, error) {
	rip := c.sync.RIP
	switch {
	case c.sregs.CS.DPL != 3:
		return false, nil // in a ring-0 stub: it ends in an exit or user code
	case rip == TrampolineVA:
		return false, nil // at the trampoline's `out`: a system call exit comes next
	case c.refreshArmed && rip == TrampolineVA+refreshOffset:
		return false, nil // on the way into the refresh stub
	}
	// User code, unless KVM is in the middle of delivering an exception
	// or is about to: the delivery must happen before the state is
	// edited (setting registers would drop it).
	var ev kvm.VCPUEvents
	if err := retry(func() error { return kvm.GetVCPUEvents(c.fd, &ev) }); err != nil {
		return false, fmt.Errorf("KVM_GET_VCPU_EVENTS: %w", err)
	}
	if ev.E.Inject != 0 || ev.E.Pending != 0 || ev.I.Inject != 0 || ev.N.Inject != 0 {
		return false, nil
	}
	c.cur.Regs, c.place = Regs(*c.sync), stoppedUser
	return true, nil
}

// finishIO lets KVM complete the access it exited for (a load writes its
// register, a string instruction updates its counters, RIP moves on)
// without running further guest code: KVM_RUN with immediate_exit set
// completes pending I/O and then returns EINTR. An access that needs more
// exits (one that spans two devices, a repeated string instruction) gets
// them serviced here too, up to a bound.
func (c *VCPU) finishIO() error {
	defer c.setImmediateExit(false)
	for range 64 {
		c.setImmediateExit(true)
		reason, err := c.enter()
		if err != nil {
			return err
		}
		switch reason {
		case kvm.EXITINTR:
			return nil
		case kvm.EXITMMIO:
			c.m.Bus.Access(c.mmioAccess()) // a refused fragment reads as zeros
		case kvm.EXITIO:
			// Only a user `rep ins/outs` on the syscall port gets here.
		default:
			return c.fatal(uint32(reason))
		}
	}
	return fmt.Errorf("vcpu: an I/O instruction at %#x does not complete", c.sync.RIP)
}

func (c *VCPU) portExit() (Exit, error) {
	dir, size, port := c.run[runExitData], c.run[runExitData+1], binary.LittleEndian.Uint16(c.run[runExitData+2:])
	rip := c.sync.RIP
	switch {
	case port == SyscallPort && dir == 1 && size == 1 && rip >= TrampolineVA && rip <= TrampolineVA+2:
		// A system call, from CPL3 (PVM) or CPL0 (hardware KVM). Either
		// way the CPU left the user RIP in RCX and RFLAGS in R11. KVM may
		// still mean to step over the `out` at the next entry; it does
		// not once RIP has changed, and the user RIP is never the
		// trampoline's (see unreachableRIP).
		c.cur.Regs = Regs(*c.sync)
		c.cur.Regs.RIP = c.sync.RCX
		c.cur.Regs.RFLAGS = c.sync.R11
		if c.sregs.CS.DPL == 0 {
			c.place = stoppedRing0
		} else {
			c.place = stoppedUser
		}
		return Exit{Kind: ExitSyscall}, nil
	case port == exceptionPort && c.sregs.CS.DPL == 0:
		return c.exceptionExit()
	case c.sregs.CS.DPL == 3:
		// User code reached an I/O instruction the bitmap allows, but not
		// in the trampoline. Linux would raise #GP: SIGSEGV. The access
		// is completed first (RIP is then past the instruction on every
		// KVM), so that nothing is left pending.
		if err := c.finishIO(); err != nil {
			return Exit{}, err
		}
		c.cur.Regs, c.place = Regs(*c.sync), stoppedUser
		return Exit{Kind: ExitPortIO}, nil
	}
	return Exit{}, fmt.Errorf("vcpu: unexpected port I/O %#x at %#x in ring 0", port, rip)
}

func (c *VCPU) exceptionExit() (Exit, error) {
	stubs, top := KernelBase+stubPA+c.off, KernelBase+kstackTop+c.off
	rip := c.sync.RIP - stubs
	vec := int(rip / stubStride)
	if ud := KernelBase + udDispatch + c.off; c.sync.RIP >= ud && c.sync.RIP < ud+32 {
		vec = VecUD
	} else if c.sync.RIP < stubs || vec >= numVectors {
		return Exit{}, fmt.Errorf("vcpu: exception port from unknown RIP %#x", c.sync.RIP)
	}
	if c.sync.RSP < KernelBase+kstack+c.off || c.sync.RSP > top-40 {
		return Exit{}, fmt.Errorf("vcpu: exception frame at %#x is outside the ring-0 stack", c.sync.RSP)
	}
	frame := c.sync.RSP - KernelBase
	ex := Exit{Kind: ExitException, Vector: vec}
	if hasErrorCode(vec) {
		ex.ErrorCode = c.m.le64(frame)
		frame += 8
		if frame+40 > top-KernelBase {
			return Exit{}, fmt.Errorf("vcpu: exception %d frame at %#x is outside the ring-0 stack", vec, c.sync.RSP)
		}
	}
	if vec == VecPF {
		ex.CR2 = c.sregs.CR2
	}
	cs := c.m.le64(frame + 8)
	if cs&3 != 3 {
		// An exception in ring 0 is a bug in the stubs or the tables.
		return Exit{}, fmt.Errorf("vcpu: exception %d in ring 0 at %#x (error code %#x, cr2 %#x)", vec, c.m.le64(frame), ex.ErrorCode, c.sregs.CR2)
	}
	c.cur.Regs = Regs(*c.sync)
	c.cur.Regs.RIP = c.m.le64(frame)
	c.cur.Regs.RFLAGS = c.m.le64(frame + 16)
	c.cur.Regs.RSP = c.m.le64(frame + 24)
	c.place = stoppedRing0
	return ex, nil
}

// mmioAccess decodes the MMIO exit in kvm_run.
func (c *VCPU) mmioAccess() (addr uint64, data []byte, write bool) {
	addr = binary.LittleEndian.Uint64(c.run[runExitData:])
	n := min(binary.LittleEndian.Uint32(c.run[runExitData+16:]), 8)
	return addr, c.run[runExitData+8 : runExitData+8+int(n)], c.run[runExitData+20] != 0
}

// mmioExit serves a device access. It reports stop when Run must return
// (the access limit was reached or the device refused); the access is
// then finished, so that nothing is pending in KVM.
func (c *VCPU) mmioExit() (Exit, bool, error) {
	addr, data, write := c.mmioAccess()
	err := c.m.Bus.Access(addr, data, write)
	if err == nil {
		if c.mmioLeft == 0 {
			return Exit{}, false, nil // KVM completes it at the next entry
		}
		if c.mmioLeft--; c.mmioLeft > 0 {
			return Exit{}, false, nil
		}
		if err := c.finishIO(); err != nil {
			return Exit{}, true, err
		}
		c.cur.Regs, c.place = Regs(*c.sync), stoppedUser
		return Exit{Kind: ExitMMIOLimit}, true, nil
	}
	f, ok := err.(*AccessFault)
	if !ok {
		f = &AccessFault{Signal: 7, Code: 2, Reason: err.Error()}
	}
	// KVM has already completed a store (RIP is past it). A load is still
	// pending with RIP at it: it is finished with whatever data (so that
	// KVM holds nothing back) and then undone, so that the fault is
	// reported at the load, which has not happened.
	before := Regs(*c.sync)
	if err := c.finishIO(); err != nil {
		return Exit{}, true, err
	}
	c.cur.Regs, c.place = Regs(*c.sync), stoppedUser
	if !write {
		c.cur.Regs = before
	}
	return Exit{Kind: ExitMMIOFault, MMIOAddr: addr, MMIOWrite: write, Fault: f}, true, nil
}

func (c *VCPU) fatal(reason uint32) error {
	desc := kvm.ExitType(reason).String()
	switch kvm.ExitType(reason) {
	case kvm.EXITSHUTDOWN:
		desc = "triple fault (shutdown)"
	case kvm.EXITFAILENTRY:
		desc = fmt.Sprintf("VM entry failed, hardware reason %#x", binary.LittleEndian.Uint64(c.run[runExitData:]))
	case kvm.EXITINTERNALERROR:
		desc = fmt.Sprintf("KVM internal error, suberror %d", binary.LittleEndian.Uint32(c.run[runExitData:]))
	}
	return fmt.Errorf("vcpu: %s at RIP %#x (CS %#x)", desc, c.sync.RIP, c.sregs.CS.Selector)
}

// load brings KVM's copy of the vCPU in line with the user state before
// an entry, choosing the return path that fits where it stopped. Every
// change is marked in kvm_dirty_regs by adding bits, never by
// overwriting them.
func (c *VCPU) load() error {
	u := c.cur.Regs
	u.RFLAGS = u.RFLAGS&userFlagsMask | 0x202
	if c.place == stoppedNew {
		// Registers were set by Start; the sync area holds nothing yet.
		s, err := getSregs(c.fd)
		if err != nil {
			return err
		}
		*c.sregs = *s
		c.place = stoppedUser
	}
	if c.flush {
		if err := c.m.zapTranslations(); err != nil {
			return err
		}
		c.flush = false
		c.dropRefresh()
	}
	*c.sync = kvm.Regs(u)
	*c.dirty |= syncRegsBit
	switch {
	case len(c.refresh) > 0:
		c.routeThroughRefresh(u)
	case c.place == stoppedRing0:
		// Drop to user mode by loading the user segments directly: on
		// PVM that is cheaper than an iretq in a stub.
		c.sregs.CS, c.sregs.SS = userCodeSegment, userDataSegment
		*c.dirty |= syncSregsBit
		c.place = stoppedUser
	}
	if c.setBases || c.sregs.CR3 != c.cur.CR3 {
		c.sregs.FS.Base = c.cur.FSBase
		c.sregs.GS.Base = c.cur.GSBase
		c.sregs.CR3 = c.cur.CR3
		*c.dirty |= syncSregsBit
		c.setBases = false
	}
	return nil
}

// RefreshPages makes the next Run bring the guest's view of the PTEs of
// the pages in runs up to date, after the kernel layer changed them. The
// return to user mode goes through refreshStub, which rewrites each entry
// from ring 0 (through the recursive mapping): a guest write to a page
// table is what KVM's shadow MMU watches. More runs than one list holds
// fall back to FlushTLB.
//
// A vCPU without a context (Release) has no address space to refresh
// them in: it flushes instead.
func (c *VCPU) RefreshPages(runs []guestmm.PageRange) {
	if len(c.refresh)+len(runs) > listCap || c.cur == nil {
		c.flush = true
		return
	}
	c.refresh = append(c.refresh, runs...)
}

// routeThroughRefresh makes the vCPU return to user state u by way of
// refreshStub: it writes the list of entries to rewrite and the iretq
// frame, and points the vCPU at the stub (from ring 0) or at the ud2 at
// TrampolineVA+refreshOffset (from user mode).
func (c *VCPU) routeThroughRefresh(u Regs) {
	m, list := c.m, listPA+c.off
	m.put64(list, uint64(len(c.refresh)))
	for i, r := range c.refresh {
		m.put64(list+8+uint64(i)*16, recursiveBase+(r.Start>>9)&0x7ffffffff8)
		m.put64(list+16+uint64(i)*16, r.Pages)
	}
	c.refreshArmed, c.refreshUser = true, u
	f := refreshFrame + c.off
	m.put64(f, u.RIP)
	m.put64(f+8, UserCS)
	m.put64(f+16, u.RFLAGS)
	m.put64(f+24, u.RSP)
	m.put64(f+32, UserSS)
	if c.place == stoppedRing0 {
		c.sync.RSP = KernelBase + kstackTop + c.off - 64
		c.sync.RFLAGS = 2
		c.sync.RIP = KernelBase + refreshStub + c.off
	} else {
		c.sync.RIP = TrampolineVA + refreshOffset
	}
}

// settleRefresh notices, at any exit, that the refresh stub has finished:
// its last act before returning to user mode is to empty the list.
func (c *VCPU) settleRefresh() {
	if c.refreshArmed && c.m.le64(listPA+c.off) == 0 {
		c.refreshArmed = false
		c.refresh = c.refresh[:0]
	}
}

// dropRefresh forgets a pending refresh (a full flush replaces it) and
// disarms the list, so that the stub can never replay it.
func (c *VCPU) dropRefresh() {
	c.refresh = c.refresh[:0]
	c.refreshArmed = false
	c.m.put64(listPA+c.off, 0)
}
