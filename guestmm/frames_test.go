package guestmm

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNewFramesRange(t *testing.T) {
	mem := make([]byte, 64*PageSize+100)
	tests := []struct {
		name       string
		start, end uint64
		wantStart  uint64
		wantCount  int
	}{
		{"whole", 0, uint64(len(mem)), 0, 64},
		{"unaligned", 100, 10*PageSize + 5, PageSize, 9},
		{"end beyond mem", 8 * PageSize, 1 << 40, 8 * PageSize, 56},
		{"empty", 5 * PageSize, 5 * PageSize, 5 * PageSize, 0},
		{"inverted", 10 * PageSize, 2 * PageSize, 10 * PageSize, 0},
		{"start beyond mem", 1 << 62, 1 << 63, 1 << 62, 0},
		{"start near overflow", ^uint64(0) - 10, ^uint64(0), ^uint64(0) - 10, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := NewFrames(mem, tt.start, tt.end)
			assert.Equal(t, tt.wantCount, f.Capacity())
			if tt.wantCount > 0 {
				start, end := f.Range()
				assert.Equal(t, tt.wantStart, start)
				assert.Equal(t, tt.wantStart+uint64(tt.wantCount)*PageSize, end)
			}
		})
	}
}

func TestFramesAllocFree(t *testing.T) {
	mem, f := newTestFrames(t, 4)
	seen := map[uint64]bool{}
	for range 4 {
		pa, err := f.Alloc()
		require.NoError(t, err)
		require.Zero(t, pa&pageMask)
		require.GreaterOrEqual(t, pa, uint64(testRAMBase))
		require.False(t, seen[pa], "frame %#x handed out twice", pa)
		seen[pa] = true
		require.Equal(t, 1, f.RefCount(pa))
		// Scribble so that reuse must clear it.
		copy(mem[pa:pa+PageSize], pattern(PageSize, 1))
	}
	require.Equal(t, 4, f.Used())

	_, err := f.Alloc()
	require.ErrorIs(t, err, ErrNoMemory)

	var victim uint64
	for pa := range seen {
		victim = pa
		break
	}
	f.IncRef(victim)
	require.Equal(t, 2, f.RefCount(victim))
	f.DecRef(victim)
	require.Equal(t, 4, f.Used())
	f.DecRef(victim)
	require.Equal(t, 3, f.Used())
	require.Equal(t, 0, f.RefCount(victim))

	// Freeing again and references to free frames are ignored.
	f.DecRef(victim)
	f.IncRef(victim)
	require.Equal(t, 0, f.RefCount(victim))
	require.Equal(t, 3, f.Used())

	pa, err := f.Alloc()
	require.NoError(t, err)
	require.Equal(t, victim, pa, "the freed frame is reused")
	require.Equal(t, make([]byte, PageSize), mem[pa:pa+PageSize], "a reused dirty frame is zeroed")
}

func TestFramesInvalidAddresses(t *testing.T) {
	_, f := newTestFrames(t, 2)
	for _, pa := range []uint64{0, testRAMBase - 1, testRAMBase + 2*PageSize, ^uint64(0), 1 << 63} {
		f.IncRef(pa)
		f.DecRef(pa)
		assert.Equal(t, 0, f.RefCount(pa))
		assert.False(t, f.Contains(pa))
		assert.Nil(t, f.Bytes(pa))
	}
	assert.Equal(t, 0, f.Used())
	f.MarkDirty(0, ^uint64(0))
	f.MarkZero(0, ^uint64(0))
	f.MarkDirty(^uint64(0)-5, 3)
}

// A frame that was never handed out is not cleared again: guest RAM is
// lazily allocated host memory, and clearing would commit it.
func TestFramesKnownZeroSkipsClear(t *testing.T) {
	mem, f := newTestFrames(t, 2)
	// Pretend the host memory holds garbage (it never does for fresh
	// frames); the allocator must not touch a fresh frame.
	start, end := f.Range()
	for i := start; i < end; i++ {
		mem[i] = 0xaa
	}
	pa, err := f.Alloc()
	require.NoError(t, err)
	assert.Equal(t, byte(0xaa), mem[pa], "fresh frame was written")

	// MarkDirty makes the allocator clear frames before handing them out.
	f.MarkDirty(start, end)
	pa2, err := f.Alloc()
	require.NoError(t, err)
	assert.Equal(t, make([]byte, PageSize), mem[pa2:pa2+PageSize])

	// A freed frame that the VMM reports as zero again is not cleared.
	f.DecRef(pa2)
	mem[pa2] = 0x55
	f.MarkZero(pa2, pa2+1)
	pa3, err := f.Alloc()
	require.NoError(t, err)
	require.Equal(t, pa2, pa3)
	assert.Equal(t, byte(0x55), mem[pa3])
}

func TestFramesForEachUsed(t *testing.T) {
	_, f := newTestFrames(t, 8)
	var want []uint64
	for range 3 {
		pa, err := f.Alloc()
		require.NoError(t, err)
		want = append(want, pa)
	}
	f.IncRef(want[1])
	f.DecRef(want[0])
	var got []uint64
	var counts []int
	f.ForEachUsed(func(pa uint64, refs int) bool {
		got = append(got, pa)
		counts = append(counts, refs)
		return true
	})
	assert.Equal(t, want[1:], got)
	assert.Equal(t, []int{2, 1}, counts)
}

// TestFramesRefCounts: RefCountStopped gives what RefCount gives, for
// frames in use, free frames and addresses outside the allocator.
func TestFramesRefCounts(t *testing.T) {
	mem := make([]byte, 16*PageSize)
	f := NewFrames(mem, 2*PageSize, uint64(len(mem)))
	a, err := f.Alloc()
	require.NoError(t, err)
	b, err := f.Alloc()
	require.NoError(t, err)
	f.IncRef(b)
	f.IncRef(b)
	c, err := f.Alloc()
	require.NoError(t, err)
	f.DecRef(c)
	tests := []struct {
		name string
		pa   uint64
		want int
	}{
		{"one reference", a, 1},
		{"three references", b + 100, 3},
		{"freed", c, 0},
		{"below the allocator", 0, 0},
		{"beyond it", uint64(len(mem)), 0},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, f.RefCount(tt.pa), tt.name)
		assert.Equal(t, tt.want, f.RefCountStopped(tt.pa), tt.name)
	}
}

// TestRefCountsStopped: the counts of consecutive frames, as
// RefCountStopped gives them one by one, across the hole and outside the
// frames too.
func TestRefCountsStopped(t *testing.T) {
	mem := make([]byte, 6<<20)
	f := NewFramesAround(mem, 0, uint64(len(mem)), 2<<20, 4<<20)
	var pas []uint64
	for range HugeFrames + 8 { // some after the hole
		pa, err := f.Alloc()
		require.NoError(t, err)
		pas = append(pas, pa)
	}
	require.Equal(t, uint64(4<<20), pas[HugeFrames])
	f.IncRef(pas[HugeFrames-1])
	f.IncRef(pas[HugeFrames])
	f.IncRef(pas[1])
	f.IncRef(pas[1])
	f.DecRef(pas[3])
	for _, c := range []struct{ pa, n uint64 }{{pas[0], 5}, {pas[2], 1}, {0, 8}, {uint64(len(mem)) - 2*PageSize, 4}, {pas[0], 0},
		{2<<20 - 2*PageSize, 4}, {2<<20 - PageSize, HugeFrames + 2}, {4<<20 - PageSize, 3}} {
		got := make([]int32, c.n)
		f.RefCountsStopped(c.pa, got)
		want := make([]int32, c.n)
		for i := range want {
			want[i] = int32(f.RefCountStopped(c.pa + uint64(i)*PageSize))
		}
		assert.Equal(t, want, got, "%#x+%d", c.pa, c.n)
	}
}
