package guestmm

import (
	"encoding/binary"
	"errors"

	"golang.org/x/sys/unix"
)

// Geometry of 4-level paging: four levels of 512-entry tables translate the
// low 48 bits of a virtual address; bits 63..48 must copy bit 47.
const (
	entriesPerTable = 512
	levels          = 4
	linearBits      = 48
	linearMask      = 1<<linearBits - 1
)

// errNotMapped is returned by leafEntry when a table on the way is missing.
var errNotMapped = errors.New("guestmm: no page table for address")

// errCorrupt reports a table entry that points outside guest RAM. Only a
// bug (or someone writing into the tables) can cause it; it is reported
// rather than allowed to panic.
var errCorrupt = errors.New("guestmm: page table entry points outside guest RAM")

// PageTables is an x86-64 4-level page-table hierarchy stored in guest RAM.
// Every table is a frame taken from a Frames allocator; the PML4 frame is
// the value to load into CR3.
//
// PageTables only manages table pages. The frames that leaf entries point
// to belong to the caller (normally an AddressSpace), which keeps their
// reference counts.
//
// The tables are read and written with plain memory accesses, so the vCPU
// that uses them must not run while they are being changed. Whenever a
// present leaf entry is changed or removed, NeedFlush becomes true: the VMM
// must then reload CR3 (flushing the guest TLB and any shadow paging state)
// before it resumes the guest.
//
// Table pages that munmap and mremap leave empty are freed in batches (see
// Reclaim in pagetables_free.go); the root is never freed.
type PageTables struct {
	mem       []byte
	frames    *Frames
	root      uint64
	tables    int // table pages in use, the root included
	flush     bool
	destroyed bool
	// changed lists the runs of pages whose present leaf entries changed
	// since TakeChanged, up to maxChanged runs.
	changed []PageRange
	// all means every translation must be treated as stale: changed
	// overflowed, or a table page was freed.
	all       bool
	recursive int // PML4 slot that maps the PML4 itself, or -1
	// emptied counts the tables that range operations found empty since
	// the last Reclaim (one found again counts again: that only brings the
	// next Reclaim forward); reclaimAt is the count that triggers one.
	emptied, reclaimAt int
	// deposit holds, per PD entry that maps a 2 MiB page, the table page
	// set aside for splitting it (as Linux deposits one with every
	// transparent huge page), so that a split never runs out of memory.
	deposit map[uint64]uint64
}

// maxChanged bounds the change log; past it TakeChanged reports "all".
const maxChanged = 240

// PageRange is Pages consecutive pages from Start.
type PageRange struct {
	Start, Pages uint64
}

// NewPageTables allocates an empty PML4 from frames.
func NewPageTables(mem []byte, frames *Frames) (*PageTables, error) {
	root, err := frames.Alloc()
	if err != nil {
		return nil, err
	}
	pt := &PageTables{mem: mem, frames: frames, root: root, tables: 1, recursive: -1}
	pt.reclaimAt = max(minReclaimBatch, frames.Capacity()/reclaimFraction)
	return pt, nil
}

// Root returns the physical address of the PML4, i.e. the CR3 value.
func (pt *PageTables) Root() uint64 { return pt.root }

// TablePages returns how many frames the tables occupy.
func (pt *PageTables) TablePages() int { return pt.tables }

// NeedFlush reports whether a present leaf entry was changed or removed
// since the last ClearFlush.
func (pt *PageTables) NeedFlush() bool { return pt.flush }

// ClearFlush resets NeedFlush, typically right after reloading CR3.
func (pt *PageTables) ClearFlush() { pt.flush = false }

// FlushAll reports whether the pending change needs every translation
// dropped (tables were freed), not just the changed entries refreshed.
func (pt *PageTables) FlushAll() bool { return pt.flush && pt.all }

// TakeChanged returns the runs of pages whose present leaf entries
// changed since the last call, and resets the log (and NeedFlush). all
// means: treat every translation as stale, because the log overflowed or
// because Reclaim freed table pages (see there). A changed 2 MiB entry
// appears as a page inside the recursive slot's window (see logPDE):
// rewriting the leaf entry of that page, through the recursive slot,
// rewrites the PD entry.
func (pt *PageTables) TakeChanged() (runs []PageRange, all bool) {
	runs, all = pt.changed, pt.all
	pt.changed, pt.all, pt.flush = nil, false, false
	return runs, all
}

// SetRecursiveSlot makes PML4 entry slot point at the PML4 itself
// (supervisor only, no execute), so that ring-0 code reaches every table
// entry at a fixed virtual address: the leaf entry of user address va is
// at sign-extended slot<<39 | (va>>9 & 0x7ffffffff8). Range operations
// and Reclaim never visit that slot, and a freed table makes TakeChanged
// report "all", so that the VMM never follows a path through it.
func (pt *PageTables) SetRecursiveSlot(slot int) error {
	if slot < 256 || slot >= entriesPerTable || pt.destroyed {
		return unix.EINVAL
	}
	ea := pt.root + uint64(slot)*8
	if pt.load(ea)&Present != 0 {
		return unix.EEXIST
	}
	pt.store(ea, MakePTE(pt.root, Present|Writable|NX))
	pt.recursive = slot
	return nil
}

// load reads the entry at guest-physical address ea.
func (pt *PageTables) load(ea uint64) PTE {
	return PTE(binary.LittleEndian.Uint64(pt.mem[ea : ea+8 : ea+8]))
}

// store writes the entry at guest-physical address ea.
func (pt *PageTables) store(ea uint64, e PTE) {
	binary.LittleEndian.PutUint64(pt.mem[ea:ea+8:ea+8], uint64(e))
	pt.frames.MarkWritten(ea)
}

// validTable reports whether a table page at pa lies inside guest RAM.
func (pt *PageTables) validTable(pa uint64) bool {
	return pa <= uint64(len(pt.mem)) && uint64(len(pt.mem))-pa >= PageSize && !pt.frames.inHolePA(pa)
}

// shiftOf returns the address shift of the table at level (3 = PML4, 0 = PT).
func shiftOf(level int) uint { return pageShift + 9*uint(level) }

// leafEntry returns the guest-physical address of the 4 KiB leaf entry for
// va. With create, missing intermediate tables are allocated; without it a
// missing table yields errNotMapped. A 2 MiB page on the way is split.
func (pt *PageTables) leafEntry(va uint64, create bool) (uint64, error) {
	return pt.entryAt(va, 0, create)
}

// entryAt returns the guest-physical address of the entry for va in the
// table at level stop (0: the 4 KiB leaf, 1: the page directory), walking
// down as leafEntry does.
func (pt *PageTables) entryAt(va uint64, stop int, create bool) (uint64, error) {
	if pt.destroyed {
		return 0, errNotMapped
	}
	if !Canonical(va) {
		return 0, unix.EINVAL
	}
	table := pt.root
	for level := levels - 1; level > stop; level-- {
		if !pt.validTable(table) {
			return 0, errCorrupt
		}
		ea := table + (va>>shiftOf(level))%entriesPerTable*8
		e := pt.load(ea)
		if level == 1 && e&(Present|PS) == Present|PS {
			pt.split(ea, va)
			e = pt.load(ea)
		}
		if e&Present == 0 {
			if !create {
				return 0, errNotMapped
			}
			child, err := pt.frames.Alloc()
			if err != nil {
				return 0, err
			}
			pt.tables++
			pt.store(ea, MakePTE(child, intermediateFlags))
			table = child
			continue
		}
		table = e.Addr()
	}
	if !pt.validTable(table) {
		return 0, errCorrupt
	}
	return table + (va>>shiftOf(stop))%entriesPerTable*8, nil
}

// set stores e into the leaf entry at ea (mapping va) and notes a needed
// flush when a present entry changes.
func (pt *PageTables) set(ea, va uint64, e PTE) {
	old := pt.load(ea)
	if old == e {
		return
	}
	if old&Present != 0 {
		pt.logChange(va)
	}
	pt.store(ea, e)
}

// logChange adds the page at va to the change log and asks for a flush.
func (pt *PageTables) logChange(va uint64) {
	pt.flush = true
	va &^= pageMask
	if n := len(pt.changed); n > 0 && pt.changed[n-1].Start+pt.changed[n-1].Pages<<pageShift == va {
		pt.changed[n-1].Pages++
	} else if n < maxChanged {
		pt.changed = append(pt.changed, PageRange{Start: va, Pages: 1})
	} else {
		pt.all = true
	}
}

// Map maps the 4 KiB page at va to the frame at pa with flags (Present is
// added). Missing intermediate tables are created. va must be page aligned
// and canonical, pa page aligned and below 2^52.
func (pt *PageTables) Map(va, pa uint64, flags PTE) error {
	if va&pageMask != 0 || pa&pageMask != 0 || pa > uint64(AddrMask) {
		return unix.EINVAL
	}
	return pt.SetPTE(va, MakePTE(pa, flags|Present))
}

// SetPTE stores pte as the leaf entry of the page at va, creating missing
// intermediate tables. va must be page aligned and canonical.
func (pt *PageTables) SetPTE(va uint64, pte PTE) error {
	if va&pageMask != 0 {
		return unix.EINVAL
	}
	ea, err := pt.leafEntry(va, true)
	if err != nil {
		return err
	}
	pt.set(ea, va, pte)
	return nil
}

// Unmap clears the leaf entry of the page containing va. It returns the old
// entry and whether it was present.
func (pt *PageTables) Unmap(va uint64) (old PTE, ok bool) {
	ea, err := pt.leafEntry(va, false)
	if err != nil {
		return 0, false
	}
	old = pt.load(ea)
	pt.set(ea, va, 0)
	return old, old&Present != 0
}

// Lookup returns the leaf entry of the page containing va if it is present.
// Inside a 2 MiB page it is the entry the page would have once split:
// the 2 MiB entry without PS, pointing at the 4 KiB frame of va.
func (pt *PageTables) Lookup(va uint64) (PTE, bool) {
	if e, ok := pt.hugeEntry(va); ok {
		return subPage(e, va), true
	}
	ea, err := pt.leafEntry(va, false)
	if err != nil {
		return 0, false
	}
	e := pt.load(ea)
	return e, e&Present != 0
}

// Translate returns the physical address va maps to and its leaf entry.
func (pt *PageTables) Translate(va uint64) (pa uint64, pte PTE, ok bool) {
	e, ok := pt.Lookup(va)
	if !ok {
		return 0, 0, false
	}
	return e.Addr() | va&pageMask, e, true
}

// Walk calls fn for every present leaf entry mapping a page in [start, end),
// in address order, until fn returns false. Both bounds are canonical
// addresses; end == 0 stands for the top of the address space. Only tables
// that exist are visited, so sparse ranges are cheap.
func (pt *PageTables) Walk(start, end uint64, fn func(va uint64, pte PTE) bool) {
	// Read only: 2 MiB pages are shown as their 4 KiB pages, not split.
	pt.WalkLeaves(start, end, func(va uint64, e PTE, n uint64) bool {
		for i := range n {
			if !fn(va+i*PageSize, MakePTE(e.Addr()+i*PageSize, e.Flags())) {
				return false
			}
		}
		return true
	})
}

// WalkLeaves is Walk with each 2 MiB page given once: fn gets the 4 KiB
// entry of its first page in [start, end) and n, the number of its 4 KiB
// pages there (which follow that one in virtual and physical address,
// with the same flags); a 4 KiB page comes with n = 1. A checkpoint's
// walk over memory in 2 MiB pages costs 512 times less so.
func (pt *PageTables) WalkLeaves(start, end uint64, fn func(va uint64, pte PTE, n uint64) bool) {
	lo, hi, ok := linearRange(start, end)
	if !ok || pt.destroyed {
		return
	}
	pt.leaves(pt.root, levels-1, 0, lo, hi, fn)
}

// leaves is the read-only walk of one table at level whose first entry
// maps linear address base, for WalkLeaves; it returns whether fn
// stopped the walk.
func (pt *PageTables) leaves(table uint64, level int, base, lo, hi uint64, fn func(va uint64, pte PTE, n uint64) bool) bool {
	if !pt.validTable(table) {
		return false
	}
	shift := shiftOf(level)
	first := (lo - base) >> shift
	last := (hi - 1 - base) >> shift
	for idx := first; idx <= last; idx++ {
		e := pt.load(table + idx*8)
		if e&Present == 0 {
			continue
		}
		start := base + idx<<shift
		switch {
		case level == 1 && e&PS != 0:
			va := max(lo, start)
			if !fn(signExtend(va), subPage(e, va), (min(hi, start+HugePageSize)-va)/PageSize) {
				return true
			}
		case level == 0:
			if !fn(signExtend(start), e, 1) {
				return true
			}
		case level == levels-1 && int(idx) == pt.recursive:
			// the PML4 itself
		default:
			if pt.leaves(e.Addr(), level-1, start, max(lo, start), min(hi, start+1<<shift), fn) {
				return true
			}
		}
	}
	return false
}

// linearRange converts the canonical range [start, end) to the 48-bit
// linear range the tables index.
func linearRange(start, end uint64) (lo, hi uint64, ok bool) {
	lo = start & linearMask
	if end == 0 {
		hi = 1 << linearBits
	} else {
		hi = (end-1)&linearMask + 1
	}
	if start >= end && end != 0 || lo >= hi {
		return 0, 0, false
	}
	return lo, hi, true
}

// signExtend turns a 48-bit linear address back into a canonical one.
func signExtend(lin uint64) uint64 {
	if lin&(1<<(linearBits-1)) != 0 {
		return lin | ^uint64(linearMask)
	}
	return lin
}

// visitFunc gets a present leaf entry and returns the value to store in it
// (0 removes it) and whether the walk should stop.
type visitFunc func(va uint64, e PTE) (PTE, bool)

// visit applies fn to the present leaves in the linear range [lo, hi).
// With prune (munmap, mremap) the tables the walk leaves empty are
// counted, and once reclaimAt have been, every empty table is freed (see
// Reclaim).
func (pt *PageTables) visit(lo, hi uint64, prune bool, fn visitFunc) {
	if pt.destroyed {
		return
	}
	pt.visitTable(pt.root, levels-1, 0, lo, hi, fn, prune)
	if prune && pt.emptied >= pt.reclaimAt {
		pt.Reclaim()
	}
}

// visitTable walks one table at level whose first entry maps linear
// address base, applying fn to the present leaves in [lo, hi). With
// countEmpty, every child table that is empty after its part of the walk
// adds to emptied. It returns whether fn stopped the walk.
//
// A 2 MiB page in the range is split first (see split), unless it lies
// wholly inside it (visitWholeHuge).
func (pt *PageTables) visitTable(table uint64, level int, base, lo, hi uint64, fn visitFunc, countEmpty bool) (stop bool) {
	if !pt.validTable(table) {
		return false
	}
	shift := shiftOf(level)
	first := (lo - base) >> shift
	last := (hi - 1 - base) >> shift
	for idx := first; idx <= last; idx++ {
		ea := table + idx*8
		e := pt.load(ea)
		if e&Present == 0 {
			continue
		}
		start := base + idx<<shift
		if level == 1 && e&PS != 0 {
			if lo <= start && start+HugePageSize <= hi {
				if pt.visitWholeHuge(ea, start, e, fn) {
					return true
				}
				continue
			}
			pt.split(ea, signExtend(start))
			e = pt.load(ea)
		}
		if level == 0 {
			ne, st := fn(signExtend(start), e)
			if ne != e {
				pt.set(ea, signExtend(start), ne)
			}
			if st {
				return true
			}
			continue
		}
		if level == levels-1 && int(idx) == pt.recursive {
			continue // the PML4 itself
		}
		end := start + 1<<shift
		child := e.Addr()
		st := pt.visitTable(child, level-1, start, max(lo, start), min(hi, end), fn, countEmpty)
		if countEmpty && pt.tableEmpty(child) {
			pt.emptied++
		}
		if st {
			return true
		}
	}
	return false
}

// visitWholeHuge applies fn to the 512 pages of the 2 MiB entry e at ea
// (mapping linear address start), all inside the visited range. When fn
// clears them all (munmap, MADV_DONTNEED, the source of an mremap) the
// entry goes away without a split, its deposited table is freed (it was
// never a table the MMU saw) and the 2 MiB can be a 2 MiB page again.
// When fn makes the same change to every page (mprotect of all of it)
// the 2 MiB entry is changed in place; when it changes nothing, nothing
// happens; otherwise the page is split and fn's results stored. It
// returns whether fn stopped the walk.
func (pt *PageTables) visitWholeHuge(ea, start uint64, e PTE, fn visitFunc) (stop bool) {
	var results [entriesPerTable]PTE
	n := 0
	cleared := true
	for ; n < entriesPerTable; n++ {
		va := start + uint64(n)*PageSize
		old := subPage(e, va)
		ne, st := fn(signExtend(va), old)
		results[n] = ne
		cleared = cleared && ne == 0
		if st {
			stop = true
			n++
			break
		}
	}
	if cleared && n == entriesPerTable {
		pt.store(ea, 0)
		pt.frames.DecRef(pt.deposit[ea])
		delete(pt.deposit, ea)
		pt.tables--
		pt.logPDE(signExtend(start))
		return stop
	}
	changed := false
	for i := 0; i < n; i++ {
		changed = changed || results[i] != subPage(e, start+uint64(i)*PageSize)
	}
	if !changed {
		return stop
	}
	if n == entriesPerTable && results[0]&Present != 0 {
		// The same change for every page (mprotect of the whole 2 MiB):
		// still one 2 MiB page.
		whole := MakePTE(e.Addr(), results[0].Flags()|PS)
		same := results[0].Addr() == e.Addr()
		for i := 1; same && i < n; i++ {
			same = results[i] == subPage(whole, start+uint64(i)*PageSize)
		}
		if same {
			pt.store(ea, whole)
			pt.logPDE(signExtend(start))
			return stop
		}
	}
	pt.split(ea, signExtend(start))
	t := pt.load(ea).Addr()
	for i := 0; i < n; i++ {
		va := start + uint64(i)*PageSize
		pt.set(t+uint64(i)*8, signExtend(va), results[i])
	}
	return stop
}

// tableEmpty reports whether no entry of the table is in use.
func (pt *PageTables) tableEmpty(table uint64) bool {
	if !pt.validTable(table) {
		return false
	}
	page := pt.mem[table : table+PageSize]
	for i := 0; i < PageSize; i += 8 {
		if binary.LittleEndian.Uint64(page[i:]) != 0 {
			return false
		}
	}
	return true
}

// Destroy frees every table page, the PML4 included. Frames that leaf
// entries point to are not touched. The PageTables must not be used after.
func (pt *PageTables) Destroy() {
	if pt.destroyed {
		return
	}
	pt.freeTable(pt.root, levels-1)
	pt.destroyed = true
	pt.tables = 0
	pt.flush = true
}

func (pt *PageTables) freeTable(table uint64, level int) {
	if !pt.validTable(table) {
		return
	}
	if level > 0 {
		for idx := uint64(0); idx < entriesPerTable; idx++ {
			if level == levels-1 && int(idx) == pt.recursive {
				continue
			}
			e := pt.load(table + idx*8)
			if level == 1 && e&PS != 0 {
				// A 2 MiB page: its frames belong to the caller; only
				// the deposited table is ours.
				pt.frames.DecRef(pt.deposit[table+idx*8])
				delete(pt.deposit, table+idx*8)
				continue
			}
			if e&Present != 0 {
				pt.freeTable(e.Addr(), level-1)
			}
		}
	}
	pt.frames.DecRef(table)
}

// pdEntry returns the guest-physical address of the page-directory entry
// for va, creating the PDPT and PD on the way.
func (pt *PageTables) pdEntry(va uint64) (uint64, error) {
	return pt.entryAt(va, 1, true)
}

// hugeEntry returns the 2 MiB entry that maps va, if there is one.
func (pt *PageTables) hugeEntry(va uint64) (PTE, bool) {
	_, e, ok := pt.hugeEntryAt(va)
	return e, ok
}

// hugeEntryAt returns the address and value of the 2 MiB entry that maps
// va, if there is one.
func (pt *PageTables) hugeEntryAt(va uint64) (ea uint64, e PTE, ok bool) {
	if pt.destroyed || len(pt.deposit) == 0 || !Canonical(va) {
		return 0, 0, false
	}
	table := pt.root
	for level := levels - 1; level > 0; level-- {
		if !pt.validTable(table) {
			return 0, 0, false
		}
		ea = table + (va>>shiftOf(level))%entriesPerTable*8
		e = pt.load(ea)
		if e&Present == 0 {
			return 0, 0, false
		}
		if level == 1 {
			return ea, e, e&PS != 0
		}
		table = e.Addr()
	}
	return 0, 0, false
}

// setHuge changes the 2 MiB entry at ea, which maps va, to e.
func (pt *PageTables) setHuge(ea, va uint64, e PTE) {
	if pt.load(ea) != e {
		pt.store(ea, e|PS)
		pt.logPDE(va &^ hugeMask)
	}
}

// subPage is the 4 KiB leaf entry for va inside the 2 MiB page of e.
func subPage(e PTE, va uint64) PTE {
	return MakePTE(e.Addr()+va&hugeMask&^pageMask, e.Flags()&^PS)
}

// mapHuge maps the 2 MiB page at va (2 MiB aligned) to the HugeFrames
// frames at pa (2 MiB aligned) with leaf entry flags e (PS is added),
// if the page-directory entry for va is empty; a PD entry that points
// to a page table, even an empty one, is left alone (ok false). It
// allocates the table deposited for a later split; err reports that it
// or the tables on the way could not be allocated.
func (pt *PageTables) mapHuge(va, pa uint64, flags PTE) (ok bool, err error) {
	if va&hugeMask != 0 || pa&hugeMask != 0 || pa > uint64(AddrMask) {
		return false, unix.EINVAL
	}
	ea, err := pt.pdEntry(va)
	if err != nil {
		return false, err
	}
	if pt.load(ea)&Present != 0 {
		return false, nil
	}
	t, err := pt.frames.Alloc()
	if err != nil {
		return false, err
	}
	if pt.deposit == nil {
		pt.deposit = make(map[uint64]uint64)
	}
	pt.deposit[ea] = t
	pt.tables++
	pt.store(ea, MakePTE(pa, flags|Present|PS))
	return true, nil
}

// hugeFree reports whether the PD entry for va (2 MiB aligned) is empty,
// so that mapHuge could use it, without creating anything.
func (pt *PageTables) hugeFree(va uint64) bool {
	if pt.destroyed || !Canonical(va) {
		return false
	}
	table := pt.root
	for level := levels - 1; level > 0; level-- {
		if !pt.validTable(table) {
			return false
		}
		e := pt.load(table + (va>>shiftOf(level))%entriesPerTable*8)
		if e&Present == 0 {
			return true
		}
		if level == 1 {
			return false
		}
		table = e.Addr()
	}
	return false
}

// split turns the 2 MiB entry at ea, which maps va, into a page table
// (the deposited one) of 512 leaf entries with the same frames and
// flags. The translation does not change, but the shadow MMU and the TLB
// may hold the 2 MiB mapping, which later changes of the 4 KiB entries
// must not leave behind: the PD entry is logged for refresh (see
// logPDE).
func (pt *PageTables) split(ea, va uint64) {
	e := pt.load(ea)
	t, ok := pt.deposit[ea]
	if !ok {
		panic("guestmm: 2 MiB page without a deposited table")
	}
	delete(pt.deposit, ea)
	flags := e.Flags() &^ PS
	for i := uint64(0); i < entriesPerTable; i++ {
		pt.store(t+i*8, MakePTE(e.Addr()+i*PageSize, flags))
	}
	pt.store(ea, MakePTE(t, intermediateFlags))
	pt.logPDE(va)
}

// logPDE records that the present PD entry of the 2 MiB at va changed.
// The change log holds leaf entries by the pages they map; the refresh
// finds the leaf entry of page p at recursive(p), the address the
// recursive slot shows it at. The PD entry of va is the leaf entry of
// recursive(va), so it is logged as the page recursive(va): the refresh
// rewrites it through the PD page, which the shadow MMU write-protects
// like every table it uses, and so drops what it derived from the old
// entry. The run comes before those of the entry's 4 KiB pages, which
// the refresh must reach through the new table. Without a recursive
// slot every translation is treated as stale.
func (pt *PageTables) logPDE(va uint64) {
	pt.flush = true
	if pt.recursive < 0 {
		pt.all = true
		return
	}
	lin := uint64(pt.recursive)<<shiftOf(levels-1) | (va&linearMask)>>9&^7
	pt.logChange(signExtend(lin))
}

// HugePages returns how many 2 MiB pages are mapped.
func (pt *PageTables) HugePages() int { return len(pt.deposit) }
