package vfs

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestEscape tries every way out of the root. A successful open must name
// the expected guest file, and its host descriptor must be inside the root.
func TestEscape(t *testing.T) {
	lookupModes(t, func(t *testing.T, fs *FS, tree *testTree) {
		long255 := strings.Repeat("n", 255)
		tests := []struct {
			name  string
			cwd   string
			path  string
			flags int
			want  string // canonical guest path when the open succeeds
			errno unix.Errno
		}{
			{name: "dotdot above root", path: "../../etc/passwd", want: "/etc/passwd"},
			{name: "absolute dotdot above root", path: "/../../../etc/passwd", want: "/etc/passwd"},
			{name: "dotdot from subdir", cwd: "/dir/sub", path: "../../../../../etc/passwd", want: "/etc/passwd"},
			{name: "symlink to /etc", path: "/escape_etc/passwd", want: "/etc/passwd"},
			{name: "symlink to ../..", path: "/escape_up/etc/passwd", want: "/etc/passwd"},
			{name: "symlink to far above", path: "/escape_deep", want: "/etc/passwd"},
			{name: "symlink up from subdir", path: "/dir/link_up/etc/passwd", want: "/etc/passwd"},
			{name: "symlink to the sibling", path: "/to_outside", errno: unix.ENOENT},
			{name: "symlink to host absolute path", path: "/to_outside_abs", errno: unix.ENOENT},
			{name: "dotdot to the sibling", path: "/../outside/secret", errno: unix.ENOENT},
			{name: "relative dotdot to the sibling", cwd: "/dir", path: "../../outside/secret", errno: unix.ENOENT},
			{name: "host absolute path", path: tree.outside, errno: unix.ENOENT},
			{name: "magic link", path: "/magic/etc/passwd", errno: unix.ENOENT},
			{name: "magic link up", path: "/magic_up", errno: unix.ENOENT},
			{name: "double slashes", path: "//etc//passwd", want: "/etc/passwd"},
			{name: "leading double slash", path: "//", want: "/"},
			{name: "root", path: "/", want: "/"},
			{name: "dot components", path: "/./etc/./passwd", want: "/etc/passwd"},
			{name: "trailing slash on file", path: "/etc/passwd/", errno: unix.ENOTDIR},
			{name: "trailing slash dot on file", path: "/etc/passwd/.", errno: unix.ENOTDIR},
			{name: "trailing slash on dir", path: "/etc/", want: "/etc"},
			{name: "trailing slashes on dir", path: "/etc///", want: "/etc"},
			{name: "symlink with trailing slash to file", path: "/file_slash_link", errno: unix.ENOTDIR},
			{name: "empty path", path: "", errno: unix.ENOENT},
			{name: "path of PATH_MAX", path: "/" + strings.Repeat("a", PathMax-1), errno: unix.ENAMETOOLONG},
			{name: "path below PATH_MAX", path: "/" + strings.Repeat("a/", (PathMax-2)/2), errno: unix.ENOENT},
			{name: "component of 256", path: "/etc/" + long255 + "x", errno: unix.ENAMETOOLONG},
			{name: "component of 255", path: "/etc/" + long255, errno: unix.ENOENT},
			{name: "long component then dotdot", path: "/etc/" + long255 + "x/../passwd", errno: unix.ENAMETOOLONG},
			{name: "file in the middle", path: "/etc/passwd/x", errno: unix.ENOTDIR},
			{name: "device in the middle", path: "/dev/null/x", errno: unix.ENOTDIR},
			{name: "missing in the middle", path: "/nope/x", errno: unix.ENOENT},
			{name: "symlink loop", path: "/loop1", errno: unix.ELOOP},
			{name: "self loop", path: "/selfloop/x", errno: unix.ELOOP},
			{name: "dangling", path: "/dangling", errno: unix.ENOENT},
			{name: "nul ends the path", path: "/etc/passwd\x00/../../outside", want: "/etc/passwd"},
			{name: "relative to cwd", cwd: "/dir", path: "sub/file", want: "/dir/sub/file"},
			{name: "bad cwd is the root", cwd: "relative", path: "etc/passwd", want: "/etc/passwd"},
			{name: "relative symlink", path: "/lib/libc.so", want: "/usr/lib/libc.so"},
			{name: "absolute symlink", path: "/lib64/libc.so", want: "/usr/lib/libc.so"},
			{name: "dotdot after symlink is physical", path: "/lib/../etc/passwd", errno: unix.ENOENT},
			{name: "dotdot after symlink reaches the target's parent", path: "/lib/../lib/libc.so", want: "/usr/lib/libc.so"},
			{name: "symlink to a synthetic device", path: "/devnull_link", want: "/dev/null"},
			{name: "symlink to a generated file", path: "/maps_link", want: "/proc/self/maps"},
			{name: "synthetic shadows host", path: "/dev/null", want: "/dev/null"},
			{name: "host file in a synthetic dir", path: "/dev/hostonly", want: "/dev/hostonly"},
			{name: "dotdot out of a synthetic dir", path: "/dev/../etc/passwd", want: "/etc/passwd"},
			{name: "dotdot from host into synthetic", path: "/etc/../dev/zero", want: "/dev/zero"},
			{name: "synthetic dir without host dir", path: "/proc/self/", want: "/proc/self"},
			{name: "missing in synthetic dir", path: "/proc/self/exe", errno: unix.ENOENT},
			{name: "fifo in the root", path: "/fifo", errno: unix.EACCES},
			{name: "nofollow on symlink", path: "/file_link", flags: unix.O_NOFOLLOW, errno: unix.ELOOP},
			{name: "nofollow in the middle", path: "/dir_link/sub/file", flags: unix.O_NOFOLLOW, want: "/dir/sub/file"},
			{name: "nofollow with trailing slash", path: "/dir_link/", flags: unix.O_NOFOLLOW, want: "/dir"},
			{name: "directory flag on file", path: "/etc/passwd", flags: unix.O_DIRECTORY, errno: unix.ENOTDIR},
			{name: "directory flag on symlink to dir", path: "/dir_link", flags: unix.O_DIRECTORY, want: "/dir"},
			{name: "nofollow directory on symlink", path: "/dir_link", flags: unix.O_DIRECTORY | unix.O_NOFOLLOW, errno: unix.ENOTDIR},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				cwd := tt.cwd
				if cwd == "" {
					cwd = "/"
				}
				f, errno := fs.Open(cwd, tt.path, unix.O_RDONLY|tt.flags)
				if tt.errno != 0 {
					assert.Equal(t, tt.errno, errno, "got %v", errno)
					assert.Nil(t, f)
					return
				}
				require.Zero(t, errno, "got %v", errno)
				defer f.Close()
				assert.Equal(t, tt.want, f.Describe().Path)
				if fd := hostFd(f); fd >= 0 {
					p := hostPath(t, fd)
					assert.True(t, tree.inside(p), "%s is outside the root", p)
					assert.Equal(t, strings.TrimSuffix(tree.real+tt.want, "/"), p)
				}
			})
		}
	})
}

func TestEscapeStatAndReadlink(t *testing.T) {
	lookupModes(t, func(t *testing.T, fs *FS, tree *testTree) {
		st, errno := fs.Stat("/", "/escape_up")
		require.Zero(t, errno)
		root, errno := fs.Stat("/", "/")
		require.Zero(t, errno)
		assert.Equal(t, root.Ino, st.Ino, "../.. from the root is the root")

		_, errno = fs.Stat("/", "/to_outside")
		assert.Equal(t, unix.ENOENT, errno)

		target, errno := fs.Readlink("/", "/to_outside")
		require.Zero(t, errno)
		assert.Equal(t, "../outside/secret", target, "readlink shows the target as is")

		_, errno = fs.Readlink("/", "/etc/passwd")
		assert.Equal(t, unix.EINVAL, errno)
		_, errno = fs.Readlink("/", "/dir_link/")
		assert.Equal(t, unix.EINVAL, errno, "a trailing slash follows the link")

		cwd, errno := fs.Chdir("/", "/dir/link_up/dir_link/sub/..")
		require.Zero(t, errno)
		assert.Equal(t, "/dir", cwd)
		_, errno = fs.Chdir("/", "/etc/passwd")
		assert.Equal(t, unix.ENOTDIR, errno)
		cwd, errno = fs.Chdir("/dir", "..")
		require.Zero(t, errno)
		assert.Equal(t, "/", cwd)
	})
}

func TestNoRoot(t *testing.T) {
	fs, err := New(Options{})
	require.NoError(t, err)
	defer fs.Close()

	_, errno := fs.Open("/", "/etc/passwd", unix.O_RDONLY)
	assert.Equal(t, unix.ENOENT, errno)
	_, errno = fs.Open("/", "/../../etc/passwd", unix.O_RDONLY)
	assert.Equal(t, unix.ENOENT, errno)

	f, errno := fs.Open("/", "/dev/../dev/./zero", unix.O_RDONLY)
	require.Zero(t, errno)
	assert.Equal(t, "/dev/zero", f.Describe().Path)
	f.Close()

	d, errno := fs.Open("/", "/", unix.O_RDONLY|unix.O_DIRECTORY)
	require.Zero(t, errno)
	defer d.Close()
	assert.Equal(t, []string{".", "..", "dev", "proc"}, direntNames(t, d))

	st, errno := fs.Stat("/", "/")
	require.Zero(t, errno)
	assert.Equal(t, uint32(unix.S_IFDIR|0o555), st.Mode)

	_, errno = fs.Open("/", "/newfile", unix.O_CREAT|unix.O_WRONLY)
	assert.Equal(t, unix.EROFS, errno)
}

func TestNewErrors(t *testing.T) {
	_, err := New(Options{Root: "/nonexistent/root"})
	assert.Error(t, err)
	tree := newTestTree(t)
	_, err = New(Options{Root: tree.root + "/etc/passwd"})
	assert.Error(t, err)
}
