package vmm

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// dirtyPages harvests the log as a set of page addresses.
func dirtyPages(t *testing.T, m *Machine) map[uint64]bool {
	t.Helper()
	got := map[uint64]bool{}
	require.NoError(t, m.HarvestDirty(func(pa, n uint64) {
		for i := range n {
			got[pa+i*pageSize] = true
		}
	}))
	return got
}

func TestDirtyLogRecordsGuestWrites(t *testing.T) {
	// mov [dataVA],al; mov [dataVA+0x1000],al; syscall; jmp to start
	code := []byte{
		0x88, 0x04, 0x25, 0x00, 0x00, 0x60, 0x00,
		0x88, 0x04, 0x25, 0x00, 0x10, 0x60, 0x00,
		0x0F, 0x05, 0xEB, 0xEE,
	}
	r := newRig(t, code)
	pa0 := r.mapData(t, dataVA)
	pa1 := r.mapData(t, dataVA+0x1000)
	pa2 := r.mapData(t, dataVA+0x2000) // never written
	// A first round maps the pages writable in KVM before the log is on:
	// turning it on must write-protect them again.
	ex, err := r.c.Run()
	require.NoError(t, err)
	require.Equal(t, ExitSyscall, ex.Kind)

	require.NoError(t, r.m.SetDirtyLogging(true))
	require.Empty(t, dirtyPages(t, r.m), "the log starts empty")
	for round := range 3 {
		ex, err = r.c.Run()
		require.NoError(t, err)
		require.Equal(t, ExitSyscall, ex.Kind)
		got := dirtyPages(t, r.m)
		require.True(t, got[pa0], "round %d: first page written", round)
		require.True(t, got[pa1], "round %d: second page written", round)
		require.False(t, got[pa2], "round %d: third page never written", round)
		require.Empty(t, dirtyPages(t, r.m), "round %d: harvesting starts a new log", round)
	}
	require.NoError(t, r.m.SetDirtyLogging(false))
	require.Error(t, r.m.HarvestDirty(func(uint64, uint64) {}))
}

func TestEachRun(t *testing.T) {
	type run struct{ first, n uint64 }
	for _, tc := range []struct {
		name string
		bm   []uint64
		want []run
	}{
		{"empty", []uint64{0, 0}, nil},
		{"one", []uint64{1 << 5}, []run{{5, 1}}},
		{"across words", []uint64{1 << 63, 3}, []run{{63, 3}}},
		{"two", []uint64{0b1101}, []run{{0, 1}, {2, 2}}},
		{"full", []uint64{^uint64(0)}, []run{{0, 64}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []run
			eachRun(tc.bm, func(first, n uint64) { got = append(got, run{first, n}) })
			require.Equal(t, tc.want, got)
		})
	}
}
