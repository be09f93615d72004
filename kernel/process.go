package kernel

import (
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
	p := &Process{pid: firstPID, ppid: 1, as: as, fds: fds, cwd: cwd, exe: exe}
	p.tasks = []*Task{{tid: p.pid, proc: p, altstack: stackT{Flags: ssDisable}}}
	return p
}
