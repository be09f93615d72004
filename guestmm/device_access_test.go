package guestmm

import (
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// readOnlyDevice is a device opened read-only.
type readOnlyDevice struct{ testDevice }

func (readOnlyDevice) Access() Prot { return ProtRead }

// A device mapping through a read-only descriptor can never become
// writable, private or not: device memory is not copied on write.
func TestDeviceMappingHonoursReadOnlyDescriptor(t *testing.T) {
	as := newTestAS(t, 64)
	dev := &readOnlyDevice{testDevice{base: 0xfed00000, size: PageSize}}
	for _, flags := range []uint32{MapShared, MapPrivate} {
		_, err := as.Mmap(0, PageSize, ProtRead|ProtWrite, flags, dev, 0)
		require.ErrorIs(t, err, unix.EACCES)
		va := mustMmap(t, as, 0, PageSize, ProtRead, flags, dev, 0)
		require.ErrorIs(t, as.Mprotect(va, PageSize, ProtRead|ProtWrite), unix.EACCES)
		require.NoError(t, as.Munmap(va, PageSize))
	}
}

// A growth that would wrap around the address space is EINVAL, not a VMA
// whose end lies below its start.
func TestMremapHugeGrowth(t *testing.T) {
	as := newTestAS(t, 64)
	p := mustMmap(t, as, 0, 2*PageSize, ProtRead|ProtWrite, MapPrivate|MapAnonymous, nil, 0)
	for _, n := range []uint64{-p + 0x10000000, 1 << 62, TaskSize + PageSize} {
		_, err := as.Mremap(p, 2*PageSize, n, 0, 0)
		require.ErrorIs(t, err, unix.EINVAL)
		_, err = as.Mremap(p, 2*PageSize, n, MremapMayMove, 0)
		require.ErrorIs(t, err, unix.EINVAL)
	}
	for _, v := range as.VMAs() {
		require.Less(t, v.Start, v.End)
	}
	require.NoError(t, as.Mprotect(p, 0, 0xff), "length 0 returns before checking prot")
}
