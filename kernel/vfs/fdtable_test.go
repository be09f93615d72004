package vfs

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// countingFile counts its closes.
type countingFile struct {
	DeviceBase
	name   string
	closes int
}

func (c *countingFile) Close() unix.Errno {
	c.closes++
	return 0
}

func (c *countingFile) Describe() FileState { return FileState{Kind: KindDevice, Path: c.name} }

func TestFDTableInstall(t *testing.T) {
	tab := NewFDTable()
	assert.Equal(t, DefaultFDLimit, tab.Limit())
	for want := range 3 {
		fd, errno := tab.Install(&countingFile{}, false)
		require.Zero(t, errno)
		assert.Equal(t, want, fd, "lowest free descriptor")
	}
	require.Zero(t, tab.Close(1))
	fd, errno := tab.Install(&countingFile{}, false)
	require.Zero(t, errno)
	assert.Equal(t, 1, fd, "a closed descriptor is reused first")

	require.Zero(t, tab.SetLimit(4))
	fd, errno = tab.Install(&countingFile{}, false)
	require.Zero(t, errno)
	assert.Equal(t, 3, fd)
	_, errno = tab.Install(&countingFile{}, false)
	assert.Equal(t, unix.EMFILE, errno)

	require.Zero(t, tab.SetLimit(2))
	_, errno = tab.Get(3)
	assert.Zero(t, errno, "descriptors above a lowered limit stay open")
	assert.Equal(t, unix.EPERM, tab.SetLimit(NrOpen+1))
	assert.Equal(t, unix.EINVAL, tab.SetLimit(-1))
}

func TestFDTableErrors(t *testing.T) {
	tab := NewFDTable()
	f := &countingFile{}
	fd, _ := tab.Install(f, false)
	require.Equal(t, 0, fd)

	for _, bad := range []int{-1, 1, 1000, 1 << 40} {
		_, errno := tab.Get(bad)
		assert.Equal(t, unix.EBADF, errno, "get %d", bad)
		assert.Equal(t, unix.EBADF, tab.Close(bad), "close %d", bad)
		_, errno = tab.Dup(bad)
		assert.Equal(t, unix.EBADF, errno, "dup %d", bad)
		_, errno = tab.FDFlags(bad)
		assert.Equal(t, unix.EBADF, errno)
		assert.Equal(t, unix.EBADF, tab.SetFDFlags(bad, FDCloexec))
	}

	tests := []struct {
		name   string
		call   func() (int, unix.Errno)
		want   int
		errno  unix.Errno
		wantFD bool
	}{
		{"dup2 same fd", func() (int, unix.Errno) { return tab.Dup2(0, 0) }, 0, 0, true},
		{"dup2 same bad fd", func() (int, unix.Errno) { return tab.Dup2(5, 5) }, 0, unix.EBADF, false},
		{"dup2 bad old", func() (int, unix.Errno) { return tab.Dup2(5, 6) }, 0, unix.EBADF, false},
		{"dup2 negative new", func() (int, unix.Errno) { return tab.Dup2(0, -1) }, 0, unix.EBADF, false},
		{"dup2 new at limit", func() (int, unix.Errno) { return tab.Dup2(0, DefaultFDLimit) }, 0, unix.EBADF, false},
		{"dup2 huge new", func() (int, unix.Errno) { return tab.Dup2(0, 1<<40) }, 0, unix.EBADF, false},
		{"dup3 same fd", func() (int, unix.Errno) { return tab.Dup3(0, 0, 0) }, 0, unix.EINVAL, false},
		{"dup3 bad flags", func() (int, unix.Errno) { return tab.Dup3(0, 3, unix.O_NONBLOCK) }, 0, unix.EINVAL, false},
		{"dup3 bad old", func() (int, unix.Errno) { return tab.Dup3(5, 3, 0) }, 0, unix.EBADF, false},
		{"dupfrom bad fd", func() (int, unix.Errno) { return tab.DupFrom(5, 0, false) }, 0, unix.EBADF, false},
		{"dupfrom negative min", func() (int, unix.Errno) { return tab.DupFrom(0, -1, false) }, 0, unix.EINVAL, false},
		{"dupfrom min at limit", func() (int, unix.Errno) { return tab.DupFrom(0, DefaultFDLimit, false) }, 0, unix.EINVAL, false},
		{"dupfrom min", func() (int, unix.Errno) { return tab.DupFrom(0, 10, false) }, 10, 0, true},
		{"dupfrom min taken", func() (int, unix.Errno) { return tab.DupFrom(0, 10, false) }, 11, 0, true},
		{"dup3", func() (int, unix.Errno) { return tab.Dup3(0, 7, unix.O_CLOEXEC) }, 7, 0, true},
		{"dup", func() (int, unix.Errno) { return tab.Dup(0) }, 1, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, errno := tt.call()
			assert.Equal(t, tt.errno, errno)
			if tt.wantFD {
				assert.Equal(t, tt.want, got)
			}
		})
	}
	flags, errno := tab.FDFlags(7)
	require.Zero(t, errno)
	assert.Equal(t, FDCloexec, flags, "dup3 with O_CLOEXEC")
	flags, _ = tab.FDFlags(10)
	assert.Zero(t, flags, "F_DUPFD without cloexec")
	assert.Zero(t, f.closes)
}

func TestFDTableRefcount(t *testing.T) {
	tab := NewFDTable()
	f := &countingFile{}
	fd, _ := tab.Install(f, false)
	dup, errno := tab.Dup(fd)
	require.Zero(t, errno)
	fork := tab.Clone()

	require.Zero(t, tab.Close(fd))
	require.Zero(t, tab.Close(dup))
	assert.Zero(t, f.closes, "the forked table still holds it")
	got, errno := fork.Get(dup)
	require.Zero(t, errno)
	assert.Same(t, f, got)
	fork.CloseAll()
	assert.Equal(t, 1, f.closes, "closed once, with the last descriptor")

	// dup2 over an open descriptor closes what was there.
	a, b := &countingFile{}, &countingFile{}
	fa, _ := tab.Install(a, false)
	fb, _ := tab.Install(b, true)
	got2, errno := tab.Dup2(fa, fb)
	require.Zero(t, errno)
	assert.Equal(t, fb, got2)
	assert.Equal(t, 1, b.closes)
	flags, _ := tab.FDFlags(fb)
	assert.Zero(t, flags, "dup2 clears close-on-exec")
	// dup2 onto a descriptor of the same description keeps it open.
	_, errno = tab.Dup2(fa, fb)
	require.Zero(t, errno)
	assert.Zero(t, a.closes)
	tab.CloseAll()
	assert.Equal(t, 1, a.closes)
}

func TestFDTableCloseOnExec(t *testing.T) {
	tab := NewFDTable()
	files := make([]*countingFile, 5)
	for i := range files {
		files[i] = &countingFile{}
		_, errno := tab.Install(files[i], i%2 == 1)
		require.Zero(t, errno)
	}
	require.Zero(t, tab.SetFDFlags(0, FDCloexec))
	require.Zero(t, tab.SetFDFlags(1, 0))
	tab.CloseOnExec()
	for i, f := range files {
		want := 0
		if i == 0 || i == 3 {
			want = 1
		}
		assert.Equal(t, want, f.closes, "fd %d", i)
	}
	var open []int
	for _, e := range tab.Snapshot() {
		open = append(open, e.FD)
	}
	assert.Equal(t, []int{1, 2, 4}, open)
}

func TestFDTableCloseRange(t *testing.T) {
	tab := NewFDTable()
	for range 6 {
		tab.Install(&countingFile{}, false)
	}
	assert.Equal(t, unix.EINVAL, tab.CloseRange(3, 2, 0))
	assert.Equal(t, unix.EINVAL, tab.CloseRange(0, 1, 0x100))
	require.Zero(t, tab.CloseRange(4, ^uint64(0), unix.CLOSE_RANGE_CLOEXEC))
	flags, _ := tab.FDFlags(5)
	assert.Equal(t, FDCloexec, flags)
	require.Zero(t, tab.CloseRange(1, 2, 0))
	var open []int
	for _, e := range tab.Snapshot() {
		open = append(open, e.FD)
	}
	assert.Equal(t, []int{0, 3, 4, 5}, open)
	require.Zero(t, tab.CloseRange(0, ^uint64(0), 0))
	assert.Empty(t, tab.Snapshot())
}

func TestSnapshotRestore(t *testing.T) {
	lookupModes(t, func(t *testing.T, fs *FS, _ *testTree) {
		tab := fs.NewFDTable()
		open := func(p string, flags int) int {
			f, errno := fs.Open("/", p, flags)
			require.Zero(t, errno, p)
			fd, errno := tab.Install(f, flags&unix.O_CLOEXEC != 0)
			require.Zero(t, errno)
			return fd
		}
		passwd := open("/etc/passwd", unix.O_RDONLY|unix.O_CLOEXEC)
		dir := open("/dev", unix.O_RDONLY|unix.O_DIRECTORY)
		maps := open("/proc/self/maps", unix.O_RDONLY)
		zero := open("/dev/zero", unix.O_RDWR)
		path := open("/file_link", unix.O_PATH|unix.O_NOFOLLOW)
		dup, errno := tab.Dup(passwd)
		require.Zero(t, errno)

		f, _ := tab.Get(passwd)
		_, errno = f.Lseek(5, unix.SEEK_SET)
		require.Zero(t, errno)
		d, _ := tab.Get(dir)
		buf, errno := d.Getdents64(60)
		require.Zero(t, errno)
		assert.Equal(t, []string{".", ".."}, namesOf(ParseDirents64(buf)))
		m, _ := tab.Get(maps)
		_, errno = m.Read(make([]byte, 9))
		require.Zero(t, errno)
		f.SetFlags(unix.O_NONBLOCK)

		snap := tab.Snapshot()
		assert.Equal(t, []FDEntry{
			{FD: 0, Desc: 0, File: FileState{Kind: KindDevice, Path: "/dev/null", Flags: oLargefile}},
			{FD: 1, Desc: 1, File: FileState{Kind: KindDevice, Path: "/dev/null", Flags: unix.O_WRONLY | oLargefile}},
			{FD: 2, Desc: 2, File: FileState{Kind: KindDevice, Path: "/dev/null", Flags: unix.O_WRONLY | oLargefile}},
			{FD: passwd, CloseOnExec: true, Desc: 3, File: FileState{Kind: KindRegular, Path: "/etc/passwd", Flags: unix.O_NONBLOCK | oLargefile, Offset: 5}},
			{FD: dir, Desc: 4, File: FileState{Kind: KindDirectory, Path: "/dev", Flags: unix.O_DIRECTORY | oLargefile, Offset: 2}},
			{FD: maps, Desc: 5, File: FileState{Kind: KindGenerated, Path: "/proc/self/maps", Flags: oLargefile, Offset: 9}},
			{FD: zero, Desc: 6, File: FileState{Kind: KindDevice, Path: "/dev/zero", Flags: unix.O_RDWR | oLargefile}},
			{FD: path, Desc: 7, File: FileState{Kind: KindPath, Path: "/file_link", Flags: unix.O_PATH | unix.O_NOFOLLOW | oLargefile}},
			{FD: dup, Desc: 3, File: FileState{Kind: KindRegular, Path: "/etc/passwd", Flags: unix.O_NONBLOCK | oLargefile, Offset: 5}},
		}, snap)

		restored, err := fs.RestoreFDTable(snap, 512)
		require.NoError(t, err)
		assert.Equal(t, 512, restored.Limit())
		assert.Equal(t, snap, restored.Snapshot(), "the restored table describes the same")

		rf, _ := restored.Get(passwd)
		rdup, _ := restored.Get(dup)
		assert.Same(t, rf, rdup, "dup'ed descriptors share the restored description")
		got := make([]byte, 4)
		n, errno := rf.Read(got)
		require.Zero(t, errno)
		assert.Equal(t, passwdContent[5:9], string(got[:n]))

		rd, _ := restored.Get(dir)
		assert.Equal(t, []string{"hostonly", "null", "random", "urandom", "zero"}, direntNames(t, rd),
			"the listing continues where it was")

		rp, _ := restored.Get(path)
		st, errno := rp.Stat()
		require.Zero(t, errno)
		assert.Equal(t, uint32(unix.S_IFLNK), st.Mode&unix.S_IFMT)

		restored.CloseAll()
		tab.CloseAll()
	})
}

func TestRestoreErrors(t *testing.T) {
	tree := newTestTree(t)
	fs := newTestFS(t, tree, false)
	reg := FileState{Kind: KindRegular, Path: "/etc/passwd", Flags: oLargefile}

	_, err := fs.RestoreFDTable([]FDEntry{{FD: 3, File: FileState{Kind: KindRegular, Path: "/nope"}}}, 1024)
	assert.ErrorIs(t, err, unix.ENOENT)
	_, err = fs.RestoreFDTable([]FDEntry{{FD: 3, File: FileState{Kind: KindRegular, Path: "/etc"}}}, 1024)
	assert.ErrorIs(t, err, unix.ESTALE, "the path is now a directory")
	_, err = fs.RestoreFDTable([]FDEntry{{FD: 3, File: reg}, {FD: 3, Desc: 1, File: reg}}, 1024)
	assert.Error(t, err, "repeated descriptor")
	_, err = fs.RestoreFDTable([]FDEntry{{FD: -1, File: reg}}, 1024)
	assert.Error(t, err)
	_, err = fs.RestoreFDTable(nil, NrOpen+1)
	assert.Error(t, err)
	_, err = fs.RestoreFDTable([]FDEntry{{FD: 3, File: FileState{Kind: "socket"}}}, 1024)
	assert.ErrorIs(t, err, unix.EINVAL)
	_, err = fs.RestoreFDTable([]FDEntry{{FD: 0, File: FileState{Kind: KindStdio, Path: "stdfoo"}}}, 1024)
	assert.ErrorIs(t, err, unix.EINVAL)

	_, errno := fs.Reopen(FileState{Kind: KindRegular, Path: "/etc/passwd", Flags: unix.O_WRONLY})
	assert.Equal(t, unix.EROFS, errno)
}
