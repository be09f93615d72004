package loader

import (
	"errors"
	"fmt"
	"strconv"
	"syscall"
	"unicode/utf8"
)

// Sentinel errors. Every error returned by this package is a *Error whose
// Kind is one of these, so callers can test with errors.Is. A CLI should map
// ErrNotELF, ErrWrongArch, ErrDynamic and ErrCorrupt to exit status 126
// ("cannot execute") and print the error's message.
var (
	// ErrNotELF: the file does not start with the ELF magic (a script, a
	// text file, a binary for another operating system...).
	ErrNotELF = errors.New("not an ELF file")
	// ErrWrongArch: an ELF file, but not 64-bit little-endian x86-64.
	ErrWrongArch = errors.New("ELF for the wrong architecture")
	// ErrDynamic: the program needs a dynamic linker (has PT_INTERP).
	ErrDynamic = errors.New("dynamically linked")
	// ErrCorrupt: any other reason the file cannot be loaded: truncated or
	// inconsistent headers, not an executable (ET_REL, ET_CORE), ...
	ErrCorrupt = errors.New("malformed ELF")

	// ErrArgListTooLong: the arguments and environment do not fit the
	// limits Linux's execve applies (E2BIG).
	ErrArgListTooLong = errors.New("argument list too long")
	// ErrInvalidStack: BuildStack was called with unusable input (a string
	// containing NUL, a misaligned stack top, AT_NULL in the auxv...).
	ErrInvalidStack = errors.New("invalid initial stack request")
)

// Error is the error type returned by Parse and BuildStack.
type Error struct {
	Kind   error  // one of the sentinel errors above
	Detail string // what is wrong, e.g. "ELF for AArch64, need x86-64"
	Hint   string // what to do about it; may be empty
}

// Error returns "Detail; Hint", or just Detail when there is no hint.
func (e *Error) Error() string {
	if e.Hint == "" {
		return e.Detail
	}
	return e.Detail + "; " + e.Hint
}

// Unwrap makes errors.Is work both with the Kind and with the errno Linux's
// execve would return (ENOEXEC or E2BIG).
func (e *Error) Unwrap() []error { return []error{e.Kind, e.Errno()} }

// Errno is what Linux's execve(2) would fail with for this error. Useful
// when the kernel emulates execve for the guest.
func (e *Error) Errno() syscall.Errno {
	switch e.Kind {
	case ErrArgListTooLong:
		return syscall.E2BIG
	case ErrInvalidStack:
		return syscall.EINVAL
	case ErrDynamic:
		// Linux would go on to open the interpreter; we cannot run it,
		// which looks to the guest like a missing interpreter. ENOEXEC
		// would be wrong here: on ENOEXEC, sh retries the file as a
		// shell script.
		return syscall.ENOENT
	default:
		return syscall.ENOEXEC
	}
}

// Hints, shared by several errors.
const (
	hintCorrupt = "the file is truncated or damaged, or was not produced by a linker: rebuild it"
	hintArch    = "emuckpt runs 64-bit x86-64 Linux programs: build for x86_64-linux (e.g. GOARCH=amd64, or an x86_64 cross compiler)"
	hintStatic  = "emuckpt runs static programs: rebuild with -static or musl-gcc -static"
	hintNotELF  = "emuckpt runs static x86-64 Linux ELF executables"
)

func corrupt(format string, args ...any) *Error {
	return &Error{Kind: ErrCorrupt, Detail: "malformed ELF: " + fmt.Sprintf(format, args...), Hint: hintCorrupt}
}

func wrongArch(format string, args ...any) *Error {
	return &Error{Kind: ErrWrongArch, Detail: fmt.Sprintf(format, args...), Hint: hintArch}
}

func tooBig(format string, args ...any) *Error {
	return &Error{Kind: ErrArgListTooLong, Detail: "argument list too long: " + fmt.Sprintf(format, args...)}
}

func invalidStack(format string, args ...any) *Error {
	return &Error{Kind: ErrInvalidStack, Detail: "invalid initial stack: " + fmt.Sprintf(format, args...)}
}

// printable renders untrusted bytes from the file for an error message: at
// most max bytes, quoted with escapes if it is not plain printable text, so
// an error message can never carry terminal control sequences or be huge.
func printable(b []byte, max int) string {
	truncated := false
	if len(b) > max {
		b, truncated = b[:max], true
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
	if truncated {
		s += "..."
	}
	return s
}
