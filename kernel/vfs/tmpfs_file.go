package vfs

import (
	"io"
	"runtime"
	"sync"

	"github.com/emuckpt/emuckpt/guestmm"
	"golang.org/x/sys/unix"
)

// tmpFile is an open regular file of a tmpfs. It holds its inode, not its
// name, so it keeps working after the file is unlinked or renamed.
type tmpFile struct {
	flagSet
	fs *FS
	ti *tmpInode

	mu     sync.Mutex // guards off and closed
	path   string     // the path it was opened by, for messages and maps
	off    int64
	closed bool
}

// openTmpInode makes a description of a tmpfs regular file. The caller
// holds fs.mu for writing.
func (fs *FS) openTmpInode(ti *tmpInode, path string, flags int) *tmpFile {
	ti.opens++
	f := &tmpFile{fs: fs, ti: ti, path: path}
	f.flags = descriptionFlags(flags)
	return f
}

// inode returns the inode, or EBADF once closed.
func (f *tmpFile) inode() (*tmpInode, unix.Errno) {
	if f.closed {
		return nil, unix.EBADF
	}
	return f.ti, 0
}

func (f *tmpFile) Read(p []byte) (int, unix.Errno) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, errno := f.pread(p, f.off)
	f.off += int64(n)
	return n, errno
}

func (f *tmpFile) Pread(p []byte, off int64) (int, unix.Errno) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if off < 0 {
		return 0, unix.EINVAL
	}
	return f.pread(p, off)
}

func (f *tmpFile) pread(p []byte, off int64) (int, unix.Errno) {
	ti, errno := f.inode()
	if errno != 0 {
		return 0, errno
	}
	if !readable(f.Flags()) {
		return 0, unix.EBADF
	}
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	n := ti.readAt(p, off)
	ti.atime = f.fs.now()
	return n, 0
}

func (f *tmpFile) Write(p []byte) (int, unix.Errno) {
	f.mu.Lock()
	defer f.mu.Unlock()
	off := f.off
	if f.Flags()&unix.O_APPEND != 0 {
		f.fs.mu.RLock()
		off = f.ti.size
		f.fs.mu.RUnlock()
	}
	n, errno := f.pwrite(p, off)
	f.off = off + int64(n)
	return n, errno
}

// Pwrite writes at off; with O_APPEND Linux appends instead.
func (f *tmpFile) Pwrite(p []byte, off int64) (int, unix.Errno) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if off < 0 {
		return 0, unix.EINVAL
	}
	if f.Flags()&unix.O_APPEND != 0 {
		f.fs.mu.RLock()
		off = f.ti.size
		f.fs.mu.RUnlock()
	}
	return f.pwrite(p, off)
}

func (f *tmpFile) pwrite(p []byte, off int64) (int, unix.Errno) {
	ti, errno := f.inode()
	if errno != 0 {
		return 0, errno
	}
	if !writable(f.Flags()) {
		return 0, unix.EBADF
	}
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if ti.writeSealed() || ti.seals&SealGrow != 0 && off+int64(len(p)) > ti.size {
		return 0, unix.EPERM
	}
	if len(p) == 0 {
		return 0, 0
	}
	n, errno := ti.writeAt(p, off)
	if n > 0 {
		ti.mtime = f.fs.now()
		ti.ctime = ti.mtime
	}
	return n, errno
}

func (f *tmpFile) Lseek(off int64, whence int) (int64, unix.Errno) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ti, errno := f.inode()
	if errno != 0 {
		return 0, errno
	}
	f.fs.mu.RLock()
	size := ti.size
	f.fs.mu.RUnlock()
	switch whence {
	case unix.SEEK_DATA, unix.SEEK_HOLE:
		// The whole file counts as data, which Linux allows.
		if off < 0 || off >= size {
			return 0, unix.ENXIO
		}
		if whence == unix.SEEK_HOLE {
			off = size
		}
		f.off = off
		return off, 0
	}
	n, errno := seekOffset(f.off, size, off, whence)
	if errno != 0 {
		return 0, errno
	}
	f.off = n
	return n, 0
}

func (f *tmpFile) Stat() (Stat, unix.Errno) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ti, errno := f.inode()
	if errno != 0 {
		return Stat{}, errno
	}
	f.fs.mu.RLock()
	defer f.fs.mu.RUnlock()
	return ti.stat(nil), 0
}

func (f *tmpFile) Getdents64(int) ([]byte, unix.Errno) { return nil, unix.ENOTDIR }

func (f *tmpFile) Ioctl(req, arg uint64, m Memory) (uint64, unix.Errno) {
	if req != ioctlFIONREAD {
		return 0, unix.ENOTTY
	}
	f.mu.Lock()
	off := f.off
	f.mu.Unlock()
	f.fs.mu.RLock()
	size := f.ti.size
	f.fs.mu.RUnlock()
	return 0, copyOutInt32(m, arg, int32(max(size-off, 0)))
}

// Truncate is ftruncate(2): EINVAL unless open for writing.
func (f *tmpFile) Truncate(size int64) unix.Errno {
	f.mu.Lock()
	defer f.mu.Unlock()
	ti, errno := f.inode()
	if errno != 0 {
		return errno
	}
	if !writable(f.Flags()) {
		return unix.EINVAL
	}
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	return f.fs.truncateInode(ti, size)
}

func (f *tmpFile) Close() unix.Errno {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return unix.EBADF
	}
	f.closed = true
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	f.ti.opens--
	f.ti.release()
	return 0
}

func (f *tmpFile) Describe() FileState {
	f.mu.Lock()
	defer f.mu.Unlock()
	return FileState{Kind: KindTmpfs, Path: f.path, Flags: f.Flags(), Offset: f.off,
		Mount: f.ti.mnt.path, Ino: f.ti.ino}
}

// MmapBacking maps the file's contents. A shared mapping maps the file's
// own pages (tmpBacking.Frame); a private one copies a page when it is
// first touched, as for any file here. Like Linux, mmap needs a readable
// descriptor, and a shared writable mapping a writable one (EACCES).
func (f *tmpFile) MmapBacking(off, length uint64, prot uint32, shared bool) (Backing, unix.Errno) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, errno := f.inode(); errno != 0 {
		return nil, errno
	}
	if !readable(f.Flags()) {
		return nil, unix.EACCES
	}
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if shared && prot&unix.PROT_WRITE != 0 && f.ti.writeSealed() {
		return nil, unix.EPERM
	}
	// A sealed file's shared mappings can never become writable.
	canWrite := writable(f.Flags()) && !f.ti.writeSealed()
	return f.fs.newTmpBacking(f.ti, f.path, canWrite, shared && canWrite), 0
}

// newTmpBacking makes a backing that holds its inode alive, as a mapping
// holds its file on Linux: a file unlinked and closed while mapped keeps
// its pages (and is saved in checkpoints) until no VMA uses the backing
// any more. guestmm does not say when that is, so the hold is dropped
// when the backing is garbage collected. The caller holds fs.mu.
func (fs *FS) newTmpBacking(ti *tmpInode, name string, writable, writeMap bool) *tmpBacking {
	ti.opens++
	if writeMap {
		ti.writeMaps++
	}
	b := &tmpBacking{fs: fs, ti: ti, name: name, writable: writable}
	runtime.AddCleanup(b, func(ti *tmpInode) {
		fs.mu.Lock()
		defer fs.mu.Unlock()
		ti.opens--
		if writeMap {
			ti.writeMaps--
		}
		ti.release()
	}, ti)
	return b
}

// tmpBacking is a tmpfs file behind a mapping.
type tmpBacking struct {
	fs       *FS
	ti       *tmpInode
	name     string
	writable bool // the descriptor it was mapped through was writable
}

func (b *tmpBacking) ReadAt(p []byte, off int64) (int, error) {
	b.fs.mu.RLock()
	defer b.fs.mu.RUnlock()
	n := b.ti.readAt(p, off)
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Frame is guestmm.PageCache: the file's own frame for a shared mapping.
func (b *tmpBacking) Frame(off uint64) (uint64, error) {
	b.fs.mu.Lock()
	defer b.fs.mu.Unlock()
	if off >= uint64(roundUpPage(b.ti.size)) {
		return 0, unix.EFAULT // past the end of the file: SIGBUS
	}
	pa, errno := b.ti.page(int64(off / pageSize))
	if errno != 0 {
		return 0, errno
	}
	b.ti.mnt.frames.IncRef(pa)
	return pa, nil
}

// Access is guestmm.BackingAccess: shared mappings are writable only
// through a writable descriptor.
func (b *tmpBacking) Access() guestmm.Prot {
	if b.writable {
		return guestmm.ProtRead | guestmm.ProtWrite | guestmm.ProtExec
	}
	return guestmm.ProtRead | guestmm.ProtExec
}

// Inode names the mapped file for a checkpoint: its mount and inode.
func (b *tmpBacking) Inode() (mount string, ino uint64) { return b.ti.mnt.path, b.ti.ino }

func (b *tmpBacking) Name() string { return b.name }

// TmpfsBacking is implemented by the backings of tmpfs files only, so
// that a checkpoint can tell them from files of the root and name the
// inode they map.
type TmpfsBacking interface {
	Backing
	Inode() (mount string, ino uint64)
}

// TmpfsBackingOf is a backing for the regular file ino of the tmpfs at
// mount, named name, for restoring its mappings: ENOENT if there is no
// such file.
func (fs *FS) TmpfsBackingOf(mount string, ino uint64, name string) (Backing, unix.Errno) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	m := fs.mountAt(mount)
	if m == nil {
		return nil, unix.ENOENT
	}
	ti := m.inodes[ino]
	if ti == nil || ti.mode&unix.S_IFMT != unix.S_IFREG {
		return nil, unix.ENOENT
	}
	return fs.newTmpBacking(ti, name, !ti.writeSealed(), !ti.writeSealed()), 0
}

// SameTmpfs reports whether a and b are files of one tmpfs (copy_file_range
// copies only within a file system), and whether they are one inode.
func SameTmpfs(a, b File) (same, sameInode bool) {
	ta, ok := a.(*tmpFile)
	if !ok {
		return false, false
	}
	tb, ok := b.(*tmpFile)
	if !ok {
		return false, false
	}
	ta.fs.mu.RLock()
	defer ta.fs.mu.RUnlock()
	return ta.ti.mnt == tb.ti.mnt, ta.ti == tb.ti
}
