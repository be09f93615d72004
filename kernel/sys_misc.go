package kernel

import (
	"encoding/binary"
	"io"
	"time"

	"github.com/emuckpt/emuckpt/guestmm"
	"golang.org/x/sys/unix"
)

const (
	archSetGS    = 0x1001
	archSetFS    = 0x1002
	archGetFS    = 0x1003
	archGetGS    = 0x1004
	archGetCPUID = 0x1011
	archSetCPUID = 0x1012

	robustListHeadSize = 24
)

func (k *Kernel) sysGetpid(t *Task, _ *args) (uint64, unix.Errno)  { return uint64(t.proc.pid), 0 }
func (k *Kernel) sysGettid(t *Task, _ *args) (uint64, unix.Errno)  { return uint64(t.tid), 0 }
func (k *Kernel) sysGetppid(t *Task, _ *args) (uint64, unix.Errno) { return uint64(t.proc.ppid()), 0 }
func (k *Kernel) sysGetuid(*Task, *args) (uint64, unix.Errno)      { return uint64(unix.Getuid()), 0 }
func (k *Kernel) sysGeteuid(*Task, *args) (uint64, unix.Errno)     { return uint64(unix.Geteuid()), 0 }
func (k *Kernel) sysGetgid(*Task, *args) (uint64, unix.Errno)      { return uint64(unix.Getgid()), 0 }
func (k *Kernel) sysGetegid(*Task, *args) (uint64, unix.Errno)     { return uint64(unix.Getegid()), 0 }

// sysSchedYield ends the caller's turn on the vCPU if another task waits
// for it.
func (k *Kernel) sysSchedYield(t *Task, _ *args) (uint64, unix.Errno) {
	t.slice = turnExits
	return 0, 0
}

func (k *Kernel) sysKillSyscall(t *Task, a *args) (uint64, unix.Errno) {
	return k.sysKill(t, int(int32(a[0])), int(int32(a[1])), siUser)
}

func (k *Kernel) sysTkill(t *Task, a *args) (uint64, unix.Errno) {
	tid := int(int32(a[0]))
	if tid <= 0 {
		return 0, unix.EINVAL
	}
	return k.signalThread(k.taskByTID(tid), int(int32(a[1])))
}

func (k *Kernel) sysTgkill(t *Task, a *args) (uint64, unix.Errno) {
	tgid, tid := int(int32(a[0])), int(int32(a[1]))
	if tgid <= 0 || tid <= 0 {
		return 0, unix.EINVAL
	}
	target := k.taskByTID(tid)
	if target != nil && target.proc.pid != tgid {
		target = nil
	}
	return k.signalThread(target, int(int32(a[2])))
}

// signalThread is tkill and tgkill: a signal for one thread.
func (k *Kernel) signalThread(target *Task, sig int) (uint64, unix.Errno) {
	if sig < 0 || sig > numSignals {
		return 0, unix.EINVAL
	}
	if target == nil {
		return 0, unix.ESRCH
	}
	if sig != 0 {
		k.sendSignal(target, sig, siTkill)
		if sig == int(unix.SIGKILL) {
			k.pendingKill(target.proc)
		}
	}
	return 0, 0
}

func (k *Kernel) sysArchPrctl(t *Task, a *args) (uint64, unix.Errno) {
	switch a[0] {
	case archSetFS:
		if a[1] >= guestmm.TaskSize {
			return 0, unix.EPERM
		}
		t.cpu.vcpu.SetFSBase(a[1])
		return 0, 0
	case archGetFS:
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], t.ctx.FSBase)
		return 0, k.copyOut(t, a[1], b[:])
	case archSetGS:
		if a[1] >= guestmm.TaskSize {
			return 0, unix.EPERM
		}
		t.cpu.vcpu.SetGSBase(a[1])
		return 0, 0
	case archGetGS:
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], t.ctx.GSBase)
		return 0, k.copyOut(t, a[1], b[:])
	case archGetCPUID:
		return 1, 0
	case archSetCPUID:
		// Linux without CPUID faulting, which emuckpt does not offer.
		k.noteOnce("arch_prctl-cpuid", "arch_prctl ARCH_SET_CPUID: no CPUID faulting, returning ENODEV")
		return 0, unix.ENODEV
	}
	if name, ok := archPrctlUnimplemented[a[0]]; ok {
		k.noteOnce("arch_prctl-"+name, "arch_prctl "+name+" is not implemented: returning EINVAL")
	}
	return 0, unix.EINVAL
}

// archPrctlUnimplemented are the arch_prctl codes of Linux that emuckpt
// lacks: EINVAL, as a kernel without the feature says, and a -v note.
var archPrctlUnimplemented = map[uint64]string{
	0x1021: "ARCH_GET_XCOMP_SUPP", 0x1022: "ARCH_GET_XCOMP_PERM", 0x1023: "ARCH_REQ_XCOMP_PERM",
	0x1024: "ARCH_GET_XCOMP_GUEST_PERM", 0x1025: "ARCH_REQ_XCOMP_GUEST_PERM", 0x1026: "ARCH_XCOMP_TILECFG",
	0x2001: "ARCH_MAP_VDSO_X32", 0x2002: "ARCH_MAP_VDSO_32", 0x2003: "ARCH_MAP_VDSO_64",
	0x4001: "ARCH_GET_UNTAG_MASK", 0x4002: "ARCH_ENABLE_TAGGED_ADDR", 0x4003: "ARCH_GET_MAX_TAG_BITS",
	0x4004: "ARCH_FORCE_TAGGED_SVA",
	0x5001: "ARCH_SHSTK_ENABLE", 0x5002: "ARCH_SHSTK_DISABLE", 0x5003: "ARCH_SHSTK_LOCK",
	0x5004: "ARCH_SHSTK_UNLOCK", 0x5005: "ARCH_SHSTK_STATUS",
}

func (k *Kernel) sysSetTidAddress(t *Task, a *args) (uint64, unix.Errno) {
	t.clearTID = a[0]
	return uint64(t.tid), 0
}

func (k *Kernel) sysSetRobustList(t *Task, a *args) (uint64, unix.Errno) {
	if a[1] != robustListHeadSize {
		return 0, unix.EINVAL
	}
	t.robust, t.robustSz = a[0], a[1]
	return 0, 0
}

// rlimits are the resource limits the guest sees (RLIM_INFINITY = ^0).
var rlimits = map[uint64][2]uint64{
	unix.RLIMIT_CPU:     {^uint64(0), ^uint64(0)},
	unix.RLIMIT_FSIZE:   {^uint64(0), ^uint64(0)},
	unix.RLIMIT_DATA:    {^uint64(0), ^uint64(0)},
	unix.RLIMIT_STACK:   {guestmm.DefaultStackMax, ^uint64(0)},
	unix.RLIMIT_CORE:    {0, ^uint64(0)},
	unix.RLIMIT_AS:      {^uint64(0), ^uint64(0)},
	unix.RLIMIT_NPROC:   {4096, 4096},
	unix.RLIMIT_MEMLOCK: {8 << 20, 8 << 20},
	unix.RLIMIT_NICE:    {0, 0},
}

func (k *Kernel) rlimit(t *Task, res uint64) ([2]uint64, bool) {
	if res == unix.RLIMIT_NOFILE {
		return [2]uint64{uint64(t.proc.fds.Limit()), 4096}, true
	}
	if res >= 16 { // RLIM_NLIMITS
		return [2]uint64{}, false
	}
	if l, ok := rlimits[res]; ok {
		return l, true
	}
	return [2]uint64{^uint64(0), ^uint64(0)}, true
}

func (k *Kernel) sysGetrlimit(t *Task, a *args) (uint64, unix.Errno) {
	l, ok := k.rlimit(t, a[0])
	if !ok {
		return 0, unix.EINVAL
	}
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:], l[0])
	binary.LittleEndian.PutUint64(b[8:], l[1])
	return 0, k.copyOut(t, a[1], b[:])
}

func (k *Kernel) sysPrlimit64(t *Task, a *args) (uint64, unix.Errno) {
	if pid := int32(a[0]); pid != 0 && pid != int32(t.proc.pid) {
		return 0, unix.ESRCH
	}
	old, ok := k.rlimit(t, a[1])
	if !ok {
		return 0, unix.EINVAL
	}
	if a[2] != 0 {
		var b [16]byte
		if e := k.copyIn(t, a[2], b[:]); e != 0 {
			return 0, e
		}
		cur, max := binary.LittleEndian.Uint64(b[:]), binary.LittleEndian.Uint64(b[8:])
		if cur > max {
			return 0, unix.EINVAL
		}
		if max > old[1] {
			return 0, unix.EPERM
		}
		switch {
		case a[1] == unix.RLIMIT_NOFILE:
			if e := t.proc.fds.SetLimit(int(min(cur, 1<<20))); e != 0 {
				return 0, e
			}
		case cur != old[0] || max != old[1]:
			// Only the descriptor limit can be changed; accepting
			// another would be a success that changed nothing.
			k.noteOnce("prlimit", "prlimit64/setrlimit of a limit other than RLIMIT_NOFILE is not implemented: returning ENOSYS")
			return 0, unix.ENOSYS
		}
	}
	if a[3] != 0 {
		var b [16]byte
		binary.LittleEndian.PutUint64(b[:], old[0])
		binary.LittleEndian.PutUint64(b[8:], old[1])
		return 0, k.copyOut(t, a[3], b[:])
	}
	return 0, 0
}

func (k *Kernel) sysGetrandom(t *Task, a *args) (uint64, unix.Errno) {
	if a[2]&^(unix.GRND_NONBLOCK|unix.GRND_RANDOM|0x4 /* GRND_INSECURE */) != 0 {
		return 0, unix.EINVAL
	}
	// Since Linux 5.18 getrandom fills the whole buffer (up to
	// MAX_RW_COUNT) unless a signal is pending.
	return k.readTo(t, a[0], a[1], true, func(p []byte) (int, unix.Errno) {
		if _, err := io.ReadFull(k.rand, p); err != nil {
			return 0, unix.EIO
		}
		return len(p), 0
	})
}

// Time.

func putTimespec(b []byte, ns int64) {
	binary.LittleEndian.PutUint64(b, uint64(ns/1e9))
	binary.LittleEndian.PutUint64(b[8:], uint64(ns%1e9))
}

func (k *Kernel) sysClockGettime(t *Task, a *args) (uint64, unix.Errno) {
	ns, ok := k.clockNow(int32(a[0]))
	if !ok {
		return 0, unix.EINVAL
	}
	var b [16]byte
	putTimespec(b[:], ns)
	return 0, k.copyOut(t, a[1], b[:])
}

func (k *Kernel) sysClockGetres(t *Task, a *args) (uint64, unix.Errno) {
	if _, ok := k.clockNow(int32(a[0])); !ok {
		return 0, unix.EINVAL
	}
	if a[1] == 0 {
		return 0, 0
	}
	var b [16]byte
	putTimespec(b[:], 1)
	return 0, k.copyOut(t, a[1], b[:])
}

func (k *Kernel) sysGettimeofday(t *Task, a *args) (uint64, unix.Errno) {
	if a[0] != 0 {
		ns, _ := k.clock.Now(unix.CLOCK_REALTIME)
		var b [16]byte
		binary.LittleEndian.PutUint64(b[:], uint64(ns/1e9))
		binary.LittleEndian.PutUint64(b[8:], uint64(ns%1e9/1e3))
		if e := k.copyOut(t, a[0], b[:]); e != 0 {
			return 0, e
		}
	}
	if a[1] != 0 {
		return 0, k.copyOut(t, a[1], make([]byte, 8))
	}
	return 0, 0
}

func (k *Kernel) sysTime(t *Task, a *args) (uint64, unix.Errno) {
	ns, _ := k.clock.Now(unix.CLOCK_REALTIME)
	s := uint64(ns / 1e9)
	if a[0] != 0 {
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], s)
		if e := k.copyOut(t, a[0], b[:]); e != 0 {
			return 0, e
		}
	}
	return s, 0
}

// readTimespec reads and validates a struct timespec.
func (k *Kernel) readTimespec(t *Task, va uint64) (int64, unix.Errno) {
	var b [16]byte
	if e := k.copyIn(t, va, b[:]); e != 0 {
		return 0, e
	}
	sec, nsec := int64(binary.LittleEndian.Uint64(b[:])), int64(binary.LittleEndian.Uint64(b[8:]))
	if sec < 0 || nsec < 0 || nsec >= 1e9 {
		return 0, unix.EINVAL
	}
	if sec > (1<<63-1)/int64(time.Second)-1 {
		return 1<<63 - 1, 0
	}
	return sec*1e9 + nsec, 0
}

func (k *Kernel) sysNanosleep(t *Task, a *args) (uint64, unix.Errno) {
	d, e := k.readTimespec(t, a[0])
	if e != 0 {
		return 0, e
	}
	return 0, k.sleepUntil(t, k.deadline(t, d), a[1])
}

// sleepUntil blocks t until guest CLOCK_MONOTONIC reaches deadline and,
// when a signal interrupts the sleep, writes the time left to rem (if not
// 0), as nanosleep does. The wait itself is the scheduler's: under the
// virtual clock, time jumps to the deadline once every task waits.
func (k *Kernel) sleepUntil(t *Task, deadline int64, rem uint64) unix.Errno {
	if k.monotonic() >= deadline {
		return 0
	}
	_, e := k.block(t, waitSpec{deadline: deadline})
	if e == unix.EINTR && rem != 0 {
		var b [16]byte
		putTimespec(b[:], k.timeLeft(deadline))
		if e := k.copyOut(t, rem, b[:]); e != 0 {
			return e
		}
	}
	return e
}

func (k *Kernel) sysClockNanosleep(t *Task, a *args) (uint64, unix.Errno) {
	id := int32(a[0])
	now, ok := k.clockNow(id)
	if which, isCPU, _ := k.cpuClock(id); isCPU && (id == unix.CLOCK_THREAD_CPUTIME_ID || which != cpuclockSched || id&cpuclockPerThread != 0) {
		return 0, unix.EINVAL
	}
	if !ok {
		return 0, unix.EINVAL
	}
	switch id {
	case unix.CLOCK_MONOTONIC_RAW, unix.CLOCK_REALTIME_COARSE, unix.CLOCK_MONOTONIC_COARSE:
		return 0, unix.EOPNOTSUPP // Linux cannot sleep on them (no nsleep)
	}
	if a[1]&^1 != 0 {
		return 0, unix.EINVAL
	}
	d, e := k.readTimespec(t, a[2])
	if e != 0 {
		return 0, e
	}
	if a[1]&1 != 0 { // TIMER_ABSTIME: no time left is reported
		return 0, k.sleepUntil(t, k.deadline(t, max(d-now, 0)), 0)
	}
	return 0, k.sleepUntil(t, k.deadline(t, d), a[3])
}
