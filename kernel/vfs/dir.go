package vfs

import (
	"sort"
	"sync"

	"golang.org/x/sys/unix"
)

// dirFile is an open directory: a host directory of the root, a synthetic
// one, or both merged. Its listing is read whole into a snapshot when the
// guest reads from offset 0 (so rewinddir sees changes), sorted by name
// after "." and ".."; the file offset is an index into it, which makes
// offsets stable across a checkpoint.
type dirFile struct {
	flagSet
	fs    *FS
	path  string
	comps []string
	synth *node // the synthetic directory, or nil

	mu      sync.Mutex
	fd      int // host directory descriptor, or -1
	closed  bool
	entries []Dirent // nil until the first Getdents64
	pos     int64
}

func (fs *FS) openDir(r resolved, flags int) (File, unix.Errno) {
	d := &dirFile{fs: fs, path: r.path(), comps: r.comps, synth: r.synth, fd: -1}
	d.flags = descriptionFlags(flags)
	if r.host {
		fd, errno := fs.root.open(r.comps, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOCTTY)
		if errno != 0 {
			return nil, errno
		}
		d.fd = fd
	}
	return d, 0
}

// Read fails with EISDIR, as read(2) on a directory does.
func (d *dirFile) Read([]byte) (int, unix.Errno) { return 0, unix.EISDIR }

// Pread fails with EISDIR.
func (d *dirFile) Pread([]byte, int64) (int, unix.Errno) { return 0, unix.EISDIR }

// Write fails with EBADF: a directory is never open for writing.
func (d *dirFile) Write([]byte) (int, unix.Errno) { return 0, unix.EBADF }

// Pwrite fails with EBADF.
func (d *dirFile) Pwrite([]byte, int64) (int, unix.Errno) { return 0, unix.EBADF }

// Lseek moves within the listing: SEEK_SET to a d_off, or SEEK_CUR.
func (d *dirFile) Lseek(off int64, whence int) (int64, unix.Errno) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return 0, unix.EBADF
	}
	if whence != unix.SEEK_SET && whence != unix.SEEK_CUR {
		return 0, unix.EINVAL
	}
	n, errno := seekOffset(d.pos, 0, off, whence)
	if errno != 0 {
		return 0, errno
	}
	d.pos = n
	return n, 0
}

func (d *dirFile) Stat() (Stat, unix.Errno) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return Stat{}, unix.EBADF
	}
	return d.statLocked()
}

func (d *dirFile) statLocked() (Stat, unix.Errno) {
	if d.fd >= 0 {
		return fstatFd(d.fd)
	}
	if d.synth == nil {
		return Stat{}, unix.EBADF
	}
	d.fs.mu.RLock()
	defer d.fs.mu.RUnlock()
	return d.synth.stat(), 0
}

func (d *dirFile) Getdents64(size int) ([]byte, unix.Errno) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, unix.EBADF
	}
	if d.entries == nil || d.pos == 0 {
		if errno := d.load(); errno != 0 {
			return nil, errno
		}
	}
	var buf []byte
	for d.pos >= 0 && d.pos < int64(len(d.entries)) {
		e := d.entries[d.pos]
		if len(buf)+direntRecLen(e.Name) > size {
			break
		}
		buf = AppendDirent64(buf, e, d.pos+1)
		d.pos++
	}
	if len(buf) == 0 && d.pos < int64(len(d.entries)) {
		return nil, unix.EINVAL // the next record does not fit
	}
	return buf, 0
}

// load takes the snapshot of the listing: ".", "..", then the host and
// synthetic entries by name, a synthetic entry hiding a host one.
func (d *dirFile) load() unix.Errno {
	self, errno := d.statLocked()
	if errno != 0 {
		return errno
	}
	parentIno := self.Ino // ".." of the root is the root
	if len(d.comps) > 0 {
		if st, errno := d.fs.Stat("/", joinPath(d.comps[:len(d.comps)-1])); errno == 0 {
			parentIno = st.Ino
		}
	}

	var synthetic []*node
	if d.synth != nil {
		d.fs.mu.RLock()
		synthetic = d.synth.sortedChildren()
		d.fs.mu.RUnlock()
	}
	hidden := make(map[string]bool, len(synthetic))
	for _, n := range synthetic {
		hidden[n.name] = true
	}

	var listing []Dirent
	host := map[string]Dirent{}
	if d.fd >= 0 {
		hostEntries, errno := readHostDir(d.fd)
		if errno != 0 {
			return errno
		}
		for _, e := range hostEntries {
			if e.Name == "." || e.Name == ".." {
				continue
			}
			if hidden[e.Name] {
				host[e.Name] = e
				continue
			}
			listing = append(listing, e)
		}
	}
	for _, n := range synthetic {
		e := Dirent{Ino: n.ino, Type: n.direntType(), Name: n.name}
		if h, ok := host[n.name]; ok && n.kind == nodeDir && h.Type == DTDir {
			// A synthetic directory over a host one stats as the host one.
			e.Ino = h.Ino
		}
		listing = append(listing, e)
	}
	sort.Slice(listing, func(i, j int) bool { return listing[i].Name < listing[j].Name })

	d.entries = append([]Dirent{
		{Ino: self.Ino, Type: DTDir, Name: "."},
		{Ino: parentIno, Type: DTDir, Name: ".."},
	}, listing...)
	return 0
}

// readHostDir lists a host directory from its start.
func readHostDir(fd int) ([]Dirent, unix.Errno) {
	if _, err := unix.Seek(fd, 0, unix.SEEK_SET); err != nil {
		return nil, errnoOf(err)
	}
	var out []Dirent
	buf := make([]byte, 32<<10)
	for {
		n, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, errnoOf(err)
		}
		if n <= 0 {
			return out, 0
		}
		out = append(out, ParseDirents64(buf[:n])...)
	}
}

func (d *dirFile) Ioctl(uint64, uint64, Memory) (uint64, unix.Errno) { return 0, unix.ENOTTY }

// MmapBacking fails with ENODEV: directories cannot be mapped.
func (d *dirFile) MmapBacking(uint64, uint64, uint32, bool) (Backing, unix.Errno) {
	return nil, unix.ENODEV
}

func (d *dirFile) Close() unix.Errno {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return unix.EBADF
	}
	d.closed = true
	d.entries = nil
	if d.fd >= 0 {
		unix.Close(d.fd)
		d.fd = -1
	}
	return 0
}

func (d *dirFile) Describe() FileState {
	d.mu.Lock()
	defer d.mu.Unlock()
	return FileState{Kind: KindDirectory, Path: d.path, Flags: d.Flags(), Offset: d.pos}
}
