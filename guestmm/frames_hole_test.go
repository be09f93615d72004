package guestmm

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// A small model of guest RAM around the MMIO hole: RAM from 1 MiB to
// 8 MiB, the hole [8 MiB, 16 MiB), RAM again from 16 MiB to 24 MiB.
const (
	holeRAMStart = 1 << 20
	holeLo       = 8 << 20
	holeHi       = 16 << 20
	holeRAMEnd   = 24 << 20
	holeFrames   = (holeRAMEnd - holeRAMStart - (holeHi - holeLo)) / PageSize
)

func newHoleFrames(t *testing.T) *Frames {
	t.Helper()
	mem := make([]byte, holeRAMEnd)
	for i := holeLo; i < holeHi; i += PageSize {
		mem[i] = 0xAA // a frame handed out from the hole would show it
	}
	f := NewFramesAround(mem, holeRAMStart, holeRAMEnd, holeLo, holeHi)
	lo, hi := f.Hole()
	require.Equal(t, [2]uint64{holeLo, holeHi}, [2]uint64{lo, hi})
	return f
}

func inTestHole(pa uint64) bool { return pa >= holeLo && pa < holeHi }

func TestFramesAroundCapacity(t *testing.T) {
	f := newHoleFrames(t)
	assert.Equal(t, holeFrames, f.Capacity(), "the hole's frames are not counted")
	for _, tt := range []struct {
		pa   uint64
		want bool
	}{
		{holeRAMStart, true}, {holeLo - PageSize, true}, {holeLo, false},
		{holeLo + 5*PageSize, false}, {holeHi - 1, false}, {holeHi, true}, {holeRAMEnd - 1, true}, {holeRAMEnd, false},
	} {
		assert.Equal(t, tt.want, f.Contains(tt.pa), "%#x", tt.pa)
	}
	assert.Nil(t, f.Bytes(holeLo))
	f.IncRef(holeLo)
	f.DecRef(holeLo)
	assert.Zero(t, f.Used(), "references to hole frames are ignored")
}

// TestFramesAroundAlloc: single frames run up to the hole and go on
// above it; every frame is handed out once, none from the hole, all
// zero, until the pool is exhausted.
func TestFramesAroundAlloc(t *testing.T) {
	f := newHoleFrames(t)
	seen := map[uint64]bool{}
	var prev uint64
	for range holeFrames {
		pa, err := f.Alloc()
		require.NoError(t, err)
		require.False(t, inTestHole(pa), "%#x is in the hole", pa)
		require.False(t, seen[pa], "%#x handed out twice", pa)
		require.Zero(t, f.Bytes(pa)[0])
		if prev == holeLo-PageSize {
			assert.Equal(t, uint64(holeHi), pa, "the next frame after the hole is its end")
		}
		seen[pa], prev = true, pa
	}
	_, err := f.Alloc()
	require.ErrorIs(t, err, ErrNoMemory)
	assert.Equal(t, holeFrames, f.Used())
	n := 0
	f.ForEachUsed(func(pa uint64, _ int) bool {
		assert.False(t, inTestHole(pa))
		n++
		return true
	})
	assert.Equal(t, holeFrames, n)
	// Freed frames come back; the hole still never does.
	f.DecRef(holeHi)
	f.DecRef(holeLo - PageSize)
	for range 2 {
		pa, err := f.Alloc()
		require.NoError(t, err)
		assert.Contains(t, []uint64{holeHi, holeLo - PageSize}, pa)
	}
}

// TestFramesAroundHuge: 2 MiB blocks never straddle the hole or lie in
// it, whether taken from never-used frames or from freed ones; the
// frames skipped below the hole stay available one by one.
func TestFramesAroundHuge(t *testing.T) {
	for _, tt := range []struct {
		name   string
		before int // single frames taken first
	}{
		{"from the start", 0},
		{"one frame used", 1},
		{"just below the hole", (holeLo-holeRAMStart)/PageSize - 3},
		{"all below the hole", (holeLo - holeRAMStart) / PageSize},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newHoleFrames(t)
			for range tt.before {
				_, err := f.Alloc()
				require.NoError(t, err)
			}
			var huge []uint64
			for {
				pa, err := f.AllocHuge()
				if errors.Is(err, ErrNoMemory) {
					break
				}
				require.NoError(t, err)
				require.Zero(t, pa&hugeMask)
				require.False(t, pa < holeHi && pa+HugePageSize > holeLo, "block %#x overlaps the hole", pa)
				for i := uint64(0); i < HugePageSize; i += PageSize {
					require.Zero(t, f.Bytes(pa + i)[0])
				}
				huge = append(huge, pa)
			}
			require.NotEmpty(t, huge)
			assert.GreaterOrEqual(t, huge[len(huge)-1], uint64(holeHi), "blocks above the hole are used")
			// Whatever is left goes out as single frames, none in the hole.
			for f.Used() < holeFrames {
				pa, err := f.Alloc()
				require.NoError(t, err)
				require.False(t, inTestHole(pa), "%#x", pa)
			}
			_, err := f.Alloc()
			require.ErrorIs(t, err, ErrNoMemory)
			// A freed block below the hole is found again.
			for i := uint64(0); i < HugePageSize; i += PageSize {
				f.DecRef(holeLo - HugePageSize + i)
			}
			pa, err := f.AllocHuge()
			require.NoError(t, err)
			assert.Equal(t, uint64(holeLo-HugePageSize), pa)
		})
	}
}

// TestFramesAroundRun: a run for restore's page data that reaches the
// hole goes on above it; RunFrame and RunSegments map its frames.
func TestFramesAroundRun(t *testing.T) {
	below := uint64(holeLo-holeRAMStart) / PageSize
	for _, tt := range []struct {
		name     string
		before   int
		n        uint64
		segments []Segment
	}{
		{"below the hole", 0, 10, []Segment{{PA: holeRAMStart, First: 0, Count: 10}}},
		{"up to the hole", 0, below, []Segment{{PA: holeRAMStart, First: 0, Count: below}}},
		{"across the hole", 0, below + 5, []Segment{{PA: holeRAMStart, First: 0, Count: below}, {PA: holeHi, First: below, Count: 5}}},
		{"across from further up", 100, below, []Segment{{PA: holeRAMStart + 100*PageSize, First: 0, Count: below - 100}, {PA: holeHi, First: below - 100, Count: 100}}},
		{"all of RAM", 0, holeFrames, []Segment{{PA: holeRAMStart, First: 0, Count: below}, {PA: holeHi, First: below, Count: holeFrames - below}}},
		{"above the hole", int(below), 7, []Segment{{PA: holeHi, First: 0, Count: 7}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newHoleFrames(t)
			for range tt.before {
				_, err := f.Alloc()
				require.NoError(t, err)
			}
			base, err := f.AllocRun(int(tt.n))
			require.NoError(t, err)
			assert.Equal(t, tt.segments, f.RunSegments(base, tt.n))
			for _, s := range tt.segments {
				for i := range s.Count {
					pa := f.RunFrame(base, s.First+i)
					require.Equal(t, s.PA+i*PageSize, pa)
					require.Equal(t, 1, f.RefCount(pa))
				}
			}
			assert.Equal(t, tt.before+int(tt.n), f.Used())
			if rest := holeFrames - tt.before - int(tt.n); rest > 0 {
				pa, err := f.Alloc()
				require.NoError(t, err)
				assert.False(t, inTestHole(pa))
				assert.Zero(t, f.RefCount(pa)-1)
			}
		})
	}
	f := newHoleFrames(t)
	_, err := f.AllocRun(holeFrames + 1)
	require.ErrorIs(t, err, ErrNoMemory, "the hole does not count")
}

// TestAddressSpaceAroundHole: an address space over RAM with a hole
// works on both sides of it, and an entry that points into the hole
// (which the allocator never makes) is EFAULT to the kernel's copies,
// never an access to the hole.
func TestAddressSpaceAroundHole(t *testing.T) {
	f := newHoleFrames(t)
	as, err := NewAddressSpace(f.Mem(), f, Layout{})
	require.NoError(t, err)
	const va = 0x10000000
	const n = 10 << 20 // more than fits below the hole
	_, err = as.Mmap(va, n, ProtRead|ProtWrite, MapPrivate|MapAnonymous|MapFixed, nil, 0)
	require.NoError(t, err)
	for off := uint64(0); off < n; off += PageSize {
		require.NoError(t, as.CopyOut(va+off, []byte{byte(off >> 12), 1}))
	}
	above := 0
	for off := uint64(0); off < n; off += PageSize {
		b := make([]byte, 2)
		require.NoError(t, as.CopyIn(va+off, b))
		require.Equal(t, []byte{byte(off >> 12), 1}, b)
		e, ok := as.PageTables().Lookup(va + off)
		require.True(t, ok)
		require.False(t, inTestHole(e.Addr()))
		if e.Addr() >= holeHi {
			above++
		}
	}
	assert.Positive(t, above)
	require.NoError(t, as.PageTables().SetPTE(va, MakePTE(holeLo, Present|Writable|User)))
	assert.ErrorIs(t, as.CopyIn(va, make([]byte, 1)), unix.EFAULT)
}
