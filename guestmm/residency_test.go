package guestmm

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestResidency: anonymous pages fault-around maps ahead of the guest are
// present but not resident (mincore, smaps Rss) until populated, as Linux
// maps no anonymous page around a fault; a locked VMA gets no
// fault-around at all.
func TestResidency(t *testing.T) {
	mem, frames := newTestFrames(t, 512)
	as, err := NewAddressSpace(mem, frames, Layout{FaultAround: 16})
	require.NoError(t, err)
	const base = 0x40000000
	va, err := as.Mmap(base, 4*PageSize, rw, MapPrivate|MapAnonymous|MapFixed, nil, 0)
	require.NoError(t, err)
	require.True(t, as.HandleFault(va, PFUser|PFWrite).Resolved)
	assert.Equal(t, []int{0, 1, 2, 3}, presentPagesIn(as, va, va+4*PageSize), "fault-around mapped the block")

	vec, err := as.Mincore(va, 4*PageSize)
	require.NoError(t, err)
	assert.Equal(t, []byte{1, 0, 0, 0}, vec)
	assert.Contains(t, as.SmapsText(), "\nRss:                   4 kB\n")

	require.NoError(t, as.Populate(va, 4*PageSize))
	vec, err = as.Mincore(va, 4*PageSize)
	require.NoError(t, err)
	assert.Equal(t, []byte{1, 1, 1, 1}, vec, "populated pages are resident")
	assert.Contains(t, as.SmapsText(), "\nRss:                  16 kB\n")

	_, err = as.Mincore(va+PageSize+1, PageSize)
	assert.Equal(t, unix.EINVAL, err)
	_, err = as.Mincore(va+4*PageSize, PageSize)
	assert.Equal(t, unix.ENOMEM, err)
	assert.Equal(t, unix.ENOMEM, as.Msync(va, 5*PageSize, msSync))
	assert.Equal(t, unix.EINVAL, as.Msync(va, PageSize, msSync|msAsync))
	assert.NoError(t, as.Msync(va, PageSize, msAsync))

	locked, err := as.Mmap(base+0x100000, 4*PageSize, rw, MapPrivate|MapAnonymous|MapFixed, nil, 0)
	require.NoError(t, err)
	require.NoError(t, as.LockRange(locked, locked+4*PageSize, true, false))
	assert.Equal(t, unix.EBUSY, as.Msync(locked, PageSize, msInvalidate))
	require.True(t, as.HandleFault(locked+PageSize, PFUser|PFWrite).Resolved)
	assert.Equal(t, []int{1}, presentPagesIn(as, locked, locked+4*PageSize), "no fault-around in a locked VMA")
	smaps := as.SmapsText()
	assert.Contains(t, smaps, "VmFlags: rd wr mr mw me lo ac \n")
	assert.Equal(t, len(as.VMAs()), strings.Count(smaps, "\nVmFlags: "))
}

// TestMincoreChunks: a huge range is reported MincoreChunk pages at a
// time, so that no buffer grows with the range.
func TestMincoreChunks(t *testing.T) {
	as := newTestAS(t, 64)
	const n = 3*MincoreChunk + 5
	va, err := as.Mmap(0, n*PageSize, ProtNone, MapPrivate|MapAnonymous|MapNoReserve, nil, 0)
	require.NoError(t, err)
	vec, err := as.Mincore(va, n*PageSize)
	require.NoError(t, err)
	assert.Len(t, vec, MincoreChunk)
	vec, err = as.Mincore(va+3*MincoreChunk*PageSize, 5*PageSize-1)
	require.NoError(t, err)
	assert.Len(t, vec, 5)
	_, err = as.Mincore(va, (n+1)*PageSize)
	assert.NoError(t, err, "a hole past the first chunk is found by the call that reaches it")
	_, err = as.Mincore(va+(n-1)*PageSize, 2*PageSize)
	assert.Equal(t, unix.ENOMEM, err)
}
