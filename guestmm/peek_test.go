package guestmm

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// presentIn counts the present pages of [start, end).
func presentIn(as *AddressSpace, start, end uint64) int {
	n := 0
	for range as.PresentPages(start, end) {
		n++
	}
	return n
}

// TestPeekDoesNotFault: Peek reads what CopyIn would, but leaves the
// address space as it was: no page faulted in, no copy on write.
func TestPeekDoesNotFault(t *testing.T) {
	as := newTestAS(t, 64)
	anon := mustMmap(t, as, 0x100000, 3*PageSize, rw, anonPriv|MapFixed, nil, 0)
	data := pattern(2*PageSize, 3)
	f := &memFile{name: "/f", data: data}
	file := mustMmap(t, as, 0x200000, 2*PageSize, ProtRead, MapPrivate|MapFixed, f, 0)
	none := mustMmap(t, as, 0x300000, PageSize, ProtNone, anonPriv|MapFixed, nil, 0)
	frames := as.Frames().Used()

	// Untouched anonymous memory reads as zeros, file memory as the
	// file, across a page boundary, and nothing becomes present.
	buf := make([]byte, 100)
	assert.Equal(t, 100, as.Peek(anon+PageSize-50, buf))
	assert.Equal(t, make([]byte, 100), buf)
	assert.Equal(t, 100, as.Peek(file+PageSize-50, buf))
	assert.Equal(t, data[PageSize-50:PageSize+50], buf)
	assert.Zero(t, presentIn(as, 0, TaskSize))
	assert.Equal(t, frames, as.Frames().Used())

	// A present page is read through its frame.
	require.NoError(t, as.CopyOut(anon+10, []byte("hello")))
	before := presentIn(as, 0, TaskSize)
	assert.Equal(t, 5, as.Peek(anon+10, buf[:5]))
	assert.Equal(t, "hello", string(buf[:5]))
	assert.Equal(t, before, presentIn(as, 0, TaskSize))

	// It stops at an unmapped or unreadable byte, and at the top.
	assert.Equal(t, 50, as.Peek(anon+3*PageSize-50, buf))
	assert.Zero(t, as.Peek(none, buf))
	assert.Zero(t, as.Peek(TaskSize-1, buf[:2]))
	assert.Zero(t, as.Peek(^uint64(0)-1, buf[:8]))
}

func TestPeekString(t *testing.T) {
	as := newTestAS(t, 64)
	base := mustMmap(t, as, 0x100000, PageSize, rw, anonPriv|MapFixed, nil, 0)
	require.NoError(t, as.CopyOut(base+PageSize-6, []byte("abc\x00de")))
	s, ok := as.PeekString(base+PageSize-6, 100)
	assert.True(t, ok)
	assert.Equal(t, "abc", s)
	// No NUL before the mapping ends: what was read, incomplete.
	s, ok = as.PeekString(base+PageSize-2, 100)
	assert.False(t, ok)
	assert.Equal(t, "de", s)
	// Longer than max.
	s, ok = as.PeekString(base+PageSize-6, 2)
	assert.False(t, ok)
	assert.Equal(t, "ab", s)
}
