package guestmm

import "golang.org/x/sys/unix"

// RestoreVMA inserts a VMA as it is, for rebuilding an address space from a
// checkpoint (page contents then come back with WriteForce, which also
// marks file pages Copied). v must be page aligned, lie inside
// [Layout.MmapMin, TaskSize) and overlap no VMA (EEXIST); file VMAs need a
// Backing, device VMAs a DeviceBacking, anonymous ones none (EINVAL).
func (as *AddressSpace) RestoreVMA(v VMA) error {
	if as.destroyed {
		return unix.ENOMEM
	}
	if v.Start&pageMask != 0 || v.End&pageMask != 0 || v.Start >= v.End ||
		v.End > TaskSize || v.Start < as.layout.MmapMin ||
		v.Prot&^protRWX != 0 || v.MaxProt&^protRWX != 0 || v.Prot&^v.MaxProt != 0 {
		return unix.EINVAL
	}
	switch v.Kind {
	case KindAnon, KindHeap, KindStack, KindVDSO:
		if !v.Anonymous || v.Backing != nil {
			return unix.EINVAL
		}
	case KindFile:
		if v.Anonymous || v.Backing == nil {
			return unix.EINVAL
		}
		if _, isDevice := v.Backing.(DeviceBacking); isDevice {
			return unix.EINVAL
		}
	case KindVVar:
		if _, ok := v.Backing.(PageCache); v.Anonymous || !ok || v.Prot&ProtWrite != 0 || v.MaxProt&ProtWrite != 0 {
			return unix.EINVAL
		}
	case KindDevice:
		d, ok := v.Backing.(DeviceBacking)
		if v.Anonymous || !ok || v.Offset > d.MMIOSize() || v.End-v.Start > d.MMIOSize()-v.Offset {
			return unix.EINVAL
		}
	default:
		return unix.EINVAL
	}
	if as.vmas.overlaps(v.Start, v.End) {
		return unix.EEXIST
	}
	if len(as.vmas.v) > as.layout.MaxMapCount {
		return unix.ENOMEM
	}
	i := as.vmas.insert(&v)
	as.vmas.mergeRange(i, i+1)
	return nil
}

// RestoreBrk sets the heap start and the current break, as saved by
// BrkRange. The heap VMA itself is restored with RestoreVMA.
func (as *AddressSpace) RestoreBrk(start, brk uint64) error {
	if start&pageMask != 0 || brk < start || brk > TaskSize {
		return unix.EINVAL
	}
	as.startBrk, as.brk, as.brkSet = start, brk, true
	return nil
}

// InstallPage maps the in-use frame at pa, which already holds the page's
// contents, at va inside a restored VMA. copied marks a file page whose
// contents differ from its backing (see Copied). Device VMAs take no
// pages: their PTEs come back by demand faults to the device.
func (as *AddressSpace) InstallPage(va, pa uint64, copied bool) error {
	if va&pageMask != 0 || !as.frames.Contains(pa) {
		return unix.EINVAL
	}
	v, _ := as.vmas.find(va)
	if v == nil || v.Kind == KindDevice {
		return unix.EFAULT
	}
	var soft PTE
	if copied && v.isFile() {
		soft = Copied
	}
	// With rdtsc patching the page stays non-executable until its first
	// instruction fetch, when the pages after it (an rdtsc may straddle
	// two) are back too.
	return as.pt.SetPTE(va, as.leafPTE(v, pa, soft))
}

// InstallHugePage maps the HugeFrames in-use frames at pa (2 MiB
// aligned, already holding the contents) with one 2 MiB page at va
// (2 MiB aligned), for a restore. The 2 MiB must lie wholly inside one
// restored VMA that allows 2 MiB pages (Layout.HugeEligible; EINVAL
// otherwise), and nothing may be mapped there yet (EEXIST). The frames
// keep their reference counts, one each for this mapping.
func (as *AddressSpace) InstallHugePage(va, pa uint64) error {
	if va&hugeMask != 0 || pa&hugeMask != 0 || !as.frames.Contains(pa) || !as.frames.Contains(pa+HugePageSize-PageSize) {
		return unix.EINVAL
	}
	v, _ := as.vmas.find(va)
	if v == nil || v.End-va < HugePageSize {
		return unix.EFAULT
	}
	if !as.hugeEligible(v) {
		return unix.EINVAL
	}
	ok, err := as.pt.mapHuge(va, pa, as.leafPTE(v, pa, 0))
	if err != nil {
		return unix.ENOMEM
	}
	if !ok {
		return unix.EEXIST
	}
	return nil
}

// HugeReserve is how many frames must stay free besides the frames of
// 2 MiB pages (see hugeReserve): a restore places page data in 2 MiB
// pages only while it leaves as many free as a fault would.
func HugeReserve(capacity int) int { return hugeReserve(capacity) }
