package guestmm

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestCheckpointRoundTrip saves an address space with the enumeration API
// and rebuilds it in a fresh one with RestoreVMA, RestoreBrk and WriteForce,
// the way checkpoint/restore is meant to use the package.
func TestCheckpointRoundTrip(t *testing.T) {
	file := &memFile{name: "/prog", data: pattern(4*PageSize, 8)}
	src := newTestAS(t, 128)
	mustMmap(t, src, 0x400000, 2*PageSize, ProtRead|ProtExec, MapPrivate|MapFixed, file, 0)
	data := mustMmap(t, src, 0x402000, 2*PageSize, rw, MapPrivate|MapFixed, file, 2*PageSize)
	src.SetBrkBase(0x404000)
	src.Brk(0x406000)
	anon := mustMmap(t, src, 0, 3*PageSize, rw, anonPriv, nil, 0)
	require.NoError(t, src.Madvise(anon, PageSize, MadvDontDump))
	require.NoError(t, src.SetupStack(0, 2*PageSize))

	require.NoError(t, src.CopyIn(0x400000, make([]byte, 2*PageSize))) // clean file pages
	require.NoError(t, src.CopyOut(data+10, []byte("relocated")))
	require.NoError(t, src.CopyOut(0x404000, []byte("heap")))
	require.NoError(t, src.CopyOut(anon+PageSize, []byte("anon")))
	require.NoError(t, src.CopyOut(TaskSize-8, []byte("stack")))

	// Checkpoint: VMAs, break, and the pages that cannot be re-read.
	vmas := src.VMAs()
	heapStart, brk := src.BrkRange()
	saved := map[uint64][]byte{}
	for _, v := range vmas {
		for va, e := range src.PresentPages(v.Start, v.End) {
			if v.Kind == KindFile && e&Copied == 0 {
				continue
			}
			saved[va] = bytes.Clone(src.frames.Bytes(e.Addr()))
		}
	}
	assert.Equal(t, 4, len(saved), "data page, heap, anon and stack; not the clean text")

	// Restore.
	dst := newTestAS(t, 128)
	for _, v := range vmas {
		require.NoError(t, dst.RestoreVMA(v))
	}
	require.NoError(t, dst.RestoreBrk(heapStart, brk))
	for va, page := range saved {
		require.NoError(t, dst.WriteForce(va, page))
	}
	assert.Equal(t, src.VMAs(), dst.VMAs())
	assert.Equal(t, src.MapsText(), dst.MapsText())
	for _, v := range vmas {
		a := make([]byte, v.Len())
		b := make([]byte, v.Len())
		require.NoError(t, src.CopyIn(v.Start, a))
		require.NoError(t, dst.CopyIn(v.Start, b))
		assert.Equal(t, a, b, "contents of %#x", v.Start)
	}
	assert.Equal(t, brk+PageSize, dst.Brk(brk+PageSize))
	checkInvariants(t, 0, dst)
}

func TestRestoreVMAValidation(t *testing.T) {
	as := newTestAS(t, 16)
	f := &memFile{name: "/f"}
	dev := &testDevice{base: 0xfe000000, size: PageSize}
	anon := VMA{Start: 0x100000, End: 0x101000, Prot: rw, MaxProt: protRWX, Anonymous: true}
	mod := func(change func(*VMA)) VMA {
		v := anon
		change(&v)
		return v
	}
	tests := []struct {
		name string
		v    VMA
		want error
	}{
		{"unaligned", mod(func(v *VMA) { v.Start++ }), unix.EINVAL},
		{"empty", mod(func(v *VMA) { v.End = v.Start }), unix.EINVAL},
		{"beyond task size", mod(func(v *VMA) { v.End = TaskSize + PageSize }), unix.EINVAL},
		{"below mmap_min_addr", mod(func(v *VMA) { v.Start = 0 }), unix.EINVAL},
		{"prot beyond max", mod(func(v *VMA) { v.MaxProt = ProtRead }), unix.EINVAL},
		{"anon with backing", mod(func(v *VMA) { v.Backing = f }), unix.EINVAL},
		{"file without backing", mod(func(v *VMA) { v.Kind, v.Anonymous = KindFile, false }), unix.EINVAL},
		{"device with a plain file", mod(func(v *VMA) { v.Kind, v.Anonymous, v.Backing = KindDevice, false, f }), unix.EINVAL},
		{"device too large", mod(func(v *VMA) {
			v.Kind, v.Anonymous, v.Backing, v.End = KindDevice, false, dev, v.Start+2*PageSize
		}), unix.EINVAL},
		{"unknown kind", mod(func(v *VMA) { v.Kind = 42 }), unix.EINVAL},
		{"ok", anon, nil},
		{"overlap", anon, unix.EEXIST},
	}
	for _, tt := range tests {
		err := as.RestoreVMA(tt.v)
		if tt.want == nil {
			assert.NoError(t, err, tt.name)
		} else {
			assert.ErrorIs(t, err, tt.want, tt.name)
		}
	}
	assert.ErrorIs(t, as.RestoreBrk(0x1001, 0x2000), unix.EINVAL)
	assert.ErrorIs(t, as.RestoreBrk(0x2000, 0x1000), unix.EINVAL)
}

func TestMremapZeroOldLengthFixedOnItself(t *testing.T) {
	as := newTestAS(t, 16)
	file := &memFile{name: "/f", data: pattern(2*PageSize, 1)}
	base := mustMmap(t, as, 0x100000, 2*PageSize, ProtRead, MapShared|MapFixed, file, 0)
	_, err := as.Mremap(base, 0, PageSize, MremapMayMove|MremapFixed, base)
	assert.ErrorIs(t, err, unix.EINVAL)
	assert.Len(t, as.VMAs(), 1, "the source survives")
	got, err := as.Mremap(base, 0, PageSize, MremapMayMove|MremapFixed, base+4*PageSize)
	require.NoError(t, err)
	assert.Equal(t, base+4*PageSize, got)
	assert.Len(t, as.VMAs(), 2)
	checkInvariants(t, 0, as)
}
