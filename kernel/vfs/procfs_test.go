package vfs

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// fakeProcs is a process table for /proc: pid → tids; zombies have no exe.
type fakeProcs struct {
	self, selfTID int
	threads       map[int][]int
	zombie        map[int]bool
	files         map[int]*FDTable
}

func (p *fakeProcs) Self() (int, int) { return p.self, p.selfTID }
func (p *fakeProcs) PIDs() []int {
	var out []int
	for pid := range p.threads {
		out = append(out, pid)
	}
	return out
}
func (p *fakeProcs) Threads(pid int) ([]int, bool) { t, ok := p.threads[pid]; return t, ok }
func (p *fakeProcs) File(pid, tid int, name string) ([]byte, bool) {
	if _, ok := p.threads[pid]; !ok {
		return nil, false
	}
	return []byte(fmt.Sprintf("%s of %d/%d\n", name, pid, tid)), true
}
func (p *fakeProcs) Exe(pid int) (string, bool) {
	if _, ok := p.threads[pid]; !ok || p.zombie[pid] {
		return "", false
	}
	return fmt.Sprintf("/bin/prog%d", pid), true
}

func (p *fakeProcs) Files(pid int) *FDTable    { return p.files[pid] }
func (p *fakeProcs) System(name string) []byte { return []byte(name + " of the system\n") }
func (p *fakeProcs) MappedFiles(pid int) []MappedFile {
	if pid != 2 {
		return nil
	}
	return []MappedFile{{0x400000, 0x401000, "/bin/prog2"}, {0x7f0000001000, 0x7f0000003000, "/dev/zero"}}
}

func newProcFS(t *testing.T, root string) (*FS, *fakeProcs) {
	procs := &fakeProcs{self: 2, selfTID: 3, threads: map[int][]int{2: {2, 3}, 7: {7}, 9: {9}}, zombie: map[int]bool{9: true}}
	fs, err := New(Options{Root: root, Procs: procs})
	require.NoError(t, err)
	t.Cleanup(func() { fs.Close() })
	return fs, procs
}

func TestProcfsLookups(t *testing.T) {
	// The root has a /proc of its own, with a "2" in it: /proc hides it.
	root := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(root, "proc/2/hostonly"), 0o755))
	fs, procs := newProcFS(t, root)

	links := []struct{ path, want string }{
		{"/proc/self", "2"},
		{"/proc/thread-self", "2/task/3"},
		{"/proc/7/exe", "/bin/prog7"},
		{"/proc/self/task/3/exe", "/bin/prog2"},
		{"/proc/self/map_files/400000-401000", "/bin/prog2"},
		{"/proc/2/map_files/7f0000001000-7f0000003000", "/dev/zero"},
	}
	for _, tt := range links {
		got, errno := fs.Readlink("/", tt.path)
		require.Zero(t, errno, tt.path)
		assert.Equal(t, tt.want, got, tt.path)
	}
	_, errno := fs.Readlink("/", "/proc/9/exe")
	assert.Equal(t, unix.ENOENT, errno, "a zombie's exe")

	reads := []struct{ path, want string }{
		{"/proc/self/stat", "stat of 2/0\n"},
		{"/proc/thread-self/status", "status of 2/3\n"},
		{"/proc/7/maps", "maps of 7/0\n"},
		{"/proc/2/task/2/comm", "comm of 2/2\n"},
		{"/proc/self/cmdline", "cmdline of 2/0\n"},
	}
	for _, tt := range reads {
		f, errno := fs.Open("/", tt.path, unix.O_RDONLY)
		require.Zero(t, errno, tt.path)
		assert.Equal(t, tt.want, readAll(t, f), tt.path)
		st, _ := f.Stat()
		assert.Equal(t, uint32(unix.S_IFREG|0o444), st.Mode, tt.path)
		f.Close()
	}

	missing := []struct {
		path  string
		errno unix.Errno
	}{
		{"/proc/8", unix.ENOENT},
		{"/proc/02", unix.ENOENT},
		{"/proc/2/hostonly", unix.ENOENT},
		{"/proc/2/task/7", unix.ENOENT},
		{"/proc/2/task/3/task", unix.ENOENT},
		{"/proc/2/nothing", unix.ENOENT},
		{"/proc/self/stat/x", unix.ENOTDIR},
		{"/proc/self/map_files/0400000-401000", unix.ENOENT},
		{"/proc/self/map_files/400000-401000 ", unix.ENOENT},
		{"/proc/7/map_files/400000-401000", unix.ENOENT},
	}
	for _, tt := range missing {
		_, errno := fs.Stat("/", tt.path)
		assert.Equal(t, tt.errno, errno, tt.path)
	}
	_, errno = fs.Open("/", "/proc/self/stat", unix.O_WRONLY)
	assert.Equal(t, unix.EACCES, errno)

	// Inode numbers stay the same for the same path.
	a, _ := fs.Stat("/", "/proc/7/stat")
	b, _ := fs.Stat("/", "/proc/7/stat")
	c, _ := fs.Stat("/", "/proc/2/stat")
	assert.Equal(t, a.Ino, b.Ino)
	assert.NotEqual(t, a.Ino, c.Ino)

	// A process that goes away leaves an open file reading empty.
	f, errno := fs.Open("/", "/proc/7/status", unix.O_RDONLY)
	require.Zero(t, errno)
	delete(procs.threads, 7)
	assert.Empty(t, readAll(t, f))
	f.Close()
	_, errno = fs.Stat("/", "/proc/7")
	assert.Equal(t, unix.ENOENT, errno)
}

func TestProcfsListings(t *testing.T) {
	fs, _ := newProcFS(t, "")
	tests := []struct {
		path string
		want []string
	}{
		{"/proc", []string{".", "..", "2", "7", "9", "cpuinfo", "loadavg", "meminfo", "mounts", "self", "stat", "thread-self", "uptime", "version"}},
		{"/proc/self", []string{".", "..", "cmdline", "comm", "exe", "fd", "map_files", "maps", "mounts", "smaps", "stat", "status", "task"}},
		{"/proc/2/task", []string{".", "..", "2", "3"}},
		{"/proc/2/task/3", []string{".", "..", "cmdline", "comm", "exe", "fd", "map_files", "maps", "mounts", "smaps", "stat", "status"}},
	}
	for _, tt := range tests {
		d, errno := fs.Open("/", tt.path, unix.O_RDONLY|unix.O_DIRECTORY)
		require.Zero(t, errno, tt.path)
		assert.Equal(t, tt.want, direntNames(t, d), tt.path)
		d.Close()
	}
}

// TestProcfsDescriptors: /proc/PID/fd lists the open descriptors as links
// named as Linux names them; a tmpfs file opens again through its link
// even once unlinked, as through Linux's magic links; /proc/mounts and
// the system files read.
func TestProcfsDescriptors(t *testing.T) {
	fs, procs := newProcFS(t, "")
	require.NoError(t, fs.MountTmpfs("/tmp", 1<<20))
	tab := NewFDTable()
	procs.files = map[int]*FDTable{2: tab}
	null, errno := fs.Open("/", "/dev/null", unix.O_RDWR)
	require.Zero(t, errno)
	tmp, errno := fs.OpenMode("/", "/tmp/f", unix.O_RDWR|unix.O_CREAT, 0o600)
	require.Zero(t, errno)
	_, errno = tmp.Write([]byte("kept"))
	require.Zero(t, errno)
	r, w := NewPipe(0)
	for _, f := range []File{null, tmp, r, w} {
		_, errno := tab.Install(f, false)
		require.Zero(t, errno)
	}
	require.Zero(t, fs.Unlink("/", "/tmp/f"))

	d, errno := fs.Open("/", "/proc/self/fd", unix.O_RDONLY|unix.O_DIRECTORY)
	require.Zero(t, errno)
	assert.Equal(t, []string{".", "..", "0", "1", "2", "3"}, direntNames(t, d))
	d.Close()
	target, errno := fs.Readlink("/", "/proc/2/fd/0")
	require.Zero(t, errno)
	assert.Equal(t, "/dev/null", target)
	target, errno = fs.Readlink("/", "/proc/2/fd/2")
	require.Zero(t, errno)
	st, _ := r.Stat()
	assert.Equal(t, fmt.Sprintf("pipe:[%d]", st.Ino), target)

	again, errno := fs.Open("/", "/proc/self/fd/1", unix.O_RDONLY)
	require.Zero(t, errno, "an unlinked tmpfs file opens through its link")
	assert.Equal(t, "kept", readAll(t, again))
	again.Close()
	fst, errno := fs.Stat("/", "/proc/self/fd/1")
	require.Zero(t, errno)
	assert.Equal(t, uint32(unix.S_IFREG), fst.Mode&unix.S_IFMT, "stat follows the magic link")
	lst, errno := fs.Lstat("/", "/proc/self/fd/1")
	require.Zero(t, errno)
	assert.Equal(t, uint32(unix.S_IFLNK), lst.Mode&unix.S_IFMT)
	_, errno = fs.Open("/", "/proc/self/fd/1", unix.O_RDONLY|unix.O_NOFOLLOW)
	assert.Equal(t, unix.ELOOP, errno)
	// A pipe's link opens another end of it, for either direction.
	w2, errno := fs.Open("/", "/proc/self/fd/2", unix.O_WRONLY)
	require.Zero(t, errno)
	_, errno = w2.Write([]byte("via the link"))
	require.Zero(t, errno)
	require.Zero(t, w.Close())
	require.Zero(t, w2.Close())
	buf := make([]byte, 64)
	n, errno := r.Read(buf)
	require.Zero(t, errno)
	assert.Equal(t, "via the link", string(buf[:n]))
	n, errno = r.Read(buf)
	assert.Equal(t, 0, n, "end of file once both write ends are closed")
	_, errno = fs.Open("/", "/proc/self/fd/2", unix.O_RDWR)
	assert.Equal(t, unix.EINVAL, errno, "a pipe end has one direction here")
	_, errno = fs.Stat("/", "/proc/self/fd/4")
	assert.Equal(t, unix.ENOENT, errno)
	_, errno = fs.Stat("/", "/proc/7/fd/0")
	assert.Equal(t, unix.ENOENT, errno, "a process without a table (a zombie)")

	mounts, errno := fs.Open("/", "/proc/mounts", unix.O_RDONLY)
	require.Zero(t, errno)
	assert.Equal(t, "none / ramfs ro,relatime 0 0\n"+
		"proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0\n"+
		"devtmpfs /dev devtmpfs rw,nosuid,relatime,mode=755 0 0\n"+
		"tmpfs /tmp tmpfs rw,relatime,size=1024k 0 0\n", readAll(t, mounts))
	mounts.Close()
	for _, name := range SystemFiles {
		f, errno := fs.Open("/", "/proc/"+name, unix.O_RDONLY)
		require.Zero(t, errno, name)
		assert.Equal(t, name+" of the system\n", readAll(t, f))
		f.Close()
	}
}
