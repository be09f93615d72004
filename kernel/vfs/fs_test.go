package vfs

import (
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestOpenFlags(t *testing.T) {
	lookupModes(t, func(t *testing.T, fs *FS, tree *testTree) {
		tests := []struct {
			name  string
			path  string
			flags int
			errno unix.Errno
		}{
			{"read", "/etc/passwd", unix.O_RDONLY, 0},
			{"write", "/etc/passwd", unix.O_WRONLY, unix.EROFS},
			{"read write", "/etc/passwd", unix.O_RDWR, unix.EROFS},
			{"access mode 3", "/etc/passwd", unix.O_ACCMODE, unix.EROFS},
			{"truncate read-only", "/etc/passwd", unix.O_RDONLY | unix.O_TRUNC, unix.EROFS},
			{"append", "/etc/passwd", unix.O_WRONLY | unix.O_APPEND, unix.EROFS},
			{"create existing, read-only", "/etc/passwd", unix.O_RDONLY | unix.O_CREAT, 0},
			{"create existing, write", "/etc/passwd", unix.O_WRONLY | unix.O_CREAT, unix.EROFS},
			{"create exclusive existing", "/etc/passwd", unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL, unix.EEXIST},
			{"create exclusive existing symlink", "/dangling", unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL, unix.EEXIST},
			{"create through dangling symlink", "/dangling", unix.O_WRONLY | unix.O_CREAT, unix.EROFS},
			{"create missing", "/etc/newfile", unix.O_WRONLY | unix.O_CREAT, unix.EROFS},
			{"create missing read-only", "/etc/newfile", unix.O_RDONLY | unix.O_CREAT, unix.EROFS},
			{"create exclusive missing", "/etc/newfile", unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL, unix.EROFS},
			{"create in missing dir", "/nodir/newfile", unix.O_WRONLY | unix.O_CREAT, unix.ENOENT},
			{"create under a file", "/etc/passwd/newfile", unix.O_WRONLY | unix.O_CREAT, unix.ENOTDIR},
			{"create in synthetic dir", "/dev/newdev", unix.O_WRONLY | unix.O_CREAT, unix.EROFS},
			{"create in synthetic-only dir", "/proc/self/new", unix.O_WRONLY | unix.O_CREAT, unix.EROFS},
			{"create with trailing slash", "/etc/newdir/", unix.O_WRONLY | unix.O_CREAT, unix.EISDIR},
			{"create existing dir with slash", "/etc/", unix.O_RDONLY | unix.O_CREAT, unix.EISDIR},
			{"create with slash in missing dir", "/nodir/x/", unix.O_RDONLY | unix.O_CREAT, unix.ENOENT},
			{"create on a dir", "/etc", unix.O_RDONLY | unix.O_CREAT, unix.EISDIR},
			{"create directory", "/etc/x", unix.O_RDONLY | unix.O_CREAT | unix.O_DIRECTORY, unix.EINVAL},
			{"dir for writing", "/etc", unix.O_WRONLY, unix.EISDIR},
			{"dir truncate", "/etc", unix.O_RDONLY | unix.O_TRUNC, unix.EISDIR},
			{"synthetic dir for writing", "/proc", unix.O_RDWR, unix.EISDIR},
			{"directory flag", "/etc", unix.O_RDONLY | unix.O_DIRECTORY, 0},
			{"directory flag on file", "/etc/passwd", unix.O_RDONLY | unix.O_DIRECTORY, unix.ENOTDIR},
			{"directory flag on device", "/dev/null", unix.O_RDONLY | unix.O_DIRECTORY, unix.ENOTDIR},
			{"nofollow on symlink", "/file_link", unix.O_RDONLY | unix.O_NOFOLLOW, unix.ELOOP},
			{"nofollow on file", "/etc/passwd", unix.O_RDONLY | unix.O_NOFOLLOW, 0},
			{"tmpfile", "/etc", unix.O_RDWR | unix.O_TMPFILE, unix.EROFS},
			{"tmpfile read-only", "/etc", unix.O_RDONLY | unix.O_TMPFILE, unix.EINVAL},
			{"tmpfile on a file", "/etc/passwd", unix.O_RDWR | unix.O_TMPFILE, unix.ENOTDIR},
			{"tmpfile with create", "/etc", unix.O_RDWR | unix.O_TMPFILE | unix.O_CREAT, unix.EINVAL},
			{"device for writing", "/dev/null", unix.O_WRONLY, 0},
			{"device truncate", "/dev/null", unix.O_WRONLY | unix.O_TRUNC | unix.O_CREAT, 0},
			{"device exclusive", "/dev/null", unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL, unix.EEXIST},
			{"generated for writing", "/proc/self/maps", unix.O_WRONLY, unix.EACCES},
			{"path of symlink", "/file_link", unix.O_PATH | unix.O_NOFOLLOW, 0},
			{"path ignores write", "/etc/passwd", unix.O_PATH | unix.O_RDWR | unix.O_CREAT, 0},
			{"path directory on file", "/etc/passwd", unix.O_PATH | unix.O_DIRECTORY, unix.ENOTDIR},
			{"path of fifo", "/fifo", unix.O_PATH, 0},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				f, errno := fs.Open("/", tt.path, tt.flags)
				assert.Equal(t, tt.errno, errno, "got %v", errno)
				if errno == 0 {
					require.NotNil(t, f)
					assert.Zero(t, f.Close())
				}
			})
		}
		// Nothing was created.
		_, err := os.Lstat(filepath.Join(tree.root, "etc/newfile"))
		assert.True(t, os.IsNotExist(err))
	})
}

func TestFlagsOfDescription(t *testing.T) {
	lookupModes(t, func(t *testing.T, fs *FS, _ *testTree) {
		f, errno := fs.Open("/", "/etc/passwd", unix.O_RDONLY|unix.O_CLOEXEC|unix.O_CREAT|unix.O_NONBLOCK)
		require.Zero(t, errno)
		defer f.Close()
		assert.Equal(t, unix.O_RDONLY|unix.O_NONBLOCK|oLargefile, f.Flags())
		f.SetFlags(unix.O_APPEND | unix.O_RDWR | unix.O_DIRECTORY)
		assert.Equal(t, unix.O_RDONLY|unix.O_APPEND|oLargefile, f.Flags(), "F_SETFL changes O_APPEND and O_NONBLOCK only")

		p, errno := fs.Open("/", "/etc", unix.O_PATH|unix.O_DIRECTORY)
		require.Zero(t, errno)
		defer p.Close()
		assert.Equal(t, unix.O_PATH|unix.O_DIRECTORY|oLargefile, p.Flags())
	})
}

func TestStat(t *testing.T) {
	lookupModes(t, func(t *testing.T, fs *FS, tree *testTree) {
		var host unix.Stat_t
		require.NoError(t, unix.Stat(filepath.Join(tree.root, "etc/passwd"), &host))
		st, errno := fs.Stat("/", "/file_link")
		require.Zero(t, errno)
		assert.Equal(t, statFromHost(&host), st, "host stats pass through")

		lst, errno := fs.Lstat("/", "/file_link")
		require.Zero(t, errno)
		assert.Equal(t, uint32(unix.S_IFLNK), lst.Mode&unix.S_IFMT)
		assert.Equal(t, int64(len("etc/passwd")), lst.Size)

		lst, errno = fs.Lstat("/", "/dir_link/")
		require.Zero(t, errno)
		assert.True(t, lst.IsDir(), "a trailing slash follows the link")

		var rootSt unix.Stat_t
		require.NoError(t, unix.Stat(tree.root, &rootSt))
		st, errno = fs.Stat("/", "/")
		require.Zero(t, errno)
		assert.Equal(t, rootSt.Ino, st.Ino)

		// /dev overlays a host directory, so it stats as that directory.
		var devSt unix.Stat_t
		require.NoError(t, unix.Stat(filepath.Join(tree.root, "dev"), &devSt))
		st, errno = fs.Stat("/", "/dev")
		require.Zero(t, errno)
		assert.Equal(t, devSt.Ino, st.Ino)

		st, errno = fs.Stat("/", "/proc/self")
		require.Zero(t, errno)
		assert.Equal(t, uint32(unix.S_IFDIR|0o555), st.Mode)
		assert.Equal(t, syntheticDev, st.Dev)

		st, errno = fs.Stat("/", "/proc/self/maps")
		require.Zero(t, errno)
		assert.Equal(t, uint32(unix.S_IFREG|0o444), st.Mode)
		assert.Zero(t, st.Size)

		for _, dev := range []struct {
			path         string
			major, minor uint32
		}{
			{"/dev/null", 1, 3}, {"/dev/zero", 1, 5}, {"/dev/random", 1, 8}, {"/dev/urandom", 1, 9},
		} {
			st, errno := fs.Stat("/", dev.path)
			require.Zero(t, errno, dev.path)
			assert.Equal(t, uint32(unix.S_IFCHR|0o666), st.Mode, dev.path)
			assert.Equal(t, unix.Mkdev(dev.major, dev.minor), st.Rdev, dev.path)
			assert.Equal(t, dev.major, unix.Major(st.Rdev))
			assert.Equal(t, dev.minor, unix.Minor(st.Rdev))

			f, errno := fs.Open("/", dev.path, unix.O_RDWR)
			require.Zero(t, errno)
			fst, errno := f.Stat()
			require.Zero(t, errno)
			assert.Equal(t, st, fst, "fstat of an open device matches stat")
			f.Close()
		}

		_, errno = fs.Stat("/", "/nope")
		assert.Equal(t, unix.ENOENT, errno)
	})
}

func TestStatMarshal(t *testing.T) {
	var host unix.Stat_t
	require.NoError(t, unix.Stat("/proc/self/exe", &host))
	host.Atim.Nsec, host.Mtim.Nsec, host.Ctim.Nsec = 111, 222, 333
	host.Blksize = 4096
	// unix.Stat_t on amd64 is the kernel's struct stat, byte for byte.
	raw := unixStatBytes(&host)
	got := statFromHost(&host).Marshal()
	require.Len(t, got, StatSize)
	assert.Equal(t, raw, got)

	st := Stat{Dev: 1, Ino: 2, Nlink: 3, Mode: 4, Uid: 5, Gid: 6, Rdev: 7, Size: 8, Blksize: 9, Blocks: 10,
		Atime: Timespec{11, 12}, Mtime: Timespec{13, 14}, Ctime: Timespec{15, 16}}
	b := st.Marshal()
	for off, want := range map[int]byte{0: 1, 8: 2, 16: 3, 24: 4, 28: 5, 32: 6, 40: 7, 48: 8, 56: 9, 64: 10,
		72: 11, 80: 12, 88: 13, 96: 14, 104: 15, 112: 16} {
		assert.Equal(t, want, b[off], "offset %d", off)
	}
	assert.Equal(t, make([]byte, 24), b[120:], "reserved")
}

func TestAccess(t *testing.T) {
	lookupModes(t, func(t *testing.T, fs *FS, _ *testTree) {
		tests := []struct {
			path  string
			mode  uint32
			errno unix.Errno
		}{
			{"/etc/passwd", unix.F_OK, 0},
			{"/etc/passwd", unix.R_OK, 0},
			{"/etc/passwd", unix.W_OK, unix.EROFS},
			{"/etc/passwd", unix.X_OK, unix.EACCES},
			{"/bin/sh", unix.X_OK, 0},
			{"/bin/sh", unix.R_OK | unix.X_OK, 0},
			{"/etc", unix.W_OK, unix.EROFS},
			{"/etc", unix.X_OK, 0},
			{"/file_link", unix.R_OK, 0},
			{"/dangling", unix.F_OK, unix.ENOENT},
			{"/nope", unix.F_OK, unix.ENOENT},
			{"/dev/null", unix.R_OK | unix.W_OK, 0},
			{"/dev/null", unix.X_OK, unix.EACCES},
			{"/proc/self/maps", unix.R_OK, 0},
			{"/proc/self/maps", unix.W_OK, unix.EACCES},
			{"/proc", unix.W_OK, unix.EROFS},
			{"/etc/passwd", 8, unix.EINVAL},
		}
		for _, tt := range tests {
			assert.Equal(t, tt.errno, fs.Access("/", tt.path, tt.mode), "access(%s, %d)", tt.path, tt.mode)
		}
	})
}

func TestDirectoryListing(t *testing.T) {
	lookupModes(t, func(t *testing.T, fs *FS, _ *testTree) {
		tests := []struct {
			path string
			want []string
		}{
			{"/", []string{".", "..", "bin", "dangling", "dev", "devnull_link", "dir", "dir_link", "emptydir",
				"escape_deep", "escape_etc", "escape_up", "etc", "fifo", "file_link", "file_slash_link",
				"lib", "lib64", "loop1", "loop2", "magic", "magic_up", "maps_link", "proc", "selfloop",
				"to_outside", "to_outside_abs", "usr"}},
			{"/dev", []string{".", "..", "hostonly", "null", "random", "urandom", "zero"}},
			{"/proc", []string{".", "..", "self"}},
			{"/proc/self", []string{".", "..", "maps"}},
			{"/emptydir", []string{".", ".."}},
			{"/dir_link/sub", []string{".", "..", "file"}},
		}
		for _, tt := range tests {
			t.Run(tt.path, func(t *testing.T) {
				d, errno := fs.Open("/", tt.path, unix.O_RDONLY|unix.O_DIRECTORY)
				require.Zero(t, errno)
				defer d.Close()
				assert.Equal(t, tt.want, direntNames(t, d))
				// At the end, getdents returns nothing, and again.
				buf, errno := d.Getdents64(4096)
				assert.Zero(t, errno)
				assert.Empty(t, buf)
			})
		}
	})
}

func TestDirentsDetails(t *testing.T) {
	lookupModes(t, func(t *testing.T, fs *FS, tree *testTree) {
		d, errno := fs.Open("/", "/dev", unix.O_RDONLY)
		require.Zero(t, errno)
		defer d.Close()

		buf, errno := d.Getdents64(1 << 20)
		require.Zero(t, errno)
		entries := ParseDirents64(buf)
		byName := map[string]Dirent{}
		for _, e := range entries {
			byName[e.Name] = e
		}
		devSt, _ := fs.Stat("/", "/dev")
		rootSt, _ := fs.Stat("/", "/")
		nullSt, _ := fs.Stat("/", "/dev/null")
		var hostonly unix.Stat_t
		require.NoError(t, unix.Stat(filepath.Join(tree.root, "dev/hostonly"), &hostonly))

		assert.Equal(t, Dirent{Ino: devSt.Ino, Type: DTDir, Name: "."}, byName["."])
		assert.Equal(t, Dirent{Ino: rootSt.Ino, Type: DTDir, Name: ".."}, byName[".."])
		assert.Equal(t, Dirent{Ino: nullSt.Ino, Type: DTChr, Name: "null"}, byName["null"])
		assert.Equal(t, Dirent{Ino: hostonly.Ino, Type: DTReg, Name: "hostonly"}, byName["hostonly"])

		// Record layout: 8-byte aligned, d_off is the next entry's offset.
		off := 0
		for i := 0; off < len(buf); i++ {
			reclen := int(uint16(buf[off+16]) | uint16(buf[off+17])<<8)
			assert.Zero(t, reclen%8)
			assert.Equal(t, int64(i+1), int64(leUint64(buf[off+8:])))
			off += reclen
		}

		// The root's ".." is the root itself, not the host's parent.
		r, errno := fs.Open("/", "/", unix.O_RDONLY)
		require.Zero(t, errno)
		defer r.Close()
		buf, errno = r.Getdents64(1 << 20)
		require.Zero(t, errno)
		entries = ParseDirents64(buf)
		assert.Equal(t, rootSt.Ino, entries[1].Ino)
		assert.Equal(t, "..", entries[1].Name)
	})
}

func leUint64(b []byte) uint64 {
	var v uint64
	for i := 7; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v
}

func TestGetdentsBufferAndSeek(t *testing.T) {
	lookupModes(t, func(t *testing.T, fs *FS, _ *testTree) {
		d, errno := fs.Open("/", "/dev", unix.O_RDONLY)
		require.Zero(t, errno)
		defer d.Close()

		_, errno = d.Getdents64(0)
		assert.Equal(t, unix.EINVAL, errno)
		_, errno = d.Getdents64(direntRecLen(".") - 1)
		assert.Equal(t, unix.EINVAL, errno, "the first record does not fit")
		_, errno = d.Getdents64(-1)
		assert.Equal(t, unix.EINVAL, errno)

		// One record at a time.
		var names []string
		for {
			buf, errno := d.Getdents64(32)
			require.Zero(t, errno)
			if len(buf) == 0 {
				break
			}
			es := ParseDirents64(buf)
			require.Len(t, es, 1)
			names = append(names, es[0].Name)
		}
		assert.Equal(t, []string{".", "..", "hostonly", "null", "random", "urandom", "zero"}, names)

		// seekdir to the d_off of "null" continues after it.
		off, errno := d.Lseek(4, unix.SEEK_SET)
		require.Zero(t, errno)
		assert.Equal(t, int64(4), off)
		buf, errno := d.Getdents64(4096)
		require.Zero(t, errno)
		assert.Equal(t, []string{"random", "urandom", "zero"}, namesOf(ParseDirents64(buf)))
		assert.Equal(t, int64(7), d.Describe().Offset)

		_, errno = d.Lseek(0, unix.SEEK_END)
		assert.Equal(t, unix.EINVAL, errno)
		_, errno = d.Lseek(-1, unix.SEEK_SET)
		assert.Equal(t, unix.EINVAL, errno)
		off, errno = d.Lseek(1000, unix.SEEK_SET)
		require.Zero(t, errno)
		buf, errno = d.Getdents64(4096)
		assert.Zero(t, errno)
		assert.Empty(t, buf)

		// rewinddir.
		_, errno = d.Lseek(0, unix.SEEK_SET)
		require.Zero(t, errno)
		assert.Len(t, direntNames(t, d), 7)

		_, errno = d.Read(make([]byte, 8))
		assert.Equal(t, unix.EISDIR, errno)
		_, errno = d.Write(make([]byte, 8))
		assert.Equal(t, unix.EBADF, errno)

		f, errno := fs.Open("/", "/etc/passwd", unix.O_RDONLY)
		require.Zero(t, errno)
		defer f.Close()
		_, errno = f.Getdents64(4096)
		assert.Equal(t, unix.ENOTDIR, errno)
	})
}

func namesOf(es []Dirent) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Name)
	}
	return out
}

func TestAddSynthetic(t *testing.T) {
	lookupModes(t, func(t *testing.T, fs *FS, _ *testTree) {
		require.NoError(t, fs.AddFile("/sys/class/bsr/bsr8_0/bsr_size", func() []byte { return []byte("8192\n") }))
		require.NoError(t, fs.AddDevice("/dev/bsr8_0", DeviceInfo{Major: 248, Minor: 0, Perm: 0o600},
			func(int) (File, unix.Errno) { return &DeviceBase{}, 0 }))
		require.NoError(t, fs.AddSymlink("/proc/self/exe", "/bin/sh"))

		assert.Error(t, fs.AddFile("/sys/class/bsr/bsr8_0/bsr_size", func() []byte { return nil }), "exists")
		assert.Error(t, fs.AddFile("/sys/class/bsr/bsr8_0/bsr_size/x", func() []byte { return nil }), "not a dir")
		assert.Error(t, fs.AddFile("relative", func() []byte { return nil }))
		assert.Error(t, fs.AddFile("/", func() []byte { return nil }))
		assert.Error(t, fs.AddFile("/a/../b", func() []byte { return nil }))
		assert.Error(t, fs.AddFile("/x", nil))
		assert.Error(t, fs.AddDevice("/dev/y", DeviceInfo{}, nil))
		assert.Error(t, fs.AddSymlink("/z", ""))

		for _, tt := range []struct {
			dir  string
			want []string
		}{
			{"/sys", []string{".", "..", "class"}},
			{"/sys/class/bsr", []string{".", "..", "bsr8_0"}},
			{"/sys/class/bsr/bsr8_0", []string{".", "..", "bsr_size"}},
			{"/dev", []string{".", "..", "bsr8_0", "hostonly", "null", "random", "urandom", "zero"}},
			{"/proc/self", []string{".", "..", "exe", "maps"}},
		} {
			d, errno := fs.Open("/", tt.dir, unix.O_RDONLY|unix.O_DIRECTORY)
			require.Zero(t, errno, tt.dir)
			assert.Equal(t, tt.want, direntNames(t, d), tt.dir)
			d.Close()
		}
		root, errno := fs.Open("/", "/", unix.O_RDONLY)
		require.Zero(t, errno)
		assert.Contains(t, direntNames(t, root), "sys")
		root.Close()

		f, errno := fs.Open("/sys/class", "bsr/bsr8_0/bsr_size", unix.O_RDONLY)
		require.Zero(t, errno)
		assert.Equal(t, "8192\n", readAll(t, f))
		f.Close()

		st, errno := fs.Stat("/", "/dev/bsr8_0")
		require.Zero(t, errno)
		assert.Equal(t, uint32(unix.S_IFCHR|0o600), st.Mode)
		assert.Equal(t, unix.Mkdev(248, 0), st.Rdev)

		target, errno := fs.Readlink("/", "/proc/self/exe")
		require.Zero(t, errno)
		assert.Equal(t, "/bin/sh", target)
		f, errno = fs.Open("/", "/proc/self/exe", unix.O_RDONLY)
		require.Zero(t, errno)
		assert.Equal(t, "/bin/sh", f.Describe().Path)
		f.Close()
		_, errno = fs.Open("/", "/proc/self/exe", unix.O_RDONLY|unix.O_NOFOLLOW)
		assert.Equal(t, unix.ELOOP, errno)
		lst, errno := fs.Lstat("/", "/proc/self/exe")
		require.Zero(t, errno)
		assert.Equal(t, uint32(unix.S_IFLNK|0o777), lst.Mode)
	})
}

func TestGeneratedFile(t *testing.T) {
	calls := 0
	fs, err := New(Options{Maps: func() []byte {
		calls++
		return []byte("maps generation " + string(rune('0'+calls)) + "\n")
	}})
	require.NoError(t, err)
	defer fs.Close()

	f, errno := fs.Open("/", "/proc/self/maps", unix.O_RDONLY)
	require.Zero(t, errno)
	assert.Equal(t, "maps generation 1\n", readAll(t, f))
	assert.Equal(t, "maps generation 2\n", string(mustPread(t, f, 0, 64)), "a read from 0 generates it again")

	g, errno := fs.Open("/", "/proc/self/maps", unix.O_RDONLY)
	require.Zero(t, errno)
	assert.Equal(t, "maps generation 3\n", readAll(t, g))
	g.Close()

	off, errno := f.Lseek(5, unix.SEEK_SET)
	require.Zero(t, errno)
	assert.Equal(t, int64(5), off)
	off, errno = f.Lseek(2, unix.SEEK_CUR)
	require.Zero(t, errno)
	assert.Equal(t, int64(7), off)
	_, errno = f.Lseek(0, unix.SEEK_END)
	assert.Equal(t, unix.EINVAL, errno)
	_, errno = f.Lseek(-10, unix.SEEK_CUR)
	assert.Equal(t, unix.EINVAL, errno)
	_, errno = f.Pread(make([]byte, 1), -1)
	assert.Equal(t, unix.EINVAL, errno)
	_, errno = f.Write([]byte("x"))
	assert.Equal(t, unix.EBADF, errno)
	_, errno = f.(Mappable).MmapBacking(0, 4096, unix.PROT_READ, false)
	assert.Equal(t, unix.ENODEV, errno)
	assert.Equal(t, FileState{Kind: KindGenerated, Path: "/proc/self/maps", Flags: oLargefile, Offset: 7}, f.Describe())

	require.Zero(t, f.Close())
	_, errno = f.Read(make([]byte, 1))
	assert.Equal(t, unix.EBADF, errno)
	assert.Equal(t, unix.EBADF, f.Close())
}

func mustPread(t testing.TB, f File, off int64, n int) []byte {
	t.Helper()
	buf := make([]byte, n)
	got, errno := f.Pread(buf, off)
	require.Zero(t, errno)
	return buf[:got]
}

func TestDirPath(t *testing.T) {
	lookupModes(t, func(t *testing.T, fs *FS, _ *testTree) {
		d, errno := fs.Open("/", "/dir_link", unix.O_RDONLY)
		require.Zero(t, errno)
		defer d.Close()
		p, errno := DirPath(d)
		require.Zero(t, errno)
		assert.Equal(t, "/dir", p)

		// openat(dirfd, "sub/file").
		f, errno := fs.Open(p, "sub/file", unix.O_RDONLY)
		require.Zero(t, errno)
		assert.Equal(t, "sub file\n", readAll(t, f))
		f.Close()

		o, errno := fs.Open("/", "/proc/self", unix.O_PATH)
		require.Zero(t, errno)
		defer o.Close()
		p, errno = DirPath(o)
		require.Zero(t, errno)
		assert.Equal(t, "/proc/self", p)

		o2, errno := fs.Open("/", "/etc/passwd", unix.O_PATH)
		require.Zero(t, errno)
		defer o2.Close()
		_, errno = DirPath(o2)
		assert.Equal(t, unix.ENOTDIR, errno)
		st, errno := o2.Stat()
		require.Zero(t, errno)
		assert.Equal(t, int64(len(passwdContent)), st.Size)
		_, errno = o2.Read(make([]byte, 4))
		assert.Equal(t, unix.EBADF, errno)

		g, errno := fs.Open("/", "/etc/passwd", unix.O_RDONLY)
		require.Zero(t, errno)
		defer g.Close()
		_, errno = DirPath(g)
		assert.Equal(t, unix.ENOTDIR, errno)
	})
}

func TestGetcwd(t *testing.T) {
	b, errno := Getcwd("/usr/lib", 9)
	require.Zero(t, errno)
	assert.Equal(t, []byte("/usr/lib\x00"), b)
	_, errno = Getcwd("/usr/lib", 8)
	assert.Equal(t, unix.ERANGE, errno)
	_, errno = Getcwd("/", 0)
	assert.Equal(t, unix.ERANGE, errno)
}

// unixStatBytes is the memory of a host stat, which on amd64 is the
// kernel's struct stat.
func unixStatBytes(st *unix.Stat_t) []byte {
	return append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(st)), unsafe.Sizeof(*st))...)
}

func TestPermits(t *testing.T) {
	member := func(gid int) bool { return gid == 100 }
	file := func(mode uint32, uid, gid uint32) *Stat {
		return &Stat{Mode: unix.S_IFREG | mode, Uid: uid, Gid: gid}
	}
	tests := []struct {
		name  string
		st    *Stat
		mode  uint32
		uid   int
		errno unix.Errno
	}{
		{"owner read", file(0o400, 1000, 0), unix.R_OK, 1000, 0},
		{"owner write denied", file(0o400, 1000, 0), unix.W_OK, 1000, unix.EACCES},
		{"owner bits win over other", file(0o007, 1000, 0), unix.R_OK, 1000, unix.EACCES},
		{"group read", file(0o040, 0, 100), unix.R_OK, 1000, 0},
		{"group exec denied", file(0o040, 0, 100), unix.R_OK | unix.X_OK, 1000, unix.EACCES},
		{"other read", file(0o004, 0, 0), unix.R_OK, 1000, 0},
		{"other nothing", file(0o770, 0, 0), unix.R_OK, 1000, unix.EACCES},
		{"root reads anything", file(0o000, 1000, 1000), unix.R_OK | unix.W_OK, 0, 0},
		{"root exec needs a bit", file(0o600, 1000, 1000), unix.X_OK, 0, unix.EACCES},
		{"root exec with other bit", file(0o601, 1000, 1000), unix.X_OK, 0, 0},
		{"root searches any dir", &Stat{Mode: unix.S_IFDIR}, unix.X_OK, 0, 0},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.errno, permitsAs(tt.st, tt.mode, tt.uid, member), tt.name)
	}
}

func TestPathDescriptor(t *testing.T) {
	lookupModes(t, func(t *testing.T, fs *FS, _ *testTree) {
		for _, p := range []string{"/etc/passwd", "/etc", "/dev/null", "/proc/self/maps", "/proc", "/file_link"} {
			f, errno := fs.Open("/", p, unix.O_PATH|unix.O_NOFOLLOW)
			require.Zero(t, errno, p)
			want, errno := fs.Lstat("/", p)
			require.Zero(t, errno)
			st, errno := f.Stat()
			require.Zero(t, errno)
			assert.Equal(t, want, st, "fstat of O_PATH %s", p)
			assert.Equal(t, FileState{Kind: KindPath, Path: p, Flags: unix.O_PATH | unix.O_NOFOLLOW | oLargefile}, f.Describe())

			buf := make([]byte, 8)
			_, errno = f.Read(buf)
			assert.Equal(t, unix.EBADF, errno)
			_, errno = f.Write(buf)
			assert.Equal(t, unix.EBADF, errno)
			_, errno = f.Pread(buf, 0)
			assert.Equal(t, unix.EBADF, errno)
			_, errno = f.Pwrite(buf, 0)
			assert.Equal(t, unix.EBADF, errno)
			_, errno = f.Lseek(0, unix.SEEK_SET)
			assert.Equal(t, unix.EBADF, errno)
			_, errno = f.Getdents64(4096)
			assert.Equal(t, unix.EBADF, errno)
			_, errno = f.Ioctl(ioctlTCGETS, 0, newFakeMemory())
			assert.Equal(t, unix.EBADF, errno)
			_, errno = f.(Mappable).MmapBacking(0, 4096, unix.PROT_READ, false)
			assert.Equal(t, unix.EBADF, errno)
			f.SetFlags(unix.O_NONBLOCK)
			assert.Zero(t, f.Flags()&unix.O_NONBLOCK)

			require.Zero(t, f.Close())
			_, errno = f.Stat()
			assert.Equal(t, unix.EBADF, errno)
			assert.Equal(t, unix.EBADF, f.Close())
		}
	})
}
