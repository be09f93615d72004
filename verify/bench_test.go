package verify

import (
	"context"
	"testing"
	"time"

	"github.com/emuckpt/emuckpt/internal/kvmtest"
	"github.com/stretchr/testify/require"
)

// BenchmarkVerify reports points/s (both policies, restores in
// parallel on every CPU) for hello, whose every point is checked, and
// for getpid_loop 250 (hello-sized, with 250 system calls) at 50, 100
// and 200 points, whose s/verify must grow linearly with the points.
// Every restored run finishes the program, so a point costs the VM, the
// restore and the rest of the run: about 125 system calls on average
// for getpid_loop.
func BenchmarkVerify(b *testing.B) {
	kvmtest.Require(b)
	for _, c := range []struct {
		name string
		args []string
		n    int
	}{{"hello", []string{"hello"}, 4}, {"getpid_loop/points=50", []string{"getpid_loop", "250"}, 50},
		{"getpid_loop/points=100", []string{"getpid_loop", "250"}, 100}, {"getpid_loop/points=200", []string{"getpid_loop", "250"}, 200}} {
		b.Run(c.name, func(b *testing.B) {
			n := c.n
			cfg := programConfig(b, c.args[0], c.args[1:]...)
			cfg.At, cfg.Points = AtSyscall, n
			var elapsed time.Duration
			for b.Loop() {
				rep, err := Run(context.Background(), cfg)
				require.NoError(b, err)
				_, fail, errs := rep.Counts()
				require.Zero(b, fail+errs)
				require.Len(b, rep.Selected, n)
				elapsed += rep.Elapsed
			}
			b.ReportMetric(float64(n*b.N)/elapsed.Seconds(), "points/s")
			b.ReportMetric(elapsed.Seconds()/float64(b.N), "s/verify")
		})
	}
}
