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
		{"/proc", []string{".", "..", "2", "7", "9", "self", "thread-self"}},
		{"/proc/self", []string{".", "..", "cmdline", "comm", "exe", "maps", "stat", "status", "task"}},
		{"/proc/2/task", []string{".", "..", "2", "3"}},
		{"/proc/2/task/3", []string{".", "..", "cmdline", "comm", "exe", "maps", "stat", "status"}},
	}
	for _, tt := range tests {
		d, errno := fs.Open("/", tt.path, unix.O_RDONLY|unix.O_DIRECTORY)
		require.Zero(t, errno, tt.path)
		assert.Equal(t, tt.want, direntNames(t, d), tt.path)
		d.Close()
	}
}
