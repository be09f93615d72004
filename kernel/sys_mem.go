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
		if am, ok := f.(vfs.AnonymousMapper); ok && am.MapsAnonymous() {
			flags |= guestmm.MapAnonymous
			off = 0
		} else {
			backing = b
		}
	}
	va, err := t.proc.as.Mmap(addr, length, guestmm.Prot(prot), flags, backing, off)
	if err != nil {
		return 0, errnoOf(err)
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
