// Package testfs gives tests directories that fail the way real ones do:
// a read-only one, and a small file system that fills up (ENOSPC). The
// file systems are tmpfs mounts, which need root (CAP_SYS_ADMIN); without
// it the test is skipped and says why. Each mount is a fresh directory under the
// test's TempDir, unmounted when the test ends.
package testfs

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// Tmpfs mounts a tmpfs of size bytes (e.g. "256k") on a new directory and
// returns it.
func Tmpfs(tb testing.TB, size string) string {
	tb.Helper()
	dir := filepath.Join(tb.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size="+size+",mode=0755"); err != nil {
		tb.Skipf("skipping: cannot mount a tmpfs (needs root): %v", err)
	}
	tb.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			tb.Errorf("unmounting %s: %v", dir, err)
		}
	})
	return dir
}

// SetReadOnly remounts a Tmpfs directory read-only, or read-write again.
func SetReadOnly(tb testing.TB, dir string, readOnly bool) {
	tb.Helper()
	flags := uintptr(unix.MS_REMOUNT | unix.MS_NOSUID | unix.MS_NODEV)
	if readOnly {
		flags |= unix.MS_RDONLY
	}
	if err := unix.Mount("", dir, "", flags, ""); err != nil {
		tb.Fatalf("remounting %s (read-only %v): %v", dir, readOnly, err)
	}
}

// ReadOnly returns a directory in which nothing can be created: one
// without write permission, or, for root, whom permissions do not stop, a
// read-only tmpfs.
func ReadOnly(tb testing.TB) string {
	tb.Helper()
	if os.Geteuid() != 0 {
		dir := filepath.Join(tb.TempDir(), "ro")
		if err := os.Mkdir(dir, 0o555); err != nil {
			tb.Fatal(err)
		}
		return dir
	}
	dir := Tmpfs(tb, "64k")
	SetReadOnly(tb, dir, true)
	return dir
}
