package guestmm

import (
	"errors"

	"golang.org/x/sys/unix"
)

// Memory locking (mlock(2) and friends). Guest memory is never swapped, so
// a lock changes no residency: it is the VMA flag Linux calls VM_LOCKED,
// counted against RLIMIT_MEMLOCK by the caller (see LockedBytes), and the
// pages of a newly locked range are faulted in, as Linux populates them.

// LockRange sets or clears the locked flag of the VMAs covering the page
// range [start, end), splitting them as needed, as Linux's
// apply_vma_lock_flags. populate faults the pages in after locking
// (mlock without MLOCK_ONFAULT). Any unmapped part of the range is
// ENOMEM and then nothing changes. Device mappings stay unlocked, as
// Linux leaves VM_IO mappings. start and end must be page aligned.
func (as *AddressSpace) LockRange(start, end uint64, lock, populate bool) error {
	if start&pageMask != 0 || end&pageMask != 0 || end < start {
		return unix.EINVAL
	}
	if start == end {
		return nil
	}
	if end > TaskSize || as.hasHole(start, end) {
		return unix.ENOMEM
	}
	if _, err := as.eachPiece(start, end, func(v *VMA, lo, hi uint64) error {
		// Linux never locks VM_IO/VM_PFNMAP mappings, silently.
		return as.setFlag(lo, hi, v.Locked == lock || v.Kind == KindDevice, func(v *VMA) { v.Locked = lock })
	}); err != nil {
		return err
	}
	if lock && populate {
		return as.populateLocked(start, end)
	}
	return nil
}

// LockAll sets or clears the locked flag of every VMA (mlockall with
// MCL_CURRENT, munlockall), populating them when lock and populate are
// set.
func (as *AddressSpace) LockAll(lock, populate bool) error {
	for _, v := range as.vmas.v {
		v.Locked = lock && v.Kind != KindDevice
	}
	as.vmas.mergeRange(0, len(as.vmas.v))
	if lock && populate {
		for _, v := range as.VMAs() {
			if err := as.populateLocked(v.Start, v.End); err != nil {
				return err
			}
		}
	}
	return nil
}

// populateLocked faults in a newly locked range. As in Linux's
// __mm_populate for mlock, PROT_NONE and device mappings are skipped and
// only running out of memory is an error (EAGAIN, as mlock reports it).
func (as *AddressSpace) populateLocked(start, end uint64) error {
	_, err := as.eachPiece(start, end, func(v *VMA, lo, hi uint64) error {
		if v.Prot&protRWX == ProtNone || v.Kind == KindDevice {
			return nil
		}
		write := v.Prot&ProtWrite != 0 && !v.Shared
		return as.populateRange(v, lo, hi, write)
	})
	if errors.Is(err, unix.ENOMEM) {
		return unix.EAGAIN
	}
	return nil
}

// hasHole reports whether some page of [start, end) is not mapped.
func (as *AddressSpace) hasHole(start, end uint64) bool {
	holes, _ := as.eachPiece(start, end, func(*VMA, uint64, uint64) error { return nil })
	return holes
}

// LockedBytes is how much of the address space is locked (Linux's
// locked_vm, in bytes); with start < end, the bytes of [start, end) that
// are not locked yet are added, which is what locking that range would
// make it.
func (as *AddressSpace) LockedBytes(start, end uint64) uint64 {
	var n uint64
	for _, v := range as.vmas.v {
		if v.Locked {
			n += v.Len()
		} else if v.Kind == KindDevice {
			continue
		} else if lo, hi := max(v.Start, start), min(v.End, end); lo < hi {
			n += hi - lo
		}
	}
	return n
}

// MappedBytes is the size of every mapping (Linux's total_vm, in bytes).
func (as *AddressSpace) MappedBytes() uint64 {
	var n uint64
	for _, v := range as.vmas.v {
		n += v.Len()
	}
	return n
}
