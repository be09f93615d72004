package vfs

import (
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// FuzzResolve feeds arbitrary guest paths to every path-taking call. Nothing
// may panic, and whatever opens must be inside the root, as the host kernel
// sees it through /proc/self/fd, and be the file its canonical path names.
func FuzzResolve(f *testing.F) {
	seeds := []string{
		"", "/", "//", ".", "..", "../../etc/passwd", "/../../../etc/passwd",
		"/escape_etc/passwd", "/escape_up/etc/passwd", "/escape_deep", "/dir/link_up/etc/passwd",
		"/to_outside", "/to_outside_abs", "/../outside/secret", "/magic/etc/passwd", "/magic_up",
		"/etc/passwd/", "/etc/passwd/x", "/loop1", "/selfloop/x", "/dangling", "/file_slash_link",
		"/lib/../etc/passwd", "lib64/libc.so", "/devnull_link", "/maps_link", "/dev/null",
		"/dev/hostonly", "/dev/../etc/passwd", "/proc/self/maps", "/proc/self/", "/fifo",
		"/dir_link/", "dir_link/sub/../../etc/hosts", "/etc/passwd\x00x", strings.Repeat("../", 100),
		strings.Repeat("a", 300), "/" + strings.Repeat("x/..", 1000),
	}
	for i, s := range seeds {
		f.Add(s, uint8(i))
	}

	tree := newTestTree(f)
	filesystems := []*FS{newTestFS(f, tree, false), newTestFS(f, tree, true)}
	cwds := []string{"/", "/dir", "/dir/sub", "/dev", "/proc/self", "/usr/lib", "relative", ""}
	flagSets := []int{
		unix.O_RDONLY,
		unix.O_PATH | unix.O_NOFOLLOW,
		unix.O_RDONLY | unix.O_DIRECTORY,
		unix.O_RDONLY | unix.O_NOFOLLOW,
		unix.O_WRONLY | unix.O_CREAT,
		unix.O_RDONLY | unix.O_CREAT | unix.O_EXCL,
	}

	f.Fuzz(func(t *testing.T, path string, sel uint8) {
		cwd := cwds[int(sel)%len(cwds)]
		for _, fs := range filesystems {
			for _, flags := range flagSets {
				file, errno := fs.Open(cwd, path, flags)
				if errno != 0 {
					if file != nil {
						t.Fatalf("open(%q, %#x) failed with %v but returned a file", path, flags, errno)
					}
					continue
				}
				checkConfined(t, tree, file, path)
				file.Close()
			}
			fs.Stat(cwd, path)
			fs.Lstat(cwd, path)
			fs.Readlink(cwd, path)
			fs.Access(cwd, path, uint32(sel)&7)
			if dir, errno := fs.Chdir(cwd, path); errno == 0 && !canonical(dir) {
				t.Fatalf("chdir(%q) gave %q", path, dir)
			}
		}
	})
}

func checkConfined(t *testing.T, tree *testTree, file File, path string) {
	t.Helper()
	d := file.Describe()
	if !canonical(d.Path) {
		t.Fatalf("open(%q) gave the non-canonical path %q", path, d.Path)
	}
	if fd := hostFd(file); fd >= 0 {
		host := hostPath(t, fd)
		if !tree.inside(host) {
			t.Fatalf("open(%q) reached %s, outside the root %s", path, host, tree.real)
		}
		want := tree.real + d.Path
		if d.Path == "/" {
			want = tree.real
		}
		if host != want {
			t.Fatalf("open(%q): descriptor is %s, canonical path %q", path, host, d.Path)
		}
	}
	buf := make([]byte, 64)
	if n, errno := file.Pread(buf, 0); errno == 0 && strings.Contains(string(buf[:n]), secretContent) {
		t.Fatalf("open(%q) read the host secret", path)
	}
}

// canonical reports whether p is an absolute path without ".", "..", or
// empty components.
func canonical(p string) bool {
	if p == "/" {
		return true
	}
	if !strings.HasPrefix(p, "/") {
		return false
	}
	for _, c := range strings.Split(p[1:], "/") {
		if c == "" || c == "." || c == ".." {
			return false
		}
	}
	return true
}
