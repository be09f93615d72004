package kernel

import (
	"encoding/binary"

	"golang.org/x/sys/unix"
)

// Process attributes: identity, name, priority, umask, memory locks and
// what the system looks like (uname, sysinfo).
//
// Privilege. The guest runs with the host's uid and gid. As on Linux, what
// it may do follows from its capabilities, and it has all of them when
// that uid is 0 and none otherwise (no file capabilities, no user
// namespaces). Without them: setgroups is EPERM, lowering the nice value
// is EACCES (RLIMIT_NICE is 0, Linux's default), and locking more than
// RLIMIT_MEMLOCK is ENOMEM. With them, the calls succeed and change only
// the guest: a privileged setgroups sets the guest's own group list.

const (
	taskCommLen = 16 // TASK_COMM_LEN

	prSetPdeathsig = 1
	prGetPdeathsig = 2
	prGetDumpable  = 3
	prSetDumpable  = 4
	prSetName      = 15
	prGetName      = 16

	prioProcess = 0
	prioPgrp    = 1
	prioUser    = 2

	ngroupsMax = 65536 // NGROUPS_MAX

	mclCurrent = 1
	mclFuture  = 2
	mclOnfault = 4

	mlockOnfault = 1
)

// utsVersion is uname's version field as Linux's build writes it
// (UTS_VERSION): the build number, the preemption configuration and the
// build date.
// The uname fields a real kernel fills from its build and the host name.
const (
	utsRelease  = "6.1.0-emuckpt"
	utsVersion  = "#1 SMP PREEMPT_DYNAMIC Thu Jan  1 00:00:00 UTC 2026"
	utsNodename = "emuckpt"
)

// privileged reports whether the guest holds every capability: when the
// host user it runs as is root (see the note at the top of this file).
func (k *Kernel) privileged() bool {
	if k.privilege != nil {
		return *k.privilege
	}
	return unix.Geteuid() == 0
}

func (k *Kernel) sysUname(t *Task, a *args) (uint64, unix.Errno) {
	var u [6 * 65]byte
	for i, s := range []string{"Linux", utsNodename, utsRelease, utsVersion, "x86_64", "(none)"} {
		copy(u[i*65:], s)
	}
	return 0, k.copyOut(t, a[0], u[:])
}

func (k *Kernel) sysUmask(t *Task, a *args) (uint64, unix.Errno) {
	old := t.proc.umask
	t.proc.umask = uint32(a[0]) & 0o777
	return uint64(old), 0
}

// sysSysinfo fills struct sysinfo (112 bytes on x86-64) from the guest's
// view: its RAM, no swap, its tasks, no load.
// ramBytes is the guest's RAM and what of it is free, in bytes: its
// frames (sysinfo, /proc/meminfo).
func (k *Kernel) ramBytes() (total, free uint64) {
	if k.frames == nil {
		return 0, 0
	}
	return uint64(k.frames.Capacity()) * 4096, uint64(k.frames.Capacity()-k.frames.Used()) * 4096
}

func (k *Kernel) sysSysinfo(t *Task, a *args) (uint64, unix.Errno) {
	var b [112]byte
	le := binary.LittleEndian
	up, _ := k.clock.Now(unix.CLOCK_BOOTTIME)
	le.PutUint64(b[0:], uint64(up/1e9))
	total, free := k.ramBytes()
	le.PutUint64(b[32:], total) // totalram
	le.PutUint64(b[40:], free)  // freeram
	// sharedram, bufferram, totalswap, freeswap: 0.
	tasks, _ := k.taskCounts()
	le.PutUint16(b[80:], uint16(tasks)) // procs: every task, as Linux's nr_threads
	le.PutUint32(b[104:], 1)            // mem_unit
	return 0, k.copyOut(t, a[0], b[:])
}

// groups is the supplementary group list the guest sees.
func (k *Kernel) groups(t *Task) []uint32 {
	if t.proc.groups != nil {
		return t.proc.groups
	}
	host, _ := unix.Getgroups()
	g := make([]uint32, len(host))
	for i, id := range host {
		g[i] = uint32(id)
	}
	return g
}

func (k *Kernel) sysGetgroups(t *Task, a *args) (uint64, unix.Errno) {
	size := int32(a[0])
	g := k.groups(t)
	if size < 0 {
		return 0, unix.EINVAL
	}
	if size == 0 {
		return uint64(len(g)), 0
	}
	if int(size) < len(g) {
		return 0, unix.EINVAL
	}
	b := make([]byte, 4*len(g))
	for i, id := range g {
		binary.LittleEndian.PutUint32(b[4*i:], id)
	}
	return uint64(len(g)), k.copyOut(t, a[1], b)
}

func (k *Kernel) sysSetgroups(t *Task, a *args) (uint64, unix.Errno) {
	if !k.privileged() { // CAP_SETGID, checked first as in Linux
		return 0, unix.EPERM
	}
	size := uint32(a[0])
	if size > ngroupsMax {
		return 0, unix.EINVAL
	}
	b := make([]byte, 4*size)
	if e := k.copyIn(t, a[1], b); e != 0 {
		return 0, e
	}
	g := make([]uint32, size)
	for i := range g {
		g[i] = binary.LittleEndian.Uint32(b[4*i:])
	}
	t.proc.groups = g
	return 0, 0
}

func (k *Kernel) sysPrctl(t *Task, a *args) (uint64, unix.Errno) {
	switch a[0] {
	case prSetPdeathsig:
		if a[1] > numSignals {
			return 0, unix.EINVAL
		}
		t.pdeathsig = int(a[1])
		return 0, 0
	case prGetPdeathsig:
		var b [4]byte
		binary.LittleEndian.PutUint32(b[:], uint32(t.pdeathsig))
		return 0, k.copyOut(t, a[1], b[:])
	case prGetDumpable:
		return uint64(t.proc.dumpable), 0
	case prSetDumpable:
		if a[1] > 1 { // SUID_DUMP_DISABLE or SUID_DUMP_USER
			return 0, unix.EINVAL
		}
		t.proc.dumpable = int(a[1])
		return 0, 0
	case prSetName:
		// Up to 15 bytes, NUL or not (strncpy_from_user).
		var name []byte
		for i := uint64(0); i < taskCommLen-1; i++ {
			var c [1]byte
			if e := k.copyIn(t, a[1]+i, c[:]); e != 0 {
				return 0, e
			}
			if c[0] == 0 {
				break
			}
			name = append(name, c[0])
		}
		t.comm = string(name)
		return 0, 0
	case prGetName:
		var b [taskCommLen]byte
		copy(b[:], t.comm)
		return 0, k.copyOut(t, a[1], b[:])
	}
	return 0, unix.EINVAL
}

// priorityTarget checks the (which, who) of getpriority/setpriority: the
// only process, its process group (its pid) and its user (the host's uid)
// are the guest's task; anything else does not exist.
func (k *Kernel) priorityTarget(t *Task, which, who uint64) unix.Errno {
	w := int32(who)
	switch which {
	case prioProcess, prioPgrp:
		if w == 0 || int(w) == t.proc.pid {
			return 0
		}
	case prioUser:
		if w == 0 || uint32(w) == uint32(unix.Getuid()) {
			return 0
		}
	default:
		return unix.EINVAL
	}
	return unix.ESRCH
}

// sysGetpriority returns 20 - nice (1..40), as the Linux system call does;
// libc turns it back into the nice value.
func (k *Kernel) sysGetpriority(t *Task, a *args) (uint64, unix.Errno) {
	if e := k.priorityTarget(t, a[0], a[1]); e != 0 {
		return 0, e
	}
	return uint64(20 - t.nice), 0
}

func (k *Kernel) sysSetpriority(t *Task, a *args) (uint64, unix.Errno) {
	if e := k.priorityTarget(t, a[0], a[1]); e != 0 {
		return 0, e
	}
	nice := min(max(int(int32(a[2])), -20), 19)
	if nice < t.nice && !k.privileged() {
		// can_nice: 20 - nice must be within RLIMIT_NICE, which is 0.
		return 0, unix.EACCES
	}
	t.nice = nice
	return 0, 0
}
