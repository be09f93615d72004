package guestmm

import (
	"fmt"
	"strings"
)

// PTE is an x86-64 page-table entry. The same layout is used at every level
// of the 4-level hierarchy; only leaf (4 KiB) entries carry the caching and
// software bits.
type PTE uint64

// Hardware bits of a PTE (Intel SDM vol. 3, "4-level paging").
const (
	Present  PTE = 1 << 0  // the entry maps something
	Writable PTE = 1 << 1  // writes allowed
	User     PTE = 1 << 2  // CPL3 may access
	PWT      PTE = 1 << 3  // page-level write-through
	PCD      PTE = 1 << 4  // page-level cache disable
	Accessed PTE = 1 << 5  // set by the CPU on access
	Dirty    PTE = 1 << 6  // set by the CPU on write (leaf only)
	PS       PTE = 1 << 7  // 2 MiB page in a PD entry (1 GiB pages are never created)
	Global   PTE = 1 << 8  // not flushed on CR3 reload (leaf only)
	NX       PTE = 1 << 63 // instruction fetches not allowed

	// AddrMask selects the physical address bits 12..51.
	AddrMask PTE = 0x000f_ffff_ffff_f000
)

// Software bits: bits 9..11 are ignored by the CPU and free for the OS.
const (
	// Copied marks a page of a file mapping whose contents may differ from
	// its Backing because it was written (copy on write, WriteForce, or a
	// write to a shared file mapping). A checkpoint must save such pages;
	// clean file pages can be read back from the file.
	Copied PTE = 1 << 9
	// Special marks an entry that does not point at a reference-counted RAM
	// frame (device MMIO). Such entries are never copied on write and the
	// frame allocator is not told when they go away.
	Special PTE = 1 << 10
)

// intermediateFlags are the flags of PML4, PDPT and PD entries: everything
// allowed, so that the leaf alone decides the access rights.
const intermediateFlags = Present | Writable | User

// MakePTE builds an entry that maps the frame at pa with flags.
func MakePTE(pa uint64, flags PTE) PTE {
	return PTE(pa)&AddrMask | flags&^AddrMask
}

// Addr returns the physical address the entry points to.
func (p PTE) Addr() uint64 { return uint64(p & AddrMask) }

// Resident reports whether a present page counts as resident in the
// process's RSS, smaps and mincore: every page mapped here has the
// accessed bit, except the anonymous pages fault-around mapped ahead of
// the guest, until the guest touches them (Linux maps none of those).
func (p PTE) Resident() bool { return p&(Present|Accessed) == Present|Accessed }

// Flags returns the entry without its address bits.
func (p PTE) Flags() PTE { return p &^ AddrMask }

// Has reports whether all bits of f are set in p.
func (p PTE) Has(f PTE) bool { return p&f == f }

// String renders the entry for debugging, e.g. "0x1000[P W U NX]".
func (p PTE) String() string {
	names := []struct {
		bit  PTE
		name string
	}{
		{Present, "P"}, {Writable, "W"}, {User, "U"}, {PWT, "PWT"}, {PCD, "PCD"},
		{Accessed, "A"}, {Dirty, "D"}, {PS, "PS"}, {Global, "G"},
		{Copied, "COPIED"}, {Special, "SPECIAL"}, {NX, "NX"},
	}
	var parts []string
	for _, n := range names {
		if p&n.bit != 0 {
			parts = append(parts, n.name)
		}
	}
	return fmt.Sprintf("%#x[%s]", p.Addr(), strings.Join(parts, " "))
}

// Canonical reports whether va is a canonical 48-bit virtual address: bits
// 63..47 are all equal.
func Canonical(va uint64) bool {
	top := va >> 47
	return top == 0 || top == 1<<17-1
}
