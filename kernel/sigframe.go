package kernel

import (
	"encoding/binary"
	"fmt"

	"github.com/emuckpt/emuckpt/kernel/vfs"
	"github.com/emuckpt/emuckpt/vmm"
	"golang.org/x/sys/unix"
)

// Signal delivery to handlers, with Linux's x86-64 rt_sigframe: the
// handler runs on the task's stack (or its alternate stack) with
// (signo, siginfo*, ucontext*) and returns through sa_restorer, which
// calls rt_sigreturn to restore the interrupted state.

const (
	saNodefer    = 0x40000000
	saResethand  = 0x80000000
	ssAutodisarm = 1 << 31

	ucFPXState        = 0x1
	ucSigcontextSS    = 0x2
	ucStrictRestoreSS = 0x4

	fpXStateMagic1 = 0x46505853
	fpXStateMagic2 = 0x46505845

	redZone     = 128
	ucSize      = 304 // struct ucontext
	siginfoSize = 128
	frameSize   = 8 + ucSize + siginfoSize // pretcode, uc, info
	mcontextOff = 40                       // of uc_mcontext in ucontext
	sigmaskOff  = mcontextOff + 256        // of uc_sigmask
	fpSize      = vmm.XSaveSize + 4        // XSAVE area and FP_XSTATE_MAGIC2

	flagsClearedForHandler = 0x100 | 0x400 | 0x10000 // TF, DF, RF
)

// mcontext register order (struct sigcontext).
var mcontextRegs = []func(r *vmm.Regs) *uint64{
	func(r *vmm.Regs) *uint64 { return &r.R8 }, func(r *vmm.Regs) *uint64 { return &r.R9 },
	func(r *vmm.Regs) *uint64 { return &r.R10 }, func(r *vmm.Regs) *uint64 { return &r.R11 },
	func(r *vmm.Regs) *uint64 { return &r.R12 }, func(r *vmm.Regs) *uint64 { return &r.R13 },
	func(r *vmm.Regs) *uint64 { return &r.R14 }, func(r *vmm.Regs) *uint64 { return &r.R15 },
	func(r *vmm.Regs) *uint64 { return &r.RDI }, func(r *vmm.Regs) *uint64 { return &r.RSI },
	func(r *vmm.Regs) *uint64 { return &r.RBP }, func(r *vmm.Regs) *uint64 { return &r.RBX },
	func(r *vmm.Regs) *uint64 { return &r.RDX }, func(r *vmm.Regs) *uint64 { return &r.RAX },
	func(r *vmm.Regs) *uint64 { return &r.RCX }, func(r *vmm.Regs) *uint64 { return &r.RSP },
	func(r *vmm.Regs) *uint64 { return &r.RIP }, func(r *vmm.Regs) *uint64 { return &r.RFLAGS },
}

// onAltstack reports whether sp lies on the task's alternate stack.
func (t *Task) onAltstack(sp uint64) bool {
	a := t.altstack
	return a.Flags&ssDisable == 0 && a.Size > 0 && sp > a.SP && sp-a.SP <= a.Size
}

// initFPUState is the FPU state after FNINIT and a default MXCSR, in the
// layout of KVM_SET_XSAVE: FCW 0x37f (all x87 exceptions masked), MXCSR
// 0x1f80 (all SIMD exceptions masked), empty registers.
func initFPUState() []byte {
	xs := make([]byte, vmm.XSaveSize)
	le := binary.LittleEndian
	le.PutUint16(xs[0:], 0x37f)
	le.PutUint32(xs[24:], 0x1f80)
	le.PutUint64(xs[512:], 3) // XSTATE_BV: x87 and SSE state as given here
	return xs
}

// setupFrame makes the task run the handler of act for si at its next
// return to user mode. An error means the frame could not be written (the
// caller then kills the task with SIGSEGV, as Linux does).
func (k *Kernel) setupFrame(t *Task, si sigInfo, act sigAction, trapno, errCode, cr2 uint64) error {
	r := &t.ctx.Regs
	k.traceSignal(t, si) // --trace-json (traceevents.go)
	if act.Flags&saRestorer == 0 {
		return fmt.Errorf("%s handler has no SA_RESTORER", SignalName(si.signo))
	}
	altSP, altFlags, altSize := t.altstack.SP, t.altstack.Flags, t.altstack.Size
	if t.onAltstack(r.RSP) {
		altFlags = ssOnStack
	}
	sp := r.RSP - redZone
	if act.Flags&saOnstack != 0 && t.altstack.Flags&ssDisable == 0 && t.altstack.Size > 0 && !t.onAltstack(r.RSP) {
		sp = t.altstack.SP + t.altstack.Size
		if uint32(t.altstack.Flags)&ssAutodisarm != 0 {
			t.altstack = stackT{Flags: ssDisable}
		}
	}
	fp := (sp - fpSize) &^ 63
	frame := ((fp - frameSize) &^ 15) - 8

	xs, err := t.cpu.vcpu.FPUState()
	if err != nil {
		return err
	}
	fpImage := make([]byte, fpSize)
	copy(fpImage, xs)
	le := binary.LittleEndian
	le.PutUint32(fpImage[464:], fpXStateMagic1)
	le.PutUint32(fpImage[468:], fpSize)
	le.PutUint64(fpImage[472:], t.cpu.vcpu.XCR0()) // xfeatures: what user mode may use
	// As Linux's save_xstate_epilog: x87 and SSE are always marked in
	// XSTATE_BV (their registers are in the legacy area in any case), so
	// that a handler that edits them sees the change after sigreturn;
	// and the frame does not depend on whether they were in their init
	// state, which deterministic runs need.
	le.PutUint64(fpImage[512:], le.Uint64(xs[512:])|3)
	le.PutUint32(fpImage[480:], vmm.XSaveSize)
	le.PutUint32(fpImage[vmm.XSaveSize:], fpXStateMagic2)

	b := make([]byte, frameSize)
	le.PutUint64(b[0:], act.Restorer)
	uc := b[8:]
	le.PutUint64(uc[0:], ucFPXState|ucSigcontextSS|ucStrictRestoreSS)
	le.PutUint64(uc[16:], altSP)
	le.PutUint32(uc[24:], uint32(altFlags))
	le.PutUint64(uc[32:], altSize)
	mc := uc[mcontextOff:]
	for i, reg := range mcontextRegs {
		le.PutUint64(mc[8*i:], *reg(r))
	}
	le.PutUint16(mc[144:], vmm.UserCS)
	le.PutUint16(mc[150:], vmm.UserSS)
	le.PutUint64(mc[152:], errCode)
	le.PutUint64(mc[160:], trapno)
	saveMask := t.sigmask
	if t.restoreMask {
		// The handler returns to the mask ppoll or pselect6 replaced.
		saveMask, t.restoreMask = t.savedMask, false
	}
	le.PutUint64(mc[168:], saveMask)
	le.PutUint64(mc[176:], cr2)
	le.PutUint64(mc[184:], fp)
	le.PutUint64(uc[sigmaskOff:], saveMask)
	fillSiginfo(t, si, b[8+ucSize:])
	if e := k.copyOut(t, fp, fpImage); e != 0 {
		return fmt.Errorf("signal frame at %#x: %v", fp, e)
	}
	if e := k.copyOut(t, frame, b); e != 0 {
		return fmt.Errorf("signal frame at %#x: %v", frame, e)
	}

	// The handler starts with a clean FPU, as Linux's
	// fpu__clear_user_states gives it: every exception masked, no flag
	// pending. rt_sigreturn brings back the state saved above.
	if err := t.cpu.vcpu.SetFPUState(initFPUState()); err != nil {
		return err
	}
	r.RIP = act.Handler
	r.RSP = frame
	r.RDI = uint64(si.signo)
	r.RSI = frame + 8 + ucSize
	r.RDX = frame + 8
	r.RAX = 0
	r.RFLAGS &^= flagsClearedForHandler
	t.sigmask |= act.Mask
	if act.Flags&saNodefer == 0 {
		t.sigmask |= sigBit(si.signo)
	}
	t.sigmask &^= unblockable
	if act.Flags&saResethand != 0 {
		t.proc.actions[si.signo] = sigAction{}
	}
	return nil
}

// sysRtSigreturn restores the state a signal handler interrupted, from
// the ucontext of its frame (the handler's return popped pretcode, so the
// frame starts 8 bytes below RSP).
func (k *Kernel) sysRtSigreturn(t *Task, _ *args) (uint64, unix.Errno) {
	r := &t.ctx.Regs
	ucAddr := r.RSP // frame+8
	uc := make([]byte, ucSize)
	if e := k.copyIn(t, ucAddr, uc); e != 0 {
		k.pendingExit = k.badFrame(t, "rt_sigreturn: ucontext unreadable")
		return 0, 0
	}
	le := binary.LittleEndian
	mc := uc[mcontextOff:]
	var regs vmm.Regs
	for i, reg := range mcontextRegs {
		*reg(&regs) = le.Uint64(mc[8*i:])
	}
	if fp := le.Uint64(mc[184:]); fp != 0 {
		xs := make([]byte, vmm.XSaveSize)
		if e := k.copyIn(t, fp, xs); e != 0 {
			k.pendingExit = k.badFrame(t, "rt_sigreturn: FPU state unreadable")
			return 0, 0
		}
		clear(xs[464:512]) // the software bytes are the kernel's, not state
		if err := t.cpu.vcpu.SetFPUState(xs); err != nil {
			k.pendingExit = k.badFrame(t, "rt_sigreturn: invalid FPU state")
			return 0, 0
		}
	}
	t.sigmask = le.Uint64(uc[sigmaskOff:]) &^ unblockable
	// restore_altstack: a valid uc_stack becomes the alternate stack
	// again (errors are ignored, as Linux does).
	if ss := (stackT{SP: le.Uint64(uc[16:]), Flags: int32(le.Uint32(uc[24:])), Size: le.Uint64(uc[32:])}); !t.onAltstack(r.RSP) {
		if ss.Flags&ssDisable != 0 {
			t.altstack = stackT{Flags: ssDisable}
		} else if ss.Size >= 2048 {
			ss.Flags &^= ssOnStack
			t.altstack = ss
		}
	}
	rax := regs.RAX
	*r = regs
	return rax, 0
}

// badFrame kills the task with SIGSEGV for a signal frame it corrupted.
func (k *Kernel) badFrame(t *Task, why string) error {
	return k.kill(t, sigInfo{signo: int(unix.SIGSEGV), code: siKernel, reason: why})
}

// fillSiginfo writes si as the struct siginfo a handler or
// rt_sigtimedwait receives.
func fillSiginfo(t *Task, si sigInfo, info []byte) {
	le := binary.LittleEndian
	le.PutUint32(info[0:], uint32(si.signo))
	le.PutUint32(info[8:], uint32(int32(si.code)))
	switch {
	case si.code == siUser || si.code == siTkill:
		le.PutUint32(info[16:], uint32(t.proc.pid))
		le.PutUint32(info[20:], uint32(unix.Getuid()))
	case si.code == siTimer:
		le.PutUint32(info[16:], uint32(si.timerID))
		le.PutUint32(info[20:], uint32(si.overrun))
		le.PutUint64(info[24:], si.value)
	case si.poll:
		// _sigpoll: si_band (POLLIN | POLLRDNORM for POLL_IN), si_fd.
		le.PutUint64(info[16:], vfs.PollIn|vfs.PollRdnorm)
		le.PutUint32(info[24:], uint32(int32(si.fd)))
	default:
		le.PutUint64(info[16:], si.addr)
	}
}
