package vfs

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/emuckpt/emuckpt/guestmm"
	"golang.org/x/sys/unix"
)

// ioctl requests handled outside the terminal layer.
const (
	ioctlFIONREAD = 0x541B
)

// regularFile is a regular file of the root, open for reading. Reads are
// preads at the offset it tracks, so dup'ed descriptors share the offset
// and nothing depends on the host descriptor's own.
type regularFile struct {
	flagSet
	path     string
	backings *backingCache

	mu  sync.RWMutex // write-locked to move off or to close
	fd  int          // host descriptor, -1 once closed
	off int64
}

func newRegularFile(path string, fd int, flags int) *regularFile {
	f := &regularFile{path: path, fd: fd}
	f.flags = descriptionFlags(flags)
	return f
}

// ReadsFull: a regular file's read returns all that is asked for up to
// the end of the file.
func (*regularFile) ReadsFull() bool { return true }

func (f *regularFile) Read(p []byte) (int, unix.Errno) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fd < 0 {
		return 0, unix.EBADF
	}
	n, errno := preadRetry(f.fd, p, f.off)
	if errno != 0 {
		return 0, errno
	}
	f.off += int64(n)
	return n, 0
}

func (f *regularFile) Pread(p []byte, off int64) (int, unix.Errno) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.fd < 0 {
		return 0, unix.EBADF
	}
	if off < 0 {
		return 0, unix.EINVAL
	}
	return preadRetry(f.fd, p, off)
}

// Write fails with EBADF: root files are only ever open for reading.
func (f *regularFile) Write([]byte) (int, unix.Errno) { return 0, unix.EBADF }

// Pwrite fails with EBADF, like Write.
func (f *regularFile) Pwrite([]byte, int64) (int, unix.Errno) { return 0, unix.EBADF }

func (f *regularFile) Lseek(off int64, whence int) (int64, unix.Errno) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fd < 0 {
		return 0, unix.EBADF
	}
	switch whence {
	case unix.SEEK_DATA, unix.SEEK_HOLE:
		// The host knows the holes; its descriptor offset is unused.
		n, err := unix.Seek(f.fd, off, whence)
		if err != nil {
			return 0, errnoOf(err)
		}
		f.off = n
		return n, 0
	}
	var st unix.Stat_t
	if whence == unix.SEEK_END {
		if err := unix.Fstat(f.fd, &st); err != nil {
			return 0, errnoOf(err)
		}
	}
	n, errno := seekOffset(f.off, st.Size, off, whence)
	if errno != 0 {
		return 0, errno
	}
	f.off = n
	return n, 0
}

func (f *regularFile) Stat() (Stat, unix.Errno) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return fstatFd(f.fd)
}

func (f *regularFile) Getdents64(int) ([]byte, unix.Errno) { return nil, unix.ENOTDIR }

func (f *regularFile) Ioctl(req, arg uint64, m Memory) (uint64, unix.Errno) {
	if req != ioctlFIONREAD {
		return 0, unix.ENOTTY
	}
	// FIONREAD on a regular file: the bytes from the offset to the end.
	f.mu.RLock()
	fd, off := f.fd, f.off
	st, errno := fstatFd(fd)
	f.mu.RUnlock()
	if errno != 0 {
		return 0, errno
	}
	return 0, copyOutInt32(m, arg, int32(st.Size-off))
}

func (f *regularFile) Close() unix.Errno {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fd < 0 {
		return unix.EBADF
	}
	err := unix.Close(f.fd)
	f.fd = -1
	return errnoOf(err)
}

func (f *regularFile) Describe() FileState {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return FileState{Kind: KindRegular, Path: f.path, Flags: f.Flags(), Offset: f.off}
}

// MmapBacking maps the file itself. A shared writable mapping is refused
// with EACCES, as for any file not open for writing; a private one is
// copy-on-write and fine.
func (f *regularFile) MmapBacking(off, length uint64, prot uint32, shared bool) (Backing, unix.Errno) {
	if shared && prot&unix.PROT_WRITE != 0 {
		return nil, unix.EACCES
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.fd < 0 {
		return nil, unix.EBADF
	}
	if f.backings == nil {
		return newFileBacking(f.fd, f.path)
	}
	return f.backings.get(f.fd, f.path)
}

// fileBacking is a mapped host file, with a descriptor of its own so that
// the mapping outlives the guest's descriptor.
type fileBacking struct {
	f    *os.File
	name string

	mu    sync.Mutex
	id    FileIdentity // the last identity computed, for idKey
	idKey identityKey  // what the file looked like when id was computed
}

func newFileBacking(fd int, name string) (*fileBacking, unix.Errno) {
	nfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, errnoOf(err)
	}
	return &fileBacking{f: os.NewFile(uintptr(nfd), name), name: name}, 0
}

func (b *fileBacking) ReadAt(p []byte, off int64) (int, error) { return b.f.ReadAt(p, off) }
func (b *fileBacking) Name() string                            { return b.name }

// Close releases the backing's host descriptor.
func (b *fileBacking) Close() error { return b.f.Close() }

// Access is how the file can be mapped: the root is read-only, so a shared
// mapping can never become writable (mprotect gives EACCES, as on Linux
// for a file opened read-only); a private one still can (copy on write).
func (b *fileBacking) Access() guestmm.Prot { return guestmm.ProtRead | guestmm.ProtExec }

// backingCache keeps one backing per host file, so that mapping a file
// many times holds one host descriptor, not one per mmap, and adjacent
// mappings of one file can merge as on Linux. The descriptors live as long
// as the FS: at most one per file of the root.
type backingCache struct {
	mu sync.Mutex
	m  map[[2]uint64]*fileBacking // (device, inode)
}

func (c *backingCache) get(fd int, name string) (*fileBacking, unix.Errno) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, errnoOf(err)
	}
	key := [2]uint64{st.Dev, st.Ino}
	c.mu.Lock()
	defer c.mu.Unlock()
	if b, ok := c.m[key]; ok {
		return b, 0
	}
	b, errno := newFileBacking(fd, name)
	if errno != 0 {
		return nil, errno
	}
	if c.m == nil {
		c.m = map[[2]uint64]*fileBacking{}
	}
	c.m[key] = b
	return b, 0
}

func (c *backingCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, b := range c.m {
		b.Close()
		delete(c.m, k)
	}
}

// Identity describes the file's current contents: its size and SHA-256
// (and, for messages and images of older readers, its mtime and inode).
// Hashing reads the whole file, so the result is kept and reused while
// the file's dev, inode, size, mtime and ctime stay the same: ctime is set
// by the kernel on every change and cannot be set back by users, so an
// edit that resets mtime (cp -p, rsync -t, touch -d) is still seen.
func (b *fileBacking) Identity() (FileIdentity, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	key, err := statKey(b.f)
	if err != nil {
		return FileIdentity{}, err
	}
	if key == b.idKey && b.id.SHA256 != "" {
		return b.id, nil
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(b.f, 0, key.size)); err != nil {
		return FileIdentity{}, err
	}
	if after, err := statKey(b.f); err != nil {
		return FileIdentity{}, err
	} else if after != key {
		return FileIdentity{}, fmt.Errorf("%s changed while it was being hashed", b.name)
	}
	b.idKey = key
	b.id = FileIdentity{Size: key.size, MtimeNS: key.mtime, Ino: key.ino, SHA256: hex.EncodeToString(h.Sum(nil))}
	return b.id, nil
}

// identityKey is what fstat tells about a file's contents without reading
// them.
type identityKey struct {
	dev, ino           uint64
	size, mtime, ctime int64
}

func statKey(f *os.File) (identityKey, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return identityKey{}, err
	}
	return identityKey{dev: st.Dev, ino: st.Ino, size: st.Size, mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano()}, nil
}

// FileIdentity is what a checkpoint remembers of a mapped file, to tell at
// restore whether it is still the same file (see Matches).
type FileIdentity struct {
	Size    int64  `json:"size"`
	MtimeNS int64  `json:"mtime_ns"`
	Ino     uint64 `json:"ino"`
	// SHA256 is the hex SHA-256 of the contents. Images written before
	// it existed lack it.
	SHA256 string `json:"sha256,omitempty"`
}

// Matches reports whether now, a file's identity at restore, is the file
// id was taken of. With a content hash, the size and hash decide: the file
// may have been copied (to another machine, a new root, by a backup
// restore), which changes its inode, mtime and ctime but not its bytes.
// Without one (older images), size, mtime and inode must all be equal.
func (id FileIdentity) Matches(now FileIdentity) bool {
	if id.SHA256 != "" {
		return id.Size == now.Size && id.SHA256 == now.SHA256
	}
	return id.Size == now.Size && id.MtimeNS == now.MtimeNS && id.Ino == now.Ino
}

// String describes the identity for messages.
func (id FileIdentity) String() string {
	if id.SHA256 == "" {
		return fmt.Sprintf("size %d, mtime %d ns, inode %d", id.Size, id.MtimeNS, id.Ino)
	}
	return fmt.Sprintf("size %d, sha256 %s", id.Size, id.SHA256)
}

// Identifiable is implemented by backings of host files.
type Identifiable interface {
	Identity() (FileIdentity, error)
}

// pathFile is an O_PATH descriptor: it names a file without opening it, so
// only fstat and its use as a directory for the *at calls work.
type pathFile struct {
	fs    *FS
	path  string
	flags int
	synth *node // for a synthetic file; nil for a host one

	mu sync.Mutex
	fd int // host O_PATH descriptor, -1 for a synthetic file or once closed
	// closed is set by Close.
	closed bool
}

func (fs *FS) openPath(r resolved, flags int) (File, unix.Errno) {
	f := &pathFile{fs: fs, path: r.path(), flags: descriptionFlags(flags), fd: -1}
	if r.synth != nil && !(r.isDir && r.host) {
		f.synth = r.synth
		return f, 0
	}
	fd, _, errno := fs.root.lstat(r.comps)
	if errno != 0 {
		return nil, errno
	}
	f.fd = fd
	return f, 0
}

func (f *pathFile) Read([]byte) (int, unix.Errno)                     { return 0, unix.EBADF }
func (f *pathFile) Write([]byte) (int, unix.Errno)                    { return 0, unix.EBADF }
func (f *pathFile) Pread([]byte, int64) (int, unix.Errno)             { return 0, unix.EBADF }
func (f *pathFile) Pwrite([]byte, int64) (int, unix.Errno)            { return 0, unix.EBADF }
func (f *pathFile) Lseek(int64, int) (int64, unix.Errno)              { return 0, unix.EBADF }
func (f *pathFile) Getdents64(int) ([]byte, unix.Errno)               { return nil, unix.EBADF }
func (f *pathFile) Ioctl(uint64, uint64, Memory) (uint64, unix.Errno) { return 0, unix.EBADF }
func (f *pathFile) Flags() int                                        { return f.flags }

// SetFlags does nothing: F_SETFL fails with EBADF on an O_PATH descriptor,
// which the caller checks with Flags()&O_PATH.
func (f *pathFile) SetFlags(int) {}

func (f *pathFile) MmapBacking(uint64, uint64, uint32, bool) (Backing, unix.Errno) {
	return nil, unix.EBADF
}

func (f *pathFile) Stat() (Stat, unix.Errno) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return Stat{}, unix.EBADF
	}
	if f.synth != nil {
		f.fs.mu.RLock()
		defer f.fs.mu.RUnlock()
		return f.synth.stat(), 0
	}
	return fstatFd(f.fd)
}

func (f *pathFile) Close() unix.Errno {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return unix.EBADF
	}
	f.closed = true
	if f.fd >= 0 {
		unix.Close(f.fd)
		f.fd = -1
	}
	return 0
}

func (f *pathFile) Describe() FileState {
	return FileState{Kind: KindPath, Path: f.path, Flags: f.flags}
}

// generatedFile is an open synthetic file, read like a procfs seq_file:
// its content is generated when a read starts at offset 0 (the first read,
// or one after lseek(fd, 0, SEEK_SET)) and when a read does not continue
// where the previous one ended; reads that follow on see the same
// snapshot, so a file read in pieces stays consistent.
type generatedFile struct {
	flagSet
	path    string
	st      Stat
	content func() []byte

	mu      sync.Mutex
	data    []byte // the snapshot; nil until the first read
	readPos int64  // where the last read ended, -1 before any
	off     int64
	closed  bool
}

func newGeneratedFile(path string, st Stat, content func() []byte, flags int) *generatedFile {
	f := &generatedFile{path: path, st: st, content: content, readPos: -1}
	f.flags = descriptionFlags(flags)
	return f
}

// readAt serves a read at off, regenerating the snapshot as seq_file
// does. The caller holds f.mu.
func (f *generatedFile) readAt(p []byte, off int64) int {
	if off == 0 || off != f.readPos || f.data == nil {
		f.data = append([]byte{}, f.content()...)
	}
	n := copyAt(p, f.data, off)
	f.readPos = off + int64(n)
	return n
}

func (f *generatedFile) Read(p []byte) (int, unix.Errno) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return 0, unix.EBADF
	}
	n := f.readAt(p, f.off)
	f.off += int64(n)
	return n, 0
}

func (f *generatedFile) Pread(p []byte, off int64) (int, unix.Errno) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return 0, unix.EBADF
	}
	if off < 0 {
		return 0, unix.EINVAL
	}
	return f.readAt(p, off), 0
}

// copyAt copies data[off:] into p.
func copyAt(p, data []byte, off int64) int {
	if off >= int64(len(data)) {
		return 0
	}
	return copy(p, data[off:])
}

func (*generatedFile) ReadsFull() bool { return true }

func (f *generatedFile) Write([]byte) (int, unix.Errno)         { return 0, unix.EBADF }
func (f *generatedFile) Pwrite([]byte, int64) (int, unix.Errno) { return 0, unix.EBADF }

// Lseek allows SEEK_SET and SEEK_CUR only, as seq_file does.
func (f *generatedFile) Lseek(off int64, whence int) (int64, unix.Errno) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return 0, unix.EBADF
	}
	if whence != unix.SEEK_SET && whence != unix.SEEK_CUR {
		return 0, unix.EINVAL
	}
	n, errno := seekOffset(f.off, 0, off, whence)
	if errno != 0 {
		return 0, errno
	}
	f.off = n
	return n, 0
}

func (f *generatedFile) Stat() (Stat, unix.Errno) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return Stat{}, unix.EBADF
	}
	return f.st, 0
}

func (f *generatedFile) Getdents64(int) ([]byte, unix.Errno)               { return nil, unix.ENOTDIR }
func (f *generatedFile) Ioctl(uint64, uint64, Memory) (uint64, unix.Errno) { return 0, unix.ENOTTY }

func (f *generatedFile) MmapBacking(uint64, uint64, uint32, bool) (Backing, unix.Errno) {
	return nil, unix.ENODEV
}

func (f *generatedFile) Close() unix.Errno {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return unix.EBADF
	}
	f.closed = true
	f.data = nil
	return 0
}

func (f *generatedFile) Describe() FileState {
	f.mu.Lock()
	defer f.mu.Unlock()
	return FileState{Kind: KindGenerated, Path: f.path, Flags: f.Flags(), Offset: f.off}
}

func preadRetry(fd int, p []byte, off int64) (int, unix.Errno) {
	for {
		n, err := unix.Pread(fd, p, off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, errnoOf(err)
		}
		return n, 0
	}
}

func fstatFd(fd int) (Stat, unix.Errno) {
	if fd < 0 {
		return Stat{}, unix.EBADF
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return Stat{}, errnoOf(err)
	}
	return statFromHost(&st), 0
}

// copyOutInt32 stores an int result of an ioctl at a guest address.
func copyOutInt32(m Memory, va uint64, v int32) unix.Errno {
	if m == nil {
		return unix.EFAULT
	}
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], uint32(v))
	if m.CopyOut(va, b[:]) != nil {
		return unix.EFAULT
	}
	return 0
}
