package kernel

import (
	"encoding/binary"
	"math"

	"github.com/emuckpt/emuckpt/guestmm"
	"golang.org/x/sys/unix"
)

// Futexes. A waiter is keyed as Linux's get_futex_key does: a word in a
// private mapping by its address space and address (so a parent and its
// forked child never meet on copy-on-write pages), a word in a shared
// mapping by the frame and offset it lives at (so processes that share the
// memory meet there). FUTEX_PRIVATE_FLAG only says the caller knows the
// word is private; the key is the same.
//
// A waiter blocks like any call (sched.go): when woken, its call is made
// again and, seeing itself woken, returns 0. A call made again after a
// restore has no waiter yet: it checks the word afresh and waits or
// returns EAGAIN, which futex users treat as a spurious wake-up.

const (
	futexWait          = 0
	futexWake          = 1
	futexRequeue       = 3
	futexCmpRequeue    = 4
	futexWakeOp        = 5
	futexWaitBitset    = 9
	futexWakeBitset    = 10
	futexPrivateFlag   = 128
	futexClockRealtime = 256
	futexBitsetAll     = 0xffffffff

	futexWaiters   = 0x80000000
	futexOwnerDied = 0x40000000
	futexTIDMask   = 0x3fffffff

	robustListLimit = 2048 // ROBUST_LIST_LIMIT
)

// futexKey names a futex word.
type futexKey struct {
	as *guestmm.AddressSpace // nil for a shared mapping's word
	va uint64                // or the guest-physical address
}

// futexWaiter is a task waiting on a futex word.
type futexWaiter struct {
	t      *Task
	key    futexKey
	bitset uint32
	woken  bool
}

// futexKeyOf finds the key of the word at va, or EFAULT/EINVAL; reading
// the word (its value is the second result) faults its page in.
func (k *Kernel) futexKeyOf(t *Task, va uint64) (futexKey, uint32, unix.Errno) {
	if va&3 != 0 {
		return futexKey{}, 0, unix.EINVAL
	}
	as := t.proc.as
	var b [4]byte
	if e := errnoOf(as.CopyIn(va, b[:])); e != 0 {
		return futexKey{}, 0, e
	}
	word := binary.LittleEndian.Uint32(b[:])
	if v, ok := as.FindVMA(va); ok && v.Shared {
		if pa, _, ok := as.PageTables().Translate(va); ok {
			return futexKey{va: pa}, word, 0
		}
	}
	return futexKey{as: as, va: va}, word, 0
}

// futexKeyPair is the keys of the two words of a requeue or wake-op.
func (k *Kernel) futexKeyPair(t *Task, uaddr, uaddr2 uint64) (futexKey, futexKey, unix.Errno) {
	key, _, e := k.futexKeyOf(t, uaddr)
	if e != 0 {
		return futexKey{}, futexKey{}, e
	}
	key2, _, e := k.futexKeyOf(t, uaddr2)
	return key, key2, e
}

// futexWord reads the 32-bit word at va.
func (k *Kernel) futexWord(t *Task, va uint64) (uint32, unix.Errno) {
	var b [4]byte
	if e := k.copyIn(t, va, b[:]); e != 0 {
		return 0, e
	}
	return binary.LittleEndian.Uint32(b[:]), 0
}

// sysFutex is futex(uaddr, op, val, timeout/val2, uaddr2, val3).
func (k *Kernel) sysFutex(t *Task, a *args) (uint64, unix.Errno) {
	uaddr, op, val := a[0], int(a[1]), uint32(a[2])
	cmd := op &^ (futexPrivateFlag | futexClockRealtime)
	if op&futexClockRealtime != 0 && cmd != futexWaitBitset {
		return 0, unix.ENOSYS
	}
	switch cmd {
	case futexWait, futexWaitBitset:
		bitset := uint32(futexBitsetAll)
		if cmd == futexWaitBitset {
			if bitset = uint32(a[5]); bitset == 0 {
				return 0, unix.EINVAL
			}
		}
		deadline := int64(math.MaxInt64)
		if a[3] != 0 {
			d, e := k.readTimespec(t, a[3])
			if e != 0 {
				return 0, e
			}
			if cmd == futexWaitBitset {
				// An absolute time on CLOCK_MONOTONIC or REALTIME.
				id := int32(unix.CLOCK_MONOTONIC)
				if op&futexClockRealtime != 0 {
					id = unix.CLOCK_REALTIME
				}
				now, _ := k.clock.Now(id)
				d = max(d-now, 0)
			}
			deadline = k.deadline(t, d)
		}
		return k.futexWaitOn(t, uaddr, val, bitset, deadline)
	case futexWake, futexWakeBitset:
		bitset := uint32(futexBitsetAll)
		if cmd == futexWakeBitset {
			if bitset = uint32(a[5]); bitset == 0 {
				return 0, unix.EINVAL
			}
		}
		n, e := k.futexWake(t, uaddr, int(val), bitset)
		return uint64(n), e
	case futexRequeue, futexCmpRequeue:
		return k.futexRequeue(t, uaddr, a[4], int(int32(val)), int(int32(a[3])), cmd == futexCmpRequeue, uint32(a[5]))
	case futexWakeOp:
		return k.futexWakeOp(t, uaddr, a[4], int(int32(val)), int(int32(a[3])), uint32(a[5]))
	}
	k.noteOnce("futex-op", "futex operations other than WAIT, WAKE, REQUEUE, CMP_REQUEUE, WAKE_OP and the BITSET ones (PI futexes, WAIT_REQUEUE_PI) are not supported: ENOSYS")
	return 0, unix.ENOSYS
}

// futexWaitOn is FUTEX_WAIT: sleep while the word at uaddr holds val.
func (k *Kernel) futexWaitOn(t *Task, uaddr uint64, val, bitset uint32, deadline int64) (uint64, unix.Errno) {
	if w := t.futex; t.resuming && w != nil {
		if w.woken {
			t.futex = nil
			return 0, 0
		}
		// Not woken: the deadline passed or a signal came.
		k.dropFutexWaiter(w)
		t.futex = nil
		if k.monotonic() >= deadline {
			return 0, unix.ETIMEDOUT
		}
		return k.block(t, waitSpec{deadline: deadline, restartable: deadline == math.MaxInt64})
	}
	key, cur, e := k.futexKeyOf(t, uaddr)
	if e != 0 {
		return 0, e
	}
	if cur != val {
		return 0, unix.EAGAIN
	}
	if k.monotonic() >= deadline {
		return 0, unix.ETIMEDOUT
	}
	w := &futexWaiter{t: t, key: key, bitset: bitset}
	ret, e := k.block(t, waitSpec{deadline: deadline, restartable: deadline == math.MaxInt64, ready: func() bool { return w.woken }})
	if e == eBlock {
		t.futex = w
		k.futexes = append(k.futexes, w)
	}
	return ret, e
}

// dropFutexWaiter takes a waiter off the list.
func (k *Kernel) dropFutexWaiter(w *futexWaiter) {
	for i, x := range k.futexes {
		if x == w {
			k.futexes = append(k.futexes[:i:i], k.futexes[i+1:]...)
			return
		}
	}
}

// futexWake wakes up to n waiters on the word at uaddr whose bitset meets
// bitset, in the order they started waiting; it returns how many.
func (k *Kernel) futexWake(t *Task, uaddr uint64, n int, bitset uint32) (int, unix.Errno) {
	key, _, e := k.futexKeyOf(t, uaddr)
	if e != 0 {
		return 0, e
	}
	return k.wakeKey(key, n, bitset), 0
}

func (k *Kernel) wakeKey(key futexKey, n int, bitset uint32) int {
	woken := 0
	kept := k.futexes[:0]
	for _, w := range k.futexes {
		if woken < n && w.key == key && w.bitset&bitset != 0 {
			w.woken = true
			woken++
			continue
		}
		kept = append(kept, w)
	}
	clear(k.futexes[len(kept):])
	k.futexes = kept
	return woken
}

// futexRequeue is FUTEX_REQUEUE and FUTEX_CMP_REQUEUE: wake nwake
// waiters of uaddr and move up to nmove others to uaddr2.
func (k *Kernel) futexRequeue(t *Task, uaddr, uaddr2 uint64, nwake, nmove int, cmp bool, val3 uint32) (uint64, unix.Errno) {
	if nwake < 0 || nmove < 0 {
		return 0, unix.EINVAL
	}
	key, key2, e := k.futexKeyPair(t, uaddr, uaddr2)
	if e != 0 {
		return 0, e
	}
	if cmp {
		cur, e := k.futexWord(t, uaddr)
		if e != 0 {
			return 0, e
		}
		if cur != val3 {
			return 0, unix.EAGAIN
		}
	}
	n := k.wakeKey(key, nwake, futexBitsetAll)
	moved := 0
	for _, w := range k.futexes {
		if moved < nmove && w.key == key {
			w.key = key2
			moved++
		}
	}
	return uint64(n + moved), 0
}

// futexWakeOp is FUTEX_WAKE_OP: change the word at uaddr2 as val3 says,
// wake n waiters of uaddr and, if the old value of uaddr2 passed the
// comparison, n2 waiters of uaddr2.
func (k *Kernel) futexWakeOp(t *Task, uaddr, uaddr2 uint64, n, n2 int, val3 uint32) (uint64, unix.Errno) {
	key, key2, e := k.futexKeyPair(t, uaddr, uaddr2)
	if e != 0 {
		return 0, e
	}
	op, cmp := (val3>>28)&7, (val3>>24)&15
	oparg, cmparg := (val3>>12)&0xfff, val3&0xfff
	if val3>>31 != 0 { // FUTEX_OP_OPARG_SHIFT
		if oparg > 31 {
			return 0, unix.EINVAL
		}
		oparg = 1 << oparg
	}
	old, e := k.futexWord(t, uaddr2)
	if e != 0 {
		return 0, e
	}
	var nv uint32
	switch op {
	case 0:
		nv = oparg // SET
	case 1:
		nv = old + oparg // ADD
	case 2:
		nv = old | oparg // OR
	case 3:
		nv = old &^ oparg // ANDN
	case 4:
		nv = old ^ oparg // XOR
	default:
		return 0, unix.ENOSYS
	}
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], nv)
	if e := k.copyOut(t, uaddr2, b[:]); e != 0 {
		return 0, e
	}
	woken := k.wakeKey(key, n, futexBitsetAll)
	// The comparison is of signed values, as Linux's futex_atomic_op.
	o, c := int32(old), int32(cmparg<<20)>>20
	var hit bool
	switch cmp {
	case 0:
		hit = o == c
	case 1:
		hit = o != c
	case 2:
		hit = o < c
	case 3:
		hit = o <= c
	case 4:
		hit = o > c
	case 5:
		hit = o >= c
	default:
		return 0, unix.ENOSYS
	}
	if hit {
		woken += k.wakeKey(key2, n2, futexBitsetAll)
	}
	return uint64(woken), 0
}

// exitRobustList walks a dying thread's robust futex list, as Linux's
// exit_robust_list: each lock the thread still holds gets
// FUTEX_OWNER_DIED, and one waiter is woken where there are waiters.
func (k *Kernel) exitRobustList(t *Task) {
	head := t.robust
	t.robust = 0
	if head == 0 || t.proc.exited {
		return
	}
	var h [24]byte // next, futex_offset, list_op_pending
	if k.copyIn(t, head, h[:]) != 0 {
		return
	}
	le := binary.LittleEndian
	next, off, pending := le.Uint64(h[0:]), int64(le.Uint64(h[8:])), le.Uint64(h[16:])
	for i := 0; next != head && next != 0 && i < robustListLimit; i++ {
		var b [8]byte
		if k.copyIn(t, next, b[:]) != 0 {
			return
		}
		if next != pending {
			k.robustDied(t, next+uint64(off))
		}
		next = le.Uint64(b[:])
	}
	if pending != 0 {
		k.robustDied(t, pending+uint64(off))
	}
}

// robustDied marks one robust futex whose owner died.
func (k *Kernel) robustDied(t *Task, va uint64) {
	v, e := k.futexWord(t, va)
	if e != 0 || int(v&futexTIDMask) != t.tid {
		return
	}
	nv := v&futexWaiters | futexOwnerDied
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], nv)
	if k.copyOut(t, va, b[:]) == 0 && v&futexWaiters != 0 {
		k.futexWake(t, va, 1, futexBitsetAll)
	}
}
