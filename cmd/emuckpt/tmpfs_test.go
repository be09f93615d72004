package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emuckpt/emuckpt/internal/kvmtest"
	"github.com/emuckpt/emuckpt/internal/testfs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTmpfsMatchesLinux runs testimages/src/tmpfs.c in emuckpt's /tmp
// and, natively, on a real tmpfs of the same sizes: the outputs must be
// the same. The program also checks each result against Linux's
// documented one, so without root (no tmpfs to mount) the emuckpt run
// alone still means something.
func TestTmpfsMatchesLinux(t *testing.T) {
	kvmtest.Require(t)
	got := emuckpt(t, "run", "--tmpfs", "/small:64k", img("tmpfs"), "/tmp", "/small")
	assert.Equal(t, 0, got.status, "stdout:\n%s\nstderr:\n%s", got.stdout, got.stderr)
	assert.True(t, strings.HasSuffix(got.stdout, "\nok\n"), got.stdout)
	if os.Geteuid() != 0 {
		t.Skip("no native comparison: mounting a tmpfs needs root")
	}
	want := native(t, img("tmpfs"), testfs.Tmpfs(t, "1m"), testfs.Tmpfs(t, "64k"))
	require.Equal(t, 0, want.status, want.stdout)
	assert.Equal(t, want.stdout, got.stdout)
}

// TestTmpfsCheckpointRoundTrip checkpoints a program with files in /tmp
// (a hard link, a symbolic link, a sparse file, a file unlinked while
// open, an O_TMPFILE file, shared mappings of an open file and of an
// unlinked and closed one), shows them with inspect and restores them.
func TestTmpfsCheckpointRoundTrip(t *testing.T) {
	kvmtest.Require(t)
	image := filepath.Join(t.TempDir(), "tmpfs.img")
	r := emuckpt(t, "run", "--checkpoint-to", image, "--leave-running", img("tmpfs_ckpt"))
	require.Equal(t, 0, r.status, r.stdout+r.stderr)
	assert.Contains(t, r.stdout, "side: 1\n")
	assert.True(t, strings.HasSuffix(r.stdout, "\nok\n"), r.stdout)

	r = emuckpt(t, "inspect", "--json", image)
	require.Equal(t, 0, r.status, r.stderr)
	var in inspection
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &in))
	require.Len(t, in.Tmpfs, 2, "/tmp and the memfd mount")
	assert.Equal(t, "memfd:", in.Tmpfs[1].Path)
	assert.Len(t, in.Tmpfs[1].Inodes, 2, "its root and the memfd")
	m := in.Tmpfs[0]
	assert.Equal(t, "/tmp", m.Path)
	byPath := map[string]inspectInode{}
	unnamed := 0
	for _, f := range m.Inodes {
		if len(f.Paths) == 0 {
			unnamed++
		}
		for _, p := range f.Paths {
			byPath[p] = f
		}
	}
	assert.Equal(t, 3, unnamed, "the unlinked open file, the O_TMPFILE file and the unlinked mapped file")
	mounts := map[string]int{}
	for _, o := range in.Objects {
		if o.Kind == "tmpfs" {
			mounts[o.Mount]++
		}
	}
	assert.Equal(t, map[string]int{"/tmp": 2, "memfd:": 1}, mounts, "the shared mappings name their tmpfs files")
	assert.Equal(t, []string{"/tmp/dir/a", "/tmp/hard"}, byPath["/tmp/hard"].Paths, "a file with two names is saved once")
	assert.Equal(t, "symlink", byPath["/tmp/sym"].Type)
	assert.Equal(t, "dir/a", byPath["/tmp/sym"].Target)
	assert.Equal(t, int64(1<<20+3), byPath["/tmp/sparse"].Size)
	assert.Equal(t, int64(4096), byPath["/tmp/sparse"].StoredBytes, "holes are not stored")
	r = emuckpt(t, "inspect", image)
	assert.Contains(t, r.stdout, "tmpfs /tmp: size ")

	for i := 0; i < 2; i++ {
		r = emuckpt(t, "restore", image)
		assert.Equal(t, 0, r.status, r.stdout+r.stderr)
		assert.Contains(t, r.stdout, "side: 2\n", "restore %d", i)
		assert.True(t, strings.HasSuffix(r.stdout, "\nok\n"), r.stdout)
	}

	// --tmpfs on restore: the image's /tmp keeps its contents and takes
	// the new size if they fit; a new path is mounted empty.
	r = emuckpt(t, "restore", "--tmpfs", "/tmp:4k", image)
	assert.Equal(t, 125, r.status)
	assert.Contains(t, r.stderr, "more than the new size")
	r = emuckpt(t, "restore", "--tmpfs", "/tmp:1m", "--tmpfs", "/scratch", image)
	assert.Equal(t, 0, r.status, r.stdout+r.stderr)
	assert.True(t, strings.HasSuffix(r.stdout, "\nok\n"), r.stdout)
}
