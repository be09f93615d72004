package vfs

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"golang.org/x/sys/unix"
)

// TestModifyReadOnly checks the order of Linux's checks before EROFS, on
// the root and on the synthetic files, which share its read-only mount.
// The end-to-end test (cmd/emuckpt TestReadOnlyRoot) compares the system
// calls with Linux on a read-only mount.
func TestModifyReadOnly(t *testing.T) {
	lookupModes(t, func(t *testing.T, fs *FS, tree *testTree) {
		tests := []struct {
			name string
			do   func() unix.Errno
			want unix.Errno
		}{
			{"mkdir new", func() unix.Errno { return fs.Mkdir("/", "/new", 0o755) }, unix.EROFS},
			{"mkdir relative", func() unix.Errno { return fs.Mkdir("/dir", "new", 0o755) }, unix.EROFS},
			{"mkdir existing", func() unix.Errno { return fs.Mkdir("/", "/etc", 0o755) }, unix.EEXIST},
			{"mkdir existing file", func() unix.Errno { return fs.Mkdir("/", "/etc/passwd/", 0o755) }, unix.EEXIST},
			{"mkdir dangling symlink", func() unix.Errno { return fs.Mkdir("/", "/dangling", 0o755) }, unix.EEXIST},
			{"mkdir missing parent", func() unix.Errno { return fs.Mkdir("/", "/nope/new", 0o755) }, unix.ENOENT},
			{"mkdir parent a file", func() unix.Errno { return fs.Mkdir("/", "/etc/passwd/new", 0o755) }, unix.ENOTDIR},
			{"mkdir parent a symlink loop", func() unix.Errno { return fs.Mkdir("/", "/loop1/new", 0o755) }, unix.ELOOP},
			{"mkdir root", func() unix.Errno { return fs.Mkdir("/", "/", 0o755) }, unix.EEXIST},
			{"mkdir in /dev", func() unix.Errno { return fs.Mkdir("/", "/dev/new", 0o755) }, unix.EROFS},
			{"mkdir escaping", func() unix.Errno { return fs.Mkdir("/", "/escape_up/new", 0o755) }, unix.EROFS},
			{"mknod fifo", func() unix.Errno { return fs.Mknod("/", "/new", unix.S_IFIFO) }, unix.EROFS},
			{"mknod dir", func() unix.Errno { return fs.Mknod("/", "/new", unix.S_IFDIR) }, unix.EPERM},
			{"mknod over /dev/null", func() unix.Errno { return fs.Mknod("/", "/dev/null", unix.S_IFIFO) }, unix.EEXIST},
			{"symlink", func() unix.Errno { return fs.Symlink("x", "/", "/new") }, unix.EROFS},
			{"symlink trailing slash", func() unix.Errno { return fs.Symlink("x", "/", "/new/") }, unix.ENOENT},
			{"symlink empty target", func() unix.Errno { return fs.Symlink("", "/", "/new") }, unix.ENOENT},
			{"link", func() unix.Errno { return fs.Link("/", "/etc/passwd", "/", "/new", false) }, unix.EROFS},
			{"link missing", func() unix.Errno { return fs.Link("/", "/nope", "/", "/new", false) }, unix.ENOENT},
			{"unlink", func() unix.Errno { return fs.Unlink("/", "/etc/passwd") }, unix.EROFS},
			{"unlink missing", func() unix.Errno { return fs.Unlink("/", "/nope") }, unix.EROFS},
			{"unlink missing parent", func() unix.Errno { return fs.Unlink("/", "/nope/x") }, unix.ENOENT},
			{"unlink dot", func() unix.Errno { return fs.Unlink("/", "/etc/.") }, unix.EISDIR},
			{"unlink /dev/null", func() unix.Errno { return fs.Unlink("/", "/dev/null") }, unix.EROFS},
			{"rmdir", func() unix.Errno { return fs.Rmdir("/", "/emptydir") }, unix.EROFS},
			{"rmdir dot", func() unix.Errno { return fs.Rmdir("/etc", ".") }, unix.EINVAL},
			{"rmdir dotdot", func() unix.Errno { return fs.Rmdir("/etc", "..") }, unix.ENOTEMPTY},
			{"rmdir root", func() unix.Errno { return fs.Rmdir("/", "/") }, unix.EBUSY},
			{"rename", func() unix.Errno { return fs.Rename("/", "/etc/passwd", "/", "/new", 0) }, unix.EROFS},
			{"rename missing", func() unix.Errno { return fs.Rename("/", "/nope", "/", "/new", 0) }, unix.EROFS},
			{"rename onto root, noreplace", func() unix.Errno { return fs.Rename("/", "/etc", "/", "/", RenameNoreplace) }, unix.EEXIST},
			{"rename exchange and noreplace", func() unix.Errno {
				return fs.Rename("/", "/etc", "/", "/bin", RenameExchange|RenameNoreplace)
			}, unix.EINVAL},
			{"setattr", func() unix.Errno { return fs.Setattr("/", "/etc/passwd", true) }, unix.EROFS},
			{"setattr dangling, following", func() unix.Errno { return fs.Setattr("/", "/dangling", true) }, unix.ENOENT},
			{"setattr dangling, not following", func() unix.Errno { return fs.Setattr("/", "/dangling", false) }, unix.EROFS},
			{"setattr /proc/self/maps", func() unix.Errno { return fs.Setattr("/", "/proc/self/maps", true) }, unix.EROFS},
			{"truncate", func() unix.Errno { return fs.Truncate("/", "/etc/passwd", 0) }, unix.EROFS},
			{"truncate negative", func() unix.Errno { return fs.Truncate("/", "/etc/passwd", -1) }, unix.EROFS},
			{"truncate dir", func() unix.Errno { return fs.Truncate("/", "/etc", 0) }, unix.EISDIR},
			{"truncate /dev/null", func() unix.Errno { return fs.Truncate("/", "/dev/null", 0) }, unix.EINVAL},
			{"truncate missing", func() unix.Errno { return fs.Truncate("/", "/nope", 0) }, unix.ENOENT},
		}
		for _, tt := range tests {
			assert.Equal(t, tt.want, tt.do(), tt.name)
		}

		f, errno := fs.Open("/", "/etc/passwd", unix.O_RDONLY)
		assert.Zero(t, errno)
		assert.Equal(t, unix.EROFS, fs.SetattrFile(f, false))
		p, errno := fs.Open("/", "/etc/passwd", unix.O_PATH)
		assert.Zero(t, errno)
		assert.Equal(t, unix.EBADF, fs.SetattrFile(p, false), "fchmod of O_PATH")
		assert.Equal(t, unix.EROFS, fs.SetattrFile(p, true), "AT_EMPTY_PATH of O_PATH")
		r, _ := NewPipe(0)
		assert.Equal(t, unix.ENOSYS, fs.SetattrFile(r, false), "a pipe is not on the root")
	})
}
