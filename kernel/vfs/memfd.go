package vfs

import (
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// memfd_create(2), file seals and fallocate(2) on tmpfs files, and
// statfs(2) of a tmpfs. A memfd is a tmpfs file without a name on a
// hidden mount (memfdMount) that is not in the tree, limited only by guest
// RAM, like Linux's internal shm mount.

// memfdMount is the MountState.Path of the hidden memfd mount; it is not
// a guest path, so nothing can open it by name.
const memfdMount = "memfd:"

// memfd_create flags.
const (
	MfdCloexec      = 0x1
	MfdAllowSealing = 0x2
	MfdHugetlb      = 0x4
	MfdNoexecSeal   = 0x8
	MfdExec         = 0x10
)

// mfdNameMax is the longest memfd name (NAME_MAX minus "memfd:").
const mfdNameMax = 249

// File seals (F_ADD_SEALS, F_GET_SEALS).
const (
	SealSeal        = 0x1
	SealShrink      = 0x2
	SealGrow        = 0x4
	SealWrite       = 0x8
	SealFutureWrite = 0x10
	SealExec        = 0x20
	sealsKnown      = SealSeal | SealShrink | SealGrow | SealWrite | SealFutureWrite | SealExec
)

// fallocate modes that tmpfs supports; the others (ZERO_RANGE,
// COLLAPSE_RANGE, INSERT_RANGE, UNSHARE_RANGE) are EOPNOTSUPP on it.
const (
	FallocKeepSize  = 0x1
	FallocPunchHole = 0x2
)

// memfd returns the hidden memfd mount, making it on first use. The
// caller holds fs.mu.
func (fs *FS) memfd() *tmpMount {
	if fs.memfdMnt == nil {
		m := &tmpMount{frames: fs.frames, path: memfdMount, inodes: map[uint64]*tmpInode{},
			limit: int64(fs.frames.Capacity()) * pageSize}
		m.dev = Makedev(0, tmpfsFirstMinor-1)
		m.vfsMnt.tmp = m
		m.root = &node{kind: nodeDir, children: map[string]*node{}}
		m.root.ti = m.newInode(unix.S_IFDIR|0o1777, fs.now())
		m.root.ino = m.root.ti.ino
		fs.memfdMnt = m
	}
	return fs.memfdMnt
}

// MemfdCreate is memfd_create(2): a new unnamed tmpfs file open for
// reading and writing, shown as "/memfd:NAME (deleted)". Without
// MFD_ALLOW_SEALING it carries F_SEAL_SEAL, so no seal can be added.
func (fs *FS) MemfdCreate(name string, flags uint32) (File, unix.Errno) {
	if flags&^(MfdCloexec|MfdAllowSealing|MfdHugetlb|MfdNoexecSeal|MfdExec) != 0 ||
		flags&MfdNoexecSeal != 0 && flags&MfdExec != 0 {
		return nil, unix.EINVAL
	}
	if flags&MfdHugetlb != 0 {
		return nil, unix.EINVAL // no huge pages here (as a kernel without hugetlbfs)
	}
	if len(name) > mfdNameMax {
		return nil, unix.EINVAL
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	m := fs.memfd()
	mode := uint32(unix.S_IFREG | 0o777)
	if flags&MfdNoexecSeal != 0 {
		mode = unix.S_IFREG | 0o666
	}
	ti := m.newInode(mode, fs.now())
	ti.noLink = true // linkat of a memfd: ENOENT, it never had a name
	ti.seals = SealSeal
	if flags&MfdAllowSealing != 0 || flags&MfdNoexecSeal != 0 {
		ti.seals = 0
	}
	if flags&MfdNoexecSeal != 0 {
		ti.seals |= SealExec
	}
	return fs.openTmpInode(ti, "/memfd:"+name+" (deleted)", unix.O_RDWR), 0
}

// Seals is fcntl(F_GET_SEALS): the seals of a tmpfs file, EINVAL for any
// other file.
func Seals(f File) (int, unix.Errno) {
	tf, ok := f.(*tmpFile)
	if !ok {
		return 0, unix.EINVAL
	}
	tf.fs.mu.RLock()
	defer tf.fs.mu.RUnlock()
	return int(tf.ti.seals), 0
}

// AddSeals is fcntl(F_ADD_SEALS), with Linux's checks: EINVAL for other
// files and unknown seals, EPERM through a descriptor not open for
// writing or once F_SEAL_SEAL is set, EBUSY for F_SEAL_WRITE while a
// writable shared mapping exists.
func AddSeals(f File, seals int) unix.Errno {
	tf, ok := f.(*tmpFile)
	if !ok {
		return unix.EINVAL
	}
	if seals&^sealsKnown != 0 || seals < 0 {
		return unix.EINVAL
	}
	if !writable(tf.Flags()) {
		return unix.EPERM
	}
	fs := tf.fs
	fs.mu.Lock()
	defer fs.mu.Unlock()
	ti := tf.ti
	if ti.seals&SealSeal != 0 {
		return unix.EPERM
	}
	if seals&SealWrite != 0 && ti.seals&SealWrite == 0 && ti.writeMaps > 0 {
		// A munmap'ed mapping lets go of the file only when its backing
		// is collected (newTmpBacking): collect, then look again.
		fs.mu.Unlock()
		for i := 0; i < 3 && ti.writeMapsNow(fs) > 0; i++ {
			runtime.GC()
			time.Sleep(time.Millisecond)
		}
		fs.mu.Lock()
		if ti.writeMaps > 0 {
			return unix.EBUSY
		}
	}
	ti.seals |= uint32(seals)
	return 0
}

func (ti *tmpInode) writeMapsNow(fs *FS) int {
	fs.mu.RLock()
	defer fs.mu.RUnlock()
	return ti.writeMaps
}

// writeSealed reports whether a seal forbids changing the contents.
func (ti *tmpInode) writeSealed() bool { return ti.seals&(SealWrite|SealFutureWrite) != 0 }

// Fallocate is fallocate(2) on a tmpfs file: mode 0 allocates the range
// (and extends the file), FALLOC_FL_KEEP_SIZE allocates without changing
// the size, FALLOC_FL_PUNCH_HOLE|FALLOC_FL_KEEP_SIZE frees it. Other modes
// are EOPNOTSUPP, as on Linux's tmpfs; files that are not on a tmpfs
// give what Linux gives for them (EBADF for the read-only root's files,
// ENODEV for devices, ESPIPE for pipes, EISDIR for directories).
func Fallocate(f File, mode uint32, off, length int64) unix.Errno {
	tf, ok := f.(*tmpFile)
	if !ok {
		if !writable(f.Flags()) {
			return unix.EBADF
		}
		switch f.Describe().Kind {
		case KindPipe:
			return unix.ESPIPE
		case KindDirectory:
			return unix.EISDIR
		}
		return unix.ENODEV
	}
	if off < 0 || length <= 0 {
		return unix.EINVAL
	}
	if mode&FallocPunchHole != 0 && mode&FallocKeepSize == 0 {
		return unix.EOPNOTSUPP
	}
	if !writable(tf.Flags()) {
		return unix.EBADF
	}
	if off > maxFileSize-pageSize-length {
		return unix.EFBIG
	}
	if mode&^(FallocKeepSize|FallocPunchHole) != 0 {
		return unix.EOPNOTSUPP
	}
	fs := tf.fs
	fs.mu.Lock()
	defer fs.mu.Unlock()
	ti := tf.ti
	end := off + length
	if mode&FallocPunchHole != 0 {
		if ti.writeSealed() {
			return unix.EPERM
		}
		ti.punch(off, min(end, ti.size))
	} else {
		if ti.seals&SealGrow != 0 && end > ti.size && mode&FallocKeepSize == 0 {
			return unix.EPERM
		}
		// All or nothing, as shmem_fallocate undoes a partial allocation.
		var added []int64
		for idx := off / pageSize; idx <= (end-1)/pageSize; idx++ {
			if _, ok := ti.pages[idx]; ok {
				continue
			}
			if _, errno := ti.page(idx); errno != 0 {
				for _, a := range added {
					ti.mnt.frames.DecRef(ti.pages[a])
					delete(ti.pages, a)
					ti.mnt.used -= pageSize
				}
				return unix.ENOSPC
			}
			added = append(added, idx)
		}
		if mode&FallocKeepSize == 0 && end > ti.size {
			ti.size = end
		}
	}
	ti.mtime = fs.now()
	ti.ctime = ti.mtime
	return 0
}

// punch frees the pages wholly inside [start, end) and zeroes the rest of
// the range.
func (ti *tmpInode) punch(start, end int64) {
	for pos := start; pos < end; {
		idx, in := pos/pageSize, pos%pageSize
		n := min(end-pos, pageSize-in)
		if pa, ok := ti.pages[idx]; ok {
			if n == pageSize {
				ti.mnt.frames.DecRef(pa)
				delete(ti.pages, idx)
				ti.mnt.used -= pageSize
			} else {
				clear(ti.mnt.frames.WritableBytes(pa)[in : in+n])
			}
		}
		pos += n
	}
}

// statfs is the struct statfs of the mount, as Linux's shmem_statfs fills
// it: blocks of 4096 bytes, the size limit and what is left of it, and an
// inode count (here the live inodes, with room for a million more).
func (m *tmpMount) statfs() Statfs {
	blocks := uint64(m.limit / pageSize)
	free := blocks - uint64(m.used/pageSize)
	files := uint64(len(m.inodes))
	return Statfs{
		Type:    TmpfsMagic,
		Bsize:   pageSize,
		Blocks:  blocks,
		Bfree:   free,
		Bavail:  free,
		Files:   files + 1<<20,
		Ffree:   1 << 20,
		Fsid:    [2]int32{int32(uint32(m.dev)), int32(uint32(m.dev >> 32))}, // the device number
		Namelen: NameMax,
		Frsize:  pageSize,
		Flags:   StValid | StNosuid | StNodev,
	}
}
