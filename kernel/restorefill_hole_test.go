package kernel

import (
	"testing"

	"github.com/emuckpt/emuckpt/guestmm"
	"github.com/emuckpt/emuckpt/internal/kvmtest"
	"github.com/emuckpt/emuckpt/vmm"
	"github.com/stretchr/testify/require"
)

// TestFillPagesAcrossHole: page data whose run of frames starts 100
// pages below the MMIO hole and goes on above it (a guest of more than
// 3 GiB) lands page by page at the frames of the run, in the background
// (one userfaultfd over both parts; the first chunk straddles the hole)
// and synchronously; the hole is left alone.
func TestFillPagesAcrossHole(t *testing.T) {
	kvmtest.Require(t)
	eachFill(t, func(t *testing.T, background bool) {
		m, err := vmm.New(vmm.Config{MemSize: 3<<30 + 16<<20})
		require.NoError(t, err)
		defer m.Close()
		k := &Kernel{m: m, frames: m.NewFrames()}
		lo, hi := k.frames.Hole()
		require.Equal(t, [2]uint64{vmm.LowMemEnd, vmm.HighMemBase}, [2]uint64{lo, hi})
		start, _ := k.frames.Range()
		_, err = k.frames.AllocRun(int((lo-start)/guestmm.PageSize) - 100)
		require.NoError(t, err)
		const n = 3*restoreChunk + 7
		base, err := k.frames.AllocRun(n)
		require.NoError(t, err)
		require.Equal(t, lo-100*guestmm.PageSize, base)
		pages := make([]byte, n*guestmm.PageSize)
		for i := range pages {
			pages[i] = byte(i/guestmm.PageSize) ^ byte(i) | 1
		}
		src := &testSource{PageBytes: PageBytes(pages), bad: n}
		pl := &pagePlace{pa: make([]uint64, n), block: make([]int32, n), smallBase: base, small: n}
		for i := range uint64(n) {
			pl.pa[i], pl.block[i] = k.frames.RunFrame(base, i), -1
		}
		require.NoError(t, k.fillPages(pl, src, []uint64{2}))
		require.Equal(t, background, k.fill != nil)
		require.NoError(t, k.awaitPages())
		require.True(t, src.closed.Load())
		for i := uint64(0); i < n; i++ {
			pa := k.frames.RunFrame(base, i)
			require.False(t, pa >= lo && pa < hi)
			require.Equal(t, pages[i*guestmm.PageSize:(i+1)*guestmm.PageSize], m.Mem()[pa:pa+guestmm.PageSize], "page %d at %#x", i, pa)
		}
	})
}
