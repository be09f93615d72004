package main

import (
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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
//
// It also reports the least any emuckpt run of that command can take on
// this machine: the command makes `syscalls` system calls (counted once
// with --trace), each a round trip out of the VM and back, so each round
// also times a whole `emuckpt run getpid_loop N` with as many calls, and
// floor-x-native is (native + that run) / native, the ratio emuckpt
// would reach if the command's own work cost nothing extra in the guest.
// Where it is above 1.5, exits alone make the figure unreachable here.
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
			calls := busyboxSyscalls(b, bin, root, w.args)
			var native, guest, exits time.Duration
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

				start = time.Now()
				out, err := exec.Command(bin, "run", img("getpid_loop"), strconv.Itoa(calls)).Output()
				require.NoError(b, err)
				exits += time.Since(start)
				require.Equal(b, "done\n", string(out))
			}
			b.ReportMetric(float64(native.Microseconds())/float64(b.N)/1000, "native-ms")
			b.ReportMetric(float64(guest.Microseconds())/float64(b.N)/1000, "emuckpt-ms")
			b.ReportMetric(float64(guest)/float64(native), "x-native")
			b.ReportMetric(float64(calls), "syscalls")
			b.ReportMetric(float64(exits.Microseconds())/float64(b.N)/1000, "exits-only-ms")
			b.ReportMetric(float64(native+exits)/float64(native), "floor-x-native")
		})
	}
}

// busyboxSyscalls runs busybox with args under `emuckpt run --trace` once
// and returns the number of system calls it traced.
func busyboxSyscalls(b *testing.B, bin, root string, args []string) int {
	b.Helper()
	cmd := exec.Command(bin, append([]string{"run", "--trace", "--root", root, "--cwd", "/", "bin/busybox"}, args...)...)
	cmd.Dir = root
	var stderr strings.Builder
	cmd.Stderr = &stderr
	require.NoError(b, cmd.Run(), stderr.String())
	n := strings.Count(stderr.String(), "emuckpt: trace: ")
	require.Positive(b, n)
	return n
}
