package guestmm

import (
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
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

// TestInstallHugePage: a 2 MiB page of restored frames maps all 2 MiB of
// an eligible VMA at once and behaves as one a fault made (a partial
// munmap splits it, Destroy frees every frame); it is refused where a
// fault would not make one, or where something is mapped already.
func TestInstallHugePage(t *testing.T) {
	const va = 0x40000000
	rw := ProtRead | ProtWrite
	setup := func(t *testing.T, v VMA) (*AddressSpace, *Frames, []byte, uint64) {
		mem := make([]byte, 32<<20)
		frames := NewFrames(mem, 1<<20, uint64(len(mem)))
		as, err := NewAddressSpace(mem, frames, Layout{HugePages: true})
		require.NoError(t, err)
		require.NoError(t, as.RestoreVMA(v))
		pa, err := frames.AllocHuge()
		require.NoError(t, err)
		return as, frames, mem, pa
	}
	anon := VMA{Start: va, End: va + 2*HugePageSize, Prot: rw, MaxProt: protRWX, Anonymous: true, Kind: KindAnon}
	t.Run("installed", func(t *testing.T) {
		as, frames, mem, pa := setup(t, anon)
		copy(mem[pa+5*PageSize:], "fifth")
		require.NoError(t, as.InstallHugePage(va, pa))
		require.Equal(t, 1, as.PageTables().HugePages())
		buf := make([]byte, 5)
		require.NoError(t, as.CopyIn(va+5*PageSize, buf))
		require.Equal(t, "fifth", string(buf))
		e, ok := as.PageTables().Lookup(va + 5*PageSize)
		require.True(t, ok)
		require.Equal(t, pa+5*PageSize, e.Addr())
		require.NotZero(t, e&Writable)
		require.ErrorIs(t, as.InstallHugePage(va, pa), unix.EEXIST)
		require.NoError(t, as.Munmap(va+PageSize, PageSize))
		require.Equal(t, 0, as.PageTables().HugePages(), "split by the munmap")
		require.NoError(t, as.CopyIn(va+5*PageSize, buf))
		require.Equal(t, "fifth", string(buf))
		as.Destroy()
		require.Equal(t, 0, frames.Used())
	})
	for _, tc := range []struct {
		name string
		v    VMA
		va   uint64
		want error
	}{
		{"not aligned", anon, va + PageSize, unix.EINVAL},
		{"past the VMA", VMA{Start: va, End: va + HugePageSize - PageSize, Prot: rw, MaxProt: protRWX, Anonymous: true, Kind: KindAnon}, va, unix.EFAULT},
		{"no VMA", anon, va + 4*HugePageSize, unix.EFAULT},
		{"MADV_NOHUGEPAGE", VMA{Start: va, End: va + HugePageSize, Prot: rw, MaxProt: protRWX, Anonymous: true, Kind: KindAnon, NoHugePage: true}, va, unix.EINVAL},
		{"shared", VMA{Start: va, End: va + HugePageSize, Prot: rw, MaxProt: protRWX, Anonymous: true, Shared: true, Kind: KindAnon}, va, unix.EINVAL},
		{"grows down", VMA{Start: va, End: va + HugePageSize, Prot: rw, MaxProt: protRWX, Anonymous: true, GrowsDown: true, Kind: KindStack}, va, unix.EINVAL},
		{"executable", VMA{Start: va, End: va + HugePageSize, Prot: rw | ProtExec, MaxProt: protRWX, Anonymous: true, Kind: KindAnon}, va, unix.EINVAL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			as, _, _, pa := setup(t, tc.v)
			require.ErrorIs(t, as.InstallHugePage(tc.va, pa), tc.want)
			require.Equal(t, 0, as.PageTables().HugePages())
		})
	}
	t.Run("frame not aligned", func(t *testing.T) {
		as, _, _, pa := setup(t, anon)
		require.ErrorIs(t, as.InstallHugePage(va, pa+PageSize), unix.EINVAL)
	})
}
