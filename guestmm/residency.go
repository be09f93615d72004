package guestmm

import "golang.org/x/sys/unix"

// msync(2) and mincore(2). Guest memory is never written back or paged
// out: msync only checks what Linux checks, and mincore reports what is
// mapped in the guest's page tables.

// msync flags.
const (
	msAsync      = 0x1
	msInvalidate = 0x2
	msSync       = 0x4
)

// Msync implements msync(2)'s checks: EINVAL for a bad flag or an
// unaligned start, EBUSY for MS_INVALIDATE on locked memory, ENOMEM when
// part of the range is not mapped. Shared file mappings here are tmpfs
// and memfd files, whose pages are the file's: there is nothing to write.
func (as *AddressSpace) Msync(start, length uint64, flags int) error {
	if flags&^(msAsync|msInvalidate|msSync) != 0 || start&pageMask != 0 ||
		flags&msAsync != 0 && flags&msSync != 0 {
		return unix.EINVAL
	}
	end := start + alignUp(length) // a length that rounds up to 0 is 0, as in Linux
	if end < start {
		return unix.ENOMEM
	}
	if end == start {
		return nil
	}
	if end > TaskSize {
		return unix.ENOMEM
	}
	holes, err := as.eachPiece(start, end, func(v *VMA, _, _ uint64) error {
		if flags&msInvalidate != 0 && v.Locked {
			return unix.EBUSY
		}
		return nil
	})
	if err != nil {
		return err
	}
	if holes {
		return unix.ENOMEM
	}
	return nil
}

// MincoreChunk is the most pages Mincore reports at once; the caller of
// a longer mincore(2) asks again for the next ones, as Linux copies the
// vector out a page at a time, so that a huge range costs no huge buffer.
const MincoreChunk = 1 << 16

// Mincore implements mincore(2) for up to MincoreChunk pages from start:
// one byte per page, 1 when the page is resident, for the pages of
// [start, start+length) that fit the chunk. A page is resident when the
// guest's page tables map it; a page of a file or shared mapping counts
// as resident even before this process touched it, because its data is in
// memory (guest RAM or the host's page cache), which is what Linux reports
// for the page cache of a file the caller cannot write. Anonymous pages
// mapped ahead of the guest by fault-around are not resident until it
// touches them (PTE.Resident). EINVAL for an unaligned start, ENOMEM when
// part of the range is not mapped.
func (as *AddressSpace) Mincore(start, length uint64) ([]byte, error) {
	if start&pageMask != 0 {
		return nil, unix.EINVAL
	}
	end := start + alignUp(length)
	if end < start || end > TaskSize || length != 0 && end == start {
		return nil, unix.ENOMEM
	}
	end = min(end, start+MincoreChunk*PageSize)
	vec := make([]byte, (end-start)/PageSize)
	holes, _ := as.eachPiece(start, end, func(v *VMA, lo, hi uint64) error {
		if v.Anonymous && !v.Shared {
			return nil
		}
		for va := lo; va < hi; va += PageSize {
			vec[(va-start)/PageSize] = 1
		}
		return nil
	})
	if holes {
		return nil, unix.ENOMEM
	}
	for va, pte := range as.PresentPages(start, end) {
		if pte.Resident() {
			vec[(va-start)/PageSize] = 1
		}
	}
	return vec, nil
}
