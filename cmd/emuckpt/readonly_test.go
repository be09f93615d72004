package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/emuckpt/emuckpt/internal/kvmtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// erofsTree makes what testimages/erofs expects in dir: a file f, an empty
// directory d and a symbolic link l -> f.
func erofsTree(t *testing.T, dir string) {
	t.Helper()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "f"), []byte("hi\n"), 0o644))
	require.NoError(t, os.Mkdir(filepath.Join(dir, "d"), 0o755))
	require.NoError(t, os.Symlink("f", filepath.Join(dir, "l")))
}

// TestReadOnlyRoot runs every call that would modify a file system on the
// read-only root and compares the errno of each with Linux's on a
// read-only mount: testdata/erofs.golden, recorded on Linux 6.18, and,
// when the test runs as root with unshare(1), a fresh native run on a
// read-only tmpfs in a private mount namespace.
func TestReadOnlyRoot(t *testing.T) {
	kvmtest.Require(t)
	want, err := os.ReadFile("testdata/erofs.golden")
	require.NoError(t, err)
	root := t.TempDir()
	erofsTree(t, root)

	got := emuckpt(t, "run", "--root", root, img("erofs"), "/")
	require.Equal(t, 0, got.status, got.stderr)
	assert.Empty(t, got.stderr)
	assert.Equal(t, string(want), got.stdout)

	unshare, err := exec.LookPath("unshare")
	if os.Geteuid() != 0 || err != nil {
		t.Log("not root or no unshare(1): compared with the recorded Linux output only")
		return
	}
	mnt := t.TempDir()
	script := `set -e
mount -t tmpfs none "$1"
cd "$1"; echo hi > f; mkdir d; ln -s f l
mount -o remount,ro "$1"
exec "$2" "$1"`
	native := runCmd(t, exec.Command(unshare, "-m", "sh", "-c", script, "sh", mnt, img("erofs")))
	if native.status != 0 {
		t.Logf("no read-only tmpfs natively (%s): compared with the recorded Linux output only", native.stderr)
		return
	}
	assert.Equal(t, native.stdout, got.stdout, "native run on a read-only tmpfs")
}
