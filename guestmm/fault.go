package guestmm

import (
	"errors"
	"io"
	"math"

	"golang.org/x/sys/unix"
)

// Bits of the x86 #PF error code.
const (
	PFPresent  = 1 << 0 // the page was present: a protection violation
	PFWrite    = 1 << 1 // the access was a write
	PFUser     = 1 << 2 // the access came from CPL3
	PFReserved = 1 << 3 // a reserved bit was set in a paging entry
	PFInstr    = 1 << 4 // the access was an instruction fetch
)

// si_code values of the signals a fault can raise.
const (
	SegvMapErr int32 = 1 // SEGV_MAPERR: no mapping at the address
	SegvAccErr int32 = 2 // SEGV_ACCERR: the mapping forbids the access
	BusAdrErr  int32 = 2 // BUS_ADRERR: the backing could not provide the page
)

// FaultResult is the outcome of HandleFault.
type FaultResult struct {
	// Resolved means the page is now mapped; the guest can retry the access.
	Resolved bool
	// Signal is the signal to deliver when not resolved: SIGSEGV, SIGBUS
	// (the backing failed) or SIGKILL (guest RAM is exhausted, where Linux
	// would invoke the OOM killer, or the error code reports a reserved-bit
	// violation, which means the page tables are malformed).
	Signal unix.Signal
	// Code is the si_code for Signal (SegvMapErr, SegvAccErr, BusAdrErr).
	Code int32
	// Addr is the faulting address (si_addr).
	Addr uint64
}

// errBus is returned by faultPage when the backing cannot supply a page.
var errBus = errors.New("guestmm: backing cannot supply page")

// HandleFault resolves a guest page fault at va with x86 error code
// errorCode (PFPresent, PFWrite, PFUser, PFInstr). It either maps the page
// (demand paging, copy on write, stack growth) or says which signal the
// process gets.
func (as *AddressSpace) HandleFault(va uint64, errorCode uint64) FaultResult {
	write := errorCode&PFWrite != 0
	fetch := errorCode&PFInstr != 0
	if errorCode&PFReserved != 0 {
		// The tables themselves are malformed (for instance NX used while
		// EFER.NXE is off). Retrying would fault forever; Linux kills the
		// process in that case.
		return FaultResult{Signal: unix.SIGKILL, Addr: va}
	}
	if va >= TaskSize {
		return FaultResult{Signal: unix.SIGSEGV, Code: SegvMapErr, Addr: va}
	}
	v := as.vmaForAccess(va)
	if v == nil {
		return FaultResult{Signal: unix.SIGSEGV, Code: SegvMapErr, Addr: va}
	}
	if !accessAllowed(v.Prot, write, fetch) {
		return FaultResult{Signal: unix.SIGSEGV, Code: SegvAccErr, Addr: va}
	}
	if as.faultHuge(v, va) || write && as.reuseHuge(v, va) {
		return FaultResult{Resolved: true, Addr: va}
	}
	switch err := as.faultPage(v, va&^pageMask, write); {
	case err == nil:
		if !write && (fetch || v.Prot&ProtWrite == 0) && as.tscPatchable(v) {
			as.clearExec(v, va&^pageMask)
		}
		as.faultAround(v, va&^pageMask, write)
		return FaultResult{Resolved: true, Addr: va}
	case errors.Is(err, unix.ENOMEM):
		return FaultResult{Signal: unix.SIGKILL, Addr: va}
	default:
		return FaultResult{Signal: unix.SIGBUS, Code: BusAdrErr, Addr: va}
	}
}

// accessAllowed applies x86 Linux's rules: writes need PROT_WRITE,
// instruction fetches PROT_EXEC, and reads any permission (x86 cannot map
// a page write-only or execute-only).
func accessAllowed(prot Prot, write, fetch bool) bool {
	switch {
	case write:
		return prot&ProtWrite != 0
	case fetch:
		return prot&ProtExec != 0
	default:
		return prot&protRWX != 0
	}
}

// vmaForAccess returns the VMA an access to va belongs to, growing a stack
// down to va when va lies in the gap below a grows-down VMA.
func (as *AddressSpace) vmaForAccess(va uint64) *VMA {
	v, i := as.vmas.find(va)
	if v != nil {
		return v
	}
	if i == len(as.vmas.v) || !as.vmas.v[i].GrowsDown {
		return nil
	}
	return as.growStack(i, va)
}

// growStack extends the grows-down VMA at index i down to the page of va,
// within StackMax and keeping the guard gap to the VMA below.
func (as *AddressSpace) growStack(i int, va uint64) *VMA {
	v := as.vmas.v[i]
	newStart := va &^ pageMask
	if newStart < as.layout.MmapMin || v.End-newStart > as.layout.StackMax {
		return nil
	}
	if i > 0 {
		prev := as.vmas.v[i-1]
		if !prev.GrowsDown && prev.Prot&protRWX != 0 && newStart-prev.End < as.layout.StackGuardGap {
			return nil
		}
	}
	v.Start = newStart
	if i > 0 && canMerge(as.vmas.v[i-1], v) {
		// Grew into an identical grows-down mapping below.
		as.vmas.mergeRange(i, i)
		v, _ = as.vmas.find(newStart)
	}
	return v
}

// faultPage makes the page at pva (page aligned, inside v) present, and
// with write also privately writable: a shared frame is copied and a file
// page is marked Copied. It does not check v.Prot; callers do. When guest
// RAM runs out it frees the empty page tables (PageTables.Reclaim) and
// tries once more.
func (as *AddressSpace) faultPage(v *VMA, pva uint64, write bool) error {
	err := as.faultPageOnce(v, pva, write)
	if errors.Is(err, unix.ENOMEM) && as.pt.Reclaim() > 0 {
		err = as.faultPageOnce(v, pva, write)
	}
	return err
}

func (as *AddressSpace) faultPageOnce(v *VMA, pva uint64, write bool) error {
	ea, err := as.pt.leafEntry(pva, true)
	if err != nil {
		return errno(err)
	}
	e := as.pt.load(ea)
	if e&Present == 0 {
		return as.faultIn(v, pva, ea, write)
	}
	pa := e.Addr()
	soft := e & (Copied | Special)
	if write && e&Special == 0 {
		if v.isFile() {
			soft |= Copied
		}
		if !v.Shared && as.frames.RefCount(pa) > 1 {
			// Copy on write: the frame is also mapped by another address space.
			npa, _, err := as.frames.alloc()
			if err != nil {
				return unix.ENOMEM
			}
			PrepareWrite(as.mem[npa : npa+PageSize])
			copy(as.mem[npa:npa+PageSize], as.mem[pa:pa+PageSize])
			as.tsc.unpatchCopy(pa, npa)
			as.frames.DecRef(pa)
			pa = npa
		} else {
			// Written in place: the program's own bytes first.
			as.tsc.forget(pa)
		}
	}
	// Also repairs a present entry that is merely stale.
	as.pt.set(ea, pva, as.leafPTE(v, pa, soft))
	return nil
}

// hugeEligible reports whether anonymous memory of v may be mapped in
// 2 MiB pages, as Linux's transparent huge pages in mode "always" would:
// private anonymous memory (heap included) that is not a grows-down
// stack, not MADV_NOHUGEPAGE and, here, not executable (rdtsc patching
// works on 4 KiB pages).
func (as *AddressSpace) hugeEligible(v *VMA) bool {
	return as.layout.HugeEligible(v)
}

// HugeEligible reports whether anonymous memory of v may be mapped in
// 2 MiB pages under layout l (see hugeEligible); a restore uses it to
// place page data (InstallHugePage).
func (l Layout) HugeEligible(v *VMA) bool {
	return l.HugePages && v.Anonymous && !v.Shared && !v.GrowsDown &&
		!v.NoHugePage && v.Prot&ProtExec == 0 && v.Prot&protRWX != ProtNone
}

// faultHuge maps the 2 MiB aligned page around va with fresh zero
// frames when it lies wholly inside v, v allows it (hugeEligible), no
// page table exists there yet and guest RAM has room to spare (see
// hugeReserve). It reports whether it did; otherwise the caller maps a
// single page.
func (as *AddressSpace) faultHuge(v *VMA, va uint64) bool {
	base := va &^ hugeMask
	if !as.hugeEligible(v) || base < v.Start || v.End-base < HugePageSize || !as.pt.hugeFree(base) {
		return false
	}
	if free := as.frames.Capacity() - as.frames.Used(); free < HugeFrames+hugeReserve(as.frames.Capacity()) {
		return false
	}
	pa, err := as.frames.AllocHuge()
	if err != nil {
		return false
	}
	ok, err := as.pt.mapHuge(base, pa, as.leafPTE(v, pa, 0))
	if !ok || err != nil {
		for i := uint64(0); i < HugeFrames; i++ {
			as.frames.DecRef(pa + i*PageSize)
		}
		return false
	}
	return true
}

// reuseHuge makes the read-only 2 MiB page at va writable in place on a
// write fault when every one of its frames is the process's own again
// (the other side of a fork has exited or written its own copies), as
// Linux reuses an exclusive huge page instead of copying or splitting.
func (as *AddressSpace) reuseHuge(v *VMA, va uint64) bool {
	if v.Prot&ProtWrite == 0 || v.Shared || !v.Anonymous || as.tscPatchable(v) {
		return false
	}
	ea, e, ok := as.pt.hugeEntryAt(va)
	if !ok || e&(User|Writable) != User {
		return false
	}
	for i := uint64(0); i < HugeFrames; i++ {
		if as.frames.RefCount(e.Addr()+i*PageSize) != 1 {
			return false
		}
	}
	as.pt.setHuge(ea, va, e|Writable)
	return true
}

// hugeReserve is how many frames a 2 MiB page must leave free: 1/16 of
// guest RAM, at least 4 MiB. Linux splits underused huge pages when
// memory runs short; here none is split for that, so a nearly full
// guest uses 4 KiB pages, which a program touching memory sparsely
// fills far more slowly.
func hugeReserve(capacity int) int {
	return max(capacity/16, 2*HugeFrames)
}

// faultAround fills the empty slots of the aligned Layout.FaultAround
// block around pva, inside v, after a fault at pva: fresh zero pages in
// anonymous memory, and after a read fault in a file mapping the file's
// pages up to the page holding its end, as Linux's fault_around_bytes
// maps the neighbouring pages of its page cache. File pages are mapped
// as a read fault would map them (read-only until written in a private
// mapping). Shared mappings of PageCache files are left alone (their
// holes would become pages of the file), and so are device mappings.
// Frames run out quietly: these pages are an optimization, not a promise.
func (as *AddressSpace) faultAround(v *VMA, pva uint64, write bool) {
	n := as.layout.FaultAround
	// A locked VMA is populated when it is locked, unless it locks on
	// fault, where only the pages touched may come in (and be locked).
	if n <= 1 || n&(n-1) != 0 || v.Locked || v.Kind == KindDevice || v.Kind == KindVVar || v.Prot&protRWX == ProtNone {
		return
	}
	file := v.isFile()
	if file {
		if _, pc := v.Backing.(PageCache); write || pc && v.Shared {
			return
		}
	}
	block := n * PageSize
	lo := max(pva&^(block-1), v.Start)
	hi := min(pva&^(block-1)+block, v.End)
	for p := lo; p < hi; p += PageSize {
		if p == pva {
			continue
		}
		ea, err := as.pt.leafEntry(p, true)
		if err != nil || as.pt.load(ea)&Present != 0 {
			continue
		}
		if file {
			if err := as.faultIn(v, p, ea, false); err != nil {
				if p > pva || errors.Is(err, unix.ENOMEM) {
					return // past the end of the file, or out of frames
				}
			}
			continue
		}
		pa, err := as.frames.Alloc()
		if err != nil {
			return
		}
		// Without the accessed bit until the guest touches the page (the
		// CPU sets it then): Linux maps no anonymous page around a fault,
		// so until then it is not resident (Resident).
		as.pt.set(ea, p, as.leafPTE(v, pa, 0)&^Accessed)
	}
}

// markResident sets the accessed bit of the present page at pva, which a
// page fault-around mapped ahead of the guest lacks: populating it makes
// it resident (PTE.Resident), as Linux's populate faults it in.
func (as *AddressSpace) markResident(pva uint64) {
	if ea, err := as.pt.leafEntry(pva, false); err == nil {
		if e := as.pt.load(ea); e&Present != 0 && e&Accessed == 0 {
			as.pt.set(ea, pva, e|Accessed)
		}
	}
}

// faultIn installs a page into the empty leaf entry at ea.
func (as *AddressSpace) faultIn(v *VMA, pva, ea uint64, write bool) error {
	switch v.Kind {
	case KindDevice:
		d, ok := v.Backing.(DeviceBacking)
		if !ok {
			return errBus
		}
		off := v.offsetOf(pva)
		if off >= d.MMIOSize() || d.MMIOBase() > uint64(AddrMask)-off {
			return errBus
		}
		as.pt.set(ea, pva, as.leafPTE(v, d.MMIOBase()+off, Special))
		return nil

	case KindVVar:
		pc, ok := v.Backing.(PageCache)
		if !ok {
			return errBus
		}
		pa, err := pc.Frame(v.offsetOf(pva))
		if err != nil {
			return errBus
		}
		as.pt.set(ea, pva, as.leafPTE(v, pa, 0))
		return nil

	case KindFile:
		if pc, ok := v.Backing.(PageCache); ok && v.Shared {
			pa, err := pc.Frame(v.offsetOf(pva))
			if err != nil {
				return errBus
			}
			// The file's own frame: marked Copied so that a writable
			// VMA maps it writable at once (nothing is copied).
			as.pt.set(ea, pva, as.leafPTE(v, pa, Copied))
			return nil
		}
		pa, _, err := as.frames.alloc()
		if err != nil {
			return unix.ENOMEM
		}
		page := as.mem[pa : pa+PageSize]
		PrepareWrite(page) // the backing may copy or clear
		off := v.offsetOf(pva)
		n := 0
		if off <= math.MaxInt64-PageSize {
			n, err = v.Backing.ReadAt(page, int64(off))
			if n < 0 || n > PageSize {
				n = 0
			}
			if err != nil && err != io.EOF && n < PageSize || n == 0 && err == io.EOF {
				// A page wholly past the end of the file is SIGBUS
				// (BUS_ADRERR), as on Linux; only the tail of the last
				// page reads as zeros.
				as.frames.DecRef(pa)
				return errBus
			}
		}
		clear(page[n:]) // past end of file; ReadAt may also have scribbled there
		var soft PTE
		if write {
			soft = Copied
		}
		as.pt.set(ea, pva, as.leafPTE(v, pa, soft))
		return nil

	default: // anonymous memory: a fresh zero page
		pa, err := as.frames.Alloc()
		if err != nil {
			return unix.ENOMEM
		}
		as.pt.set(ea, pva, as.leafPTE(v, pa, 0))
		return nil
	}
}

// Populate faults in every page of [va, va+length) like MAP_POPULATE:
// writable private mappings are populated for writing, PROT_NONE mappings
// are skipped. It returns ENOMEM for unmapped holes or when memory runs
// out, EFAULT when a backing fails.
func (as *AddressSpace) Populate(va, length uint64) error {
	start := va &^ pageMask
	end := va + length
	if length == 0 {
		return nil
	}
	if end < va || end > TaskSize {
		return unix.ENOMEM
	}
	end = alignUp(end)
	holes, err := as.eachPiece(start, end, func(v *VMA, lo, hi uint64) error {
		if v.Prot&protRWX == ProtNone {
			return nil
		}
		write := v.Prot&ProtWrite != 0 && !v.Shared
		return as.populateRange(v, lo, hi, write)
	})
	if err != nil {
		return err
	}
	if holes {
		return unix.ENOMEM
	}
	return nil
}

// populateRange faults in [lo, hi) of v; pages already mapped as wanted
// are skipped cheaply. Where v allows 2 MiB pages, each 2 MiB aligned
// block of the range that is still empty gets one.
func (as *AddressSpace) populateRange(v *VMA, lo, hi uint64, write bool) error {
	for pva := lo; pva < hi; pva += PageSize {
		if pva&hugeMask == 0 && hi-pva >= HugePageSize && as.faultHuge(v, pva) {
			pva += HugePageSize - PageSize
			continue
		}
		if e, ok := as.pt.Lookup(pva); ok && (!write || e&Writable != 0 || e&Special != 0) {
			if e&Accessed == 0 {
				as.markResident(pva)
			}
			continue
		}
		if err := as.faultPage(v, pva, write); err != nil {
			if errors.Is(err, unix.ENOMEM) {
				return unix.ENOMEM
			}
			return unix.EFAULT
		}
	}
	return nil
}

// eachPiece calls fn, in address order, for the part [lo, hi) of every VMA
// that overlaps [start, end). fn may split or merge VMAs; the walk goes on
// at hi. It reports whether the range had unmapped holes.
func (as *AddressSpace) eachPiece(start, end uint64, fn func(v *VMA, lo, hi uint64) error) (holes bool, err error) {
	cur := start
	for cur < end {
		i := as.vmas.search(cur)
		if i == len(as.vmas.v) || as.vmas.v[i].Start >= end {
			return true, nil
		}
		v := as.vmas.v[i]
		if v.Start > cur {
			holes = true
		}
		lo, hi := max(v.Start, cur), min(v.End, end)
		if err := fn(v, lo, hi); err != nil {
			return holes, err
		}
		cur = hi
	}
	return holes, nil
}
