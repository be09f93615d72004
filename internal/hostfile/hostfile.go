// Package hostfile opens the host files emuckpt itself reads (the program,
// a checkpoint image, the program a restore names) so that a hostile or
// mistaken path cannot hang or exhaust the host.
//
// Reading /dev/zero with os.ReadFile never ends and grows the process
// until the host runs out of memory; opening a FIFO for reading blocks
// until a writer appears, before any timeout is armed. So every such file
// is opened with O_NONBLOCK (a FIFO's open then returns at once), checked
// with fstat on the open descriptor (no window between the check and the
// use), refused unless it is a regular file, and read only up to a bound.
package hostfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// Sentinel errors, for errors.Is. Errors from the operating system (a
// missing file, EACCES) are returned as *fs.PathError.
var (
	// ErrNotRegular: the path names a directory, a FIFO, a device or a
	// socket, not a regular file.
	ErrNotRegular = errors.New("not a regular file")
	// ErrTooLarge: the file is larger than the caller allows.
	ErrTooLarge = errors.New("file too large")
)

// Error says why a file was refused.
type Error struct {
	Path   string
	Kind   error       // ErrNotRegular or ErrTooLarge
	Mode   fs.FileMode // the file's type and permissions
	Detail string      // e.g. "a character device, not a regular file"
}

func (e *Error) Error() string { return e.Path + ": " + e.Detail }

// Unwrap returns Kind.
func (e *Error) Unwrap() error { return e.Kind }

// Describe names the type of file a mode is, for messages: "a directory",
// "a FIFO", "a character device", ...
func Describe(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "a regular file"
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	}
	return "a special file"
}

// Open opens path for reading and returns it with its fstat only if it is
// a regular file. It never blocks on a FIFO. The descriptor is left in
// blocking mode for the reads that follow.
func Open(path string) (*os.File, fs.FileInfo, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, &Error{Path: path, Kind: ErrNotRegular, Mode: fi.Mode(), Detail: Describe(fi.Mode()) + ", not a regular file"}
	}
	// A regular file never blocks, but reads through the descriptor
	// should not see O_NONBLOCK (some file systems, such as FUSE, honour
	// it).
	if err := unix.SetNonblock(int(f.Fd()), false); err != nil {
		f.Close()
		return nil, nil, &fs.PathError{Op: "fcntl", Path: path, Err: err}
	}
	return f, fi, nil
}

// ReadFile reads the whole regular file at path, which may be at most max
// bytes long (see Open and Read).
func ReadFile(path string, max int64) ([]byte, error) {
	f, fi, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Read(f, fi, max)
}

// Read reads the whole of f, a regular file from Open whose fstat is fi,
// if it is at most max bytes long. A file that grows while it is read is
// refused as well, so the result is never more than max bytes.
func Read(f *os.File, fi fs.FileInfo, max int64) ([]byte, error) {
	path := f.Name()
	size := fi.Size()
	if size > max {
		return nil, &Error{Path: path, Kind: ErrTooLarge, Mode: fi.Mode(), Detail: fmt.Sprintf("%d bytes, more than the %d bytes allowed", size, max)}
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(f, b); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%s: the file became shorter while it was read", path)
		}
		return nil, err
	}
	// Anything beyond the size fstat gave means the file grew: read one
	// more byte to know, without reading the growth itself.
	var extra [1]byte
	if n, _ := f.Read(extra[:]); n > 0 {
		return nil, fmt.Errorf("%s: the file grew while it was read", path)
	}
	return b, nil
}
