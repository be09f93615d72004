package guestmm

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestWrittenCoversVMMWrites does random address-space work through the
// VMM's paths (mmap, copies to user memory, write faults, copies on write
// after fork, munmap and reallocation, file pages) and checks that every
// frame whose bytes changed since TakeWritten is in the next TakeWritten.
func TestWrittenCoversVMMWrites(t *testing.T) {
	for seed := range uint64(8) {
		rng := rand.New(rand.NewPCG(seed, 7))
		mem, frames := newTestFrames(t, 4096)
		as, err := NewAddressSpace(mem, frames, Layout{})
		require.NoError(t, err)
		file := &memFile{name: "/f", data: pattern(16*PageSize, 3)}
		spaces := []*AddressSpace{as}
		var regions []uint64
		for round := range 6 {
			before := bytes.Clone(mem)
			frames.TakeWritten()
			for range 40 {
				sp := spaces[rng.IntN(len(spaces))]
				switch op := rng.IntN(7); {
				case op == 0 || len(regions) == 0:
					va := mustMmap(t, sp, 0, 16*PageSize, rw, anonPriv, nil, 0)
					regions = append(regions, va)
				case op == 1:
					va := mustMmap(t, sp, 0, 16*PageSize, rw, MapPrivate, file, 0)
					regions = append(regions, va)
				case op == 2:
					va := regions[rng.IntN(len(regions))] + uint64(rng.IntN(16))*PageSize
					_ = sp.CopyOut(va+uint64(rng.IntN(PageSize-8)), []byte{byte(rng.Uint32()) | 1, 2, 3})
				case op == 3:
					va := regions[rng.IntN(len(regions))] + uint64(rng.IntN(16))*PageSize
					sp.HandleFault(va, PFUser|PFWrite)
				case op == 4 && len(spaces) < 4:
					child, err := sp.Fork()
					require.NoError(t, err)
					spaces = append(spaces, child)
				case op == 5:
					i := rng.IntN(len(regions))
					_ = sp.Munmap(regions[i], 16*PageSize)
					regions = append(regions[:i], regions[i+1:]...)
				default:
					va := regions[rng.IntN(len(regions))] + uint64(rng.IntN(16))*PageSize
					sp.HandleFault(va, PFUser)
				}
			}
			written := frames.TakeWritten()
			changed := 0
			for pa := uint64(testRAMBase); pa < uint64(len(mem)); pa += PageSize {
				if !bytes.Equal(mem[pa:pa+PageSize], before[pa:pa+PageSize]) {
					changed++
					require.True(t, written.Has(pa), "seed %d round %d: frame %#x changed but is not marked written", seed, round, pa)
				}
			}
			require.NotZero(t, changed, "seed %d round %d: the work changed no frame", seed, round)
			require.Zero(t, frames.TakeWritten().Len()-0, "seed %d round %d: taking starts a new set", seed, round)
		}
	}
}

func TestWriteSet(t *testing.T) {
	s := NewWriteSet(0x10000, 0x10000+130*PageSize)
	s.Add(0x10000+PageSize, 2)
	s.Add(0x10000+129*PageSize, 5) // runs past the end: the rest is ignored
	s.Add(0x1000, 1)               // below the start: ignored
	require.Equal(t, 3, s.Len())
	require.True(t, s.Has(0x10000+PageSize))
	require.True(t, s.Has(0x10000+2*PageSize+123))
	require.False(t, s.Has(0x10000))
	require.True(t, s.Has(0x10000+129*PageSize))
	require.False(t, s.Has(0x1000))
	var nilSet *WriteSet
	require.False(t, nilSet.Has(0x10000))
}
