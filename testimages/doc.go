// Package testimages holds the guest programs used by emuckpt's end-to-end
// tests.
//
// Each program is a small C source file under src/ built by the Makefile
// into a static musl binary under bin/ (plus bin/hello-pie, a static PIE
// build of hello.c).  The binaries are committed next to their sources, so
// running `go test` needs no C toolchain; after editing a source file run
// `make -C testimages` and commit the updated binary.
//
// The programs print deterministic, line-oriented output (most end with a
// line "ok") and exit with a meaningful status, so a test can run a binary
// natively as the reference and inside the emulator, and compare or assert
// on the output.  See README.md for what each program checks.
//
// The binaries are available both embedded ([FS]) and on disk ([Path]).
package testimages
