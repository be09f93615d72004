package image

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// The temporary file an image is written to.
//
// Create writes an image to a file with no name: open(2) of the image's
// directory with O_TMPFILE. Commit gives it a name only when it is
// complete and synced: linkat(2) to a temporary name, then rename(2) over
// the image (linkat cannot replace a file). A process killed while it
// writes therefore leaves nothing behind: the kernel frees a file without
// a name when its last descriptor closes. Only between the linkat and the
// rename, two system calls, does the file have its temporary name.
//
// File systems that refuse O_TMPFILE (some network and FUSE file systems)
// get a named temporary file from the start. Either way the temporary
// name is
//
//	.<image name>.emuckpt-tmp.<PID>.<random digits>
//
// and the writer holds an flock(2) lock on the file until it is renamed or
// removed. A temporary file whose PID is no running process and whose
// lock nobody holds was left by a writer that died (kill -9, a crash):
// removeStale removes those. Create calls it when it falls back to a named
// file, and CheckDestination always does.

// tempMarker follows the image's name in its temporary files' names.
const tempMarker = ".emuckpt-tmp."

// forceNamedTemp makes createTemp behave as on a file system without
// O_TMPFILE (for tests).
var forceNamedTemp bool

// tempPrefix is what the names of the temporary files of the image named
// base start with; the PID comes next.
func tempPrefix(base string) string { return "." + base + tempMarker }

// createTemp creates the file the image named base in dir is written to,
// with mode 0600 (images hold process memory), and locks it. tmpName is
// its name, or "" when it has none (O_TMPFILE).
func createTemp(dir, base string) (f *os.File, tmpName string, err error) {
	if !forceNamedTemp {
		fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
		if err == nil {
			f := os.NewFile(uintptr(fd), filepath.Join(dir, base))
			lockTemp(f)
			return f, "", nil
		}
		// EOPNOTSUPP: the file system has no O_TMPFILE; EISDIR: the
		// kernel has none (before Linux 3.11).
		if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EINVAL) {
			return nil, "", err
		}
	}
	removeStale(dir, base)
	f, err = os.CreateTemp(dir, tempPrefix(base)+strconv.Itoa(os.Getpid())+".")
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, "", err
	}
	lockTemp(f)
	return f, f.Name(), nil
}

// lockTemp marks f as being written. A file system without locks
// (ENOLCK) leaves only the PID to tell a live writer.
func lockTemp(f *os.File) {
	unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
}

// procFD is the /proc path that opens f's file again, even one without a
// name.
func procFD(f *os.File) string { return "/proc/self/fd/" + strconv.Itoa(int(f.Fd())) }

// linkTemp gives f, a file created with O_TMPFILE, a temporary name in
// dir and returns it.
func linkTemp(f *os.File, dir, base string) (string, error) {
	for {
		name := filepath.Join(dir, fmt.Sprintf("%s%d.%d", tempPrefix(base), os.Getpid(), rand.Uint32()))
		// open(2) documents this linkat for O_TMPFILE files; AT_EMPTY_PATH
		// does the same without /proc, but needs CAP_DAC_READ_SEARCH
		// before Linux 6.10.
		err := unix.Linkat(unix.AT_FDCWD, procFD(f), unix.AT_FDCWD, name, unix.AT_SYMLINK_FOLLOW)
		if errors.Is(err, unix.ENOENT) {
			if _, perr := os.Stat("/proc/self/fd"); perr != nil {
				err = unix.Linkat(int(f.Fd()), "", unix.AT_FDCWD, name, unix.AT_EMPTY_PATH)
			}
		}
		if !errors.Is(err, unix.EEXIST) {
			return name, err
		}
	}
}

// removeStale removes the temporary files of the image named base in dir
// that writers which died left behind (see the top of this file), and
// returns their paths. It never fails: the files are only litter.
func removeStale(dir, base string) (removed []string) {
	d, err := os.Open(dir)
	if err != nil {
		return nil
	}
	names, _ := d.Readdirnames(-1)
	d.Close()
	prefix := tempPrefix(base)
	for _, name := range names {
		rest, ok := strings.CutPrefix(name, prefix)
		if !ok {
			continue
		}
		pidText, _, _ := strings.Cut(rest, ".")
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid <= 0 || pid == os.Getpid() || processExists(pid) {
			continue
		}
		path := filepath.Join(dir, name)
		if removeUnlocked(path) {
			removed = append(removed, path)
		}
	}
	return removed
}

// processExists reports whether a process with this PID runs (EPERM: it
// does, as another user).
func processExists(pid int) bool {
	err := unix.Kill(pid, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}

// removeUnlocked removes the regular file at path if nobody holds its
// lock, and reports whether it did.
func removeUnlocked(path string) bool {
	if fi, err := os.Lstat(path); err != nil || !fi.Mode().IsRegular() {
		return false
	}
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
		return false
	}
	return os.Remove(path) == nil
}

// checkTarget refuses a final path that Create must not replace: a
// directory, or anything else that is not a regular file (a device, a
// FIFO, a socket).
func checkTarget(path string) error {
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		return nil // Create makes it, or says why it cannot
	case fi.IsDir():
		return fmt.Errorf("%s is a directory; name an image file (in it)", path)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%s is not a regular file, and an image would replace it", path)
	}
	return nil
}

// CheckDestination tells whether Create can put an image at path, before
// anything is written, so that a mistake costs nothing: path must not be
// a directory or other non-regular file, its directory must exist and
// must let us create files (it creates and discards an unnamed one, so
// permissions and read-only mounts are found). It also removes stale
// temporary files of the image, left by writers that died, and returns
// their paths.
func CheckDestination(path string) (removed []string, err error) {
	if path == "" || strings.HasSuffix(path, "/") {
		return nil, fmt.Errorf("%q is not a file name", path)
	}
	if err := checkTarget(path); err != nil {
		return nil, err
	}
	dir, base := filepath.Dir(path), filepath.Base(path)
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("directory %s does not exist (create it first)", dir)
	case errors.Is(err, unix.ENOTDIR) || err == nil && !fi.IsDir():
		return nil, fmt.Errorf("%s is not a directory", dir)
	case err != nil:
		return nil, err
	}
	removed = removeStale(dir, base) // before createTemp, which may remove them unreported
	f, tmpName, err := createTemp(dir, base)
	if err != nil {
		return removed, fmt.Errorf("cannot create files in %s: %w", dir, err)
	}
	f.Close()
	if tmpName != "" {
		os.Remove(tmpName)
	}
	return removed, nil
}
