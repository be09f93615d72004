package guestmm

import (
	"errors"
	"iter"
	"slices"

	"golang.org/x/sys/unix"
)

// TaskSize is the end of the user part of the address space (the highest
// user address + 1), as on Linux x86-64 with 4-level paging.
const TaskSize = 0x7ffffffff000

// taskUnmappedBase is where the bottom-up fallback search for free address
// space starts (Linux's TASK_UNMAPPED_BASE).
const taskUnmappedBase = TaskSize / 3 &^ pageMask

// mmap flags, x86-64 Linux values.
const (
	MapShared         = 0x01
	MapPrivate        = 0x02
	MapSharedValidate = 0x03
	MapFixed          = 0x10
	MapAnonymous      = 0x20
	Map32Bit          = 0x40
	MapGrowsDown      = 0x100
	MapDenyWrite      = 0x800
	MapExecutable     = 0x1000
	MapLocked         = 0x2000
	MapNoReserve      = 0x4000
	MapPopulate       = 0x8000
	MapNonBlock       = 0x10000
	MapStack          = 0x20000
	MapHugeTLB        = 0x40000
	MapSync           = 0x80000
	MapFixedNoReplace = 0x100000
	MapUninitialized  = 0x4000000

	mapTypeMask = 0x0f
	// mapKnownFlags are the flags MAP_SHARED_VALIDATE accepts (Linux's
	// LEGACY_MAP_MASK plus MAP_FIXED_NOREPLACE and the huge page size bits).
	mapKnownFlags = MapShared | MapPrivate | MapFixed | MapAnonymous | Map32Bit |
		MapGrowsDown | MapDenyWrite | MapExecutable | MapLocked | MapNoReserve |
		MapPopulate | MapNonBlock | MapStack | MapHugeTLB | MapFixedNoReplace |
		0x3f<<26
)

// mremap flags.
const (
	MremapMayMove   = 1
	MremapFixed     = 2
	MremapDontUnmap = 4
)

// mprotect-only protection bits.
const (
	protSem       = 0x8
	protGrowsDown = 0x01000000
	protGrowsUp   = 0x02000000
)

// Layout holds the address-space parameters of a process. Zero fields get
// Linux's defaults (without address randomization).
type Layout struct {
	// FaultAround is how many pages around a demand fault are filled at
	// once: the aligned block containing the fault, with zero pages in
	// anonymous memory and, after a read fault, the file's pages in a
	// file mapping (Linux's fault_around_bytes). In a VM each fault is an
	// exit, which costs far more than zero-filling or reading a few
	// pages. 0 or 1 fault single pages; other values must be powers of
	// two.
	FaultAround uint64
	// HugePages maps private anonymous memory in 2 MiB pages where a
	// fault finds the aligned 2 MiB around it inside one VMA that allows
	// them (like Linux's transparent huge pages, mode "always"; see
	// hugeEligible). Under a shadow MMU each 4 KiB page costs a fault in
	// the host; a 2 MiB page backed by a host huge page costs one.
	HugePages bool

	// MmapBase is the top of the area searched, top down, for mappings
	// without an address. Default: StackTop minus the stack gap, clamped
	// to at least 128 MiB as Linux does (0x7ffff7fff000 by default).
	MmapBase uint64
	// MmapMin is the lowest address a mapping may use (vm.mmap_min_addr).
	// Default 64 KiB.
	MmapMin uint64
	// StackTop is the default top of the stack for SetupStack. Default
	// TaskSize.
	StackTop uint64
	// StackMax is RLIMIT_STACK: how far stacks may grow. Default 8 MiB.
	StackMax uint64
	// StackGuardGap is kept free below a stack (stack_guard_gap). Default
	// 256 pages.
	StackGuardGap uint64
	// MaxMapCount limits the number of VMAs (vm.max_map_count). Default
	// 65530.
	MaxMapCount int
}

// Layout defaults.
const (
	DefaultStackMax      = 8 << 20
	DefaultMmapMin       = 0x10000
	DefaultStackGuardGap = 256 * PageSize
	DefaultMaxMapCount   = 65530
)

// withDefaults fills in zero fields and validates the rest.
func (l Layout) withDefaults() (Layout, error) {
	if l.StackTop == 0 {
		l.StackTop = TaskSize
	}
	if l.StackMax == 0 {
		l.StackMax = DefaultStackMax
	}
	if l.MmapMin == 0 {
		l.MmapMin = DefaultMmapMin
	}
	if l.StackGuardGap == 0 {
		l.StackGuardGap = DefaultStackGuardGap
	}
	if l.MaxMapCount <= 0 {
		l.MaxMapCount = DefaultMaxMapCount
	}
	l.StackMax = alignUp(l.StackMax)
	l.StackGuardGap = alignUp(l.StackGuardGap)
	if l.StackTop > TaskSize || l.StackTop&pageMask != 0 || l.StackMax == 0 ||
		l.StackGuardGap == 0 || l.MmapMin&pageMask != 0 || l.MmapMin >= TaskSize {
		return l, unix.EINVAL
	}
	if l.MmapBase == 0 {
		// Linux's mmap_base(): leave room for the stack and its guard gap.
		gap := l.StackMax + l.StackGuardGap
		gap = max(gap, 128<<20)
		gap = min(gap, TaskSize/6*5)
		if gap > l.StackTop {
			gap = l.StackTop
		}
		l.MmapBase = (l.StackTop - gap) &^ pageMask
	}
	if l.MmapBase&pageMask != 0 || l.MmapBase > TaskSize || l.MmapBase < l.MmapMin {
		return l, unix.EINVAL
	}
	return l, nil
}

// AddressSpace is the memory of one guest process: its VMAs, its page
// tables and the program break. Every method that takes guest-supplied
// addresses validates them and reports problems as a syscall.Errno; none
// panics on bad input.
//
// An AddressSpace is not safe for concurrent use: the caller serializes
// calls (Linux's mmap_lock). The vCPUs using its page tables must be
// stopped while methods run.
type AddressSpace struct {
	mem    []byte
	frames *Frames
	pt     *PageTables
	layout Layout
	vmas   vmaList

	startBrk, brk uint64 // [startBrk, brk) is the heap; 0 until SetBrkBase
	brkSet        bool
	destroyed     bool

	tsc *TSCPatch // from frames: rdtsc patching, nil when off
}

// NewAddressSpace creates an empty address space whose page tables and
// pages come from frames. mem is guest RAM.
func NewAddressSpace(mem []byte, frames *Frames, opts Layout) (*AddressSpace, error) {
	layout, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	pt, err := NewPageTables(mem, frames)
	if err != nil {
		return nil, err
	}
	return &AddressSpace{
		mem:    mem,
		frames: frames,
		pt:     pt,
		layout: layout,
		tsc:    frames.tsc,
	}, nil
}

// PageTables returns the page tables of the address space.
func (as *AddressSpace) PageTables() *PageTables { return as.pt }

// Frames returns the frame allocator the address space uses.
func (as *AddressSpace) Frames() *Frames { return as.frames }

// Layout returns the effective layout, defaults filled in.
func (as *AddressSpace) Layout() Layout { return as.layout }

// VMAs returns a sorted copy of the VMAs.
func (as *AddressSpace) VMAs() []VMA {
	out := make([]VMA, len(as.vmas.v))
	for i, v := range as.vmas.v {
		out[i] = *v
	}
	return out
}

// FindVMA returns a copy of the VMA containing addr.
func (as *AddressSpace) FindVMA(addr uint64) (VMA, bool) {
	v, _ := as.vmas.find(addr)
	if v == nil {
		return VMA{}, false
	}
	return *v, true
}

// PresentPages yields the virtual address and leaf entry of every present
// user page in [start, end), in address order. The Copied bit tells which
// file pages differ from their backing. The address space must not be
// changed during the iteration.
func (as *AddressSpace) PresentPages(start, end uint64) iter.Seq2[uint64, PTE] {
	return func(yield func(uint64, PTE) bool) {
		end = min(end, TaskSize)
		if start >= end {
			return
		}
		as.pt.Walk(start, end, yield)
	}
}

// PresentLeaves is PresentPages with each 2 MiB page given once, as n
// consecutive 4 KiB pages from va (see PageTables.WalkLeaves).
func (as *AddressSpace) PresentLeaves(start, end uint64, fn func(va uint64, pte PTE, n uint64) bool) {
	end = min(end, TaskSize)
	if start < end {
		as.pt.WalkLeaves(start, end, fn)
	}
}

// errno converts internal errors to the errno a syscall reports.
func errno(err error) error {
	var e unix.Errno
	switch {
	case err == nil:
		return nil
	case errors.As(err, &e):
		return e
	case errors.Is(err, ErrNoMemory):
		return unix.ENOMEM
	default:
		return unix.EFAULT
	}
}

// Mmap implements mmap(2). b is the file or device behind a mapping without
// MapAnonymous (nil gives EBADF); off is the file offset. With
// MapAnonymous, a b names a private mapping after its file (/dev/zero,
// which maps zero-filled memory). It returns the address of the new
// mapping.
func (as *AddressSpace) Mmap(addr, length uint64, prot Prot, flags uint32, b Backing, off uint64) (uint64, error) {
	if as.destroyed {
		return 0, unix.ENOMEM
	}
	if length == 0 {
		return 0, unix.EINVAL
	}
	var shared bool
	switch flags & mapTypeMask {
	case MapShared:
		shared = true
	case MapSharedValidate:
		if flags&^mapKnownFlags != 0 {
			return 0, unix.EOPNOTSUPP
		}
		shared = true
	case MapPrivate:
	default:
		return 0, unix.EINVAL
	}
	if off&pageMask != 0 {
		return 0, unix.EINVAL
	}
	length = alignUp(length)
	if length == 0 || length > TaskSize {
		return 0, unix.ENOMEM
	}
	anon := flags&MapAnonymous != 0
	if anon && flags&MapHugeTLB != 0 {
		return 0, unix.ENOMEM // no huge pages configured
	}

	v := &VMA{
		Prot:      prot & protRWX,
		MaxProt:   protRWX,
		Shared:    shared,
		Anonymous: anon,
		NoReserve: flags&MapNoReserve != 0,
		Locked:    flags&MapLocked != 0,
		// Linux maps MAP_STACK to VM_NOHUGEPAGE: thread stacks touch
		// little of their size.
		NoHugePage: flags&MapStack != 0,
	}
	if anon {
		v.Kind = KindAnon
		switch {
		case shared:
			v.Name = "/dev/zero (deleted)" // what Linux shows for shared anonymous memory
		case b != nil:
			v.Name = b.Name() // a private mapping of /dev/zero keeps the file's name
		}
	} else {
		if err := as.initFileVMA(v, b, off, length); err != nil {
			return 0, err
		}
	}
	if flags&MapGrowsDown != 0 {
		if !anon || shared {
			return 0, unix.EINVAL
		}
		v.GrowsDown = true
	}

	fixed := flags&(MapFixed|MapFixedNoReplace) != 0
	if fixed {
		if addr&pageMask != 0 {
			return 0, unix.EINVAL
		}
		if addr > TaskSize-length {
			return 0, unix.ENOMEM
		}
		if addr < as.layout.MmapMin {
			return 0, unix.EPERM
		}
		if flags&MapFixedNoReplace != 0 && as.vmas.overlaps(addr, addr+length) {
			return 0, unix.EEXIST
		}
	} else if a, ok := as.hugeArea(addr, length, flags, anon && !shared); ok {
		addr = a
	} else {
		var err error
		if addr, err = as.unmappedArea(addr, length, flags); err != nil {
			return 0, err
		}
	}
	if len(as.vmas.v) > as.layout.MaxMapCount {
		return 0, unix.ENOMEM
	}
	if fixed {
		if err := as.unmapRange(addr, addr+length); err != nil {
			return 0, err
		}
	}
	v.Start, v.End = addr, addr+length
	i := as.vmas.insert(v)
	as.vmas.mergeRange(i, i+1)
	if flags&(MapPopulate|MapNonBlock) == MapPopulate || v.Locked {
		_ = as.Populate(addr, length) // like Linux, failures only show up later
	}
	return addr, nil
}

// initFileVMA fills in a file or device VMA and applies the access rules
// of the open file.
func (as *AddressSpace) initFileVMA(v *VMA, b Backing, off, length uint64) error {
	if b == nil {
		return unix.EBADF
	}
	if off > 1<<63-length { // file offsets are int64
		return unix.EOVERFLOW
	}
	access := protRWX
	if ba, ok := b.(BackingAccess); ok {
		access = ba.Access()
	}
	if access&ProtRead == 0 {
		return unix.EACCES
	}
	_, device := b.(DeviceBacking)
	// A private file mapping may be written (copy on write) even through a
	// read-only descriptor; device memory is never copied, so a device
	// mapping of either kind is writable only through a writable one.
	if (v.Shared || device) && access&ProtWrite == 0 {
		if v.Prot&ProtWrite != 0 {
			return unix.EACCES
		}
		v.MaxProt &^= ProtWrite
	}
	if access&ProtExec == 0 {
		if v.Prot&ProtExec != 0 {
			return unix.EPERM
		}
		v.MaxProt &^= ProtExec
	}
	v.Backing = b
	v.Offset = off
	v.Name = b.Name()
	v.Kind = KindFile
	if d, ok := b.(DeviceBacking); ok {
		size := d.MMIOSize()
		if off > size || length > size-off {
			return unix.EINVAL
		}
		v.Kind = KindDevice
		v.DontDump = true
	}
	return nil
}

// rangeFree reports whether [start, end) can hold a new mapping chosen by
// the kernel: it overlaps no VMA and keeps the guard gap below stacks.
func (as *AddressSpace) rangeFree(start, end uint64) bool {
	i := as.vmas.search(start)
	return i == len(as.vmas.v) || end <= gapStart(as.vmas.v[i], as.layout.StackGuardGap)
}

// unmappedArea picks an address for a mapping of length bytes: the hint if
// that range is free, else the highest free range below MmapBase, else the
// lowest free range above TaskSize/3, as Linux's default top-down layout.
func (as *AddressSpace) unmappedArea(hint, length uint64, flags uint32) (uint64, error) {
	if hint != 0 {
		h := alignUp(hint)
		if h != 0 && h >= as.layout.MmapMin && h <= TaskSize-length && as.rangeFree(h, h+length) {
			return h, nil
		}
	}
	if flags&Map32Bit != 0 {
		if a, ok := as.findGapBottomUp(length, max(0x40000000, as.layout.MmapMin), 0x80000000); ok {
			return a, nil
		}
		return 0, unix.ENOMEM
	}
	if a, ok := as.findGapTopDown(length, as.layout.MmapMin, as.layout.MmapBase); ok {
		return a, nil
	}
	if a, ok := as.findGapBottomUp(length, max(taskUnmappedBase, as.layout.MmapMin), TaskSize); ok {
		return a, nil
	}
	return 0, unix.ENOMEM
}

// hugeArea places a private anonymous mapping without a hint whose
// length is a multiple of 2 MiB at a 2 MiB aligned address, when 2 MiB
// pages are on, as Linux's thp_get_unmapped_area does: it looks for a
// gap 2 MiB longer and aligns inside it (top down, an aligned gap is
// used at its top, so that the mapping can merge with the one above).
// ok false leaves the placement to unmappedArea.
func (as *AddressSpace) hugeArea(hint, length uint64, flags uint32, privAnon bool) (uint64, bool) {
	if !as.layout.HugePages || !privAnon || hint != 0 || length%HugePageSize != 0 ||
		flags&(Map32Bit|MapGrowsDown|MapStack) != 0 || length > TaskSize-HugePageSize {
		return 0, false
	}
	a, err := as.unmappedArea(0, length+HugePageSize, flags)
	if err != nil {
		return 0, false
	}
	if a&hugeMask == 0 {
		return a + HugePageSize, true
	}
	return (a + hugeMask) &^ hugeMask, true
}

// findGapTopDown returns the highest address a with [a, a+length) free and
// inside [low, high).
func (as *AddressSpace) findGapTopDown(length, low, high uint64) (uint64, bool) {
	if high <= low || high-low < length {
		return 0, false
	}
	vs := as.vmas.v
	for k := as.vmas.search(high); k >= 0; k-- {
		gapHi := high
		if k < len(vs) {
			gapHi = min(gapHi, gapStart(vs[k], as.layout.StackGuardGap))
		}
		gapLo := low
		if k > 0 {
			gapLo = max(gapLo, vs[k-1].End)
		}
		if gapHi > gapLo && gapHi-gapLo >= length {
			return gapHi - length, true
		}
		if gapLo <= low && k > 0 && vs[k-1].End <= low {
			break // every lower gap lies below low
		}
	}
	return 0, false
}

// findGapBottomUp returns the lowest address a with [a, a+length) free and
// inside [low, high).
func (as *AddressSpace) findGapBottomUp(length, low, high uint64) (uint64, bool) {
	if high <= low || high-low < length {
		return 0, false
	}
	vs := as.vmas.v
	for k := as.vmas.search(low); k <= len(vs); k++ {
		gapLo := low
		if k > 0 {
			gapLo = max(gapLo, vs[k-1].End)
		}
		gapHi := high
		if k < len(vs) {
			gapHi = min(gapHi, gapStart(vs[k], as.layout.StackGuardGap))
		}
		if gapHi > gapLo && gapHi-gapLo >= length {
			return gapLo, true
		}
		if k < len(vs) && vs[k].Start >= high {
			break
		}
	}
	return 0, false
}

// Munmap implements munmap(2). Holes in the range are fine.
func (as *AddressSpace) Munmap(addr, length uint64) error {
	if addr&pageMask != 0 || addr > TaskSize || length > TaskSize-addr {
		return unix.EINVAL
	}
	length = alignUp(length)
	if length == 0 {
		return unix.EINVAL
	}
	return as.unmapRange(addr, addr+length)
}

// unmapRange removes all mappings in [start, end) and frees their pages.
func (as *AddressSpace) unmapRange(start, end uint64) error {
	if start >= end || !as.vmas.overlaps(start, end) {
		return nil
	}
	// Punching a hole into one VMA leaves one more VMA.
	if v, _ := as.vmas.find(start); v != nil && v.Start < start && end < v.End &&
		len(as.vmas.v) >= as.layout.MaxMapCount {
		return unix.ENOMEM
	}
	i, j := as.vmas.isolate(start, end)
	as.dropPages(start, end)
	as.vmas.v = slices.Delete(as.vmas.v, i, j)
	return nil
}

// dropPages clears the PTEs of [start, end), releases their frames and
// frees page tables that become empty.
func (as *AddressSpace) dropPages(start, end uint64) {
	lo, hi, ok := linearRange(start, end)
	if !ok {
		return
	}
	as.pt.visit(lo, hi, true, func(_ uint64, e PTE) (PTE, bool) {
		as.releasePTE(e)
		return 0, false
	})
}

// releasePTE drops the frame reference a present leaf entry holds.
func (as *AddressSpace) releasePTE(e PTE) {
	if e&Special == 0 {
		as.frames.DecRef(e.Addr())
	}
}

// splitsNeeded counts how many VMAs would be split to make start and end
// VMA boundaries.
func (as *AddressSpace) splitsNeeded(start, end uint64) int {
	n := 0
	if v, _ := as.vmas.find(start); v != nil && v.Start < start {
		n++
	}
	if v, _ := as.vmas.find(end); v != nil && v.Start < end {
		n++
	}
	return n
}

// isolate splits VMAs at start and end within the map count limit.
func (as *AddressSpace) isolate(start, end uint64) (i, j int, err error) {
	// Like Linux, each split needs the count to be below the limit.
	if n := as.splitsNeeded(start, end); n > 0 && len(as.vmas.v)+n-1 >= as.layout.MaxMapCount {
		return 0, 0, unix.ENOMEM
	}
	i, j = as.vmas.isolate(start, end)
	return i, j, nil
}

// Mprotect implements mprotect(2). Unlike Linux, which may apply the change
// to the VMAs before a failing one, nothing changes when it fails.
func (as *AddressSpace) Mprotect(addr, length uint64, prot Prot) error {
	if addr&pageMask != 0 {
		return unix.EINVAL
	}
	grows := prot & (protGrowsDown | protGrowsUp)
	prot &^= grows
	if grows == protGrowsDown|protGrowsUp {
		return unix.EINVAL
	}
	if length == 0 {
		return nil // Linux returns before looking at the other prot bits
	}
	if prot&^(protRWX|protSem) != 0 {
		return unix.EINVAL
	}
	prot &= protRWX
	length = alignUp(length)
	end := addr + length
	if length == 0 || end < addr || end > TaskSize {
		return unix.ENOMEM
	}
	if grows != 0 {
		i := as.vmas.search(addr)
		if i == len(as.vmas.v) || as.vmas.v[i].Start >= end {
			return unix.ENOMEM
		}
		if grows == protGrowsUp || !as.vmas.v[i].GrowsDown {
			return unix.EINVAL
		}
		addr = as.vmas.v[i].Start
	}
	// Check the whole range first: it must be mapped without holes and
	// every VMA must allow prot.
	cur := addr
	for i := as.vmas.search(addr); cur < end; i++ {
		if i == len(as.vmas.v) || as.vmas.v[i].Start > cur {
			return unix.ENOMEM
		}
		if prot&^as.vmas.v[i].MaxProt != 0 {
			return unix.EACCES
		}
		cur = as.vmas.v[i].End
	}
	i, j, err := as.isolate(addr, end)
	if err != nil {
		return err
	}
	for _, v := range as.vmas.v[i:j] {
		if v.Prot != prot {
			if prot&ProtExec == 0 {
				as.forgetExecRange(v, v.Start, v.End)
			}
			v.Prot = prot
			as.refreshPTEs(v, v.Start, v.End)
			as.clearExecRange(v, v.Start, v.End)
		}
	}
	as.vmas.mergeRange(i, j)
	return nil
}

// refreshPTEs recomputes the leaf entries of the present pages of v in
// [start, end) from v's current attributes.
func (as *AddressSpace) refreshPTEs(v *VMA, start, end uint64) {
	lo, hi, ok := linearRange(start, end)
	if !ok {
		return
	}
	as.pt.visit(lo, hi, false, func(_ uint64, e PTE) (PTE, bool) {
		return as.leafPTE(v, e.Addr(), e), false
	})
}

// leafPTE computes the leaf entry for the page at pa of v. soft carries the
// Copied and Special bits of the page.
//
// Pages of PROT_NONE mappings stay present but without the User bit, so the
// frame is kept while every user access faults.
func (as *AddressSpace) leafPTE(v *VMA, pa uint64, soft PTE) PTE {
	e := MakePTE(pa, Present|Accessed|soft&(Copied|Special))
	if soft&Special != 0 {
		e |= PCD | PWT // MMIO is never cached
	}
	if v.Prot&protRWX == ProtNone {
		return e | NX
	}
	e |= User
	if v.Prot&ProtExec == 0 {
		e |= NX
	}
	if v.Prot&ProtWrite != 0 && as.mayWrite(v, pa, soft) {
		e |= Writable
	}
	if soft&Special == 0 && as.tscPatchable(v) {
		e = as.tscPTE(e, pa)
	}
	return e
}

// mayWrite reports whether a page of a writable VMA can be mapped writable
// right away. Clean file pages stay read-only so that the first write is
// seen (and recorded as Copied); private pages shared with another address
// space stay read-only until copied.
func (as *AddressSpace) mayWrite(v *VMA, pa uint64, soft PTE) bool {
	switch {
	case soft&Special != 0:
		return true
	case v.isFile() && soft&Copied == 0:
		return false
	case v.Shared:
		return true
	default:
		return as.frames.RefCount(pa) == 1
	}
}

// Mremap implements mremap(2).
func (as *AddressSpace) Mremap(old, oldLen, newLen uint64, flags uint32, newAddr uint64) (uint64, error) {
	if flags&^(MremapMayMove|MremapFixed|MremapDontUnmap) != 0 {
		return 0, unix.EINVAL
	}
	mayMove := flags&MremapMayMove != 0
	if flags&MremapFixed != 0 && !mayMove {
		return 0, unix.EINVAL
	}
	if flags&MremapDontUnmap != 0 && (!mayMove || oldLen != newLen) {
		return 0, unix.EINVAL
	}
	if old&pageMask != 0 {
		return 0, unix.EINVAL
	}
	oldAligned, newAligned := alignUp(oldLen), alignUp(newLen)
	if newAligned == 0 || (oldAligned == 0 && oldLen != 0) || newLen > TaskSize {
		return 0, unix.EINVAL
	}
	oldLen, newLen = oldAligned, newAligned
	if old >= TaskSize || oldLen > TaskSize-old {
		return 0, unix.EFAULT
	}
	v, _ := as.vmas.find(old)
	if v == nil || oldLen > v.End-old {
		return 0, unix.EFAULT
	}
	if oldLen == 0 {
		// Linux's "duplicate a shared mapping" special case. Only shared
		// file mappings can be duplicated here: anonymous shared memory has
		// no object both mappings could refer to.
		if !v.Shared {
			return 0, unix.EINVAL
		}
		if v.Kind != KindFile {
			return 0, unix.ENOMEM
		}
	}
	if flags&(MremapFixed|MremapDontUnmap) != 0 {
		return as.mremapTo(old, oldLen, newLen, flags, newAddr)
	}
	if oldLen >= newLen {
		if err := as.unmapRange(old+newLen, old+oldLen); err != nil {
			return 0, err
		}
		return old, nil
	}
	if v.Kind == KindDevice {
		return 0, unix.EFAULT
	}
	if old+oldLen == v.End && newLen <= TaskSize-old && !as.vmas.overlaps(v.End, old+newLen) {
		// Grow in place.
		v.End = old + newLen
		_, i := as.vmas.find(old)
		as.vmas.mergeRange(i, i+1)
		return old, nil
	}
	if !mayMove || as.tooManyToMove() {
		return 0, unix.ENOMEM
	}
	dst, err := as.unmappedArea(0, newLen, 0)
	if err != nil {
		return 0, err
	}
	return as.moveVMA(old, oldLen, newLen, dst, oldLen == 0)
}

// mremapTo handles MREMAP_FIXED and MREMAP_DONTUNMAP: the mapping always
// moves.
func (as *AddressSpace) mremapTo(old, oldLen, newLen uint64, flags uint32, newAddr uint64) (uint64, error) {
	fixed := flags&MremapFixed != 0
	if fixed {
		if newAddr&pageMask != 0 || newLen > TaskSize || newAddr > TaskSize-newLen {
			return 0, unix.EINVAL
		}
		// The ranges must not overlap; with old_size 0 the source page
		// counts, so the target cannot swallow the mapping being duplicated.
		if old+max(oldLen, PageSize) > newAddr && newAddr+newLen > old {
			return 0, unix.EINVAL
		}
		if newAddr < as.layout.MmapMin {
			return 0, unix.EPERM
		}
	}
	if v, _ := as.vmas.find(old); v.Kind == KindDevice {
		if flags&MremapDontUnmap != 0 {
			return 0, unix.EINVAL
		}
		if newLen > oldLen {
			return 0, unix.EFAULT
		}
	}
	if as.tooManyToMove() {
		return 0, unix.ENOMEM
	}
	if fixed {
		if err := as.unmapRange(newAddr, newAddr+newLen); err != nil {
			return 0, err
		}
	}
	if oldLen > newLen {
		if err := as.unmapRange(old+newLen, old+oldLen); err != nil {
			return 0, err
		}
		oldLen = newLen
	}
	dst := newAddr
	if !fixed {
		var err error
		if dst, err = as.unmappedArea(0, newLen, 0); err != nil {
			return 0, err
		}
	}
	return as.moveVMA(old, oldLen, newLen, dst, flags&MremapDontUnmap != 0)
}

// tooManyToMove applies Linux's move_vma limit: a move may need up to
// three more VMAs on the way.
func (as *AddressSpace) tooManyToMove() bool {
	return len(as.vmas.v) >= as.layout.MaxMapCount-3
}

// moveVMA moves [old, old+oldLen), which lies inside one VMA, to a new VMA
// [dst, dst+newLen) that must be free. Present pages move with their PTEs;
// no data is copied. With keepOld the old VMA stays, emptied of its pages.
func (as *AddressSpace) moveVMA(old, oldLen, newLen, dst uint64, keepOld bool) (uint64, error) {
	v, _ := as.vmas.find(old)
	if v == nil {
		// Only possible with old_size 0, when MREMAP_FIXED unmapped the
		// source itself (Linux fails the same way).
		return 0, unix.EFAULT
	}
	nv := *v
	nv.Start, nv.End = dst, dst+newLen
	if !v.Anonymous {
		nv.Offset = v.offsetOf(old)
	}
	if nv.Kind == KindHeap || nv.Kind == KindStack {
		// The labels belong to the brk area and the main stack, which stay.
		nv.Kind, nv.Name = KindAnon, ""
	}
	if err := as.movePages(old, old+oldLen, dst); err != nil {
		return 0, err
	}
	if !keepOld {
		if err := as.unmapRange(old, old+oldLen); err != nil {
			// Only a split can fail, and the map count was checked.
			return 0, err
		}
	}
	i := as.vmas.insert(&nv)
	as.vmas.mergeRange(i, i+1)
	return dst, nil
}

// movePages moves the present PTEs of [start, end) to the same offsets
// from dst. The destination must hold no present pages.
func (as *AddressSpace) movePages(start, end, dst uint64) error {
	type page struct {
		va uint64
		e  PTE
	}
	var pages []page
	as.pt.Walk(start, end, func(va uint64, e PTE) bool {
		pages = append(pages, page{va, e})
		return true
	})
	// Install at the destination first: it may need new tables, and if
	// that fails the source is still intact.
	for k, p := range pages {
		if err := as.pt.SetPTE(dst+(p.va-start), p.e); err != nil {
			for _, q := range pages[:k] {
				as.pt.Unmap(dst + (q.va - start))
			}
			return errno(err)
		}
	}
	lo, hi, ok := linearRange(start, end)
	if ok {
		as.pt.visit(lo, hi, true, func(uint64, PTE) (PTE, bool) { return 0, false })
	}
	return nil
}

// SetBrkBase sets the start of the heap (the end of the loaded program);
// it is rounded up to a page. The break starts there.
func (as *AddressSpace) SetBrkBase(addr uint64) {
	a := alignUp(addr)
	if a == 0 && addr != 0 || a > TaskSize {
		a = TaskSize
	}
	as.startBrk, as.brk, as.brkSet = a, a, true
}

// BrkRange returns the heap start and the current break.
func (as *AddressSpace) BrkRange() (start, brk uint64) { return as.startBrk, as.brk }

// Brk implements brk(2): it moves the program break to addr and returns
// the new break, or the old one if it cannot (brk(0) queries it).
func (as *AddressSpace) Brk(addr uint64) uint64 {
	if !as.brkSet || as.destroyed || addr < as.startBrk || addr > TaskSize {
		return as.brk
	}
	newTop, oldTop := alignUp(addr), alignUp(as.brk)
	switch {
	case newTop == oldTop:
		as.brk = addr
		return addr
	case addr < as.brk:
		if as.unmapRange(newTop, oldTop) != nil {
			return as.brk
		}
		as.brk = addr
		return addr
	}
	// Grow: [oldTop, newTop) must be free and leave a page (and a stack's
	// guard gap) before the next mapping.
	i := as.vmas.search(oldTop)
	if i < len(as.vmas.v) {
		next := as.vmas.v[i]
		if next.Start < newTop || newTop+PageSize > gapStart(next, as.layout.StackGuardGap) {
			return as.brk
		}
	}
	if i > 0 && as.vmas.v[i-1].End == oldTop && as.vmas.v[i-1].Kind == KindHeap {
		as.vmas.v[i-1].End = newTop
		as.vmas.mergeRange(i-1, i)
	} else {
		if len(as.vmas.v) > as.layout.MaxMapCount {
			return as.brk
		}
		as.vmas.insert(&VMA{
			Start: oldTop, End: newTop,
			Prot: ProtRead | ProtWrite, MaxProt: protRWX,
			Anonymous: true, Kind: KindHeap, Name: "[heap]",
		})
	}
	as.brk = addr
	return addr
}

// SetupStack creates the main stack: a grows-down read-write VMA
// [top-initialSize, top) named "[stack]". top == 0 means Layout.StackTop.
func (as *AddressSpace) SetupStack(top, initialSize uint64) error {
	if as.destroyed {
		return unix.ENOMEM
	}
	if top == 0 {
		top = as.layout.StackTop
	}
	size := alignUp(max(initialSize, 1))
	if top&pageMask != 0 || top > TaskSize || size == 0 || size > as.layout.StackMax ||
		size > top || top-size < as.layout.MmapMin {
		return unix.EINVAL
	}
	if as.vmas.overlaps(top-size, top) {
		return unix.EEXIST
	}
	if len(as.vmas.v) > as.layout.MaxMapCount {
		return unix.ENOMEM
	}
	as.vmas.insert(&VMA{
		Start: top - size, End: top,
		Prot: ProtRead | ProtWrite, MaxProt: protRWX,
		Anonymous: true, GrowsDown: true, Kind: KindStack, Name: "[stack]",
	})
	return nil
}

// Destroy frees every page and page table of the address space. It must
// not be used afterwards (calls fail or do nothing).
func (as *AddressSpace) Destroy() {
	if as.destroyed {
		return
	}
	as.dropPages(0, TaskSize)
	as.pt.Destroy()
	as.vmas.v = nil
	as.destroyed = true
}
