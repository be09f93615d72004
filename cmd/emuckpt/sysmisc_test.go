package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/emuckpt/emuckpt/internal/kvmtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSysmiscMatchesNative compares sysmisc (process attributes, memory
// locks, statfs/statx, sendfile, copy_file_range, fadvise) and sysmore
// (write-back, mincore and msync, positioned vector I/O, close_range,
// fchdir, the ids and the scheduling policies) under emuckpt -v --root
// with native runs on the same file, result by result and errno by
// errno; -v names no call as lacking. Both runs have the same privilege:
// the guest holds every capability exactly when the host user is root
// (docs/KERNEL.md).
func TestSysmiscMatchesNative(t *testing.T) {
	kvmtest.Require(t)
	root := t.TempDir()
	file := filepath.Join(root, "data.txt")
	require.NoError(t, os.WriteFile(file, []byte("hello, world\n"), 0o644))
	for _, prog := range []string{"sysmisc", "sysmore"} {
		t.Run(prog, func(t *testing.T) {
			want := native(t, img(prog), file)
			require.Equal(t, 0, want.status, want.stderr)
			got := emuckpt(t, "run", "-v", "--root", root, img(prog), "/data.txt")
			assert.Equal(t, want.stdout, got.stdout)
			assert.Equal(t, want.status, got.status)
			assert.Empty(t, got.stderr)
		})
	}
}

// TestSysmiscCheckpoint: the attributes sysmisc sets before it checkpoints
// itself are those a restored run sees.
func TestSysmiscCheckpoint(t *testing.T) {
	kvmtest.Require(t)
	image := filepath.Join(t.TempDir(), "sysmisc.img")
	first := emuckpt(t, "run", "--checkpoint-to", image, "--leave-running", img("sysmisc"), "ckpt")
	require.Equal(t, 0, first.status, first.stderr)
	const attrs = "name=renamed pdeathsig=15 dumpable=0 umask=027 nice=7\nmunlock: 0\n"
	assert.Equal(t, "checkpoint: 1\n"+attrs, first.stdout)
	second := emuckpt(t, "restore", image)
	require.Equal(t, 0, second.status, second.stderr)
	assert.Equal(t, "checkpoint: 2\n"+attrs, second.stdout)
}
