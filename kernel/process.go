package kernel

import (
	"path"

	"github.com/emuckpt/emuckpt/guestmm"
	"github.com/emuckpt/emuckpt/kernel/vfs"
)

// Process is a thread group: one address space, one descriptor table, one
// set of signal dispositions, and its tasks.
type Process struct {
	pid, ppid int
	as        *guestmm.AddressSpace
	fds       *vfs.FDTable
	cwd       string
	exe       string
	actions   [numSignals + 1]sigAction
	tasks     []*Task

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
	tid      int
	proc     *Process
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
	p := &Process{pid: firstPID, ppid: 1, as: as, fds: fds, cwd: cwd, exe: exe, umask: 0o022, dumpable: 1}
	p.tasks = []*Task{{tid: p.pid, proc: p, altstack: stackT{Flags: ssDisable}, comm: commOf(exe)}}
	return p
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
