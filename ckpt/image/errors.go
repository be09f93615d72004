package image

import (
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"unicode/utf8"
)

// Sentinel errors. Every error this package returns about the content of an
// image is an *Error whose Kind is one of these, so callers can test with
// errors.Is. A CLI should report the message and exit with status 125.
// Errors from the operating system (a missing file, a full disk) are
// returned wrapped with the path but keep their own type (*fs.PathError,
// syscall.Errno, ...).
var (
	// ErrNotImage: the file is not an emuckpt image at all (wrong magic,
	// not a regular file).
	ErrNotImage = errors.New("not an emuckpt image")
	// ErrTruncated: the file ends before the end its header announces.
	ErrTruncated = errors.New("truncated image")
	// ErrCorrupt: a checksum does not match, or the header or the record
	// framing is inconsistent. Also returned by Decoder for a record
	// payload that is too short or malformed, and by Page for a page index
	// the image does not hold.
	ErrCorrupt = errors.New("corrupt image")
	// ErrVersion: the image was written by a newer emuckpt, in a format
	// version (or with format features) this one does not know.
	ErrVersion = errors.New("unsupported image version")
)

// Error is the error type for invalid images.
type Error struct {
	Name   string // the file's path, or "in-memory image"; may be empty
	Kind   error  // ErrNotImage, ErrTruncated, ErrCorrupt or ErrVersion
	Detail string // what is wrong, e.g. "metadata checksum mismatch (file corrupted?)"
	Hint   string // what to do about it; may be empty
}

// Error returns "Name: Detail; Hint", leaving out the parts that are empty.
func (e *Error) Error() string {
	s := e.Detail
	if e.Name != "" {
		s = e.Name + ": " + s
	}
	if e.Hint != "" {
		s += "; " + e.Hint
	}
	return s
}

// Unwrap returns Kind, so errors.Is(err, ErrCorrupt) works.
func (e *Error) Unwrap() error { return e.Kind }

// memName names images that have no file in error messages.
const memName = "in-memory image"

const (
	hintTruncated = "the file was cut short (partial copy, full disk?): take the checkpoint again"
	hintCorrupt   = "the image is damaged and cannot be restored: take the checkpoint again"
	hintVersion   = "restore it with the emuckpt that wrote it, or a newer one"
	hintNotImage  = "pass an image written by 'emuckpt run --checkpoint-to FILE'"
)

func newErr(name string, kind error, hint, format string, args ...any) *Error {
	return &Error{Name: name, Kind: kind, Detail: fmt.Sprintf(format, args...), Hint: hint}
}

func errTruncated(name, format string, args ...any) *Error {
	return newErr(name, ErrTruncated, hintTruncated, "truncated: "+format, args...)
}

func errCorrupt(name, format string, args ...any) *Error {
	return newErr(name, ErrCorrupt, hintCorrupt, format, args...)
}

func errVersion(name, format string, args ...any) *Error {
	return newErr(name, ErrVersion, hintVersion, format, args...)
}

func errNotImage(name, format string, args ...any) *Error {
	return newErr(name, ErrNotImage, hintNotImage, "not an emuckpt image: "+format, args...)
}

// printable renders untrusted bytes for an error message: at most max
// bytes, quoted unless they are plain printable text, so a message never
// carries terminal control sequences and is never long.
func printable(b []byte, max int) string {
	more := ""
	if len(b) > max {
		b, more = b[:max], "..."
	}
	s := string(b)
	plain := utf8.ValidString(s)
	for _, r := range s {
		if !strconv.IsPrint(r) {
			plain = false
			break
		}
	}
	if !plain {
		s = strconv.Quote(s)
	}
	return s + more
}

// bitDistance counts the bits in which a and b differ (over the shorter).
func bitDistance(a, b []byte) int {
	n := 0
	for i := range min(len(a), len(b)) {
		n += bits.OnesCount8(a[i] ^ b[i])
	}
	return n
}

// humanBytes renders a byte count for messages: "4096 bytes", "1 MiB".
func humanBytes(n uint64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return strconv.FormatUint(n>>30, 10) + " GiB"
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.FormatUint(n>>20, 10) + " MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.FormatUint(n>>10, 10) + " KiB"
	}
	return strconv.FormatUint(n, 10) + " bytes"
}
