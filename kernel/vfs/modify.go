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
// Whether a file system is read-only is decided in one place, mount: the
// root (--root, or nothing) with the synthetic files (/dev,
// /proc/self/maps, ...) overlaid is read-only as a whole; each tmpfs
// (tmpfs.go) is a writable mount. Each method below does Linux's checks up
// to mnt_want_write on whatever mount the path lies on, then, on a tmpfs,
// hands the change to its implementation in tmpfs_ops.go or
// tmpfs_attr.go.

// mount is a mounted file system as the system calls see it.
type mount struct {
	readOnly bool
	tmp      *tmpMount // the tmpfs this is, nil for the root
}

// rootMount is the guest's "/" and every synthetic file.
var rootMount = &mount{readOnly: true}

// mountOf is the mount a resolved path lies on: a tmpfs for a tmpfs inode,
// else the root.
func (fs *FS) mountOf(r *resolved) *mount {
	if r.synth != nil && r.synth.ti != nil {
		return r.synth.ti.mnt.mount()
	}
	return rootMount
}

// wantWrite is Linux's mnt_want_write: EROFS on a read-only mount.
func (m *mount) wantWrite() unix.Errno {
	if m.readOnly {
		return unix.EROFS
	}
	return 0
}

// change ends a modifying call whose checks have passed and that the
// mount has no implementation of: EROFS on a read-only mount, else
// ENOSYS (for instance mknod of a FIFO or a device, or an extended
// attribute, on a tmpfs) rather than a success that changed nothing.
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
func (fs *FS) create(cwd, p string, dir bool) (*mount, parentPath, unix.Errno) {
	pp, e := fs.resolveParent(cwd, p)
	if e != 0 {
		return nil, pp, e
	}
	if pp.typ != lastNorm {
		return nil, pp, unix.EEXIST
	}
	if _, lerr := fs.resolve(pp.dir.path(), pp.last, false); lerr == nil {
		return nil, pp, unix.EEXIST
	} else if lerr.errno != unix.ENOENT {
		return nil, pp, lerr.errno
	}
	if pp.trailing && !dir {
		return nil, pp, unix.ENOENT
	}
	m := fs.mountOf(&pp.dir)
	return m, pp, m.wantWrite()
}

// Mkdir is mkdir(2) and mkdirat(2); mode has had the umask applied.
func (fs *FS) Mkdir(cwd, p string, mode uint32) unix.Errno {
	m, pp, e := fs.create(cwd, p, true)
	if e != 0 {
		return e
	}
	if m.tmp != nil {
		return fs.tmpMkdir(pp.dir.synth, pp.last, mode)
	}
	return m.change()
}

// Mknod is mknod(2) and mknodat(2): the file type is checked first (EPERM
// for a directory, EINVAL for no known type), then as create. mode has had
// the umask applied. On a tmpfs only regular files are made; FIFOs,
// sockets and devices are ENOSYS.
func (fs *FS) Mknod(cwd, p string, mode uint32) unix.Errno {
	switch mode & unix.S_IFMT {
	case 0, unix.S_IFREG, unix.S_IFCHR, unix.S_IFBLK, unix.S_IFIFO, unix.S_IFSOCK:
	case unix.S_IFDIR:
		return unix.EPERM
	default:
		return unix.EINVAL
	}
	m, pp, e := fs.create(cwd, p, false)
	if e != 0 {
		return e
	}
	if t := mode & unix.S_IFMT; m.tmp != nil && (t == 0 || t == unix.S_IFREG) {
		return fs.tmpMknodRegular(pp.dir.synth, pp.last, mode)
	}
	return m.change()
}

// Symlink is symlink(2) and symlinkat(2): an empty target is ENOENT and
// one of PathMax bytes or more ENAMETOOLONG before anything else.
func (fs *FS) Symlink(target, cwd, p string) unix.Errno {
	target = cString(target)
	if target == "" {
		return unix.ENOENT
	}
	if len(target) >= PathMax {
		return unix.ENAMETOOLONG
	}
	m, pp, e := fs.create(cwd, p, false)
	if e != 0 {
		return e
	}
	if m.tmp != nil {
		return fs.tmpSymlink(pp.dir.synth, pp.last, target)
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
	m, pp, e := fs.create(newCwd, newPath, false)
	if e != 0 {
		return e
	}
	if fs.mountOf(&old) != m {
		return unix.EXDEV
	}
	if old.isDir {
		return unix.EPERM
	}
	if m.tmp != nil {
		fs.mu.RLock()
		ti := old.synth.ti
		fs.mu.RUnlock()
		return fs.tmpLink(ti, old.synth, pp.dir.synth, pp.last)
	}
	return m.change()
}

// LinkFile is linkat(fd, "", ..., AT_EMPTY_PATH): a name for an open file,
// such as an O_TMPFILE file, which may have no name to look up. Other
// files are linked by their path.
func (fs *FS) LinkFile(f File, newCwd, newPath string) unix.Errno {
	tf, ok := f.(*tmpFile)
	if !ok {
		return fs.Link("/", f.Describe().Path, newCwd, newPath, false)
	}
	tf.mu.Lock()
	ti, errno := tf.inode()
	tf.mu.Unlock()
	if errno != 0 {
		return errno
	}
	m, pp, e := fs.create(newCwd, newPath, false)
	if e != 0 {
		return e
	}
	if ti.mnt.mount() != m {
		return unix.EXDEV
	}
	return fs.tmpLink(ti, &node{kind: nodeRegular, ti: ti}, pp.dir.synth, pp.last)
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
	return fs.remove(&pp, false)
}

// remove is the end of unlink and rmdir: EROFS, then the tmpfs removes
// the name.
func (fs *FS) remove(pp *parentPath, rmdir bool) unix.Errno {
	m := fs.mountOf(&pp.dir)
	if m.tmp != nil {
		return fs.tmpUnlink(pp.dir.synth, pp.last, pp.trailing, rmdir)
	}
	return m.change()
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
	return fs.remove(&pp, true)
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
	if m.tmp != nil {
		return fs.tmpRename(&from, &to, flags)
	}
	return m.change()
}

// AttrPath is the path form of chmod, chown, utimes, setxattr and
// removexattr: the path is looked up (its final symbolic link followed if
// follow), then EROFS; on a tmpfs the inode whose attributes change.
func (fs *FS) AttrPath(cwd, p string, follow bool) (Attr, unix.Errno) {
	r, lerr := fs.resolve(cwd, p, follow)
	if lerr != nil {
		return Attr{}, lerr.errno
	}
	return fs.attrResolved(&r)
}

func (fs *FS) attrResolved(r *resolved) (Attr, unix.Errno) {
	m := fs.mountOf(r)
	if m.tmp == nil {
		return Attr{}, m.change()
	}
	fs.mu.RLock()
	defer fs.mu.RUnlock()
	return Attr{fs: fs, ti: r.synth.ti}, 0
}

// AttrFile is the descriptor form (fchmod, fchown, futimens, fsetxattr,
// fremovexattr). An O_PATH descriptor is EBADF unless byPath
// (AT_EMPTY_PATH of the *at forms, which act on the path). Pipes and the
// host's standard streams are not on any guest mount and emuckpt cannot
// change them: ENOSYS.
func (fs *FS) AttrFile(f File, byPath bool) (Attr, unix.Errno) {
	switch f := f.(type) {
	case *tmpFile:
		// Open, perhaps without a name (unlinked, O_TMPFILE, memfd).
		f.mu.Lock()
		defer f.mu.Unlock()
		ti, errno := f.inode()
		return Attr{fs: f.fs, ti: ti}, errno
	case *dirFile:
		if f.synth != nil && f.synth.ti != nil {
			return fs.attrResolved(&resolved{synth: f.synth})
		}
	case *pathFile:
		if !byPath {
			return Attr{}, unix.EBADF
		}
		if f.synth != nil && f.synth.ti != nil {
			return fs.attrResolved(&resolved{synth: f.synth})
		}
	}
	d := f.Describe()
	switch d.Kind {
	case KindPath:
		if !byPath {
			return Attr{}, unix.EBADF
		}
		return fs.AttrPath("/", d.Path, false)
	case KindRegular, KindDirectory, KindDevice, KindGenerated:
		r := resolved{comps: splitPath(d.Path)}
		return fs.attrResolved(&r)
	}
	return Attr{}, unix.ENOSYS
}

// Setattr is AttrPath for a change emuckpt has no implementation of on a
// writable file system (setxattr, removexattr): EROFS on the root, ENOSYS
// on a tmpfs.
func (fs *FS) Setattr(cwd, p string, follow bool) unix.Errno {
	if _, e := fs.AttrPath(cwd, p, follow); e != 0 {
		return e
	}
	return unix.ENOSYS
}

// SetattrFile is Setattr of a descriptor (fsetxattr, fremovexattr).
func (fs *FS) SetattrFile(f File, byPath bool) unix.Errno {
	if _, e := fs.AttrFile(f, byPath); e != 0 {
		return e
	}
	return unix.ENOSYS
}

// Truncate is truncate(2): after the lookup, a directory is EISDIR and
// anything but a regular file EINVAL, then EROFS, then a negative length
// EINVAL; then a tmpfs file changes size.
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
	if m.tmp != nil {
		return fs.tmpTruncate(r.synth, length)
	}
	return m.change()
}
