package ckpt

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/emuckpt/emuckpt/internal/kvmtest"
	"github.com/emuckpt/emuckpt/kernel"
	"github.com/emuckpt/emuckpt/testimages"
	"github.com/stretchr/testify/require"
)

// checkpointBigmem runs testimages/bin/bigmem MIB until it checkpoints
// itself into path and returns how long the checkpoint took (snapshot
// and image write, the guest stopped throughout).
func checkpointBigmem(tb testing.TB, mib int, path string) time.Duration {
	tb.Helper()
	return checkpointBigmemTree(tb, mib, 1, path)
}

// checkpointBigmemTree is checkpointBigmem with procs processes of mib
// MiB each.
func checkpointBigmemTree(tb testing.TB, mib, procs int, path string) time.Duration {
	tb.Helper()
	prog, err := testimages.FS.ReadFile("bin/bigmem")
	require.NoError(tb, err)
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	require.NoError(tb, err)
	defer null.Close()
	var took time.Duration
	cfg := kernel.Config{
		Program: prog, Name: "bigmem", Path: testimages.Path("bigmem"),
		Args: []string{"bigmem", strconv.Itoa(mib), strconv.Itoa(procs)}, Stdout: null, Stderr: null,
		MemSize: uint64(procs*mib)<<20 + 128<<20,
	}
	cfg.Checkpoint.Save = func(s *kernel.Snapshot) error {
		err := Write(path, s)
		took = time.Since(s.Started)
		return err
	}
	k, err := kernel.New(cfg)
	require.NoError(tb, err)
	defer k.Close()
	st, err := k.Run(context.Background())
	require.NoError(tb, err)
	require.True(tb, st.Checkpointed, "%+v", st)
	return took
}

// restoreImage opens path and builds the restored kernel: the time to the
// guest's next instruction.
func restoreImage(tb testing.TB, path string) (*kernel.Kernel, *Image, time.Duration) {
	tb.Helper()
	prog, err := testimages.FS.ReadFile("bin/bigmem")
	require.NoError(tb, err)
	start := time.Now()
	img, err := Open(path)
	require.NoError(tb, err)
	k, err := img.Restore(kernel.Config{Program: prog, Path: testimages.Path("bigmem")})
	require.NoError(tb, err)
	return k, img, time.Since(start)
}

func TestBigmemRoundTrip(t *testing.T) {
	kvmtest.Require(t)
	path := filepath.Join(t.TempDir(), "big.img")
	checkpointBigmem(t, 8, path)
	st, err := os.Stat(path)
	require.NoError(t, err)
	pages := int64(8 << 20 / 4096)
	require.Less(t, st.Size(), (pages+16)*4096*101/100, "image no larger than the touched pages + 1%%")
	r, w, err := os.Pipe()
	require.NoError(t, err)
	prog, _ := testimages.FS.ReadFile("bin/bigmem")
	img, err := Open(path)
	require.NoError(t, err)
	defer img.Close()
	k, err := img.Restore(kernel.Config{Program: prog, Path: testimages.Path("bigmem"), Stdout: w})
	require.NoError(t, err)
	defer k.Close()
	status, err := k.Run(context.Background())
	require.NoError(t, err)
	w.Close()
	out := make([]byte, 200)
	n, _ := r.Read(out)
	require.Equal(t, 0, status.ShellStatus())
	require.Equal(t, "bigmem 8 MiB: ok (checkpoint returned 2)\n", string(out[:n]))
}

// BenchmarkCheckpoint256 is the figure "checkpoint of a guest with 256 MiB
// of touched anonymous memory: ≤ 60 ms to a file", and reports the image
// size against the touched pages.
func BenchmarkCheckpoint256(b *testing.B) {
	kvmtest.Require(b)
	path := filepath.Join(b.TempDir(), "big.img")
	var total time.Duration
	for b.Loop() {
		total += checkpointBigmem(b, 256, path)
	}
	st, err := os.Stat(path)
	require.NoError(b, err)
	b.ReportMetric(float64(total.Microseconds())/1e3/float64(b.N), "ckpt-ms")
	b.ReportMetric(float64(st.Size())/float64(256<<20), "image/touched")
}

// BenchmarkRestore reports the time from opening an image to a machine
// ready to run the guest's next instruction, for a small program and for
// 256 MiB: restore maps page data, so both should be a few ms.
func BenchmarkRestore(b *testing.B) {
	kvmtest.Require(b)
	for _, mib := range []int{1, 256} {
		b.Run(strconv.Itoa(mib)+"MiB", func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "big.img")
			checkpointBigmem(b, mib, path)
			var total time.Duration
			for b.Loop() {
				k, img, took := restoreImage(b, path)
				total += took
				k.Close()
				img.Close()
			}
			b.ReportMetric(float64(total.Microseconds())/1e3/float64(b.N), "restore-ms")
		})
	}
}

// BenchmarkTreeCheckpoint is the figure "checkpoint and restore of a tree
// of 8 processes x 8 MiB touched: <= 1.5x the time for one process with
// 64 MiB", both measured in the same run: it reports each time and the
// tree's ratio to the single process.
func BenchmarkTreeCheckpoint(b *testing.B) {
	kvmtest.Require(b)
	dir := b.TempDir()
	var ckpt, restore [2]time.Duration
	shapes := [2][2]int{{64, 1}, {8, 8}} // MiB per process, processes
	for b.Loop() {
		for i, sh := range shapes {
			path := filepath.Join(dir, strconv.Itoa(i)+".img")
			ckpt[i] += checkpointBigmemTree(b, sh[0], sh[1], path)
			k, img, took := restoreImage(b, path)
			restore[i] += took
			k.Close()
			img.Close()
		}
	}
	n := float64(b.N)
	b.ReportMetric(float64(ckpt[0].Microseconds())/1e3/n, "ckpt-1x64-ms")
	b.ReportMetric(float64(ckpt[1].Microseconds())/1e3/n, "ckpt-8x8-ms")
	b.ReportMetric(float64(restore[0].Microseconds())/1e3/n, "restore-1x64-ms")
	b.ReportMetric(float64(restore[1].Microseconds())/1e3/n, "restore-8x8-ms")
	b.ReportMetric(float64(ckpt[1])/float64(ckpt[0]), "ckpt-tree/one")
	b.ReportMetric(float64(restore[1])/float64(restore[0]), "restore-tree/one")
}
