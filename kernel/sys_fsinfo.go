package kernel

import (
	"encoding/binary"

	"github.com/emuckpt/emuckpt/kernel/vfs"
	"golang.org/x/sys/unix"
)

// File system information (statfs, fstatfs, statx) and in-kernel copies
// (sendfile, copy_file_range), with fadvise64.

const (
	statxReserved      = 0x80000000 // STATX__RESERVED
	statxBasicStats    = 0x7ff      // STATX_BASIC_STATS
	atStatxSyncType    = 0x6000     // AT_STATX_FORCE_SYNC | AT_STATX_DONT_SYNC
	statxSize          = 256
	copyChunk          = 1 << 16
	posixFadvNoreuse   = 5 // the largest POSIX_FADV_* on x86-64
	offsetMax          = 1<<63 - 1
	copyFileRangeFlags = 0 // copy_file_range has no flags yet
)

func (k *Kernel) sysStatfs(t *Task, a *args) (uint64, unix.Errno) {
	p, e := k.path(t, a[0])
	if e != 0 {
		return 0, e
	}
	st, e := k.fs.Statfs(t.proc.cwd, p)
	if e != 0 {
		return 0, e
	}
	return 0, k.copyOut(t, a[1], st.Marshal())
}

func (k *Kernel) sysFstatfs(t *Task, a *args) (uint64, unix.Errno) {
	f, e := k.file(t, a[0])
	if e != 0 {
		return 0, e
	}
	st, e := k.fs.FileStatfs(f)
	if e != 0 {
		return 0, e
	}
	return 0, k.copyOut(t, a[1], st.Marshal())
}

// sysStatx fills struct statx with the basic stats, which are all the
// guest's files have (no birth time, attributes or mount id).
func (k *Kernel) sysStatx(t *Task, a *args) (uint64, unix.Errno) {
	dirfd, pathVA, flags, mask, buf := a[0], a[1], a[2], uint32(a[3]), a[4]
	if flags&^(atSymlinkNofollow|atEmptyPath|atNoAutomount|atStatxSyncType) != 0 ||
		flags&atStatxSyncType == atStatxSyncType || mask&statxReserved != 0 {
		return 0, unix.EINVAL
	}
	st, e := k.statAt(t, dirfd, pathVA, flags)
	if e != 0 {
		return 0, e
	}
	return 0, k.copyOut(t, buf, marshalStatx(st))
}

func marshalStatx(st vfs.Stat) []byte {
	b := make([]byte, statxSize)
	le := binary.LittleEndian
	le.PutUint32(b[0:], statxBasicStats)
	le.PutUint32(b[4:], uint32(st.Blksize))
	le.PutUint32(b[16:], uint32(st.Nlink))
	le.PutUint32(b[20:], st.Uid)
	le.PutUint32(b[24:], st.Gid)
	le.PutUint16(b[28:], uint16(st.Mode))
	le.PutUint64(b[32:], st.Ino)
	le.PutUint64(b[40:], uint64(st.Size))
	le.PutUint64(b[48:], uint64(st.Blocks))
	for off, ts := range map[int]vfs.Timespec{64: st.Atime, 96: st.Ctime, 112: st.Mtime} {
		le.PutUint64(b[off:], uint64(ts.Sec))
		le.PutUint32(b[off+8:], uint32(ts.Nsec))
	}
	le.PutUint32(b[128:], unix.Major(st.Rdev))
	le.PutUint32(b[132:], unix.Minor(st.Rdev))
	le.PutUint32(b[136:], unix.Major(st.Dev))
	le.PutUint32(b[140:], unix.Minor(st.Dev))
	return b
}

// readOffset reads the loff_t an offset pointer argument points to.
func (k *Kernel) readOffset(t *Task, va uint64) (int64, unix.Errno) {
	var b [8]byte
	if e := k.copyIn(t, va, b[:]); e != 0 {
		return 0, e
	}
	return int64(binary.LittleEndian.Uint64(b[:])), 0
}

func (k *Kernel) writeOffset(t *Task, va uint64, off int64) unix.Errno {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(off))
	return k.copyOut(t, va, b[:])
}

// accessible returns the descriptor's file when it is open for reading
// (write false) or writing (write true), else EBADF.
func (k *Kernel) accessible(t *Task, fd uint64, write bool) (vfs.File, unix.Errno) {
	f, e := k.file(t, fd)
	if e != 0 {
		return nil, e
	}
	fl := f.Flags()
	acc := fl & unix.O_ACCMODE
	if fl&unix.O_PATH != 0 || write && acc == unix.O_RDONLY || !write && acc == unix.O_WRONLY {
		return nil, unix.EBADF
	}
	return f, 0
}

// sysSendfile copies from a file that can be read at an offset (a regular
// file of the root, a device, a generated file) to any writable
// descriptor. As Linux, a pipe or a directory as input is EINVAL, an
// O_APPEND output is EINVAL, and an offset pointer leaves the input's
// file offset alone.
func (k *Kernel) sysSendfile(t *Task, a *args) (uint64, unix.Errno) {
	outFD, inFD, offVA, count := a[0], a[1], a[2], min(a[3], maxRWCount)
	in, e := k.accessible(t, inFD, false)
	if e != 0 {
		return 0, e
	}
	var pos int64
	if offVA != 0 {
		if pos, e = k.readOffset(t, offVA); e != 0 {
			return 0, e
		}
	} else if pos, e = in.Lseek(0, unix.SEEK_CUR); e != 0 {
		if e == unix.ESPIPE {
			e = unix.EINVAL // no splice_read on pipes
		}
		return 0, e
	}
	if pos < 0 {
		return 0, unix.EINVAL
	}
	out, e := k.accessible(t, outFD, true)
	if e != 0 {
		return 0, e
	}
	if out.Flags()&unix.O_APPEND != 0 {
		return 0, unix.EINVAL
	}
	if st, e := in.Stat(); e != 0 || st.IsDir() {
		return 0, unix.EINVAL
	}
	if uint64(pos)+count > offsetMax {
		if uint64(pos) >= offsetMax {
			return 0, unix.EOVERFLOW
		}
		count = offsetMax - uint64(pos)
	}
	var done uint64
	buf := make([]byte, min(count, copyChunk))
	for done < count {
		n, e := in.Pread(buf[:min(count-done, uint64(len(buf)))], pos)
		if e == unix.ESPIPE || e == unix.EISDIR {
			e = unix.EINVAL
		}
		if e != 0 || n == 0 {
			if done == 0 && e != 0 {
				return 0, e
			}
			break
		}
		w, e := out.Write(buf[:n])
		if w > 0 {
			done += uint64(w)
			pos += int64(w)
		}
		if e != 0 {
			if done == 0 {
				return 0, e
			}
			break
		}
		if w < n {
			break
		}
	}
	if offVA != 0 {
		if e := k.writeOffset(t, offVA, pos); e != 0 {
			return 0, e
		}
	} else if _, e := in.Lseek(pos, unix.SEEK_SET); e != 0 {
		return 0, e
	}
	return done, 0
}

// sysCopyFileRange checks its arguments as Linux does and copies between
// files of one tmpfs (or between memfds), as Linux's splice fallback does
// within a superblock. Other regular files the guest can write are host
// streams, on another file system than its read-only root or a tmpfs:
// EXDEV, as Linux gives between superblocks.
func (k *Kernel) sysCopyFileRange(t *Task, a *args) (uint64, unix.Errno) {
	inFD, offInVA, outFD, offOutVA, length, flags := a[0], a[1], a[2], a[3], a[4], a[5]
	in, e := k.file(t, inFD)
	if e != 0 {
		return 0, e
	}
	out, e := k.file(t, outFD)
	if e != 0 {
		return 0, e
	}
	if in.Flags()&unix.O_PATH != 0 || out.Flags()&unix.O_PATH != 0 {
		return 0, unix.EBADF
	}
	for _, va := range []uint64{offInVA, offOutVA} {
		if va != 0 {
			if _, e := k.readOffset(t, va); e != 0 {
				return 0, e
			}
		}
	}
	if flags != copyFileRangeFlags {
		return 0, unix.EINVAL
	}
	sin, e := in.Stat()
	if e != 0 {
		return 0, e
	}
	sout, e := out.Stat()
	if e != 0 {
		return 0, e
	}
	if sin.IsDir() || sout.IsDir() {
		return 0, unix.EISDIR
	}
	if sin.Mode&unix.S_IFMT != unix.S_IFREG || sout.Mode&unix.S_IFMT != unix.S_IFREG {
		return 0, unix.EINVAL
	}
	if _, e := k.accessible(t, inFD, false); e != 0 {
		return 0, e
	}
	if _, e := k.accessible(t, outFD, true); e != 0 || out.Flags()&unix.O_APPEND != 0 {
		return 0, unix.EBADF
	}
	if length == 0 {
		return 0, 0
	}
	same, sameInode := vfs.SameTmpfs(in, out)
	if !same {
		return 0, unix.EXDEV
	}
	return k.copyTmpfs(t, in, out, offInVA, offOutVA, length, sameInode)
}

// copyTmpfs is copy_file_range within a tmpfs, with Linux's
// generic_copy_file_checks: the length is cut at the input's end (0 at or
// past it) and at MAX_RW_COUNT, positions that would overflow are
// EOVERFLOW, and overlapping ranges of one file EINVAL.
func (k *Kernel) copyTmpfs(t *Task, in, out vfs.File, offInVA, offOutVA, length uint64, sameInode bool) (uint64, unix.Errno) {
	pos := func(f vfs.File, va uint64) (int64, unix.Errno) {
		if va != 0 {
			return k.readOffset(t, va)
		}
		return f.Lseek(0, unix.SEEK_CUR)
	}
	pin, e := pos(in, offInVA)
	if e != 0 {
		return 0, e
	}
	pout, e := pos(out, offOutVA)
	if e != 0 {
		return 0, e
	}
	if pin < 0 || pout < 0 {
		return 0, unix.EINVAL
	}
	if uint64(pin)+length < uint64(pin) || uint64(pout)+length < uint64(pout) ||
		uint64(pin)+length > offsetMax || uint64(pout)+length > offsetMax {
		return 0, unix.EOVERFLOW
	}
	st, e := in.Stat()
	if e != 0 {
		return 0, e
	}
	if pin >= st.Size {
		return 0, 0
	}
	count := min(length, uint64(st.Size-pin), maxRWCount)
	if sameInode && uint64(pout) < uint64(pin)+count && uint64(pin) < uint64(pout)+count {
		return 0, unix.EINVAL
	}
	var done uint64
	buf := make([]byte, min(count, copyChunk))
	for done < count {
		n, e := in.Pread(buf[:min(count-done, uint64(len(buf)))], pin+int64(done))
		if e != 0 || n == 0 {
			if done == 0 && e != 0 {
				return 0, e
			}
			break
		}
		w, e := out.Pwrite(buf[:n], pout+int64(done))
		done += uint64(max(w, 0))
		if e != 0 {
			if done == 0 {
				return 0, e
			}
			break
		}
		if w < n {
			break
		}
	}
	for _, x := range []struct {
		f   vfs.File
		va  uint64
		pos int64
	}{{in, offInVA, pin + int64(done)}, {out, offOutVA, pout + int64(done)}} {
		if x.va != 0 {
			if e := k.writeOffset(t, x.va, x.pos); e != 0 {
				return 0, e
			}
		} else if _, e := x.f.Lseek(x.pos, unix.SEEK_SET); e != 0 {
			return 0, e
		}
	}
	return done, 0
}

// usableFile is the open file behind fd and its stat, for calls that act
// on the file itself: an O_PATH descriptor is EBADF for them.
func (k *Kernel) usableFile(t *Task, fd uint64) (vfs.File, vfs.Stat, unix.Errno) {
	f, e := k.file(t, fd)
	if e != 0 {
		return nil, vfs.Stat{}, e
	}
	if f.Flags()&unix.O_PATH != 0 {
		return nil, vfs.Stat{}, unix.EBADF
	}
	st, e := f.Stat()
	return f, st, e
}

// sysFadvise64 validates the advice and ignores it: the guest's files
// have no page cache of their own to advise.
func (k *Kernel) sysFadvise64(t *Task, a *args) (uint64, unix.Errno) {
	_, st, e := k.usableFile(t, a[0])
	if e != 0 {
		return 0, e
	}
	if st.Mode&unix.S_IFMT == unix.S_IFIFO {
		return 0, unix.ESPIPE
	}
	if int64(a[2]) < 0 || a[3] > posixFadvNoreuse {
		return 0, unix.EINVAL
	}
	return 0, 0
}
