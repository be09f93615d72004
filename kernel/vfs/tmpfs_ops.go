package vfs

import (
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// The namespace operations of tmpfs: create, mkdir, mknod, unlink,
// rmdir, symlink, link, rename and truncate. The checks up to EROFS (the
// parent's lookup, EEXIST, EXDEV, ...) and the read-only decision are
// modify.go's, for every mount; the functions here are what a tmpfs does
// after them, with the rest of Linux's checks in Linux's order.

// maxFileSize is the largest tmpfs file size (MAX_LFS_FILESIZE).
const maxFileSize = 1<<63 - 1

// parent is the directory a path's last component is (or would be) an
// entry of.
type parent struct {
	r        resolved
	name     string // "" for "/", or "." and ".." as given
	trailing bool   // the path ends in "/"
}

// tmpDir is the tmpfs directory node of the parent, nil if the parent is
// not on a tmpfs.
func (p *parent) tmpDir() *node {
	if p.r.synth.isTmpfsDir() {
		return p.r.synth
	}
	return nil
}

// lookupParent resolves all but the last component of path.
func (fs *FS) lookupParent(cwd, path string) (parent, unix.Errno) {
	p := cString(path)
	if p == "" {
		return parent{}, unix.ENOENT
	}
	if len(p) >= PathMax {
		return parent{}, unix.ENAMETOOLONG
	}
	trimmed := strings.TrimRight(p, "/")
	if trimmed == "" {
		r, lerr := fs.resolve(cwd, "/", true)
		if lerr != nil {
			return parent{}, lerr.errno
		}
		return parent{r: r, trailing: true}, 0
	}
	dir, name := ".", trimmed
	if i := strings.LastIndexByte(trimmed, '/'); i >= 0 {
		dir, name = trimmed[:i+1], trimmed[i+1:]
	}
	if len(name) > NameMax {
		return parent{}, unix.ENAMETOOLONG
	}
	r, lerr := fs.resolve(cwd, dir, true)
	if lerr != nil {
		return parent{}, lerr.errno
	}
	if !r.isDir {
		return parent{}, unix.ENOTDIR
	}
	return parent{r: r, name: name, trailing: len(trimmed) < len(p)}, 0
}

// special reports whether the last component is "", "." or "..".
func (p *parent) special() bool { return p.name == "" || p.name == "." || p.name == ".." }

// mayAdd checks that name can be added to the tmpfs directory dir: it is
// not there yet (EEXIST first, as Linux's lookup finds it), and the caller
// may write and search dir. The caller holds fs.mu.
func mayAdd(dir *node, name string) unix.Errno {
	if dir.children[name] != nil {
		return unix.EEXIST
	}
	return mayCreate(dir)
}

// mayCreate checks write and search permission on a tmpfs directory. The
// caller holds fs.mu.
func mayCreate(dir *node) unix.Errno {
	st := dir.tmpStat()
	return permits(&st, unix.W_OK|unix.X_OK)
}

// mayDelete is mayCreate plus the sticky bit: in a sticky directory such
// as /tmp only the owner of the entry or of the directory (or root) may
// remove or rename it (EPERM).
func mayDelete(dir, victim *node) unix.Errno {
	if errno := mayCreate(dir); errno != 0 {
		return errno
	}
	uid := uint32(hostUID())
	if dir.ti.mode&unix.S_ISVTX != 0 && uid != 0 && victim.ti.uid != uid && dir.ti.uid != uid {
		return unix.EPERM
	}
	return 0
}

// touchDir sets a directory's mtime and ctime after a change of entries.
func (fs *FS) touchDir(dir *node) {
	now := fs.now()
	dir.ti.mtime, dir.ti.ctime = now, now
}

// link puts n in dir under name and counts the link.
func (fs *FS) link(dir *node, name string, n *node) {
	n.name, n.parent = name, dir
	n.ino = n.ti.ino
	if n.kind == nodeDir && n.children == nil {
		n.children = map[string]*node{}
	}
	dir.children[name] = n
	n.ti.nlink++
	fs.touchDir(dir)
}

// unlinkNode takes n out of its directory and releases its inode if that
// was its last name and nothing holds it open.
func (fs *FS) unlinkNode(n *node) {
	dir := n.parent
	delete(dir.children, n.name)
	n.ti.nlink--
	n.ti.ctime = fs.now()
	fs.touchDir(dir)
	if n.kind == nodeDir {
		n.ti.nlink = 0
		delete(n.ti.mnt.inodes, n.ti.ino)
		return
	}
	n.ti.release()
}

// OpenMode is open(2) with the mode for a file O_CREAT or O_TMPFILE
// makes; the caller has applied the umask.
func (fs *FS) OpenMode(cwd, path string, flags int, mode uint32) (File, unix.Errno) {
	if flags&unix.O_PATH == 0 && flags&oTmpfileBit != 0 {
		return fs.openTmpfileMode(cwd, path, flags, mode)
	}
	if flags&unix.O_CREAT != 0 && flags&unix.O_PATH == 0 && flags&unix.O_DIRECTORY == 0 {
		f, errno, done := fs.createTmp(cwd, path, flags, mode)
		if done {
			return f, errno
		}
	}
	return fs.open(cwd, path, flags, nil)
}

// createTmp is O_CREAT when the parent is a tmpfs directory and the name
// does not exist yet (done is then true); otherwise open goes on as usual.
func (fs *FS) createTmp(cwd, path string, flags int, mode uint32) (File, unix.Errno, bool) {
	return fs.createTmpDepth(cwd, path, flags, mode, 0)
}

// createTmpDepth is createTmp after following depth symbolic links: O_CREAT
// through a dangling link creates its target, as on Linux (not with
// O_EXCL or O_NOFOLLOW, which fail on the link itself).
func (fs *FS) createTmpDepth(cwd, path string, flags int, mode uint32, depth int) (File, unix.Errno, bool) {
	p, errno := fs.lookupParent(cwd, path)
	if errno != 0 || p.special() || p.trailing {
		return nil, 0, false
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	dir := p.tmpDir()
	if dir == nil {
		return nil, 0, false
	}
	if c := dir.children[p.name]; c != nil {
		if c.kind != nodeSymlink || flags&(unix.O_EXCL|unix.O_NOFOLLOW) != 0 {
			return nil, 0, false
		}
		if depth >= MaxSymlinks {
			return nil, unix.ELOOP, true
		}
		target, dirPath := c.target, dir.path()
		fs.mu.Unlock()
		defer fs.mu.Lock()
		return fs.createTmpDepth(dirPath, target, flags, mode, depth+1)
	}
	if errno := mayCreate(dir); errno != 0 {
		return nil, errno, true
	}
	ti := dir.ti.mnt.newInode(unix.S_IFREG|mode&0o7777, fs.now())
	n := &node{kind: nodeRegular, ti: ti}
	fs.link(dir, p.name, n)
	return fs.openTmpInode(ti, n.path(), flags), 0, true
}

// openTmpfileMode is O_TMPFILE: an unnamed regular file in a tmpfs
// directory, which linkat(AT_EMPTY_PATH) can give a name unless it was
// opened with O_EXCL.
func (fs *FS) openTmpfileMode(cwd, path string, flags int, mode uint32) (File, unix.Errno) {
	if flags&(unix.O_TMPFILE|unix.O_CREAT) != unix.O_TMPFILE || !writable(flags) {
		return nil, unix.EINVAL
	}
	r, lerr := fs.resolve(cwd, path, true)
	if lerr != nil {
		return nil, lerr.errno
	}
	if !r.isDir {
		return nil, unix.ENOTDIR
	}
	m := fs.mountOf(&r)
	if m.tmp == nil {
		return nil, m.change()
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	dir := r.synth
	if errno := mayCreate(dir); errno != 0 {
		return nil, errno
	}
	ti := dir.ti.mnt.newInode(unix.S_IFREG|mode&0o7777, fs.now())
	ti.unnamed = true
	ti.noLink = flags&unix.O_EXCL != 0
	f := fs.openTmpInode(ti, dir.path()+"/#"+strconv.FormatUint(ti.ino, 10)+" (deleted)", flags&^unix.O_DIRECTORY&^oTmpfileBit)
	return f, 0
}

// openTmpRegular opens an existing tmpfs regular file, checking its
// permissions and applying O_TRUNC.
func (fs *FS) openTmpRegular(n *node, path string, flags int) (File, unix.Errno) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	st := n.tmpStat()
	var want uint32
	if readable(flags) {
		want |= unix.R_OK
	}
	if writable(flags) || flags&unix.O_TRUNC != 0 {
		want |= unix.W_OK
	}
	if errno := permits(&st, want); errno != 0 {
		return nil, errno
	}
	if flags&unix.O_TRUNC != 0 && n.ti.size != 0 {
		fs.truncateInode(n.ti, 0)
	}
	return fs.openTmpInode(n.ti, path, flags), 0
}

// truncateInode sets a file's size. The caller holds fs.mu.
func (fs *FS) truncateInode(ti *tmpInode, size int64) unix.Errno {
	if size < 0 {
		return unix.EINVAL
	}
	if size > maxFileSize-pageSize {
		return unix.EFBIG
	}
	if size < ti.size && ti.seals&SealShrink != 0 || size > ti.size && ti.seals&SealGrow != 0 {
		return unix.EPERM
	}
	ti.truncate(size)
	ti.mtime = fs.now()
	ti.ctime = ti.mtime
	return 0
}

// tmpTruncate is truncate(2) of a tmpfs regular file, once modify.go's
// Truncate has checked the path and the mount: write permission (EACCES),
// then the size and the seals.
func (fs *FS) tmpTruncate(n *node, size int64) unix.Errno {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	st := n.tmpStat()
	if errno := permits(&st, unix.W_OK); errno != 0 {
		return errno
	}
	return fs.truncateInode(n.ti, size)
}

// tmpMkdir makes the directory name in the tmpfs directory dir; mode has
// had the umask applied. modify.go's Mkdir has checked the path.
func (fs *FS) tmpMkdir(dir *node, name string, mode uint32) unix.Errno {
	return fs.tmpCreate(dir, name, nodeDir, unix.S_IFDIR|mode&0o1777)
}

// tmpMknodRegular is mknod(2) of a regular file: an empty one, as
// open(O_CREAT) makes.
func (fs *FS) tmpMknodRegular(dir *node, name string, mode uint32) unix.Errno {
	return fs.tmpCreate(dir, name, nodeRegular, unix.S_IFREG|mode&0o7777)
}

// tmpCreate adds a new, empty inode of the given kind and mode to dir as
// name.
func (fs *FS) tmpCreate(dir *node, name string, kind nodeKind, mode uint32) unix.Errno {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if errno := mayAdd(dir, name); errno != 0 {
		return errno
	}
	ti := dir.ti.mnt.newInode(mode, fs.now())
	fs.link(dir, name, &node{kind: kind, ti: ti})
	return 0
}

// tmpSymlink makes a symbolic link name to target in dir.
func (fs *FS) tmpSymlink(dir *node, name, target string) unix.Errno {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if errno := mayAdd(dir, name); errno != 0 {
		return errno
	}
	ti := dir.ti.mnt.newInode(unix.S_IFLNK|0o777, fs.now())
	ti.size = int64(len(target))
	fs.link(dir, name, &node{kind: nodeSymlink, ti: ti, target: target})
	return 0
}

// isMountPoint reports whether the entry n of the tmpfs directory dir is
// another tmpfs mounted there. The caller holds fs.mu.
func isMountPoint(dir, n *node) bool { return n.ti != nil && n.ti.mnt != dir.ti.mnt }

// tmpUnlink is the end of unlink(2) (rmdir false) and rmdir(2) (rmdir
// true) in a tmpfs directory, after modify.go's checks of the path and
// the mount: the name is looked up, then its type, permissions and
// emptiness checked.
func (fs *FS) tmpUnlink(dir *node, name string, trailing, rmdir bool) unix.Errno {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n := dir.children[name]
	if n == nil {
		return unix.ENOENT
	}
	if rmdir {
		if n.kind != nodeDir {
			return unix.ENOTDIR
		}
	} else if n.kind == nodeDir {
		return unix.EISDIR
	} else if trailing {
		return unix.ENOTDIR
	}
	if errno := mayDelete(dir, n); errno != 0 {
		return errno
	}
	if isMountPoint(dir, n) {
		return unix.EBUSY
	}
	if rmdir && len(n.children) > 0 {
		return unix.ENOTEMPTY
	}
	fs.unlinkNode(n)
	return 0
}

// tmpLink links ti (of the node old, for its kind and target) as name in
// dir, on ti's tmpfs: modify.go's Link and LinkFile have checked the new
// name (EEXIST, EROFS) and the mounts (EXDEV).
func (fs *FS) tmpLink(ti *tmpInode, old *node, dir *node, name string) unix.Errno {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if errno := mayAdd(dir, name); errno != 0 {
		return errno
	}
	if ti.nlink == 0 && (!ti.unnamed || ti.noLink) {
		return unix.ENOENT // unlinked, or O_TMPFILE|O_EXCL
	}
	n := &node{kind: old.kind, ti: ti, target: old.target}
	fs.link(dir, name, n)
	ti.unnamed = false
	ti.ctime = fs.now()
	return 0
}

// tmpRename is renameat2(2) with flags 0, RENAME_NOREPLACE or
// RENAME_EXCHANGE within one tmpfs, once modify.go's Rename has checked
// the flags, both parents, the mount (EXDEV, EROFS) and "." and "..".
func (fs *FS) tmpRename(from, to *parentPath, flags uint32) unix.Errno {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	odir, ndir := from.dir.synth, to.dir.synth
	if flags&RenameWhiteout != 0 {
		return unix.EPERM // needs CAP_MKNOD on Linux; never granted here
	}
	src := odir.children[from.last]
	if src == nil {
		return unix.ENOENT
	}
	dst := ndir.children[to.last]
	if (from.trailing || to.trailing) && src.kind != nodeDir {
		return unix.ENOTDIR
	}
	if flags&RenameExchange != 0 && dst == nil {
		return unix.ENOENT
	}
	if flags&RenameNoreplace != 0 && dst != nil {
		return unix.EEXIST
	}
	// A directory cannot move into itself or below itself.
	for d := ndir; d != nil; d = d.parent {
		if d == src || flags&RenameExchange != 0 && d == dst {
			return unix.EINVAL
		}
	}
	if dst != nil && dst.ti == src.ti {
		return 0 // two names of one inode: Linux does nothing
	}
	if flags&RenameExchange == 0 && dst != nil {
		switch {
		case src.kind == nodeDir && dst.kind != nodeDir:
			return unix.ENOTDIR
		case src.kind != nodeDir && dst.kind == nodeDir:
			return unix.EISDIR
		}
	}
	if errno := mayDelete(odir, src); errno != 0 {
		return errno
	}
	if dst != nil {
		if errno := mayDelete(ndir, dst); errno != 0 {
			return errno
		}
	} else if errno := mayCreate(ndir); errno != 0 {
		return errno
	}
	if isMountPoint(odir, src) || dst != nil && isMountPoint(ndir, dst) {
		return unix.EBUSY
	}
	if flags&RenameExchange == 0 && dst != nil && dst.kind == nodeDir && len(dst.children) > 0 {
		return unix.ENOTEMPTY
	}
	now := fs.now()
	if flags&RenameExchange != 0 {
		oname, nname := src.name, dst.name
		odir.children[oname], ndir.children[nname] = dst, src
		src.name, src.parent = nname, ndir
		dst.name, dst.parent = oname, odir
		src.ti.ctime, dst.ti.ctime = now, now
		fs.touchDir(odir)
		fs.touchDir(ndir)
		return 0
	}
	if dst != nil {
		fs.unlinkNode(dst)
	}
	delete(odir.children, src.name)
	src.name, src.parent = to.last, ndir
	ndir.children[to.last] = src
	src.ti.ctime = now
	fs.touchDir(odir)
	fs.touchDir(ndir)
	return 0
}
