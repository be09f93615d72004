package vfs

import (
	"fmt"
	"os"
	"time"

	"github.com/emuckpt/emuckpt/guestmm"
	"golang.org/x/sys/unix"
)

// A tmpfs mount is an in-memory file system in the synthetic tree: its
// directories and symbolic links are nodeDir and nodeSymlink nodes, its
// regular files nodeRegular nodes, and every one of them carries a
// tmpInode (mode, owner, times, link count, contents). Hard links are
// several nodes sharing one tmpInode. A file that is unlinked while open
// lives on in the mount's inode table until its last description closes,
// as on Linux. Nothing of a tmpfs is ever written to the host; its
// contents are guest state, saved in checkpoints (see MountState).
//
// The pages of a file are frames of guest RAM (Options.Frames), as
// Linux's shmem keeps them in the page cache: a MAP_SHARED mapping maps
// the file's own frames (see tmpBacking.Frame), so what the program
// writes through it is what read(2) returns, and the other way round.
//
// Everything here is guarded by FS.mu.

// tmpfsFirstMinor is the minor device number of the first tmpfs mount; the
// others follow in mount order (major 0, as Linux's anonymous devices).
const tmpfsFirstMinor = 40

// pageSize is the unit of tmpfs allocation and of its size limit.
const pageSize = 4096

// tmpMount is one tmpfs mount.
type tmpMount struct {
	frames  *guestmm.Frames // where the pages live
	path    string          // where it is mounted, canonical
	dev     uint64
	limit   int64 // size limit in bytes, a multiple of pageSize
	used    int64 // bytes of allocated pages
	nextIno uint64
	inodes  map[uint64]*tmpInode // every live inode, linked or only open
	root    *node
	all     []*tmpInode // while a mount is built from a MountState
	vfsMnt  mount       // the mount as modify.go sees it: writable
}

// mount is the tmpfs as a writable mount of modify.go.
func (m *tmpMount) mount() *mount {
	return &m.vfsMnt
}

// tmpInode is a tmpfs inode.
type tmpInode struct {
	mnt   *tmpMount
	ino   uint64
	mode  uint32 // S_IFMT and permission bits
	uid   uint32
	gid   uint32
	nlink uint64 // names that refer to it (directories: computed, see stat)
	opens int    // open descriptions
	atime Timespec
	mtime Timespec
	ctime Timespec

	// unnamed is set for an O_TMPFILE file that has never had a name;
	// noLink when it was opened with O_EXCL and may never get one.
	unnamed, noLink bool
	// seals are the F_ADD_SEALS seals (memfd; F_SEAL_SEAL on other
	// files); writeMaps counts the writable shared mappings' backings.
	seals     uint32
	writeMaps int

	size  int64
	pages map[int64]uint64 // frames of allocated pages by index; holes read as zeros

	// sock is the socket bound to a socket inode (socket_fs.go), nil once
	// it is closed.
	sock any
}

// now is the time for timestamps: Options.Now, or the host clock.
func (fs *FS) now() Timespec {
	if fs.opts.Now != nil {
		return fs.opts.Now()
	}
	t := time.Now()
	return Timespec{Sec: t.Unix(), Nsec: int64(t.Nanosecond())}
}

// MountTmpfs mounts an empty tmpfs at path (mode 01777, like /tmp) with
// a size limit of size bytes, rounded up to a page. The directories on the
// way are created as synthetic directories; a host directory there is
// hidden, as a mount hides what it covers.
func (fs *FS) MountTmpfs(path string, size int64) error {
	comps, ok := cleanAbs(path)
	if !ok {
		return fmt.Errorf("vfs: tmpfs mount point %q is not a clean absolute path", path)
	}
	if size <= 0 {
		return fmt.Errorf("vfs: tmpfs at %s: size must be positive", path)
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.mountAt(joinPath(comps)) != nil {
		return fmt.Errorf("vfs: a tmpfs is already mounted at %s", path)
	}
	dir := fs.tree
	for _, c := range comps[:len(comps)-1] {
		child := dir.children[c]
		if child == nil {
			child = fs.newNode(dir, c, &node{kind: nodeDir})
		} else if child.kind != nodeDir || child.ti != nil {
			return fmt.Errorf("vfs: tmpfs mount point %s: %s is not a synthetic directory", path, child.path())
		}
		dir = child
	}
	name := comps[len(comps)-1]
	if dir.children[name] != nil {
		return fmt.Errorf("vfs: tmpfs mount point %s is already taken", path)
	}
	m := &tmpMount{
		frames: fs.frames,
		path:   joinPath(comps),
		dev:    Makedev(0, uint32(tmpfsFirstMinor+len(fs.mounts))),
		limit:  roundUpPage(size),
		inodes: map[uint64]*tmpInode{},
	}
	m.vfsMnt.tmp = m
	root := fs.newNode(dir, name, &node{kind: nodeDir})
	root.ti = m.newInode(unix.S_IFDIR|0o1777, fs.now())
	root.ino = root.ti.ino
	m.root = root
	fs.mounts = append(fs.mounts, m)
	return nil
}

// mountAt is the mount whose root is at the canonical path p, or the
// hidden memfd mount for memfdMount.
func (fs *FS) mountAt(p string) *tmpMount {
	if p == memfdMount {
		return fs.memfdMnt
	}
	for _, m := range fs.mounts {
		if m.path == p {
			return m
		}
	}
	return nil
}

func hostUID() int { return os.Getuid() }

func roundUpPage(n int64) int64 { return (n + pageSize - 1) &^ (pageSize - 1) }

// newInode makes an inode owned by the host's uid and gid.
func (m *tmpMount) newInode(mode uint32, now Timespec) *tmpInode {
	m.nextIno++
	ti := &tmpInode{mnt: m, ino: m.nextIno, mode: mode, uid: uint32(os.Getuid()), gid: uint32(os.Getgid()),
		atime: now, mtime: now, ctime: now, seals: SealSeal}
	m.inodes[ti.ino] = ti
	return ti
}

// release frees an inode that has no name and no open description left.
func (ti *tmpInode) release() {
	if ti.nlink > 0 || ti.opens > 0 || ti.mode&unix.S_IFMT == unix.S_IFDIR {
		return
	}
	for _, pa := range ti.pages {
		ti.mnt.frames.DecRef(pa)
	}
	ti.mnt.used -= int64(len(ti.pages)) * pageSize
	ti.pages = nil
	delete(ti.mnt.inodes, ti.ino)
}

// stat is the inode's stat; dir is its directory node for the link count
// of a directory (2 + subdirectories), nil otherwise.
func (ti *tmpInode) stat(dir *node) Stat {
	st := Stat{
		Dev: ti.mnt.dev, Ino: ti.ino, Nlink: ti.nlink, Mode: ti.mode, Uid: ti.uid, Gid: ti.gid,
		Size: ti.size, Blksize: pageSize, Blocks: int64(len(ti.pages)) * (pageSize / 512),
		Atime: ti.atime, Mtime: ti.mtime, Ctime: ti.ctime,
	}
	if dir != nil {
		st.Nlink = 2
		for _, c := range dir.children {
			if c.kind == nodeDir {
				st.Nlink++
			}
		}
		// Linux's tmpfs counts a directory as 20 bytes per entry (BOGO_DIRENT_SIZE),
		// with "." and ".." making the first 40.
		st.Size = int64(2+len(dir.children)) * 20
		st.Blocks = 0
	}
	return st
}

// readAt copies the contents from off into p; holes read as zeros.
func (ti *tmpInode) readAt(p []byte, off int64) int {
	if off >= ti.size {
		return 0
	}
	n := int(min(int64(len(p)), ti.size-off))
	for done := 0; done < n; {
		idx, in := (off+int64(done))/pageSize, int((off+int64(done))%pageSize)
		chunk := min(n-done, pageSize-in)
		if pa, ok := ti.pages[idx]; ok {
			copy(p[done:done+chunk], ti.mnt.frames.Bytes(pa)[in:])
		} else {
			clear(p[done : done+chunk])
		}
		done += chunk
	}
	return n
}

// writeAt stores p at off, allocating pages against the mount's limit. A
// write that does not fit is short; one that cannot write anything fails
// with ENOSPC, as Linux's shmem does. EFBIG past the largest file size.
func (ti *tmpInode) writeAt(p []byte, off int64) (int, unix.Errno) {
	if off < 0 {
		return 0, unix.EINVAL
	}
	const maxSize = 1<<63 - 1
	if off >= maxSize-pageSize || int64(len(p)) > maxSize-pageSize-off {
		return 0, unix.EFBIG
	}
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		idx, in := pos/pageSize, int(pos%pageSize)
		chunk := min(len(p)-done, pageSize-in)
		pa, errno := ti.page(idx)
		if errno != 0 {
			if done == 0 {
				return 0, errno
			}
			break
		}
		copy(ti.mnt.frames.WritableBytes(pa)[in:], p[done:done+chunk])
		done += chunk
	}
	if end := off + int64(done); end > ti.size {
		ti.size = end
	}
	return done, 0
}

// page returns the frame of page idx, allocating a zero one for a hole:
// ENOSPC past the mount's size limit, ENOMEM when guest RAM is full.
func (ti *tmpInode) page(idx int64) (uint64, unix.Errno) {
	if pa, ok := ti.pages[idx]; ok {
		return pa, 0
	}
	if ti.mnt.used+pageSize > ti.mnt.limit {
		return 0, unix.ENOSPC
	}
	pa, err := ti.mnt.frames.Alloc()
	if err != nil {
		return 0, unix.ENOMEM
	}
	if ti.pages == nil {
		ti.pages = map[int64]uint64{}
	}
	ti.pages[idx] = pa
	ti.mnt.used += pageSize
	return pa, 0
}

// truncate sets the size, freeing pages past it and zeroing the tail of
// the last one, as truncate(2) does.
func (ti *tmpInode) truncate(size int64) {
	if size < ti.size {
		last := size / pageSize
		for idx, pa := range ti.pages {
			if idx > last || idx == last && size%pageSize == 0 {
				delete(ti.pages, idx)
				ti.mnt.frames.DecRef(pa)
				ti.mnt.used -= pageSize
			}
		}
		if pa, ok := ti.pages[last]; ok {
			clear(ti.mnt.frames.WritableBytes(pa)[size%pageSize:])
		}
	}
	ti.size = size
}

// isTmpfsDir reports whether n is a directory of a tmpfs mount.
func (n *node) isTmpfsDir() bool { return n != nil && n.kind == nodeDir && n.ti != nil }

// tmpStat is the stat of a tmpfs node. The caller holds FS.mu.
func (n *node) tmpStat() Stat {
	if n.kind == nodeDir {
		return n.ti.stat(n)
	}
	return n.ti.stat(nil)
}
