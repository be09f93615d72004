package guestmm

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The tests in this file cover the freeing of page tables that munmap and
// mremap leave empty (issue 7, part 4: a guest that maps and unmaps one
// page at a new 1 GiB-aligned address, over and over, used to run out of
// memory because every such cycle left three table pages behind).

const (
	gib = 1 << 30
	// testRecursiveSlot is the PML4 slot that maps the PML4 itself, as
	// vmm.MapKernel sets it up.
	testRecursiveSlot = 510
)

// newRecursivePT returns page tables with a recursive slot and one
// kernel-half page, like the ones the VMM runs a guest on.
func newRecursivePT(t *testing.T, ramPages int) (*Frames, *PageTables) {
	t.Helper()
	_, f, pt := newTestPT(t, ramPages)
	require.NoError(t, pt.Map(kernelHalf, 0x200000, Writable))
	require.NoError(t, pt.SetRecursiveSlot(testRecursiveSlot))
	pt.TakeChanged()
	return f, pt
}

func TestReclaimFreesEmptyTables(t *testing.T) {
	tests := []struct {
		name     string
		mapped   []uint64 // pages mapped before the prune
		lo, hi   uint64   // the range pruned
		emptied  int      // tables the prune counts as empty
		wantRuns []PageRange
		freed    int // table pages Reclaim frees
	}{
		{
			name:   "the only page of a 1 GiB region: PT, PD and PDPT go",
			mapped: []uint64{gib}, lo: gib, hi: gib + PageSize,
			emptied: 1, wantRuns: []PageRange{{Start: gib, Pages: 1}}, freed: 3,
		},
		{
			name:   "a neighbour in the same PT keeps every table",
			mapped: []uint64{gib, gib + PageSize}, lo: gib, hi: gib + PageSize,
			emptied: 0, wantRuns: []PageRange{{Start: gib, Pages: 1}}, freed: 0,
		},
		{
			name:   "a neighbour in another PT of the same PD keeps the PD",
			mapped: []uint64{gib, gib + 2<<20}, lo: gib, hi: gib + PageSize,
			emptied: 1, wantRuns: []PageRange{{Start: gib, Pages: 1}}, freed: 1,
		},
		{
			name:   "a neighbour in another PD of the same PDPT keeps the PDPT",
			mapped: []uint64{gib, 2 * gib}, lo: gib, hi: gib + PageSize,
			emptied: 1, wantRuns: []PageRange{{Start: gib, Pages: 1}}, freed: 2,
		},
		{
			name:   "a range over both frees everything below the root",
			mapped: []uint64{gib, 2 * gib}, lo: 0, hi: TaskSize,
			emptied: 2, wantRuns: []PageRange{{Start: gib, Pages: 1}, {Start: 2 * gib, Pages: 1}}, freed: 5,
		},
		{
			name:   "a range without tables changes nothing",
			mapped: []uint64{gib}, lo: 3 * gib, hi: 4 * gib,
			emptied: 0, freed: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, pt := newRecursivePT(t, 64)
			for i, va := range tt.mapped {
				require.NoError(t, pt.Map(va, uint64(0x300000+i*PageSize), User|Writable))
			}
			tables, used := pt.TablePages(), f.Used()
			recursive := pt.load(pt.Root() + testRecursiveSlot*8)

			lo, hi, ok := linearRange(tt.lo, tt.hi)
			require.True(t, ok)
			pt.visit(lo, hi, true, func(uint64, PTE) (PTE, bool) { return 0, false })
			assert.Equal(t, tt.emptied, pt.emptied, "tables counted as empty")
			assert.Equal(t, tables, pt.TablePages(), "nothing freed before Reclaim")
			runs, all := pt.TakeChanged()
			assert.False(t, all)
			assert.Equal(t, tt.wantRuns, runs, "the leaf entries to refresh")

			assert.Equal(t, tt.freed, pt.Reclaim())
			assert.Zero(t, pt.emptied)
			assert.Equal(t, tables-tt.freed, pt.TablePages(), "table pages")
			assert.Equal(t, used-tt.freed, f.Used(), "frames in use")
			assert.Equal(t, len(tablePages(pt)), pt.TablePages(), "reachable tables")
			assert.Equal(t, tt.freed > 0, pt.NeedFlush(), "NeedFlush")
			_, all = pt.TakeChanged()
			assert.Equal(t, tt.freed > 0, all, "a freed table makes every translation stale")
			assert.Equal(t, recursive, pt.load(pt.Root()+testRecursiveSlot*8), "the recursive entry is kept")
			_, ok = pt.Lookup(kernelHalf)
			assert.True(t, ok, "the kernel half is kept")
		})
	}
}

// TestFreedTableIsReused: a freed table frame comes back (the allocator is
// LIFO) as a table of another address, translating only what it maps now.
func TestFreedTableIsReused(t *testing.T) {
	f, pt := newRecursivePT(t, 64)
	require.NoError(t, pt.Map(gib, 0x300000, User))
	require.NoError(t, pt.Map(gib+PageSize, 0x301000, User))
	before := tablePages(pt)
	lo, hi, _ := linearRange(gib, 2*gib)
	pt.visit(lo, hi, true, func(uint64, PTE) (PTE, bool) { return 0, false })
	require.Equal(t, 3, pt.Reclaim())
	_, all := pt.TakeChanged()
	require.True(t, all)

	require.NoError(t, pt.Map(5*gib+7*PageSize, 0x302000, User))
	assert.ElementsMatch(t, before, tablePages(pt), "the same frames serve as tables again")
	assert.Equal(t, len(before), f.Used())
	for va, want := range map[uint64]bool{gib: false, gib + PageSize: false, 5 * gib: false, 5*gib + 7*PageSize: true} {
		pa, _, ok := pt.Translate(va)
		assert.Equal(t, want, ok, "%#x", va)
		if want {
			assert.Equal(t, uint64(0x302000), pa)
		}
	}
	_, all = pt.TakeChanged()
	assert.False(t, all, "a new mapping alone makes nothing stale")
	assert.Zero(t, pt.Reclaim(), "nothing left to free")
	assert.False(t, pt.NeedFlush())
}

// churn maps one page at the 1 GiB-aligned address i GiB, writes to it and
// unmaps it, as testimages/src/pgtable_churn.c does. It reports whether
// TakeChanged then asked for a flush of every translation.
func churn(t *testing.T, as *AddressSpace, i uint64) (all bool) {
	t.Helper()
	va := i * gib
	got := mustMmap(t, as, va, PageSize, ProtRead|ProtWrite, MapPrivate|MapAnonymous|MapFixedNoReplace, nil, 0)
	require.Equal(t, va, got)
	mustFault(t, as, va, PFUser|PFWrite)
	require.NoError(t, as.Munmap(va, PageSize), "cycle %d", i)
	_, all = as.pt.TakeChanged()
	return all
}

// TestChurnReclaimsInBatches: tables are freed every reclaimAt emptied
// tables, each batch costing one flush, and never pile up beyond that.
func TestChurnReclaimsInBatches(t *testing.T) {
	mem, frames := newTestFrames(t, 2048)
	as, err := NewAddressSpace(mem, frames, Layout{})
	require.NoError(t, err)
	require.NoError(t, as.pt.SetRecursiveSlot(testRecursiveSlot))
	require.Equal(t, minReclaimBatch, as.pt.reclaimAt)
	base := as.pt.TablePages()

	const cycles = 1000
	flushes := 0
	for i := uint64(1); i <= cycles; i++ {
		if churn(t, as, i) {
			flushes++
		}
		// Each cycle leaves a PT and a PD, and every 512 a PDPT.
		require.LessOrEqual(t, as.pt.TablePages(), base+3*minReclaimBatch, "cycle %d", i)
	}
	assert.Equal(t, cycles/minReclaimBatch, flushes, "one flush per batch")
	as.pt.Reclaim()
	assert.Equal(t, base, as.pt.TablePages())
	checkInvariants(t, 0, as)
}

// TestMunmapAtNewGiBAddresses is issue 7's reproduction in miniature: a
// pool of 64 frames lasts about 20 cycles if the tables are kept. Here the
// pool runs dry long before a batch is due, so the demand fault frees the
// empty tables and tries again.
func TestMunmapAtNewGiBAddresses(t *testing.T) {
	mem, frames := newTestFrames(t, 64)
	as, err := NewAddressSpace(mem, frames, Layout{})
	require.NoError(t, err)
	require.NoError(t, as.pt.SetRecursiveSlot(testRecursiveSlot))
	base := as.pt.TablePages()

	flushes := 0
	for i := uint64(1); i <= 5000; i++ {
		if churn(t, as, i) {
			flushes++
		}
	}
	t.Logf("%d reclaims, each when the pool ran dry", flushes)
	assert.Positive(t, flushes)
	as.pt.Reclaim()
	assert.Equal(t, base, as.pt.TablePages())
	assert.Equal(t, base, frames.Used())
	checkInvariants(t, 0, as)
}

// TestMremapLeavesSourceTablesToReclaim: moving the only page of a region
// empties the tables that held it.
func TestMremapLeavesSourceTablesToReclaim(t *testing.T) {
	as := newTestAS(t, 64)
	mustMmap(t, as, gib, PageSize, ProtRead|ProtWrite, MapPrivate|MapAnonymous|MapFixed, nil, 0)
	mustFault(t, as, gib, PFUser|PFWrite)
	base := as.pt.TablePages()

	got, err := as.Mremap(gib, PageSize, PageSize, MremapMayMove|MremapFixed, 3*gib)
	require.NoError(t, err)
	require.Equal(t, uint64(3*gib), got)
	assert.Positive(t, as.pt.emptied, "the source PT")
	assert.Equal(t, 2, as.pt.Reclaim(), "the source's PT and PD; the PDPT serves both")
	assert.Equal(t, base, as.pt.TablePages())
	checkInvariants(t, 0, as)
}
