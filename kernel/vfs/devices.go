package vfs

import (
	"io"

	"golang.org/x/sys/unix"
)

// deviceFile is an open synthetic character device: the device's own File,
// with the identity (Stat, Describe) supplied from its registration.
type deviceFile struct {
	File // the device's implementation
	flagSet
	path string
	st   Stat
}

func (fs *FS) openDevice(n *node, path string, flags int, state []byte) (File, unix.Errno) {
	open := n.open
	if state != nil && n.reopen != nil {
		open = func(flags int) (File, unix.Errno) { return n.reopen(state, flags) }
	}
	inner, errno := open(flags)
	if errno != 0 {
		return nil, errno
	}
	if inner == nil {
		return nil, unix.ENXIO
	}
	fs.mu.RLock()
	st := n.stat()
	fs.mu.RUnlock()
	d := &deviceFile{File: inner, path: path, st: st}
	d.flags = descriptionFlags(flags)
	inner.SetFlags(d.flags)
	return d, 0
}

// ReadsFull is the device's (see FullReader).
func (d *deviceFile) ReadsFull() bool {
	r, ok := d.File.(FullReader)
	return ok && r.ReadsFull()
}

// Unwrap returns the device's own File.
func (d *deviceFile) Unwrap() File { return d.File }

// Read, Pread, Write and Pwrite check the access mode, so that a device
// sees only the operations its opener asked for.
func (d *deviceFile) Read(p []byte) (int, unix.Errno) {
	if !readable(d.Flags()) {
		return 0, unix.EBADF
	}
	return d.File.Read(p)
}

func (d *deviceFile) Pread(p []byte, off int64) (int, unix.Errno) {
	if !readable(d.Flags()) {
		return 0, unix.EBADF
	}
	return d.File.Pread(p, off)
}

func (d *deviceFile) Write(p []byte) (int, unix.Errno) {
	if !writable(d.Flags()) {
		return 0, unix.EBADF
	}
	return d.File.Write(p)
}

func (d *deviceFile) Pwrite(p []byte, off int64) (int, unix.Errno) {
	if !writable(d.Flags()) {
		return 0, unix.EBADF
	}
	return d.File.Pwrite(p, off)
}

func (d *deviceFile) Stat() (Stat, unix.Errno) { return d.st, 0 }

func (d *deviceFile) Flags() int { return d.flagSet.Flags() }

func (d *deviceFile) SetFlags(arg int) {
	d.flagSet.SetFlags(arg)
	d.File.SetFlags(d.flagSet.Flags())
}

func (d *deviceFile) Describe() FileState {
	var off int64
	if n, errno := d.File.Lseek(0, unix.SEEK_CUR); errno == 0 {
		off = n
	}
	st := FileState{Kind: KindDevice, Path: d.path, Flags: d.Flags(), Offset: off}
	if dd, ok := d.File.(DeviceDescriber); ok {
		st.Device = dd.DescribeDevice()
	}
	return st
}

// MmapBacking is the device's, or ENODEV for a device that cannot be
// mapped. Linux's access checks come first: any mapping needs the device
// open for reading, a shared writable one also for writing (EACCES).
func (d *deviceFile) MmapBacking(off, length uint64, prot uint32, shared bool) (Backing, unix.Errno) {
	m, ok := d.File.(Mappable)
	if !ok {
		return nil, unix.ENODEV
	}
	flags := d.Flags()
	if !readable(flags) || shared && prot&unix.PROT_WRITE != 0 && !writable(flags) {
		return nil, unix.EACCES
	}
	return m.MmapBacking(off, length, prot, shared)
}

// MapsAnonymous is the device's (see AnonymousMapper).
func (d *deviceFile) MapsAnonymous() bool {
	a, ok := d.File.(AnonymousMapper)
	return ok && a.MapsAnonymous()
}

// nullDevice is /dev/null: reads see end of file, writes vanish.
type nullDevice struct{ DeviceBase }

func (*nullDevice) Read([]byte) (int, unix.Errno)              { return 0, 0 }
func (*nullDevice) Pread([]byte, int64) (int, unix.Errno)      { return 0, 0 }
func (*nullDevice) Write(p []byte) (int, unix.Errno)           { return len(p), 0 }
func (*nullDevice) Pwrite(p []byte, _ int64) (int, unix.Errno) { return len(p), 0 }

// Lseek always lands on 0, as Linux's null_lseek.
func (*nullDevice) Lseek(int64, int) (int64, unix.Errno) { return 0, 0 }

// zeroDevice is /dev/zero: reads see zeros, writes vanish, and a mapping is
// anonymous memory.
type zeroDevice struct{ DeviceBase }

func (*zeroDevice) Read(p []byte) (int, unix.Errno)            { clear(p); return len(p), 0 }
func (*zeroDevice) Pread(p []byte, _ int64) (int, unix.Errno)  { clear(p); return len(p), 0 }
func (*zeroDevice) Write(p []byte) (int, unix.Errno)           { return len(p), 0 }
func (*zeroDevice) Pwrite(p []byte, _ int64) (int, unix.Errno) { return len(p), 0 }
func (*zeroDevice) Lseek(int64, int) (int64, unix.Errno)       { return 0, 0 }
func (*zeroDevice) MapsAnonymous() bool                        { return true }
func (*zeroDevice) ReadsFull() bool                            { return true }

// MmapBacking is zeros, for a caller that does not special-case
// MapsAnonymous.
func (*zeroDevice) MmapBacking(uint64, uint64, uint32, bool) (Backing, unix.Errno) {
	return zeroBacking{}, 0
}

type zeroBacking struct{}

func (zeroBacking) ReadAt(p []byte, _ int64) (int, error) { clear(p); return len(p), nil }
func (zeroBacking) Name() string                          { return "/dev/zero" }

// randomDevice is /dev/urandom and /dev/random, reading Options.Random.
// Writes are accepted and ignored, as entropy the kernel may mix in.
type randomDevice struct {
	DeviceBase
	fs *FS
}

func (fs *FS) openRandom(int) (File, unix.Errno) { return &randomDevice{fs: fs}, 0 }

func (r *randomDevice) Read(p []byte) (int, unix.Errno) {
	r.fs.randomMu.Lock()
	defer r.fs.randomMu.Unlock()
	n, err := io.ReadFull(r.fs.random, p)
	if n == 0 && err != nil {
		return 0, unix.EIO
	}
	return n, 0
}

func (r *randomDevice) Pread(p []byte, _ int64) (int, unix.Errno) { return r.Read(p) }

// ReadsFull: Linux's urandom (and, since 5.18, random once initialised)
// fills the whole buffer; only a pending signal cuts it short, which a
// read here cannot meet.
func (*randomDevice) ReadsFull() bool                            { return true }
func (*randomDevice) Write(p []byte) (int, unix.Errno)           { return len(p), 0 }
func (*randomDevice) Pwrite(p []byte, _ int64) (int, unix.Errno) { return len(p), 0 }

// Lseek succeeds without moving, as Linux's noop_llseek.
func (*randomDevice) Lseek(int64, int) (int64, unix.Errno) { return 0, 0 }
