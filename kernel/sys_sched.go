package kernel

import (
	"encoding/binary"

	"golang.org/x/sys/unix"
)

// Scheduling policies. Every task runs under SCHED_OTHER (the guest
// kernel's turns are round robin, see sched.go); asking for SCHED_OTHER
// again succeeds, a real-time policy needs privilege (EPERM, as with
// RLIMIT_RTPRIO 0) and is otherwise not implemented (ENOSYS, named by -v),
// as are SCHED_BATCH and SCHED_IDLE.

const (
	schedOther    = 0
	schedFIFO     = 1
	schedRR       = 2
	schedBatch    = 3
	schedIdle     = 5
	schedDeadline = 6
	// schedResetOnFork may be or'ed into the policy.
	schedResetOnFork = 0x40000000
)

// schedTarget is the task a sched_* call names: EINVAL for a negative pid,
// ESRCH for one that does not exist.
func (k *Kernel) schedTarget(t *Task, pid uint64) (*Task, unix.Errno) {
	if int32(pid) < 0 {
		return nil, unix.EINVAL
	}
	return k.affinityTarget(t, pid)
}

func (k *Kernel) sysSchedGetscheduler(t *Task, a *args) (uint64, unix.Errno) {
	_, e := k.schedTarget(t, a[0])
	return schedOther, e
}

func (k *Kernel) sysSchedGetparam(t *Task, a *args) (uint64, unix.Errno) {
	if a[1] == 0 {
		return 0, unix.EINVAL
	}
	if _, e := k.schedTarget(t, a[0]); e != 0 {
		return 0, e
	}
	return 0, k.copyOut(t, a[1], make([]byte, 4)) // sched_priority 0
}

// setScheduler is sched_setscheduler (keep false) and sched_setparam (keep:
// the policy stays SCHED_OTHER).
func (k *Kernel) setScheduler(t *Task, pid, policy, param uint64, keep bool) (uint64, unix.Errno) {
	if param == 0 || int32(pid) < 0 {
		return 0, unix.EINVAL
	}
	p := int32(policy) &^ schedResetOnFork
	if keep {
		p = schedOther
	}
	if p < 0 {
		return 0, unix.EINVAL
	}
	var b [4]byte
	if e := k.copyIn(t, param, b[:]); e != 0 {
		return 0, e
	}
	prio := int32(binary.LittleEndian.Uint32(b[:]))
	if _, e := k.schedTarget(t, pid); e != 0 {
		return 0, e
	}
	lo, hi, e := priorityRange(uint64(p))
	if e != 0 || p == schedDeadline || int64(prio) < int64(lo) || int64(prio) > int64(hi) {
		return 0, unix.EINVAL // SCHED_DEADLINE needs sched_setattr
	}
	if (p == schedFIFO || p == schedRR) && !k.privileged() {
		return 0, unix.EPERM
	}
	if p == schedOther {
		return 0, 0
	}
	k.noteOnce("sched-policy", "scheduling policies other than SCHED_OTHER are not implemented: returning ENOSYS")
	return 0, unix.ENOSYS
}

func (k *Kernel) sysSchedSetscheduler(t *Task, a *args) (uint64, unix.Errno) {
	return k.setScheduler(t, a[0], a[1], a[2], false)
}

func (k *Kernel) sysSchedSetparam(t *Task, a *args) (uint64, unix.Errno) {
	return k.setScheduler(t, a[0], 0, a[1], true)
}

// priorityRange is the static priority range of a policy.
func priorityRange(policy uint64) (lo, hi uint64, e unix.Errno) {
	switch int32(policy) {
	case schedFIFO, schedRR:
		return 1, 99, 0
	case schedOther, schedBatch, schedIdle, schedDeadline:
		return 0, 0, 0
	}
	return 0, 0, unix.EINVAL
}

func (k *Kernel) sysSchedGetPriorityMax(_ *Task, a *args) (uint64, unix.Errno) {
	_, hi, e := priorityRange(a[0])
	return hi, e
}

func (k *Kernel) sysSchedGetPriorityMin(_ *Task, a *args) (uint64, unix.Errno) {
	lo, _, e := priorityRange(a[0])
	return lo, e
}
