package guestmm

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestForkCopyOnWrite(t *testing.T) {
	parent := newTestAS(t, 128)
	priv := mustMmap(t, parent, 0x100000, 2*PageSize, rw, anonPriv|MapFixed, nil, 0)
	require.NoError(t, parent.CopyOut(priv, []byte("parent data")))
	parent.SetBrkBase(0x800000)
	parent.Brk(0x801000)

	parent.pt.ClearFlush()
	child, err := parent.Fork()
	require.NoError(t, err)
	assert.True(t, parent.pt.NeedFlush(), "parent's writable pages became read-only")
	assert.Equal(t, parent.VMAs(), child.VMAs())
	_, brk := child.BrkRange()
	assert.Equal(t, uint64(0x801000), brk)
	checkInvariants(t, 0, parent, child)

	pe, _ := parent.pt.Lookup(priv)
	ce, _ := child.pt.Lookup(priv)
	assert.Equal(t, pe.Addr(), ce.Addr(), "frame shared after fork")
	assert.Equal(t, 2, parent.frames.RefCount(pe.Addr()))
	assert.Zero(t, pe&Writable)
	assert.Zero(t, ce&Writable)

	// The child writes: it gets its own copy, the parent keeps the data.
	require.NoError(t, child.CopyOut(priv, []byte("child")))
	buf := make([]byte, 11)
	require.NoError(t, parent.CopyIn(priv, buf))
	assert.Equal(t, "parent data", string(buf))
	require.NoError(t, child.CopyIn(priv, buf))
	assert.Equal(t, "childt data", string(buf))
	checkInvariants(t, 0, parent, child)

	// The parent is now the sole owner: its write fault needs no copy.
	used := parent.frames.Used()
	mustFault(t, parent, priv, PFUser|PFWrite|PFPresent)
	assert.Equal(t, used, parent.frames.Used())
	pe2, _ := parent.pt.Lookup(priv)
	assert.Equal(t, pe.Addr(), pe2.Addr())
	checkInvariants(t, 0, parent, child)

	child.Destroy()
	checkInvariants(t, 0, parent)
	parent.Destroy()
	assert.Equal(t, 0, parent.frames.Used())
}

func TestForkSharedAndSpecial(t *testing.T) {
	parent := newTestAS(t, 128)
	shared := mustMmap(t, parent, 0x100000, 2*PageSize, rw, MapShared|MapAnonymous|MapFixed, nil, 0)
	dontFork := mustMmap(t, parent, 0x200000, PageSize, rw, anonPriv|MapFixed, nil, 0)
	wipe := mustMmap(t, parent, 0x300000, PageSize, rw, anonPriv|MapFixed, nil, 0)
	file := &memFile{name: "/f", data: pattern(PageSize, 3)}
	fileAddr := mustMmap(t, parent, 0x400000, PageSize, rw, MapPrivate|MapFixed, file, 0)
	dev := &testDevice{base: 0xfe000000, size: PageSize}
	devAddr := mustMmap(t, parent, 0x500000, PageSize, rw, MapShared|MapFixed, dev, 0)
	require.NoError(t, parent.Madvise(dontFork, PageSize, MadvDontFork))
	require.NoError(t, parent.Madvise(wipe, PageSize, MadvWipeOnFork))
	require.NoError(t, parent.CopyOut(wipe, []byte{7}))
	require.NoError(t, parent.CopyIn(fileAddr, make([]byte, 1)))
	mustFault(t, parent, devAddr, PFUser)
	kframe, err := parent.frames.Alloc()
	require.NoError(t, err)
	require.NoError(t, parent.pt.Map(0xffff_ffff_8000_0000, kframe, Writable))

	child, err := parent.Fork()
	require.NoError(t, err)
	checkInvariants(t, 1, parent, child)

	// Shared memory faulted after the fork is still shared: Fork populated it.
	require.NoError(t, child.CopyOut(shared+PageSize, []byte("hi")))
	buf := make([]byte, 2)
	require.NoError(t, parent.CopyIn(shared+PageSize, buf))
	assert.Equal(t, "hi", string(buf))

	_, ok := child.FindVMA(dontFork)
	assert.False(t, ok, "MADV_DONTFORK VMA not inherited")
	require.NoError(t, child.CopyIn(wipe, buf[:1]))
	assert.Equal(t, byte(0), buf[0], "MADV_WIPEONFORK: the child sees zero")

	ce, ok := child.pt.Lookup(devAddr)
	require.True(t, ok)
	assert.Equal(t, uint64(0xfe000000), ce.Addr())

	ke, ok := child.pt.Lookup(0xffff_ffff_8000_0000)
	require.True(t, ok, "VMM area copied")
	assert.Equal(t, kframe, ke.Addr())

	// Writing the shared clean file page in the child copies it.
	require.NoError(t, child.CopyOut(fileAddr, []byte{1}))
	ce, _ = child.pt.Lookup(fileAddr)
	pe, _ := parent.pt.Lookup(fileAddr)
	assert.NotEqual(t, pe.Addr(), ce.Addr())
	assert.True(t, ce.Has(Copied|Writable))
	assert.Zero(t, pe&Copied)
	checkInvariants(t, 1, parent, child)

	child.Destroy()
	parent.Destroy()
	assert.Equal(t, 1, parent.frames.Used(), "only the test's VMM frame is left")
}

func TestForkOutOfMemory(t *testing.T) {
	parent := newTestAS(t, 8)
	addr := mustMmap(t, parent, 0x100000, PageSize, rw, anonPriv|MapFixed, nil, 0)
	mustFault(t, parent, addr, PFUser|PFWrite)
	// 5 frames used; the child needs 4 tables.
	_, err := parent.Fork()
	assert.ErrorIs(t, err, unix.ENOMEM)
	checkInvariants(t, 0, parent)
	require.NoError(t, parent.CopyOut(addr, []byte{1}), "parent still works")
}
