package vfs

import (
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// hostResolve is how every host lookup is confined: the path is resolved as
// if Root were "/", may not cross magic links, and may not cross symbolic
// links at all, since the walker has already expanded them all.
const hostResolve = unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_SYMLINKS

// hostRoot is the guest's root directory on the host. It is the only way
// this package reaches host files: by canonical component lists, opened
// beneath an O_PATH descriptor of Root.
type hostRoot struct {
	fd   int    // O_PATH|O_DIRECTORY descriptor of Root
	path string // Root as given, for messages
	// openat2 is false where openat2(2) is unavailable; lookups then descend
	// one component at a time.
	openat2 bool
}

func openHostRoot(dir string) (*hostRoot, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("vfs: open root %q: %w", dir, err)
	}
	r := &hostRoot{fd: fd, path: dir, openat2: true}
	probe, err := unix.Openat2(fd, ".", &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: hostResolve,
	})
	switch err {
	case nil:
		unix.Close(probe)
	case unix.ENOSYS, unix.EPERM:
		r.openat2 = false
	default:
		unix.Close(fd)
		return nil, fmt.Errorf("vfs: probe root %q: %w", dir, err)
	}
	return r, nil
}

func (r *hostRoot) close() {
	if r.fd >= 0 {
		unix.Close(r.fd)
		r.fd = -1
	}
}

// open opens the object at the canonical components comps with flags, never
// following a symbolic link. comps must be plain names; anything else is
// refused with EINVAL before the host sees it.
func (r *hostRoot) open(comps []string, flags int) (int, unix.Errno) {
	for _, c := range comps {
		if !plainName(c) {
			return -1, unix.EINVAL
		}
	}
	flags |= unix.O_NOFOLLOW | unix.O_CLOEXEC
	rel := strings.Join(comps, "/")
	if rel == "" {
		rel = "."
	}
	if r.openat2 && len(rel) < PathMax {
		how := unix.OpenHow{Flags: uint64(flags), Resolve: hostResolve}
		for try := 0; ; try++ {
			fd, err := unix.Openat2(r.fd, rel, &how)
			// EAGAIN: a concurrent rename on the host; the kernel asks
			// for a retry.
			if (err == unix.EAGAIN || err == unix.EINTR) && try < 8 {
				continue
			}
			if err != nil {
				return -1, errnoOf(err)
			}
			return fd, 0
		}
	}
	return r.openStepwise(comps, flags)
}

// openStepwise is open without openat2: it descends from the root
// descriptor one directory at a time, refusing to cross symbolic links, so
// it can never leave Root.
func (r *hostRoot) openStepwise(comps []string, flags int) (int, unix.Errno) {
	if len(comps) == 0 {
		return openatRetry(r.fd, ".", flags)
	}
	dir := r.fd
	closeDir := func() {
		if dir != r.fd {
			unix.Close(dir)
		}
	}
	for _, c := range comps[:len(comps)-1] {
		next, errno := openatRetry(dir, c, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC)
		closeDir()
		if errno != 0 {
			return -1, errno
		}
		dir = next
	}
	fd, errno := openatRetry(dir, comps[len(comps)-1], flags)
	closeDir()
	return fd, errno
}

func openatRetry(dir int, name string, flags int) (int, unix.Errno) {
	for {
		fd, err := unix.Openat(dir, name, flags, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return -1, errnoOf(err)
		}
		return fd, 0
	}
}

// lstat returns an O_PATH descriptor of the object at comps (a symbolic link
// itself, not its target) and its stat. The caller closes the descriptor.
func (r *hostRoot) lstat(comps []string) (int, unix.Stat_t, unix.Errno) {
	var st unix.Stat_t
	fd, errno := r.open(comps, unix.O_PATH)
	if errno != 0 {
		return -1, st, errno
	}
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, st, errnoOf(err)
	}
	return fd, st, 0
}

// stat is lstat without the descriptor.
func (r *hostRoot) stat(comps []string) (unix.Stat_t, unix.Errno) {
	fd, st, errno := r.lstat(comps)
	if errno == 0 {
		unix.Close(fd)
	}
	return st, errno
}

// readlink reads the target of a symbolic link from its O_PATH descriptor.
func readlinkFd(fd int) (string, unix.Errno) {
	buf := make([]byte, PathMax)
	n, err := unix.Readlinkat(fd, "", buf)
	if err != nil {
		return "", errnoOf(err)
	}
	if n >= len(buf) {
		return "", unix.ENAMETOOLONG
	}
	return string(buf[:n]), 0
}

// openRead opens the regular file or directory at comps for reading and
// checks that it is still the object st describes. It is the only way a
// readable host descriptor is made.
func (r *hostRoot) openRead(comps []string, st *unix.Stat_t) (int, unix.Errno) {
	flags := unix.O_RDONLY | unix.O_NOCTTY | unix.O_NONBLOCK
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		flags |= unix.O_DIRECTORY
	case unix.S_IFREG:
	default:
		return -1, unix.EACCES
	}
	fd, errno := r.open(comps, flags)
	if errno != 0 {
		return -1, errno
	}
	var now unix.Stat_t
	if err := unix.Fstat(fd, &now); err != nil {
		unix.Close(fd)
		return -1, errnoOf(err)
	}
	if now.Dev != st.Dev || now.Ino != st.Ino || now.Mode&unix.S_IFMT != st.Mode&unix.S_IFMT {
		// Replaced on the host between the lookup and the open.
		unix.Close(fd)
		return -1, unix.ESTALE
	}
	// The descriptor's own offset is never used (reads are preads), but
	// O_NONBLOCK must not leak into a host read.
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return -1, errnoOf(err)
	}
	return fd, 0
}
