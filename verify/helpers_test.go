package verify

import (
	"os"
	"testing"

	"github.com/emuckpt/emuckpt/kernel"
	"github.com/emuckpt/emuckpt/testimages"
	"github.com/stretchr/testify/require"
)

// programConfig is a verify of a test program, without devices.
func programConfig(tb testing.TB, name string, args ...string) Config {
	tb.Helper()
	path := testimages.Path(name)
	prog, err := os.ReadFile(path)
	require.NoError(tb, err)
	return Config{Kernel: kernel.Config{
		Program: prog, Name: name, Path: path, Args: append([]string{name}, args...),
		Env: []string{"PATH=/bin", "HOME=/"},
	}}
}
