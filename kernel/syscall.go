package kernel

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// args are the six system-call arguments (rdi, rsi, rdx, r10, r8, r9).
type args [6]uint64

type handler func(k *Kernel, t *Task, a *args) (uint64, unix.Errno)

// syscalls is the system-call table: Linux x86-64 numbers.
var syscalls = map[uint64]handler{
	0:   (*Kernel).sysRead,
	1:   (*Kernel).sysWrite,
	2:   (*Kernel).sysOpen,
	3:   (*Kernel).sysClose,
	4:   (*Kernel).sysStat,
	5:   (*Kernel).sysFstat,
	6:   (*Kernel).sysLstat,
	7:   (*Kernel).sysPoll,
	8:   (*Kernel).sysLseek,
	9:   (*Kernel).sysMmap,
	10:  (*Kernel).sysMprotect,
	11:  (*Kernel).sysMunmap,
	12:  (*Kernel).sysBrk,
	13:  (*Kernel).sysRtSigaction,
	14:  (*Kernel).sysRtSigprocmask,
	15:  (*Kernel).sysRtSigreturn,
	16:  (*Kernel).sysIoctl,
	17:  (*Kernel).sysPread64,
	18:  (*Kernel).sysPwrite64,
	19:  (*Kernel).sysReadv,
	20:  (*Kernel).sysWritev,
	21:  (*Kernel).sysAccess,
	22:  (*Kernel).sysPipe,
	23:  (*Kernel).sysSelect,
	24:  (*Kernel).sysSchedYield,
	25:  (*Kernel).sysMremap,
	26:  (*Kernel).sysMsync,
	27:  (*Kernel).sysMincore,
	28:  (*Kernel).sysMadvise,
	32:  (*Kernel).sysDup,
	33:  (*Kernel).sysDup2,
	34:  (*Kernel).sysPause,
	35:  (*Kernel).sysNanosleep,
	36:  (*Kernel).sysGetitimer,
	37:  (*Kernel).sysAlarm,
	38:  (*Kernel).sysSetitimer,
	39:  (*Kernel).sysGetpid,
	40:  (*Kernel).sysSendfile,
	41:  (*Kernel).sysSocket,
	42:  (*Kernel).sysConnect,
	43:  (*Kernel).sysAccept,
	44:  (*Kernel).sysSendto,
	45:  (*Kernel).sysRecvfrom,
	46:  (*Kernel).sysSendmsg,
	47:  (*Kernel).sysRecvmsg,
	48:  (*Kernel).sysShutdown,
	49:  (*Kernel).sysBind,
	50:  (*Kernel).sysListen,
	51:  (*Kernel).sysGetsockname,
	52:  (*Kernel).sysGetpeername,
	53:  (*Kernel).sysSocketpair,
	54:  (*Kernel).sysSetsockopt,
	55:  (*Kernel).sysGetsockopt,
	56:  (*Kernel).sysClone,
	57:  (*Kernel).sysFork,
	58:  (*Kernel).sysVfork,
	59:  (*Kernel).sysExecve,
	60:  (*Kernel).sysExit,
	61:  (*Kernel).sysWait4,
	62:  (*Kernel).sysKillSyscall,
	63:  (*Kernel).sysUname,
	72:  (*Kernel).sysFcntl,
	74:  (*Kernel).sysFsync,
	75:  (*Kernel).sysFdatasync,
	76:  (*Kernel).sysTruncate,
	77:  (*Kernel).sysFtruncate,
	79:  (*Kernel).sysGetcwd,
	80:  (*Kernel).sysChdir,
	81:  (*Kernel).sysFchdir,
	82:  (*Kernel).sysRename,
	83:  (*Kernel).sysMkdir,
	84:  (*Kernel).sysRmdir,
	85:  (*Kernel).sysCreat,
	86:  (*Kernel).sysLink,
	87:  (*Kernel).sysUnlink,
	88:  (*Kernel).sysSymlink,
	89:  (*Kernel).sysReadlink,
	90:  (*Kernel).sysChmod,
	91:  (*Kernel).sysFchmod,
	92:  (*Kernel).sysChown,
	93:  (*Kernel).sysFchown,
	94:  (*Kernel).sysLchown,
	95:  (*Kernel).sysUmask,
	96:  (*Kernel).sysGettimeofday,
	97:  (*Kernel).sysGetrlimit,
	98:  (*Kernel).sysGetrusage,
	99:  (*Kernel).sysSysinfo,
	100: (*Kernel).sysTimes,
	102: (*Kernel).sysGetuid,
	104: (*Kernel).sysGetgid,
	105: (*Kernel).sysSetuid,
	106: (*Kernel).sysSetgid,
	107: (*Kernel).sysGeteuid,
	108: (*Kernel).sysGetegid,
	109: (*Kernel).sysSetpgid,
	110: (*Kernel).sysGetppid,
	111: (*Kernel).sysGetpgrp,
	112: (*Kernel).sysSetsid,
	113: (*Kernel).sysSetreuid,
	114: (*Kernel).sysSetregid,
	115: (*Kernel).sysGetgroups,
	116: (*Kernel).sysSetgroups,
	117: (*Kernel).sysSetresuid,
	118: (*Kernel).sysGetresuid,
	119: (*Kernel).sysSetresgid,
	120: (*Kernel).sysGetresgid,
	121: (*Kernel).sysGetpgid,
	124: (*Kernel).sysGetsid,
	127: (*Kernel).sysRtSigpending,
	128: (*Kernel).sysRtSigtimedwait,
	130: (*Kernel).sysRtSigsuspend,
	131: (*Kernel).sysSigaltstack,
	132: (*Kernel).sysUtime,
	133: (*Kernel).sysMknod,
	137: (*Kernel).sysStatfs,
	138: (*Kernel).sysFstatfs,
	140: (*Kernel).sysGetpriority,
	141: (*Kernel).sysSetpriority,
	142: (*Kernel).sysSchedSetparam,
	143: (*Kernel).sysSchedGetparam,
	144: (*Kernel).sysSchedSetscheduler,
	145: (*Kernel).sysSchedGetscheduler,
	146: (*Kernel).sysSchedGetPriorityMax,
	147: (*Kernel).sysSchedGetPriorityMin,
	149: (*Kernel).sysMlock,
	150: (*Kernel).sysMunlock,
	151: (*Kernel).sysMlockall,
	152: (*Kernel).sysMunlockall,
	157: (*Kernel).sysPrctl,
	158: (*Kernel).sysArchPrctl,
	162: (*Kernel).sysSync,
	186: (*Kernel).sysGettid,
	187: (*Kernel).sysReadahead,
	188: (*Kernel).sysSetxattr,
	189: (*Kernel).sysLsetxattr,
	190: (*Kernel).sysFsetxattr,
	197: (*Kernel).sysRemovexattr,
	198: (*Kernel).sysLremovexattr,
	199: (*Kernel).sysFremovexattr,
	200: (*Kernel).sysTkill,
	201: (*Kernel).sysTime,
	202: (*Kernel).sysFutex,
	203: (*Kernel).sysSchedSetaffinity,
	204: (*Kernel).sysSchedGetaffinity,
	213: (*Kernel).sysEpollCreate,
	217: (*Kernel).sysGetdents64,
	218: (*Kernel).sysSetTidAddress,
	221: (*Kernel).sysFadvise64,
	222: (*Kernel).sysTimerCreate,
	223: (*Kernel).sysTimerSettime,
	224: (*Kernel).sysTimerGettime,
	225: (*Kernel).sysTimerGetoverrun,
	226: (*Kernel).sysTimerDelete,
	228: (*Kernel).sysClockGettime,
	229: (*Kernel).sysClockGetres,
	230: (*Kernel).sysClockNanosleep,
	231: (*Kernel).sysExitGroup,
	232: (*Kernel).sysEpollWait,
	233: (*Kernel).sysEpollCtl,
	234: (*Kernel).sysTgkill,
	235: (*Kernel).sysUtimes,
	247: (*Kernel).sysWaitid,
	257: (*Kernel).sysOpenat,
	258: (*Kernel).sysMkdirat,
	259: (*Kernel).sysMknodat,
	260: (*Kernel).sysFchownat,
	261: (*Kernel).sysFutimesat,
	262: (*Kernel).sysNewfstatat,
	263: (*Kernel).sysUnlinkat,
	264: (*Kernel).sysRenameat,
	265: (*Kernel).sysLinkat,
	266: (*Kernel).sysSymlinkat,
	267: (*Kernel).sysReadlinkat,
	268: (*Kernel).sysFchmodat,
	269: (*Kernel).sysFaccessat,
	270: (*Kernel).sysPselect6,
	271: (*Kernel).sysPpoll,
	273: (*Kernel).sysSetRobustList,
	277: (*Kernel).sysSyncFileRange,
	280: (*Kernel).sysUtimensat,
	281: (*Kernel).sysEpollPwait,
	283: (*Kernel).sysTimerfdCreate,
	284: (*Kernel).sysEventfd,
	285: (*Kernel).sysFallocate,
	286: (*Kernel).sysTimerfdSettime,
	287: (*Kernel).sysTimerfdGettime,
	288: (*Kernel).sysAccept4,
	290: (*Kernel).sysEventfd2,
	291: (*Kernel).sysEpollCreate1,
	292: (*Kernel).sysDup3,
	293: (*Kernel).sysPipe2,
	295: (*Kernel).sysPreadv,
	296: (*Kernel).sysPwritev,
	302: (*Kernel).sysPrlimit64,
	306: (*Kernel).sysSyncfs,
	309: (*Kernel).sysGetcpu,
	316: (*Kernel).sysRenameat2,
	318: (*Kernel).sysGetrandom,
	319: (*Kernel).sysMemfdCreate,
	322: (*Kernel).sysExecveat,
	325: (*Kernel).sysMlock2,
	326: (*Kernel).sysCopyFileRange,
	327: (*Kernel).sysPreadv2,
	328: (*Kernel).sysPwritev2,
	332: (*Kernel).sysStatx,
	435: (*Kernel).sysClone3,
	436: (*Kernel).sysCloseRange,
	439: (*Kernel).sysFaccessat2,
	441: (*Kernel).sysEpollPwait2,
	452: (*Kernel).sysFchmodat2,

	CheckpointSyscall: (*Kernel).sysCheckpoint,
}

// SyscallName is the Linux name of x86-64 system call nr.
func SyscallName(nr uint64) string {
	if nr == CheckpointSyscall {
		return "emuckpt_checkpoint"
	}
	if n, ok := syscallNames[nr]; ok {
		return n
	}
	return fmt.Sprintf("syscall_%d", nr)
}

// syscall handles the system call the task just made, or, when resumed,
// makes again the call it blocked in (see sched.go): only a first call is
// counted and ticks the clock.
func (k *Kernel) syscall(t *Task, resumed bool) error {
	r := &t.ctx.Regs
	nr := r.RAX
	a := args{r.RDI, r.RSI, r.RDX, r.R10, r.R8, r.R9}
	if !resumed {
		k.clock.Tick()
		k.syscalls++
	}
	tc := k.traceEnter(t, nr, &a, resumed)
	h, ok := syscalls[nr]
	var ret uint64
	var e unix.Errno
	switch {
	case resumed && t.wait != nil && t.wait.finish != nil:
		ret, e = t.wait.finish()
	case ok:
		t.resuming = resumed
		ret, e = h(k, t, &a)
		t.resuming = false
	default:
		e = unix.ENOSYS
		if (k.cfg.Verbose || k.cfg.Trace) && !k.unknown[nr] {
			k.unknown[nr] = true
			fmt.Fprintf(k.log, "emuckpt: unknown system call %s (%d): returning ENOSYS\n", SyscallName(nr), nr)
		}
	}
	if e == eBlock {
		// The task waits with RAX still the call number; the call is
		// made again when the wait is over.
		t.state = taskBlocked
		return k.takePendingExit()
	}
	t.wait = nil
	if e != 0 {
		ret = uint64(-int64(e))
	}
	k.traceExit(t, tc, ret, e) // --trace, --trace-json (strace.go)
	if t.state == taskRunnable {
		r.RAX = ret
	}
	return k.takePendingExit()
}

// takePendingExit returns (and clears) an exit that a system call left for
// after it returns.
func (k *Kernel) takePendingExit() error {
	err := k.pendingExit
	k.pendingExit = nil
	return err
}

// noteOnce reports, once per key and only with -v or --trace, a call the
// guest made that emuckpt does not carry out and answers with an error
// (ENOSYS, EINVAL, ...) rather than a success that did nothing.
func (k *Kernel) noteOnce(key, msg string) {
	if !(k.cfg.Verbose || k.cfg.Trace) || k.notes[key] {
		return
	}
	if k.notes == nil {
		k.notes = map[string]bool{}
	}
	k.notes[key] = true
	fmt.Fprintf(k.log, "emuckpt: %s\n", msg)
}

// copyIn and copyOut move bytes between guest memory and the VMM; a bad
// guest pointer is EFAULT.
func (k *Kernel) copyIn(t *Task, va uint64, dst []byte) unix.Errno {
	return errnoOf(t.proc.as.CopyIn(va, dst))
}

func (k *Kernel) copyOut(t *Task, va uint64, src []byte) unix.Errno {
	return errnoOf(t.proc.as.CopyOut(va, src))
}

// errnoOf converts an error from guestmm or the host into a Linux errno.
func errnoOf(err error) unix.Errno {
	if err == nil {
		return 0
	}
	var e unix.Errno
	if errors.As(err, &e) {
		return e
	}
	return unix.EFAULT
}

func errnoName(e unix.Errno) string {
	if n := unix.ErrnoName(e); n != "" {
		return n
	}
	return fmt.Sprintf("errno %d", int(e))
}
