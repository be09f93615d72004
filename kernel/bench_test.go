package kernel

import (
	"testing"
	"time"

	"github.com/emuckpt/emuckpt/guestmm"
	"github.com/emuckpt/emuckpt/internal/kvmtest"
	"github.com/emuckpt/emuckpt/vmm"
	"github.com/stretchr/testify/require"
)

// rawExitLoop times n ring-3 `out` exits through vmm.VCPU.Run, the
// baseline of BenchmarkGetpidLoop.
func rawExitLoop(tb testing.TB, n int) time.Duration {
	m, err := vmm.New(vmm.Config{MemSize: 16 << 20})
	require.NoError(tb, err)
	defer m.Close()
	frames := guestmm.NewFrames(m.Mem(), vmm.RAMBase, m.MemSize())
	pt, err := guestmm.NewPageTables(m.Mem(), frames)
	require.NoError(tb, err)
	require.NoError(tb, vmm.MapKernel(pt))
	pa, err := frames.Alloc()
	require.NoError(tb, err)
	copy(m.Mem()[pa:], []byte{0xE6, vmm.SyscallPort, 0xEB, 0xFC}) // out; jmp back
	require.NoError(tb, pt.Map(0x400000, pa, guestmm.Present|guestmm.User))
	c, err := m.NewVCPU()
	require.NoError(tb, err)
	require.NoError(tb, c.Start(vmm.Regs{RIP: 0x400000}, pt.Root(), 0))
	start := time.Now()
	for range n {
		ex, err := c.Run()
		require.NoError(tb, err)
		require.Equal(tb, vmm.ExitPortIO, ex.Kind)
		c.Regs().RIP = 0x400000
	}
	return time.Since(start)
}

// BenchmarkGetpidLoop is the figure "a syscall round trip (a getpid loop
// in a guest)": testimages/bin/getpid_loop through the whole kernel, as a
// ratio of a raw ring-3 exit measured in the same run.
func BenchmarkGetpidLoop(b *testing.B) {
	kvmtest.Require(b)
	const n = 20000
	var raw, getpid time.Duration
	for b.Loop() {
		raw += rawExitLoop(b, n)
		start := time.Now()
		st := runImage(b, "getpid_loop", "20000")
		getpid += time.Since(start)
		require.Equal(b, 0, st.ShellStatus())
	}
	per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(b.N*n) / 1e3 }
	b.ReportMetric(per(raw), "raw-µs/exit")
	b.ReportMetric(per(getpid), "getpid-µs/call")
	b.ReportMetric(per(getpid)/per(raw), "getpid/raw")
}
