package hostfile

import (
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	regular := filepath.Join(dir, "prog")
	require.NoError(t, os.WriteFile(regular, []byte("0123456789"), 0o644))
	empty := filepath.Join(dir, "empty")
	require.NoError(t, os.WriteFile(empty, nil, 0o644))
	fifo := filepath.Join(dir, "fifo")
	require.NoError(t, unix.Mkfifo(fifo, 0o644))
	link := filepath.Join(dir, "link")
	require.NoError(t, os.Symlink(regular, link))
	sock := filepath.Join(dir, "sock")
	l, err := net.Listen("unix", sock)
	require.NoError(t, err)
	defer l.Close()

	tests := []struct {
		name   string
		path   string
		max    int64
		want   string
		kind   error  // the sentinel the error wraps, if any
		errMsg string // part of the message
	}{
		{name: "regular", path: regular, max: 10, want: "0123456789"},
		{name: "empty", path: empty, max: 10, want: ""},
		{name: "symlink to a regular file", path: link, max: 10, want: "0123456789"},
		{name: "one byte too large", path: regular, max: 9, kind: ErrTooLarge, errMsg: "10 bytes, more than the 9 bytes allowed"},
		{name: "/dev/zero", path: "/dev/zero", max: 1 << 30, kind: ErrNotRegular, errMsg: "a character device, not a regular file"},
		{name: "FIFO without a writer", path: fifo, max: 1 << 30, kind: ErrNotRegular, errMsg: "a FIFO, not a regular file"},
		{name: "directory", path: dir, max: 1 << 30, kind: ErrNotRegular, errMsg: "a directory, not a regular file"},
		{name: "socket", path: sock, max: 1 << 30, errMsg: "no such device or address"},
		// procfs files claim size 0 and then have contents: the same as a
		// file that grows while it is read.
		{name: "grows while read", path: "/proc/self/status", max: 1 << 30, errMsg: "the file grew while it was read"},
		{name: "missing", path: filepath.Join(dir, "nope"), max: 10, kind: fs.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			done := make(chan struct{})
			var b []byte
			var err error
			go func() {
				defer close(done)
				b, err = ReadFile(tt.path, tt.max)
			}()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("ReadFile blocked")
			}
			if tt.kind == nil && tt.errMsg == "" {
				require.NoError(t, err)
				assert.Equal(t, tt.want, string(b))
				return
			}
			require.Error(t, err)
			if tt.kind != nil {
				assert.ErrorIs(t, err, tt.kind)
			}
			assert.ErrorContains(t, err, tt.errMsg)
			assert.Nil(t, b)
		})
	}
}

func TestOpenLeavesBlockingMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	require.NoError(t, os.WriteFile(path, []byte("x"), 0o644))
	f, fi, err := Open(path)
	require.NoError(t, err)
	defer f.Close()
	assert.Equal(t, int64(1), fi.Size())
	fl, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0)
	require.NoError(t, err)
	assert.Zero(t, fl&unix.O_NONBLOCK)
}

func TestDescribe(t *testing.T) {
	for mode, want := range map[fs.FileMode]string{
		0:                                 "a regular file",
		fs.ModeDir:                        "a directory",
		fs.ModeNamedPipe:                  "a FIFO",
		fs.ModeSocket:                     "a socket",
		fs.ModeDevice | fs.ModeCharDevice: "a character device",
		fs.ModeDevice:                     "a block device",
		fs.ModeSymlink:                    "a symbolic link",
		fs.ModeIrregular:                  "a special file",
	} {
		assert.Equal(t, want, Describe(mode), "%v", mode)
	}
}
