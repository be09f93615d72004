package vfs

import (
	"bytes"
	"encoding/binary"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestRegularFile(t *testing.T) {
	lookupModes(t, func(t *testing.T, fs *FS, _ *testTree) {
		f, errno := fs.Open("/", "/etc/passwd", unix.O_RDONLY)
		require.Zero(t, errno)
		size := int64(len(passwdContent))

		assert.Equal(t, passwdContent, readAll(t, f))
		assert.Equal(t, size, f.Describe().Offset)
		assert.Equal(t, passwdContent[5:9], string(mustPread(t, f, 5, 4)))
		assert.Equal(t, size, f.Describe().Offset, "pread does not move the offset")
		assert.Empty(t, mustPread(t, f, size+100, 4))

		seeks := []struct {
			off    int64
			whence int
			want   int64
			errno  unix.Errno
		}{
			{0, unix.SEEK_SET, 0, 0},
			{4, unix.SEEK_CUR, 4, 0},
			{-2, unix.SEEK_CUR, 2, 0},
			{-3, unix.SEEK_CUR, 0, unix.EINVAL},
			{-1, unix.SEEK_END, size - 1, 0},
			{10, unix.SEEK_END, size + 10, 0},
			{-1, unix.SEEK_SET, 0, unix.EINVAL},
			{math.MaxInt64, unix.SEEK_CUR, 0, unix.EINVAL},
			{0, 7, 0, unix.EINVAL},
			{0, unix.SEEK_DATA, 0, 0},
			{0, unix.SEEK_HOLE, size, 0},
			{size, unix.SEEK_DATA, 0, unix.ENXIO},
		}
		for _, s := range seeks {
			got, errno := f.Lseek(s.off, s.whence)
			assert.Equal(t, s.errno, errno, "lseek(%d, %d)", s.off, s.whence)
			if s.errno == 0 {
				assert.Equal(t, s.want, got, "lseek(%d, %d)", s.off, s.whence)
			}
		}
		_, errno = f.Lseek(3, unix.SEEK_SET)
		require.Zero(t, errno)
		buf := make([]byte, 4)
		n, errno := f.Read(buf)
		require.Zero(t, errno)
		assert.Equal(t, passwdContent[3:7], string(buf[:n]))

		_, errno = f.Write([]byte("x"))
		assert.Equal(t, unix.EBADF, errno)
		_, errno = f.Pwrite([]byte("x"), 0)
		assert.Equal(t, unix.EBADF, errno)
		_, errno = f.Pread(buf, -1)
		assert.Equal(t, unix.EINVAL, errno)
		_, errno = f.Ioctl(ioctlTCGETS, 0x1000, newFakeMemory())
		assert.Equal(t, unix.ENOTTY, errno)

		mem := newFakeMemory()
		_, errno = f.Ioctl(ioctlFIONREAD, 0x2000, mem)
		require.Zero(t, errno)
		assert.Equal(t, uint32(size-7), binary.LittleEndian.Uint32(mem.bytes(0x2000, 4)))
		_, errno = f.Ioctl(ioctlFIONREAD, 0x2000, nil)
		assert.Equal(t, unix.EFAULT, errno)

		st, errno := f.Stat()
		require.Zero(t, errno)
		assert.Equal(t, size, st.Size)

		assert.Equal(t, FileState{Kind: KindRegular, Path: "/etc/passwd", Flags: oLargefile, Offset: 7}, f.Describe())

		require.Zero(t, f.Close())
		_, errno = f.Read(buf)
		assert.Equal(t, unix.EBADF, errno)
		_, errno = f.Pread(buf, 0)
		assert.Equal(t, unix.EBADF, errno)
		_, errno = f.Stat()
		assert.Equal(t, unix.EBADF, errno)
		_, errno = f.Lseek(0, unix.SEEK_SET)
		assert.Equal(t, unix.EBADF, errno)
		assert.Equal(t, unix.EBADF, f.Close())
	})
}

func TestRegularFileMmap(t *testing.T) {
	lookupModes(t, func(t *testing.T, fs *FS, _ *testTree) {
		f, errno := fs.Open("/", "/lib/libc.so", unix.O_RDONLY)
		require.Zero(t, errno)
		m, ok := f.(Mappable)
		require.True(t, ok)

		_, errno = m.MmapBacking(0, 4096, unix.PROT_READ|unix.PROT_WRITE, true)
		assert.Equal(t, unix.EACCES, errno, "shared writable mapping of a read-only file")

		b, errno := m.MmapBacking(0, 4096, unix.PROT_READ|unix.PROT_WRITE|unix.PROT_EXEC, false)
		require.Zero(t, errno)
		assert.Equal(t, "/usr/lib/libc.so", b.Name())
		require.Zero(t, f.Close())

		// The backing outlives the descriptor.
		page := make([]byte, 4096)
		n, err := b.ReadAt(page, 0)
		assert.Equal(t, io.EOF, err)
		assert.Equal(t, libcContent, string(page[:n]))
		n, err = b.ReadAt(page[:3], 1)
		require.NoError(t, err)
		assert.Equal(t, libcContent[1:4], string(page[:n]))
		require.NoError(t, b.(io.Closer).Close())

		_, errno = m.MmapBacking(0, 4096, unix.PROT_READ, false)
		assert.Equal(t, unix.EBADF, errno)

		d, errno := fs.Open("/", "/etc", unix.O_RDONLY)
		require.Zero(t, errno)
		defer d.Close()
		_, errno = d.(Mappable).MmapBacking(0, 4096, unix.PROT_READ, false)
		assert.Equal(t, unix.ENODEV, errno)
	})
}

func TestBuiltinDevices(t *testing.T) {
	random := bytes.Repeat([]byte{1, 2, 3, 4, 5}, 100)
	fs, err := New(Options{Random: bytes.NewReader(random)})
	require.NoError(t, err)
	defer fs.Close()
	open := func(p string) File {
		f, errno := fs.Open("/", p, unix.O_RDWR)
		require.Zero(t, errno)
		return f
	}

	null := open("/dev/null")
	n, errno := null.Read(make([]byte, 10))
	assert.Zero(t, errno)
	assert.Zero(t, n, "EOF")
	n, errno = null.Write([]byte("discarded"))
	assert.Zero(t, errno)
	assert.Equal(t, 9, n)
	off, errno := null.Lseek(100, unix.SEEK_SET)
	assert.Zero(t, errno)
	assert.Zero(t, off)
	_, errno = null.Getdents64(4096)
	assert.Equal(t, unix.ENOTDIR, errno)
	_, errno = null.Ioctl(ioctlTCGETS, 0, newFakeMemory())
	assert.Equal(t, unix.ENOTTY, errno)
	_, errno = null.(Mappable).MmapBacking(0, 4096, unix.PROT_READ, false)
	assert.Equal(t, unix.ENODEV, errno)
	assert.False(t, null.(AnonymousMapper).MapsAnonymous())
	assert.Equal(t, FileState{Kind: KindDevice, Path: "/dev/null", Flags: unix.O_RDWR | oLargefile}, null.Describe())
	assert.Zero(t, null.Close())

	zero := open("/dev/zero")
	buf := bytes.Repeat([]byte{0xff}, 16)
	n, errno = zero.Read(buf)
	assert.Zero(t, errno)
	assert.Equal(t, 16, n)
	assert.Equal(t, make([]byte, 16), buf)
	n, errno = zero.Write([]byte("abc"))
	assert.Zero(t, errno)
	assert.Equal(t, 3, n)
	assert.True(t, zero.(AnonymousMapper).MapsAnonymous())
	b, errno := zero.(Mappable).MmapBacking(0, 4096, unix.PROT_READ|unix.PROT_WRITE, true)
	require.Zero(t, errno)
	page := bytes.Repeat([]byte{7}, 32)
	n, err = b.ReadAt(page, 4096)
	require.NoError(t, err)
	assert.Equal(t, make([]byte, 32), page[:n])

	wronly, errno := fs.Open("/", "/dev/zero", unix.O_WRONLY)
	require.Zero(t, errno)
	_, errno = wronly.Read(buf)
	assert.Equal(t, unix.EBADF, errno, "read of a write-only device")
	_, errno = wronly.Pread(buf, 0)
	assert.Equal(t, unix.EBADF, errno)
	_, errno = wronly.(Mappable).MmapBacking(0, 4096, unix.PROT_READ, false)
	assert.Equal(t, unix.EACCES, errno, "any mapping needs read access")
	rdonly, errno := fs.Open("/", "/dev/zero", unix.O_RDONLY)
	require.Zero(t, errno)
	_, errno = rdonly.Write(buf)
	assert.Equal(t, unix.EBADF, errno, "write of a read-only device")
	_, errno = rdonly.Pwrite(buf, 0)
	assert.Equal(t, unix.EBADF, errno)
	_, errno = rdonly.(Mappable).MmapBacking(0, 4096, unix.PROT_READ|unix.PROT_WRITE, true)
	assert.Equal(t, unix.EACCES, errno, "a shared writable mapping needs write access")
	_, errno = rdonly.(Mappable).MmapBacking(0, 4096, unix.PROT_READ|unix.PROT_WRITE, false)
	assert.Zero(t, errno, "a private one does not")
	noaccess, errno := fs.Open("/", "/dev/zero", unix.O_ACCMODE)
	require.Zero(t, errno)
	_, errno = noaccess.Read(buf)
	assert.Equal(t, unix.EBADF, errno)
	_, errno = noaccess.Write(buf)
	assert.Equal(t, unix.EBADF, errno)

	urandom := open("/dev/urandom")
	buf = make([]byte, 7)
	n, errno = urandom.Read(buf)
	assert.Zero(t, errno)
	assert.Equal(t, random[:7], buf[:n], "deterministic under a given reader")
	rnd := open("/dev/random")
	n, errno = rnd.Read(buf)
	assert.Zero(t, errno)
	assert.Equal(t, random[7:14], buf[:n], "both devices share the stream")
	n, errno = rnd.Write([]byte("entropy"))
	assert.Zero(t, errno)
	assert.Equal(t, 7, n)
	_, errno = rnd.Read(make([]byte, 1000))
	assert.Zero(t, errno, "a short reader still returns what it had")
	_, errno = rnd.Read(make([]byte, 1))
	assert.Equal(t, unix.EIO, errno, "an exhausted reader")
}

// hpetDevice stands for a device registered by later code.
type hpetDevice struct {
	DeviceBase
	counter uint64
	closed  *int
}

func (h *hpetDevice) Ioctl(req, arg uint64, m Memory) (uint64, unix.Errno) {
	if req != 0x6805 { // HPET_INFO, say
		return 0, unix.ENOTTY
	}
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], h.counter)
	if m.CopyOut(arg, b[:]) != nil {
		return 0, unix.EFAULT
	}
	return 0, 0
}

func (h *hpetDevice) MmapBacking(off, length uint64, prot uint32, shared bool) (Backing, unix.Errno) {
	if prot&unix.PROT_WRITE != 0 {
		return nil, unix.EACCES
	}
	return zeroBacking{}, 0
}

func (h *hpetDevice) Close() unix.Errno {
	*h.closed++
	return 0
}

func TestAddDevice(t *testing.T) {
	fs, err := New(Options{})
	require.NoError(t, err)
	defer fs.Close()
	closed := 0
	var openFlags int
	require.NoError(t, fs.AddDevice("/dev/hpet", DeviceInfo{Major: 10, Minor: 228, Perm: 0o644},
		func(flags int) (File, unix.Errno) {
			openFlags = flags
			if flags&unix.O_ACCMODE != unix.O_RDONLY {
				return nil, unix.EACCES
			}
			return &hpetDevice{counter: 42, closed: &closed}, 0
		}))

	_, errno := fs.Open("/", "/dev/hpet", unix.O_RDWR)
	assert.Equal(t, unix.EACCES, errno, "the device decides")

	f, errno := fs.Open("/", "/dev/hpet", unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC)
	require.Zero(t, errno)
	assert.Equal(t, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, openFlags)
	assert.Equal(t, unix.O_NONBLOCK|oLargefile, f.Flags())
	assert.Equal(t, unix.O_NONBLOCK, f.(*deviceFile).Unwrap().Flags()&unix.O_NONBLOCK, "the device sees the status flags")
	f.SetFlags(0)
	assert.Zero(t, f.(*deviceFile).Unwrap().Flags()&unix.O_NONBLOCK)

	st, errno := f.Stat()
	require.Zero(t, errno)
	assert.Equal(t, uint32(unix.S_IFCHR|0o644), st.Mode)
	assert.Equal(t, unix.Mkdev(10, 228), st.Rdev)

	mem := newFakeMemory()
	_, errno = f.Ioctl(0x6805, 0x5000, mem)
	require.Zero(t, errno)
	assert.Equal(t, uint64(42), binary.LittleEndian.Uint64(mem.bytes(0x5000, 8)))
	_, errno = f.Ioctl(0x5401, 0x5000, mem)
	assert.Equal(t, unix.ENOTTY, errno)

	_, errno = f.(Mappable).MmapBacking(0, 4096, unix.PROT_READ|unix.PROT_WRITE, true)
	assert.Equal(t, unix.EACCES, errno)
	_, errno = f.(Mappable).MmapBacking(0, 4096, unix.PROT_READ, true)
	assert.Zero(t, errno)

	_, errno = f.Read(make([]byte, 8))
	assert.Equal(t, unix.EINVAL, errno, "DeviceBase default")
	_, errno = f.Lseek(0, unix.SEEK_SET)
	assert.Equal(t, unix.ESPIPE, errno)
	assert.Equal(t, FileState{Kind: KindDevice, Path: "/dev/hpet", Flags: oLargefile}, f.Describe())

	assert.Zero(t, f.Close())
	assert.Equal(t, 1, closed)
}

func TestStdioPipes(t *testing.T) {
	inR, inW, err := os.Pipe()
	require.NoError(t, err)
	outR, outW, err := os.Pipe()
	require.NoError(t, err)
	defer func() {
		for _, f := range []*os.File{inR, inW, outR, outW} {
			f.Close()
		}
	}()
	fs, err := New(Options{Stdin: inR, Stdout: outW})
	require.NoError(t, err)
	defer fs.Close()
	table := fs.NewFDTable()

	stdin, errno := table.Get(0)
	require.Zero(t, errno)
	stdout, errno := table.Get(1)
	require.Zero(t, errno)
	stderr, errno := table.Get(2)
	require.Zero(t, errno)

	n, errno := stdout.Write([]byte("hello"))
	require.Zero(t, errno)
	assert.Equal(t, 5, n)
	buf := make([]byte, 16)
	got, err := outR.Read(buf)
	require.NoError(t, err)
	assert.Equal(t, "hello", string(buf[:got]))

	_, err = inW.Write([]byte("input"))
	require.NoError(t, err)
	n, errno = stdin.Read(buf)
	require.Zero(t, errno)
	assert.Equal(t, "input", string(buf[:n]))

	stdin.SetFlags(unix.O_NONBLOCK)
	_, errno = stdin.Read(buf)
	assert.Equal(t, unix.EAGAIN, errno, "emulated O_NONBLOCK on an empty pipe")
	stdin.SetFlags(0)

	_, errno = stdout.Lseek(0, unix.SEEK_CUR)
	assert.Equal(t, unix.ESPIPE, errno)
	_, errno = stdin.Pread(buf, 0)
	assert.Equal(t, unix.ESPIPE, errno)
	_, errno = stdout.Ioctl(ioctlTCGETS, 0x1000, newFakeMemory())
	assert.Equal(t, unix.ENOTTY, errno)
	_, errno = stdout.Ioctl(ioctlTIOCGWINSZ, 0x1000, newFakeMemory())
	assert.Equal(t, unix.ENOTTY, errno)
	_, errno = stdout.(Mappable).MmapBacking(0, 4096, unix.PROT_READ, false)
	assert.Equal(t, unix.ENODEV, errno)

	st, errno := stdout.Stat()
	require.Zero(t, errno)
	assert.Equal(t, uint32(unix.S_IFIFO), st.Mode&unix.S_IFMT)

	assert.Equal(t, FileState{Kind: KindStdio, Path: "stdin", Flags: oLargefile}, stdin.Describe())
	assert.Equal(t, FileState{Kind: KindStdio, Path: "stdout", Flags: unix.O_WRONLY | oLargefile}, stdout.Describe())
	assert.Equal(t, KindDevice, stderr.Describe().Kind, "no host stderr: /dev/null")
	assert.Equal(t, "/dev/null", stderr.Describe().Path)

	// Closing the guest's stdout leaves the host's open.
	require.Zero(t, table.Close(1))
	_, errno = stdout.Write([]byte("x"))
	assert.Equal(t, unix.EBADF, errno)
	_, err = outW.Write([]byte("still open"))
	assert.NoError(t, err)
}

func TestStdioFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "in")
	require.NoError(t, os.WriteFile(path, []byte("file input"), 0o644))
	in, err := os.Open(path)
	require.NoError(t, err)
	defer in.Close()
	fs, err := New(Options{Stdin: in})
	require.NoError(t, err)
	defer fs.Close()
	stdin, errno := fs.NewFDTable().Get(0)
	require.Zero(t, errno)

	off, errno := stdin.Lseek(5, unix.SEEK_SET)
	require.Zero(t, errno, "a redirected file can seek")
	assert.Equal(t, int64(5), off)
	assert.Equal(t, "input", readAll(t, stdin))
	b, errno := stdin.(Mappable).MmapBacking(0, 4096, unix.PROT_READ, false)
	require.Zero(t, errno)
	page := make([]byte, 4)
	_, err = b.ReadAt(page, 0)
	require.NoError(t, err)
	assert.Equal(t, "file", string(page))
	assert.Equal(t, int64(10), stdin.Describe().Offset)
}

// openPty opens a pseudo-terminal pair, or skips the test.
func openPty(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no /dev/ptmx: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		t.Skipf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		m.Close()
		t.Skipf("ptsname: %v", err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		t.Skipf("open pts: %v", err)
	}
	return m, s
}

func TestStdioTerminal(t *testing.T) {
	master, slave := openPty(t)
	defer master.Close()
	defer slave.Close()
	require.NoError(t, unix.IoctlSetWinsize(int(slave.Fd()), unix.TIOCSWINSZ,
		&unix.Winsize{Row: 24, Col: 80, Xpixel: 640, Ypixel: 480}))

	fs, err := New(Options{Stdout: slave})
	require.NoError(t, err)
	defer fs.Close()
	stdout, errno := fs.NewFDTable().Get(1)
	require.Zero(t, errno)

	mem := newFakeMemory()
	_, errno = stdout.Ioctl(ioctlTIOCGWINSZ, 0x1000, mem)
	require.Zero(t, errno)
	assert.Equal(t, []byte{24, 0, 80, 0, 0x80, 2, 0xe0, 1}, mem.bytes(0x1000, 8))

	_, errno = stdout.Ioctl(ioctlTCGETS, 0x2000, mem)
	require.Zero(t, errno)
	host, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
	require.NoError(t, err)
	got := mem.bytes(0x2000, termiosSize+4)
	assert.Equal(t, host.Lflag, binary.LittleEndian.Uint32(got[12:]))
	assert.Equal(t, host.Cflag, binary.LittleEndian.Uint32(got[8:]))
	assert.Equal(t, host.Cc[:], got[17:termiosSize])
	assert.Equal(t, make([]byte, 4), got[termiosSize:], "only struct termios is written")

	mem.fail = true
	_, errno = stdout.Ioctl(ioctlTCGETS, 0x2000, mem)
	assert.Equal(t, unix.EFAULT, errno)
	_, errno = stdout.Ioctl(0x5402, 0x2000, newFakeMemory()) // TCSETS
	assert.Equal(t, unix.ENOTTY, errno)
	_, errno = stdout.Lseek(0, unix.SEEK_CUR)
	assert.Equal(t, unix.ESPIPE, errno)
}

func TestConcurrentReads(t *testing.T) {
	tree := newTestTree(t)
	fs := newTestFS(t, tree, false)
	f, errno := fs.Open("/", "/etc/passwd", unix.O_RDONLY)
	require.Zero(t, errno)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var total int
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 3)
			for {
				n, errno := f.Read(buf)
				if errno != 0 || n == 0 {
					return
				}
				mu.Lock()
				total += n
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, len(passwdContent), total, "every byte read once")
	f.Close()
}

// TestGeneratedFileRegenerates checks the seq_file rule: a read from
// offset 0 (after lseek or by pread) or away from where the last read
// ended generates the content again; reads that follow on do not.
func TestGeneratedFileRegenerates(t *testing.T) {
	fs, err := New(Options{})
	require.NoError(t, err)
	defer fs.Close()
	gen := 0
	require.NoError(t, fs.AddFile("/proc/gen", func() []byte {
		gen++
		return []byte("gen" + strconv.Itoa(gen) + "\n")
	}))
	f, errno := fs.Open("/", "/proc/gen", unix.O_RDONLY)
	require.Zero(t, errno)
	assert.Zero(t, gen, "nothing is generated at open")

	read := func(n int) string {
		p := make([]byte, n)
		got, errno := f.Read(p)
		require.Zero(t, errno)
		return string(p[:got])
	}
	steps := []struct {
		name string
		do   func() string
		want string
	}{
		{"first read", func() string { return read(2) }, "ge"},
		{"read on: same snapshot", func() string { return read(10) }, "n1\n"},
		{"at the end", func() string { return read(10) }, ""},
		{"after lseek 0", func() string {
			_, errno := f.Lseek(0, unix.SEEK_SET)
			require.Zero(t, errno)
			return read(10)
		}, "gen2\n"},
		{"pread at 0", func() string { return string(mustPread(t, f, 0, 10)) }, "gen3\n"},
		{"pread following on", func() string { return string(mustPread(t, f, 5, 10)) }, ""},
		{"pread elsewhere", func() string { return string(mustPread(t, f, 3, 10)) }, "4\n"},
	}
	for _, s := range steps {
		assert.Equal(t, s.want, s.do(), s.name)
	}
}
