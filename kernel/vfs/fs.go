package vfs

import (
	"crypto/rand"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/emuckpt/emuckpt/guestmm"
	"golang.org/x/sys/unix"
)

// Options configures an FS.
type Options struct {
	// Root is the host directory mounted read-only at the guest's "/".
	// Empty means no root: only the synthetic files exist.
	Root string
	// Stdin, Stdout and Stderr are the host files behind the guest's
	// descriptors 0, 1 and 2 (see FS.NewFDTable). Nil means /dev/null.
	// Closing a guest descriptor never closes them.
	Stdin, Stdout, Stderr *os.File
	// Random is the source of /dev/urandom and /dev/random; nil means
	// crypto/rand. It is read under a lock, so it need not be safe for
	// concurrent use.
	Random io.Reader
	// Maps generates the content of /proc/self/maps (see AddFile for
	// when); nil means an empty file. It is not used with Procs.
	Maps func() []byte
	// Procs, when set, makes /proc show the guest's processes:
	// /proc/self, /proc/thread-self and a directory per process (see
	// Processes). Without it, /proc holds only self/maps.
	Procs Processes
	// Now gives the time for tmpfs timestamps (CLOCK_REALTIME); nil means
	// the host's clock.
	Now func() Timespec
	// Frames is the guest RAM tmpfs pages are allocated from (they are
	// guest memory, as Linux's page cache is). Nil means a private 64 MiB
	// pool, for tests.
	Frames *guestmm.Frames
}

// FS is the guest's view of files: a read-only root overlaid with
// synthetic files. Its methods are safe for concurrent use.
type FS struct {
	opts Options
	root *hostRoot // nil without a root

	mu      sync.RWMutex // guards the synthetic tree
	tree    *node
	nextIno uint64
	mounts  []*tmpMount // tmpfs mounts, in mount order
	// memfdMnt holds memfd_create's files; nil until the first one.
	memfdMnt *tmpMount
	frames   *guestmm.Frames

	randomMu sync.Mutex
	random   io.Reader

	backings backingCache // the host files behind mappings

	sockets *SocketNamespace // AF_UNIX abstract names
}

// Sockets is the FS's AF_UNIX namespace (abstract names; path names are
// socket inodes of a tmpfs).
func (fs *FS) Sockets() *SocketNamespace { return fs.sockets }

// New makes an FS. The built-in synthetic files are /dev/null, /dev/zero,
// /dev/random, /dev/urandom and /proc/self/maps.
func New(opts Options) (*FS, error) {
	fs := &FS{
		opts:    opts,
		tree:    &node{kind: nodeDir, ino: firstSyntheticIno, children: map[string]*node{}},
		nextIno: firstSyntheticIno,
		random:  opts.Random,
		frames:  opts.Frames,
		sockets: NewSocketNamespace(),
	}
	if fs.frames == nil {
		const pool = 64 << 20
		fs.frames = guestmm.NewFrames(make([]byte, pool), pageSize, pool)
	}
	if fs.random == nil {
		fs.random = rand.Reader
	}
	if opts.Root != "" {
		root, err := openHostRoot(opts.Root)
		if err != nil {
			return nil, err
		}
		fs.root = root
	}
	builtins := []struct {
		path string
		info DeviceInfo
		open func(int) (File, unix.Errno)
	}{
		{"/dev/null", DeviceInfo{Major: 1, Minor: 3}, func(int) (File, unix.Errno) { return &nullDevice{}, 0 }},
		{"/dev/zero", DeviceInfo{Major: 1, Minor: 5}, func(int) (File, unix.Errno) { return &zeroDevice{}, 0 }},
		{"/dev/random", DeviceInfo{Major: 1, Minor: 8}, fs.openRandom},
		{"/dev/urandom", DeviceInfo{Major: 1, Minor: 9}, fs.openRandom},
	}
	for _, b := range builtins {
		if err := fs.AddDevice(b.path, b.info, b.open); err != nil {
			fs.Close()
			return nil, err
		}
	}
	if opts.Procs != nil {
		if err := fs.addProcfs(opts.Procs); err != nil {
			fs.Close()
			return nil, err
		}
		// udev's links into /proc/self/fd, which programs open as files.
		for _, l := range [][2]string{{"/dev/fd", "/proc/self/fd"}, {"/dev/stdin", "/proc/self/fd/0"},
			{"/dev/stdout", "/proc/self/fd/1"}, {"/dev/stderr", "/proc/self/fd/2"}} {
			if err := fs.AddSymlink(l[0], l[1]); err != nil {
				fs.Close()
				return nil, err
			}
		}
		return fs, nil
	}
	maps := opts.Maps
	if maps == nil {
		maps = func() []byte { return nil }
	}
	if err := fs.AddFile("/proc/self/maps", maps); err != nil {
		fs.Close()
		return nil, err
	}
	return fs, nil
}

// Close releases the root descriptor. Files already open stay usable.
func (fs *FS) Close() error {
	if fs.root != nil {
		fs.root.close()
	}
	fs.backings.close()
	return nil
}

// __O_TMPFILE, the bit that O_TMPFILE adds to O_DIRECTORY.
const oTmpfileBit = unix.O_TMPFILE &^ unix.O_DIRECTORY

// Open is open(2) of path relative to cwd. The mode argument of open(2)
// does not matter: nothing can be created.
func (fs *FS) Open(cwd, path string, flags int) (File, unix.Errno) {
	return fs.open(cwd, path, flags, nil)
}

// open is Open; a device is re-opened from state when state is not nil.
func (fs *FS) open(cwd, path string, flags int, state []byte) (File, unix.Errno) {
	if flags&unix.O_PATH != 0 {
		// O_PATH ignores every other flag but these.
		flags &= unix.O_PATH | unix.O_CLOEXEC | unix.O_DIRECTORY | unix.O_NOFOLLOW
	} else {
		if flags&oTmpfileBit != 0 {
			return fs.openTmpfile(cwd, path, flags)
		}
		if flags&unix.O_CREAT != 0 && flags&unix.O_DIRECTORY != 0 {
			return nil, unix.EINVAL
		}
	}
	creat := flags&unix.O_CREAT != 0
	follow := flags&unix.O_NOFOLLOW == 0
	if creat && flags&unix.O_EXCL != 0 {
		follow = false
	}
	if creat && strings.HasSuffix(cString(path), "/") {
		return nil, fs.createWithSlash(cwd, path)
	}

	r, lerr := fs.resolve(cwd, path, follow)
	if lerr != nil {
		if creat && lerr.missingLast {
			// The parent exists: creating writes its file system.
			pp, e := fs.resolveParent(cwd, path)
			if e != 0 {
				return nil, e
			}
			return nil, fs.mountOf(&pp.dir).change()
		}
		return nil, lerr.errno
	}
	if creat && flags&unix.O_EXCL != 0 {
		return nil, unix.EEXIST
	}
	if creat && r.isDir {
		return nil, unix.EISDIR
	}
	if flags&unix.O_DIRECTORY != 0 && !r.isDir {
		return nil, unix.ENOTDIR
	}
	if flags&unix.O_PATH != 0 {
		return fs.openPath(r, flags)
	}
	return fs.openResolved(r, flags, state)
}

// createWithSlash is O_CREAT of a path ending in "/": EISDIR once the
// directory part resolves.
func (fs *FS) createWithSlash(cwd, path string) unix.Errno {
	if len(cString(path)) >= PathMax {
		return unix.ENAMETOOLONG
	}
	p := strings.TrimRight(cString(path), "/")
	if p == "" {
		return unix.EISDIR // "/" itself
	}
	dir := "."
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		dir = p[:i+1]
	}
	if _, lerr := fs.resolve(cwd, dir, true); lerr != nil {
		return lerr.errno
	}
	return unix.EISDIR
}

// openTmpfile is O_TMPFILE without a mode (OpenMode has one).
func (fs *FS) openTmpfile(cwd, path string, flags int) (File, unix.Errno) {
	return fs.openTmpfileMode(cwd, path, flags, 0)
}

// openResolved opens what a path resolved to, for reading or writing.
func (fs *FS) openResolved(r resolved, flags int, state []byte) (File, unix.Errno) {
	wantsWrite := flags&unix.O_ACCMODE != unix.O_RDONLY || flags&unix.O_TRUNC != 0
	if r.isDir {
		if wantsWrite {
			return nil, unix.EISDIR
		}
		return fs.openDir(r, flags)
	}
	if n := r.synth; n != nil {
		switch n.kind {
		case nodeDevice:
			return fs.openDevice(n, r.path(), flags, state)
		case nodeRegular:
			return fs.openTmpRegular(n, r.path(), flags)
		case nodeSocket:
			return nil, unix.ENXIO
		case nodeGenerated:
			if wantsWrite {
				return nil, unix.EACCES
			}
			fs.mu.RLock()
			st := n.stat()
			fs.mu.RUnlock()
			return newGeneratedFile(r.path(), st, n.content, flags), 0
		default:
			if r.magic {
				return n.reopen(nil, flags)
			}
			return nil, unix.ELOOP // a symbolic link not followed
		}
	}
	switch r.st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		if wantsWrite {
			return nil, fs.mountOf(&r).change()
		}
		fd, errno := fs.root.openRead(r.comps, &r.st)
		if errno != 0 {
			return nil, errno
		}
		f := newRegularFile(r.path(), fd, flags)
		f.backings = &fs.backings
		return f, 0
	case unix.S_IFLNK:
		return nil, unix.ELOOP
	case unix.S_IFSOCK:
		return nil, unix.ENXIO
	default:
		// Device nodes and FIFOs of the root: a nodev mount.
		return nil, unix.EACCES
	}
}

// Stat is stat(2) of path relative to cwd.
func (fs *FS) Stat(cwd, path string) (Stat, unix.Errno) {
	return fs.statPath(cwd, path, true)
}

// Lstat is lstat(2): a final symbolic link is not followed.
func (fs *FS) Lstat(cwd, path string) (Stat, unix.Errno) {
	return fs.statPath(cwd, path, false)
}

func (fs *FS) statPath(cwd, path string, follow bool) (Stat, unix.Errno) {
	r, lerr := fs.resolve(cwd, path, follow)
	if lerr != nil {
		return Stat{}, lerr.errno
	}
	return fs.statResolved(&r)
}

func (fs *FS) statResolved(r *resolved) (Stat, unix.Errno) {
	if r.isDir && r.host {
		// A host directory, or the host directory under a synthetic one.
		st, errno := fs.root.stat(r.comps)
		if errno != 0 {
			return Stat{}, errno
		}
		return statFromHost(&st), 0
	}
	if r.synth != nil {
		if r.magic {
			return r.synth.magicStat()
		}
		fs.mu.RLock()
		defer fs.mu.RUnlock()
		return r.synth.stat(), 0
	}
	return statFromHost(&r.st), 0
}

// Access is access(2) (faccessat with flags 0): mode is F_OK or a mix of
// R_OK, W_OK and X_OK, checked against the host's real uid and gid. W_OK of
// a root file fails with EROFS.
func (fs *FS) Access(cwd, path string, mode uint32) unix.Errno {
	if mode&^uint32(unix.R_OK|unix.W_OK|unix.X_OK) != 0 {
		return unix.EINVAL
	}
	r, lerr := fs.resolve(cwd, path, true)
	if lerr != nil {
		return lerr.errno
	}
	if mode == unix.F_OK {
		return 0
	}
	st, errno := fs.statResolved(&r)
	if errno != 0 {
		return errno
	}
	if r.synth != nil && r.synth.ti != nil {
		return permits(&st, mode) // a tmpfs is writable
	}
	if mode&unix.W_OK != 0 {
		switch {
		case r.synth != nil && r.synth.kind == nodeGenerated:
			return unix.EACCES
		case r.isDir, st.Mode&unix.S_IFMT == unix.S_IFREG:
			if e := fs.mountOf(&r).wantWrite(); e != 0 {
				return e
			}
		}
	}
	return permits(&st, mode)
}

// permits checks mode against a file's permission bits as the kernel does
// for the host's real uid and gid.
func permits(st *Stat, mode uint32) unix.Errno {
	return permitsAs(st, mode, os.Getuid(), inGroup)
}

// permitsAs is permits for a given uid and group membership.
func permitsAs(st *Stat, mode uint32, uid int, member func(gid int) bool) unix.Errno {
	if uid == 0 {
		// Root may read and write anything, and execute what someone can.
		if mode&unix.X_OK != 0 && !st.IsDir() && st.Mode&0o111 == 0 {
			return unix.EACCES
		}
		return 0
	}
	bits := st.Mode & 0o7
	if int(st.Uid) == uid {
		bits = st.Mode >> 6 & 0o7
	} else if member(int(st.Gid)) {
		bits = st.Mode >> 3 & 0o7
	}
	if mode&bits != mode {
		return unix.EACCES
	}
	return 0
}

func inGroup(gid int) bool {
	if gid == os.Getgid() {
		return true
	}
	groups, _ := os.Getgroups()
	for _, g := range groups {
		if g == gid {
			return true
		}
	}
	return false
}

// Readlink is readlink(2): the target of the symbolic link at path, EINVAL
// if it is not one. The caller truncates it to the guest's buffer.
func (fs *FS) Readlink(cwd, path string) (string, unix.Errno) {
	r, lerr := fs.resolve(cwd, path, false)
	if lerr != nil {
		return "", lerr.errno
	}
	if r.synth != nil {
		if r.synth.kind == nodeSymlink {
			if r.synth.target == "" {
				return "", unix.ENOENT // /proc/PID/exe of a zombie
			}
			return r.synth.target, 0
		}
		return "", unix.EINVAL
	}
	if r.isDir || r.st.Mode&unix.S_IFMT != unix.S_IFLNK {
		return "", unix.EINVAL
	}
	fd, st, errno := fs.root.lstat(r.comps)
	if errno != 0 {
		return "", errno
	}
	defer unix.Close(fd)
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		return "", unix.EINVAL
	}
	return readlinkFd(fd)
}

// Chdir is chdir(2): it returns the canonical absolute guest path of the
// directory at path, the new cwd.
func (fs *FS) Chdir(cwd, path string) (string, unix.Errno) {
	r, lerr := fs.resolve(cwd, path, true)
	if lerr != nil {
		return "", lerr.errno
	}
	if !r.isDir {
		return "", unix.ENOTDIR
	}
	st, errno := fs.statResolved(&r)
	if errno != 0 {
		return "", errno
	}
	if errno := permits(&st, unix.X_OK); errno != 0 {
		return "", errno
	}
	return r.path(), 0
}

// DirPath is the guest path of a directory descriptor, for fchdir(2) and
// as the cwd of the *at system calls; ENOTDIR if f is not a directory.
func DirPath(f File) (string, unix.Errno) {
	d := f.Describe()
	switch d.Kind {
	case KindDirectory:
		return d.Path, 0
	case KindPath:
		st, errno := f.Stat()
		if errno != 0 {
			return "", errno
		}
		if st.IsDir() {
			return d.Path, 0
		}
	}
	return "", unix.ENOTDIR
}

// Reopen makes a new open file description equivalent to a described one,
// typically in a process restored from a checkpoint: the same file, flags
// and offset. It fails with ESTALE if the path now names another kind of
// file.
func (fs *FS) Reopen(s FileState) (File, unix.Errno) {
	var f File
	var errno unix.Errno
	switch s.Kind {
	case KindStdio:
		f = fs.stdio(s.Path)
		if f == nil {
			return nil, unix.EINVAL
		}
		f.SetFlags(s.Flags)
		return f, 0
	case KindTmpfs:
		return fs.reopenTmpfs(s)
	case KindPath:
		f, errno = fs.Open("/", s.Path, unix.O_PATH|s.Flags&(unix.O_NOFOLLOW|unix.O_DIRECTORY))
	case KindRegular, KindDirectory, KindDevice, KindGenerated:
		f, errno = fs.open("/", s.Path, s.Flags&^(unix.O_CREAT|unix.O_EXCL|unix.O_TRUNC|unix.O_PATH|oTmpfileBit), s.Device)
	default:
		return nil, unix.EINVAL
	}
	if errno != 0 {
		return nil, errno
	}
	if f.Describe().Kind != s.Kind {
		f.Close()
		return nil, unix.ESTALE
	}
	if s.Offset != 0 {
		if _, errno := f.Lseek(s.Offset, unix.SEEK_SET); errno != 0 && errno != unix.ESPIPE {
			f.Close()
			return nil, errno
		}
	}
	return f, 0
}
