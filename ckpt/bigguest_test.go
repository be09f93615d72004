package ckpt

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/emuckpt/emuckpt/internal/kvmtest"
	"github.com/emuckpt/emuckpt/kernel"
	"github.com/emuckpt/emuckpt/testimages"
	"github.com/emuckpt/emuckpt/vmm"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestGuestAboveTheHole: a guest with more RAM than fits below the MMIO
// hole (--mem 4G: 3 GiB below it, 1 GiB from 4 GiB on) that touches
// more than 3 GiB gets frames above 4 GiB and none in the hole, its
// checkpoint stores them, and the restored guest, whose page data then
// crosses the hole too, reads every page back intact.
func TestGuestAboveTheHole(t *testing.T) {
	kvmtest.Require(t)
	const mib = 3300
	path := filepath.Join(t.TempDir(), "big.img")
	prog, err := testimages.FS.ReadFile("bin/bigmem")
	require.NoError(t, err)
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	require.NoError(t, err)
	defer null.Close()
	var above, inHole int
	cfg := kernel.Config{
		Program: prog, Name: "bigmem", Path: testimages.Path("bigmem"),
		Args: []string{"bigmem", strconv.Itoa(mib)}, Stdout: null, Stderr: null,
		MemSize: 4 << 30,
	}
	cfg.Checkpoint.Save = func(s *kernel.Snapshot) error {
		for _, pa := range s.Pages {
			switch {
			case pa >= vmm.HighMemBase:
				above++
			case pa >= vmm.LowMemEnd:
				inHole++
			}
		}
		require.Less(t, slices.Max(s.Pages), vmm.PhysEnd(4<<30))
		return Write(path, s)
	}
	k, err := kernel.New(cfg)
	require.NoError(t, err)
	st, err := k.Run(context.Background())
	k.Close()
	require.NoError(t, err)
	require.True(t, st.Checkpointed, "%+v", st)
	assert.Zero(t, inHole, "no frame in the MMIO hole")
	assert.Greater(t, above, (mib-3072)<<8, "the pages that do not fit below the hole are above 4 GiB")

	r, w, err := os.Pipe()
	require.NoError(t, err)
	img, err := Open(path)
	require.NoError(t, err)
	defer img.Close()
	assert.Equal(t, uint64(4<<30), img.State.MemSize)
	rk, err := img.Restore(kernel.Config{Program: prog, Path: testimages.Path("bigmem"), Stdout: w})
	require.NoError(t, err)
	defer rk.Close()
	status, err := rk.Run(context.Background())
	require.NoError(t, err)
	w.Close()
	out := make([]byte, 200)
	n, _ := r.Read(out)
	require.Equal(t, 0, status.ShellStatus())
	require.Equal(t, "bigmem "+strconv.Itoa(mib)+" MiB: ok (checkpoint returned 2)\n", string(out[:n]))
}
