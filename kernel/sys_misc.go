package kernel

import (
	"encoding/binary"
	"math"
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
func (k *Kernel) sysGetppid(t *Task, _ *args) (uint64, unix.Errno) { return uint64(t.proc.ppid), 0 }
func (k *Kernel) sysGetuid(*Task, *args) (uint64, unix.Errno)      { return uint64(unix.Getuid()), 0 }
func (k *Kernel) sysGeteuid(*Task, *args) (uint64, unix.Errno)     { return uint64(unix.Geteuid()), 0 }
func (k *Kernel) sysGetgid(*Task, *args) (uint64, unix.Errno)      { return uint64(unix.Getgid()), 0 }
func (k *Kernel) sysGetegid(*Task, *args) (uint64, unix.Errno)     { return uint64(unix.Getegid()), 0 }
func (k *Kernel) sysSchedYield(*Task, *args) (uint64, unix.Errno)  { return 0, 0 }

func (k *Kernel) sysExit(t *Task, a *args) (uint64, unix.Errno) {
	// One task per process for now, so exit ends the process too.
	return k.sysExitGroup(t, a)
}

func (k *Kernel) sysExitGroup(t *Task, a *args) (uint64, unix.Errno) {
	k.pendingExit = &errExit{ExitStatus{Code: int(a[0] & 0xff)}}
	return 0, 0
}

func (k *Kernel) sysKillSyscall(t *Task, a *args) (uint64, unix.Errno) {
	return k.sysKill(t, int(int32(a[0])), int(int32(a[1])), siUser)
}

func (k *Kernel) sysTkill(t *Task, a *args) (uint64, unix.Errno) {
	if int32(a[0]) != int32(t.tid) {
		if int32(a[0]) <= 0 {
			return 0, unix.EINVAL
		}
		return 0, unix.ESRCH
	}
	return k.sysKill(t, t.proc.pid, int(int32(a[1])), siTkill)
}

func (k *Kernel) sysTgkill(t *Task, a *args) (uint64, unix.Errno) {
	if int32(a[0]) <= 0 || int32(a[1]) <= 0 {
		return 0, unix.EINVAL
	}
	if int32(a[0]) != int32(t.proc.pid) || int32(a[1]) != int32(t.tid) {
		return 0, unix.ESRCH
	}
	return k.sysKill(t, t.proc.pid, int(int32(a[2])), siTkill)
}

func (k *Kernel) sysArchPrctl(t *Task, a *args) (uint64, unix.Errno) {
	switch a[0] {
	case archSetFS:
		if a[1] >= guestmm.TaskSize {
			return 0, unix.EPERM
		}
		k.vcpu.SetFSBase(a[1])
		return 0, 0
	case archGetFS:
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], k.vcpu.FSBase())
		return 0, k.copyOut(t, a[1], b[:])
	case archSetGS:
		if a[1] >= guestmm.TaskSize {
			return 0, unix.EPERM
		}
		k.vcpu.SetGSBase(a[1])
		return 0, 0
	case archGetGS:
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], k.vcpu.GSBase())
		return 0, k.copyOut(t, a[1], b[:])
	case archGetCPUID:
		return 1, 0
	}
	return 0, unix.EINVAL
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
		if a[1] == unix.RLIMIT_NOFILE {
			if e := t.proc.fds.SetLimit(int(min(cur, 1<<20))); e != 0 {
				return 0, e
			}
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
	buf := make([]byte, min(a[1], 32<<20-1, maxIO))
	if _, err := k.rand.Read(buf); err != nil {
		return 0, unix.EIO
	}
	return uint64(len(buf)), k.copyOut(t, a[0], buf)
}

// Time.

func putTimespec(b []byte, ns int64) {
	binary.LittleEndian.PutUint64(b, uint64(ns/1e9))
	binary.LittleEndian.PutUint64(b[8:], uint64(ns%1e9))
}

func (k *Kernel) sysClockGettime(t *Task, a *args) (uint64, unix.Errno) {
	ns, ok := k.clock.Now(int32(a[0]))
	if !ok {
		return 0, unix.EINVAL
	}
	var b [16]byte
	putTimespec(b[:], ns)
	return 0, k.copyOut(t, a[1], b[:])
}

func (k *Kernel) sysClockGetres(t *Task, a *args) (uint64, unix.Errno) {
	if _, ok := k.clock.Now(int32(a[0])); !ok {
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

// sleep waits d nanoseconds of guest time; d == math.MaxInt64 waits until
// interrupted. The virtual clock jumps instead of waiting. The wait ends
// early with EINTR when the run is cancelled or a checkpoint is requested
// (the call is then restarted after the checkpoint, see syscall).
func (k *Kernel) sleep(d int64) unix.Errno {
	if d <= 0 {
		return 0
	}
	var expired <-chan time.Time
	if d != math.MaxInt64 {
		if _, virtual := k.clock.(*VirtualClock); virtual {
			k.clock.Sleep(d)
			return 0
		}
		tm := time.NewTimer(time.Duration(d))
		defer tm.Stop()
		expired = tm.C
	}
	var done <-chan struct{}
	if k.ctx != nil {
		done = k.ctx.Done()
	}
	for {
		select {
		case <-expired:
			return 0
		case <-done:
			return unix.EINTR
		case <-k.wake:
			if k.ckpt.requested.Load() {
				return unix.EINTR
			}
		}
	}
}

func (k *Kernel) sysNanosleep(t *Task, a *args) (uint64, unix.Errno) {
	d, e := k.readTimespec(t, a[0])
	if e != 0 {
		return 0, e
	}
	return 0, k.sleep(d)
}

func (k *Kernel) sysClockNanosleep(t *Task, a *args) (uint64, unix.Errno) {
	id := int32(a[0])
	now, ok := k.clock.Now(id)
	if !ok || id == unix.CLOCK_THREAD_CPUTIME_ID {
		return 0, unix.EINVAL
	}
	if a[1]&^1 != 0 {
		return 0, unix.EINVAL
	}
	d, e := k.readTimespec(t, a[2])
	if e != 0 {
		return 0, e
	}
	if a[1]&1 != 0 { // TIMER_ABSTIME
		d -= now
	}
	return 0, k.sleep(d)
}
