package vmm

import (
	"testing"

	"github.com/emuckpt/emuckpt/internal/kvmtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestGuestTSCOffset: the probe finds how a guest's rdtsc relates to the
// host's TSC, and with the offset it gives for a machine's vCPU, that
// vCPU's rdtsc lies between two host readings around its run.
func TestGuestTSCOffset(t *testing.T) {
	kvmtest.Require(t)
	mode, err := GuestTSCMode()
	require.NoError(t, err)
	require.NotEqual(t, TSCUnknown, mode)
	m, c, err := probeMachine([]byte{0x0F, 0xAE, 0xE8, 0x0F, 0x31, 0x0F, 0x05}, false) // lfence; rdtsc; syscall
	require.NoError(t, err)
	defer m.Close()
	off, width, err := c.GuestTSCOffset(mode)
	require.NoError(t, err)
	t.Logf("%v, offset %d ± %d", mode, off, width)
	if mode == TSCHost {
		assert.Zero(t, off)
	}
	h0 := RDTSC()
	ex, err := c.Run()
	h1 := RDTSC()
	require.NoError(t, err)
	require.Equal(t, ExitSyscall, ex.Kind)
	g := c.Regs().RDX<<32 | c.Regs().RAX&0xffffffff
	assert.LessOrEqual(t, h0+uint64(off)-width, g)
	assert.LessOrEqual(t, g, h1+uint64(off)+width)
}
