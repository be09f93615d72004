package kernel

import (
	"github.com/emuckpt/emuckpt/guestmm"
	"github.com/emuckpt/emuckpt/kernel/vfs"
	"golang.org/x/sys/unix"
)

func (k *Kernel) sysMmap(t *Task, a *args) (uint64, unix.Errno) {
	addr, length, prot, flags, fd, off := a[0], a[1], uint32(a[2]), uint32(a[3]), a[4], a[5]
	var backing guestmm.Backing
	if flags&guestmm.MapAnonymous != 0 && flags&0xf == guestmm.MapSharedValidate {
		// Linux accepts MAP_SHARED_VALIDATE only for file mappings.
		return 0, unix.EINVAL
	}
	if flags&guestmm.MapAnonymous == 0 {
		f, e := k.file(t, fd)
		if e != 0 {
			return 0, e
		}
		if length == 0 || off&(guestmm.PageSize-1) != 0 {
			return 0, unix.EINVAL
		}
		m, ok := f.(vfs.Mappable)
		if !ok {
			return 0, unix.ENODEV
		}
		b, e := m.MmapBacking(off, length, prot, flags&guestmm.MapShared != 0)
		if e != 0 {
			return 0, e
		}
		backing = b
		if am, ok := f.(vfs.AnonymousMapper); ok && am.MapsAnonymous() {
			// Zero-filled memory (/dev/zero): named after the file when
			// private, as Linux shows it in /proc/PID/maps.
			flags |= guestmm.MapAnonymous
			off = 0
		}
	}
	lockOnFault := false
	if t.proc.lockFuture { // mlockall(MCL_FUTURE)
		if t.proc.lockOnFault {
			lockOnFault = flags&guestmm.MapLocked == 0
		} else {
			flags |= guestmm.MapLocked
		}
	}
	if flags&guestmm.MapLocked != 0 || lockOnFault {
		// mlock_future_ok: the new mapping must fit the limit.
		if e := k.memlockAllows(t, t.proc.as.LockedBytes(0, 0)+length); e != 0 {
			return 0, unix.EAGAIN
		}
	}
	va, err := t.proc.as.Mmap(addr, length, guestmm.Prot(prot), flags, backing, off)
	if err != nil {
		return 0, errnoOf(err)
	}
	if lockOnFault {
		end := va + (length+guestmm.PageSize-1)&^(guestmm.PageSize-1)
		if err := t.proc.as.LockRange(va, end, true, false); err != nil {
			return 0, errnoOf(err)
		}
	}
	return va, 0
}

func (k *Kernel) sysMunmap(t *Task, a *args) (uint64, unix.Errno) {
	return 0, errnoOf(t.proc.as.Munmap(a[0], a[1]))
}

func (k *Kernel) sysMprotect(t *Task, a *args) (uint64, unix.Errno) {
	return 0, errnoOf(t.proc.as.Mprotect(a[0], a[1], guestmm.Prot(a[2])))
}

func (k *Kernel) sysMremap(t *Task, a *args) (uint64, unix.Errno) {
	va, err := t.proc.as.Mremap(a[0], a[1], a[2], uint32(a[3]), a[4])
	return va, errnoOf(err)
}

func (k *Kernel) sysMadvise(t *Task, a *args) (uint64, unix.Errno) {
	return 0, errnoOf(t.proc.as.Madvise(a[0], a[1], int(int32(a[2]))))
}

func (k *Kernel) sysBrk(t *Task, a *args) (uint64, unix.Errno) {
	return t.proc.as.Brk(a[0]), 0
}

// Memory locks. Guest memory is never paged out, so mlock only marks the
// VMAs locked, faults their pages in and counts them against
// RLIMIT_MEMLOCK (see the privilege note in sys_proc.go).

// pageRange turns mlock's (addr, len) into a page range as Linux does:
// the start rounded down, the length grown by the offset and rounded up
// (PAGE_ALIGN, which wraps to 0 for lengths near 2^64).
func pageRange(addr, length uint64) (start, alignedLen uint64) {
	const mask = guestmm.PageSize - 1
	start = addr &^ mask
	return start, (length + (addr - start) + mask) &^ mask
}

// lockEnd is the end of [start, start+length), EINVAL if it wraps.
func lockEnd(start, length uint64) (uint64, unix.Errno) {
	if start+length < start {
		return 0, unix.EINVAL
	}
	return start + length, 0
}

// memlockAllows reports whether locked bytes may be locked in all:
// EPERM when RLIMIT_MEMLOCK is 0 (can_do_mlock), ENOMEM above it.
func (k *Kernel) memlockAllows(t *Task, locked uint64) unix.Errno {
	if k.privileged() {
		return 0
	}
	limit, _ := k.rlimit(t, unix.RLIMIT_MEMLOCK)
	if limit[0] == 0 {
		return unix.EPERM
	}
	if locked > limit[0] {
		return unix.ENOMEM
	}
	return 0
}

// mlock is Linux's do_mlock: the limit first (counting pages of the range
// that are locked already once), then the range.
func (k *Kernel) mlock(t *Task, addr, length uint64, onFault bool) (uint64, unix.Errno) {
	start, length := pageRange(addr, length)
	end, wraps := lockEnd(start, length)
	locked := t.proc.as.LockedBytes(0, 0)
	if wraps == 0 {
		locked = t.proc.as.LockedBytes(start, end)
	} else {
		locked = max(locked+length, locked) // saturating: over any limit
	}
	if e := k.memlockAllows(t, locked); e != 0 {
		return 0, e
	}
	if wraps != 0 {
		return 0, wraps
	}
	return 0, errnoOf(t.proc.as.LockRange(start, end, true, !onFault))
}

func (k *Kernel) sysMlock(t *Task, a *args) (uint64, unix.Errno) {
	return k.mlock(t, a[0], a[1], false)
}

func (k *Kernel) sysMlock2(t *Task, a *args) (uint64, unix.Errno) {
	if a[2]&^mlockOnfault != 0 {
		return 0, unix.EINVAL
	}
	return k.mlock(t, a[0], a[1], a[2]&mlockOnfault != 0)
}

func (k *Kernel) sysMunlock(t *Task, a *args) (uint64, unix.Errno) {
	start, length := pageRange(a[0], a[1])
	end, e := lockEnd(start, length)
	if e != 0 {
		return 0, e
	}
	return 0, errnoOf(t.proc.as.LockRange(start, end, false, false))
}

func (k *Kernel) sysMlockall(t *Task, a *args) (uint64, unix.Errno) {
	flags := a[0]
	if flags == 0 || flags&^(mclCurrent|mclFuture|mclOnfault) != 0 || flags == mclOnfault {
		return 0, unix.EINVAL
	}
	if e := k.memlockAllows(t, 0); e != 0 {
		return 0, e
	}
	if flags&mclCurrent != 0 {
		if e := k.memlockAllows(t, t.proc.as.MappedBytes()); e != 0 {
			return 0, e
		}
	}
	// Like Linux's apply_mlockall_flags, each call sets the future flags
	// afresh. Running out of memory while populating is not an error of
	// mlockall (mm_populate ignores it).
	t.proc.lockFuture = flags&mclFuture != 0
	t.proc.lockOnFault = t.proc.lockFuture && flags&mclOnfault != 0
	if flags&mclCurrent != 0 {
		_ = t.proc.as.LockAll(true, flags&mclOnfault == 0)
	}
	return 0, 0
}

func (k *Kernel) sysMunlockall(t *Task, _ *args) (uint64, unix.Errno) {
	t.proc.lockFuture, t.proc.lockOnFault = false, false
	return 0, errnoOf(t.proc.as.LockAll(false, false))
}

func (k *Kernel) sysMsync(t *Task, a *args) (uint64, unix.Errno) {
	return 0, errnoOf(t.proc.as.Msync(a[0], a[1], int(int32(a[2]))))
}

// sysMincore is mincore(2): the residency vector goes to a[2], a chunk
// at a time; like Linux, a hole or a bad vector part way leaves the
// chunks before it written.
func (k *Kernel) sysMincore(t *Task, a *args) (uint64, unix.Errno) {
	start, length, out := a[0], a[1], a[2]
	for {
		vec, err := t.proc.as.Mincore(start, length)
		if err != nil {
			return 0, errnoOf(err)
		}
		if e := k.copyOut(t, out, vec); e != 0 {
			return 0, e
		}
		done := uint64(len(vec)) * guestmm.PageSize
		if len(vec) < guestmm.MincoreChunk || length <= done {
			return 0, 0
		}
		start, length, out = start+done, length-done, out+uint64(len(vec))
	}
}
