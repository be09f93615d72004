package kernel

import (
	"path"

	"github.com/emuckpt/emuckpt/guestmm"
	"github.com/emuckpt/emuckpt/kernel/vfs"
	"github.com/emuckpt/emuckpt/vmm"
	"golang.org/x/sys/unix"
)

// Process is a thread group: one address space, one descriptor table, one
// set of signal dispositions, and its tasks.
type Process struct {
	pid int
	// pgid and sid are the process group and session (setpgid, setsid).
	pgid, sid int
	// parent is the process that wait4 reports this one to; nil for the
	// run's first process, whose parent is the (implicit) init.
	parent   *Process
	children []*Process
	as       *guestmm.AddressSpace
	// asUsers counts the processes using as: those made with CLONE_VM
	// (vfork, posix_spawn) use their parent's.
	asUsers *int
	fds     *vfs.FDTable
	// fdUsers counts the processes sharing fds (CLONE_FILES).
	fdUsers *int
	cwd     string
	exe     string
	actions [numSignals + 1]sigAction
	// tasks are the live threads, the thread-group leader first while it
	// lives.
	tasks []*Task
	// prog is the program the process runs (its file-backed text).
	prog *programBacking
	// args is the command line (/proc/PID/cmdline).
	args []string

	// exitSignal is sent to the parent at exit (clone's low byte;
	// SIGCHLD for fork).
	exitSignal int
	// exited is set once every thread has exited; status is then the
	// wait status, and the process is a zombie until reaped.
	exited bool
	status ExitStatus
	// execed is set once the process has called execve (setpgid on
	// it from the parent is then EACCES).
	execed bool
	// vforkParent is the task that vfork'ed this process and waits until
	// it execs or exits.
	vforkParent *Task

	umask    uint32 // umask(2), 0022 at start
	dumpable int    // prctl(PR_SET_DUMPABLE): 0 or 1, 1 at start
	// groups is the supplementary group list after a privileged
	// setgroups; nil means the host's list (see sysGetgroups).
	groups []uint32
	// lockFuture is mlockall(MCL_FUTURE): new mappings are locked
	// (populated unless lockOnFault, MCL_ONFAULT).
	lockFuture, lockOnFault bool
}

// Task is one thread of a process.
type Task struct {
	tid  int
	proc *Process
	// ctx is the user context: registers, FS/GS base, CR3 and, while the
	// task is not on the vCPU, its FPU state.
	ctx vmm.Context
	// state says whether the task can run, waits in a system call or
	// has exited (sched.go).
	state taskState
	// wait is what a blocked task waits for; resume makes its next turn
	// on the vCPU call the blocked system call again instead of entering
	// user mode.
	wait   *waitSpec
	resume bool
	// resuming is set while a resumed call runs (see deadline).
	resuming bool
	// restartNr is the number+1 of a restartable call that a signal
	// interrupted: a handler with SA_RESTART makes it again.
	restartNr uint64
	// vforkChild is the pid of the child a task waits for in vfork.
	vforkChild int
	// futex is the task's futex wait while it blocks in one.
	futex *futexWaiter
	// slice counts the exits of the task's current turn on the vCPU.
	slice int
	// cpu is the vCPU the task has its turn on (nil between turns); last
	// the vCPU it ran on last, which may still hold its context.
	cpu, last *cpu
	// affinity is the mask of vCPUs it may run on (0: all).
	affinity uint64
	// inCall is set while the task waits in a system call for another
	// vCPU's checkpoint (see stopAll).
	inCall bool

	clearTID uint64 // set_tid_address
	robust   uint64 // set_robust_list head
	robustSz uint64
	sigmask  uint64
	pending  uint64
	// pendingCode is the si_code of each pending signal.
	pendingCode [numSignals + 1]int
	// pendingTimer is the POSIX timer that queued each pending signal
	// (nil for other senders); see dequeueTimer.
	pendingTimer [numSignals + 1]*Timer
	altstack     stackT

	comm      string // prctl(PR_SET_NAME): at most 15 bytes
	pdeathsig int    // prctl(PR_SET_PDEATHSIG)
	nice      int    // setpriority(2): -20..19
	// pendingFD is the si_fd of each pending signal that an O_ASYNC file
	// sent with F_SETSIG (si_code POLL_IN); not kept in checkpoints.
	pendingFD [numSignals + 1]int
	// savedMask is the mask to go back to after a ppoll or pselect6 that
	// replaced it for its wait (Linux's saved_sigmask): on the way to user
	// mode, or in the frame of the handler of the signal that ended the
	// wait, when restoreMask is set.
	savedMask   uint64
	restoreMask bool
	// waitMask is set while a ppoll or pselect6 that replaced the mask
	// is blocked: savedMask is then the task's own mask.
	waitMask bool
}

// stackT is struct stack_t (sigaltstack).
type stackT struct {
	SP    uint64
	Flags int32
	_     int32
	Size  uint64
}

// firstPID is the program's pid: it runs as if init (pid 1) had started
// it, because Linux gives pid 1 special signal semantics.
const firstPID = 2

func newProcess(as *guestmm.AddressSpace, fds *vfs.FDTable, cwd, exe string) *Process {
	// The first process leads its own group in init's session, as a
	// shell's job does.
	p := &Process{pid: firstPID, pgid: firstPID, sid: 1, as: as, asUsers: newCount(),
		fds: fds, fdUsers: newCount(), cwd: cwd, exe: exe, umask: 0o022, dumpable: 1, exitSignal: int(unix.SIGCHLD)}
	t := &Task{tid: p.pid, proc: p, altstack: stackT{Flags: ssDisable}, comm: commOf(exe)}
	if as != nil {
		t.ctx.CR3 = as.PageTables().Root()
	}
	p.tasks = []*Task{t}
	return p
}

// ppid is the parent's pid: 1 (init) for the first process and orphans.
func (p *Process) ppid() int {
	if p.parent == nil {
		return 1
	}
	return p.parent.pid
}

// newCount is a share count of one user.
func newCount() *int {
	n := 1
	return &n
}

// leader is the process's thread-group leader, or its first live thread.
func (p *Process) leader() *Task {
	if len(p.tasks) == 0 {
		return nil
	}
	return p.tasks[0]
}

// commOf is the task name Linux's exec gives a program: the last path
// component, cut to TASK_COMM_LEN-1 bytes.
func commOf(exe string) string {
	name := path.Base(exe)
	if len(name) > taskCommLen-1 {
		name = name[:taskCommLen-1]
	}
	return name
}
