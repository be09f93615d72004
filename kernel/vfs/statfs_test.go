package vfs

import (
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestStatfs(t *testing.T) {
	tree := newTestTree(t)
	var host unix.Statfs_t
	require.NoError(t, unix.Statfs(tree.root, &host))
	cases := []struct {
		path  string
		typ   int64
		flags int64 // bits that must be set
		errno unix.Errno
	}{
		{path: "/", typ: host.Type, flags: StRdonly | StValid},
		{path: "/etc/passwd", typ: host.Type, flags: StRdonly | StValid},
		{path: "/lib", typ: host.Type, flags: StRdonly}, // through a symlink
		{path: "/dev/hostonly", typ: host.Type, flags: StRdonly},
		{path: "/proc/self/maps", typ: ProcSuperMagic, flags: StNoexec | StValid},
		{path: "/proc", typ: ProcSuperMagic},
		{path: "/dev/null", typ: TmpfsMagic, flags: StNosuid},
		{path: "/nonexistent", errno: unix.ENOENT},
		{path: "/etc/passwd/x", errno: unix.ENOTDIR},
		{path: "/loop1", errno: unix.ELOOP},
	}
	lookupModes(t, func(t *testing.T, fs *FS, _ *testTree) {
		for _, c := range cases {
			t.Run(c.path, func(t *testing.T) {
				st, errno := fs.Statfs("/", c.path)
				require.Equal(t, c.errno, errno)
				if errno != 0 {
					return
				}
				require.Equal(t, c.typ, st.Type)
				require.Equal(t, c.flags, st.Flags&c.flags)
				require.Len(t, st.Marshal(), StatfsSize)
			})
		}
	})
}

func TestFileStatfs(t *testing.T) {
	tree := newTestTree(t)
	fs := newTestFS(t, tree, false)
	var host unix.Statfs_t
	require.NoError(t, unix.Statfs(tree.root, &host))
	r, w := NewPipe(0)
	defer r.Close()
	defer w.Close()
	cases := []struct {
		name string
		open func() File
		typ  int64
	}{
		{"regular", func() File { f, e := fs.Open("/", "/etc/passwd", unix.O_RDONLY); require.Zero(t, e); return f }, host.Type},
		{"directory", func() File { f, e := fs.Open("/", "/etc", unix.O_RDONLY); require.Zero(t, e); return f }, host.Type},
		{"O_PATH", func() File { f, e := fs.Open("/", "/etc", unix.O_PATH); require.Zero(t, e); return f }, host.Type},
		{"device", func() File { f, e := fs.Open("/", "/dev/null", unix.O_RDONLY); require.Zero(t, e); return f }, TmpfsMagic},
		{"generated", func() File { f, e := fs.Open("/", "/proc/self/maps", unix.O_RDONLY); require.Zero(t, e); return f }, ProcSuperMagic},
		{"pipe", func() File { return r }, PipefsMagic},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, errno := fs.FileStatfs(c.open())
			require.Zero(t, errno)
			require.Equal(t, c.typ, st.Type)
		})
	}
}
