package vfs

import (
	"strings"

	"golang.org/x/sys/unix"
)

// Changes to the file system.
//
// Linux refuses every change to a read-only mount with EROFS: mkdir, rmdir,
// link, symlink, unlink, rename, mknod, chmod, chown, utimes, truncate,
// setxattr and removexattr, and open for writing or creating. It does so at
// a fixed point of each system call (mnt_want_write), after some checks and
// before others, so the errno a program sees depends on that order; each
// method below follows it and says where EROFS falls.
//
// Whether a file system is read-only is decided in one place, mount.
// Today the guest has one mount: the root (--root, or nothing) with the
// synthetic files (/dev, /proc/self/maps, ...) overlaid, read-only as a
// whole. A writable file system plugs in by giving its files another mount
// in mountOf and implementing the operations where change is called.

// mount is a mounted file system as the system calls see it.
type mount struct {
	readOnly bool
}

// rootMount is the guest's "/" and every synthetic file.
var rootMount = &mount{readOnly: true}

// mountOf is the mount a resolved path lies on.
func (fs *FS) mountOf(*resolved) *mount { return rootMount }

// wantWrite is Linux's mnt_want_write: EROFS on a read-only mount.
func (m *mount) wantWrite() unix.Errno {
	if m.readOnly {
		return unix.EROFS
	}
	return 0
}

// change ends a modifying call whose checks have passed: EROFS on a
// read-only mount. No writable file system exists yet; one that does
// implements the operation before calling this, which otherwise gives
// ENOSYS rather than a success that changed nothing.
func (m *mount) change() unix.Errno {
	if e := m.wantWrite(); e != 0 {
		return e
	}
	return unix.ENOSYS
}

// lastType classifies the final component of a path, as Linux's
// filename_parentat does.
type lastType int

const (
	lastNorm   lastType = iota // a name
	lastRoot                   // the path is "/"
	lastDot                    // "."
	lastDotDot                 // ".."
)

// parentPath is a path split into the directory that holds its final
// component, and that component.
type parentPath struct {
	dir      resolved
	last     string
	typ      lastType
	trailing bool // the path ended in "/"
}

// resolveParent looks up the directory part of p (following symbolic
// links): ENOENT, ENOTDIR, ELOOP, ENAMETOOLONG come from here.
func (fs *FS) resolveParent(cwd, p string) (parentPath, unix.Errno) {
	p = cString(p)
	if p == "" {
		return parentPath{}, unix.ENOENT
	}
	if len(p) >= PathMax {
		return parentPath{}, unix.ENAMETOOLONG
	}
	trimmed := strings.TrimRight(p, "/")
	pp := parentPath{trailing: len(trimmed) < len(p)}
	dir := "."
	if i := strings.LastIndexByte(trimmed, '/'); i >= 0 {
		dir, pp.last = trimmed[:i+1], trimmed[i+1:]
	} else {
		pp.last = trimmed
	}
	if trimmed == "" {
		dir = "/"
	}
	r, lerr := fs.resolve(cwd, dir, true)
	if lerr != nil {
		return parentPath{}, lerr.errno
	}
	if !r.isDir {
		return parentPath{}, unix.ENOTDIR
	}
	pp.dir = r
	switch pp.last {
	case "":
		pp.typ = lastRoot
	case ".":
		pp.typ = lastDot
	case "..":
		pp.typ = lastDotDot
	default:
		if len(pp.last) > NameMax {
			return parentPath{}, unix.ENAMETOOLONG
		}
	}
	return pp, 0
}

// create is Linux's filename_create, the first part of every call that
// makes a name (mkdir, mknod, symlink, link's new name): the parent must
// exist, then the name must not (EEXIST, also for "." and ".."), then
// the mount must be writable (EROFS). A path ending in "/" may only make a
// directory: ENOENT otherwise.
func (fs *FS) create(cwd, p string, dir bool) (*mount, unix.Errno) {
	pp, e := fs.resolveParent(cwd, p)
	if e != 0 {
		return nil, e
	}
	if pp.typ != lastNorm {
		return nil, unix.EEXIST
	}
	if _, lerr := fs.resolve(pp.dir.path(), pp.last, false); lerr == nil {
		return nil, unix.EEXIST
	} else if lerr.errno != unix.ENOENT {
		return nil, lerr.errno
	}
	if pp.trailing && !dir {
		return nil, unix.ENOENT
	}
	m := fs.mountOf(&pp.dir)
	return m, m.wantWrite()
}

// Mkdir is mkdir(2) and mkdirat(2).
func (fs *FS) Mkdir(cwd, p string) unix.Errno {
	m, e := fs.create(cwd, p, true)
	if e != 0 {
		return e
	}
	return m.change()
}

// Mknod is mknod(2) and mknodat(2): the file type is checked first (EPERM
// for a directory, EINVAL for no known type), then as create.
func (fs *FS) Mknod(cwd, p string, mode uint32) unix.Errno {
	switch mode & unix.S_IFMT {
	case 0, unix.S_IFREG, unix.S_IFCHR, unix.S_IFBLK, unix.S_IFIFO, unix.S_IFSOCK:
	case unix.S_IFDIR:
		return unix.EPERM
	default:
		return unix.EINVAL
	}
	m, e := fs.create(cwd, p, false)
	if e != 0 {
		return e
	}
	return m.change()
}

// Symlink is symlink(2) and symlinkat(2): an empty target is ENOENT
// before anything else.
func (fs *FS) Symlink(target, cwd, p string) unix.Errno {
	if cString(target) == "" {
		return unix.ENOENT
	}
	m, e := fs.create(cwd, p, false)
	if e != 0 {
		return e
	}
	return m.change()
}

// Link is link(2) and linkat(2): the existing file is looked up first
// (its final symbolic link followed if follow), then the new name as
// create; EXDEV across mounts comes after EROFS, as in Linux.
func (fs *FS) Link(oldCwd, oldPath, newCwd, newPath string, follow bool) unix.Errno {
	old, lerr := fs.resolve(oldCwd, oldPath, follow)
	if lerr != nil {
		return lerr.errno
	}
	m, e := fs.create(newCwd, newPath, false)
	if e != 0 {
		return e
	}
	if fs.mountOf(&old) != m {
		return unix.EXDEV
	}
	if old.isDir {
		return unix.EPERM
	}
	return m.change()
}

// Unlink is unlink(2) and unlinkat(2) without AT_REMOVEDIR: after the
// parent, "." or ".." or "/" is EISDIR, then EROFS, and only then is the
// name looked up (so a missing name on a read-only mount is EROFS).
func (fs *FS) Unlink(cwd, p string) unix.Errno {
	pp, e := fs.resolveParent(cwd, p)
	if e != 0 {
		return e
	}
	if pp.typ != lastNorm {
		return unix.EISDIR
	}
	return fs.mountOf(&pp.dir).change()
}

// Rmdir is rmdir(2) and unlinkat(2) with AT_REMOVEDIR: after the parent,
// ".." is ENOTEMPTY, "." EINVAL and "/" EBUSY, then EROFS before the name
// is looked up.
func (fs *FS) Rmdir(cwd, p string) unix.Errno {
	pp, e := fs.resolveParent(cwd, p)
	if e != 0 {
		return e
	}
	switch pp.typ {
	case lastDotDot:
		return unix.ENOTEMPTY
	case lastDot:
		return unix.EINVAL
	case lastRoot:
		return unix.EBUSY
	}
	return fs.mountOf(&pp.dir).change()
}

// Rename flags (renameat2).
const (
	RenameNoreplace = 1 << 0
	RenameExchange  = 1 << 1
	RenameWhiteout  = 1 << 2
)

// Rename is rename(2), renameat(2) and renameat2(2): bad flags are
// EINVAL, then both parents are looked up, EXDEV across mounts, EBUSY for
// "." or ".." or "/" (EEXIST for the new name with RENAME_NOREPLACE),
// then EROFS before either name is looked up.
func (fs *FS) Rename(oldCwd, oldPath, newCwd, newPath string, flags uint32) unix.Errno {
	if flags&^(RenameNoreplace|RenameExchange|RenameWhiteout) != 0 ||
		flags&RenameExchange != 0 && flags&(RenameNoreplace|RenameWhiteout) != 0 {
		return unix.EINVAL
	}
	from, e := fs.resolveParent(oldCwd, oldPath)
	if e != 0 {
		return e
	}
	to, e := fs.resolveParent(newCwd, newPath)
	if e != 0 {
		return e
	}
	m := fs.mountOf(&from.dir)
	if fs.mountOf(&to.dir) != m {
		return unix.EXDEV
	}
	if from.typ != lastNorm {
		return unix.EBUSY
	}
	if to.typ != lastNorm {
		if flags&RenameNoreplace != 0 {
			return unix.EEXIST
		}
		return unix.EBUSY
	}
	return m.change()
}

// Setattr is the path form of chmod, chown, utimes, setxattr and
// removexattr: the path is looked up (its final symbolic link followed if
// follow), then EROFS.
func (fs *FS) Setattr(cwd, p string, follow bool) unix.Errno {
	r, lerr := fs.resolve(cwd, p, follow)
	if lerr != nil {
		return lerr.errno
	}
	return fs.mountOf(&r).change()
}

// SetattrFile is the descriptor form (fchmod, fchown, futimens,
// fsetxattr, fremovexattr). An O_PATH descriptor is EBADF unless byPath
// (AT_EMPTY_PATH of the *at forms, which act on the path). Pipes and the
// host's standard streams are not on any guest mount and emuckpt cannot
// change them: ENOSYS.
func (fs *FS) SetattrFile(f File, byPath bool) unix.Errno {
	d := f.Describe()
	switch d.Kind {
	case KindPath:
		if !byPath {
			return unix.EBADF
		}
		return fs.Setattr("/", d.Path, false)
	case KindRegular, KindDirectory, KindDevice, KindGenerated:
		r := resolved{comps: splitPath(d.Path)}
		return fs.mountOf(&r).change()
	}
	return unix.ENOSYS
}

// Truncate is truncate(2): after the lookup, a directory is EISDIR and
// anything but a regular file EINVAL, then EROFS, then a negative length
// EINVAL.
func (fs *FS) Truncate(cwd, p string, length int64) unix.Errno {
	r, lerr := fs.resolve(cwd, p, true)
	if lerr != nil {
		return lerr.errno
	}
	if r.isDir {
		return unix.EISDIR
	}
	st, e := fs.statResolved(&r)
	if e != 0 {
		return e
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return unix.EINVAL
	}
	m := fs.mountOf(&r)
	if e := m.wantWrite(); e != 0 {
		return e
	}
	if length < 0 {
		return unix.EINVAL
	}
	return m.change()
}
