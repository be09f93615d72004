package vfs

import (
	"encoding/binary"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// Statfs is the Linux x86-64 struct statfs, as statfs(2) and fstatfs(2)
// return it.
type Statfs struct {
	Type    int64
	Bsize   int64
	Blocks  uint64
	Bfree   uint64
	Bavail  uint64
	Files   uint64
	Ffree   uint64
	Fsid    [2]int32
	Namelen int64
	Frsize  int64
	Flags   int64
}

// StatfsSize is the size of the Linux x86-64 struct statfs.
const StatfsSize = 120

// Filesystem magic numbers (linux/magic.h) and statfs f_flags bits.
const (
	ProcSuperMagic = 0x9fa0
	TmpfsMagic     = 0x01021994 // also devtmpfs
	RamfsMagic     = 0x858458f6
	PipefsMagic    = 0x50495045
	SockfsMagic    = 0x534f434b

	StRdonly   = 0x0001
	StNosuid   = 0x0002
	StNodev    = 0x0004
	StNoexec   = 0x0008
	StValid    = 0x0020 // f_flags is filled in
	StRelatime = 0x0400
)

// Marshal returns the StatfsSize bytes of the kernel's struct statfs.
func (s Statfs) Marshal() []byte {
	b := make([]byte, StatfsSize)
	le := binary.LittleEndian
	for i, v := range []uint64{uint64(s.Type), uint64(s.Bsize), s.Blocks, s.Bfree, s.Bavail, s.Files, s.Ffree} {
		le.PutUint64(b[8*i:], v)
	}
	le.PutUint32(b[56:], uint32(s.Fsid[0]))
	le.PutUint32(b[60:], uint32(s.Fsid[1]))
	le.PutUint64(b[64:], uint64(s.Namelen))
	le.PutUint64(b[72:], uint64(s.Frsize))
	le.PutUint64(b[80:], uint64(s.Flags))
	// b[88:120] is f_spare[4].
	return b
}

// The synthetic file systems, as Linux mounts them: procfs at /proc,
// devtmpfs at /dev, and, when there is no root, a read-only ramfs at /.
var (
	procStatfs = Statfs{Type: ProcSuperMagic, Bsize: 4096, Namelen: 255, Frsize: 4096,
		Flags: StValid | StNosuid | StNodev | StNoexec | StRelatime}
	devStatfs = Statfs{Type: TmpfsMagic, Bsize: 4096, Namelen: 255, Frsize: 4096,
		Flags: StValid | StNosuid | StRelatime}
	emptyRootStatfs = Statfs{Type: RamfsMagic, Bsize: 4096, Namelen: 255, Frsize: 4096,
		Flags: StValid | StRdonly | StRelatime}
	pipeStatfs = Statfs{Type: PipefsMagic, Bsize: 4096, Namelen: 255, Frsize: 4096, Flags: StValid}
	sockStatfs = Statfs{Type: SockfsMagic, Bsize: 4096, Namelen: 255, Frsize: 4096, Flags: StValid}
)

// syntheticStatfs is the file system a synthetic path lives in, by its
// first component.
func syntheticStatfs(path string) Statfs {
	first, _, _ := strings.Cut(strings.TrimPrefix(path, "/"), "/")
	switch first {
	case "proc":
		return procStatfs
	case "dev":
		return devStatfs
	}
	return emptyRootStatfs
}

// statfsFromHost converts the host's statfs of a root object: the host
// file system's figures, mounted read-only.
func statfsFromHost(h *unix.Statfs_t) Statfs {
	return Statfs{
		Type: h.Type, Bsize: h.Bsize, Blocks: h.Blocks, Bfree: h.Bfree, Bavail: h.Bavail,
		Files: h.Files, Ffree: h.Ffree, Fsid: h.Fsid.Val, Namelen: h.Namelen, Frsize: h.Frsize,
		Flags: h.Flags | StValid | StRdonly,
	}
}

func hostFstatfs(fd int, rdonly bool) (Statfs, unix.Errno) {
	var h unix.Statfs_t
	if err := unix.Fstatfs(fd, &h); err != nil {
		return Statfs{}, errnoOf(err)
	}
	s := statfsFromHost(&h)
	if !rdonly {
		s.Flags = h.Flags | StValid
	}
	return s, 0
}

// Statfs is statfs(2) of path relative to cwd.
func (fs *FS) Statfs(cwd, path string) (Statfs, unix.Errno) {
	r, lerr := fs.resolve(cwd, path, true)
	if lerr != nil {
		return Statfs{}, lerr.errno
	}
	return fs.statfsResolved(&r)
}

func (fs *FS) statfsResolved(r *resolved) (Statfs, unix.Errno) {
	if st, ok := fs.tmpfsStatfs(r.synth); ok {
		return st, 0
	}
	// /proc and /dev are synthetic mounts over the root, whatever the
	// root has there; other synthetic directories (/ itself) are parts of
	// the root when there is one.
	if r.synth != nil && (fs.root == nil || !r.host || syntheticStatfs(r.path()) != emptyRootStatfs) {
		return syntheticStatfs(r.path()), 0
	}
	fd, errno := fs.root.open(r.comps, unix.O_PATH)
	if errno != 0 {
		return Statfs{}, errno
	}
	defer unix.Close(fd)
	return hostFstatfs(fd, true)
}

// FileStatfs is fstatfs(2) of an open file.
func (fs *FS) FileStatfs(f File) (Statfs, unix.Errno) {
	switch f := f.(type) {
	case *regularFile:
		f.mu.RLock()
		defer f.mu.RUnlock()
		if f.fd < 0 {
			return Statfs{}, unix.EBADF
		}
		return hostFstatfs(f.fd, true)
	case *stdioFile:
		// The host's own stream (a terminal, a pipe, a file): what Linux
		// would say of it.
		return hostFstatfs(f.fd, false)
	case *tmpFile:
		// A tmpfs file (or memfd) may have no name left to look up.
		f.fs.mu.RLock()
		defer f.fs.mu.RUnlock()
		return f.ti.mnt.statfs(), 0
	case *dirFile:
		if st, ok := fs.tmpfsStatfs(f.synth); ok {
			return st, 0
		}
	case *pipeEnd:
		return pipeStatfs, 0
	case *Socket:
		return sockStatfs, 0
	case *deviceFile:
		return syntheticStatfs(f.path), 0
	case *generatedFile:
		return syntheticStatfs(f.path), 0
	}
	// Other directories and O_PATH descriptors: by their path.
	d := f.Describe()
	if d.Kind == KindStdio {
		return Statfs{}, unix.EBADF
	}
	return fs.Statfs("/", d.Path)
}

// tmpfsStatfs is the statfs of the tmpfs a node lies on (ok false for a
// node that is not a tmpfs inode).
func (fs *FS) tmpfsStatfs(n *node) (Statfs, bool) {
	fs.mu.RLock()
	defer fs.mu.RUnlock()
	if n == nil || n.ti == nil {
		return Statfs{}, false
	}
	return n.ti.mnt.statfs(), true
}

// fsTypeNames names the file systems a root may live on, by magic, for
// /proc/PID/mounts.
var fsTypeNames = map[int64]string{
	0xEF53: "ext4", 0x58465342: "xfs", 0x9123683E: "btrfs", TmpfsMagic: "tmpfs",
	0x794c7630: "overlay", 0x6969: "nfs", 0x2fc12fc1: "zfs", 0xF2F52010: "f2fs",
	0x01021997: "9p", 0x65735546: "fuse", 0x73717368: "squashfs", RamfsMagic: "ramfs",
}

// mountsText is /proc/PID/mounts, in Linux's format: the root (read-only),
// /proc, /dev and the tmpfs mounts, in the order they were mounted.
func (fs *FS) mountsText() []byte {
	root := "none / ramfs ro,relatime 0 0\n"
	if fs.root != nil {
		name := "rootfs"
		if fd, errno := fs.root.open(nil, unix.O_PATH); errno == 0 {
			if st, errno := hostFstatfs(fd, true); errno == 0 && fsTypeNames[st.Type] != "" {
				name = fsTypeNames[st.Type]
			}
			unix.Close(fd)
		}
		root = "/dev/root / " + name + " ro,relatime 0 0\n"
	}
	b := []byte(root)
	b = append(b, "proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0\n"...)
	b = append(b, "devtmpfs /dev devtmpfs rw,nosuid,relatime,mode=755 0 0\n"...)
	fs.mu.RLock()
	defer fs.mu.RUnlock()
	for _, m := range fs.mounts {
		b = fmt.Appendf(b, "tmpfs %s tmpfs rw,relatime,size=%dk 0 0\n", escapeMountPath(m.path), m.limit/1024)
	}
	return b
}

// escapeMountPath escapes space, tab, newline and backslash as octal, as
// Linux's mounts files do.
func escapeMountPath(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		switch c := p[i]; c {
		case ' ', '\t', '\n', '\\':
			fmt.Fprintf(&b, "\\%03o", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// TmpfsBytes is the memory the tmpfs mounts' pages take (Shmem in
// /proc/meminfo).
func (fs *FS) TmpfsBytes() int64 {
	fs.mu.RLock()
	defer fs.mu.RUnlock()
	var n int64
	for _, m := range fs.mounts {
		n += m.used
	}
	return n
}
