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
