package testimages

import (
	"embed"
	"path/filepath"
	"runtime"
)

// FS holds the prebuilt guest binaries, as bin/<name>.
//
//go:embed bin
var FS embed.FS

// dir is the absolute directory of this source file, i.e. the testimages
// directory in the source tree.
var dir = func() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return ""
	}
	return filepath.Dir(file)
}()

// Path returns the absolute path of bin/<name> in the source tree, for
// tests that need to execute a binary from disk (natively or by path in
// the emulator).  It does not check that the file exists.
//
// The location comes from runtime.Caller, so it is only meaningful when
// the package was compiled from a source checkout (as under `go test`),
// not with -trimpath.
func Path(name string) string {
	return filepath.Join(dir, "bin", name)
}
