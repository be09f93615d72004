package guestmm

// Freeing emptied page tables.
//
// Linux frees the page tables that munmap leaves empty (free_pgtables);
// without that, a program that maps and unmaps one page at ever new
// addresses leaves up to three table pages behind per cycle until guest
// RAM is gone. Here the freeing is batched, because a freed table costs
// the VMM a full flush of every translation:
//
//   - A shadow MMU (PVM, or hardware KVM without EPT/NPT) keeps one shadow
//     page per guest table page and trusts the links between them. It
//     learns of a changed entry only when the guest itself writes it,
//     which the VMM arranges for leaf entries (vmm's RefreshPages) but
//     cannot arrange for the entry that linked a freed table: the path to
//     it through the recursive slot is gone with the table. Nor may the
//     frame come back as a table or as data while a stale shadow page
//     still describes it. Only dropping every shadow page (vmm's
//     FlushTLB, which TakeChanged asks for by reporting "all") is safe.
//   - That flush makes the guest fault its whole working set in again:
//     measured on PVM, about 0.5 s for a program that keeps 256 MiB in
//     use. One flush per munmap would make such a program unusable.
//
// So range operations only count the tables they leave empty (emptied),
// and Reclaim frees every empty table at once when the count reaches
// reclaimAt, or when the frame pool runs dry (AddressSpace.faultPage). The
// memory that empty tables hold meanwhile is bounded by about three
// tables per counted one: a few hundred KiB, or 1/256 of guest RAM on big
// machines.

const (
	// minReclaimBatch and reclaimFraction set reclaimAt: the larger of
	// 64 tables and 1/256 of the frame pool.
	minReclaimBatch = 64
	reclaimFraction = 256
)

// Reclaim frees every empty table of the user half (the root and the
// kernel half stay), deepest first, so that a table whose children were
// all empty goes too. It returns the number of table pages freed; when it
// is not 0, TakeChanged reports "all".
func (pt *PageTables) Reclaim() int {
	pt.emptied = 0
	if pt.destroyed {
		return 0
	}
	before := pt.tables
	// The user half is the lower half of the PML4; the recursive slot is
	// in the upper half (see SetRecursiveSlot).
	for idx := uint64(0); idx < entriesPerTable/2; idx++ {
		pt.freeEmptyBelow(pt.root+idx*8, levels-1)
	}
	return before - pt.tables
}

// freeEmptyBelow frees the empty tables under the entry at ea of a table
// at level: first those further down, then the entry's own table if it is
// empty by then.
func (pt *PageTables) freeEmptyBelow(ea uint64, level int) {
	e := pt.load(ea)
	child := e.Addr()
	if e&Present == 0 || e&PS != 0 || !pt.validTable(child) {
		return
	}
	if level > 1 {
		for idx := uint64(0); idx < entriesPerTable; idx++ {
			pt.freeEmptyBelow(child+idx*8, level-1)
		}
	}
	if pt.tableEmpty(child) {
		pt.store(ea, 0)
		pt.frames.DecRef(child)
		pt.tables--
		pt.flush, pt.all = true, true
	}
}
