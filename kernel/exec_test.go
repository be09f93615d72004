package kernel

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestExePath(t *testing.T) {
	dir, err := filepath.EvalSymlinks(t.TempDir())
	require.NoError(t, err)
	root := filepath.Join(dir, "root")
	require.NoError(t, os.MkdirAll(filepath.Join(root, "usr/bin"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "usr/bin/busybox"), nil, 0o755))
	// A merged-/usr root: /bin is a link to usr/bin.
	require.NoError(t, os.Symlink("usr/bin", filepath.Join(root, "bin")))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "outside"), nil, 0o755))
	require.NoError(t, os.Symlink(root, filepath.Join(dir, "rootlink")))
	// rootlink stands for the root itself, named through a link.
	require.NoError(t, os.Symlink(filepath.Join(dir, "outside"), filepath.Join(dir, "prog")))
	wd, err := os.Getwd()
	require.NoError(t, err)
	rel, err := filepath.Rel(wd, filepath.Join(root, "bin/busybox"))
	require.NoError(t, err)

	tests := []struct {
		name           string
		path, prog, rt string
		want           string
	}{
		{"inside the root", filepath.Join(root, "usr/bin/busybox"), "busybox", root, "/usr/bin/busybox"},
		{"through a symlinked directory", filepath.Join(root, "bin/busybox"), "bin/busybox", root, "/usr/bin/busybox"},
		{"relative host path", rel, "./busybox", root, "/usr/bin/busybox"},
		{"root named through a link", filepath.Join(root, "bin/busybox"), "busybox", filepath.Join(dir, "rootlink"), "/usr/bin/busybox"},
		{"outside the root", filepath.Join(dir, "outside"), "outside", root, "/outside"},
		{"a link to a file outside", filepath.Join(dir, "prog"), "prog", root, "/outside"},
		{"no root: the host path", filepath.Join(dir, "prog"), "prog", "", filepath.Join(dir, "outside")},
		{"no path: the name", "", "/no/such/prog", "", "/no/such/prog"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, exePath(tt.path, tt.prog, tt.rt))
		})
	}
}
