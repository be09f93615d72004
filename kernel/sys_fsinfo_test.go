package kernel

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/emuckpt/emuckpt/kernel/vfs"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// newRootTask is newTestTask with a root holding /file ("hello, world\n")
// and /dir, and a pipe at descriptors 3 (read end) and 4 (write end).
func newRootTask(t *testing.T) (*Kernel, *Task, string) {
	k, task := newTestTask(t, false)
	root := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(root, "file"), []byte("hello, world\n"), 0o644))
	require.NoError(t, os.Mkdir(filepath.Join(root, "dir"), 0o755))
	fs, err := vfs.New(vfs.Options{Root: root})
	require.NoError(t, err)
	t.Cleanup(func() { fs.Close() })
	k.fs = fs
	task.proc.fds = fs.NewFDTable()
	_, errno := call(k, task, (*Kernel).sysPipe, scratch)
	require.Zero(t, errno)
	require.Equal(t, []byte{3, 0, 0, 0, 4, 0, 0, 0}, getBytes(t, task, scratch, 8))
	return k, task, root
}

// atCwdArg is AT_FDCWD as a system-call argument.
const atCwdArg = 0xffffff9c

// open opens path in the task, returning the descriptor.
func open(t *testing.T, k *Kernel, task *Task, path string, flags int) uint64 {
	putString(t, task, scratch+2048, path)
	fd, errno := k.openat(task, atCwdArg, scratch+2048, uint64(flags), 0)
	require.Zero(t, errno, path)
	return fd
}

func TestStatfsCalls(t *testing.T) {
	k, task, root := newRootTask(t)
	var host unix.Statfs_t
	require.NoError(t, unix.Statfs(root, &host))
	file := open(t, k, task, "/file", unix.O_RDONLY)
	cases := []struct {
		name  string
		fd    uint64 // fstatfs when path is ""
		path  string
		typ   int64
		errno unix.Errno
	}{
		{name: "root file", path: "/file", typ: host.Type},
		{name: "proc", path: "/proc/self/maps", typ: vfs.ProcSuperMagic},
		{name: "dev", path: "/dev/null", typ: vfs.TmpfsMagic},
		{name: "missing", path: "/nope", errno: unix.ENOENT},
		{name: "fstatfs file", fd: file, typ: host.Type},
		{name: "fstatfs pipe", fd: 3, typ: vfs.PipefsMagic},
		{name: "fstatfs bad fd", fd: 99, errno: unix.EBADF},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var errno unix.Errno
			if c.path != "" {
				putString(t, task, scratch+1024, c.path)
				_, errno = call(k, task, (*Kernel).sysStatfs, scratch+1024, scratch)
			} else {
				_, errno = call(k, task, (*Kernel).sysFstatfs, c.fd, scratch)
			}
			require.Equal(t, c.errno, errno)
			if errno == 0 {
				b := getBytes(t, task, scratch, vfs.StatfsSize)
				require.Equal(t, c.typ, int64(binary.LittleEndian.Uint64(b)))
				if c.typ == host.Type {
					require.NotZero(t, binary.LittleEndian.Uint64(b[80:])&vfs.StRdonly, "ST_RDONLY")
				}
			}
		})
	}
	putString(t, task, scratch+1024, "/file")
	_, errno := call(k, task, (*Kernel).sysStatfs, scratch+1024, 8)
	require.Equal(t, unix.EFAULT, errno)
}

func TestStatx(t *testing.T) {
	k, task, _ := newRootTask(t)
	putString(t, task, scratch+1024, "/file")
	putString(t, task, scratch+1100, "")
	cases := []struct {
		name        string
		dirfd, path uint64
		flags, mask uint64
		size        uint64
		errno       unix.Errno
	}{
		{name: "file", dirfd: atCwdArg, path: scratch + 1024, mask: statxBasicStats, size: 13},
		{name: "empty path", dirfd: atCwdArg, path: scratch + 1100, errno: unix.ENOENT},
		{name: "empty path, fd", dirfd: 3, path: scratch + 1100, flags: atEmptyPath},
		{name: "reserved mask bit", dirfd: atCwdArg, path: scratch + 1024, mask: statxReserved, errno: unix.EINVAL},
		{name: "both sync types", dirfd: atCwdArg, path: scratch + 1024, flags: atStatxSyncType, errno: unix.EINVAL},
		{name: "dont sync", dirfd: atCwdArg, path: scratch + 1024, flags: 0x4000, size: 13},
		{name: "unknown flag", dirfd: atCwdArg, path: scratch + 1024, flags: 1, errno: unix.EINVAL},
		{name: "bad path pointer", dirfd: atCwdArg, path: 8, errno: unix.EFAULT},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, errno := call(k, task, (*Kernel).sysStatx, c.dirfd, c.path, c.flags, c.mask, scratch)
			require.Equal(t, c.errno, errno)
			if errno == 0 {
				b := getBytes(t, task, scratch, statxSize)
				require.Equal(t, uint32(statxBasicStats), binary.LittleEndian.Uint32(b))
				require.Equal(t, c.size, binary.LittleEndian.Uint64(b[40:]))
			}
		})
	}
}

func TestSendfile(t *testing.T) {
	cases := []struct {
		name    string
		in, out string // what to open: a path, "pipe-r"/"pipe-w", or "bad"
		off     int64  // -1: no offset pointer
		count   uint64
		ret     uint64
		errno   unix.Errno
		piped   string // what the pipe then holds
		newOff  int64  // the offset afterwards
	}{
		{name: "file to pipe", in: "/file", out: "pipe-w", off: -1, count: 100, ret: 13, piped: "hello, world\n", newOff: 13},
		{name: "with offset", in: "/file", out: "pipe-w", off: 7, count: 5, ret: 5, piped: "world", newOff: 12},
		{name: "offset past the end", in: "/file", out: "pipe-w", off: 100, count: 5},
		{name: "negative offset", in: "/file", out: "pipe-w", off: -5, count: 5, errno: unix.EINVAL, newOff: -5},
		{name: "zero count", in: "/file", out: "pipe-w", off: -1},
		{name: "from a pipe", in: "pipe-r", out: "pipe-w", off: -1, count: 5, errno: unix.EINVAL},
		{name: "from a directory", in: "/dir", out: "pipe-w", off: -1, count: 5, errno: unix.EINVAL},
		{name: "to a read end", in: "/file", out: "pipe-r", off: -1, count: 5, errno: unix.EBADF},
		{name: "to a read-only file", in: "/file", out: "/file", off: -1, count: 5, errno: unix.EBADF},
		{name: "bad in", in: "bad", out: "pipe-w", off: -1, count: 5, errno: unix.EBADF},
		{name: "bad out", in: "/file", out: "bad", off: -1, count: 5, errno: unix.EBADF},
		{name: "/dev/zero in", in: "/dev/zero", out: "pipe-w", off: -1, count: 3, ret: 3, piped: "\x00\x00\x00"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			k, task, _ := newRootTask(t)
			fd := func(what string) uint64 {
				switch what {
				case "pipe-r":
					return 3
				case "pipe-w":
					return 4
				case "bad":
					return 77
				}
				return open(t, k, task, what, unix.O_RDONLY)
			}
			in, out := fd(c.in), fd(c.out)
			offVA := uint64(0)
			if c.off != -1 {
				offVA = scratch + 512
				require.NoError(t, task.proc.as.CopyOut(offVA, binary.LittleEndian.AppendUint64(nil, uint64(c.off))))
			}
			ret, errno := call(k, task, (*Kernel).sysSendfile, out, in, offVA, c.count)
			require.Equal(t, c.errno, errno)
			require.Equal(t, c.ret, ret)
			if c.piped != "" {
				n, errno := call(k, task, (*Kernel).sysRead, 3, scratch+1024, 100)
				require.Zero(t, errno)
				require.Equal(t, c.piped, string(getBytes(t, task, scratch+1024, int(n))))
			}
			if offVA != 0 {
				want := c.newOff
				if c.ret == 0 && c.errno == 0 {
					want = c.off
				}
				require.Equal(t, uint64(want), binary.LittleEndian.Uint64(getBytes(t, task, offVA, 8)))
			} else if c.errno == 0 && c.in == "/file" {
				pos, errno := call(k, task, (*Kernel).sysLseek, in, 0, unix.SEEK_CUR)
				require.Zero(t, errno)
				require.Equal(t, uint64(c.newOff), pos)
			}
		})
	}
}

func TestCopyFileRangeAndFadvise(t *testing.T) {
	k, task, _ := newRootTask(t)
	file := open(t, k, task, "/file", unix.O_RDONLY)
	file2 := open(t, k, task, "/file", unix.O_RDONLY)
	dir := open(t, k, task, "/dir", unix.O_RDONLY)
	cfr := []struct {
		name         string
		in, out, len uint64
		offIn, flags uint64
		ret          uint64
		errno        unix.Errno
	}{
		{name: "bad in", in: 77, out: file2, len: 5, errno: unix.EBADF},
		{name: "bad out", in: file, out: 77, len: 5, errno: unix.EBADF},
		{name: "flags", in: file, out: file2, len: 5, flags: 1, errno: unix.EINVAL},
		{name: "bad offset pointer", in: file, out: file2, len: 5, offIn: 8, errno: unix.EFAULT},
		{name: "directory", in: dir, out: file2, len: 5, errno: unix.EISDIR},
		{name: "to a pipe", in: file, out: 4, len: 5, errno: unix.EINVAL},
		{name: "to a read-only file", in: file, out: file2, len: 5, errno: unix.EBADF},
	}
	for _, c := range cfr {
		ret, errno := call(k, task, (*Kernel).sysCopyFileRange, c.in, c.offIn, c.out, 0, c.len, c.flags)
		require.Equal(t, c.errno, errno, c.name)
		require.Equal(t, c.ret, ret, c.name)
	}
	fadv := []struct {
		name  string
		fd    uint64
		len   uint64
		adv   uint64
		errno unix.Errno
	}{
		{name: "willneed", fd: file, adv: 3},
		{name: "noreuse", fd: file, adv: 5},
		{name: "bad advice", fd: file, adv: 6, errno: unix.EINVAL},
		{name: "negative length", fd: file, len: ^uint64(0), errno: unix.EINVAL},
		{name: "pipe", fd: 3, errno: unix.ESPIPE},
		{name: "bad fd", fd: 77, errno: unix.EBADF},
	}
	for _, c := range fadv {
		_, errno := call(k, task, (*Kernel).sysFadvise64, c.fd, 0, c.len, c.adv)
		require.Equal(t, c.errno, errno, c.name)
	}
}
