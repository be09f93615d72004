package kernel

import (
	"encoding/binary"
	"math"
	"slices"

	"github.com/emuckpt/emuckpt/guestmm"
	"github.com/emuckpt/emuckpt/vmm"
	"golang.org/x/sys/unix"
)

// Processes and threads: clone, fork, vfork, exit, wait4 and waitid.
// execve is in sys_exec.go, futexes in futex.go.

// clone(2) flags.
const (
	cloneVM            = 0x00000100
	cloneFS            = 0x00000200
	cloneFiles         = 0x00000400
	cloneSighand       = 0x00000800
	clonePidfd         = 0x00001000
	clonePtrace        = 0x00002000
	cloneVfork         = 0x00004000
	cloneParent        = 0x00008000
	cloneThread        = 0x00010000
	cloneNewNS         = 0x00020000
	cloneSysvsem       = 0x00040000
	cloneSettls        = 0x00080000
	cloneParentSettid  = 0x00100000
	cloneChildCleartid = 0x00200000
	cloneDetached      = 0x00400000
	cloneUntraced      = 0x00800000
	cloneChildSettid   = 0x01000000
	cloneNewCgroup     = 0x02000000
	cloneNewUTS        = 0x04000000
	cloneNewIPC        = 0x08000000
	cloneNewUser       = 0x10000000
	cloneNewPID        = 0x20000000
	cloneNewNet        = 0x40000000
	cloneIO            = 0x80000000

	cloneNamespaces = cloneNewNS | cloneNewCgroup | cloneNewUTS | cloneNewIPC | cloneNewUser | cloneNewPID | cloneNewNet
	// cloneKnown are the flags clone accepts (the exit signal aside).
	cloneKnown = cloneVM | cloneFS | cloneFiles | cloneSighand | clonePidfd | clonePtrace | cloneVfork |
		cloneParent | cloneThread | cloneNamespaces | cloneSysvsem | cloneSettls | cloneParentSettid |
		cloneChildCleartid | cloneDetached | cloneUntraced | cloneChildSettid | cloneIO
)

// wait4/waitid options.
const (
	wNohang    = 0x1
	wUntraced  = 0x2
	wExited    = 0x4
	wContinued = 0x8
	wNowait    = 0x01000000
	wNothread  = 0x20000000
	wAll       = 0x40000000
	wClone     = 0x80000000

	pAll  = 0
	pPID  = 1
	pPGID = 2

	cldExited = 1
	cldKilled = 2

	saNocldwait = 0x2
)

// cloneArgs are clone's arguments (clone3's struct clone_args).
type cloneArgs struct {
	flags      uint64
	exitSignal int
	stack      uint64 // the child's RSP; 0: the parent's
	parentTID  uint64
	childTID   uint64
	tls        uint64
}

func (k *Kernel) sysClone(t *Task, a *args) (uint64, unix.Errno) {
	// x86-64: clone(flags, newsp, parent_tid, child_tid, tls).
	return k.clone(t, cloneArgs{flags: a[0] &^ 0xff, exitSignal: int(a[0] & 0xff), stack: a[1], parentTID: a[2], childTID: a[3], tls: a[4]})
}

func (k *Kernel) sysFork(t *Task, _ *args) (uint64, unix.Errno) {
	return k.clone(t, cloneArgs{exitSignal: int(unix.SIGCHLD)})
}

func (k *Kernel) sysVfork(t *Task, _ *args) (uint64, unix.Errno) {
	return k.clone(t, cloneArgs{flags: cloneVM | cloneVfork, exitSignal: int(unix.SIGCHLD)})
}

// sysClone3 is clone3(args, size).
func (k *Kernel) sysClone3(t *Task, a *args) (uint64, unix.Errno) {
	const ver0, known = 64, 88 // CLONE_ARGS_SIZE_VER0, through set_tid_size (VER1); cgroup (VER2) is 88+8
	size := a[1]
	if size < ver0 || size > guestmm.PageSize {
		return 0, unix.EINVAL
	}
	b := make([]byte, size)
	if e := k.copyIn(t, a[0], b); e != 0 {
		return 0, e
	}
	for _, x := range b[min(size, known+8):] {
		if x != 0 {
			return 0, unix.E2BIG
		}
	}
	b = append(b, make([]byte, 96)...)
	le := binary.LittleEndian
	flags, exitSig := le.Uint64(b[0:]), le.Uint64(b[32:])
	stack, stackSize := le.Uint64(b[40:]), le.Uint64(b[48:])
	if flags&0xff != 0 || exitSig > numSignals || le.Uint64(b[64:]) != 0 || le.Uint64(b[72:]) != 0 {
		// The exit signal goes in its own field; set_tid needs
		// CAP_CHECKPOINT_RESTORE in the pid namespace (not given).
		if le.Uint64(b[64:]) != 0 || le.Uint64(b[72:]) != 0 {
			k.noteOnce("clone3-settid", "clone3 with set_tid is not supported: EINVAL")
		}
		return 0, unix.EINVAL
	}
	if flags&(1<<32) != 0 || le.Uint64(b[80:]) != 0 { // CLONE_INTO_CGROUP
		k.noteOnce("clone3-cgroup", "clone3 with CLONE_INTO_CGROUP is not supported: EINVAL")
		return 0, unix.EINVAL
	}
	if flags>>32 != 0 {
		return 0, unix.EINVAL
	}
	if (stack == 0) != (stackSize == 0) {
		return 0, unix.EINVAL
	}
	c := cloneArgs{flags: flags, exitSignal: int(exitSig), childTID: le.Uint64(b[16:]), parentTID: le.Uint64(b[24:]), tls: le.Uint64(b[56:])}
	if stack != 0 {
		c.stack = stack + stackSize
	}
	return k.clone(t, c)
}

// clone makes a new task: a thread of t's process (CLONE_THREAD) or a
// new process, sharing or copying what the flags say.
func (k *Kernel) clone(t *Task, c cloneArgs) (uint64, unix.Errno) {
	f := c.flags
	switch {
	case f&^cloneKnown != 0, c.exitSignal > numSignals:
		return 0, unix.EINVAL
	case f&cloneThread != 0 && f&cloneSighand == 0, f&cloneSighand != 0 && f&cloneVM == 0:
		return 0, unix.EINVAL
	case f&cloneFS != 0 && f&cloneNewNS != 0:
		return 0, unix.EINVAL
	case f&cloneNamespaces != 0:
		if !k.privileged() {
			return 0, unix.EPERM
		}
		k.noteOnce("clone-ns", "clone with new namespaces is not supported: EINVAL")
		return 0, unix.EINVAL
	case f&clonePidfd != 0:
		k.noteOnce("clone-pidfd", "clone with CLONE_PIDFD is not supported: EINVAL")
		return 0, unix.EINVAL
	case f&cloneThread != 0 && c.exitSignal != 0:
		c.exitSignal = 0 // ignored for threads, as Linux does
	}
	if k.liveTasks() >= maxTasks {
		return 0, unix.EAGAIN
	}
	parent := t.proc
	regs := t.ctx.Regs
	fpu, err := t.cpu.vcpu.FPUState()
	if err != nil {
		return 0, unix.ENOMEM
	}
	var child *Task
	if f&cloneThread != 0 {
		child = k.newTask(parent)
	} else {
		p, e := k.forkProcess(t, f, c.exitSignal)
		if e != 0 {
			return 0, e
		}
		child = p.leader()
	}
	cp := child.proc
	child.ctx = regsContext(regs, t.ctx.FSBase, t.ctx.GSBase, cp.as.PageTables().Root(), fpu)
	child.ctx.Regs.RAX = 0
	if c.stack != 0 {
		child.ctx.Regs.RSP = c.stack
	}
	if f&cloneSettls != 0 {
		child.ctx.FSBase = c.tls
	}
	child.sigmask = t.sigmask
	child.affinity = t.affinity
	child.comm, child.nice = t.comm, t.nice
	child.altstack = t.altstack
	if f&(cloneVM|cloneVfork) == cloneVM {
		child.altstack = stackT{Flags: ssDisable} // a new stack for a thread
	}
	var tid [4]byte
	binary.LittleEndian.PutUint32(tid[:], uint32(child.tid))
	if f&cloneParentSettid != 0 {
		if e := k.copyOut(t, c.parentTID, tid[:]); e != 0 {
			k.dropNewTask(child)
			return 0, e
		}
	}
	if f&cloneChildSettid != 0 {
		if e := errnoOf(cp.as.CopyOut(c.childTID, tid[:])); e != 0 {
			k.dropNewTask(child)
			return 0, e
		}
	}
	if f&cloneChildCleartid != 0 {
		child.clearTID = c.childTID
	}
	k.enqueue(child)
	if f&cloneVfork != 0 {
		// The parent waits, with no signal able to end the wait, until
		// the child execs or exits; then clone returns the child's pid.
		cp.vforkParent = t
		return k.vforkWait(t, cp)
	}
	return uint64(child.tid), 0
}

// vforkWait blocks vfork's parent t, with no signal able to end the wait,
// until child cp execs or exits; then the call returns the child's pid.
func (k *Kernel) vforkWait(t *Task, cp *Process) (uint64, unix.Errno) {
	t.vforkChild = cp.pid
	pid := uint64(cp.pid)
	return k.block(t, waitSpec{deadline: math.MaxInt64, uninterruptible: true,
		ready: func() bool { return cp.vforkParent != t },
		finish: func() (uint64, unix.Errno) {
			t.vforkChild = 0
			return pid, 0
		}})
}

// maxTasks bounds the tasks of a run (RLIMIT_NPROC's value here).
const maxTasks = 4096

// liveTasks counts the tasks that have not exited.
func (k *Kernel) liveTasks() int { return len(k.sched.all) }

// regsContext is a user context from its parts.
func regsContext(r vmm.Regs, fs, gs, cr3 uint64, fpu []byte) vmm.Context {
	return vmm.Context{Regs: r, FSBase: fs, GSBase: gs, CR3: cr3, FPU: slices.Clone(fpu)}
}

// forkProcess makes the child process of clone without CLONE_THREAD, with
// its first task.
func (k *Kernel) forkProcess(t *Task, f uint64, exitSignal int) (*Process, unix.Errno) {
	parent := t.proc
	as, asUsers := parent.as, parent.asUsers
	if f&cloneVM != 0 {
		*asUsers++
	} else {
		var err error
		if as, err = parent.as.Fork(); err != nil {
			return nil, errnoOf(err)
		}
		// The trampoline lies in the user half, outside any VMA.
		if err := vmm.MapKernel(as.PageTables()); err != nil {
			as.Destroy()
			return nil, unix.ENOMEM
		}
		asUsers = newCount()
	}
	fds, fdUsers := parent.fds, parent.fdUsers
	if f&cloneFiles != 0 {
		*fdUsers++
	} else {
		fds, fdUsers = parent.fds.Clone(), newCount()
	}
	cp := &Process{pgid: parent.pgid, sid: parent.sid, parent: parent,
		as: as, asUsers: asUsers, fds: fds, fdUsers: fdUsers, cwd: parent.cwd, exe: parent.exe,
		actions: parent.actions, prog: parent.prog, args: parent.args, exitSignal: exitSignal,
		umask: parent.umask, dumpable: parent.dumpable, groups: slices.Clone(parent.groups),
		lockFuture: parent.lockFuture, lockOnFault: parent.lockOnFault}
	if f&cloneParent != 0 && parent.parent != nil {
		cp.parent = parent.parent
		cp.exitSignal = parent.exitSignal
	}
	child := k.newTask(cp)
	cp.pid = child.tid
	if cp.parent != nil {
		cp.parent.children = append(cp.parent.children, cp)
	}
	k.procs[cp.pid] = cp
	return cp, 0
}

// dropNewTask undoes a clone that failed after the task was made.
func (k *Kernel) dropNewTask(child *Task) {
	p := child.proc
	if len(p.tasks) == 1 && p.leader() == child && p != k.first {
		k.exitProcess(p, ExitStatus{Signal: int(unix.SIGKILL)})
		k.reap(p)
		return
	}
	k.removeTask(child)
}

func (k *Kernel) sysExit(t *Task, a *args) (uint64, unix.Errno) {
	p := t.proc
	if len(p.tasks) == 1 {
		return k.sysExitGroup(t, a)
	}
	k.clearChildTID(t)
	k.exitRobustList(t)
	k.removeTask(t)
	return 0, 0
}

func (k *Kernel) sysExitGroup(t *Task, a *args) (uint64, unix.Errno) {
	k.pendingExit = &errExit{ExitStatus{Code: int(a[0] & 0xff)}}
	return 0, 0
}

// clearChildTID is CLONE_CHILD_CLEARTID at a thread's end: zero the tid
// word and wake one futex waiter there, if another task shares the
// address space.
func (k *Kernel) clearChildTID(t *Task) {
	if t.clearTID == 0 {
		return
	}
	va := t.clearTID
	t.clearTID = 0
	if len(t.proc.tasks) < 2 && *t.proc.asUsers < 2 {
		return
	}
	var zero [4]byte
	if t.proc.as.CopyOut(va, zero[:]) == nil {
		k.futexWake(t, va, 1, futexBitsetAll)
	}
}

// exitProcess ends every task of p with status st: p becomes a zombie for
// its parent to reap (or is reaped at once), its children go to init, and
// the run ends when p is the first process.
func (k *Kernel) exitProcess(p *Process, st ExitStatus) {
	if p.exited {
		return
	}
	k.traceExitProcess(p, st) // --trace-json (traceevents.go)
	leader := p.leader()
	for _, t := range p.tasks {
		k.stopTask(t) // out of user mode before its memory goes
	}
	for _, t := range slices.Clone(p.tasks) {
		k.clearChildTID(t)
		k.exitRobustList(t)
		k.removeTask(t)
	}
	// A zombie keeps its leader, exited, for what /proc shows of it.
	p.tasks = nil
	if leader != nil {
		p.tasks = []*Task{leader}
	}
	p.exited, p.status = true, st
	if *p.fdUsers--; *p.fdUsers == 0 {
		p.fds.CloseAll()
	}
	k.dropMM(p)
	k.dropTimers(p, true)
	p.vforkParent = nil
	for _, c := range p.children {
		c.parent = nil
		if c.exited {
			delete(k.procs, c.pid) // init reaps it
		}
	}
	p.children = nil
	if p == k.first {
		k.end = &st
		return
	}
	parent := p.parent
	if parent == nil || parent.exited {
		k.reap(p)
		return
	}
	act := parent.actions[unix.SIGCHLD]
	if p.exitSignal == int(unix.SIGCHLD) && (act.Handler == sigIgn || act.Flags&saNocldwait != 0) {
		k.reap(p) // no zombie: the parent said it will not wait
		return
	}
	if p.exitSignal != 0 {
		code := cldExited
		if st.Signal != 0 {
			code = cldKilled
		}
		k.signalProcess(parent, p.exitSignal, code, nil)
	}
}

// dropMM gives up p's use of its address space: the last user destroys
// it, and then no task may run before KVM forgets its page tables.
func (k *Kernel) dropMM(p *Process) {
	if *p.asUsers--; *p.asUsers == 0 {
		p.as.Destroy()
		k.zapPending = true
	}
}

// reap removes a zombie: from its parent's children and from the pids.
func (k *Kernel) reap(p *Process) {
	if par := p.parent; par != nil {
		par.children = slices.DeleteFunc(par.children, func(c *Process) bool { return c == p })
	}
	delete(k.procs, p.pid)
}

// waitMatch says whether child c is one a wait for sel (wait4's pid
// argument, already decoded for waitid) and options covers.
func waitMatch(t *Task, c *Process, idtype int, id int, opts uint64) bool {
	switch idtype {
	case pPID:
		if c.pid != id {
			return false
		}
	case pPGID:
		if c.pgid != id {
			return false
		}
	}
	if opts&wAll != 0 {
		return true
	}
	// __WCLONE selects the children whose exit signal is not SIGCHLD.
	return (c.exitSignal != int(unix.SIGCHLD)) == (opts&wClone != 0)
}

// waitChildren finds a child the wait is for: one that has exited (a
// zombie), or reports that none matches at all (ECHILD).
func (k *Kernel) waitChildren(t *Task, idtype, id int, opts uint64) (*Process, unix.Errno) {
	any := false
	for _, c := range t.proc.children {
		if !waitMatch(t, c, idtype, id, opts) {
			continue
		}
		any = true
		if c.exited {
			return c, 0
		}
	}
	if !any {
		return nil, unix.ECHILD
	}
	return nil, 0
}

// sysWait4 is wait4(pid, wstatus, options, rusage).
func (k *Kernel) sysWait4(t *Task, a *args) (uint64, unix.Errno) {
	pid, opts := int(int32(a[0])), a[2]
	if opts&^(wNohang|wUntraced|wContinued|wNothread|wAll|wClone) != 0 {
		return 0, unix.EINVAL
	}
	idtype, id := pAll, 0
	switch {
	case pid > 0:
		idtype, id = pPID, pid
	case pid == 0:
		idtype, id = pPGID, t.proc.pgid
	case pid < -1:
		if pid == math.MinInt32 {
			return 0, unix.ESRCH
		}
		idtype, id = pPGID, -pid
	}
	c, e := k.waitChildren(t, idtype, id, opts)
	switch {
	case e != 0:
		return 0, e
	case c == nil && opts&wNohang != 0:
		return 0, 0
	case c == nil:
		return k.block(t, waitSpec{deadline: math.MaxInt64, restartable: true, ready: func() bool {
			c, e := k.waitChildren(t, idtype, id, opts)
			return c != nil || e != 0
		}})
	}
	if a[1] != 0 {
		var b [4]byte
		binary.LittleEndian.PutUint32(b[:], wstatus(c.status))
		if e := k.copyOut(t, a[1], b[:]); e != 0 {
			return 0, e
		}
	}
	if a[3] != 0 {
		if e := k.copyOut(t, a[3], make([]byte, rusageSize)); e != 0 {
			return 0, e
		}
	}
	k.reap(c)
	return uint64(c.pid), 0
}

// rusageSize is sizeof(struct rusage).
const rusageSize = 144

// wstatus is the status word wait4 stores.
func wstatus(st ExitStatus) uint32 {
	if st.Signal != 0 {
		return uint32(st.Signal) & 0x7f
	}
	return uint32(st.Code&0xff) << 8
}

// sysWaitid is waitid(idtype, id, infop, options, rusage).
func (k *Kernel) sysWaitid(t *Task, a *args) (uint64, unix.Errno) {
	idtype, id, opts := int(a[0]), int(int32(a[1])), a[3]
	if opts&^(wNohang|wUntraced|wExited|wContinued|wNowait|wNothread|wAll|wClone) != 0 ||
		opts&(wExited|wUntraced|wContinued) == 0 {
		return 0, unix.EINVAL
	}
	switch idtype {
	case pAll:
	case pPID, pPGID:
		if id <= 0 && idtype == pPID {
			return 0, unix.EINVAL
		}
		if idtype == pPGID && id == 0 {
			id = t.proc.pgid
		}
	default:
		return 0, unix.EINVAL
	}
	var c *Process
	if opts&wExited != 0 {
		var e unix.Errno
		if c, e = k.waitChildren(t, idtype, id, opts); e != 0 {
			return 0, e
		}
	} else if _, e := k.waitChildren(t, idtype, id, opts); e != 0 {
		return 0, e
	}
	if c == nil && opts&wNohang == 0 {
		return k.block(t, waitSpec{deadline: math.MaxInt64, restartable: true, ready: func() bool {
			c, e := k.waitChildren(t, idtype, id, opts)
			return e != 0 || c != nil && opts&wExited != 0
		}})
	}
	var info [128]byte
	if c != nil {
		le := binary.LittleEndian
		le.PutUint32(info[0:], uint32(unix.SIGCHLD))
		code, status := cldExited, c.status.Code
		if c.status.Signal != 0 {
			code, status = cldKilled, c.status.Signal
		}
		le.PutUint32(info[8:], uint32(code))
		le.PutUint32(info[16:], uint32(c.pid))
		le.PutUint32(info[20:], uint32(unix.Getuid()))
		le.PutUint32(info[24:], uint32(status))
	}
	if a[2] != 0 {
		if e := k.copyOut(t, a[2], info[:]); e != 0 {
			return 0, e
		}
	}
	if a[4] != 0 {
		if e := k.copyOut(t, a[4], make([]byte, rusageSize)); e != 0 {
			return 0, e
		}
	}
	if c != nil && opts&wNowait == 0 {
		k.reap(c)
	}
	return 0, 0
}

// signalProcess sends sig to process p: to prefer (the sender, when it
// is one of p's threads) unless it blocks the signal, else to the first
// thread that does not, else to the leader, where it waits until
// unblocked (Linux's complete_signal, with one pending set per thread).
func (k *Kernel) signalProcess(p *Process, sig, code int, prefer *Task) {
	if p.exited || len(p.tasks) == 0 {
		return
	}
	target := p.leader()
	if prefer != nil && prefer.proc == p && prefer.sigmask&sigBit(sig) == 0 {
		target = prefer
	} else {
		for _, t := range p.tasks {
			if t.sigmask&sigBit(sig) == 0 {
				target = t
				break
			}
		}
	}
	k.sendSignal(target, sig, code)
	if sig == int(unix.SIGKILL) {
		k.pendingKill(p)
	}
}

// pendingKill makes every thread of p see a pending SIGKILL.
func (k *Kernel) pendingKill(p *Process) {
	for _, t := range p.tasks {
		t.pending |= sigBit(int(unix.SIGKILL))
		k.interrupt(t)
	}
}

// processGroup lists the live processes of group pgid.
func (k *Kernel) processGroup(pgid int) []*Process {
	var ps []*Process
	for _, p := range k.liveProcesses() {
		if p.pgid == pgid {
			ps = append(ps, p)
		}
	}
	return ps
}

func (k *Kernel) sysSetpgid(t *Task, a *args) (uint64, unix.Errno) {
	pid, pgid := int(int32(a[0])), int(int32(a[1]))
	if pgid < 0 {
		return 0, unix.EINVAL
	}
	p := t.proc
	if pid != 0 && pid != p.pid {
		p = k.procs[pid]
		if p == nil || p.exited || p.parent != t.proc {
			return 0, unix.ESRCH
		}
		if p.sid != t.proc.sid {
			return 0, unix.EPERM
		}
		if p.exe != t.proc.exe && p.execed {
			return 0, unix.EACCES // the child has already exec'ed
		}
	}
	if p.sid == p.pid {
		return 0, unix.EPERM // a session leader
	}
	if pgid == 0 {
		pgid = p.pid
	}
	if pgid != p.pid {
		found := false
		for _, q := range k.processGroup(pgid) {
			if q.sid == p.sid {
				found = true
			}
		}
		if !found {
			return 0, unix.EPERM
		}
	}
	p.pgid = pgid
	return 0, 0
}

func (k *Kernel) sysGetpgid(t *Task, a *args) (uint64, unix.Errno) {
	p, e := k.processArg(t, int(int32(a[0])))
	if e != 0 {
		return 0, e
	}
	return uint64(p.pgid), 0
}

func (k *Kernel) sysGetpgrp(t *Task, _ *args) (uint64, unix.Errno) { return uint64(t.proc.pgid), 0 }

func (k *Kernel) sysGetsid(t *Task, a *args) (uint64, unix.Errno) {
	p, e := k.processArg(t, int(int32(a[0])))
	if e != 0 {
		return 0, e
	}
	return uint64(p.sid), 0
}

func (k *Kernel) sysSetsid(t *Task, _ *args) (uint64, unix.Errno) {
	p := t.proc
	if len(k.processGroup(p.pid)) > 0 {
		return 0, unix.EPERM // a group leader already, or the id is a group's
	}
	p.sid, p.pgid = p.pid, p.pid
	return uint64(p.pid), 0
}

// processArg is the process a pid argument names (0: the caller).
func (k *Kernel) processArg(t *Task, pid int) (*Process, unix.Errno) {
	if pid == 0 {
		return t.proc, 0
	}
	if pid < 0 {
		return nil, unix.EINVAL
	}
	p := k.procs[pid]
	if p == nil || p.exited {
		return nil, unix.ESRCH
	}
	return p, 0
}
