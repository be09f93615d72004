package vfs

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/emuckpt/emuckpt/guestmm"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// newTmpFS is an FS without a root and a tmpfs of size bytes at /tmp.
func newTmpFS(t testing.TB, size int64) *FS {
	t.Helper()
	fs, err := New(Options{})
	require.NoError(t, err)
	t.Cleanup(func() { fs.Close() })
	require.NoError(t, fs.MountTmpfs("/tmp", size))
	return fs
}

// pageStore stands in for an image's page data.
type pageStore struct{ pages [][]byte }

func (s *pageStore) saver(fs *FS) PageSaver {
	return func(frame uint64) uint64 {
		s.pages = append(s.pages, append([]byte(nil), fs.frames.Bytes(frame)...))
		return uint64(len(s.pages) - 1)
	}
}

// loader gives pages of the store; pages it does not have read as zeros.
func (s *pageStore) loader(fs *FS) PageLoader {
	return func(page uint64) (uint64, error) {
		pa, err := fs.frames.Alloc()
		if err == nil && page < uint64(len(s.pages)) {
			copy(fs.frames.Bytes(pa), s.pages[page])
		}
		return pa, err
	}
}

func createFile(t testing.TB, fs *FS, path, content string) File {
	t.Helper()
	f, errno := fs.OpenMode("/", path, unix.O_CREAT|unix.O_RDWR|unix.O_EXCL, 0o644)
	require.Zero(t, errno, "create %s", path)
	if content != "" {
		n, errno := f.Write([]byte(content))
		require.Zero(t, errno)
		require.Equal(t, len(content), n)
	}
	return f
}

func TestTmpfsCreateWriteRead(t *testing.T) {
	fs := newTmpFS(t, 1<<20)
	f := createFile(t, fs, "/tmp/a", "hello, tmpfs")
	defer f.Close()

	buf := make([]byte, 5)
	n, errno := f.Pread(buf, 7)
	require.Zero(t, errno)
	assert.Equal(t, "tmpfs", string(buf[:n]))

	st, errno := fs.Stat("/", "/tmp/a")
	require.Zero(t, errno)
	assert.Equal(t, uint32(unix.S_IFREG|0o644), st.Mode)
	assert.Equal(t, int64(12), st.Size)
	assert.Equal(t, uint64(1), st.Nlink)
	assert.Equal(t, int64(8), st.Blocks)

	_, errno = fs.OpenMode("/", "/tmp/a", unix.O_CREAT|unix.O_EXCL|unix.O_RDWR, 0o644)
	assert.Equal(t, unix.EEXIST, errno)

	// O_TRUNC empties it; O_APPEND writes at the end.
	g, errno := fs.OpenMode("/tmp", "a", unix.O_WRONLY|unix.O_TRUNC|unix.O_APPEND, 0)
	require.Zero(t, errno)
	_, errno = g.Write([]byte("xy"))
	require.Zero(t, errno)
	_, errno = g.Pwrite([]byte("z"), 0)
	require.Zero(t, errno)
	g.Close()
	assert.Equal(t, "xyz", readAll(t, reopen(t, fs, "/tmp/a")))

	// A read-only description cannot write, a write-only one cannot read.
	r := reopen(t, fs, "/tmp/a")
	_, errno = r.Write([]byte("x"))
	assert.Equal(t, unix.EBADF, errno)
	assert.Equal(t, unix.EINVAL, r.(*tmpFile).Truncate(0))
}

func reopen(t testing.TB, fs *FS, path string) File {
	t.Helper()
	f, errno := fs.Open("/", path, unix.O_RDONLY)
	require.Zero(t, errno, "open %s", path)
	t.Cleanup(func() { f.Close() })
	return f
}

// TestTmpfsNamespaceErrors runs a sequence of namespace operations, each
// with the errno Linux gives on a tmpfs.
func TestTmpfsNamespaceErrors(t *testing.T) {
	fs := newTmpFS(t, 1<<20)
	createFile(t, fs, "/tmp/file", "data").Close()
	steps := []struct {
		name string
		op   func() unix.Errno
		want unix.Errno
	}{
		{"mkdir", func() unix.Errno { return fs.Mkdir("/", "/tmp/d", 0o755) }, 0},
		{"mkdir again", func() unix.Errno { return fs.Mkdir("/", "/tmp/d", 0o755) }, unix.EEXIST},
		{"mkdir over a file", func() unix.Errno { return fs.Mkdir("/", "/tmp/file", 0o755) }, unix.EEXIST},
		{"mkdir trailing slash", func() unix.Errno { return fs.Mkdir("/", "/tmp/d2/", 0o755) }, 0},
		{"mkdir missing parent", func() unix.Errno { return fs.Mkdir("/", "/tmp/nope/x", 0o755) }, unix.ENOENT},
		{"mkdir under a file", func() unix.Errno { return fs.Mkdir("/", "/tmp/file/x", 0o755) }, unix.ENOTDIR},
		{"mkdir outside tmpfs", func() unix.Errno { return fs.Mkdir("/", "/newdir", 0o755) }, unix.EROFS},
		{"mkdir existing outside", func() unix.Errno { return fs.Mkdir("/", "/dev", 0o755) }, unix.EEXIST},
		{"file in dir", func() unix.Errno { createFile(t, fs, "/tmp/d/f", "x").Close(); return 0 }, 0},
		{"rmdir non-empty", func() unix.Errno { return fs.Rmdir("/", "/tmp/d") }, unix.ENOTEMPTY},
		{"unlink a dir", func() unix.Errno { return fs.Unlink("/", "/tmp/d") }, unix.EISDIR},
		{"rmdir a file", func() unix.Errno { return fs.Rmdir("/", "/tmp/file") }, unix.ENOTDIR},
		{"unlink file/", func() unix.Errno { return fs.Unlink("/", "/tmp/file/") }, unix.ENOTDIR},
		{"unlink missing", func() unix.Errno { return fs.Unlink("/", "/tmp/missing") }, unix.ENOENT},
		{"rmdir .", func() unix.Errno { return fs.Rmdir("/tmp/d", ".") }, unix.EINVAL},
		{"rmdir ..", func() unix.Errno { return fs.Rmdir("/tmp/d", "..") }, unix.ENOTEMPTY},
		// The mount point is an entry of the read-only root: EROFS before
		// the lookup, as on Linux with a read-only "/".
		{"rmdir mount point", func() unix.Errno { return fs.Rmdir("/", "/tmp") }, unix.EROFS},
		{"unlink outside", func() unix.Errno { return fs.Unlink("/", "/dev/null") }, unix.EROFS},
		{"rename into itself", func() unix.Errno { return fs.Rename("/", "/tmp/d", "/", "/tmp/d/sub", 0) }, unix.EINVAL},
		{"rename file over dir", func() unix.Errno { return fs.Rename("/", "/tmp/file", "/", "/tmp/d2", 0) }, unix.EISDIR},
		{"rename dir over file", func() unix.Errno { return fs.Rename("/", "/tmp/d2", "/", "/tmp/file", 0) }, unix.ENOTDIR},
		{"rename over non-empty dir", func() unix.Errno { return fs.Rename("/", "/tmp/d2", "/", "/tmp/d", 0) }, unix.ENOTEMPTY},
		{"noreplace existing", func() unix.Errno { return fs.Rename("/", "/tmp/file", "/", "/tmp/d/f", RenameNoreplace) }, unix.EEXIST},
		{"exchange missing", func() unix.Errno { return fs.Rename("/", "/tmp/file", "/", "/tmp/none", RenameExchange) }, unix.ENOENT},
		{"exchange|noreplace", func() unix.Errno {
			return fs.Rename("/", "/tmp/file", "/", "/tmp/d/f", RenameExchange|RenameNoreplace)
		}, unix.EINVAL},
		{"unknown flag", func() unix.Errno { return fs.Rename("/", "/tmp/file", "/", "/tmp/x", 8) }, unix.EINVAL},
		{"rename missing", func() unix.Errno { return fs.Rename("/", "/tmp/missing", "/", "/tmp/x", 0) }, unix.ENOENT},
		{"rename out of tmpfs", func() unix.Errno { return fs.Rename("/", "/tmp/file", "/", "/dev/x", 0) }, unix.EXDEV},
		{"rename dir over empty dir", func() unix.Errno { return fs.Mkdir("/", "/tmp/e", 0o755) }, 0},
		{"... done", func() unix.Errno { return fs.Rename("/", "/tmp/e", "/", "/tmp/d2", 0) }, 0},
		{"link a dir", func() unix.Errno { return fs.Link("/", "/tmp/d", "/", "/tmp/dl", false) }, unix.EPERM},
		{"link existing name", func() unix.Errno { return fs.Link("/", "/tmp/file", "/", "/tmp/d/f", false) }, unix.EEXIST},
		{"link out of tmpfs", func() unix.Errno { return fs.Link("/", "/tmp/file", "/", "/dev/f", false) }, unix.EROFS},
		{"link into tmpfs", func() unix.Errno { return fs.Link("/", "/dev/null", "/", "/tmp/null", false) }, unix.EXDEV},
		{"unlink missing outside", func() unix.Errno { return fs.Unlink("/", "/dev/missing") }, unix.EROFS},
		{"rename outside", func() unix.Errno { return fs.Rename("/", "/dev/missing", "/", "/dev/x", 0) }, unix.EROFS},
		{"rename into tmpfs", func() unix.Errno { return fs.Rename("/", "/dev/null", "/", "/tmp/x", 0) }, unix.EXDEV},
		{"symlink empty", func() unix.Errno { return fs.Symlink("", "/", "/tmp/s") }, unix.ENOENT},
		{"symlink", func() unix.Errno { return fs.Symlink("d/f", "/", "/tmp/s") }, 0},
		{"symlink existing", func() unix.Errno { return fs.Symlink("x", "/", "/tmp/s") }, unix.EEXIST},
		{"truncate dir", func() unix.Errno { return fs.Truncate("/", "/tmp/d", 0) }, unix.EISDIR},
		{"truncate negative", func() unix.Errno { return fs.Truncate("/", "/tmp/file", -1) }, unix.EINVAL},
		{"truncate through symlink", func() unix.Errno { return fs.Truncate("/", "/tmp/s", 3) }, 0},
		{"truncate device", func() unix.Errno { return fs.Truncate("/", "/dev/null", 0) }, unix.EINVAL},
	}
	for _, s := range steps {
		assert.Equal(t, s.want, s.op(), s.name)
	}
	target, errno := fs.Readlink("/", "/tmp/s")
	require.Zero(t, errno)
	assert.Equal(t, "d/f", target)
	st, errno := fs.Stat("/", "/tmp/s")
	require.Zero(t, errno)
	assert.Equal(t, int64(3), st.Size, "truncate followed the link")
	st, errno = fs.Stat("/", "/tmp")
	require.Zero(t, errno)
	assert.Equal(t, uint32(unix.S_IFDIR|0o1777), st.Mode)
	assert.Equal(t, uint64(4), st.Nlink, "2 + d and d2")
	f := reopenDir(t, fs, "/tmp")
	assert.Equal(t, []string{".", "..", "d", "d2", "file", "s"}, direntNames(t, f))
}

func reopenDir(t testing.TB, fs *FS, path string) File {
	t.Helper()
	f, errno := fs.Open("/", path, unix.O_RDONLY|unix.O_DIRECTORY)
	require.Zero(t, errno)
	t.Cleanup(func() { f.Close() })
	return f
}

func TestTmpfsRename(t *testing.T) {
	fs := newTmpFS(t, 1<<20)
	createFile(t, fs, "/tmp/a", "A").Close()
	createFile(t, fs, "/tmp/b", "B").Close()
	require.Zero(t, fs.Rename("/", "/tmp/a", "/", "/tmp/b", RenameExchange))
	assert.Equal(t, "B", readAll(t, reopen(t, fs, "/tmp/a")))
	assert.Equal(t, "A", readAll(t, reopen(t, fs, "/tmp/b")))
	require.Zero(t, fs.Rename("/", "/tmp/a", "/", "/tmp/b", 0))
	assert.Equal(t, "B", readAll(t, reopen(t, fs, "/tmp/b")))
	_, errno := fs.Stat("/", "/tmp/a")
	assert.Equal(t, unix.ENOENT, errno)
	// Moving a directory moves what is under it.
	require.Zero(t, fs.Mkdir("/", "/tmp/d", 0o700))
	require.Zero(t, fs.Rename("/", "/tmp/b", "/", "/tmp/d/b", RenameNoreplace))
	require.Zero(t, fs.Rename("/", "/tmp/d", "/", "/tmp/e", 0))
	assert.Equal(t, "B", readAll(t, reopen(t, fs, "/tmp/e/b")))
}

func TestTmpfsUnlinkWhileOpen(t *testing.T) {
	fs := newTmpFS(t, 1<<20)
	f := createFile(t, fs, "/tmp/gone", "still here")
	require.Zero(t, fs.Unlink("/", "/tmp/gone"))
	_, errno := fs.Stat("/", "/tmp/gone")
	assert.Equal(t, unix.ENOENT, errno)
	st, errno := f.Stat()
	require.Zero(t, errno)
	assert.Equal(t, uint64(0), st.Nlink)
	buf := make([]byte, 32)
	n, _ := f.Pread(buf, 0)
	assert.Equal(t, "still here", string(buf[:n]))
	m := fs.mounts[0]
	assert.Equal(t, int64(pageSize), m.used, "the pages live while the file is open")
	assert.Contains(t, m.inodes, st.Ino)
	require.Zero(t, f.Close())
	assert.Equal(t, int64(0), m.used)
	assert.NotContains(t, m.inodes, st.Ino)
}

func TestTmpfsHardLinks(t *testing.T) {
	fs := newTmpFS(t, 1<<20)
	createFile(t, fs, "/tmp/a", "same").Close()
	require.Zero(t, fs.Link("/", "/tmp/a", "/tmp", "b", false))
	sa, _ := fs.Stat("/", "/tmp/a")
	sb, _ := fs.Stat("/", "/tmp/b")
	assert.Equal(t, sa.Ino, sb.Ino)
	assert.Equal(t, uint64(2), sb.Nlink)
	require.Zero(t, fs.Unlink("/", "/tmp/a"))
	sb, _ = fs.Stat("/", "/tmp/b")
	assert.Equal(t, uint64(1), sb.Nlink)
	assert.Equal(t, "same", readAll(t, reopen(t, fs, "/tmp/b")))
}

func TestTmpfsSizeLimit(t *testing.T) {
	fs := newTmpFS(t, 2*pageSize)
	f := createFile(t, fs, "/tmp/big", "")
	defer f.Close()
	n, errno := f.Write(make([]byte, 3*pageSize))
	require.Zero(t, errno)
	assert.Equal(t, 2*pageSize, n, "a write that does not fit is short")
	_, errno = f.Write([]byte("x"))
	assert.Equal(t, unix.ENOSPC, errno)
	// Holes take no space: a sparse file can be larger than the mount.
	require.Zero(t, f.(*tmpFile).Truncate(pageSize))
	require.Zero(t, f.(*tmpFile).Truncate(100*pageSize))
	st, _ := f.Stat()
	assert.Equal(t, int64(100*pageSize), st.Size)
	assert.Equal(t, int64(8), st.Blocks)
	n, errno = f.Pwrite([]byte("end"), 50*pageSize)
	require.Zero(t, errno)
	assert.Equal(t, 3, n)
	_, errno = f.Pwrite([]byte("more"), 70*pageSize)
	assert.Equal(t, unix.ENOSPC, errno)
	buf := make([]byte, 4)
	n, _ = f.Pread(buf, 60*pageSize)
	assert.Equal(t, []byte{0, 0, 0, 0}, buf[:n], "a hole reads as zeros")
}

func TestTmpfsTmpfile(t *testing.T) {
	fs := newTmpFS(t, 1<<20)
	f, errno := fs.OpenMode("/", "/tmp", unix.O_TMPFILE|unix.O_RDWR, 0o600)
	require.Zero(t, errno)
	defer f.Close()
	_, errno = f.Write([]byte("anon"))
	require.Zero(t, errno)
	assert.Equal(t, []string{".", ".."}, direntNames(t, reopenDir(t, fs, "/tmp")))
	require.Zero(t, fs.LinkFile(f, "/", "/tmp/named"))
	assert.Equal(t, "anon", readAll(t, reopen(t, fs, "/tmp/named")))

	g, errno := fs.OpenMode("/", "/tmp", unix.O_TMPFILE|unix.O_RDWR|unix.O_EXCL, 0o600)
	require.Zero(t, errno)
	defer g.Close()
	assert.Equal(t, unix.ENOENT, fs.LinkFile(g, "/", "/tmp/never"))

	_, errno = fs.OpenMode("/", "/tmp", unix.O_TMPFILE|unix.O_RDONLY, 0o600)
	assert.Equal(t, unix.EINVAL, errno)
	_, errno = fs.OpenMode("/", "/dev", unix.O_TMPFILE|unix.O_RDWR, 0o600)
	assert.Equal(t, unix.EROFS, errno)
}

func TestTmpfsPermissions(t *testing.T) {
	if hostUID() == 0 {
		t.Skip("root passes every permission check")
	}
	fs := newTmpFS(t, 1<<20)
	createFile(t, fs, "/tmp/ro", "x").Close()
	fs.mu.Lock()
	fs.mounts[0].root.children["ro"].ti.mode = unix.S_IFREG | 0o444
	fs.mu.Unlock()
	_, errno := fs.Open("/", "/tmp/ro", unix.O_WRONLY)
	assert.Equal(t, unix.EACCES, errno)
	assert.Equal(t, unix.EACCES, fs.Access("/", "/tmp/ro", unix.W_OK))
	require.Zero(t, fs.Mkdir("/", "/tmp/locked", 0o500))
	assert.Equal(t, unix.EACCES, fs.Mkdir("/", "/tmp/locked/x", 0o755))
}

// TestTmpfsStateRoundTrip saves a tmpfs with a tree, a hard link, a
// symbolic link, a sparse file and an unlinked open file, restores it in
// a new FS and re-opens the descriptions.
func TestTmpfsStateRoundTrip(t *testing.T) {
	fs := newTmpFS(t, 1<<20)
	require.Zero(t, fs.Mkdir("/", "/tmp/dir", 0o750))
	createFile(t, fs, "/tmp/dir/f", "contents").Close()
	require.Zero(t, fs.Link("/", "/tmp/dir/f", "/", "/tmp/hard", false))
	require.Zero(t, fs.Symlink("dir/f", "/", "/tmp/sym"))
	sparse := createFile(t, fs, "/tmp/sparse", "")
	_, errno := sparse.Pwrite([]byte("tail"), 5*pageSize)
	require.Zero(t, errno)
	sparse.Close()
	open := createFile(t, fs, "/tmp/open", "unlinked but open")
	_, errno = open.Lseek(3, unix.SEEK_SET)
	require.Zero(t, errno)
	require.Zero(t, fs.Unlink("/", "/tmp/open"))
	desc := open.Describe()

	var store pageStore
	states := fs.TmpfsState(store.saver(fs))
	data, err := json.Marshal(states)
	require.NoError(t, err)
	var back []MountState
	require.NoError(t, json.Unmarshal(data, &back))
	require.NoError(t, back[0].Validate())

	fs2, err := New(Options{})
	require.NoError(t, err)
	defer fs2.Close()
	require.NoError(t, fs2.RestoreTmpfs(back, store.loader(fs2)))
	f, errno := fs2.Reopen(desc)
	require.Zero(t, errno)
	defer f.Close()
	fs2.DropUnused()
	buf := make([]byte, 64)
	n, errno := f.Read(buf)
	require.Zero(t, errno)
	assert.Equal(t, "inked but open", string(buf[:n]), "offset 3 kept")

	assert.Equal(t, "contents", readAll(t, reopen(t, fs2, "/tmp/sym")))
	s1, _ := fs2.Stat("/", "/tmp/hard")
	s2, _ := fs2.Stat("/", "/tmp/dir/f")
	assert.Equal(t, s1.Ino, s2.Ino)
	assert.Equal(t, uint64(2), s1.Nlink)
	st, _ := fs2.Stat("/", "/tmp/dir")
	assert.Equal(t, uint32(unix.S_IFDIR|0o750), st.Mode)
	st, _ = fs2.Stat("/", "/tmp/sparse")
	assert.Equal(t, int64(5*pageSize+4), st.Size)
	assert.Equal(t, int64(8), st.Blocks)
	assert.Equal(t, fs.mounts[0].used, fs2.mounts[0].used)
	var store2 pageStore
	again := fs2.TmpfsState(store2.saver(fs2))
	assert.True(t, reflect.DeepEqual(store.pages, store2.pages), "the same pages")
	for _, ms := range [][]MountState{states, again} { // reads above moved the atimes
		for i := range ms[0].Inodes {
			ms[0].Inodes[i].Atime = Timespec{}
		}
	}
	assert.True(t, reflect.DeepEqual(states, again), "saving again gives the same state")

	require.Zero(t, f.Close())
	fs2.DropUnused()
	assert.Len(t, fs2.mounts[0].inodes, len(fs.mounts[0].inodes)-1+0)
}

func TestMountStateValidate(t *testing.T) {
	good := func() MountState {
		return MountState{Path: "/tmp", Size: 8192, Root: 1, NextIno: 3, Inodes: []InodeState{
			{Ino: 1, Mode: unix.S_IFDIR | 0o1777, Entries: []TmpEntry{{Name: "f", Ino: 2}}},
			{Ino: 2, Mode: unix.S_IFREG | 0o644, Nlink: 1, Size: 10, Pages: []TmpPage{{Index: 0, Page: 7}}},
		}}
	}
	g := good()
	require.NoError(t, g.Validate())
	cases := []struct {
		name   string
		break_ func(m *MountState)
	}{
		{"relative path", func(m *MountState) { m.Path = "tmp" }},
		{"unclean path", func(m *MountState) { m.Path = "/tmp/../x" }},
		{"zero size", func(m *MountState) { m.Size = 0 }},
		{"root missing", func(m *MountState) { m.Root = 7 }},
		{"root not a dir", func(m *MountState) { m.Root = 2 }},
		{"ino past next", func(m *MountState) { m.NextIno = 1 }},
		{"repeated ino", func(m *MountState) { m.Inodes[1].Ino = 1 }},
		{"bad mode", func(m *MountState) { m.Inodes[1].Mode = unix.S_IFCHR | 0o644 }},
		{"entry to nowhere", func(m *MountState) { m.Inodes[0].Entries[0].Ino = 3 }},
		{"bad name", func(m *MountState) { m.Inodes[0].Entries[0].Name = "a/b" }},
		{"dot name", func(m *MountState) { m.Inodes[0].Entries[0].Name = ".." }},
		{"nlink mismatch", func(m *MountState) { m.Inodes[1].Nlink = 2 }},
		{"pages out of order", func(m *MountState) { m.Inodes[1].Pages = append(m.Inodes[1].Pages, m.Inodes[1].Pages[0]) }},
		{"negative page", func(m *MountState) { m.Inodes[1].Pages[0].Index = -1 }},
		{"page past end", func(m *MountState) { m.Inodes[1].Pages[0].Index = 1 }},
		{"over the limit", func(m *MountState) {
			m.Size = 4096
			m.Inodes[1].Size = 8192
			m.Inodes[1].Pages = append(m.Inodes[1].Pages, TmpPage{Index: 1, Page: 8})
		}},
		{"directory cycle", func(m *MountState) { m.Inodes[0].Entries = append(m.Inodes[0].Entries, TmpEntry{Name: "self", Ino: 1}) }},
		{"entries on a file", func(m *MountState) { m.Inodes[1].Entries = []TmpEntry{{Name: "x", Ino: 1}} }},
		{"orphan dir", func(m *MountState) {
			m.NextIno = 4
			m.Inodes = append(m.Inodes, InodeState{Ino: 3, Mode: unix.S_IFDIR | 0o755})
		}},
		{"symlink without target", func(m *MountState) { m.Inodes[1].Mode = unix.S_IFLNK | 0o777; m.Inodes[1].Pages = nil }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := good()
			c.break_(&m)
			assert.Error(t, m.Validate())
		})
	}
}

// FuzzMountState feeds arbitrary JSON as a tmpfs record of an image:
// Validate must not panic, and whatever it accepts must restore and save
// again to a state that is valid too.
func FuzzMountState(f *testing.F) {
	f.Add([]byte(`{"path":"/tmp","size":8192,"root":1,"next_ino":2,"inodes":[{"ino":1,"mode":17407,"entries":[{"name":"f","ino":2}]},{"ino":2,"mode":33188,"nlink":1,"size":3}]}`))
	f.Add([]byte(`{"path":"/tmp","size":4096,"root":1,"next_ino":1,"inodes":[{"ino":1,"mode":16877}]}`))
	f.Add([]byte(`{"path":"/a/b","size":4096,"root":1,"next_ino":3,"inodes":[{"ino":1,"mode":16877,"entries":[{"name":"s","ino":3}]},{"ino":3,"mode":41471,"nlink":1,"target":"x"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var ms MountState
		if json.Unmarshal(data, &ms) != nil || ms.Validate() != nil {
			return
		}
		fs, err := New(Options{})
		require.NoError(t, err)
		defer fs.Close()
		var store pageStore
		if err := fs.RestoreTmpfs([]MountState{ms}, store.loader(fs)); err != nil {
			return // the mount point collides with a built-in entry, or RAM is short
		}
		fs.DropUnused()
		for _, again := range fs.TmpfsState(store.saver(fs)) {
			require.NoError(t, again.Validate())
		}
	})
}

// TestTmpfsSharedFrames: a shared mapping gets the file's own frames, so
// writes through it are read back by read(2), and a frame outlives a
// truncation for the mapping that holds it.
func TestTmpfsSharedFrames(t *testing.T) {
	fs := newTmpFS(t, 1<<20)
	f := createFile(t, fs, "/tmp/shm", "abc")
	defer f.Close()
	b, errno := f.(Mappable).MmapBacking(0, pageSize, unix.PROT_READ|unix.PROT_WRITE, true)
	require.Zero(t, errno)
	pc := b.(guestmm.PageCache)
	pa, err := pc.Frame(0)
	require.NoError(t, err)
	assert.Equal(t, 2, fs.frames.RefCount(pa), "the file's and the mapping's")
	copy(fs.frames.Bytes(pa)[1:], "XY")
	buf := make([]byte, 3)
	_, errno = f.Pread(buf, 0)
	require.Zero(t, errno)
	assert.Equal(t, "aXY", string(buf))
	_, err = pc.Frame(pageSize)
	assert.Error(t, err, "past the end of the file: SIGBUS")
	assert.Equal(t, guestmm.ProtRead|guestmm.ProtWrite|guestmm.ProtExec, b.(guestmm.BackingAccess).Access())

	ro := reopen(t, fs, "/tmp/shm")
	rb, errno := ro.(Mappable).MmapBacking(0, pageSize, unix.PROT_READ, true)
	require.Zero(t, errno)
	assert.Equal(t, guestmm.ProtRead|guestmm.ProtExec, rb.(guestmm.BackingAccess).Access(), "not writable through a read-only descriptor")

	require.Zero(t, f.(*tmpFile).Truncate(0))
	assert.Equal(t, 1, fs.frames.RefCount(pa), "the mapping keeps its frame")
	fs.frames.DecRef(pa)
}

func TestMemfdSeals(t *testing.T) {
	fs := newTmpFS(t, 1<<20)
	f, errno := fs.MemfdCreate("m", MfdAllowSealing)
	require.Zero(t, errno)
	defer f.Close()
	_, errno = f.Write([]byte("0123456789"))
	require.Zero(t, errno)
	tf := f.(*tmpFile)
	steps := []struct {
		name string
		op   func() unix.Errno
		want unix.Errno
	}{
		{"unknown seal", func() unix.Errno { return AddSeals(f, 0x40) }, unix.EINVAL},
		{"shrink seal", func() unix.Errno { return AddSeals(f, SealShrink) }, 0},
		{"shrink", func() unix.Errno { return tf.Truncate(5) }, unix.EPERM},
		{"grow", func() unix.Errno { return tf.Truncate(20) }, 0},
		{"grow seal", func() unix.Errno { return AddSeals(f, SealGrow) }, 0},
		{"grow sealed", func() unix.Errno { return tf.Truncate(30) }, unix.EPERM},
		{"write past end", func() unix.Errno { _, e := f.Pwrite([]byte("x"), 20); return e }, unix.EPERM},
		{"fallocate past end", func() unix.Errno { return Fallocate(f, 0, 0, 30) }, unix.EPERM},
		{"fallocate keep size", func() unix.Errno { return Fallocate(f, FallocKeepSize, 0, 30) }, 0},
		{"write seal", func() unix.Errno { return AddSeals(f, SealWrite) }, 0},
		{"write sealed", func() unix.Errno { _, e := f.Pwrite([]byte("x"), 0); return e }, unix.EPERM},
		{"punch sealed", func() unix.Errno { return Fallocate(f, FallocPunchHole|FallocKeepSize, 0, 4096) }, unix.EPERM},
		{"map shared writable", func() unix.Errno {
			_, e := tf.MmapBacking(0, 4096, unix.PROT_WRITE, true)
			return e
		}, unix.EPERM},
		{"seal seal", func() unix.Errno { return AddSeals(f, SealSeal) }, 0},
		{"after seal seal", func() unix.Errno { return AddSeals(f, SealExec) }, unix.EPERM},
	}
	for _, s := range steps {
		assert.Equal(t, s.want, s.op(), s.name)
	}
	seals, errno := Seals(f)
	require.Zero(t, errno)
	assert.Equal(t, SealSeal|SealShrink|SealGrow|SealWrite, seals)

	g, errno := fs.MemfdCreate("plain", 0)
	require.Zero(t, errno)
	defer g.Close()
	assert.Equal(t, unix.EPERM, AddSeals(g, SealGrow), "without MFD_ALLOW_SEALING")
	_, errno = fs.MemfdCreate(string(make([]byte, 250)), 0)
	assert.Equal(t, unix.EINVAL, errno)
	_, errno = fs.MemfdCreate("x", 0x100)
	assert.Equal(t, unix.EINVAL, errno)

	// The memfd and its seals survive a checkpoint of the FS.
	var store pageStore
	states := fs.TmpfsState(store.saver(fs))
	require.Len(t, states, 2)
	fs2, err := New(Options{})
	require.NoError(t, err)
	defer fs2.Close()
	require.NoError(t, fs2.RestoreTmpfs(states, store.loader(fs2)))
	h, errno := fs2.Reopen(f.Describe())
	require.Zero(t, errno)
	defer h.Close()
	seals, _ = Seals(h)
	assert.Equal(t, SealSeal|SealShrink|SealGrow|SealWrite, seals)
	buf := make([]byte, 10)
	_, errno = h.Pread(buf, 0)
	require.Zero(t, errno)
	assert.Equal(t, "0123456789", string(buf))
}

func TestFallocate(t *testing.T) {
	fs := newTmpFS(t, 4*pageSize)
	f := createFile(t, fs, "/tmp/f", "")
	defer f.Close()
	assert.Equal(t, unix.ENOSPC, Fallocate(f, 0, 0, 5*pageSize), "all or nothing")
	assert.Equal(t, int64(0), fs.mounts[0].used)
	require.Zero(t, Fallocate(f, 0, 0, 2*pageSize))
	st, _ := f.Stat()
	assert.Equal(t, int64(2*pageSize), st.Size)
	assert.Equal(t, unix.EOPNOTSUPP, Fallocate(f, 0x10, 0, 1), "ZERO_RANGE")
	assert.Equal(t, unix.EOPNOTSUPP, Fallocate(f, FallocPunchHole, 0, 1))
	assert.Equal(t, unix.EINVAL, Fallocate(f, 0, 0, 0))
	require.Zero(t, Fallocate(f, FallocPunchHole|FallocKeepSize, 0, pageSize+1))
	assert.Equal(t, int64(pageSize), fs.mounts[0].used)
	st, _ = f.Stat()
	assert.Equal(t, int64(2*pageSize), st.Size)
	sf, errno := fs.Statfs("/", "/tmp/f")
	require.Zero(t, errno)
	assert.Equal(t, int64(TmpfsMagic), sf.Type)
	assert.Equal(t, uint64(3), sf.Bfree, "f_bfree")
	ff, errno := fs.FileStatfs(f)
	require.Zero(t, errno)
	assert.Equal(t, sf, ff, "fstatfs of the open file")
	sf, errno = fs.Statfs("/", "/dev/null")
	require.Zero(t, errno)
	assert.Zero(t, sf.Blocks, "/dev is a devtmpfs, not the /tmp tmpfs")
}

func TestTmpfsCreateThroughDanglingSymlink(t *testing.T) {
	fs := newTmpFS(t, 1<<20)
	require.Zero(t, fs.Symlink("target", "/", "/tmp/link"))
	f, errno := fs.OpenMode("/", "/tmp/link", unix.O_CREAT|unix.O_WRONLY, 0o600)
	require.Zero(t, errno)
	f.Close()
	st, errno := fs.Lstat("/", "/tmp/target")
	require.Zero(t, errno)
	assert.Equal(t, uint32(unix.S_IFREG|0o600), st.Mode)
	_, errno = fs.OpenMode("/", "/tmp/link", unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY, 0o600)
	assert.Equal(t, unix.EEXIST, errno)
	require.Zero(t, fs.Symlink("loop", "/", "/tmp/loop"))
	_, errno = fs.OpenMode("/", "/tmp/loop", unix.O_CREAT|unix.O_WRONLY, 0o600)
	assert.Equal(t, unix.ELOOP, errno)
}

func TestTmpfsAttributes(t *testing.T) {
	fs := newTmpFS(t, 1<<20)
	createFile(t, fs, "/tmp/f", "x").Close()
	require.Zero(t, fs.Symlink("f", "/", "/tmp/s"))
	_, errno := fs.AttrPath("/", "/dev/null", true)
	assert.Equal(t, unix.EROFS, errno, "outside a tmpfs")
	_, errno = fs.AttrPath("/", "/tmp/missing", true)
	assert.Equal(t, unix.ENOENT, errno)

	a, errno := fs.AttrPath("/", "/tmp/s", true)
	require.Zero(t, errno)
	require.Zero(t, a.Chmod(0o4755|unix.S_IFDIR)) // the type bits are ignored
	st, _ := fs.Stat("/", "/tmp/f")
	assert.Equal(t, uint32(unix.S_IFREG|0o4755), st.Mode)

	l, errno := fs.AttrPath("/", "/tmp/s", false)
	require.Zero(t, errno)
	assert.True(t, l.IsSymlink())

	times := [2]Timespec{{Sec: 10, Nsec: 1}, {Sec: 20, Nsec: UtimeOmit}}
	require.Zero(t, a.Utimens(&times))
	st, _ = fs.Stat("/", "/tmp/f")
	assert.Equal(t, Timespec{Sec: 10, Nsec: 1}, st.Atime)
	assert.NotEqual(t, int64(20), st.Mtime.Sec, "omitted")
	times[1].Nsec = -1
	assert.Equal(t, unix.EINVAL, a.Utimens(&times))

	if hostUID() == 0 {
		require.Zero(t, a.Chown(7, 8))
		st, _ = fs.Stat("/", "/tmp/f")
		assert.Equal(t, [2]uint32{7, 8}, [2]uint32{st.Uid, st.Gid})
		assert.Equal(t, uint32(unix.S_IFREG|0o755), st.Mode, "chown clears set-user-ID")
	} else {
		assert.Equal(t, unix.EPERM, a.Chown(uint32(hostUID()+1), ^uint32(0)))
	}
}
