package vfs

import (
	"errors"
	"sync"

	"golang.org/x/sys/unix"
)

// File is an open file description. Descriptors made by dup share one File.
// Implementations are safe for concurrent use, and an operation on a File
// that was closed fails with EBADF instead of touching a recycled host
// descriptor.
type File interface {
	// Read reads at the file offset and advances it; 0 bytes means EOF.
	Read(p []byte) (int, unix.Errno)
	// Write writes at the file offset (or the end, with O_APPEND).
	Write(p []byte) (int, unix.Errno)
	// Pread reads at off without moving the file offset.
	Pread(p []byte, off int64) (int, unix.Errno)
	// Pwrite writes at off without moving the file offset.
	Pwrite(p []byte, off int64) (int, unix.Errno)
	// Lseek is lseek(2): ESPIPE on pipes and terminals, EINVAL for a bad
	// whence or a negative result.
	Lseek(off int64, whence int) (int64, unix.Errno)
	// Stat is fstat(2).
	Stat() (Stat, unix.Errno)
	// Getdents64 returns the linux_dirent64 records that fit in size bytes,
	// continuing from the file offset, or none at the end of the directory.
	// It fails with EINVAL if the next record does not fit, ENOTDIR on
	// anything but a directory.
	Getdents64(size int) ([]byte, unix.Errno)
	// Ioctl is ioctl(2) for the requests the file knows (ENOTTY otherwise).
	// Pointer arguments are guest addresses, read and written through m.
	Ioctl(req uint64, arg uint64, m Memory) (uint64, unix.Errno)
	// Close releases the description; the FDTable calls it when the last
	// descriptor referring to it is closed.
	Close() unix.Errno
	// Flags is what fcntl(F_GETFL) returns: the access mode and the file
	// status flags.
	Flags() int
	// SetFlags is fcntl(F_SETFL): only the bits in StatusFlagsMask are
	// taken from arg.
	SetFlags(arg int)
	// Describe returns the description as plain data for a checkpoint.
	Describe() FileState
}

// FullReader is implemented by files whose reads never wait and return
// every byte asked for until the data ends: regular files, generated
// files, /dev/zero and /dev/urandom. The kernel serves a long read(2) of
// such a file in bounded chunks until it is complete, as Linux returns the
// full count; other files (pipes, terminals, devices that block) get one
// chunk per read(2) and may return short.
type FullReader interface {
	ReadsFull() bool
}

// Memory reads and writes guest memory at guest virtual addresses.
type Memory interface {
	CopyIn(va uint64, dst []byte) error
	CopyOut(va uint64, src []byte) error
}

// Mappable is implemented by files that mmap(2) can map. Every File this
// package makes implements it; a File that does not should be treated as
// ENODEV.
type Mappable interface {
	// MmapBacking returns the contents to map for the file range
	// [off, off+length). prot is the PROT_* bits and shared is MAP_SHARED.
	MmapBacking(off, length uint64, prot uint32, shared bool) (Backing, unix.Errno)
}

// Backing is the contents behind a file mapping. ReadAt follows io.ReaderAt:
// it returns io.EOF past the end of the file, where the mapping reads zeros.
// A Backing stays valid after the File is closed; the backings this package
// makes also implement io.Closer, and release their host descriptor on Close
// or, at the latest, when they are garbage collected.
type Backing interface {
	ReadAt(p []byte, off int64) (int, error)
	// Name is the guest path of the mapped file, for /proc/self/maps and
	// for re-creating the mapping after a restore.
	Name() string
}

// AnonymousMapper is implemented by files whose mmap(2) is an anonymous
// mapping, as Linux does for /dev/zero. When MapsAnonymous is true the
// caller still calls MmapBacking, for its access checks (EACCES), and then
// maps zero-filled memory (shared anonymous memory for MAP_SHARED) instead
// of the backing.
type AnonymousMapper interface {
	MapsAnonymous() bool
}

// FileKind says what an open file is, for FileState.
type FileKind string

// The kinds of open file.
const (
	KindRegular   FileKind = "regular"   // a regular file of the root
	KindDirectory FileKind = "directory" // a directory, host and/or synthetic
	KindDevice    FileKind = "device"    // a synthetic character device
	KindGenerated FileKind = "generated" // a synthetic file, such as /proc/self/maps
	KindStdio     FileKind = "stdio"     // a host standard stream; Path is stdin, stdout or stderr
	KindPath      FileKind = "path"      // an O_PATH descriptor
	KindPipe      FileKind = "pipe"      // one end of a pipe
	KindTmpfs     FileKind = "tmpfs"     // a regular file of a tmpfs mount (Mount, Ino)
)

// FileState is an open file description as plain data: enough to re-open an
// equivalent description with FS.Reopen.
type FileState struct {
	Kind FileKind
	// Path is the canonical absolute guest path, or the stream name for
	// KindStdio.
	Path string
	// Flags is the access mode and status flags (see File.Flags).
	Flags int
	// Offset is the file offset; for directories, the getdents position.
	Offset int64
	// Device is what a device file says about itself (DeviceDescriber),
	// for its device's re-open hook (FS.SetDeviceReopen).
	Device []byte `json:",omitempty"`
	// Mount and Ino name the inode of a KindTmpfs file: the mount point
	// and the inode number in the mount's saved state (MountState). The
	// file may have no name left (unlinked while open, O_TMPFILE).
	Mount string `json:",omitempty"`
	Ino   uint64 `json:",omitempty"`
	// Pipe is the pipe a KindPipe end belongs to: its objref among the
	// checkpoint's pipes (Shared.Pipes); the access mode says which end.
	Pipe int `json:",omitempty"`
}

// DeviceDescriber is implemented by device files that need more than
// their path to be re-opened as they were (the HPET timer a /dev/hpet
// descriptor holds).
type DeviceDescriber interface {
	DescribeDevice() []byte
}

// Linux open flags that golang.org/x/sys/unix spells differently on amd64.
const (
	// oLargefile is the kernel's O_LARGEFILE on x86-64, which open(2) sets
	// on every file there and F_GETFL reports (unix.O_LARGEFILE is 0).
	oLargefile = 0x8000
)

// StatusFlagsMask is the set of file status flags fcntl(F_SETFL) changes.
// O_ASYNC asks for a signal to the file's owner at each event of a file
// that sends them (an AsyncSource); on other files it is only a flag, as
// on Linux for files without a fasync operation.
const StatusFlagsMask = unix.O_APPEND | unix.O_NONBLOCK | unix.O_ASYNC

// descriptionFlags returns the flags kept in an open file description for
// the flags given to open(2), as Linux's f_flags: the open-time-only flags
// dropped, O_LARGEFILE added.
func descriptionFlags(openFlags int) int {
	return openFlags&^(unix.O_CREAT|unix.O_EXCL|unix.O_NOCTTY|unix.O_TRUNC|unix.O_CLOEXEC) | oLargefile
}

// applyStatusFlags is F_SETFL: the changeable bits of arg replace those of old.
func applyStatusFlags(old, arg int) int {
	return old&^StatusFlagsMask | arg&StatusFlagsMask
}

// readable and writable report the access mode of a description's flags.
func readable(flags int) bool {
	acc := flags & unix.O_ACCMODE
	return flags&unix.O_PATH == 0 && (acc == unix.O_RDONLY || acc == unix.O_RDWR)
}

func writable(flags int) bool {
	acc := flags & unix.O_ACCMODE
	return flags&unix.O_PATH == 0 && (acc == unix.O_WRONLY || acc == unix.O_RDWR)
}

// flagSet holds a description's flags for concurrent use.
type flagSet struct {
	mu    sync.Mutex
	flags int
}

// Flags returns the access mode and status flags (F_GETFL).
func (f *flagSet) Flags() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.flags
}

// SetFlags takes the StatusFlagsMask bits of arg (F_SETFL).
func (f *flagSet) SetFlags(arg int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.flags = applyStatusFlags(f.flags, arg)
}

// DeviceBase gives a character device File Linux's defaults for the
// operations it does not support: embed it and override the rest. Stat and
// Describe of a registered device are supplied by the FS, so a device need
// not implement them.
type DeviceBase struct {
	flagSet
}

// Read fails with EINVAL, as for a device without a read operation.
func (*DeviceBase) Read([]byte) (int, unix.Errno) { return 0, unix.EINVAL }

// Write fails with EINVAL, as for a device without a write operation.
func (*DeviceBase) Write([]byte) (int, unix.Errno) { return 0, unix.EINVAL }

// Pread fails with ESPIPE.
func (*DeviceBase) Pread([]byte, int64) (int, unix.Errno) { return 0, unix.ESPIPE }

// Pwrite fails with ESPIPE.
func (*DeviceBase) Pwrite([]byte, int64) (int, unix.Errno) { return 0, unix.ESPIPE }

// Lseek fails with ESPIPE.
func (*DeviceBase) Lseek(int64, int) (int64, unix.Errno) { return 0, unix.ESPIPE }

// Stat returns a zero Stat; the FS fills it in for registered devices.
func (*DeviceBase) Stat() (Stat, unix.Errno) { return Stat{}, 0 }

// Getdents64 fails with ENOTDIR.
func (*DeviceBase) Getdents64(int) ([]byte, unix.Errno) { return nil, unix.ENOTDIR }

// Ioctl fails with ENOTTY.
func (*DeviceBase) Ioctl(uint64, uint64, Memory) (uint64, unix.Errno) { return 0, unix.ENOTTY }

// Close does nothing.
func (*DeviceBase) Close() unix.Errno { return 0 }

// Describe returns a zero FileState; the FS fills it in for registered
// devices.
func (*DeviceBase) Describe() FileState { return FileState{} }

// errnoOf extracts the errno of a host error; other errors become EIO.
func errnoOf(err error) unix.Errno {
	if err == nil {
		return 0
	}
	var e unix.Errno
	if errors.As(err, &e) {
		return e
	}
	return unix.EIO
}

// seekOffset computes lseek's new offset for SEEK_SET, SEEK_CUR and
// SEEK_END, with Linux's EINVAL for a negative or overflowing result.
func seekOffset(cur, size, off int64, whence int) (int64, unix.Errno) {
	var base int64
	switch whence {
	case unix.SEEK_SET:
		base = 0
	case unix.SEEK_CUR:
		base = cur
	case unix.SEEK_END:
		base = size
	default:
		return 0, unix.EINVAL
	}
	n := base + off
	if (off > 0 && n < base) || n < 0 {
		return 0, unix.EINVAL
	}
	return n, 0
}

// EBLOCK is what an operation on a blocking descriptor returns instead of
// waiting (a pipe with nothing to read, a full pipe, a device waiting for
// its interrupt): the kernel blocks the task and makes the call again once
// the file polls ready. It never reaches the guest.
const EBLOCK unix.Errno = 0x7ffe
