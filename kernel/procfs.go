package kernel

import (
	"fmt"
	"sort"
	"strings"

	"github.com/emuckpt/emuckpt/guestmm"
	"golang.org/x/sys/unix"
)

// procView is what /proc shows of the kernel's processes (vfs.Processes).
// Its methods run on the kernel's thread, during a system call of the
// task they call "self".
type procView struct{ k *Kernel }

// self is the calling task: the one on the vCPU, or the first process's
// leader between turns.
func (v procView) self() *Task {
	if t := v.k.sched.cur; t != nil {
		return t
	}
	if p := v.k.first; p != nil {
		return p.leader()
	}
	return nil
}

func (v procView) Self() (pid, tid int) {
	t := v.self()
	if t == nil {
		return firstPID, firstPID
	}
	return t.proc.pid, t.tid
}

func (v procView) PIDs() []int {
	pids := make([]int, 0, len(v.k.procs))
	for pid := range v.k.procs {
		pids = append(pids, pid)
	}
	sort.Ints(pids)
	return pids
}

func (v procView) Threads(pid int) ([]int, bool) {
	p := v.k.procs[pid]
	if p == nil {
		return nil, false
	}
	tids := make([]int, 0, len(p.tasks))
	for _, t := range p.tasks {
		tids = append(tids, t.tid)
	}
	sort.Ints(tids)
	return tids, true
}

func (v procView) Exe(pid int) (string, bool) {
	p := v.k.procs[pid]
	if p == nil || p.exited {
		return "", false
	}
	return p.exe, true
}

// task finds /proc/PID (tid 0: the process's leader, as Linux shows it)
// or /proc/PID/task/TID.
func (v procView) task(pid, tid int) (*Process, *Task) {
	p := v.k.procs[pid]
	if p == nil {
		return nil, nil
	}
	if tid == 0 {
		return p, p.leader()
	}
	for _, t := range p.tasks {
		if t.tid == tid {
			return p, t
		}
	}
	return nil, nil
}

func (v procView) File(pid, tid int, name string) ([]byte, bool) {
	p, t := v.task(pid, tid)
	if p == nil {
		return nil, false
	}
	switch name {
	case "cmdline":
		if p.exited {
			return nil, true // a zombie's memory is gone
		}
		var b []byte
		for _, a := range p.args {
			b = append(b, a...)
			b = append(b, 0)
		}
		return b, true
	case "comm":
		return []byte(v.comm(p, t) + "\n"), true
	case "maps":
		if p.exited {
			return nil, true
		}
		return []byte(p.as.MapsText()), true
	case "smaps":
		if p.exited {
			return nil, true
		}
		return []byte(p.as.SmapsText()), true
	case "stat":
		return []byte(v.stat(p, t)), true
	case "status":
		return []byte(v.status(p, t)), true
	}
	return nil, false
}

// comm is the task's name; a process whose leader is gone shows its
// program's.
func (v procView) comm(p *Process, t *Task) string {
	if t != nil {
		return t.comm
	}
	return commOf(p.exe)
}

// state is the one-letter state of /proc/PID/stat and status: R for the
// task on the vCPU and those in the run queue, S for one blocked in a
// system call, Z for a zombie (or a thread-group leader that exited
// while its other threads run), as Linux prints them.
func (v procView) state(p *Process, t *Task) (byte, string) {
	switch {
	case p.exited || t == nil || t.state == taskExited || (t.tid == p.pid && t != p.leader()):
		return 'Z', "Z (zombie)"
	case t.state == taskBlocked:
		return 'S', "S (sleeping)"
	}
	return 'R', "R (running)"
}

// memory is the process's sizes in bytes: total mapped, resident, and
// the resident part that is anonymous; and the ranges of its program's
// text and data, the heap and the stack.
type procMemory struct {
	size, rss, anon, data, stack, exe, locked uint64
	startCode, endCode, startData, endData    uint64
	startBrk, brk, startStack                 uint64
}

func (v procView) memory(p *Process) procMemory {
	var m procMemory
	if p.exited || p.as == nil {
		return m
	}
	m.startBrk, m.brk = p.as.BrkRange()
	for _, vma := range p.as.VMAs() {
		m.size += vma.Len()
		var present uint64
		for _, pte := range p.as.PresentPages(vma.Start, vma.End) {
			if pte.Resident() {
				present += guestmm.PageSize
			}
		}
		m.rss += present
		if vma.Anonymous {
			m.anon += present
		}
		if vma.Locked {
			m.locked += vma.Len()
		}
		switch {
		case vma.Kind == guestmm.KindStack || vma.GrowsDown:
			m.stack += vma.Len()
			if m.startStack == 0 {
				m.startStack = vma.End
			}
		case vma.Prot&guestmm.ProtWrite != 0 && !vma.Shared:
			m.data += vma.Len()
		}
		if vma.Name == p.exe && vma.Kind == guestmm.KindFile {
			if vma.Prot&guestmm.ProtExec != 0 {
				m.exe += vma.Len()
				if m.startCode == 0 {
					m.startCode, m.endCode = vma.Start, vma.End
				}
			} else if vma.Prot&guestmm.ProtWrite != 0 && m.startData == 0 {
				m.startData, m.endData = vma.Start, vma.End
			}
		}
	}
	return m
}

// sigMasks is the hexadecimal of a signal set, as status prints it.
func sigMask(set uint64) string { return fmt.Sprintf("%016x", set) }

// ignoredCaught are the process's ignored and caught signals.
func ignoredCaught(p *Process) (ign, cgt uint64) {
	for sig := 1; sig <= numSignals; sig++ {
		switch h := p.actions[sig].Handler; {
		case h == sigIgn:
			ign |= sigBit(sig)
		case h > sigIgn:
			cgt |= sigBit(sig)
		}
	}
	return ign, cgt
}

// stat is /proc/PID/stat: Linux's 52 fields. Times are 0 (the kernel
// does not account CPU time per task), as are the fields Linux fills
// from what this kernel does not have (a terminal, a scheduler policy).
func (v procView) stat(p *Process, t *Task) string {
	st, _ := v.state(p, t)
	m := v.memory(p)
	var sigmask, pending uint64
	nice := 0
	if t != nil {
		sigmask, pending, nice = t.sigmask, t.pending, t.nice
	}
	ign, cgt := ignoredCaught(p)
	threads := len(p.tasks)
	id := p.pid // a thread's own stat starts with its tid
	if t != nil {
		id = t.tid
	}
	exitCode := 0
	if p.exited {
		exitCode = int(wstatus(p.status))
		threads = 1
	}
	f := []any{
		id, "(" + v.comm(p, t) + ")", string(st), p.ppid(), p.pgid, p.sid,
		0, -1, // tty_nr, tpgid
		0x400000,   // flags: PF_RANDOMIZE, as most processes show
		0, 0, 0, 0, // minflt cminflt majflt cmajflt
		0, 0, 0, 0, // utime stime cutime cstime
		20 + nice, nice, threads, 0, // priority nice num_threads itrealvalue
		0,                                                   // starttime
		m.size, m.rss / guestmm.PageSize, uint64(1<<64 - 1), // vsize rss rsslim
		m.startCode, m.endCode, m.startStack,
		0, 0, // kstkesp kstkeip
		pending, sigmask, ign, cgt, // signal blocked sigignore sigcatch (decimal)
		0, 0, 0, // wchan nswap cnswap
		p.exitSignal, 0, 0, 0, 0, 0, 0, // exit_signal processor rt_priority policy delayacct_blkio_ticks guest_time cguest_time
		m.startData, m.endData, m.startBrk, // start_data end_data start_brk
		0, 0, 0, 0, // arg_start arg_end env_start env_end
		exitCode,
	}
	parts := make([]string, len(f))
	for i, x := range f {
		parts[i] = fmt.Sprint(x)
	}
	return strings.Join(parts, " ") + "\n"
}

// status is /proc/PID/status: Linux's common lines, in its order.
func (v procView) status(p *Process, t *Task) string {
	_, state := v.state(p, t)
	m := v.memory(p)
	var b strings.Builder
	tid := p.pid
	var sigmask, pending uint64
	if t != nil {
		tid, sigmask, pending = t.tid, t.sigmask, t.pending
	}
	ign, cgt := ignoredCaught(p)
	threads := len(p.tasks)
	kb := func(n uint64) string { return fmt.Sprintf("%8d kB", n>>10) }
	fmt.Fprintf(&b, "Name:\t%s\n", v.comm(p, t))
	fmt.Fprintf(&b, "Umask:\t%04o\n", p.umask)
	fmt.Fprintf(&b, "State:\t%s\n", state)
	fmt.Fprintf(&b, "Tgid:\t%d\nNgid:\t0\nPid:\t%d\nPPid:\t%d\nTracerPid:\t0\n", p.pid, tid, p.ppid())
	uid, gid := unix.Getuid(), unix.Getgid() // as getuid and getgid say
	fmt.Fprintf(&b, "Uid:\t%d\t%d\t%d\t%d\nGid:\t%d\t%d\t%d\t%d\n", uid, uid, uid, uid, gid, gid, gid, gid)
	fmt.Fprintf(&b, "FDSize:\t64\n")
	fmt.Fprintf(&b, "NStgid:\t%d\nNSpid:\t%d\nNSpgid:\t%d\nNSsid:\t%d\n", p.pid, tid, p.pgid, p.sid)
	if !p.exited {
		fmt.Fprintf(&b, "VmPeak:\t%s\nVmSize:\t%s\nVmLck:\t%s\nVmPin:\t%s\nVmHWM:\t%s\nVmRSS:\t%s\n",
			kb(m.size), kb(m.size), kb(m.locked), kb(0), kb(m.rss), kb(m.rss))
		fmt.Fprintf(&b, "RssAnon:\t%s\nRssFile:\t%s\nRssShmem:\t%s\n", kb(m.anon), kb(m.rss-m.anon), kb(0))
		fmt.Fprintf(&b, "VmData:\t%s\nVmStk:\t%s\nVmExe:\t%s\nVmLib:\t%s\nVmPTE:\t%s\nVmSwap:\t%s\n",
			kb(m.data), kb(m.stack), kb(m.exe), kb(0), kb(0), kb(0))
	}
	fmt.Fprintf(&b, "Threads:\t%d\n", threads)
	fmt.Fprintf(&b, "SigQ:\t0/%d\n", maxTimers)
	fmt.Fprintf(&b, "SigPnd:\t%s\nShdPnd:\t%s\nSigBlk:\t%s\nSigIgn:\t%s\nSigCgt:\t%s\n",
		sigMask(pending), sigMask(0), sigMask(sigmask), sigMask(ign), sigMask(cgt))
	fmt.Fprintf(&b, "CapInh:\t%s\nCapPrm:\t%s\nCapEff:\t%s\nCapBnd:\t%s\nCapAmb:\t%s\n",
		sigMask(0), sigMask(0), sigMask(0), sigMask(0), sigMask(0))
	fmt.Fprintf(&b, "NoNewPrivs:\t0\nSeccomp:\t0\n")
	fmt.Fprintf(&b, "Cpus_allowed:\t1\nCpus_allowed_list:\t0\n")
	fmt.Fprintf(&b, "voluntary_ctxt_switches:\t0\nnonvoluntary_ctxt_switches:\t0\n")
	return b.String()
}
