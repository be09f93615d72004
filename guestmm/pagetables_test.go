package guestmm

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func newTestPT(t *testing.T, ramPages int) ([]byte, *Frames, *PageTables) {
	t.Helper()
	mem, f := newTestFrames(t, ramPages)
	pt, err := NewPageTables(mem, f)
	require.NoError(t, err)
	return mem, f, pt
}

func TestPTEHelpers(t *testing.T) {
	e := MakePTE(0x12345678_9000|0xfff, Present|Writable|NX|0x12345000)
	assert.Equal(t, uint64(0x12345678_9000), e.Addr())
	assert.Equal(t, Present|Writable|NX, e.Flags())
	assert.True(t, e.Has(Present|NX))
	assert.False(t, e.Has(Present|User))
	assert.Equal(t, "0x123456789000[P W NX]", e.String())

	for va, want := range map[uint64]bool{
		0:                     true,
		0x7fff_ffff_ffff:      true,
		0x8000_0000_0000:      false,
		0xffff_7fff_ffff_ffff: false,
		0xffff_8000_0000_0000: true,
		^uint64(0):            true,
	} {
		assert.Equal(t, want, Canonical(va), "%#x", va)
	}
}

func TestPageTablesMapLayout(t *testing.T) {
	mem, f, pt := newTestPT(t, 64)
	va := uint64(0x0000_7f12_3456_7000)
	frame, err := f.Alloc()
	require.NoError(t, err)
	require.NoError(t, pt.Map(va, frame, Writable|User|NX))

	// Walk the tables by hand, as the MMU does.
	table := pt.Root()
	for level := 3; level >= 0; level-- {
		shift := 12 + 9*uint(level)
		idx := (va >> shift) & 511
		e := PTE(binary.LittleEndian.Uint64(mem[table+idx*8:]))
		require.True(t, e.Has(Present), "level %d", level)
		if level > 0 {
			assert.Equal(t, intermediateFlags, e.Flags(), "intermediate flags at level %d", level)
		} else {
			assert.Equal(t, Present|Writable|User|NX, e.Flags())
		}
		table = e.Addr()
	}
	assert.Equal(t, frame, table)
	assert.Equal(t, 4, pt.TablePages())

	e, ok := pt.Lookup(va + 123)
	require.True(t, ok)
	assert.Equal(t, frame, e.Addr())
	pa, e2, ok := pt.Translate(va + 0x123)
	require.True(t, ok)
	assert.Equal(t, frame+0x123, pa)
	assert.Equal(t, e, e2)

	_, ok = pt.Lookup(va + PageSize)
	assert.False(t, ok)
	_, _, ok = pt.Translate(0x1000)
	assert.False(t, ok)
}

func TestPageTablesKernelHalf(t *testing.T) {
	_, f, pt := newTestPT(t, 64)
	frame, err := f.Alloc()
	require.NoError(t, err)
	const kva = 0xffff_ffff_ff60_0000
	require.NoError(t, pt.Map(kva, frame, Writable|Global))
	e, ok := pt.Lookup(kva)
	require.True(t, ok)
	assert.Equal(t, frame, e.Addr())
	assert.Zero(t, e&User)

	var seen []uint64
	pt.Walk(kernelHalf, 0, func(va uint64, _ PTE) bool {
		seen = append(seen, va)
		return true
	})
	assert.Equal(t, []uint64{kva}, seen)
	seen = nil
	pt.Walk(0, TaskSize, func(va uint64, _ PTE) bool {
		seen = append(seen, va)
		return true
	})
	assert.Empty(t, seen)
}

func TestPageTablesBadArguments(t *testing.T) {
	_, _, pt := newTestPT(t, 16)
	tests := []struct {
		name   string
		va, pa uint64
	}{
		{"non-canonical", 0x8000_0000_0000, 0x200000},
		{"non-canonical high", 0xffff_0000_0000_0000, 0x200000},
		{"unaligned va", 0x1001, 0x200000},
		{"unaligned pa", 0x1000, 0x200001},
		{"pa too large", 0x1000, 1 << 52},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.ErrorIs(t, pt.Map(tt.va, tt.pa, User), unix.EINVAL)
		})
	}
	assert.ErrorIs(t, pt.SetPTE(0x8000_0000_0000, Present), unix.EINVAL)
	_, ok := pt.Lookup(0x8000_0000_0000)
	assert.False(t, ok)
	_, ok = pt.Unmap(0x8000_0000_0000)
	assert.False(t, ok)
}

func TestPageTablesNeedFlush(t *testing.T) {
	_, _, pt := newTestPT(t, 16)
	const va = 0x400000
	steps := []struct {
		name string
		do   func()
		want bool
	}{
		{"map into empty slot", func() { require.NoError(t, pt.Map(va, 0x200000, User)) }, false},
		{"map same entry again", func() { require.NoError(t, pt.Map(va, 0x200000, User)) }, false},
		{"change present entry", func() { require.NoError(t, pt.Map(va, 0x200000, User|Writable)) }, true},
		{"set non-present entry", func() { require.NoError(t, pt.SetPTE(va+PageSize, Copied)) }, false},
		{"overwrite non-present entry", func() { require.NoError(t, pt.SetPTE(va+PageSize, 0)) }, false},
		{"unmap absent", func() { pt.Unmap(va + 2*PageSize) }, false},
		{"unmap present", func() {
			old, ok := pt.Unmap(va)
			require.True(t, ok)
			assert.Equal(t, MakePTE(0x200000, Present|User|Writable), old)
		}, true},
	}
	for _, s := range steps {
		pt.ClearFlush()
		s.do()
		assert.Equal(t, s.want, pt.NeedFlush(), s.name)
	}
}

func TestPageTablesWalkSparse(t *testing.T) {
	_, _, pt := newTestPT(t, 64)
	vas := []uint64{0x1000, 0x2000, 0x40_0000_0000, 0x7fff_ffff_e000}
	for i, va := range vas {
		require.NoError(t, pt.Map(va, uint64(i+1)<<pageShift, User))
	}
	var got []uint64
	pt.Walk(0, TaskSize, func(va uint64, e PTE) bool {
		got = append(got, va)
		return true
	})
	assert.Equal(t, vas, got)

	got = nil
	pt.Walk(0x2000, 0x40_0000_1000, func(va uint64, e PTE) bool {
		got = append(got, va)
		return true
	})
	assert.Equal(t, vas[1:3], got)

	got = nil
	pt.Walk(0, TaskSize, func(va uint64, e PTE) bool {
		got = append(got, va)
		return len(got) < 2
	})
	assert.Equal(t, vas[:2], got, "walk stops when fn returns false")

	pt.Walk(5, 5, func(uint64, PTE) bool { t.Fatal("empty range visited"); return false })
	pt.Walk(9, 3, func(uint64, PTE) bool { t.Fatal("inverted range visited"); return false })
}

func TestPageTablesPruneAndDestroy(t *testing.T) {
	_, f, pt := newTestPT(t, 64)
	require.NoError(t, pt.Map(0x1000, 0x200000, User))
	require.NoError(t, pt.Map(0x7f00_0000_0000, 0x200000, User))
	require.NoError(t, pt.Map(kernelHalf, 0x200000, 0))
	require.Equal(t, 1+3+3+3, pt.TablePages())
	require.Equal(t, pt.TablePages(), f.Used())

	lo, hi, ok := linearRange(0, 0x2000)
	require.True(t, ok)
	pt.visit(lo, hi, true, func(uint64, PTE) (PTE, bool) { return 0, false })
	assert.Equal(t, 3, pt.Reclaim(), "empty tables are freed")
	assert.Equal(t, 7, pt.TablePages())
	assert.Equal(t, 7, f.Used())

	pt.Destroy()
	assert.Equal(t, 0, f.Used(), "Destroy frees every table")
	assert.ErrorIs(t, pt.Map(0x1000, 0x200000, User), errNotMapped)
	_, ok = pt.Lookup(0x1000)
	assert.False(t, ok)
	pt.Destroy() // idempotent
}

func TestPageTablesOutOfFrames(t *testing.T) {
	_, f, pt := newTestPT(t, 3) // root + two more tables: not enough for a leaf
	err := pt.Map(0x1000, 0x200000, User)
	require.ErrorIs(t, err, ErrNoMemory)
	assert.Equal(t, 3, f.Used())
	_, ok := pt.Lookup(0x1000)
	assert.False(t, ok)
}
