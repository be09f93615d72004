package guestmm

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

const (
	anonPriv   = MapPrivate | MapAnonymous
	defaultTop = 0x7ffff7fff000 // default MmapBase
	rw         = ProtRead | ProtWrite
)

func TestLayoutDefaults(t *testing.T) {
	as := newTestAS(t, 16)
	l := as.Layout()
	assert.Equal(t, uint64(defaultTop), l.MmapBase)
	assert.Equal(t, uint64(TaskSize), l.StackTop)
	assert.Equal(t, uint64(8<<20), l.StackMax)
	assert.Equal(t, uint64(0x10000), l.MmapMin)
	assert.Equal(t, 65530, l.MaxMapCount)

	mem, f := newTestFrames(t, 16)
	for _, bad := range []Layout{
		{StackTop: 0x1001},
		{StackTop: TaskSize + PageSize},
		{MmapMin: 0x123},
		{MmapBase: 0x1000},
		{MmapBase: 0x7000_0000_0001},
	} {
		_, err := NewAddressSpace(mem, f, bad)
		assert.ErrorIs(t, err, unix.EINVAL, "%+v", bad)
	}
	// A big stack limit moves the mmap base down, like Linux.
	as2, err := NewAddressSpace(mem, f, Layout{StackMax: 1 << 30})
	require.NoError(t, err)
	assert.Equal(t, uint64(TaskSize-(1<<30)-DefaultStackGuardGap), as2.Layout().MmapBase)
}

func TestMmapArgumentErrors(t *testing.T) {
	file := &memFile{name: "/f", data: pattern(100, 0)}
	tests := []struct {
		name   string
		addr   uint64
		length uint64
		prot   Prot
		flags  uint32
		b      Backing
		off    uint64
		want   error
	}{
		{"zero length", 0, 0, rw, anonPriv, nil, 0, unix.EINVAL},
		{"no map type", 0, PageSize, rw, MapAnonymous, nil, 0, unix.EINVAL},
		{"bad map type", 0, PageSize, rw, 0x4 | MapAnonymous, nil, 0, unix.EINVAL},
		{"unaligned offset", 0, PageSize, rw, MapPrivate, file, 12, unix.EINVAL},
		{"unaligned fixed", 0x10001, PageSize, rw, anonPriv | MapFixed, nil, 0, unix.EINVAL},
		{"unaligned noreplace", 0x10001, PageSize, rw, anonPriv | MapFixedNoReplace, nil, 0, unix.EINVAL},
		{"huge length", 0, ^uint64(0), rw, anonPriv, nil, 0, unix.ENOMEM},
		{"length beyond task size", 0, TaskSize + PageSize, rw, anonPriv, nil, 0, unix.ENOMEM},
		{"fixed beyond task size", TaskSize - PageSize, 2 * PageSize, rw, anonPriv | MapFixed, nil, 0, unix.ENOMEM},
		{"fixed below mmap_min_addr", 0x1000, PageSize, rw, anonPriv | MapFixed, nil, 0, unix.EPERM},
		{"file without backing", 0, PageSize, rw, MapPrivate, nil, 0, unix.EBADF},
		{"offset overflow", 0, 2 * PageSize, rw, MapPrivate, file, 1<<63 - PageSize, unix.EOVERFLOW},
		{"validate unknown flag", 0, PageSize, rw, MapSharedValidate | MapAnonymous | 0x200, nil, 0, unix.EOPNOTSUPP},
		{"validate map sync", 0, PageSize, rw, MapSharedValidate | MapSync, file, 0, unix.EOPNOTSUPP},
		{"growsdown file", 0, PageSize, rw, MapPrivate | MapGrowsDown, file, 0, unix.EINVAL},
		{"growsdown shared", 0, PageSize, rw, MapShared | MapAnonymous | MapGrowsDown, nil, 0, unix.EINVAL},
		{"hugetlb anon", 0, PageSize, rw, anonPriv | MapHugeTLB, nil, 0, unix.ENOMEM},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			as := newTestAS(t, 16)
			_, err := as.Mmap(tt.addr, tt.length, tt.prot, tt.flags, tt.b, tt.off)
			assert.ErrorIs(t, err, tt.want)
			assert.Empty(t, as.VMAs())
		})
	}
}

func TestMmapPlacement(t *testing.T) {
	as := newTestAS(t, 64)

	a := mustMmap(t, as, 0, 100, rw, anonPriv, nil, 0)
	assert.Equal(t, uint64(defaultTop-PageSize), a, "top-down below MmapBase, length rounded up")
	b := mustMmap(t, as, 0, 2*PageSize, ProtRead, anonPriv, nil, 0)
	assert.Equal(t, a-2*PageSize, b)

	// A free hint is used (rounded up to a page).
	c := mustMmap(t, as, 0x10000001, PageSize, rw, anonPriv, nil, 0)
	assert.Equal(t, uint64(0x10001000), c)
	// An occupied hint falls back to the search.
	d := mustMmap(t, as, 0x10001000, PageSize, rw, anonPriv, nil, 0)
	assert.Equal(t, b-PageSize, d)
	// A hint below mmap_min_addr is ignored.
	e := mustMmap(t, as, 0x1000, PageSize, ProtExec, anonPriv, nil, 0)
	assert.Equal(t, d-PageSize, e)

	// MAP_32BIT searches [1 GiB, 2 GiB) bottom-up.
	f := mustMmap(t, as, 0, PageSize, rw, anonPriv|Map32Bit, nil, 0)
	assert.Equal(t, uint64(0x40000000), f)

	// A mapping bigger than the room below MmapBase lands above TaskSize/3.
	mem, frames := newTestFrames(t, 16)
	small, err := NewAddressSpace(mem, frames, Layout{MmapBase: 0x200000})
	require.NoError(t, err)
	g, err := small.Mmap(0, 1<<20, rw, anonPriv, nil, 0)
	require.NoError(t, err)
	assert.Equal(t, uint64(0x100000), g)
	h, err := small.Mmap(0, 1<<20, rw, anonPriv, nil, 0)
	require.NoError(t, err)
	assert.Equal(t, uint64(taskUnmappedBase), h)
	checkInvariants(t, 0, as)
}

func TestMmapKeepsStackGuardGap(t *testing.T) {
	as := newTestAS(t, 16)
	require.NoError(t, as.SetupStack(0x10000000, 4*PageSize))
	stackStart := uint64(0x10000000 - 4*PageSize)
	// A hint right below the stack is inside the guard gap: not used.
	got := mustMmap(t, as, stackStart-PageSize, PageSize, rw, anonPriv, nil, 0)
	assert.NotEqual(t, stackStart-PageSize, got)
	// Outside the gap it is fine.
	hint := stackStart - DefaultStackGuardGap - PageSize
	got = mustMmap(t, as, hint, PageSize, rw, anonPriv, nil, 0)
	assert.Equal(t, hint, got)
	// MAP_FIXED may go into the gap.
	got = mustMmap(t, as, stackStart-PageSize, PageSize, rw, anonPriv|MapFixed, nil, 0)
	assert.Equal(t, stackStart-PageSize, got)
}

func TestMmapFixedReplaces(t *testing.T) {
	as := newTestAS(t, 64)
	base := mustMmap(t, as, 0x200000, 4*PageSize, rw, anonPriv|MapFixed, nil, 0)
	require.NoError(t, as.CopyOut(base, pattern(4*PageSize, 3)))
	used := as.frames.Used()

	_, err := as.Mmap(base+PageSize, PageSize, ProtRead, anonPriv|MapFixedNoReplace, nil, 0)
	require.ErrorIs(t, err, unix.EEXIST)

	got := mustMmap(t, as, base+PageSize, 2*PageSize, ProtRead, anonPriv|MapFixed, nil, 0)
	require.Equal(t, base+PageSize, got)
	assert.Equal(t, used-2, as.frames.Used(), "replaced pages are freed")

	vmas := as.VMAs()
	require.Len(t, vmas, 3)
	assert.Equal(t, []Prot{rw, ProtRead, rw}, []Prot{vmas[0].Prot, vmas[1].Prot, vmas[2].Prot})
	buf := make([]byte, PageSize)
	require.NoError(t, as.CopyIn(base+PageSize, buf))
	assert.Equal(t, make([]byte, PageSize), buf, "new mapping reads zero")
	require.NoError(t, as.CopyIn(base+3*PageSize, buf))
	assert.Equal(t, pattern(4*PageSize, 3)[3*PageSize:], buf, "untouched part keeps data")
	checkInvariants(t, 0, as)
}

func TestMmapMerge(t *testing.T) {
	file := &memFile{name: "/lib.so", data: pattern(8*PageSize, 1)}
	other := &memFile{name: "/lib.so", data: pattern(8*PageSize, 1)}
	dev := &testDevice{base: 0xfe000000, size: 16 * PageSize}
	tests := []struct {
		name      string
		first     func(as *AddressSpace) error
		second    func(as *AddressSpace) error
		wantVMAs  int
		wantShare bool
	}{
		{"anon private", mapAt(0x100000, rw, anonPriv, nil, 0), mapAt(0x101000, rw, anonPriv, nil, 0), 1, false},
		{"different prot", mapAt(0x100000, rw, anonPriv, nil, 0), mapAt(0x101000, ProtRead, anonPriv, nil, 0), 2, false},
		{"anon shared", mapAt(0x100000, rw, MapShared|MapAnonymous, nil, 0), mapAt(0x101000, rw, MapShared|MapAnonymous, nil, 0), 2, true},
		{"file contiguous", mapAt(0x100000, ProtRead, MapPrivate, file, 0), mapAt(0x101000, ProtRead, MapPrivate, file, PageSize), 1, false},
		{"file gap in offset", mapAt(0x100000, ProtRead, MapPrivate, file, 0), mapAt(0x101000, ProtRead, MapPrivate, file, 2*PageSize), 2, false},
		{"other file", mapAt(0x100000, ProtRead, MapPrivate, file, 0), mapAt(0x101000, ProtRead, MapPrivate, other, PageSize), 2, false},
		{"file and anon", mapAt(0x100000, ProtRead, MapPrivate, file, 0), mapAt(0x101000, ProtRead, anonPriv, nil, 0), 2, false},
		{"device", mapAt(0x100000, rw, MapShared, dev, 0), mapAt(0x101000, rw, MapShared, dev, PageSize), 2, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			as := newTestAS(t, 16)
			require.NoError(t, tt.first(as))
			require.NoError(t, tt.second(as))
			assert.Len(t, as.VMAs(), tt.wantVMAs)
			assert.Equal(t, tt.wantShare, as.VMAs()[0].Shared)
			checkInvariants(t, 0, as)
		})
	}
}

func mapAt(addr uint64, prot Prot, flags uint32, b Backing, off uint64) func(*AddressSpace) error {
	return func(as *AddressSpace) error {
		_, err := as.Mmap(addr, PageSize, prot, flags|MapFixed, b, off)
		return err
	}
}

func TestMmapFileAccess(t *testing.T) {
	mk := func(access Prot) *accessFile {
		return &accessFile{memFile{name: "/f", data: pattern(PageSize, 0), access: access}}
	}
	tests := []struct {
		name        string
		access      Prot
		prot        Prot
		flags       uint32
		want        error
		wantMaxProt Prot
	}{
		{"write-only fd", ProtWrite, ProtRead, MapPrivate, unix.EACCES, 0},
		{"read-only fd, shared write", ProtRead | ProtExec, rw, MapShared, unix.EACCES, 0},
		{"read-only fd, shared read", ProtRead | ProtExec, ProtRead, MapShared, nil, ProtRead | ProtExec},
		{"read-only fd, private write", ProtRead | ProtExec, rw, MapPrivate, nil, protRWX},
		{"noexec mount, exec", ProtRead | ProtWrite, ProtRead | ProtExec, MapPrivate, unix.EPERM, 0},
		{"noexec mount, read", ProtRead | ProtWrite, ProtRead, MapShared, nil, rw},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			as := newTestAS(t, 16)
			addr, err := as.Mmap(0, PageSize, tt.prot, tt.flags, mk(tt.access), 0)
			if tt.want != nil {
				require.ErrorIs(t, err, tt.want)
				return
			}
			require.NoError(t, err)
			v, ok := as.FindVMA(addr)
			require.True(t, ok)
			assert.Equal(t, tt.wantMaxProt, v.MaxProt)
			assert.Equal(t, KindFile, v.Kind)
			assert.Equal(t, "/f", v.Name)
			// mprotect cannot go beyond MaxProt.
			if tt.wantMaxProt&ProtWrite == 0 {
				assert.ErrorIs(t, as.Mprotect(addr, PageSize, rw), unix.EACCES)
			}
			if tt.wantMaxProt&ProtExec == 0 {
				assert.ErrorIs(t, as.Mprotect(addr, PageSize, ProtRead|ProtExec), unix.EACCES)
			}
		})
	}
}

func TestMmapDevice(t *testing.T) {
	as := newTestAS(t, 16)
	dev := &testDevice{base: 0xfe000000, size: 4 * PageSize}
	_, err := as.Mmap(0, 5*PageSize, rw, MapShared, dev, 0)
	assert.ErrorIs(t, err, unix.EINVAL, "longer than the MMIO window")
	_, err = as.Mmap(0, PageSize, rw, MapShared, dev, 4*PageSize)
	assert.ErrorIs(t, err, unix.EINVAL, "offset at the end of the window")
	addr := mustMmap(t, as, 0, 2*PageSize, rw, MapShared, dev, 2*PageSize)
	v, ok := as.FindVMA(addr)
	require.True(t, ok)
	assert.Equal(t, KindDevice, v.Kind)
	assert.True(t, v.DontDump)
	assert.Equal(t, uint64(2*PageSize), v.Offset)
}

func TestMmapPopulate(t *testing.T) {
	as := newTestAS(t, 64)
	file := &memFile{name: "/f", data: pattern(3*PageSize, 9)}
	addr := mustMmap(t, as, 0, 3*PageSize, rw, MapPrivate|MapPopulate, file, 0)
	n := 0
	for va, e := range as.PresentPages(addr, addr+3*PageSize) {
		assert.Equal(t, addr+uint64(n)*PageSize, va)
		assert.True(t, e.Has(Copied|Writable), "private writable populate breaks COW like Linux")
		n++
	}
	assert.Equal(t, 3, n)

	// MAP_NONBLOCK turns MAP_POPULATE off.
	addr = mustMmap(t, as, 0, 3*PageSize, rw, anonPriv|MapPopulate|MapNonBlock, nil, 0)
	for range as.PresentPages(addr, addr+3*PageSize) {
		t.Fatal("MAP_NONBLOCK populated")
	}
	checkInvariants(t, 0, as)
}

func TestMunmap(t *testing.T) {
	as := newTestAS(t, 64)
	base := mustMmap(t, as, 0x100000, 8*PageSize, rw, anonPriv|MapFixed, nil, 0)
	require.NoError(t, as.Populate(base, 8*PageSize))
	used := as.frames.Used()

	for _, tt := range []struct {
		name       string
		addr, size uint64
	}{
		{"unaligned", base + 1, PageSize},
		{"zero length", base, 0},
		{"beyond task size", TaskSize - PageSize, 2 * PageSize},
		{"address beyond task size", TaskSize + PageSize, PageSize},
		{"wrapping", base, ^uint64(0) - 100},
	} {
		assert.ErrorIs(t, as.Munmap(tt.addr, tt.size), unix.EINVAL, tt.name)
	}

	// Punch a hole: the VMA splits and the pages are freed.
	require.NoError(t, as.Munmap(base+2*PageSize, 2*PageSize-100))
	vmas := as.VMAs()
	require.Len(t, vmas, 2)
	assert.Equal(t, base+2*PageSize, vmas[0].End)
	assert.Equal(t, base+4*PageSize, vmas[1].Start)
	assert.Equal(t, used-2, as.frames.Used())
	// Unmapping over holes is fine.
	require.NoError(t, as.Munmap(base, 16*PageSize))
	assert.Empty(t, as.VMAs())
	require.NoError(t, as.Munmap(base, 16*PageSize))
	checkInvariants(t, 0, as)
	assert.Equal(t, 1+3, as.frames.Used(), "the emptied tables wait for a Reclaim")
	assert.Equal(t, 3, as.pt.Reclaim())
	assert.Equal(t, 1, as.frames.Used(), "only the PML4 is left")
}

func TestMprotect(t *testing.T) {
	as := newTestAS(t, 64)
	base := mustMmap(t, as, 0x100000, 4*PageSize, rw, anonPriv|MapFixed, nil, 0)
	require.NoError(t, as.Populate(base, 4*PageSize))

	assert.ErrorIs(t, as.Mprotect(base+1, PageSize, ProtRead), unix.EINVAL)
	assert.ErrorIs(t, as.Mprotect(base, PageSize, 0x40), unix.EINVAL, "unknown prot bit")
	assert.ErrorIs(t, as.Mprotect(base, PageSize, protGrowsDown|protGrowsUp), unix.EINVAL)
	assert.ErrorIs(t, as.Mprotect(base, 5*PageSize, ProtRead), unix.ENOMEM, "hole after the VMA")
	assert.ErrorIs(t, as.Mprotect(base-PageSize, 2*PageSize, ProtRead), unix.ENOMEM, "hole before")
	assert.ErrorIs(t, as.Mprotect(base, ^uint64(0)-PageSize, ProtRead), unix.ENOMEM, "wraps")
	assert.NoError(t, as.Mprotect(base, 0, ProtRead), "zero length is a no-op")
	assert.NoError(t, as.Mprotect(base, PageSize, ProtRead|protSem), "PROT_SEM is accepted")
	require.NoError(t, as.Mprotect(base, PageSize, rw))
	require.Len(t, as.VMAs(), 1, "restoring the protection merges again")

	as.pt.ClearFlush()
	require.NoError(t, as.Mprotect(base+PageSize, PageSize, ProtRead))
	assert.True(t, as.pt.NeedFlush(), "PTE of a present page changed")
	vmas := as.VMAs()
	require.Len(t, vmas, 3)
	assert.Equal(t, ProtRead, vmas[1].Prot)
	e, ok := as.pt.Lookup(base + PageSize)
	require.True(t, ok)
	assert.Zero(t, e&Writable)
	assert.Equal(t, SegvAccErr, as.HandleFault(base+PageSize, PFPresent|PFWrite|PFUser).Code)

	require.NoError(t, as.Mprotect(base+2*PageSize, PageSize, ProtNone))
	e, ok = as.pt.Lookup(base + 2*PageSize)
	require.True(t, ok, "PROT_NONE keeps the frame")
	assert.Zero(t, e&User)
	assert.Equal(t, SegvAccErr, as.HandleFault(base+2*PageSize, PFPresent|PFUser).Code)

	require.NoError(t, as.Mprotect(base, 4*PageSize, ProtRead|ProtExec))
	require.Len(t, as.VMAs(), 1)
	as.pt.Walk(base, base+4*PageSize, func(va uint64, e PTE) bool {
		assert.Equal(t, Present|User|Accessed, e.Flags(), "%#x", va)
		return true
	})
	require.NoError(t, as.Mprotect(base, 4*PageSize, rw))
	as.pt.Walk(base, base+4*PageSize, func(va uint64, e PTE) bool {
		assert.True(t, e.Has(Writable|NX|User), "exclusive anonymous pages become writable again")
		return true
	})
	checkInvariants(t, 0, as)
}

func TestMprotectGrowsDown(t *testing.T) {
	as := newTestAS(t, 16)
	require.NoError(t, as.SetupStack(0x10000000, 4*PageSize))
	// PROT_GROWSDOWN extends the range down to the start of the stack VMA.
	require.NoError(t, as.Mprotect(0x10000000-PageSize, PageSize, ProtRead|protGrowsDown))
	vmas := as.VMAs()
	require.Len(t, vmas, 1)
	assert.Equal(t, ProtRead, vmas[0].Prot)
	assert.Equal(t, uint64(0x10000000-4*PageSize), vmas[0].Start)

	addr := mustMmap(t, as, 0x200000, PageSize, rw, anonPriv|MapFixed, nil, 0)
	assert.ErrorIs(t, as.Mprotect(addr, PageSize, ProtRead|protGrowsDown), unix.EINVAL)
	assert.ErrorIs(t, as.Mprotect(addr, PageSize, ProtRead|protGrowsUp), unix.EINVAL)
}

func TestMremap(t *testing.T) {
	setup := func(t *testing.T) (*AddressSpace, uint64) {
		as := newTestAS(t, 128)
		base := mustMmap(t, as, 0x100000, 4*PageSize, rw, anonPriv|MapFixed, nil, 0)
		require.NoError(t, as.CopyOut(base, pattern(4*PageSize, 5)))
		return as, base
	}
	t.Run("argument errors", func(t *testing.T) {
		as, base := setup(t)
		for _, tt := range []struct {
			name                string
			old, oldLen, newLen uint64
			flags               uint32
			newAddr             uint64
			want                error
		}{
			{"unknown flag", base, PageSize, PageSize, 8, 0, unix.EINVAL},
			{"fixed without maymove", base, PageSize, PageSize, MremapFixed, 0x400000, unix.EINVAL},
			{"dontunmap size change", base, PageSize, 2 * PageSize, MremapMayMove | MremapDontUnmap, 0, unix.EINVAL},
			{"dontunmap without maymove", base, PageSize, PageSize, MremapDontUnmap, 0, unix.EINVAL},
			{"unaligned", base + 1, PageSize, PageSize, 0, 0, unix.EINVAL},
			{"zero new length", base, PageSize, 0, 0, 0, unix.EINVAL},
			{"unmapped", 0x900000, PageSize, PageSize, 0, 0, unix.EFAULT},
			{"beyond the VMA", base, 5 * PageSize, 6 * PageSize, MremapMayMove, 0, unix.EFAULT},
			{"old beyond task size", TaskSize - PageSize, 2 * PageSize, PageSize, 0, 0, unix.EFAULT},
			{"private zero old length", base, 0, PageSize, MremapMayMove, 0, unix.EINVAL},
			{"fixed unaligned target", base, PageSize, PageSize, MremapMayMove | MremapFixed, 0x400001, unix.EINVAL},
			{"fixed overlapping", base, 2 * PageSize, 2 * PageSize, MremapMayMove | MremapFixed, base + PageSize, unix.EINVAL},
			{"fixed beyond task size", base, PageSize, 2 * PageSize, MremapMayMove | MremapFixed, TaskSize - PageSize, unix.EINVAL},
			{"grow without room", base, 4 * PageSize, 8 * PageSize, 0, 0, unix.ENOMEM},
		} {
			if tt.name == "grow without room" {
				mustMmap(t, as, base+4*PageSize, PageSize, ProtRead, anonPriv|MapFixed, nil, 0)
			}
			_, err := as.Mremap(tt.old, tt.oldLen, tt.newLen, tt.flags, tt.newAddr)
			assert.ErrorIs(t, err, tt.want, tt.name)
		}
		checkInvariants(t, 0, as)
	})
	t.Run("shrink in place", func(t *testing.T) {
		as, base := setup(t)
		got, err := as.Mremap(base, 4*PageSize, PageSize+1, 0, 0)
		require.NoError(t, err)
		assert.Equal(t, base, got)
		assert.Equal(t, base+2*PageSize, as.VMAs()[0].End)
		assert.Equal(t, 1+3+2, as.frames.Used(), "tables + two pages")
		checkInvariants(t, 0, as)
	})
	t.Run("grow in place", func(t *testing.T) {
		as, base := setup(t)
		got, err := as.Mremap(base, 4*PageSize, 6*PageSize, 0, 0)
		require.NoError(t, err)
		assert.Equal(t, base, got)
		require.Len(t, as.VMAs(), 1)
		assert.Equal(t, base+6*PageSize, as.VMAs()[0].End)
		buf := make([]byte, 6*PageSize)
		require.NoError(t, as.CopyIn(base, buf))
		assert.Equal(t, pattern(4*PageSize, 5), buf[:4*PageSize])
		assert.Equal(t, make([]byte, 2*PageSize), buf[4*PageSize:])
		checkInvariants(t, 0, as)
	})
	t.Run("grow by moving", func(t *testing.T) {
		as, base := setup(t)
		mustMmap(t, as, base+4*PageSize, PageSize, ProtRead, anonPriv|MapFixed, nil, 0)
		used := as.frames.Used()
		got, err := as.Mremap(base, 4*PageSize, 8*PageSize, MremapMayMove, 0)
		require.NoError(t, err)
		assert.NotEqual(t, base, got)
		buf := make([]byte, 4*PageSize)
		require.NoError(t, as.CopyIn(got, buf))
		assert.Equal(t, pattern(4*PageSize, 5), buf, "pages moved with the mapping")
		_, ok := as.FindVMA(base)
		assert.False(t, ok, "old range unmapped")
		assert.LessOrEqual(t, as.frames.Used(), used+3, "no data pages copied (only new tables)")
		checkInvariants(t, 0, as)
	})
	t.Run("move part of a VMA to a fixed address", func(t *testing.T) {
		as, base := setup(t)
		mustMmap(t, as, 0x400000, 2*PageSize, ProtRead, anonPriv|MapFixed, nil, 0)
		got, err := as.Mremap(base+PageSize, 2*PageSize, 3*PageSize, MremapMayMove|MremapFixed, 0x400000)
		require.NoError(t, err)
		assert.Equal(t, uint64(0x400000), got)
		vmas := as.VMAs()
		require.Len(t, vmas, 3)
		assert.Equal(t, rw, vmas[2].Prot, "replaced the mapping at the target")
		assert.Equal(t, uint64(0x400000+3*PageSize), vmas[2].End)
		buf := make([]byte, 2*PageSize)
		require.NoError(t, as.CopyIn(got, buf))
		assert.Equal(t, pattern(4*PageSize, 5)[PageSize:3*PageSize], buf)
		checkInvariants(t, 0, as)
	})
	t.Run("fixed shrinking move", func(t *testing.T) {
		as, base := setup(t)
		got, err := as.Mremap(base, 4*PageSize, PageSize, MremapMayMove|MremapFixed, 0x800000)
		require.NoError(t, err)
		assert.Equal(t, uint64(0x800000), got)
		require.Len(t, as.VMAs(), 1)
		as.pt.Reclaim() // the source's emptied PT
		assert.Equal(t, 1+3+1, as.frames.Used())
		checkInvariants(t, 0, as)
	})
	t.Run("dontunmap", func(t *testing.T) {
		as, base := setup(t)
		got, err := as.Mremap(base, 4*PageSize, 4*PageSize, MremapMayMove|MremapDontUnmap, 0)
		require.NoError(t, err)
		require.Len(t, as.VMAs(), 2)
		buf := make([]byte, 4*PageSize)
		require.NoError(t, as.CopyIn(base, buf))
		assert.Equal(t, make([]byte, 4*PageSize), buf, "old range stays mapped but empty")
		require.NoError(t, as.CopyIn(got, buf))
		assert.Equal(t, pattern(4*PageSize, 5), buf)
		checkInvariants(t, 0, as)
	})
	t.Run("file mapping keeps offsets", func(t *testing.T) {
		as := newTestAS(t, 64)
		file := &memFile{name: "/f", data: pattern(8*PageSize, 2)}
		base := mustMmap(t, as, 0x100000, 4*PageSize, ProtRead, MapPrivate|MapFixed, file, 0)
		mustMmap(t, as, base+4*PageSize, PageSize, ProtRead, anonPriv|MapFixed, nil, 0)
		got, err := as.Mremap(base+PageSize, PageSize, 3*PageSize, MremapMayMove, 0)
		require.NoError(t, err)
		v, ok := as.FindVMA(got)
		require.True(t, ok)
		assert.Equal(t, uint64(PageSize), v.Offset)
		buf := make([]byte, 3*PageSize)
		require.NoError(t, as.CopyIn(got, buf))
		assert.Equal(t, file.data[PageSize:4*PageSize], buf)
		checkInvariants(t, 0, as)
	})
	t.Run("shared file duplicate with zero old length", func(t *testing.T) {
		as := newTestAS(t, 64)
		file := &memFile{name: "/f", data: pattern(8*PageSize, 2)}
		base := mustMmap(t, as, 0x100000, 4*PageSize, ProtRead, MapShared|MapFixed, file, 0)
		got, err := as.Mremap(base+PageSize, 0, 2*PageSize, MremapMayMove, 0)
		require.NoError(t, err)
		assert.NotEqual(t, base+PageSize, got)
		require.Len(t, as.VMAs(), 2, "the original stays")
		buf := make([]byte, 2*PageSize)
		require.NoError(t, as.CopyIn(got, buf))
		assert.Equal(t, file.data[PageSize:3*PageSize], buf)
	})
	t.Run("device cannot grow", func(t *testing.T) {
		as := newTestAS(t, 16)
		dev := &testDevice{base: 0xfe000000, size: 16 * PageSize}
		base := mustMmap(t, as, 0, PageSize, rw, MapShared, dev, 0)
		_, err := as.Mremap(base, PageSize, 2*PageSize, MremapMayMove, 0)
		assert.ErrorIs(t, err, unix.EFAULT)
		_, err = as.Mremap(base, PageSize, 2*PageSize, MremapMayMove|MremapFixed, 0x400000)
		assert.ErrorIs(t, err, unix.EFAULT)
		_, err = as.Mremap(base, PageSize, PageSize, MremapMayMove|MremapDontUnmap, 0)
		assert.ErrorIs(t, err, unix.EINVAL)
		// Moving it is fine: the MMIO page goes along.
		mustFault(t, as, base, PFUser)
		got, err := as.Mremap(base, PageSize, PageSize, MremapMayMove|MremapFixed, 0x400000)
		require.NoError(t, err)
		e, ok := as.pt.Lookup(got)
		require.True(t, ok)
		assert.Equal(t, uint64(0xfe000000), e.Addr())
		v, ok := as.FindVMA(got)
		require.True(t, ok)
		assert.True(t, v.Contains(got))
		assert.Equal(t, uint64(PageSize), v.Len())
		checkInvariants(t, 0, as)
	})
}

func TestBrk(t *testing.T) {
	as := newTestAS(t, 64)
	assert.Equal(t, uint64(0), as.Brk(0x500000), "no heap before SetBrkBase")
	const base = 0x400123
	as.SetBrkBase(base)
	start := uint64(0x401000)
	assert.Equal(t, start, as.Brk(0))
	assert.Equal(t, start, as.Brk(start-1), "below the heap start")

	assert.Equal(t, start+10, as.Brk(start+10))
	vmas := as.VMAs()
	require.Len(t, vmas, 1)
	assert.Equal(t, VMA{Start: start, End: start + PageSize, Prot: rw, MaxProt: protRWX,
		Anonymous: true, Kind: KindHeap, Name: "[heap]"}, vmas[0])

	assert.Equal(t, start+3*PageSize, as.Brk(start+3*PageSize))
	require.Len(t, as.VMAs(), 1)
	require.NoError(t, as.CopyOut(start, pattern(3*PageSize, 1)))
	used := as.frames.Used()

	// Shrinking frees the pages above the new break.
	assert.Equal(t, start+PageSize+5, as.Brk(start+PageSize+5))
	assert.Equal(t, used-1, as.frames.Used())
	assert.Equal(t, start+2*PageSize, as.VMAs()[0].End)

	// A mapping right above the heap blocks growth (one free page is kept).
	mustMmap(t, as, start+4*PageSize, PageSize, rw, anonPriv|MapFixed, nil, 0)
	assert.Equal(t, start+PageSize+5, as.Brk(start+4*PageSize), "would collide")
	assert.Equal(t, start+3*PageSize, as.Brk(start+3*PageSize))
	assert.Equal(t, start+3*PageSize, as.Brk(TaskSize+1))

	// Regrowing after a shrink to zero creates a new heap VMA.
	assert.Equal(t, start, as.Brk(start))
	assert.Len(t, as.VMAs(), 1)
	assert.Equal(t, start+PageSize, as.Brk(start+PageSize))
	buf := make([]byte, PageSize)
	require.NoError(t, as.CopyIn(start, buf))
	assert.Equal(t, make([]byte, PageSize), buf, "memory given back and taken again reads zero")
	start2, cur := as.BrkRange()
	assert.Equal(t, start, start2)
	assert.Equal(t, start+PageSize, cur)
	checkInvariants(t, 0, as)
}

func TestSetupStack(t *testing.T) {
	as := newTestAS(t, 16)
	assert.ErrorIs(t, as.SetupStack(0x10000001, PageSize), unix.EINVAL)
	assert.ErrorIs(t, as.SetupStack(0x10000000, 9<<20), unix.EINVAL, "beyond StackMax")
	assert.ErrorIs(t, as.SetupStack(0x11000, 8*PageSize), unix.EINVAL, "below mmap_min_addr")
	require.NoError(t, as.SetupStack(0, 128<<10))
	vmas := as.VMAs()
	require.Len(t, vmas, 1)
	assert.Equal(t, VMA{Start: TaskSize - 128<<10, End: TaskSize, Prot: rw, MaxProt: protRWX,
		Anonymous: true, GrowsDown: true, Kind: KindStack, Name: "[stack]"}, vmas[0])
	assert.ErrorIs(t, as.SetupStack(0, PageSize), unix.EEXIST)
}

// The limit works like Linux's vm.max_map_count: mmap fails once the count
// exceeds the limit, splits fail once it is reached.
func TestMapCountLimit(t *testing.T) {
	mem, f := newTestFrames(t, 16)
	as, err := NewAddressSpace(mem, f, Layout{MaxMapCount: 3})
	require.NoError(t, err)
	base := mustMmap(t, as, 0x100000, 3*PageSize, rw, anonPriv|MapFixed, nil, 0)
	for i := range uint64(3) {
		mustMmap(t, as, 0x200000+i*2*PageSize, PageSize, rw, anonPriv|MapFixed, nil, 0)
	}
	require.Len(t, as.VMAs(), 4)
	_, err = as.Mmap(0, PageSize, rw, anonPriv, nil, 0)
	assert.ErrorIs(t, err, unix.ENOMEM)
	as.SetBrkBase(0x180000)
	assert.Equal(t, uint64(0x180000), as.Brk(0x182000), "brk fails too")

	assert.ErrorIs(t, as.Munmap(base+PageSize, PageSize), unix.ENOMEM, "a hole needs one more VMA")
	assert.ErrorIs(t, as.Mprotect(base+PageSize, PageSize, ProtRead), unix.ENOMEM)
	assert.ErrorIs(t, as.Madvise(base+PageSize, PageSize, MadvDontDump), unix.ENOMEM)
	require.NoError(t, as.Munmap(base, PageSize), "trimming an end needs no new VMA")
	require.NoError(t, as.Mprotect(base+PageSize, 2*PageSize, ProtRead), "nor does changing a whole VMA")
	checkInvariants(t, 0, as)
}

func TestDestroyFreesEverything(t *testing.T) {
	as := newTestAS(t, 256)
	addr := mustMmap(t, as, 0, 64*PageSize, rw, anonPriv, nil, 0)
	require.NoError(t, as.Populate(addr, 64*PageSize))
	dev := &testDevice{base: 0xfe000000, size: 16 * PageSize}
	d := mustMmap(t, as, 0, PageSize, rw, MapShared, dev, 0)
	mustFault(t, as, d, PFUser|PFWrite)
	require.NoError(t, as.PageTables().Map(kernelHalf, 0xfff000, 0))
	require.Greater(t, as.frames.Used(), 64)
	as.Destroy()
	assert.Equal(t, 0, as.frames.Used())
	assert.Empty(t, as.VMAs())
	_, err := as.Mmap(0, PageSize, rw, anonPriv, nil, 0)
	assert.ErrorIs(t, err, unix.ENOMEM)
	assert.False(t, as.HandleFault(addr, PFUser).Resolved)
	as.Destroy()
}
