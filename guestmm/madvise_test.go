package guestmm

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestMadviseArguments(t *testing.T) {
	as := newTestAS(t, 16)
	base := mustMmap(t, as, 0x100000, 2*PageSize, rw, anonPriv|MapFixed, nil, 0)
	tests := []struct {
		name   string
		addr   uint64
		length uint64
		advice int
		want   error
	}{
		{"unknown advice", base, PageSize, 5, unix.EINVAL},
		{"negative advice", base, PageSize, -1, unix.EINVAL},
		{"unaligned", base + 1, PageSize, MadvNormal, unix.EINVAL},
		{"length rounds to zero", base, ^uint64(0), MadvNormal, unix.EINVAL},
		{"wraps", base, ^uint64(0) - 2*PageSize, MadvNormal, unix.EINVAL},
		{"zero length", base, 0, MadvDontNeed, nil},
		{"zero length unmapped", 0x900000, 0, MadvDontNeed, nil},
		{"unmapped", 0x900000, PageSize, MadvWillNeed, unix.ENOMEM},
		{"partly unmapped", base, 3 * PageSize, MadvNormal, unix.ENOMEM},
		{"beyond task size", TaskSize - PageSize, 2 * PageSize, MadvNormal, unix.ENOMEM},
		{"hints accepted", base, 2 * PageSize, MadvHugePage, nil},
		{"cold accepted", base, PageSize, MadvCold, nil},
		{"wipeonfork", base, PageSize, MadvWipeOnFork, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := as.Madvise(tt.addr, tt.length, tt.advice)
			if tt.want == nil {
				assert.NoError(t, err)
			} else {
				assert.ErrorIs(t, err, tt.want)
			}
		})
	}
}

func TestMadviseDontNeed(t *testing.T) {
	as := newTestAS(t, 64)
	anon := mustMmap(t, as, 0x100000, 2*PageSize, rw, anonPriv|MapFixed, nil, 0)
	file := &memFile{name: "/f", data: pattern(PageSize, 6)}
	priv := mustMmap(t, as, 0x200000, PageSize, rw, MapPrivate|MapFixed, file, 0)
	shared := mustMmap(t, as, 0x300000, PageSize, rw, MapShared|MapAnonymous|MapFixed, nil, 0)

	require.NoError(t, as.CopyOut(anon, pattern(2*PageSize, 1)))
	require.NoError(t, as.CopyOut(priv, []byte{0, 0, 0}))
	require.NoError(t, as.CopyOut(shared, []byte{42}))

	as.pt.ClearFlush()
	require.NoError(t, as.Madvise(anon, PageSize, MadvDontNeed))
	assert.True(t, as.pt.NeedFlush())
	buf := make([]byte, 2*PageSize)
	require.NoError(t, as.CopyIn(anon, buf))
	assert.Equal(t, make([]byte, PageSize), buf[:PageSize], "dropped anonymous page reads zero")
	assert.Equal(t, pattern(2*PageSize, 1)[PageSize:], buf[PageSize:], "the other page is kept")

	require.NoError(t, as.Madvise(priv, PageSize, MadvDontNeed))
	require.NoError(t, as.CopyIn(priv, buf[:PageSize]))
	assert.Equal(t, file.data, buf[:PageSize], "private file page re-read from the file")

	require.NoError(t, as.Madvise(shared, PageSize, MadvDontNeed))
	require.NoError(t, as.CopyIn(shared, buf[:1]))
	assert.Equal(t, byte(42), buf[0], "shared memory has no other copy: kept")

	require.NoError(t, as.Madvise(anon, 2*PageSize, MadvFree))
	assert.ErrorIs(t, as.Madvise(priv, PageSize, MadvFree), unix.EINVAL)
	assert.ErrorIs(t, as.Madvise(anon, PageSize, MadvRemove), unix.EINVAL)
	require.NoError(t, as.Madvise(shared, PageSize, MadvRemove))
	require.NoError(t, as.CopyIn(shared, buf[:1]))
	assert.Equal(t, byte(0), buf[0], "MADV_REMOVE frees shared memory")

	dev := &testDevice{base: 0xfe000000, size: PageSize}
	d := mustMmap(t, as, 0, PageSize, rw, MapShared, dev, 0)
	assert.ErrorIs(t, as.Madvise(d, PageSize, MadvDontNeed), unix.EINVAL)
	assert.ErrorIs(t, as.Madvise(d, PageSize, MadvDoDump), unix.EINVAL)

	locked := mustMmap(t, as, 0, PageSize, rw, anonPriv|MapLocked, nil, 0)
	assert.ErrorIs(t, as.Madvise(locked, PageSize, MadvDontNeed), unix.EINVAL)
	assert.NoError(t, as.Madvise(locked, PageSize, MadvDontNeedLocked))
	checkInvariants(t, 0, as)
}

func TestMadviseDontDumpSplitsAndMerges(t *testing.T) {
	as := newTestAS(t, 16)
	base := mustMmap(t, as, 0x100000, 4*PageSize, rw, anonPriv|MapFixed, nil, 0)

	require.NoError(t, as.Madvise(base+PageSize, 2*PageSize, MadvDontDump))
	vmas := as.VMAs()
	require.Len(t, vmas, 3)
	assert.Equal(t, []bool{false, true, false}, []bool{vmas[0].DontDump, vmas[1].DontDump, vmas[2].DontDump})
	assert.Equal(t, base+PageSize, vmas[1].Start)
	assert.Equal(t, base+3*PageSize, vmas[1].End)

	// Over a hole: applied to the mapped part, ENOMEM reported.
	mustMmap(t, as, base+5*PageSize, PageSize, rw, anonPriv|MapFixed, nil, 0)
	assert.ErrorIs(t, as.Madvise(base, 6*PageSize, MadvDontDump), unix.ENOMEM)
	for _, v := range as.VMAs() {
		assert.True(t, v.DontDump)
	}
	require.Len(t, as.VMAs(), 2, "equal neighbours merged again")

	require.NoError(t, as.Madvise(base, 4*PageSize, MadvDoDump))
	require.NoError(t, as.Madvise(base, 4*PageSize, MadvDontFork))
	vmas = as.VMAs()
	assert.False(t, vmas[0].DontDump)
	assert.True(t, vmas[0].DontFork)
	require.NoError(t, as.Madvise(base, 4*PageSize, MadvDoFork))
	assert.False(t, as.VMAs()[0].DontFork)
	checkInvariants(t, 0, as)
}

func TestMadvisePopulate(t *testing.T) {
	as := newTestAS(t, 16)
	ro := mustMmap(t, as, 0x100000, 2*PageSize, ProtRead, anonPriv|MapFixed, nil, 0)
	require.NoError(t, as.Madvise(ro, 2*PageSize, MadvPopulateRead))
	n := 0
	for range as.PresentPages(ro, ro+2*PageSize) {
		n++
	}
	assert.Equal(t, 2, n)
	assert.ErrorIs(t, as.Madvise(ro, PageSize, MadvPopulateWrite), unix.EINVAL)

	rwAddr := mustMmap(t, as, 0x200000, PageSize, rw, anonPriv|MapFixed, nil, 0)
	require.NoError(t, as.Madvise(rwAddr, PageSize, MadvPopulateWrite))
	e, ok := as.pt.Lookup(rwAddr)
	require.True(t, ok)
	assert.NotZero(t, e&Writable)
	checkInvariants(t, 0, as)
}
