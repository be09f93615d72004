package vfs

import (
	"strings"

	"golang.org/x/sys/unix"
)

// Linux path limits.
const (
	// PathMax is PATH_MAX: a path, with its NUL, must fit in it.
	PathMax = 4096
	// NameMax is NAME_MAX, the longest file name.
	NameMax = 255
	// MaxSymlinks is how many symbolic links one lookup may follow.
	MaxSymlinks = 40
)

// cString cuts a path at its first NUL, as the kernel reads a C string.
func cString(p string) string {
	if i := strings.IndexByte(p, 0); i >= 0 {
		return p[:i]
	}
	return p
}

// splitPath returns the non-empty components of p.
func splitPath(p string) []string {
	var out []string
	for _, c := range strings.Split(p, "/") {
		if c != "" {
			out = append(out, c)
		}
	}
	return out
}

// joinPath makes the absolute guest path of canonical components.
func joinPath(comps []string) string {
	return "/" + strings.Join(comps, "/")
}

// plainName reports whether c can be a canonical path component: a non-empty
// file name that is not "." or ".." and holds no "/" or NUL.
func plainName(c string) bool {
	return c != "" && c != "." && c != ".." && len(c) <= NameMax && !strings.ContainsAny(c, "/\x00")
}

// cleanAbs checks that p is an absolute guest path for registering a
// synthetic entry and returns its components.
func cleanAbs(p string) ([]string, bool) {
	if !strings.HasPrefix(p, "/") {
		return nil, false
	}
	comps := splitPath(p)
	if len(comps) == 0 {
		return nil, false
	}
	for _, c := range comps {
		if !plainName(c) {
			return nil, false
		}
	}
	return comps, true
}

// Getcwd returns what getcwd(2) copies to the guest for a cwd and a buffer
// of size bytes: the path and its NUL, or ERANGE when they do not fit.
func Getcwd(cwd string, size uint64) ([]byte, unix.Errno) {
	if cwd == "" {
		cwd = "/"
	}
	if uint64(len(cwd))+1 > size {
		return nil, unix.ERANGE
	}
	return append([]byte(cwd), 0), 0
}
