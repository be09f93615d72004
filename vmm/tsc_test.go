package vmm

import (
	"testing"

	"github.com/emuckpt/emuckpt/guestmm"
	"github.com/emuckpt/emuckpt/internal/kvmtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMeasureTSC: the probe finds how the guest's rdtsc relates to the
// host's TSC, and with that offset a second guest rdtsc lies between two
// host readings around its run; TSCOffset then knows the mode without a
// run.
func TestMeasureTSC(t *testing.T) {
	kvmtest.Require(t)
	m, err := New(Config{MemSize: 4 << 20})
	require.NoError(t, err)
	defer m.Close()
	frames := guestmm.NewFrames(m.Mem(), RAMBase, m.MemSize())
	pt, err := guestmm.NewPageTables(m.Mem(), frames)
	require.NoError(t, err)
	require.NoError(t, MapKernel(pt))
	pa, err := frames.Alloc()
	require.NoError(t, err)
	copy(m.Mem()[pa:], TSCProbeCode)
	const codeVA = 0x400000
	require.NoError(t, pt.Map(codeVA, pa, guestmm.Present|guestmm.User))
	c, err := m.NewVCPU()
	require.NoError(t, err)

	mode, off, err := c.MeasureTSC(pt.Root(), codeVA)
	require.NoError(t, err)
	require.NotEqual(t, TSCUnknown, mode)
	t.Logf("%v, offset %d", mode, off)
	known, ok, err := c.TSCOffset()
	require.NoError(t, err)
	require.True(t, ok)
	if mode == TSCHost {
		assert.Zero(t, off)
		assert.Zero(t, known)
	}

	for range 5 {
		require.NoError(t, c.Start(Regs{RIP: codeVA}, pt.Root(), 0))
		h0 := RDTSC()
		ex, err := c.Run()
		h1 := RDTSC()
		require.NoError(t, err)
		require.Equal(t, ExitSyscall, ex.Kind)
		g := c.Regs().RDX<<32 | c.Regs().RAX&0xffffffff
		// The offset is exact on PVM and good to an ioctl's length on
		// hardware KVM.
		slack := uint64(0)
		if mode == TSCOffsetMSR {
			slack = 1 << 20
		}
		assert.LessOrEqual(t, h0+uint64(known)-slack, g)
		assert.LessOrEqual(t, g, h1+uint64(known)+slack)
	}
}
