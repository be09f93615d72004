package kernel

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"

	"golang.org/x/arch/x86/x86asm"
	"golang.org/x/sys/unix"
)

const (
	numSignals = 64
	sigDfl     = 0
	sigIgn     = 1

	ssOnStack = 1
	ssDisable = 2

	// si_code values.
	siUser    = 0
	siKernel  = 0x80
	pollIn    = 1 // POLL_IN: an O_ASYNC file has input (F_SETSIG signals)
	siTkill   = -6
	illIllopn = 2
	fpeIntdiv = 1
	fpeFltdiv = 3
	fpeFltovf = 4
	fpeFltund = 5
	fpeFltres = 6
	fpeFltinv = 7
	busAdraln = 1

	saSiginfo  = 0x4
	saRestorer = 0x04000000
	saOnstack  = 0x08000000
	saRestart  = 0x10000000

	sigsetSize = 8
)

// sigAction is struct k_sigaction as x86-64 Linux passes it.
type sigAction struct {
	Handler  uint64
	Flags    uint64
	Restorer uint64
	Mask     uint64
}

func sigBit(sig int) uint64 { return 1 << (sig - 1) }

// unblockable signals can be neither caught, ignored nor blocked.
const unblockable = 1<<(9-1) | 1<<(19-1) // SIGKILL, SIGSTOP

// sigInfo describes a signal being delivered.
type sigInfo struct {
	signo int
	code  int
	addr  uint64 // si_addr, and cr2 in the frame of a page fault
	// poll marks a signal an O_ASYNC file sent with F_SETSIG (si_code
	// POLL_IN): si_band and si_fd (fd) replace si_addr in the frame.
	poll   bool
	fd     int
	reason string
	// trapno and errCode are the exception's vector and error code, for
	// the handler's sigcontext.
	trapno, errCode uint64
	// timerID, overrun and value are si_timerid, si_overrun and si_value
	// of a POSIX timer's signal (si_code SI_TIMER).
	timerID, overrun int32
	value            uint64
}

// defaultIgnored reports whether sig's default action is to ignore it.
func defaultIgnored(sig int) bool {
	switch unix.Signal(sig) {
	case unix.SIGCHLD, unix.SIGURG, unix.SIGWINCH, unix.SIGCONT:
		return true
	}
	return false
}

// defaultStops reports whether sig's default action is to stop the task.
func defaultStops(sig int) bool {
	switch unix.Signal(sig) {
	case unix.SIGSTOP, unix.SIGTSTP, unix.SIGTTIN, unix.SIGTTOU:
		return true
	}
	return false
}

var signalNames = map[int]string{
	1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 5: "SIGTRAP", 6: "SIGABRT", 7: "SIGBUS",
	8: "SIGFPE", 9: "SIGKILL", 10: "SIGUSR1", 11: "SIGSEGV", 12: "SIGUSR2", 13: "SIGPIPE",
	14: "SIGALRM", 15: "SIGTERM", 16: "SIGSTKFLT", 17: "SIGCHLD", 18: "SIGCONT", 19: "SIGSTOP",
	20: "SIGTSTP", 21: "SIGTTIN", 22: "SIGTTOU", 23: "SIGURG", 24: "SIGXCPU", 25: "SIGXFSZ",
	26: "SIGVTALRM", 27: "SIGPROF", 28: "SIGWINCH", 29: "SIGIO", 30: "SIGPWR", 31: "SIGSYS",
}

// SignalName is the conventional name of signal sig ("SIGSEGV", "SIGRTMIN+3").
func SignalName(sig int) string {
	if n, ok := signalNames[sig]; ok {
		return n
	}
	if sig >= 34 && sig <= 64 {
		return fmt.Sprintf("SIGRTMIN+%d", sig-34)
	}
	return fmt.Sprintf("signal %d", sig)
}

func codeName(signo, code int) string {
	switch code {
	case siUser:
		return "SI_USER"
	case siKernel:
		return "SI_KERNEL"
	case siTkill:
		return "SI_TKILL"
	case siTimer:
		return "SI_TIMER"
	}
	names := map[unix.Signal][]string{
		unix.SIGSEGV: {"", "SEGV_MAPERR", "SEGV_ACCERR"},
		unix.SIGBUS:  {"", "BUS_ADRALN", "BUS_ADRERR", "BUS_OBJERR"},
		unix.SIGILL:  {"", "ILL_ILLOPC", "ILL_ILLOPN", "ILL_ILLADR"},
		unix.SIGFPE:  {"", "FPE_INTDIV", "FPE_INTOVF", "FPE_FLTDIV", "FPE_FLTOVF", "FPE_FLTUND", "FPE_FLTRES", "FPE_FLTINV", "FPE_FLTSUB"},
		unix.SIGTRAP: {"", "TRAP_BRKPT", "TRAP_TRACE"},
	}
	if n := names[unix.Signal(signo)]; code > 0 && code < len(n) {
		return n[code]
	}
	return fmt.Sprintf("code %d", code)
}

// fatalSignal delivers a synchronous fault signal: to its handler when
// there is one and the signal is neither blocked nor ignored; otherwise,
// as Linux's force_sig does, the process dies, here with a fault report.
func (k *Kernel) fatalSignal(t *Task, si sigInfo) error {
	act := t.proc.actions[si.signo]
	if act.Handler > sigIgn && t.sigmask&sigBit(si.signo) == 0 {
		if err := k.setupFrame(t, si, act, si.trapno, si.errCode, si.addr); err != nil {
			return k.kill(t, sigInfo{signo: int(unix.SIGSEGV), code: siKernel, reason: err.Error()})
		}
		return nil
	}
	return k.kill(t, si)
}

// kill ends the process by signal si with a fault report.
func (k *Kernel) kill(t *Task, si sigInfo) error {
	k.report(t, si)
	return &errExit{ExitStatus{Signal: si.signo}}
}

// sendSignal is kill/tgkill to the task itself: the signal is pending and
// acted on when the task returns to user mode (deliverPending).
func (k *Kernel) sendSignal(t *Task, sig int, code int) {
	if t.pending&sigBit(sig) != 0 && t.pendingTimer[sig] != nil {
		return // a standard signal is queued once: the timer's stays
	}
	t.pending |= sigBit(sig)
	t.pendingCode[sig] = code
	k.interrupt(t)
}

// deliverPending acts on the pending signals that are not blocked, on the
// way back to user mode: a handler gets a signal frame (several nest, the
// last one runs first), a default action that ends the process ends it.
func (k *Kernel) deliverPending(t *Task) error {
	for sig := 1; sig <= numSignals; sig++ {
		bit := sigBit(sig)
		if t.pending&bit == 0 || t.sigmask&bit&^unblockable != 0 {
			continue
		}
		t.pending &^= bit
		act := t.proc.actions[sig]
		code := t.pendingCode[sig]
		si := sigInfo{signo: sig, code: code}
		k.dequeueTimer(t, sig, &si)
		if code == pollIn {
			si.poll, si.fd = true, t.pendingFD[sig]
		}
		switch {
		case sig == int(unix.SIGKILL):
		case act.Handler == sigIgn:
			continue
		case act.Handler == sigDfl && (defaultIgnored(sig) || defaultStops(sig)):
			// Job control stops have no one to continue them here.
			continue
		case act.Handler != sigDfl:
			if t.restartNr != 0 {
				// A restartable call this signal interrupted: with
				// SA_RESTART it is made again after the handler.
				if act.Flags&saRestart != 0 {
					r := &t.ctx.Regs
					r.RAX, r.RIP = t.restartNr-1, r.RIP-2
				}
				t.restartNr = 0
			}
			if err := k.setupFrame(t, si, act, 0, 0, 0); err != nil {
				return k.kill(t, sigInfo{signo: int(unix.SIGSEGV), code: siKernel, reason: err.Error()})
			}
			continue
		}
		if k.cfg.Verbose {
			fmt.Fprintf(k.log, "emuckpt: %s: killed by %s (%s)\n", k.cfg.Name, SignalName(sig), codeName(sig, code))
		}
		return &errExit{ExitStatus{Signal: sig}}
	}
	if t.restoreMask {
		// No handler ran: ppoll or pselect6's own mask ends here.
		t.sigmask, t.restoreMask = t.savedMask, false
	}
	return nil
}

// report writes the fault report for a fatal signal.
func (k *Kernel) report(t *Task, si sigInfo) {
	r := &t.ctx.Regs
	var b strings.Builder
	fmt.Fprintf(&b, "emuckpt: %s: killed by %s (%s)", k.cfg.Name, SignalName(si.signo), codeName(si.signo, si.code))
	if si.signo == int(unix.SIGSEGV) || si.signo == int(unix.SIGBUS) {
		fmt.Fprintf(&b, " at address %#x", si.addr)
	}
	if si.reason != "" {
		fmt.Fprintf(&b, ": %s", si.reason)
	}
	b.WriteString("\n")
	var code [15]byte
	n, _ := t.proc.as.CopyInPartial(r.RIP, code[:])
	if inst, err := x86asm.Decode(code[:n], 64); n > 0 && err == nil {
		fmt.Fprintf(&b, "  instruction at rip %#x: %s  [% x]\n", r.RIP, x86asm.IntelSyntax(inst, r.RIP, nil), code[:inst.Len])
	} else {
		fmt.Fprintf(&b, "  instruction at rip %#x: unreadable\n", r.RIP)
	}
	regs := []struct {
		n string
		v uint64
	}{
		{"rax", r.RAX}, {"rbx", r.RBX}, {"rcx", r.RCX}, {"rdx", r.RDX},
		{"rsi", r.RSI}, {"rdi", r.RDI}, {"rbp", r.RBP}, {"rsp", r.RSP},
		{"r8", r.R8}, {"r9", r.R9}, {"r10", r.R10}, {"r11", r.R11},
		{"r12", r.R12}, {"r13", r.R13}, {"r14", r.R14}, {"r15", r.R15},
		{"rip", r.RIP}, {"rflags", r.RFLAGS}, {"fs_base", t.ctx.FSBase},
	}
	for i, x := range regs {
		if i%4 == 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, " %-6s %#016x", x.n, x.v)
		if i%4 == 3 || i == len(regs)-1 {
			b.WriteString("\n")
		}
	}
	b.WriteString("  memory map:\n")
	for _, line := range strings.SplitAfter(t.proc.as.MapsText(), "\n") {
		if line != "" {
			b.WriteString("    " + line)
		}
	}
	fmt.Fprint(k.log, b.String())
}

// sysRtSigaction implements rt_sigaction(sig, act, oact, sigsetsize).
func (k *Kernel) sysRtSigaction(t *Task, a *args) (uint64, unix.Errno) {
	sig := int(int32(a[0]))
	if a[3] != sigsetSize {
		return 0, unix.EINVAL
	}
	if sig < 1 || sig > numSignals {
		return 0, unix.EINVAL
	}
	var newAct sigAction
	if a[1] != 0 {
		var buf [32]byte
		if e := k.copyIn(t, a[1], buf[:]); e != 0 {
			return 0, e
		}
		newAct = sigAction{
			Handler: binary.LittleEndian.Uint64(buf[0:]), Flags: binary.LittleEndian.Uint64(buf[8:]),
			Restorer: binary.LittleEndian.Uint64(buf[16:]), Mask: binary.LittleEndian.Uint64(buf[24:]),
		}
		if sigBit(sig)&unblockable != 0 {
			return 0, unix.EINVAL
		}
	}
	old := t.proc.actions[sig]
	if a[2] != 0 {
		var buf [32]byte
		binary.LittleEndian.PutUint64(buf[0:], old.Handler)
		binary.LittleEndian.PutUint64(buf[8:], old.Flags)
		binary.LittleEndian.PutUint64(buf[16:], old.Restorer)
		binary.LittleEndian.PutUint64(buf[24:], old.Mask)
		if e := k.copyOut(t, a[2], buf[:]); e != 0 {
			return 0, e
		}
	}
	if a[1] != 0 {
		newAct.Mask &^= unblockable
		t.proc.actions[sig] = newAct
		if newAct.Handler == sigIgn || (newAct.Handler == sigDfl && defaultIgnored(sig)) {
			t.pending &^= sigBit(sig)
		}
	}
	return 0, 0
}

// sysRtSigprocmask implements rt_sigprocmask(how, set, oset, sigsetsize).
func (k *Kernel) sysRtSigprocmask(t *Task, a *args) (uint64, unix.Errno) {
	if a[3] != sigsetSize {
		return 0, unix.EINVAL
	}
	old := t.sigmask
	if a[1] != 0 {
		var buf [8]byte
		if e := k.copyIn(t, a[1], buf[:]); e != 0 {
			return 0, e
		}
		set := binary.LittleEndian.Uint64(buf[:])
		switch a[0] {
		case unix.SIG_BLOCK:
			t.sigmask |= set
		case unix.SIG_UNBLOCK:
			t.sigmask &^= set
		case unix.SIG_SETMASK:
			t.sigmask = set
		default:
			return 0, unix.EINVAL
		}
		t.sigmask &^= unblockable
	}
	if a[2] != 0 {
		var buf [8]byte
		binary.LittleEndian.PutUint64(buf[:], old)
		if e := k.copyOut(t, a[2], buf[:]); e != 0 {
			t.sigmask = old
			return 0, e
		}
	}
	return 0, 0
}

// sysSigaltstack implements sigaltstack(ss, old_ss).
func (k *Kernel) sysSigaltstack(t *Task, a *args) (uint64, unix.Errno) {
	old := t.altstack
	onStack := t.onAltstack(t.ctx.Regs.RSP)
	if onStack {
		old.Flags = ssOnStack | old.Flags&^ssDisable
	}
	if a[0] != 0 {
		var buf [24]byte
		if e := k.copyIn(t, a[0], buf[:]); e != 0 {
			return 0, e
		}
		ss := stackT{SP: binary.LittleEndian.Uint64(buf[0:]), Flags: int32(binary.LittleEndian.Uint32(buf[8:])), Size: binary.LittleEndian.Uint64(buf[16:])}
		switch {
		case onStack:
			return 0, unix.EPERM
		case uint32(ss.Flags)&^(ssDisable|ssAutodisarm) != 0:
			return 0, unix.EINVAL
		case ss.Flags&ssDisable != 0:
			ss = stackT{Flags: ssDisable}
		case ss.Size < 2048: // MINSIGSTKSZ
			return 0, unix.ENOMEM
		}
		t.altstack = ss
	}
	if a[1] != 0 {
		var buf [24]byte
		binary.LittleEndian.PutUint64(buf[0:], old.SP)
		binary.LittleEndian.PutUint32(buf[8:], uint32(old.Flags))
		binary.LittleEndian.PutUint64(buf[16:], old.Size)
		if e := k.copyOut(t, a[1], buf[:]); e != 0 {
			return 0, e
		}
	}
	return 0, 0
}

// sysKill implements kill, tkill and tgkill aimed at the task itself.
func (k *Kernel) sysKill(t *Task, pid int, sig int, code int) (uint64, unix.Errno) {
	if sig < 0 || sig > numSignals {
		return 0, unix.EINVAL
	}
	var targets []*Process
	switch {
	case pid > 0:
		p := k.procs[pid]
		if p == nil {
			return 0, unix.ESRCH
		}
		targets = []*Process{p} // a zombie takes the signal and ignores it
	case pid == 0:
		targets = k.processGroup(t.proc.pgid)
	case pid == -1:
		// Every process but init and the caller.
		for _, p := range k.liveProcesses() {
			if p != t.proc {
				targets = append(targets, p)
			}
		}
	case pid == math.MinInt32:
		return 0, unix.ESRCH
	default:
		targets = k.processGroup(-pid)
	}
	if len(targets) == 0 {
		return 0, unix.ESRCH
	}
	if sig == 0 {
		return 0, 0
	}
	for _, p := range targets {
		k.signalProcess(p, sig, code, t)
	}
	return 0, 0
}

// sysRtSigpending implements rt_sigpending(set, sigsetsize).
func (k *Kernel) sysRtSigpending(t *Task, a *args) (uint64, unix.Errno) {
	if a[1] > sigsetSize {
		return 0, unix.EINVAL
	}
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], t.pending&t.sigmask)
	return 0, k.copyOut(t, a[0], b[:a[1]])
}
