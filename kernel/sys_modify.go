package kernel

import (
	"encoding/binary"

	"github.com/emuckpt/emuckpt/kernel/vfs"
	"golang.org/x/sys/unix"
)

// System calls that change the file system. After Linux's checks (in
// Linux's order, see kernel/vfs/modify.go) they fail with EROFS on the
// read-only root and change a tmpfs (kernel/vfs/tmpfs*.go). New files'
// modes lose the process umask's bits.

const (
	atRemovedir     = 0x200
	atSymlinkFollow = 0x400
	utimeNow        = 1<<30 - 1
	utimeOmit       = 1<<30 - 2
	xattrNameMax    = 255
	xattrSizeMax    = 65536
	xattrCreate     = 1
	xattrReplace    = 2
)

// pathAt reads a path argument and the directory it is relative to.
func (k *Kernel) pathAt(t *Task, dirfd, pathVA uint64) (dir, p string, e unix.Errno) {
	if p, e = k.path(t, pathVA); e != 0 {
		return "", "", e
	}
	dir, e = k.dirOf(t, dirfd, p)
	return dir, p, e
}

var atCWD = uint64(atFDCWD & 0xffffffff)

func (k *Kernel) sysMkdir(t *Task, a *args) (uint64, unix.Errno) {
	return k.mkdirat(t, atCWD, a[0], a[1])
}

func (k *Kernel) sysMkdirat(t *Task, a *args) (uint64, unix.Errno) {
	return k.mkdirat(t, a[0], a[1], a[2])
}

func (k *Kernel) mkdirat(t *Task, dirfd, pathVA, mode uint64) (uint64, unix.Errno) {
	dir, p, e := k.pathAt(t, dirfd, pathVA)
	if e != 0 {
		return 0, e
	}
	return 0, k.fs.Mkdir(dir, p, uint32(mode)&0o1777&^t.proc.umask)
}

func (k *Kernel) sysMknod(t *Task, a *args) (uint64, unix.Errno) {
	return k.mknodat(t, atCWD, a[0], a[1])
}

func (k *Kernel) sysMknodat(t *Task, a *args) (uint64, unix.Errno) {
	return k.mknodat(t, a[0], a[1], a[2])
}

func (k *Kernel) mknodat(t *Task, dirfd, pathVA, mode uint64) (uint64, unix.Errno) {
	dir, p, e := k.pathAt(t, dirfd, pathVA)
	if e != 0 {
		return 0, e
	}
	return 0, k.fs.Mknod(dir, p, uint32(mode)&^t.proc.umask)
}

func (k *Kernel) sysRmdir(t *Task, a *args) (uint64, unix.Errno) {
	dir, p, e := k.pathAt(t, atCWD, a[0])
	if e != 0 {
		return 0, e
	}
	return 0, k.fs.Rmdir(dir, p)
}

func (k *Kernel) sysUnlink(t *Task, a *args) (uint64, unix.Errno) {
	dir, p, e := k.pathAt(t, atCWD, a[0])
	if e != 0 {
		return 0, e
	}
	return 0, k.fs.Unlink(dir, p)
}

func (k *Kernel) sysUnlinkat(t *Task, a *args) (uint64, unix.Errno) {
	if a[2]&^atRemovedir != 0 {
		return 0, unix.EINVAL
	}
	dir, p, e := k.pathAt(t, a[0], a[1])
	if e != 0 {
		return 0, e
	}
	if a[2]&atRemovedir != 0 {
		return 0, k.fs.Rmdir(dir, p)
	}
	return 0, k.fs.Unlink(dir, p)
}

func (k *Kernel) sysSymlink(t *Task, a *args) (uint64, unix.Errno) {
	return k.symlinkat(t, a[0], atCWD, a[1])
}

func (k *Kernel) sysSymlinkat(t *Task, a *args) (uint64, unix.Errno) {
	return k.symlinkat(t, a[0], a[1], a[2])
}

func (k *Kernel) symlinkat(t *Task, targetVA, dirfd, pathVA uint64) (uint64, unix.Errno) {
	target, e := k.path(t, targetVA)
	if e != 0 {
		return 0, e
	}
	dir, p, e := k.pathAt(t, dirfd, pathVA)
	if e != 0 {
		return 0, e
	}
	return 0, k.fs.Symlink(target, dir, p)
}

func (k *Kernel) sysLink(t *Task, a *args) (uint64, unix.Errno) {
	return k.linkat(t, atCWD, a[0], atCWD, a[1], 0)
}

func (k *Kernel) sysLinkat(t *Task, a *args) (uint64, unix.Errno) {
	return k.linkat(t, a[0], a[1], a[2], a[3], a[4])
}

func (k *Kernel) linkat(t *Task, oldfd, oldVA, newfd, newVA, flags uint64) (uint64, unix.Errno) {
	if flags&^(atSymlinkFollow|atEmptyPath) != 0 {
		return 0, unix.EINVAL
	}
	oldDir, oldPath, e := k.pathAt(t, oldfd, oldVA)
	if e != 0 && !(e == unix.ENOTDIR && oldPath == "" && flags&atEmptyPath != 0) {
		return 0, e
	}
	if oldPath == "" && flags&atEmptyPath != 0 {
		// linkat(fd, "", ..., AT_EMPTY_PATH) links the file fd refers to,
		// which may have no name (O_TMPFILE).
		if int32(oldfd) == atFDCWD {
			oldDir, oldPath = t.proc.cwd, "."
		} else {
			f, e := k.file(t, oldfd)
			if e != 0 {
				return 0, e
			}
			newDir, newPath, e := k.pathAt(t, newfd, newVA)
			if e != 0 {
				return 0, e
			}
			return 0, k.fs.LinkFile(f, newDir, newPath)
		}
	}
	newDir, newPath, e := k.pathAt(t, newfd, newVA)
	if e != 0 {
		return 0, e
	}
	return 0, k.fs.Link(oldDir, oldPath, newDir, newPath, flags&atSymlinkFollow != 0)
}

func (k *Kernel) sysRename(t *Task, a *args) (uint64, unix.Errno) {
	return k.renameat2(t, atCWD, a[0], atCWD, a[1], 0)
}

func (k *Kernel) sysRenameat(t *Task, a *args) (uint64, unix.Errno) {
	return k.renameat2(t, a[0], a[1], a[2], a[3], 0)
}

func (k *Kernel) sysRenameat2(t *Task, a *args) (uint64, unix.Errno) {
	return k.renameat2(t, a[0], a[1], a[2], a[3], a[4])
}

func (k *Kernel) renameat2(t *Task, oldfd, oldVA, newfd, newVA, flags uint64) (uint64, unix.Errno) {
	if flags > 0xffffffff {
		return 0, unix.EINVAL
	}
	oldDir, oldPath, e := k.pathAt(t, oldfd, oldVA)
	if e != 0 {
		return 0, e
	}
	newDir, newPath, e := k.pathAt(t, newfd, newVA)
	if e != 0 {
		return 0, e
	}
	return 0, k.fs.Rename(oldDir, oldPath, newDir, newPath, uint32(flags))
}

// attrAt finds the file of chmod, chown, utimes and the xattr calls by
// path: EROFS on the read-only root, the inode on a tmpfs. With
// AT_EMPTY_PATH an empty path names dirfd itself.
func (k *Kernel) attrAt(t *Task, dirfd, pathVA uint64, follow, emptyPath bool) (vfs.Attr, unix.Errno) {
	p, e := k.path(t, pathVA)
	if e != 0 {
		return vfs.Attr{}, e
	}
	if p == "" && emptyPath {
		if int32(dirfd) == atFDCWD {
			return k.fs.AttrPath(t.proc.cwd, ".", true)
		}
		f, e := k.file(t, dirfd)
		if e != 0 {
			return vfs.Attr{}, e
		}
		return k.attrFile(f, true)
	}
	dir, e := k.dirOf(t, dirfd, p)
	if e != 0 {
		return vfs.Attr{}, e
	}
	return k.fs.AttrPath(dir, p, follow)
}

// attrFile is the descriptor form of attrAt.
func (k *Kernel) attrFile(f vfs.File, byPath bool) (vfs.Attr, unix.Errno) {
	at, e := k.fs.AttrFile(f, byPath)
	if e == unix.ENOSYS {
		k.noteOnce("setattr-"+string(f.Describe().Kind),
			"changing the mode, owner, times or extended attributes of a "+string(f.Describe().Kind)+": returning ENOSYS")
	}
	return at, e
}

// attrFd is fchmod, fchown, futimens, fsetxattr and fremovexattr.
func (k *Kernel) attrFd(t *Task, fd uint64) (vfs.Attr, unix.Errno) {
	f, e := k.file(t, fd)
	if e != 0 {
		return vfs.Attr{}, e
	}
	return k.attrFile(f, false)
}

// xattrChange ends the xattr calls once the file is found: emuckpt's
// tmpfs keeps no extended attributes (ENOSYS).
func (k *Kernel) xattrChange(_ vfs.Attr, e unix.Errno) (uint64, unix.Errno) {
	if e != 0 {
		return 0, e
	}
	k.noteOnce("xattr-tmpfs", "extended attributes on a tmpfs: returning ENOSYS")
	return 0, unix.ENOSYS
}

func (k *Kernel) chmod(at vfs.Attr, e unix.Errno, mode uint64) (uint64, unix.Errno) {
	if e != 0 {
		return 0, e
	}
	return 0, at.Chmod(uint32(mode))
}

func (k *Kernel) chown(at vfs.Attr, e unix.Errno, uid, gid uint64) (uint64, unix.Errno) {
	if e != 0 {
		return 0, e
	}
	return 0, at.Chown(uint32(uid), uint32(gid))
}

func (k *Kernel) sysChmod(t *Task, a *args) (uint64, unix.Errno) {
	at, e := k.attrAt(t, atCWD, a[0], true, false)
	return k.chmod(at, e, a[1])
}

func (k *Kernel) sysFchmod(t *Task, a *args) (uint64, unix.Errno) {
	at, e := k.attrFd(t, a[0])
	return k.chmod(at, e, a[1])
}

func (k *Kernel) sysFchmodat(t *Task, a *args) (uint64, unix.Errno) {
	at, e := k.attrAt(t, a[0], a[1], true, false)
	return k.chmod(at, e, a[2])
}

func (k *Kernel) sysFchmodat2(t *Task, a *args) (uint64, unix.Errno) {
	if a[3]&^(atSymlinkNofollow|atEmptyPath) != 0 {
		return 0, unix.EINVAL
	}
	at, e := k.attrAt(t, a[0], a[1], a[3]&atSymlinkNofollow == 0, a[3]&atEmptyPath != 0)
	if e == 0 && a[3]&atSymlinkNofollow != 0 && at.IsSymlink() {
		return 0, unix.EOPNOTSUPP // a symbolic link's mode does not change
	}
	return k.chmod(at, e, a[2])
}

func (k *Kernel) sysChown(t *Task, a *args) (uint64, unix.Errno) {
	at, e := k.attrAt(t, atCWD, a[0], true, false)
	return k.chown(at, e, a[1], a[2])
}

func (k *Kernel) sysLchown(t *Task, a *args) (uint64, unix.Errno) {
	at, e := k.attrAt(t, atCWD, a[0], false, false)
	return k.chown(at, e, a[1], a[2])
}

func (k *Kernel) sysFchown(t *Task, a *args) (uint64, unix.Errno) {
	at, e := k.attrFd(t, a[0])
	return k.chown(at, e, a[1], a[2])
}

func (k *Kernel) sysFchownat(t *Task, a *args) (uint64, unix.Errno) {
	if a[4]&^(atSymlinkNofollow|atEmptyPath) != 0 {
		return 0, unix.EINVAL
	}
	at, e := k.attrAt(t, a[0], a[1], a[4]&atSymlinkNofollow == 0, a[4]&atEmptyPath != 0)
	return k.chown(at, e, a[2], a[3])
}

// utimes is Linux's do_utimes once the times are read and checked (nil
// for both now): a NULL path with a descriptor is that file (flags must
// then be 0).
func (k *Kernel) utimes(t *Task, dirfd, pathVA, flags uint64, times *[2]vfs.Timespec) (uint64, unix.Errno) {
	var at vfs.Attr
	var e unix.Errno
	if pathVA == 0 && int32(dirfd) != atFDCWD {
		if flags != 0 {
			return 0, unix.EINVAL
		}
		at, e = k.attrFd(t, dirfd)
	} else {
		if flags&^(atSymlinkNofollow|atEmptyPath) != 0 {
			return 0, unix.EINVAL
		}
		at, e = k.attrAt(t, dirfd, pathVA, flags&atSymlinkNofollow == 0, flags&atEmptyPath != 0)
	}
	if e != 0 {
		return 0, e
	}
	return 0, at.Utimens(times)
}

func (k *Kernel) sysUtimensat(t *Task, a *args) (uint64, unix.Errno) {
	var times *[2]vfs.Timespec
	if a[2] != 0 {
		var b [32]byte
		if e := k.copyIn(t, a[2], b[:]); e != 0 {
			return 0, e
		}
		le := binary.LittleEndian
		times = &[2]vfs.Timespec{
			{Sec: int64(le.Uint64(b[0:])), Nsec: int64(le.Uint64(b[8:]))},
			{Sec: int64(le.Uint64(b[16:])), Nsec: int64(le.Uint64(b[24:]))},
		}
		n0, n1 := times[0].Nsec, times[1].Nsec
		if n0 == utimeOmit && n1 == utimeOmit {
			return 0, 0 // nothing to do: Linux does not even look the path up
		}
		for _, n := range []int64{n0, n1} {
			if (n < 0 || n >= 1e9) && n != utimeNow && n != utimeOmit {
				return 0, unix.EINVAL
			}
		}
		if n0 == utimeNow && n1 == utimeNow {
			times = nil // as Linux: both now is the NULL times of the permission rules
		}
	}
	return k.utimes(t, a[0], a[1], a[3], times)
}

// timevals reads the two struct timeval of utimes and futimesat (nil
// for a NULL pointer: both now).
func (k *Kernel) timevals(t *Task, va uint64) (*[2]vfs.Timespec, unix.Errno) {
	if va == 0 {
		return nil, 0
	}
	var b [32]byte
	if e := k.copyIn(t, va, b[:]); e != 0 {
		return nil, e
	}
	var times [2]vfs.Timespec
	for i := range times {
		sec, us := int64(binary.LittleEndian.Uint64(b[16*i:])), int64(binary.LittleEndian.Uint64(b[16*i+8:]))
		if us < 0 || us >= 1e6 {
			return nil, unix.EINVAL
		}
		times[i] = vfs.Timespec{Sec: sec, Nsec: us * 1000}
	}
	return &times, 0
}

func (k *Kernel) sysUtimes(t *Task, a *args) (uint64, unix.Errno) {
	times, e := k.timevals(t, a[1])
	if e != 0 {
		return 0, e
	}
	return k.utimes(t, atCWD, a[0], 0, times)
}

func (k *Kernel) sysFutimesat(t *Task, a *args) (uint64, unix.Errno) {
	times, e := k.timevals(t, a[2])
	if e != 0 {
		return 0, e
	}
	return k.utimes(t, a[0], a[1], 0, times)
}

func (k *Kernel) sysUtime(t *Task, a *args) (uint64, unix.Errno) {
	var times *[2]vfs.Timespec
	if a[1] != 0 {
		var b [16]byte // struct utimbuf: actime, modtime in seconds
		if e := k.copyIn(t, a[1], b[:]); e != 0 {
			return 0, e
		}
		times = &[2]vfs.Timespec{
			{Sec: int64(binary.LittleEndian.Uint64(b[0:]))},
			{Sec: int64(binary.LittleEndian.Uint64(b[8:]))},
		}
	}
	return k.utimes(t, atCWD, a[0], 0, times)
}

func (k *Kernel) sysTruncate(t *Task, a *args) (uint64, unix.Errno) {
	dir, p, e := k.pathAt(t, atCWD, a[0])
	if e != 0 {
		return 0, e
	}
	return 0, k.fs.Truncate(dir, p, int64(a[1]))
}

// sysFtruncate follows Linux's do_ftruncate: a negative length is EINVAL,
// a bad or O_PATH descriptor EBADF, and anything but a regular file open
// for writing EINVAL; then a tmpfs file (or memfd) changes size. Nothing
// on the read-only root can be open for writing; a standard stream that
// is a writable host file is left alone (ENOSYS).
func (k *Kernel) sysFtruncate(t *Task, a *args) (uint64, unix.Errno) {
	if int64(a[1]) < 0 {
		return 0, unix.EINVAL
	}
	f, st, e := k.usableFile(t, a[0])
	if e != 0 {
		return 0, e
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || f.Flags()&unix.O_ACCMODE == unix.O_RDONLY {
		return 0, unix.EINVAL
	}
	if tr, ok := f.(truncater); ok {
		return 0, tr.Truncate(int64(a[1]))
	}
	k.noteOnce("ftruncate", "ftruncate of a host file behind a standard stream: returning ENOSYS")
	return 0, unix.ENOSYS
}

// xattrArgs checks setxattr's name, size and flags as Linux does before
// the lookup: bad flags EINVAL, an empty or long name ERANGE, a value over
// 64 KiB E2BIG.
func (k *Kernel) xattrArgs(t *Task, nameVA, size, flags uint64) unix.Errno {
	if flags&^(xattrCreate|xattrReplace) != 0 {
		return unix.EINVAL
	}
	return k.xattrName(t, nameVA, size)
}

func (k *Kernel) xattrName(t *Task, nameVA, size uint64) unix.Errno {
	name, err := t.proc.as.ReadString(nameVA, xattrNameMax+1)
	if err != nil {
		if e := errnoOf(err); e != unix.ENAMETOOLONG {
			return e
		}
		return unix.ERANGE
	}
	if name == "" {
		return unix.ERANGE
	}
	if size > xattrSizeMax {
		return unix.E2BIG
	}
	return 0
}

func (k *Kernel) sysSetxattr(t *Task, a *args) (uint64, unix.Errno) {
	if e := k.xattrArgs(t, a[1], a[3], a[4]); e != 0 {
		return 0, e
	}
	return k.xattrChange(k.attrAt(t, atCWD, a[0], true, false))
}

func (k *Kernel) sysLsetxattr(t *Task, a *args) (uint64, unix.Errno) {
	if e := k.xattrArgs(t, a[1], a[3], a[4]); e != 0 {
		return 0, e
	}
	return k.xattrChange(k.attrAt(t, atCWD, a[0], false, false))
}

func (k *Kernel) sysFsetxattr(t *Task, a *args) (uint64, unix.Errno) {
	if e := k.xattrArgs(t, a[1], a[3], a[4]); e != 0 {
		return 0, e
	}
	return k.xattrChange(k.attrFd(t, a[0]))
}

func (k *Kernel) sysRemovexattr(t *Task, a *args) (uint64, unix.Errno) {
	if e := k.xattrName(t, a[1], 0); e != 0 {
		return 0, e
	}
	return k.xattrChange(k.attrAt(t, atCWD, a[0], true, false))
}

func (k *Kernel) sysLremovexattr(t *Task, a *args) (uint64, unix.Errno) {
	if e := k.xattrName(t, a[1], 0); e != 0 {
		return 0, e
	}
	return k.xattrChange(k.attrAt(t, atCWD, a[0], false, false))
}

func (k *Kernel) sysFremovexattr(t *Task, a *args) (uint64, unix.Errno) {
	if e := k.xattrName(t, a[1], 0); e != 0 {
		return 0, e
	}
	return k.xattrChange(k.attrFd(t, a[0]))
}

func (k *Kernel) sysCreat(t *Task, a *args) (uint64, unix.Errno) {
	return k.openat(t, atCWD, a[0], unix.O_CREAT|unix.O_WRONLY|unix.O_TRUNC, a[1])
}
