package image

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCRCCombine(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, sizes := range [][2]int{{0, 0}, {0, 5}, {5, 0}, {1, 1}, {100, 4096}, {4096, 3}, {1 << 16, 1<<16 + 7}} {
		a := make([]byte, sizes[0])
		b := make([]byte, sizes[1])
		for i := range a {
			a[i] = byte(rng.Uint32())
		}
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		want := crc32c(append(append([]byte{}, a...), b...))
		require.Equal(t, want, crcCombine(crc32c(a), crc32c(b), uint64(len(b))), "sizes %v", sizes)
	}
}

func TestPagesCRC(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	data := make([]byte, 11*PageSize)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	for _, chunkPages := range []int{1, 2, 3, 4, 11, 16} {
		for npages := 0; npages <= 11; npages++ {
			d := data[:npages*PageSize]
			var sums []uint32
			for off := 0; off < len(d); off += chunkPages * PageSize {
				sums = append(sums, crc32c(d[off:min(len(d), off+chunkPages*PageSize)]))
			}
			last := uint64(chunkPages * PageSize)
			if r := npages % chunkPages; r != 0 {
				last = uint64(r * PageSize)
			}
			require.Equal(t, crc32c(d), pagesCRC(sums, uint64(chunkPages*PageSize), last), "chunk %d pages %d", chunkPages, npages)
		}
	}
}

// TestCRC32CCheckValue pins the CRC variant FORMAT.md documents.
func TestCRC32CCheckValue(t *testing.T) {
	require.Equal(t, uint32(0xe3069283), crc32c([]byte("123456789")))
}
