package vfs

import (
	"encoding/binary"

	"golang.org/x/sys/unix"
)

// StatSize is the size of the Linux x86-64 struct stat.
const StatSize = 144

// Timespec is a Linux struct timespec.
type Timespec struct {
	Sec  int64
	Nsec int64
}

// Stat is the Linux x86-64 struct stat, as returned by stat(2) and fstat(2).
type Stat struct {
	Dev     uint64
	Ino     uint64
	Nlink   uint64
	Mode    uint32
	Uid     uint32
	Gid     uint32
	Rdev    uint64
	Size    int64
	Blksize int64
	Blocks  int64
	Atime   Timespec
	Mtime   Timespec
	Ctime   Timespec
}

// Marshal returns the StatSize bytes of the kernel's struct stat layout.
func (s Stat) Marshal() []byte {
	b := make([]byte, StatSize)
	le := binary.LittleEndian
	le.PutUint64(b[0:], s.Dev)
	le.PutUint64(b[8:], s.Ino)
	le.PutUint64(b[16:], s.Nlink)
	le.PutUint32(b[24:], s.Mode)
	le.PutUint32(b[28:], s.Uid)
	le.PutUint32(b[32:], s.Gid)
	// b[36:40] is __pad0.
	le.PutUint64(b[40:], s.Rdev)
	le.PutUint64(b[48:], uint64(s.Size))
	le.PutUint64(b[56:], uint64(s.Blksize))
	le.PutUint64(b[64:], uint64(s.Blocks))
	le.PutUint64(b[72:], uint64(s.Atime.Sec))
	le.PutUint64(b[80:], uint64(s.Atime.Nsec))
	le.PutUint64(b[88:], uint64(s.Mtime.Sec))
	le.PutUint64(b[96:], uint64(s.Mtime.Nsec))
	le.PutUint64(b[104:], uint64(s.Ctime.Sec))
	le.PutUint64(b[112:], uint64(s.Ctime.Nsec))
	// b[120:144] is __unused[3].
	return b
}

// IsDir reports whether the mode is a directory's.
func (s Stat) IsDir() bool { return s.Mode&unix.S_IFMT == unix.S_IFDIR }

// statFromHost converts a host stat, passing every field through.
func statFromHost(h *unix.Stat_t) Stat {
	return Stat{
		Dev:     h.Dev,
		Ino:     h.Ino,
		Nlink:   h.Nlink,
		Mode:    h.Mode,
		Uid:     h.Uid,
		Gid:     h.Gid,
		Rdev:    h.Rdev,
		Size:    h.Size,
		Blksize: h.Blksize,
		Blocks:  h.Blocks,
		Atime:   Timespec{h.Atim.Sec, h.Atim.Nsec},
		Mtime:   Timespec{h.Mtim.Sec, h.Mtim.Nsec},
		Ctime:   Timespec{h.Ctim.Sec, h.Ctim.Nsec},
	}
}

// Makedev encodes a device number as Linux's st_dev and st_rdev do.
func Makedev(major, minor uint32) uint64 { return unix.Mkdev(major, minor) }
