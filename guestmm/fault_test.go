package guestmm

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestHandleFaultSignals(t *testing.T) {
	as := newTestAS(t, 64)
	rwAddr := mustMmap(t, as, 0x100000, PageSize, rw, anonPriv|MapFixed, nil, 0)
	roAddr := mustMmap(t, as, 0x200000, PageSize, ProtRead, anonPriv|MapFixed, nil, 0)
	noneAddr := mustMmap(t, as, 0x300000, PageSize, ProtNone, anonPriv|MapFixed, nil, 0)
	woAddr := mustMmap(t, as, 0x400000, PageSize, ProtWrite, anonPriv|MapFixed, nil, 0)
	xAddr := mustMmap(t, as, 0x500000, PageSize, ProtExec, anonPriv|MapFixed, nil, 0)

	tests := []struct {
		name     string
		va, code uint64
		resolved bool
		signal   unix.Signal
		siCode   int32
	}{
		{"read rw", rwAddr + 8, PFUser, true, 0, 0},
		{"write rw", rwAddr, PFUser | PFWrite, true, 0, 0},
		{"read ro", roAddr, PFUser, true, 0, 0},
		{"write ro", roAddr, PFUser | PFWrite | PFPresent, false, unix.SIGSEGV, SegvAccErr},
		{"exec non-exec", rwAddr, PFUser | PFInstr | PFPresent, false, unix.SIGSEGV, SegvAccErr},
		{"read prot none", noneAddr, PFUser, false, unix.SIGSEGV, SegvAccErr},
		{"read write-only (x86 allows)", woAddr, PFUser, true, 0, 0},
		{"exec exec-only", xAddr, PFUser | PFInstr, true, 0, 0},
		{"no mapping", 0x600000, PFUser, false, unix.SIGSEGV, SegvMapErr},
		{"null page", 0, PFUser, false, unix.SIGSEGV, SegvMapErr},
		{"kernel half", kernelHalf, PFUser | PFPresent, false, unix.SIGSEGV, SegvMapErr},
		{"non-canonical", 0x8000_0000_0000, PFUser, false, unix.SIGSEGV, SegvMapErr},
		{"top of user space", TaskSize, PFUser, false, unix.SIGSEGV, SegvMapErr},
		{"reserved bit", rwAddr, PFUser | PFPresent | PFReserved, false, unix.SIGKILL, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := as.HandleFault(tt.va, tt.code)
			assert.Equal(t, tt.resolved, r.Resolved)
			assert.Equal(t, tt.signal, r.Signal)
			assert.Equal(t, tt.siCode, r.Code)
			assert.Equal(t, tt.va, r.Addr)
		})
	}
	checkInvariants(t, 0, as)
}

func TestAnonymousFault(t *testing.T) {
	as := newTestAS(t, 64)
	addr := mustMmap(t, as, 0, 2*PageSize, rw|ProtExec, anonPriv, nil, 0)
	as.pt.ClearFlush()
	mustFault(t, as, addr+PageSize+17, PFUser)
	assert.False(t, as.pt.NeedFlush(), "filling an empty slot needs no flush")
	e, ok := as.pt.Lookup(addr + PageSize)
	require.True(t, ok)
	assert.Equal(t, Present|Writable|User|Accessed, e.Flags(), "exclusive anonymous page mapped writable, executable")
	assert.Equal(t, make([]byte, PageSize), as.frames.Bytes(e.Addr()))
	_, ok = as.pt.Lookup(addr)
	assert.False(t, ok, "only the faulting page is mapped")

	// A second fault on a present page (stale TLB) is resolved without a
	// new frame.
	used := as.frames.Used()
	mustFault(t, as, addr+PageSize, PFUser|PFWrite|PFPresent)
	assert.Equal(t, used, as.frames.Used())
	checkInvariants(t, 0, as)
}

func TestFileFaultPrivate(t *testing.T) {
	as := newTestAS(t, 64)
	data := pattern(PageSize+100, 4)
	file := &memFile{name: "/data", data: data}
	addr := mustMmap(t, as, 0, 3*PageSize, rw, MapPrivate, file, 0)

	mustFault(t, as, addr, PFUser)
	e, ok := as.pt.Lookup(addr)
	require.True(t, ok)
	assert.Zero(t, e&(Writable|Copied), "clean file page is read-only: %v", e)
	assert.Equal(t, data[:PageSize], as.frames.Bytes(e.Addr()))

	// The write fault makes the page the process's own, in place.
	as.pt.ClearFlush()
	mustFault(t, as, addr+5, PFUser|PFWrite|PFPresent)
	e2, ok := as.pt.Lookup(addr)
	require.True(t, ok)
	assert.Equal(t, e.Addr(), e2.Addr(), "sole owner: no copy needed")
	assert.True(t, e2.Has(Writable|Copied))
	assert.True(t, as.pt.NeedFlush())

	// The tail page is zero past the end of the file.
	mustFault(t, as, addr+PageSize, PFUser)
	e3, _ := as.pt.Lookup(addr + PageSize)
	want := make([]byte, PageSize)
	copy(want, data[PageSize:])
	assert.Equal(t, want, as.frames.Bytes(e3.Addr()))

	// A page wholly past the end of the file is SIGBUS, as on Linux.
	r := as.HandleFault(addr+2*PageSize, PFUser|PFWrite)
	assert.False(t, r.Resolved)
	assert.Equal(t, unix.SIGBUS, r.Signal)
	assert.Equal(t, BusAdrErr, r.Code)
	checkInvariants(t, 0, as)
}

func TestFileFaultDirtyFrameCleared(t *testing.T) {
	as := newTestAS(t, 16)
	// Dirty a frame and free it so the file fault reuses it.
	scratch := mustMmap(t, as, 0x100000, PageSize, rw, anonPriv|MapFixed, nil, 0)
	require.NoError(t, as.CopyOut(scratch, pattern(PageSize, 0xee)))
	require.NoError(t, as.Munmap(scratch, PageSize))

	file := &memFile{name: "/short", data: []byte("hello")}
	addr := mustMmap(t, as, 0, PageSize, ProtRead, MapPrivate, file, 0)
	buf := make([]byte, PageSize)
	require.NoError(t, as.CopyIn(addr, buf))
	want := make([]byte, PageSize)
	copy(want, "hello")
	assert.Equal(t, want, buf)
}

func TestFileFaultErrors(t *testing.T) {
	as := newTestAS(t, 16)
	file := &memFile{name: "/broken", err: errors.New("disk on fire")}
	addr := mustMmap(t, as, 0, PageSize, ProtRead, MapPrivate, file, 0)
	r := as.HandleFault(addr, PFUser)
	assert.Equal(t, FaultResult{Signal: unix.SIGBUS, Code: BusAdrErr, Addr: addr}, r)
	checkInvariants(t, 0, as)

	// An offset a ReadAt cannot express reads as beyond EOF.
	big := &memFile{name: "/big", data: []byte{1}}
	addr = mustMmap(t, as, 0, PageSize, ProtRead, MapPrivate, big, 1<<63-PageSize)
	mustFault(t, as, addr, PFUser)
}

func TestDeviceFault(t *testing.T) {
	as := newTestAS(t, 16)
	dev := &testDevice{base: 0xfe000000, size: 4 * PageSize}
	addr := mustMmap(t, as, 0, 2*PageSize, rw, MapShared, dev, PageSize)
	mustFault(t, as, addr+PageSize, PFUser|PFWrite)
	e, ok := as.pt.Lookup(addr + PageSize)
	require.True(t, ok)
	assert.Equal(t, uint64(0xfe000000+2*PageSize), e.Addr())
	assert.True(t, e.Has(Present|User|Writable|PCD|PWT|Special|NX))
	assert.Equal(t, as.pt.TablePages(), as.frames.Used(), "no RAM frame for MMIO")

	// Device pages are never copied: a private mapping too maps the MMIO page.
	addr2 := mustMmap(t, as, 0, PageSize, rw, MapPrivate, dev, 0)
	mustFault(t, as, addr2, PFUser|PFWrite)
	e2, _ := as.pt.Lookup(addr2)
	assert.Equal(t, uint64(0xfe000000), e2.Addr())

	// Copying to or from MMIO through RAM is refused.
	assert.ErrorIs(t, as.CopyIn(addr, make([]byte, 4)), unix.EFAULT)
	assert.ErrorIs(t, as.CopyOut(addr, make([]byte, 4)), unix.EFAULT)
	assert.ErrorIs(t, as.WriteForce(addr, make([]byte, 4)), unix.EFAULT)
	checkInvariants(t, 0, as)

	// A window that shrank under the mapping gives SIGBUS.
	dev.size = PageSize
	r := as.HandleFault(addr, PFUser)
	assert.Equal(t, unix.SIGBUS, r.Signal)
}

func TestStackGrowth(t *testing.T) {
	mem, f := newTestFrames(t, 64)
	as, err := NewAddressSpace(mem, f, Layout{StackMax: 64 * PageSize})
	require.NoError(t, err)
	const top = 0x7fff_0000_0000
	require.NoError(t, as.SetupStack(top, 4*PageSize))

	mustFault(t, as, top-10*PageSize+8, PFUser|PFWrite)
	v, ok := as.FindVMA(top - PageSize)
	require.True(t, ok)
	assert.Equal(t, uint64(top-10*PageSize), v.Start, "grows to the faulting page")

	r := as.HandleFault(top-64*PageSize-1, PFUser|PFWrite)
	assert.Equal(t, SegvMapErr, r.Code, "beyond RLIMIT_STACK")
	mustFault(t, as, top-64*PageSize, PFUser|PFWrite)

	// The guard gap to a mapping below stops growth.
	below := mustMmap(t, as, top-64*PageSize-DefaultStackGuardGap-PageSize, PageSize, ProtRead, anonPriv|MapFixed, nil, 0)
	_ = below
	mem2, f2 := newTestFrames(t, 64)
	as2, err := NewAddressSpace(mem2, f2, Layout{})
	require.NoError(t, err)
	require.NoError(t, as2.SetupStack(top, PageSize))
	mustMmap(t, as2, top-PageSize-DefaultStackGuardGap-PageSize, PageSize, ProtRead, anonPriv|MapFixed, nil, 0)
	r = as2.HandleFault(top-2*PageSize, PFUser|PFWrite)
	assert.Equal(t, SegvMapErr, r.Code, "inside the guard gap of the mapping below")
	r = as2.HandleFault(top-PageSize-DefaultStackGuardGap+PageSize, PFUser)
	assert.False(t, r.Resolved)

	// A PROT_NONE mapping below does not count (Linux: only accessible ones).
	require.NoError(t, as2.Mprotect(top-PageSize-DefaultStackGuardGap-PageSize, PageSize, ProtNone))
	mustFault(t, as2, top-2*PageSize, PFUser|PFWrite)

	// CopyOut below the stack grows it as a user access would.
	require.NoError(t, as2.CopyOut(top-4*PageSize, []byte{1, 2, 3}))
	checkInvariants(t, 0, as2)
}

func TestFaultOutOfMemory(t *testing.T) {
	as := newTestAS(t, 5) // PML4 + 3 tables + one page
	addr := mustMmap(t, as, 0x100000, 4*PageSize, rw, anonPriv|MapFixed, nil, 0)
	mustFault(t, as, addr, PFUser)
	r := as.HandleFault(addr+PageSize, PFUser)
	assert.Equal(t, FaultResult{Signal: unix.SIGKILL, Addr: addr + PageSize}, r)
	assert.ErrorIs(t, as.Populate(addr, 4*PageSize), unix.ENOMEM)
	assert.ErrorIs(t, as.CopyOut(addr+PageSize, []byte{1}), unix.EFAULT)
	checkInvariants(t, 0, as)
}

func TestPopulate(t *testing.T) {
	as := newTestAS(t, 64)
	a := mustMmap(t, as, 0x100000, 2*PageSize, rw, anonPriv|MapFixed, nil, 0)
	mustMmap(t, as, 0x102000, PageSize, ProtNone, anonPriv|MapFixed, nil, 0)
	file := &memFile{name: "/f", data: pattern(PageSize, 1)}
	mustMmap(t, as, 0x103000, PageSize, rw, MapShared|MapFixed, file, 0)

	require.NoError(t, as.Populate(a, 4*PageSize))
	var vas []uint64
	for va, e := range as.PresentPages(0, TaskSize) {
		vas = append(vas, va)
		if va == 0x103000 {
			assert.Zero(t, e&(Writable|Copied), "shared mapping populated for reading")
		}
	}
	assert.Equal(t, []uint64{0x100000, 0x101000, 0x103000}, vas, "PROT_NONE skipped")

	assert.NoError(t, as.Populate(a, 0))
	assert.ErrorIs(t, as.Populate(a, 8*PageSize), unix.ENOMEM, "hole")
	assert.ErrorIs(t, as.Populate(TaskSize-1, 2), unix.ENOMEM)
	assert.ErrorIs(t, as.Populate(^uint64(0)-1, 4), unix.ENOMEM)
	checkInvariants(t, 0, as)
}
