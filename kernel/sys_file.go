package kernel

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/emuckpt/emuckpt/kernel/vfs"
	"golang.org/x/sys/unix"
)

const (
	atFDCWD           = -100
	atSymlinkNofollow = 0x100
	atEAccess         = 0x200
	atEmptyPath       = 0x1000
	atNoAutomount     = 0x800
	pathMax           = 4096
	uioMaxIOV         = 1024
	// maxIO bounds one host-side transfer buffer; longer requests are
	// served in several steps or return a short count, as Linux may.
	maxIO = 1 << 20

	fioNCLEX = 0x5450
	fioCLEX  = 0x5451
	fioNBIO  = 0x5421

	ioctlTCGETS     = 0x5401
	ioctlTIOCGWINSZ = 0x5413
	fioASYNC        = 0x5452
)

// taskMemory lets vfs files read and write the task's memory (ioctl).
type taskMemory struct{ t *Task }

func (m taskMemory) CopyIn(va uint64, dst []byte) error  { return m.t.proc.as.CopyIn(va, dst) }
func (m taskMemory) CopyOut(va uint64, src []byte) error { return m.t.proc.as.CopyOut(va, src) }

func (k *Kernel) file(t *Task, fd uint64) (vfs.File, unix.Errno) {
	return t.proc.fds.Get(int(int32(fd)))
}

// path reads a NUL-terminated path argument.
func (k *Kernel) path(t *Task, va uint64) (string, unix.Errno) {
	s, err := t.proc.as.ReadString(va, pathMax)
	if err != nil {
		return "", errnoOf(err)
	}
	return s, 0
}

// dirOf returns the directory a *at call resolves relative paths from.
func (k *Kernel) dirOf(t *Task, dirfd uint64, path string) (string, unix.Errno) {
	if len(path) > 0 && path[0] == '/' || int32(dirfd) == atFDCWD {
		return t.proc.cwd, 0
	}
	f, e := k.file(t, dirfd)
	if e != 0 {
		return "", e
	}
	return vfs.DirPath(f)
}

func (k *Kernel) sysRead(t *Task, a *args) (uint64, unix.Errno) {
	f, e := k.file(t, a[0])
	if e != 0 {
		return 0, e
	}
	return k.mayBlock(t, f, vfs.PollIn)(k.readTo(t, a[1], a[2], fullReader(f), f.Read))
}

// mayBlock turns EBLOCK from a call on a blocking descriptor into a wait
// until f polls ready for events (or hangs up), after which the call is
// made again; any other result passes through. Use it as
// k.mayBlock(t, f, events)(ret, errno).
func (k *Kernel) mayBlock(t *Task, f vfs.File, events uint32) func(uint64, unix.Errno) (uint64, unix.Errno) {
	return func(ret uint64, e unix.Errno) (uint64, unix.Errno) {
		if e != vfs.EBLOCK {
			return ret, e
		}
		return k.block(t, waitSpec{deadline: math.MaxInt64, files: []vfs.File{f}, restartable: true,
			ready: func() bool { return vfs.PollFile(f)&(events|vfs.PollHup|vfs.PollErr|vfs.PollNval) != 0 }})
	}
}

// epipe passes a write's result through, sending SIGPIPE for EPIPE from
// a pipe or a stream socket, as Linux's write does. Use it as
// k.epipe(t, f)(ret, errno).
func (k *Kernel) epipe(t *Task, f vfs.File) func(uint64, unix.Errno) (uint64, unix.Errno) {
	return func(ret uint64, e unix.Errno) (uint64, unix.Errno) {
		if e == unix.EPIPE {
			k.sigpipe(t, f)
		}
		return ret, e
	}
}

// maxRWCount is Linux's MAX_RW_COUNT: no read or write moves more bytes
// in one call.
const maxRWCount = 0x7ffff000

// fullReader tells whether a long read of f is served in full (see
// vfs.FullReader).
func fullReader(f vfs.File) bool {
	r, ok := f.(vfs.FullReader)
	return ok && r.ReadsFull()
}

// readTo reads up to length bytes with read and copies them to the guest
// at va, in chunks of at most maxIO through one buffer. A file that does
// not read full gets one chunk; one that does is read until length bytes
// (at most maxRWCount) are done or a chunk comes back short. When the guest
// buffer turns out bad part way, the bytes copied before the bad page are
// the result, as Linux's copy_to_user leaves it (EFAULT if there are none).
func (k *Kernel) readTo(t *Task, va, length uint64, full bool, read func([]byte) (int, unix.Errno)) (uint64, unix.Errno) {
	length = min(length, maxRWCount)
	buf := make([]byte, min(length, maxIO))
	var done uint64
	for {
		chunk := buf[:min(length-done, maxIO)]
		n, e := read(chunk)
		if e != 0 {
			if done > 0 {
				return done, 0
			}
			return 0, e
		}
		copied, err := t.proc.as.CopyOutPartial(va+done, chunk[:n])
		done += uint64(copied)
		if err != nil {
			if done > 0 {
				return done, 0
			}
			return 0, errnoOf(err)
		}
		if !full || n < len(chunk) || done == length {
			return done, 0
		}
	}
}

func (k *Kernel) sysWrite(t *Task, a *args) (uint64, unix.Errno) {
	f, e := k.file(t, a[0])
	if e != 0 {
		return 0, e
	}
	return k.mayBlock(t, f, vfs.PollOut)(k.epipe(t, f)(k.writeFrom(t, a[1], a[2], func(p []byte) (int, unix.Errno) { return f.Write(p) })))
}

// writeFrom copies length bytes at va out of the guest in bounded chunks
// and hands them to write, stopping at a short write.
func (k *Kernel) writeFrom(t *Task, va, length uint64, write func([]byte) (int, unix.Errno)) (uint64, unix.Errno) {
	var done uint64
	for done < length || length == 0 {
		buf := make([]byte, min(length-done, maxIO))
		if e := k.copyIn(t, va+done, buf); e != 0 {
			if done > 0 {
				return done, 0
			}
			return 0, e
		}
		n, e := write(buf)
		if e != 0 {
			if done > 0 {
				return done, 0
			}
			return 0, e
		}
		done += uint64(n)
		if n < len(buf) || length == 0 {
			break
		}
	}
	return done, 0
}

func (k *Kernel) sysPread64(t *Task, a *args) (uint64, unix.Errno) {
	f, e := k.file(t, a[0])
	if e != 0 {
		return 0, e
	}
	if int64(a[3]) < 0 {
		return 0, unix.EINVAL
	}
	off := int64(a[3])
	return k.readTo(t, a[1], a[2], fullReader(f), func(p []byte) (int, unix.Errno) {
		n, e := f.Pread(p, off)
		off += int64(n)
		return n, e
	})
}

func (k *Kernel) sysPwrite64(t *Task, a *args) (uint64, unix.Errno) {
	f, e := k.file(t, a[0])
	if e != 0 {
		return 0, e
	}
	off := int64(a[3])
	if off < 0 {
		return 0, unix.EINVAL
	}
	return k.writeFrom(t, a[1], a[2], func(p []byte) (int, unix.Errno) {
		n, e := f.Pwrite(p, off)
		off += int64(n)
		return n, e
	})
}

// iovecs reads an iovec array.
func (k *Kernel) iovecs(t *Task, va, cnt uint64) ([][2]uint64, unix.Errno) {
	if int64(cnt) < 0 || cnt > uioMaxIOV {
		return nil, unix.EINVAL
	}
	raw := make([]byte, 16*cnt)
	if e := k.copyIn(t, va, raw); e != 0 {
		return nil, e
	}
	iov := make([][2]uint64, cnt)
	var total uint64
	for i := range iov {
		iov[i] = [2]uint64{binary.LittleEndian.Uint64(raw[16*i:]), binary.LittleEndian.Uint64(raw[16*i+8:])}
		total += iov[i][1]
		if int64(iov[i][1]) < 0 || int64(total) < 0 {
			return nil, unix.EINVAL
		}
	}
	return iov, 0
}

// fileIovecs is the file and the iovec array of readv and writev.
func (k *Kernel) fileIovecs(t *Task, a *args) (vfs.File, [][2]uint64, unix.Errno) {
	f, e := k.file(t, a[0])
	if e != 0 {
		return nil, nil, e
	}
	iov, e := k.iovecs(t, a[1], a[2])
	return f, iov, e
}

func (k *Kernel) sysReadv(t *Task, a *args) (uint64, unix.Errno) {
	f, iov, e := k.fileIovecs(t, a)
	if e != 0 {
		return 0, e
	}
	if s, ok := f.(*vfs.Socket); ok {
		return k.socketReadv(t, s, iov) // one message, as recvmsg
	}
	return k.mayBlock(t, f, vfs.PollIn)(k.readv(t, iov, f.Read))
}

// readv fills the buffers of iov in turn with read.
func (k *Kernel) readv(t *Task, iov [][2]uint64, read func([]byte) (int, unix.Errno)) (uint64, unix.Errno) {
	// Fill each buffer in turn, in steps of at most maxIO, and stop at the
	// first short read: the bytes land where Linux would put them.
	var done uint64
	for _, v := range iov {
		for off := uint64(0); off < v[1]; {
			n, e := k.readTo(t, v[0]+off, v[1]-off, false, read)
			if e != 0 {
				if done > 0 {
					return done, 0
				}
				return 0, e
			}
			done += n
			off += n
			if n < min(v[1]-off+n, maxIO) {
				return done, 0
			}
		}
	}
	return done, 0
}

// Flags of preadv2 and pwritev2 (RWF_*). HIPRI, DSYNC and SYNC change
// nothing here: guest files have no device queue to poll and nothing to
// write back. The others are refused, as by a file system without them.
const (
	rwfHipri     = 0x1
	rwfDsync     = 0x2
	rwfSync      = 0x4
	rwfSupported = 0xff // RWF_SUPPORTED of Linux 6.x: unknown bits give EOPNOTSUPP
)

// positioned returns the read or write of preadv/pwritev at pos, which
// advances with each transfer and leaves the file offset alone; pos -1
// (preadv2 and pwritev2 only) is the file offset, as readv and writev.
func positioned(pos int64, whole bool, at func([]byte, int64) (int, unix.Errno), plain func([]byte) (int, unix.Errno)) (func([]byte) (int, unix.Errno), unix.Errno) {
	switch {
	case pos == -1 && !whole:
		return plain, 0
	case pos < 0:
		return nil, unix.EINVAL
	}
	return func(p []byte) (int, unix.Errno) {
		n, e := at(p, pos)
		pos += int64(n)
		return n, e
	}, 0
}

// rwFlags checks the flags of preadv2/pwritev2.
func (k *Kernel) rwFlags(flags uint64) unix.Errno {
	switch {
	case flags&^rwfSupported != 0:
		return unix.EOPNOTSUPP
	case flags&^(rwfHipri|rwfDsync|rwfSync) != 0:
		k.noteOnce(fmt.Sprintf("rwf-%#x", flags), fmt.Sprintf("preadv2/pwritev2 flags %#x are not implemented: returning EOPNOTSUPP", flags))
		return unix.EOPNOTSUPP
	}
	return 0
}

// vectorAt is the start of preadv, pwritev and their v2 forms: the file,
// its buffers, and its read (or write) at the position asked (whole:
// preadv and pwritev, whose position is always an offset).
func (k *Kernel) vectorAt(t *Task, a *args, whole bool, flags uint64, write bool) (vfs.File, [][2]uint64, func([]byte) (int, unix.Errno), unix.Errno) {
	f, iov, e := k.fileIovecs(t, a)
	if e != 0 {
		return nil, nil, nil, e
	}
	if e := k.rwFlags(flags); e != 0 {
		return nil, nil, nil, e
	}
	at, plain := f.Pread, f.Read
	if write {
		at, plain = f.Pwrite, f.Write
	}
	io, e := positioned(int64(a[3]), whole, at, plain)
	return f, iov, io, e
}

func (k *Kernel) preadv(t *Task, a *args, whole bool, flags uint64) (uint64, unix.Errno) {
	f, iov, read, e := k.vectorAt(t, a, whole, flags, false)
	if e != 0 {
		return 0, e
	}
	return k.mayBlock(t, f, vfs.PollIn)(k.readv(t, iov, read))
}

func (k *Kernel) pwritev(t *Task, a *args, whole bool, flags uint64) (uint64, unix.Errno) {
	f, iov, write, e := k.vectorAt(t, a, whole, flags, true)
	if e != 0 {
		return 0, e
	}
	return k.mayBlock(t, f, vfs.PollOut)(k.epipe(t, f)(k.writev(t, iov, write)))
}

func (k *Kernel) sysPreadv(t *Task, a *args) (uint64, unix.Errno) {
	return k.preadv(t, a, true, 0)
}

func (k *Kernel) sysPreadv2(t *Task, a *args) (uint64, unix.Errno) {
	return k.preadv(t, a, false, a[5])
}

func (k *Kernel) sysPwritev(t *Task, a *args) (uint64, unix.Errno) {
	return k.pwritev(t, a, true, 0)
}

func (k *Kernel) sysPwritev2(t *Task, a *args) (uint64, unix.Errno) {
	return k.pwritev(t, a, false, a[5])
}

func (k *Kernel) sysWritev(t *Task, a *args) (uint64, unix.Errno) {
	f, iov, e := k.fileIovecs(t, a)
	if e != 0 {
		return 0, e
	}
	return k.mayBlock(t, f, vfs.PollOut)(k.epipe(t, f)(k.writev(t, iov, f.Write)))
}

// writev gathers the buffers of iov and hands them to write at once.
func (k *Kernel) writev(t *Task, iov [][2]uint64, write func([]byte) (int, unix.Errno)) (uint64, unix.Errno) {
	// Gather first, so one writev is one write on the host (stdout lines
	// stay whole) and a bad buffer fails before anything is written.
	var data []byte
	for _, v := range iov {
		if v[1] == 0 {
			continue
		}
		room := maxIO*16 - uint64(len(data))
		if room == 0 {
			break
		}
		// Past the cap the write is short, as Linux may make it, but
		// never empty.
		buf := make([]byte, min(v[1], room))
		if e := k.copyIn(t, v[0], buf); e != 0 {
			if len(data) > 0 {
				break
			}
			return 0, e
		}
		data = append(data, buf...)
	}
	if len(data) == 0 {
		_, e := write(nil)
		return 0, e
	}
	n, e := write(data)
	if e != 0 {
		return 0, e
	}
	return uint64(n), 0
}

func (k *Kernel) sysOpen(t *Task, a *args) (uint64, unix.Errno) {
	return k.openat(t, uint64(atFDCWD&0xffffffff), a[0], a[1], a[2])
}

func (k *Kernel) sysOpenat(t *Task, a *args) (uint64, unix.Errno) {
	return k.openat(t, a[0], a[1], a[2], a[3])
}

func (k *Kernel) openat(t *Task, dirfd, pathVA, flags, mode uint64) (uint64, unix.Errno) {
	p, e := k.path(t, pathVA)
	if e != 0 {
		return 0, e
	}
	dir, e := k.dirOf(t, dirfd, p)
	if e != 0 {
		return 0, e
	}
	f, e := k.fs.OpenMode(dir, p, int(int32(flags)), uint32(mode)&0o7777&^t.proc.umask)
	if e != 0 {
		return 0, e
	}
	fd, e := t.proc.fds.Install(f, flags&unix.O_CLOEXEC != 0)
	if e != 0 {
		f.Close()
		return 0, e
	}
	return uint64(fd), 0
}

func (k *Kernel) sysClose(t *Task, a *args) (uint64, unix.Errno) {
	return 0, t.proc.fds.Close(int(int32(a[0])))
}

// sysCloseRange is close_range(2). CLOSE_RANGE_UNSHARE first gives the
// caller a table of its own when CLONE_FILES shares it.
func (k *Kernel) sysCloseRange(t *Task, a *args) (uint64, unix.Errno) {
	first, last, flags := uint64(uint32(a[0])), uint64(uint32(a[1])), uint32(a[2])
	if flags&^(unix.CLOSE_RANGE_UNSHARE|unix.CLOSE_RANGE_CLOEXEC) != 0 || first > last {
		return 0, unix.EINVAL
	}
	if flags&unix.CLOSE_RANGE_UNSHARE != 0 {
		unshareFiles(t.proc)
	}
	return 0, t.proc.fds.CloseRange(first, last, flags)
}

// unshareFiles gives p a copy of a descriptor table it shares with other
// processes (CLONE_FILES), as execve and CLOSE_RANGE_UNSHARE do.
func unshareFiles(p *Process) {
	if *p.fdUsers > 1 {
		*p.fdUsers--
		p.fds, p.fdUsers = p.fds.Clone(), newCount()
	}
}

func (k *Kernel) putStat(t *Task, va uint64, st vfs.Stat, e unix.Errno) (uint64, unix.Errno) {
	if e != 0 {
		return 0, e
	}
	return 0, k.copyOut(t, va, st.Marshal())
}

func (k *Kernel) sysStat(t *Task, a *args) (uint64, unix.Errno) {
	return k.fstatat(t, uint64(atFDCWD&0xffffffff), a[0], a[1], 0)
}

func (k *Kernel) sysLstat(t *Task, a *args) (uint64, unix.Errno) {
	return k.fstatat(t, uint64(atFDCWD&0xffffffff), a[0], a[1], atSymlinkNofollow)
}

func (k *Kernel) sysFstat(t *Task, a *args) (uint64, unix.Errno) {
	f, e := k.file(t, a[0])
	if e != 0 {
		return 0, e
	}
	st, e := f.Stat()
	return k.putStat(t, a[1], st, e)
}

func (k *Kernel) sysNewfstatat(t *Task, a *args) (uint64, unix.Errno) {
	return k.fstatat(t, a[0], a[1], a[2], a[3])
}

func (k *Kernel) fstatat(t *Task, dirfd, pathVA, statVA, flags uint64) (uint64, unix.Errno) {
	if flags&^(atSymlinkNofollow|atEmptyPath|atNoAutomount) != 0 {
		return 0, unix.EINVAL
	}
	st, e := k.statAt(t, dirfd, pathVA, flags)
	return k.putStat(t, statVA, st, e)
}

// statAt is the lookup of fstatat and statx: path relative to dirfd, the
// descriptor itself with AT_EMPTY_PATH and an empty path, the final
// symbolic link not followed with AT_SYMLINK_NOFOLLOW.
func (k *Kernel) statAt(t *Task, dirfd, pathVA, flags uint64) (vfs.Stat, unix.Errno) {
	p, e := k.path(t, pathVA)
	if e != 0 {
		return vfs.Stat{}, e
	}
	if p == "" {
		if flags&atEmptyPath == 0 {
			return vfs.Stat{}, unix.ENOENT
		}
		if int32(dirfd) == atFDCWD {
			return k.fs.Stat(t.proc.cwd, ".")
		}
		f, e := k.file(t, dirfd)
		if e != 0 {
			return vfs.Stat{}, e
		}
		return f.Stat()
	}
	dir, e := k.dirOf(t, dirfd, p)
	if e != 0 {
		return vfs.Stat{}, e
	}
	if flags&atSymlinkNofollow != 0 {
		return k.fs.Lstat(dir, p)
	}
	return k.fs.Stat(dir, p)
}

func (k *Kernel) sysLseek(t *Task, a *args) (uint64, unix.Errno) {
	f, e := k.file(t, a[0])
	if e != 0 {
		return 0, e
	}
	off, e := f.Lseek(int64(a[1]), int(int32(a[2])))
	return uint64(off), e
}

func (k *Kernel) sysAccess(t *Task, a *args) (uint64, unix.Errno) {
	return k.faccessat(t, uint64(atFDCWD&0xffffffff), a[0], a[1], 0)
}

func (k *Kernel) sysFaccessat(t *Task, a *args) (uint64, unix.Errno) {
	return k.faccessat(t, a[0], a[1], a[2], 0)
}

func (k *Kernel) sysFaccessat2(t *Task, a *args) (uint64, unix.Errno) {
	return k.faccessat(t, a[0], a[1], a[2], a[3])
}

func (k *Kernel) faccessat(t *Task, dirfd, pathVA, mode, flags uint64) (uint64, unix.Errno) {
	if mode&^7 != 0 || flags&^(atEAccess|atSymlinkNofollow|atEmptyPath) != 0 {
		return 0, unix.EINVAL
	}
	p, e := k.path(t, pathVA)
	if e != 0 {
		return 0, e
	}
	if p == "" && flags&atEmptyPath == 0 {
		return 0, unix.ENOENT
	}
	dir, e := k.dirOf(t, dirfd, p)
	if e != 0 {
		return 0, e
	}
	if p == "" {
		p = "."
	}
	return 0, k.fs.Access(dir, p, uint32(mode))
}

func (k *Kernel) sysGetdents64(t *Task, a *args) (uint64, unix.Errno) {
	f, e := k.file(t, a[0])
	if e != 0 {
		return 0, e
	}
	size := int(min(a[2], maxIO))
	if int64(a[2]) < 0 {
		size = maxIO
	}
	buf, e := f.Getdents64(size)
	if e != 0 {
		return 0, e
	}
	return uint64(len(buf)), k.copyOut(t, a[1], buf)
}

func (k *Kernel) sysGetcwd(t *Task, a *args) (uint64, unix.Errno) {
	b, e := vfs.Getcwd(t.proc.cwd, a[1])
	if e != 0 {
		return 0, e
	}
	return uint64(len(b)), k.copyOut(t, a[0], b)
}

func (k *Kernel) sysChdir(t *Task, a *args) (uint64, unix.Errno) {
	p, e := k.path(t, a[0])
	if e != 0 {
		return 0, e
	}
	cwd, e := k.fs.Chdir(t.proc.cwd, p)
	if e != 0 {
		return 0, e
	}
	t.proc.cwd = cwd
	return 0, 0
}

// sysFchdir is fchdir(2): the directory open at fd, searchable, becomes
// the working directory.
func (k *Kernel) sysFchdir(t *Task, a *args) (uint64, unix.Errno) {
	f, e := k.file(t, a[0])
	if e != 0 {
		return 0, e
	}
	dir, e := vfs.DirPath(f)
	if e != 0 {
		return 0, e
	}
	cwd, e := k.fs.Chdir(dir, ".")
	if e != 0 {
		return 0, e
	}
	t.proc.cwd = cwd
	return 0, 0
}

func (k *Kernel) sysReadlink(t *Task, a *args) (uint64, unix.Errno) {
	return k.readlinkat(t, uint64(atFDCWD&0xffffffff), a[0], a[1], a[2])
}

func (k *Kernel) sysReadlinkat(t *Task, a *args) (uint64, unix.Errno) {
	return k.readlinkat(t, a[0], a[1], a[2], a[3])
}

func (k *Kernel) readlinkat(t *Task, dirfd, pathVA, buf, size uint64) (uint64, unix.Errno) {
	if int64(size) <= 0 {
		return 0, unix.EINVAL
	}
	p, e := k.path(t, pathVA)
	if e != 0 {
		return 0, e
	}
	dir, e := k.dirOf(t, dirfd, p)
	if e != 0 {
		return 0, e
	}
	target, e := k.fs.Readlink(dir, p) // /proc/PID/exe is the process's exe
	if e != 0 {
		return 0, e
	}
	b := []byte(target)
	if uint64(len(b)) > size {
		b = b[:size]
	}
	return uint64(len(b)), k.copyOut(t, buf, b)
}

func (k *Kernel) sysDup(t *Task, a *args) (uint64, unix.Errno) {
	fd, e := t.proc.fds.Dup(int(int32(a[0])))
	return uint64(fd), e
}

func (k *Kernel) sysDup2(t *Task, a *args) (uint64, unix.Errno) {
	fd, e := t.proc.fds.Dup2(int(int32(a[0])), int(int32(a[1])))
	return uint64(fd), e
}

func (k *Kernel) sysDup3(t *Task, a *args) (uint64, unix.Errno) {
	fd, e := t.proc.fds.Dup3(int(int32(a[0])), int(int32(a[1])), int(int32(a[2])))
	return uint64(fd), e
}

func (k *Kernel) sysFcntl(t *Task, a *args) (uint64, unix.Errno) {
	fd := int(int32(a[0]))
	fds := t.proc.fds
	switch a[1] {
	case unix.F_DUPFD, unix.F_DUPFD_CLOEXEC:
		if int32(a[2]) < 0 {
			return 0, unix.EINVAL
		}
		n, e := fds.DupFrom(fd, int(int32(a[2])), a[1] == unix.F_DUPFD_CLOEXEC)
		return uint64(n), e
	case unix.F_GETFD:
		fl, e := fds.FDFlags(fd)
		return uint64(fl), e
	case unix.F_SETFD:
		return 0, fds.SetFDFlags(fd, int(a[2]))
	case unix.F_GETFL:
		f, e := fds.Get(fd)
		if e != 0 {
			return 0, e
		}
		return uint64(f.Flags()), 0
	case unix.F_SETFL:
		f, e := fds.Get(fd)
		if e != 0 {
			return 0, e
		}
		if f.Flags()&unix.O_PATH != 0 {
			return 0, unix.EBADF
		}
		k.setAsync(t, fd, f, int(a[2]))
		f.SetFlags(int(a[2]))
		return 0, 0
	case unix.F_ADD_SEALS:
		f, e := fds.Get(fd)
		if e != 0 {
			return 0, e
		}
		return 0, vfs.AddSeals(f, int(int32(a[2])))
	case unix.F_GET_SEALS:
		f, e := fds.Get(fd)
		if e != 0 {
			return 0, e
		}
		seals, e := vfs.Seals(f)
		return uint64(seals), e
	}
	if ret, e, ok := k.fcntlOwner(t, fd, a[1], a[2]); ok {
		return ret, e
	}
	if _, e := fds.Get(fd); e != 0 {
		return 0, e
	}
	if name, ok := fcntlUnimplemented[a[1]]; ok {
		k.noteOnce("fcntl-"+name, "fcntl "+name+" is not implemented: returning EINVAL")
	}
	return 0, unix.EINVAL
}

// fcntlUnimplemented are the fcntl commands Linux has and emuckpt does
// not: they fail with EINVAL, as unknown commands do on Linux, and -v
// names them.
var fcntlUnimplemented = map[uint64]string{
	unix.F_GETLK: "F_GETLK", unix.F_SETLK: "F_SETLK", unix.F_SETLKW: "F_SETLKW",
	unix.F_SETOWN: "F_SETOWN", unix.F_GETOWN: "F_GETOWN", unix.F_SETSIG: "F_SETSIG", unix.F_GETSIG: "F_GETSIG",
	unix.F_SETOWN_EX: "F_SETOWN_EX", unix.F_GETOWN_EX: "F_GETOWN_EX", 17: "F_GETOWNER_UIDS",
	unix.F_OFD_GETLK: "F_OFD_GETLK", unix.F_OFD_SETLK: "F_OFD_SETLK", unix.F_OFD_SETLKW: "F_OFD_SETLKW",
	unix.F_SETLEASE: "F_SETLEASE", unix.F_GETLEASE: "F_GETLEASE", unix.F_NOTIFY: "F_NOTIFY",
	1027: "F_DUPFD_QUERY", 1029: "F_CANCELLK",
	unix.F_SETPIPE_SZ: "F_SETPIPE_SZ", unix.F_GETPIPE_SZ: "F_GETPIPE_SZ",
	unix.F_ADD_SEALS: "F_ADD_SEALS", unix.F_GET_SEALS: "F_GET_SEALS",
	1035: "F_GET_RW_HINT", 1036: "F_SET_RW_HINT", 1037: "F_GET_FILE_RW_HINT", 1038: "F_SET_FILE_RW_HINT",
}

func (k *Kernel) sysIoctl(t *Task, a *args) (uint64, unix.Errno) {
	fd := int(int32(a[0]))
	f, e := t.proc.fds.Get(fd)
	if e != 0 {
		return 0, e
	}
	switch uint32(a[1]) {
	case fioCLEX:
		return 0, t.proc.fds.SetFDFlags(fd, vfs.FDCloexec)
	case fioNCLEX:
		return 0, t.proc.fds.SetFDFlags(fd, 0)
	case fioNBIO:
		var b [4]byte
		if e := k.copyIn(t, a[2], b[:]); e != 0 {
			return 0, e
		}
		fl := f.Flags() &^ unix.O_NONBLOCK
		if binary.LittleEndian.Uint32(b[:]) != 0 {
			fl |= unix.O_NONBLOCK
		}
		f.SetFlags(fl)
		return 0, 0
	case fioASYNC:
		// As F_SETFL with O_ASYNC on or off (Linux's ioctl_fioasync).
		var b [4]byte
		if e := k.copyIn(t, a[2], b[:]); e != 0 {
			return 0, e
		}
		fl := f.Flags() &^ unix.O_ASYNC
		if binary.LittleEndian.Uint32(b[:]) != 0 {
			fl |= unix.O_ASYNC
		}
		k.setAsync(t, fd, f, fl)
		f.SetFlags(fl)
		return 0, 0
	}
	ret, e := f.Ioctl(uint64(uint32(a[1])), a[2], taskMemory{t})
	if e == unix.ENOTTY && uint32(a[1]) != ioctlTCGETS && uint32(a[1]) != ioctlTIOCGWINSZ {
		// Requests a file does not know are ENOTTY, as on Linux; -v
		// names them, since Linux may know them (the terminal requests
		// every isatty makes are left out).
		k.noteOnce(fmt.Sprintf("ioctl-%#x-%s", uint32(a[1]), f.Describe().Kind),
			fmt.Sprintf("ioctl %#x on a %s is not implemented: returning ENOTTY", uint32(a[1]), f.Describe().Kind))
	}
	return ret, e
}

func (k *Kernel) sysPipe(t *Task, a *args) (uint64, unix.Errno) {
	return k.pipe2(t, a[0], 0)
}

func (k *Kernel) sysPipe2(t *Task, a *args) (uint64, unix.Errno) {
	return k.pipe2(t, a[0], a[1])
}

func (k *Kernel) pipe2(t *Task, va, flags uint64) (uint64, unix.Errno) {
	if flags&^uint64(unix.O_CLOEXEC|unix.O_NONBLOCK|unix.O_DIRECT) != 0 {
		return 0, unix.EINVAL
	}
	r, w := vfs.NewPipe(int(flags))
	cloexec := flags&unix.O_CLOEXEC != 0
	rfd, e := t.proc.fds.Install(r, cloexec)
	if e != 0 {
		r.Close()
		w.Close()
		return 0, e
	}
	wfd, e := t.proc.fds.Install(w, cloexec)
	if e != 0 {
		t.proc.fds.Close(rfd)
		w.Close()
		return 0, e
	}
	var b [8]byte
	binary.LittleEndian.PutUint32(b[:], uint32(rfd))
	binary.LittleEndian.PutUint32(b[4:], uint32(wfd))
	if e := k.copyOut(t, va, b[:]); e != 0 {
		t.proc.fds.Close(rfd)
		t.proc.fds.Close(wfd)
		return 0, e
	}
	return 0, 0
}
