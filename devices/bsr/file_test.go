package bsr

import (
	"io"
	"strings"
	"testing"

	"github.com/emuckpt/emuckpt/guestmm"
	"github.com/emuckpt/emuckpt/kernel/vfs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func open(t *testing.T, r *Register, flags int) *file {
	t.Helper()
	f, errno := r.Open(flags)
	require.Zero(t, errno)
	return f.(*file)
}

// The driver has open, mmap and noop_llseek only.
func TestFileOperations(t *testing.T) {
	f := open(t, newReg(t, Spec{Bytes: 8}), unix.O_RDWR)
	buf := make([]byte, 8)

	n, errno := f.Read(buf)
	assert.Equal(t, unix.EINVAL, errno)
	assert.Zero(t, n)
	_, errno = f.Read(nil)
	assert.Equal(t, unix.EINVAL, errno, "even for 0 bytes")
	_, errno = f.Write(buf)
	assert.Equal(t, unix.EINVAL, errno)
	_, errno = f.Pread(buf, 0)
	assert.Equal(t, unix.EINVAL, errno)
	_, errno = f.Pwrite(buf, 0)
	assert.Equal(t, unix.EINVAL, errno)

	for _, whence := range []int{unix.SEEK_SET, unix.SEEK_CUR, unix.SEEK_END, unix.SEEK_DATA, unix.SEEK_HOLE} {
		pos, errno := f.Lseek(100, whence)
		assert.Zero(t, errno)
		assert.Zero(t, pos)
		pos, errno = f.Lseek(-100, whence)
		assert.Zero(t, errno, "noop_llseek ignores the offset")
		assert.Zero(t, pos)
	}
	for _, whence := range []int{-1, 5, 42} {
		_, errno := f.Lseek(0, whence)
		assert.Equal(t, unix.EINVAL, errno)
	}
	_, errno = f.Ioctl(unix.TCGETS, 0, nil)
	assert.Equal(t, unix.ENOTTY, errno)
	_, errno = f.Getdents64(4096)
	assert.Equal(t, unix.ENOTDIR, errno)
	assert.Zero(t, f.Close())
}

func TestMmap(t *testing.T) {
	const pg = PageSize
	tests := []struct {
		spec        Spec
		off, length uint64
		want        unix.Errno
	}{
		// One page of a register one page long.
		{Spec{8, 8, 4096}, 0, pg, 0},
		{Spec{8, 8, 4096}, 0, 8, 0}, // rounded up to a page
		{Spec{8, 8, 4096}, 0, 1, 0},
		{Spec{8, 8, 4096}, 0, pg + 1, unix.EINVAL},
		{Spec{8, 8, 4096}, 0, 2 * pg, unix.EINVAL},
		{Spec{8, 8, 4096}, pg, pg, unix.EINVAL}, // offset must be 0
		{Spec{8, 8, 4096}, 0, 0, unix.EINVAL},
		{Spec{8, 8, 4096}, 0, ^uint64(0), unix.EINVAL},
		{Spec{8, 8, 4096}, 0, ^uint64(0) - pg + 2, unix.EINVAL},
		// A register shorter than a page maps as exactly one page.
		{Spec{8, 8, 8}, 0, pg, 0},
		{Spec{8, 8, 8}, 0, 8, 0},
		{Spec{8, 8, 8}, 0, 4, 0},
		{Spec{128, 128, 256}, 0, pg, 0},
		{Spec{8, 8, 8}, 0, 2 * pg, unix.EINVAL},
		{Spec{8, 8, 8}, pg, pg, unix.EINVAL},
		// Longer registers: anything up to bsr_length.
		{Spec{128, 128, 8192}, 0, pg, 0},
		{Spec{128, 128, 8192}, 0, 2 * pg, 0},
		{Spec{128, 128, 8192}, 0, 2*pg - 100, 0},
		{Spec{128, 128, 8192}, 0, 2*pg + 1, unix.EINVAL},
		{Spec{128, 128, 8192}, 0, 3 * pg, unix.EINVAL},
		{Spec{4096, 4096, 65536}, 0, 16 * pg, 0},
		{Spec{4096, 4096, 65536}, 0, 17 * pg, unix.EINVAL},
		{Spec{4096, 4096, 65536}, 8 * pg, pg, unix.EINVAL},
	}
	for _, tt := range tests {
		for _, shared := range []bool{true, false} {
			r := newReg(t, tt.spec)
			f := open(t, r, unix.O_RDWR)
			b, errno := f.MmapBacking(tt.off, tt.length, unix.PROT_READ|unix.PROT_WRITE, shared)
			assert.Equal(t, tt.want, errno, "%s off %#x length %#x shared %v", tt.spec, tt.off, tt.length, shared)
			if errno == 0 {
				d := b.(guestmm.DeviceBacking)
				assert.Equal(t, r.MMIOBase(), d.MMIOBase())
				assert.Equal(t, tt.spec.WindowSize(), d.MMIOSize())
				// guestmm's own check of a device mapping passes.
				size := (tt.length + pg - 1) &^ (pg - 1)
				assert.LessOrEqual(t, size, d.MMIOSize())
			}
		}
	}
}

func TestBacking(t *testing.T) {
	s := newSet(t, DefaultSpecs()...)
	r := s.Lookup("bsr16_0")
	b, errno := open(t, r, unix.O_RDWR).MmapBacking(0, PageSize, unix.PROT_READ, true)
	require.Zero(t, errno)
	bk := b.(*Backing)
	assert.Equal(t, "/dev/bsr16_0", bk.Name())
	assert.Equal(t, "bsr", bk.VMAType())
	assert.Equal(t, uint64(0xFEB01000), bk.MMIOBase())
	assert.Equal(t, uint64(PageSize), bk.MMIOSize())
	assert.Same(t, r, bk.Register())
	assert.Equal(t, guestmm.ProtRead|guestmm.ProtWrite|guestmm.ProtExec, bk.Access())

	ro, errno := open(t, r, unix.O_RDONLY).MmapBacking(0, PageSize, unix.PROT_READ, true)
	require.Zero(t, errno)
	assert.Equal(t, guestmm.ProtRead|guestmm.ProtExec, ro.(*Backing).Access())

	// ReadAt sees what byte loads see.
	store(t, r, 2, 7)
	p := make([]byte, 20)
	n, err := bk.ReadAt(p, 14)
	require.NoError(t, err)
	assert.Equal(t, 20, n)
	assert.Equal(t, []byte{0, 0, 0, 0, 7, 0}, p[:6], "the next stride's byte 2 is at 18")
	n, err = bk.ReadAt(p, PageSize-4)
	assert.Equal(t, io.EOF, err)
	assert.Equal(t, 4, n)
	_, err = bk.ReadAt(p, PageSize)
	assert.Equal(t, io.EOF, err)
	_, err = bk.ReadAt(p, -1)
	assert.Error(t, err)
}

func TestSysfs(t *testing.T) {
	s := newSet(t, Spec{Bytes: 8}, Spec{8, 8, 8}, Spec{128, 256, 8192}, Spec{Bytes: 4096})
	want := []map[string]string{
		{"bsr_size": "8\n", "bsr_stride": "8\n", "bsr_length": "4096\n"},
		{"bsr_size": "8\n", "bsr_stride": "8\n", "bsr_length": "8\n"},
		{"bsr_size": "128\n", "bsr_stride": "256\n", "bsr_length": "8192\n"},
		{"bsr_size": "4096\n", "bsr_stride": "4096\n", "bsr_length": "4096\n"},
	}
	dirs := []string{"/sys/class/bsr/bsr8_0", "/sys/class/bsr/bsr8_1", "/sys/class/bsr/bsr128_0", "/sys/class/bsr/bsr4096_0"}
	for i, r := range s.Registers() {
		assert.Equal(t, want[i], r.SysfsFiles())
		assert.Equal(t, dirs[i], r.SysfsDir())
		assert.Equal(t, "/dev/"+r.Name(), r.DevicePath())
		assert.Equal(t, vfs.DeviceInfo{Major: 241, Minor: uint32(i), Perm: 0o666}, r.DeviceInfo())
	}
}

// The whole path a guest takes: the device and its sysfs files registered
// in a vfs.FS, opened by path, mapped into a guestmm address space, and a
// fault on the mapping pointing the PTE at the register's window.
func TestThroughVFSAndGuestmm(t *testing.T) {
	fs, err := vfs.New(vfs.Options{})
	require.NoError(t, err)
	defer fs.Close()
	set := newSet(t, DefaultSpecs()...)
	for _, r := range set.Registers() {
		require.NoError(t, fs.AddDevice(r.DevicePath(), r.DeviceInfo(), r.Open))
		for name, text := range r.SysfsFiles() {
			require.NoError(t, fs.AddFile(r.SysfsDir()+"/"+name, func() []byte { return []byte(text) }))
		}
	}

	st, errno := fs.Stat("/", "/dev/bsr64_0")
	require.Zero(t, errno)
	assert.Equal(t, uint32(unix.S_IFCHR|0o666), st.Mode)
	assert.Equal(t, vfs.Makedev(241, 2), st.Rdev)

	sz, errno := fs.Open("/", "/sys/class/bsr/bsr64_0/bsr_size", unix.O_RDONLY)
	require.Zero(t, errno)
	buf := make([]byte, 16)
	n, _ := sz.Read(buf)
	assert.Equal(t, "64\n", string(buf[:n]))

	dir, errno := fs.Open("/", "/sys/class/bsr", unix.O_RDONLY|unix.O_DIRECTORY)
	require.Zero(t, errno)
	ents, errno := dir.Getdents64(4096)
	require.Zero(t, errno)
	for _, name := range []string{"bsr8_0", "bsr16_0", "bsr64_0", "bsr128_0"} {
		assert.Contains(t, string(ents), name+"\x00")
	}

	// read and write reach the device; the access mode is checked first.
	rw, errno := fs.Open("/", "/dev/bsr8_0", unix.O_RDWR)
	require.Zero(t, errno)
	_, errno = rw.Read(buf)
	assert.Equal(t, unix.EINVAL, errno)
	_, errno = rw.Write(buf)
	assert.Equal(t, unix.EINVAL, errno)
	ro, errno := fs.Open("/", "/dev/bsr8_0", unix.O_RDONLY)
	require.Zero(t, errno)
	_, errno = ro.Write(buf)
	assert.Equal(t, unix.EBADF, errno)
	wo, errno := fs.Open("/", "/dev/bsr8_0", unix.O_WRONLY)
	require.Zero(t, errno)

	mappable := func(f vfs.File) vfs.Mappable { return f.(vfs.Mappable) }
	_, errno = mappable(ro).MmapBacking(0, PageSize, unix.PROT_READ|unix.PROT_WRITE, true)
	assert.Equal(t, unix.EACCES, errno, "shared writable mapping of a read-only descriptor")
	_, errno = mappable(wo).MmapBacking(0, PageSize, unix.PROT_WRITE, true)
	assert.Equal(t, unix.EACCES, errno, "mapping needs a readable descriptor")
	_, errno = mappable(rw).MmapBacking(0, 2*PageSize, unix.PROT_READ, true)
	assert.Equal(t, unix.EINVAL, errno)

	b, errno := mappable(rw).MmapBacking(0, PageSize, unix.PROT_READ|unix.PROT_WRITE, true)
	require.Zero(t, errno)
	rob, errno := mappable(ro).MmapBacking(0, PageSize, unix.PROT_READ, true)
	require.Zero(t, errno)

	ram := make([]byte, 4<<20)
	frames := guestmm.NewFrames(ram, 1<<20, uint64(len(ram)))
	as, err := guestmm.NewAddressSpace(ram, frames, guestmm.Layout{})
	require.NoError(t, err)
	defer as.Destroy()

	va, err := as.Mmap(0, PageSize, guestmm.ProtRead|guestmm.ProtWrite, guestmm.MapShared, b, 0)
	require.NoError(t, err)
	v, ok := as.FindVMA(va)
	require.True(t, ok)
	assert.Equal(t, guestmm.KindDevice, v.Kind)
	assert.Equal(t, "/dev/bsr8_0", v.Name)
	assert.True(t, v.DontDump)
	res := as.HandleFault(va+3, guestmm.PFWrite|guestmm.PFUser)
	require.True(t, res.Resolved)
	pte, ok := as.PageTables().Lookup(va)
	require.True(t, ok)
	assert.Equal(t, uint64(testBase), pte.Addr())
	assert.True(t, pte.Has(guestmm.PCD), "uncached: %v", pte)
	assert.Contains(t, as.MapsText(), "rw-s 00000000 00:00 0")
	assert.True(t, strings.HasSuffix(as.MapsText(), " /dev/bsr8_0\n"))

	// A shared mapping of a read-only descriptor cannot become writable.
	va2, err := as.Mmap(0, PageSize, guestmm.ProtRead, guestmm.MapShared, rob, 0)
	require.NoError(t, err)
	assert.Equal(t, unix.EACCES, as.Mprotect(va2, PageSize, guestmm.ProtRead|guestmm.ProtWrite))
}
