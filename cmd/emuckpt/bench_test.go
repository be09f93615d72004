package main

import (
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/emuckpt/emuckpt/internal/kvmtest"
	"github.com/stretchr/testify/require"
)

// BenchmarkCLIHello is the figure "the whole `emuckpt run hello` process":
// it builds the real binary once and times whole runs of it.
func BenchmarkCLIHello(b *testing.B) {
	kvmtest.Require(b)
	bin := filepath.Join(b.TempDir(), "emuckpt")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(b, err, string(out))
	for b.Loop() {
		out, err := exec.Command(bin, "run", img("hello")).Output()
		require.NoError(b, err)
		require.Equal(b, "hello, world\n", string(out))
	}
}
