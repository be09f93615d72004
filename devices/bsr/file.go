package bsr

import (
	"io"
	"strconv"

	"github.com/emuckpt/emuckpt/guestmm"
	"github.com/emuckpt/emuckpt/kernel/vfs"
	"golang.org/x/sys/unix"
)

// Major is the character-device major number of the registers. Linux's
// driver asks for a dynamic major (alloc_chrdev_region), which the kernel
// hands out from 254 downwards; emuckpt fixes it at 241 so that st_rdev is
// the same in every run. The minor is the register's index in its Set.
const Major = 241

// SysfsClassDir is the directory of the bsr device class.
const SysfsClassDir = "/sys/class/bsr"

// VMAType is the checkpoint VMA type of a mapping of a register.
const VMAType = "bsr"

// DevicePath is the register's character device, such as "/dev/bsr8_0".
func (r *Register) DevicePath() string { return "/dev/" + r.name }

// DeviceInfo is the register's device number and permissions for
// vfs.FS.AddDevice: Major, the register's minor, mode 0666.
func (r *Register) DeviceInfo() vfs.DeviceInfo {
	return vfs.DeviceInfo{Major: Major, Minor: uint32(r.minor), Perm: 0o666}
}

// SysfsDir is the register's directory in sysfs, such as
// "/sys/class/bsr/bsr8_0".
func (r *Register) SysfsDir() string { return SysfsClassDir + "/" + r.name }

// SysfsFiles returns the register's sysfs attributes by file name, with
// the text Linux's driver gives them: bsr_size, bsr_stride and bsr_length,
// each a decimal number and a newline.
func (r *Register) SysfsFiles() map[string]string {
	return map[string]string{
		"bsr_size":   strconv.FormatUint(r.spec.Bytes, 10) + "\n",
		"bsr_stride": strconv.FormatUint(r.spec.Stride, 10) + "\n",
		"bsr_length": strconv.FormatUint(r.spec.Length, 10) + "\n",
	}
}

// Open opens the register's character device. As Linux's bsr_open, it
// succeeds for any flags; the file supports only mmap.
func (r *Register) Open(flags int) (vfs.File, unix.Errno) {
	access := guestmm.ProtRead | guestmm.ProtExec
	if acc := flags & unix.O_ACCMODE; acc == unix.O_WRONLY || acc == unix.O_RDWR {
		access |= guestmm.ProtWrite
	}
	return &file{reg: r, access: access}, 0
}

// file is an open /dev/bsr*. Linux's driver has only open, mmap and
// noop_llseek, so read and write fail as on any file without them.
type file struct {
	vfs.DeviceBase
	reg    *Register
	access guestmm.Prot
}

// Read fails with EINVAL: the device has no read operation.
func (*file) Read([]byte) (int, unix.Errno) { return 0, unix.EINVAL }

// Write fails with EINVAL: the device has no write operation.
func (*file) Write([]byte) (int, unix.Errno) { return 0, unix.EINVAL }

// Pread fails with EINVAL, not ESPIPE: the file is seekable (it has an
// llseek), so Linux gets as far as the missing read operation.
func (*file) Pread([]byte, int64) (int, unix.Errno) { return 0, unix.EINVAL }

// Pwrite fails with EINVAL, as Pread.
func (*file) Pwrite([]byte, int64) (int, unix.Errno) { return 0, unix.EINVAL }

// Lseek is Linux's noop_llseek: whatever the offset, it succeeds and
// returns the file offset, which never moves from 0. A whence beyond
// SEEK_HOLE is EINVAL, as lseek(2) checks before it reaches the driver.
func (*file) Lseek(_ int64, whence int) (int64, unix.Errno) {
	if whence < unix.SEEK_SET || whence > unix.SEEK_HOLE {
		return 0, unix.EINVAL
	}
	return 0, 0
}

// MmapBacking is bsr_mmap. The offset must be 0 (EINVAL otherwise; Linux
// ignores it, see docs/DEVICES.md). The length, rounded up to whole
// pages, must be exactly one page for a register shorter than a page, and
// at most bsr_length for the others; anything else is EINVAL. The mapping
// reaches the register's MMIO window, uncached.
func (f *file) MmapBacking(off, length uint64, _ uint32, _ bool) (vfs.Backing, unix.Errno) {
	if off != 0 || length == 0 || length > ^uint64(0)-(PageSize-1) {
		return nil, unix.EINVAL
	}
	size := (length + PageSize - 1) &^ (PageSize - 1)
	l := f.reg.spec.Length
	if !(l < PageSize && size == PageSize) && size > l {
		return nil, unix.EINVAL
	}
	return &Backing{reg: f.reg, access: f.access}, 0
}

// Backing is a mapping of a register: a guestmm.DeviceBacking whose pages
// are the register's MMIO window.
type Backing struct {
	reg    *Register
	access guestmm.Prot
}

var (
	_ guestmm.DeviceBacking = (*Backing)(nil)
	_ guestmm.BackingAccess = (*Backing)(nil)
	_ vfs.Backing           = (*Backing)(nil)
	_ vfs.Mappable          = (*file)(nil)
	_ vfs.File              = (*file)(nil)
)

// Register is the mapped register.
func (b *Backing) Register() *Register { return b.reg }

// Name is the device's path, for /proc/self/maps.
func (b *Backing) Name() string { return b.reg.DevicePath() }

// MMIOBase is the guest-physical address of the register's window.
func (b *Backing) MMIOBase() uint64 { return b.reg.base }

// MMIOSize is the size of the register's window.
func (b *Backing) MMIOSize() uint64 { return b.reg.size }

// VMAType is the checkpoint VMA type of the mapping, "bsr".
func (b *Backing) VMAType() string { return VMAType }

// Access is how the descriptor behind the mapping was opened: always
// readable (mmap requires it) and executable, writable if opened for
// writing. mprotect cannot make a shared mapping of a read-only descriptor
// writable.
func (b *Backing) Access() guestmm.Prot { return b.access }

// ReadAt reads the window as a sequence of byte loads would see it, without
// side effects; past the window it returns io.EOF. Guest accesses do not
// come here (they go to the register through the MMIO bus); this is for
// debuggers and tools.
func (b *Backing) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, unix.EINVAL
	}
	size := b.reg.size
	if uint64(off) >= size {
		return 0, io.EOF
	}
	n := len(p)
	if uint64(n) > size-uint64(off) {
		n = int(size - uint64(off))
	}
	b.reg.peek(uint64(off), p[:n])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
