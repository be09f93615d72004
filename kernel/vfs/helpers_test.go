package vfs

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// testTree is a root directory crafted to try every way out, with a
// secret beside it that no guest path may reach.
type testTree struct {
	root    string // as created
	real    string // with host symlinks (such as a /tmp link) resolved
	outside string // the secret file outside the root
}

const (
	passwdContent = "root:x:0:0:guest:/root:/bin/sh\n"
	secretContent = "host secret\n"
	libcContent   = "\x7fELF not really\n"
)

func newTestTree(t testing.TB) *testTree {
	t.Helper()
	base := t.TempDir()
	root := filepath.Join(base, "root")
	outside := filepath.Join(base, "outside")

	mkdir := func(p string) { require.NoError(t, os.MkdirAll(filepath.Join(root, p), 0o755)) }
	write := func(p, content string, mode os.FileMode) {
		require.NoError(t, os.WriteFile(filepath.Join(root, p), []byte(content), mode))
	}
	link := func(target, p string) { require.NoError(t, os.Symlink(target, filepath.Join(root, p))) }

	require.NoError(t, os.MkdirAll(outside, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(outside, "secret"), []byte(secretContent), 0o644))

	mkdir("etc")
	mkdir("bin")
	mkdir("usr/lib")
	mkdir("dir/sub")
	mkdir("dev")
	mkdir("emptydir")
	write("etc/passwd", passwdContent, 0o644)
	write("etc/hosts", "127.0.0.1 localhost\n", 0o644)
	write("bin/sh", "#!", 0o755)
	write("usr/lib/libc.so", libcContent, 0o644)
	write("dir/sub/file", "sub file\n", 0o644)
	write("dev/hostonly", "host dev file\n", 0o644)
	write("dev/null", "a host file shadowed by the device\n", 0o644)
	require.NoError(t, unix.Mkfifo(filepath.Join(root, "fifo"), 0o644))

	link("usr/lib", "lib")                                   // relative
	link("/usr/lib", "lib64")                                // absolute
	link("/etc", "escape_etc")                               // absolute, to a host path too
	link("../..", "escape_up")                               // above the root
	link("../../../../etc/passwd", "escape_deep")            // far above
	link("../../..", "dir/link_up")                          // from a subdirectory
	link("../outside/secret", "to_outside")                  // to the sibling
	link(filepath.Join(outside, "secret"), "to_outside_abs") // host absolute path
	link("loop2", "loop1")
	link("loop1", "loop2")
	link("selfloop", "selfloop")
	link("/nonexistent", "dangling")
	link("etc/passwd", "file_link")
	link("dir", "dir_link")
	link("etc/passwd/", "file_slash_link")
	link("/dev/null", "devnull_link")
	link("/proc/self/maps", "maps_link")
	link("/proc/self/root", "magic")
	link("/proc/self/cwd/../outside/secret", "magic_up")

	real, err := filepath.EvalSymlinks(root)
	require.NoError(t, err)
	return &testTree{root: root, real: real, outside: filepath.Join(outside, "secret")}
}

// newTestFS makes an FS on a test tree; stepwise forces the lookups that
// do without openat2.
func newTestFS(t testing.TB, tree *testTree, stepwise bool) *FS {
	t.Helper()
	fs, err := New(Options{
		Root:   tree.root,
		Random: bytes.NewReader(bytes.Repeat([]byte{0xAB}, 1<<16)),
		Maps:   func() []byte { return []byte("00400000-00401000 r-xp 00000000 00:00 0 /bin/prog\n") },
	})
	require.NoError(t, err)
	if stepwise {
		fs.root.openat2 = false
	}
	t.Cleanup(func() { fs.Close() })
	return fs
}

// lookupModes runs a test with openat2 and with the stepwise fallback.
func lookupModes(t *testing.T, run func(t *testing.T, fs *FS, tree *testTree)) {
	for _, stepwise := range []bool{false, true} {
		name := "openat2"
		if stepwise {
			name = "stepwise"
		}
		t.Run(name, func(t *testing.T) {
			tree := newTestTree(t)
			run(t, newTestFS(t, tree, stepwise), tree)
		})
	}
}

// hostFd returns the host descriptor behind a File, or -1 for a file
// without one.
func hostFd(f File) int {
	switch f := f.(type) {
	case *regularFile:
		return f.fd
	case *dirFile:
		return f.fd
	case *pathFile:
		return f.fd
	}
	return -1
}

// hostPath is the host path the kernel says a descriptor refers to.
func hostPath(t testing.TB, fd int) string {
	t.Helper()
	p, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	require.NoError(t, err)
	return p
}

// inside reports whether host path p is the root or beneath it.
func (tree *testTree) inside(p string) bool {
	return p == tree.real || strings.HasPrefix(p, tree.real+"/")
}

func readAll(t testing.TB, f File) string {
	t.Helper()
	var out []byte
	buf := make([]byte, 7) // small, to exercise the offset
	for {
		n, errno := f.Read(buf)
		require.Zero(t, errno)
		if n == 0 {
			return string(out)
		}
		out = append(out, buf[:n]...)
	}
}

// fakeMemory is guest memory as a map of addresses to bytes.
type fakeMemory struct {
	mem  map[uint64]byte
	fail bool
}

func newFakeMemory() *fakeMemory { return &fakeMemory{mem: map[uint64]byte{}} }

func (m *fakeMemory) CopyIn(va uint64, dst []byte) error {
	if m.fail {
		return errors.New("fault")
	}
	for i := range dst {
		dst[i] = m.mem[va+uint64(i)]
	}
	return nil
}

func (m *fakeMemory) CopyOut(va uint64, src []byte) error {
	if m.fail {
		return errors.New("fault")
	}
	for i, b := range src {
		m.mem[va+uint64(i)] = b
	}
	return nil
}

func (m *fakeMemory) bytes(va uint64, n int) []byte {
	out := make([]byte, n)
	m.CopyIn(va, out)
	return out
}

// direntNames lists a directory through Getdents64.
func direntNames(t testing.TB, f File) []string {
	t.Helper()
	var names []string
	for {
		buf, errno := f.Getdents64(4096)
		require.Zero(t, errno)
		if len(buf) == 0 {
			return names
		}
		for _, e := range ParseDirents64(buf) {
			names = append(names, e.Name)
		}
	}
}
