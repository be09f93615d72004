package guestmm

import (
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestLockRange(t *testing.T) {
	const base = 0x10000000
	cases := []struct {
		name       string
		start, end uint64
		lock       bool
		want       error
		locked     uint64 // LockedBytes afterwards
		vmas       int
	}{
		{name: "middle page", start: base + PageSize, end: base + 2*PageSize, lock: true, locked: PageSize, vmas: 3},
		{name: "whole mapping", start: base, end: base + 4*PageSize, lock: true, locked: 4 * PageSize, vmas: 1},
		{name: "empty", start: base, end: base, lock: true, vmas: 1},
		{name: "hole after", start: base, end: base + 5*PageSize, lock: true, want: unix.ENOMEM, vmas: 1},
		{name: "unmapped", start: 0x20000000, end: 0x20001000, lock: true, want: unix.ENOMEM, vmas: 1},
		{name: "unaligned", start: base + 1, end: base + PageSize, lock: true, want: unix.EINVAL, vmas: 1},
		{name: "past user space", start: TaskSize - PageSize, end: TaskSize + PageSize, lock: true, want: unix.ENOMEM, vmas: 1},
		{name: "unlock unlocked", start: base, end: base + PageSize, vmas: 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			as := newTestAS(t, 64)
			_, err := as.Mmap(base, 4*PageSize, ProtRead|ProtWrite, MapPrivate|MapAnonymous|MapFixed, nil, 0)
			require.NoError(t, err)
			err = as.LockRange(c.start, c.end, c.lock, true)
			if c.want != nil {
				require.ErrorIs(t, err, c.want)
			} else {
				require.NoError(t, err)
			}
			require.Equal(t, c.locked, as.LockedBytes(0, 0))
			require.Len(t, as.VMAs(), c.vmas)
			if c.want == nil && c.lock && c.end > c.start {
				// Locked pages are populated.
				for va := c.start; va < c.end; va += PageSize {
					_, ok := as.pt.Lookup(va)
					require.True(t, ok, "page %#x not present", va)
				}
			}
		})
	}
}

func TestLockAllAndUnlock(t *testing.T) {
	as := newTestAS(t, 64)
	a, err := as.Mmap(0, 2*PageSize, ProtRead|ProtWrite, MapPrivate|MapAnonymous, nil, 0)
	require.NoError(t, err)
	_, err = as.Mmap(0, 3*PageSize, ProtNone, MapPrivate|MapAnonymous, nil, 0)
	require.NoError(t, err)
	require.Equal(t, 5*uint64(PageSize), as.MappedBytes())
	require.Equal(t, 2*uint64(PageSize), as.LockedBytes(a, a+2*PageSize))
	require.NoError(t, as.LockAll(true, true))
	require.Equal(t, 5*uint64(PageSize), as.LockedBytes(0, 0))
	_, ok := as.pt.Lookup(a)
	require.True(t, ok)
	require.NoError(t, as.LockRange(a, a+PageSize, false, false))
	require.Equal(t, 4*uint64(PageSize), as.LockedBytes(0, 0))
	require.NoError(t, as.LockAll(false, false))
	require.Zero(t, as.LockedBytes(0, 0))
}
