package guestmm

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestInstallPageRestoresContents(t *testing.T) {
	mem := make([]byte, 16<<20)
	frames := NewFrames(mem, 1<<20, uint64(len(mem)))
	as, err := NewAddressSpace(mem, frames, Layout{})
	require.NoError(t, err)
	require.NoError(t, as.RestoreVMA(VMA{Start: 0x10000000, End: 0x10004000, Prot: ProtRead | ProtWrite, MaxProt: protRWX, Anonymous: true, Kind: KindAnon}))
	pa, err := frames.AllocRun(2)
	require.NoError(t, err)
	copy(mem[pa:], "first")
	copy(mem[pa+PageSize:], "second")
	require.NoError(t, as.InstallPage(0x10000000, pa, false))
	require.NoError(t, as.InstallPage(0x10002000, pa+PageSize, false))
	buf := make([]byte, 6)
	require.NoError(t, as.CopyIn(0x10002000, buf))
	require.Equal(t, "second", string(buf))
	require.NoError(t, as.CopyIn(0x10001000, buf))
	require.Equal(t, make([]byte, 6), buf, "a page not installed reads zero")
	require.Error(t, as.InstallPage(0x20000000, pa, false), "outside any VMA")
	_, err = frames.AllocRun(1 << 30)
	require.ErrorIs(t, err, ErrNoMemory)
	as.Destroy()
	require.Equal(t, 0, frames.Used())
}
