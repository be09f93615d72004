package main

import (
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emuckpt/emuckpt/internal/kvmtest"
	"github.com/stretchr/testify/require"
)

// buildCLI builds the real emuckpt binary once for a benchmark, so that
// whole processes are timed as a user runs them.
func buildCLI(b *testing.B) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "emuckpt")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(b, err, string(out))
	return bin
}

// BenchmarkCLIHello is the figure "the whole `emuckpt run hello` process":
// it times whole runs of the real binary.
func BenchmarkCLIHello(b *testing.B) {
	kvmtest.Require(b)
	bin := buildCLI(b)
	for b.Loop() {
		out, err := exec.Command(bin, "run", img("hello")).Output()
		require.NoError(b, err)
		require.Equal(b, "hello, world\n", string(out))
	}
}

// BenchmarkBusybox is the figure "busybox-static sha256sum of an 8 MB file
// and a CPU-bound shell loop against native": each round runs the same
// command natively and as a whole `emuckpt run --root` process, back to
// back, and the ratio of the summed wall times is reported (x-native).
// It skips, as the real-program stage does, without Debian's
// busybox-static.
func BenchmarkBusybox(b *testing.B) {
	kvmtest.Require(b)
	root := realRoot(b)
	data := make([]byte, 8<<20)
	_, err := rand.Read(data)
	require.NoError(b, err)
	require.NoError(b, os.WriteFile(filepath.Join(root, "data", "big"), data, 0o644))
	bin := buildCLI(b)

	for _, w := range []struct {
		name string
		args []string
	}{
		{"sha256sum-8MB", []string{"sha256sum", "data/big"}},
		{"shell-loop", []string{"sh", "-c", "i=0; s=0; while [ $i -lt 20000 ]; do i=$((i+1)); s=$(((s+i*i)%65521)); done; echo $s"}},
	} {
		b.Run(w.name, func(b *testing.B) {
			var native, guest time.Duration
			for b.Loop() {
				start := time.Now()
				cmd := exec.Command(filepath.Join(root, "bin", "busybox"), w.args...)
				cmd.Args[0], cmd.Dir, cmd.Env = "bin/busybox", root, defaultEnv
				var stderr strings.Builder
				cmd.Stderr = &stderr
				want, err := cmd.Output()
				require.NoError(b, err, stderr.String())
				native += time.Since(start)

				start = time.Now()
				cmd = exec.Command(bin, append([]string{"run", "--root", root, "--cwd", "/", "bin/busybox"}, w.args...)...)
				cmd.Dir = root
				stderr.Reset()
				cmd.Stderr = &stderr
				got, err := cmd.Output()
				require.NoError(b, err, stderr.String())
				guest += time.Since(start)
				require.Equal(b, string(want), string(got))
			}
			b.ReportMetric(float64(native.Microseconds())/float64(b.N)/1000, "native-ms")
			b.ReportMetric(float64(guest.Microseconds())/float64(b.N)/1000, "emuckpt-ms")
			b.ReportMetric(float64(guest)/float64(native), "x-native")
		})
	}
}
