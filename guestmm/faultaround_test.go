package guestmm

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// presentPagesIn lists the pages of [start, end) that are present, as page
// indexes from start.
func presentPagesIn(as *AddressSpace, start, end uint64) []int {
	var out []int
	for va := range as.PresentPages(start, end) {
		out = append(out, int((va-start)/PageSize))
	}
	return out
}

func TestFileFaultAround(t *testing.T) {
	const window = 0x40000000 // 64 KiB aligned
	data := pattern(20*PageSize+100, 5)
	tests := []struct {
		name    string
		pages   uint64 // mapping length in pages
		off     uint64 // file offset of the mapping, in pages
		prot    Prot
		flags   uint32
		backing func(as *AddressSpace) Backing
		fault   uint64 // page of the fault
		code    uint64
		want    []int
	}{
		{"read fault maps the 64 KiB block", 32, 0, rw, MapPrivate, nil, 5, PFUser,
			[]int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}},
		{"second block, inside the VMA", 20, 0, ProtRead, MapPrivate, nil, 17, PFUser,
			[]int{16, 17, 18, 19}},
		{"not past the page holding the end of the file", 32, 0, ProtRead, MapShared, nil, 16, PFUser,
			[]int{16, 17, 18, 19, 20}},
		{"file offset shifts the file's end", 16, 8, ProtRead | ProtExec, MapPrivate, nil, 3, PFUser | PFInstr,
			[]int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}},
		{"write fault: one page", 32, 0, rw, MapPrivate, nil, 5, PFUser | PFWrite, []int{5}},
		{"shared mapping of a page cache file: one page", 16, 0, ProtRead, MapShared, func(as *AddressSpace) Backing {
			return &pageCacheFile{memFile: memFile{name: "/tmp/f"}, frames: as.frames, pages: map[uint64]uint64{}, size: 16 * PageSize}
		}, 5, PFUser, []int{5}},
		{"private mapping of a page cache file", 16, 0, ProtRead, MapPrivate, func(as *AddressSpace) Backing {
			return &pageCacheFile{memFile: memFile{name: "/tmp/f"}, frames: as.frames, pages: map[uint64]uint64{}, size: 3 * PageSize}
		}, 1, PFUser, []int{0, 1, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem, frames := newTestFrames(t, 256)
			as, err := NewAddressSpace(mem, frames, Layout{FaultAround: 16})
			require.NoError(t, err)
			var b Backing = &memFile{name: "/f", data: data}
			if tt.backing != nil {
				b = tt.backing(as)
			}
			addr := mustMmap(t, as, window, tt.pages*PageSize, tt.prot, tt.flags|MapFixed, b, tt.off*PageSize)
			mustFault(t, as, addr+tt.fault*PageSize+123, tt.code)
			assert.Equal(t, tt.want, presentPagesIn(as, addr, addr+tt.pages*PageSize))
			for _, i := range tt.want {
				va := addr + uint64(i)*PageSize
				e, ok := as.pt.Lookup(va)
				require.True(t, ok)
				if uint64(i) != tt.fault {
					assert.Zero(t, e&(Writable|Copied), "page %d is clean and read-only", i)
				}
				if mf, ok := b.(*memFile); ok {
					got := make([]byte, PageSize)
					require.NoError(t, as.CopyIn(va, got))
					want := make([]byte, PageSize)
					if o := (tt.off + uint64(i)) * PageSize; o < uint64(len(mf.data)) {
						copy(want, mf.data[o:])
					}
					assert.Equal(t, want, got, "contents of page %d", i)
				}
			}
			if tt.backing == nil {
				checkInvariants(t, 0, as) // a page cache file holds references of its own
			}
		})
	}
}

// TestFileFaultAroundOutOfMemory: neighbours are skipped when frames run
// out, the faulting page itself is mapped.
func TestFileFaultAroundOutOfMemory(t *testing.T) {
	mem, frames := newTestFrames(t, 8)
	as, err := NewAddressSpace(mem, frames, Layout{FaultAround: 16})
	require.NoError(t, err)
	f := &memFile{name: "/f", data: pattern(16*PageSize, 1)}
	addr := mustMmap(t, as, 0x40000000, 16*PageSize, ProtRead, MapPrivate|MapFixed, f, 0)
	mustFault(t, as, addr+8*PageSize, PFUser)
	got := presentPagesIn(as, addr, addr+16*PageSize)
	assert.Contains(t, got, 8)
	assert.Less(t, len(got), 16)
	assert.Equal(t, frames.Capacity(), frames.Used(), "every frame used")
	checkInvariants(t, 0, as)
}
