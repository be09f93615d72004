package kernel

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestCopyFileRangeTmpfs copies between files of one tmpfs, as Linux's
// splice fallback does; across file systems it stays EXDEV.
func TestCopyFileRangeTmpfs(t *testing.T) {
	k, task := newTestTask(t, false)
	require.NoError(t, k.fs.MountTmpfs("/tmp", 1<<20))
	a := open(t, k, task, "/tmp/a", unix.O_CREAT|unix.O_RDWR)
	b := open(t, k, task, "/tmp/b", unix.O_CREAT|unix.O_RDWR)
	fa, errno := k.file(task, a)
	require.Zero(t, errno)
	fb, errno := k.file(task, b)
	require.Zero(t, errno)
	_, errno = fa.Write([]byte("hello, world\n"))
	require.Zero(t, errno)

	// From offset 7 by pointer (the input's file offset stays at 13) to
	// b's file offset.
	require.NoError(t, task.proc.as.CopyOut(scratch, []byte{7, 0, 0, 0, 0, 0, 0, 0}))
	n, errno := call(k, task, (*Kernel).sysCopyFileRange, a, scratch, b, 0, 100, 0)
	require.Zero(t, errno)
	assert.Equal(t, uint64(6), n, "cut at the input's end")
	assert.Equal(t, []byte{13, 0, 0, 0, 0, 0, 0, 0}, getBytes(t, task, scratch, 8))
	buf := make([]byte, 16)
	m, errno := fb.Pread(buf, 0)
	require.Zero(t, errno)
	assert.Equal(t, "world\n", string(buf[:m]))
	off, _ := fb.Lseek(0, unix.SEEK_CUR)
	assert.Equal(t, int64(6), off)
	off, _ = fa.Lseek(0, unix.SEEK_CUR)
	assert.Equal(t, int64(13), off)

	n, errno = call(k, task, (*Kernel).sysCopyFileRange, a, 0, b, 0, 5, 0)
	assert.Zero(t, errno)
	assert.Zero(t, n, "at the input's end")

	// One file, overlapping ranges.
	require.NoError(t, task.proc.as.CopyOut(scratch, []byte{0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0}))
	_, errno = call(k, task, (*Kernel).sysCopyFileRange, a, scratch, a, scratch+8, 5, 0)
	assert.Equal(t, unix.EINVAL, errno)

	// A memfd is on another tmpfs.
	putString(t, task, scratch+1024, "m")
	mfd, errno := call(k, task, (*Kernel).sysMemfdCreate, scratch+1024, 0)
	require.Zero(t, errno)
	_, errno = call(k, task, (*Kernel).sysCopyFileRange, a, scratch, mfd, 0, 5, 0)
	assert.Equal(t, unix.EXDEV, errno)
}

// TestTmpfsUmask: new files and directories lose the process umask's
// bits.
func TestTmpfsUmask(t *testing.T) {
	k, task := newTestTask(t, false)
	require.NoError(t, k.fs.MountTmpfs("/tmp", 1<<20))
	_, errno := call(k, task, (*Kernel).sysUmask, 0o077)
	require.Zero(t, errno)
	putString(t, task, scratch, "/tmp/d")
	_, errno = call(k, task, (*Kernel).sysMkdir, scratch, 0o777)
	require.Zero(t, errno)
	putString(t, task, scratch+2048, "/tmp/f")
	_, errno = k.openat(task, atCwdArg, scratch+2048, unix.O_CREAT|unix.O_WRONLY, 0o666)
	require.Zero(t, errno)
	for path, want := range map[string]uint32{"/tmp/d": unix.S_IFDIR | 0o700, "/tmp/f": unix.S_IFREG | 0o600} {
		st, errno := k.fs.Stat("/", path)
		require.Zero(t, errno)
		assert.Equal(t, want, st.Mode, path)
	}
}
