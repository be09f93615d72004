package guestmm

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// newHugeAS returns an address space with 2 MiB pages on over ramPages
// frames.
func newHugeAS(tb testing.TB, ramPages int) *AddressSpace {
	tb.Helper()
	mem, frames := newTestFrames(tb, ramPages)
	as, err := NewAddressSpace(mem, frames, Layout{HugePages: true})
	require.NoError(tb, err)
	return as
}

// hugeRegion maps 3 x 2 MiB of private anonymous memory and returns the
// 2 MiB aligned address in its middle.
func hugeRegion(tb testing.TB, as *AddressSpace) uint64 {
	tb.Helper()
	addr := mustMmap(tb, as, 0x40000000-HugePageSize/2, 3*HugePageSize, rw, anonPriv|MapFixed, nil, 0)
	return addr + HugePageSize/2
}

// fillHuge faults the 2 MiB page at base in and writes a pattern over it.
func fillHuge(tb testing.TB, as *AddressSpace, base uint64) []byte {
	tb.Helper()
	mustFault(tb, as, base+12345, PFUser|PFWrite)
	require.Equal(tb, 1, as.pt.HugePages(), "a 2 MiB page after the fault")
	data := pattern(HugePageSize, 3)
	require.NoError(tb, as.CopyOut(base, data))
	as.pt.TakeChanged()
	return data
}

func TestHugeFault(t *testing.T) {
	as := newHugeAS(t, 4096)
	base := hugeRegion(t, as)
	mustFault(t, as, base+HugePageSize/2, PFUser|PFWrite)
	require.Equal(t, 1, as.pt.HugePages())
	assert.False(t, as.pt.NeedFlush(), "an empty PD entry filled: nothing to flush")

	first, ok := as.pt.Lookup(base)
	require.True(t, ok)
	assert.Zero(t, first.Addr()&hugeMask, "2 MiB aligned frame")
	n := 0
	for va, e := range as.PresentPages(base-PageSize, base+HugePageSize+PageSize) {
		require.Equal(t, base+uint64(n)*PageSize, va)
		require.Equal(t, first.Addr()+uint64(n)*PageSize, e.Addr())
		require.Zero(t, e&PS, "4 KiB entries shown")
		require.NotZero(t, e&Writable)
		n++
	}
	assert.Equal(t, HugeFrames, n, "page-exact: every 4 KiB page, nothing outside")
	assert.Equal(t, 1, as.pt.HugePages(), "reading does not split")
	checkInvariants(t, 0, as)

	// The 2 MiB around the region's unaligned edges are not wholly
	// inside the VMA: single pages (with the 64 KiB fault-around off).
	mustFault(t, as, base-PageSize, PFUser|PFWrite)
	mustFault(t, as, base+2*HugePageSize, PFUser)
	assert.Equal(t, 1, as.pt.HugePages())
	_, ok = as.pt.Lookup(base - 2*PageSize)
	assert.False(t, ok)

	data := pattern(3*PageSize, 9)
	require.NoError(t, as.CopyOut(base+HugePageSize-PageSize-100, data))
	got := make([]byte, len(data))
	require.NoError(t, as.CopyIn(base+HugePageSize-PageSize-100, got))
	assert.Equal(t, data, got)
	checkInvariants(t, 0, as)
	as.Destroy()
	assert.Zero(t, as.frames.Used(), "every frame freed")
}

// TestHugeSplit changes part of a 2 MiB page in every way that needs 4 KiB
// entries and checks that the rest keeps its data, the tables stay
// consistent, the TLB is flushed completely and no frame leaks.
func TestHugeSplit(t *testing.T) {
	tests := []struct {
		name string
		op   func(t *testing.T, as *AddressSpace, base uint64)
		// changed is the page (offset from base) whose contents the
		// operation changed; -1 for none.
		changed int64
		want    func(t *testing.T, as *AddressSpace, base uint64)
	}{
		{"munmap a page", func(t *testing.T, as *AddressSpace, base uint64) {
			require.NoError(t, as.Munmap(base+5*PageSize, PageSize))
		}, 5 * PageSize, func(t *testing.T, as *AddressSpace, base uint64) {
			r := as.HandleFault(base+5*PageSize, PFUser)
			assert.False(t, r.Resolved, "unmapped page faults: %+v", r)
		}},
		{"mprotect a page read-only", func(t *testing.T, as *AddressSpace, base uint64) {
			require.NoError(t, as.Mprotect(base+7*PageSize, PageSize, ProtRead))
		}, -1, func(t *testing.T, as *AddressSpace, base uint64) {
			e, ok := as.pt.Lookup(base + 7*PageSize)
			require.True(t, ok)
			assert.Zero(t, e&Writable)
			r := as.HandleFault(base+7*PageSize, PFUser|PFWrite|PFPresent)
			assert.False(t, r.Resolved)
			e, _ = as.pt.Lookup(base + 8*PageSize)
			assert.NotZero(t, e&Writable, "the neighbour stays writable")
		}},
		{"madvise DONTNEED a page", func(t *testing.T, as *AddressSpace, base uint64) {
			require.NoError(t, as.Madvise(base+HugePageSize-PageSize, PageSize, MadvDontNeed))
		}, HugePageSize - PageSize, func(t *testing.T, as *AddressSpace, base uint64) {
			mustFault(t, as, base+HugePageSize-PageSize, PFUser)
			got := make([]byte, PageSize)
			require.NoError(t, as.CopyIn(base+HugePageSize-PageSize, got))
			assert.Equal(t, make([]byte, PageSize), got, "zero again")
		}},
		{"mremap shrinks into it", func(t *testing.T, as *AddressSpace, base uint64) {
			v, _ := as.FindVMA(base)
			_, err := as.Mremap(v.Start, v.End-v.Start, base+HugePageSize/2-v.Start, 0, 0)
			require.NoError(t, err)
		}, -1, func(t *testing.T, as *AddressSpace, base uint64) {
			_, ok := as.pt.Lookup(base + HugePageSize/2)
			assert.False(t, ok)
		}},
		{"mremap moves part of it", func(t *testing.T, as *AddressSpace, base uint64) {
			dst, err := as.Mremap(base+PageSize, 2*PageSize, 2*PageSize, MremapMayMove|MremapFixed, 0x50000000)
			require.NoError(t, err)
			got := make([]byte, 2*PageSize)
			require.NoError(t, as.CopyIn(dst, got))
			assert.Equal(t, pattern(HugePageSize, 3)[PageSize:3*PageSize], got)
		}, -1, nil},
		{"copy on write after fork", func(t *testing.T, as *AddressSpace, base uint64) {
			child, err := as.Fork()
			require.NoError(t, err)
			defer child.Destroy()
			mustFault(t, as, base+9*PageSize, PFUser|PFWrite|PFPresent)
			require.NoError(t, as.CopyOut(base+9*PageSize, []byte("parent")))
			got := make([]byte, HugePageSize)
			require.NoError(t, child.CopyIn(base, got))
			assert.Equal(t, pattern(HugePageSize, 3), got, "the child keeps the data at the fork")
			checkInvariants(t, 0, as, child)
		}, 9 * PageSize, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			as := newHugeAS(t, 8192)
			base := hugeRegion(t, as)
			data := fillHuge(t, as, base)
			tt.op(t, as, base)
			assert.Zero(t, as.pt.HugePages(), "split")
			_, all := as.pt.TakeChanged()
			assert.True(t, all, "a split needs every translation dropped")
			for off := uint64(0); off < HugePageSize; off += PageSize {
				if int64(off) == tt.changed {
					continue
				}
				if _, ok := as.pt.Lookup(base + off); !ok {
					continue
				}
				got := make([]byte, PageSize)
				require.NoError(t, as.CopyIn(base+off, got))
				if off == 9*PageSize && tt.changed == int64(off) {
					continue
				}
				require.True(t, bytes.Equal(data[off:off+PageSize], got), "page %#x", off)
			}
			if tt.want != nil {
				tt.want(t, as, base)
			}
			checkInvariants(t, 0, as)
			as.Destroy()
		})
	}
}

func TestHugeMunmapWhole(t *testing.T) {
	as := newHugeAS(t, 4096)
	base := hugeRegion(t, as)
	fillHuge(t, as, base)
	used := as.frames.Used()
	require.NoError(t, as.Munmap(base-HugePageSize/2, 3*HugePageSize))
	assert.Zero(t, as.pt.HugePages())
	assert.LessOrEqual(t, as.frames.Used(), used-HugeFrames, "the 2 MiB of frames are free")
	as.pt.Reclaim()
	checkInvariants(t, 0, as) // counts every frame still in use

	// The top of the pool is used up now; the freed block is found again,
	// and its frames come back zero.
	base = hugeRegion(t, as)
	mustFault(t, as, base, PFUser)
	assert.Equal(t, 1, as.pt.HugePages())
	got := make([]byte, HugePageSize)
	require.NoError(t, as.CopyIn(base, got))
	assert.True(t, bytes.Equal(make([]byte, HugePageSize), got), "recycled frames are cleared")
	checkInvariants(t, 0, as)
}

func TestHugeNoHugePage(t *testing.T) {
	as := newHugeAS(t, 4096)
	base := hugeRegion(t, as)
	require.NoError(t, as.Madvise(base, HugePageSize, MadvNoHugePage))
	v, _ := as.FindVMA(base)
	assert.True(t, v.NoHugePage)
	assert.Equal(t, base, v.Start, "the advice splits the VMA")
	mustFault(t, as, base, PFUser|PFWrite)
	assert.Zero(t, as.pt.HugePages())
	_, ok := as.pt.Lookup(base + PageSize)
	assert.False(t, ok, "one 4 KiB page")
	checkInvariants(t, 0, as)

	require.NoError(t, as.Madvise(base, HugePageSize, MadvHugePage))
	assert.Len(t, as.VMAs(), 1, "merged again")
	mustFault(t, as, base+HugePageSize, PFUser|PFWrite)
	assert.Equal(t, 1, as.pt.HugePages(), "allowed again")
	checkInvariants(t, 0, as)

	// A 2 MiB slot whose page table exists (a 4 KiB page was mapped
	// there) keeps 4 KiB pages.
	assert.False(t, as.hugeEligible(&VMA{Anonymous: true, Shared: true, Prot: rw}), "shared")
	assert.False(t, as.hugeEligible(&VMA{Anonymous: true, Prot: rw | ProtExec}), "executable")
	assert.False(t, as.hugeEligible(&VMA{Anonymous: true, GrowsDown: true, Prot: rw}), "stack")
	assert.False(t, as.hugeEligible(&VMA{Kind: KindFile, Prot: rw}), "file")
	assert.True(t, as.hugeEligible(&VMA{Anonymous: true, Kind: KindHeap, Prot: rw}), "heap")
}

// TestHugeOutOfMemory: with no free 2 MiB block the fault maps one page,
// and a guest RAM too small for even that still gets SIGKILL.
func TestHugeOutOfMemory(t *testing.T) {
	as := newHugeAS(t, 600) // 1 MiB + 2.3 MiB: no aligned 2 MiB block fits
	base := hugeRegion(t, as)
	mustFault(t, as, base, PFUser|PFWrite)
	assert.Zero(t, as.pt.HugePages())
	_, ok := as.pt.Lookup(base)
	assert.True(t, ok)
	checkInvariants(t, 0, as)

	var last FaultResult
	for va := base + PageSize; va < base+2*HugePageSize; va += PageSize {
		if last = as.HandleFault(va, PFUser|PFWrite); !last.Resolved {
			break
		}
	}
	assert.False(t, last.Resolved)
	assert.Equal(t, "killed", last.Signal.String())
	checkInvariants(t, 0, as)
}

func TestFramesAllocHuge(t *testing.T) {
	mem, f := newTestFrames(t, 1536) // 1 MiB .. 7 MiB: two aligned blocks
	pa, err := f.AllocHuge()
	require.NoError(t, err)
	assert.Equal(t, uint64(0x200000), pa)
	assert.Equal(t, HugeFrames, f.Used(), "the frames skipped for alignment stay free")
	pb, err := f.AllocHuge()
	require.NoError(t, err)
	assert.Equal(t, uint64(0x400000), pb)
	_, err = f.AllocHuge()
	require.ErrorIs(t, err, ErrNoMemory)
	one, err := f.Alloc()
	require.NoError(t, err, "single frames remain")
	assert.Less(t, one, uint64(0x200000))

	copy(mem[pa:pa+HugePageSize], pattern(HugePageSize, 1))
	f.DecRef(pa + 5*PageSize) // one frame of the first block is free
	_, err = f.AllocHuge()
	require.ErrorIs(t, err, ErrNoMemory, "a block with a frame in use is not free")
	for i := uint64(0); i < HugeFrames; i++ {
		if i != 5 {
			f.DecRef(pa + i*PageSize)
		}
	}
	pc, err := f.AllocHuge()
	require.NoError(t, err)
	assert.Equal(t, pa, pc)
	assert.True(t, bytes.Equal(make([]byte, HugePageSize), mem[pc:pc+HugePageSize]), "cleared")
	for i := uint64(0); i < HugeFrames; i++ {
		assert.Equal(t, 1, f.RefCount(pc+i*PageSize))
	}
}

// TestHugeReserve: a 2 MiB page is only taken while it leaves hugeReserve
// frames free; past that, faults map single pages.
func TestHugeReserve(t *testing.T) {
	as := newHugeAS(t, 4096) // 16 MiB: 4 MiB kept in reserve
	base := mustMmap(t, as, 0x40000000, 12*HugePageSize, rw, anonPriv|MapFixed, nil, 0)
	for i := uint64(0); i < 12; i++ {
		before := as.pt.HugePages()
		free := as.frames.Capacity() - as.frames.Used()
		mustFault(t, as, base+i*HugePageSize, PFUser|PFWrite)
		if as.pt.HugePages() == before {
			assert.Less(t, free, HugeFrames+hugeReserve(as.frames.Capacity()), "4 KiB page at block %d with %d frames free", i, free)
			break
		}
	}
	assert.Greater(t, as.pt.HugePages(), 2)
	assert.Less(t, as.pt.HugePages(), 6)
	assert.GreaterOrEqual(t, as.frames.Capacity()-as.frames.Used(), hugeReserve(as.frames.Capacity()))
	checkInvariants(t, 0, as)
}

// recursiveLeaf is where the recursive slot shows the leaf entry of va.
func recursiveLeaf(slot int, va uint64) uint64 {
	return signExtend(uint64(slot)<<39 | (va&linearMask)>>9&^7)
}

// TestHugeChangeLog: with a recursive slot, a change to a 2 MiB entry is
// logged as the page recursiveLeaf(va) (its PD entry is that page's leaf
// entry), ahead of the 4 KiB entries changed after a split, and no
// longer makes every translation stale.
func TestHugeChangeLog(t *testing.T) {
	const slot = 510
	tests := []struct {
		name  string
		op    func(as *AddressSpace, base uint64) error
		runs  func(base uint64) []PageRange
		huge  int
		fault uint64 // a user access that must not resolve afterwards
		code  uint64
	}{
		{"munmap of the whole 2 MiB: no split", func(as *AddressSpace, base uint64) error {
			return as.Munmap(base, HugePageSize)
		}, func(base uint64) []PageRange {
			return []PageRange{{recursiveLeaf(slot, base), 1}}
		}, 0, 0x10, PFUser},
		{"munmap of one page: split, then the page", func(as *AddressSpace, base uint64) error {
			return as.Munmap(base+3*PageSize, PageSize)
		}, func(base uint64) []PageRange {
			return []PageRange{{recursiveLeaf(slot, base), 1}, {base + 3*PageSize, 1}}
		}, 0, 3 * PageSize, PFUser},
		{"mprotect of the whole 2 MiB: still a 2 MiB page", func(as *AddressSpace, base uint64) error {
			return as.Mprotect(base, HugePageSize, ProtRead)
		}, func(base uint64) []PageRange {
			return []PageRange{{recursiveLeaf(slot, base), 1}}
		}, 1, 5 * PageSize, PFUser | PFWrite | PFPresent},
		{"mprotect to the same protection: nothing", func(as *AddressSpace, base uint64) error {
			return as.Mprotect(base, HugePageSize, rw)
		}, func(uint64) []PageRange { return nil }, 1, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			as := newHugeAS(t, 4096)
			require.NoError(t, as.pt.SetRecursiveSlot(slot))
			base := hugeRegion(t, as)
			data := fillHuge(t, as, base)
			require.NoError(t, tt.op(as, base))
			runs, all := as.pt.TakeChanged()
			assert.False(t, all)
			assert.Equal(t, tt.runs(base), runs)
			assert.Equal(t, tt.huge, as.pt.HugePages())
			if tt.code != 0 {
				r := as.HandleFault(base+tt.fault, tt.code)
				assert.False(t, r.Resolved, "%+v", r)
			}
			if tt.huge == 1 {
				got := make([]byte, HugePageSize)
				require.NoError(t, as.CopyIn(base, got))
				assert.True(t, bytes.Equal(data, got))
			}
			checkInvariants(t, 0, as)
		})
	}
}

// TestHugeAgainAfterMunmap: a 2 MiB page unmapped as a whole leaves no
// page table behind, so the next mapping there gets a 2 MiB page again,
// of zeros.
func TestHugeAgainAfterMunmap(t *testing.T) {
	as := newHugeAS(t, 4096)
	base := hugeRegion(t, as)
	fillHuge(t, as, base)
	tables := as.pt.TablePages()
	require.NoError(t, as.Munmap(base, HugePageSize))
	assert.Equal(t, tables-1, as.pt.TablePages(), "the deposited table is freed")
	mustMmap(t, as, base, HugePageSize, rw, anonPriv|MapFixed, nil, 0)
	mustFault(t, as, base+HugePageSize-1, PFUser)
	assert.Equal(t, 1, as.pt.HugePages())
	got := make([]byte, HugePageSize)
	require.NoError(t, as.CopyIn(base, got))
	assert.True(t, bytes.Equal(make([]byte, HugePageSize), got))
	checkInvariants(t, 0, as)
	as.Destroy()
	assert.Zero(t, as.frames.Used())
}

// TestFramesAllocHugePrefersFreed: a freed 2 MiB block is taken before
// never-used frames, and cleared.
func TestFramesAllocHugePrefersFreed(t *testing.T) {
	mem, f := newTestFrames(t, 2048) // 1 MiB .. 9 MiB: blocks at 2, 4 and 6 MiB
	pa, err := f.AllocHuge()
	require.NoError(t, err)
	copy(mem[pa:pa+HugePageSize], pattern(HugePageSize, 1))
	for i := uint64(0); i < HugeFrames; i++ {
		f.DecRef(pa + i*PageSize)
	}
	pb, err := f.AllocHuge()
	require.NoError(t, err)
	assert.Equal(t, pa, pb, "the freed block, not the next never-used one")
	assert.True(t, bytes.Equal(make([]byte, HugePageSize), mem[pb:pb+HugePageSize]), "cleared")
	pc, err := f.AllocHuge()
	require.NoError(t, err)
	assert.Equal(t, pa+HugePageSize, pc)
	assert.Equal(t, 2*HugeFrames, f.Used())
}

// TestHugeArea: as on Linux, private anonymous mappings without a hint
// whose length is a multiple of 2 MiB are placed 2 MiB aligned;
// MAP_STACK mappings get no 2 MiB pages.
func TestHugeArea(t *testing.T) {
	as := newHugeAS(t, 64)
	odd := mustMmap(t, as, 0, 3*PageSize, rw, anonPriv, nil, 0)
	a := mustMmap(t, as, 0, 2*HugePageSize, rw, anonPriv, nil, 0)
	assert.Zero(t, a&hugeMask, "aligned: %#x", a)
	assert.Less(t, a, odd)
	b := mustMmap(t, as, 0, HugePageSize, rw, anonPriv, nil, 0)
	assert.Equal(t, a-HugePageSize, b, "an aligned gap is used at its top")
	c := mustMmap(t, as, 0, HugePageSize+PageSize, rw, anonPriv, nil, 0)
	assert.NotZero(t, c&hugeMask, "not a multiple of 2 MiB: placed as usual")
	f := &memFile{name: "/f", data: pattern(PageSize, 1)}
	d := mustMmap(t, as, 0, HugePageSize, ProtRead, MapPrivate, f, 0)
	assert.Equal(t, c-HugePageSize, d, "file mappings are placed as usual")
	h := mustMmap(t, as, 0x50000000+PageSize, HugePageSize, rw, anonPriv, nil, 0)
	assert.Equal(t, uint64(0x50000000+PageSize), h, "a free hint is honoured")

	s := mustMmap(t, as, 0, HugePageSize, rw, anonPriv|MapStack, nil, 0)
	v, _ := as.FindVMA(s)
	assert.True(t, v.NoHugePage, "MAP_STACK is MADV_NOHUGEPAGE")

	plain := newTestAS(t, 64)
	a = mustMmap(t, plain, 0, 3*PageSize, rw, anonPriv, nil, 0)
	b = mustMmap(t, plain, 0, 2*HugePageSize, rw, anonPriv, nil, 0)
	assert.Equal(t, a-2*HugePageSize, b, "without 2 MiB pages, no alignment")
}

// TestHugeVisitMixed: a visit that changes some pages of a whole 2 MiB
// page differently from others splits it and stores each result; one
// that stops half way applies its results up to there.
func TestHugeVisitMixed(t *testing.T) {
	for _, stopAt := range []int{-1, 100} {
		t.Run(fmt.Sprint("stop at ", stopAt), func(t *testing.T) {
			as := newHugeAS(t, 4096)
			base := hugeRegion(t, as)
			fillHuge(t, as, base)
			lo, hi, _ := linearRange(base, base+HugePageSize)
			n := 0
			as.pt.visit(lo, hi, false, func(va uint64, e PTE) (PTE, bool) {
				i := n
				n++
				if i%2 == 1 {
					e &^= Writable
				}
				return e, i == stopAt
			})
			if stopAt >= 0 {
				assert.Equal(t, stopAt+1, n)
			} else {
				assert.Equal(t, HugeFrames, n)
			}
			assert.Zero(t, as.pt.HugePages(), "split")
			for i := 0; i < HugeFrames; i++ {
				e, ok := as.pt.Lookup(base + uint64(i)*PageSize)
				require.True(t, ok)
				changed := i%2 == 1 && (stopAt < 0 || i <= stopAt)
				assert.Equal(t, changed, e&Writable == 0, "page %d", i)
			}
			checkInvariants(t, 0, as)
		})
	}
}

// TestHugePopulate: MAP_POPULATE and MADV_POPULATE_WRITE map the 2 MiB
// aligned blocks of the range with 2 MiB pages, the rest with 4 KiB ones.
func TestHugePopulate(t *testing.T) {
	as := newHugeAS(t, 8192)
	addr := mustMmap(t, as, 0x60000000-PageSize, 2*HugePageSize+2*PageSize, rw, anonPriv|MapFixed|MapPopulate, nil, 0)
	assert.Equal(t, 2, as.pt.HugePages())
	n := 0
	for range as.PresentPages(addr, addr+2*HugePageSize+2*PageSize) {
		n++
	}
	assert.Equal(t, 2*HugeFrames+2, n, "every page present")
	checkInvariants(t, 0, as)

	b := hugeRegion(t, as)
	require.NoError(t, as.Madvise(b, HugePageSize, MadvPopulateWrite))
	assert.Equal(t, 3, as.pt.HugePages())
	checkInvariants(t, 0, as)
}

// TestHugeReuseAfterFork: once the child of a fork is gone, a write to a
// 2 MiB page the fork made read-only makes it writable again in place,
// without a split; while the child holds its frames it splits and copies.
func TestHugeReuseAfterFork(t *testing.T) {
	as := newHugeAS(t, 8192)
	require.NoError(t, as.pt.SetRecursiveSlot(testRecursiveSlot))
	base := hugeRegion(t, as)
	data := fillHuge(t, as, base)
	child, err := as.Fork()
	require.NoError(t, err)
	e, _ := as.pt.Lookup(base)
	assert.Zero(t, e&Writable, "write-protected by the fork")
	assert.Equal(t, 1, as.pt.HugePages(), "still a 2 MiB page")
	assert.Equal(t, 1, child.pt.HugePages(), "the child shares it as a 2 MiB page")
	checkInvariants(t, 0, as, child)
	mustFault(t, child, base+3*PageSize, PFUser|PFWrite|PFPresent)
	require.NoError(t, child.CopyOut(base+3*PageSize, []byte("child")))
	assert.Zero(t, child.pt.HugePages(), "the child's write splits its copy")
	assert.Equal(t, 1, as.pt.HugePages())
	got := make([]byte, HugePageSize)
	require.NoError(t, as.CopyIn(base, got))
	assert.True(t, bytes.Equal(data, got), "the parent does not see it")
	checkInvariants(t, 0, as, child)
	child.Destroy()
	as.pt.TakeChanged()

	mustFault(t, as, base+7*PageSize, PFUser|PFWrite|PFPresent)
	assert.Equal(t, 1, as.pt.HugePages(), "reused, not split")
	e, _ = as.pt.Lookup(base + 100*PageSize)
	assert.NotZero(t, e&Writable, "all of it writable")
	runs, all := as.pt.TakeChanged()
	assert.False(t, all)
	assert.Equal(t, []PageRange{{recursiveLeaf(testRecursiveSlot, base), 1}}, runs)
	require.NoError(t, as.CopyIn(base, got))
	assert.True(t, bytes.Equal(data, got))
	checkInvariants(t, 0, as)

	child, err = as.Fork()
	require.NoError(t, err)
	defer child.Destroy()
	mustFault(t, as, base+7*PageSize, PFUser|PFWrite|PFPresent)
	assert.Zero(t, as.pt.HugePages(), "shared with the child: split")
	checkInvariants(t, 0, as, child)
}

// TestFramesAllocHugeUnalignedIndex: a block whose first frame is not the
// first of a word of the bitsets (frames from 3 frames below 2 MiB on)
// is marked written and no longer zero, each of its frames and no other;
// the ones that held data are cleared.
func TestFramesAllocHugeUnalignedIndex(t *testing.T) {
	const start = 0x200000 - 3*PageSize
	mem := make([]byte, 0x600000)
	f := NewFrames(mem, start, uint64(len(mem)))
	pa, err := f.AllocHuge()
	require.NoError(t, err)
	require.Equal(t, uint64(0x200000), pa)
	w := f.TakeWritten()
	assert.Equal(t, HugeFrames, w.Len())
	for _, q := range []uint64{pa - PageSize, pa + HugePageSize} {
		assert.False(t, w.Has(q), "%#x", q)
	}
	for i := uint64(0); i < HugeFrames; i++ {
		assert.True(t, w.Has(pa+i*PageSize))
		assert.Equal(t, 1, f.RefCount(pa+i*PageSize))
	}
	// Data in some frames, the block freed and taken again: those are
	// cleared.
	for _, i := range []uint64{0, 60, 61, 62, 63, 64, 511} {
		mem[pa+i*PageSize+100] = 7
	}
	for i := uint64(0); i < HugeFrames; i++ {
		f.DecRef(pa + i*PageSize)
	}
	pb, err := f.AllocHuge()
	require.NoError(t, err)
	require.Equal(t, pa, pb)
	assert.True(t, bytes.Equal(make([]byte, HugePageSize), mem[pb:pb+HugePageSize]), "cleared")
	assert.Equal(t, HugeFrames, f.TakeWritten().Len())
	// The frames below it are still known to be zero: taken as they are.
	below, err := f.Alloc()
	require.NoError(t, err)
	assert.Less(t, below, pa)
}

// TestPresentLeaves: PresentLeaves gives the same pages as PresentPages,
// a 2 MiB page as one leaf of its pages inside the range (clipped at
// both ends), a 4 KiB page as a leaf of one; and it stops when told.
func TestPresentLeaves(t *testing.T) {
	as := newHugeAS(t, 4096)
	base := hugeRegion(t, as)
	fillHuge(t, as, base)
	small := mustMmap(t, as, 0x50000000, 4*PageSize, rw, anonPriv|MapFixed, nil, 0)
	for _, va := range []uint64{small, small + 2*PageSize} {
		mustFault(t, as, va, PFUser|PFWrite)
	}
	for _, r := range []struct {
		name       string
		start, end uint64
		leaves     []uint64 // n of each leaf
	}{
		{"all", 0, TaskSize, []uint64{HugeFrames, 1, 1}},
		{"clipped", base + 3*PageSize, base + 10*PageSize, []uint64{7}},
		{"around", base - PageSize, small + PageSize, []uint64{HugeFrames, 1}},
		{"none", small + 3*PageSize, small + 4*PageSize, nil},
	} {
		var want []uint64
		for va, e := range as.PresentPages(r.start, r.end) {
			want = append(want, va, e.Addr(), uint64(e.Flags()))
		}
		var got, ns []uint64
		as.PresentLeaves(r.start, r.end, func(va uint64, e PTE, n uint64) bool {
			require.Zero(t, e&PS, r.name)
			for i := range n {
				got = append(got, va+i*PageSize, e.Addr()+i*PageSize, uint64(e.Flags()))
			}
			ns = append(ns, n)
			return true
		})
		assert.Equal(t, want, got, r.name)
		assert.Equal(t, r.leaves, ns, r.name)
	}
	calls := 0
	as.PresentLeaves(0, TaskSize, func(uint64, PTE, uint64) bool { calls++; return false })
	assert.Equal(t, 1, calls, "stops at the first false")
}
