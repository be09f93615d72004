package kernel

import (
	"encoding/binary"
	"math"
	"math/bits"

	"github.com/emuckpt/emuckpt/vmm"
	"golang.org/x/sys/unix"
)

// rt_sigsuspend, rt_sigtimedwait, and the CPU calls: sched_getaffinity,
// sched_setaffinity and getcpu.

// sysRtSigsuspend is rt_sigsuspend(mask, sigsetsize): waits with the
// task's mask replaced by mask until a signal is delivered to a handler
// or ends the process; it fails with EINTR, and the handler returns to
// the old mask (see withSigmask).
func (k *Kernel) sysRtSigsuspend(t *Task, a *args) (uint64, unix.Errno) {
	if a[1] != sigsetSize {
		return 0, unix.EINVAL
	}
	if a[0] == 0 {
		return 0, unix.EFAULT
	}
	return k.withSigmask(t, a[0], func() (uint64, unix.Errno) {
		_, e := k.pollWait(t, nil, math.MaxInt64, func() int { return 0 })
		if e == 0 {
			e = unix.EINTR
		}
		return 0, e
	})
}

// sysRtSigtimedwait is rt_sigtimedwait(set, info, timeout, sigsetsize):
// takes the lowest pending signal of set (SIGKILL and SIGSTOP left out)
// without running its handler, filling *info if not NULL, and returns its
// number; with none pending it waits until one is, or for timeout (NULL:
// forever) and then fails with EAGAIN. Another signal that is delivered
// ends the wait with EINTR. Only the task's own pending signals are
// looked at: a signal sent to the process is pending in the thread that
// the sender chose (one that does not block it, else the leader).
func (k *Kernel) sysRtSigtimedwait(t *Task, a *args) (uint64, unix.Errno) {
	if a[3] != sigsetSize {
		return 0, unix.EINVAL
	}
	var b [8]byte
	if e := k.copyIn(t, a[0], b[:]); e != 0 {
		return 0, e
	}
	set := binary.LittleEndian.Uint64(b[:]) &^ unblockable
	deadline, e := k.timespecDeadline(t, a[2])
	if e != 0 {
		return 0, e
	}
	if sig := lowestSignal(t.pending & set); sig != 0 {
		if a[1] != 0 {
			// Linux dequeues the signal before copying siginfo out:
			// with a bad pointer the signal is gone and the call
			// fails with EFAULT.
			info := make([]byte, siginfoSize)
			fillSiginfo(t, k.dequeueSignal(t, sig), info)
			if e := k.copyOut(t, a[1], info); e != 0 {
				return 0, e
			}
		} else {
			k.dequeueSignal(t, sig)
		}
		return uint64(sig), 0
	}
	if k.monotonic() >= deadline {
		return 0, unix.EAGAIN
	}
	return k.block(t, waitSpec{deadline: deadline, ready: func() bool { return t.pending&set != 0 }})
}

// lowestSignal is the lowest signal number in set (0: none).
func lowestSignal(set uint64) int {
	for sig := 1; sig <= numSignals; sig++ {
		if set&sigBit(sig) != 0 {
			return sig
		}
	}
	return 0
}

// dequeueSignal takes pending signal sig off t and returns its siginfo.
func (k *Kernel) dequeueSignal(t *Task, sig int) sigInfo {
	t.pending &^= sigBit(sig)
	si := sigInfo{signo: sig, code: t.pendingCode[sig]}
	k.dequeueTimer(t, sig, &si)
	if si.code == pollIn {
		si.poll, si.fd = true, t.pendingFD[sig]
	}
	return si
}

// cpumaskSize is Linux's cpumask_size(): the guest's CPUs (at most
// vmm.MaxCPUs) rounded up to whole longs.
const cpumaskSize = (vmm.MaxCPUs + 63) / 64 * 8

// affinityTarget finds the task a sched_*affinity call names (0: the
// caller).
func (k *Kernel) affinityTarget(t *Task, pid uint64) (*Task, unix.Errno) {
	tid := int(int32(pid))
	if tid == 0 {
		return t, 0
	}
	if x := k.taskByTID(tid); x != nil {
		return x, 0
	}
	return nil, unix.ESRCH
}

// allCPUs is the mask of every vCPU.
func (k *Kernel) allCPUs() uint64 { return 1<<max(len(k.cpus), 1) - 1 }

// affinity is the set of vCPUs t may run on.
func (k *Kernel) affinity(t *Task) uint64 {
	if m := t.affinity & k.allCPUs(); m != 0 {
		return m
	}
	return k.allCPUs()
}

// sysSchedGetaffinity is sched_getaffinity(pid, len, mask). It returns
// the size of the mask written.
func (k *Kernel) sysSchedGetaffinity(t *Task, a *args) (uint64, unix.Errno) {
	n := a[1]
	if n*8 < uint64(bits.Len64(k.allCPUs())) || n&7 != 0 {
		return 0, unix.EINVAL
	}
	x, e := k.affinityTarget(t, a[0])
	if e != 0 {
		return 0, e
	}
	mask := make([]byte, min(n, cpumaskSize))
	binary.LittleEndian.PutUint64(mask, k.affinity(x))
	if e := k.copyOut(t, a[2], mask); e != 0 {
		return 0, e
	}
	return uint64(len(mask)), 0
}

// sysSchedSetaffinity is sched_setaffinity(pid, len, mask): the task runs
// only on the vCPUs in the mask from its next turn on; a mask with none
// of them fails with EINVAL. Bytes past the guest's cpumask are not read,
// as Linux.
func (k *Kernel) sysSchedSetaffinity(t *Task, a *args) (uint64, unix.Errno) {
	mask := make([]byte, cpumaskSize)
	if e := k.copyIn(t, a[2], mask[:min(a[1], cpumaskSize)]); e != 0 {
		return 0, e
	}
	x, e := k.affinityTarget(t, a[0])
	if e != 0 {
		return 0, e
	}
	m := binary.LittleEndian.Uint64(mask) & k.allCPUs()
	if m == 0 {
		return 0, unix.EINVAL
	}
	x.affinity = m // a running task moves at its next entry (runTurn)
	return 0, 0
}

// cpuID is the vCPU t runs on (0 in a test without vCPUs).
func (t *Task) cpuID() int {
	if t.cpu == nil {
		return 0
	}
	return t.cpu.id
}

// sysGetcpu is getcpu(cpu, node, tcache): the caller's vCPU, node 0;
// either pointer may be NULL, tcache is unused (as since Linux 2.6.24).
func (k *Kernel) sysGetcpu(t *Task, a *args) (uint64, unix.Errno) {
	var b [4]byte
	for i, va := range a[:2] {
		if va != 0 {
			if i == 0 {
				binary.LittleEndian.PutUint32(b[:], uint32(t.cpuID()))
			} else {
				b = [4]byte{}
			}
			if e := k.copyOut(t, va, b[:]); e != 0 {
				return 0, e
			}
		}
	}
	return 0, 0
}
