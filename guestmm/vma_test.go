package guestmm

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestProtAndKindStrings(t *testing.T) {
	assert.Equal(t, "---", ProtNone.String())
	assert.Equal(t, "r-x", (ProtRead | ProtExec).String())
	assert.Equal(t, "rwx", protRWX.String())
	assert.Equal(t, "heap", KindHeap.String())
	assert.Equal(t, "device", KindDevice.String())
	assert.Equal(t, "kind?", VMAKind(99).String())
}

// uncomparableBacking holds a slice: comparing two such interface values
// with == would panic.
type uncomparableBacking struct{ data []byte }

func (uncomparableBacking) ReadAt([]byte, int64) (int, error) { return 0, nil }
func (uncomparableBacking) Name() string                      { return "u" }

func TestSameBacking(t *testing.T) {
	f1 := &memFile{name: "a"}
	f2 := &memFile{name: "a"}
	assert.True(t, sameBacking(nil, nil))
	assert.False(t, sameBacking(f1, nil))
	assert.True(t, sameBacking(f1, f1))
	assert.False(t, sameBacking(f1, f2))
	u := uncomparableBacking{data: []byte{1}}
	assert.NotPanics(t, func() { assert.False(t, sameBacking(u, u)) })
}

func TestCanMerge(t *testing.T) {
	f := &memFile{name: "f"}
	base := VMA{Start: 0x1000, End: 0x2000, Prot: rw, MaxProt: protRWX, Anonymous: true, Kind: KindAnon}
	next := func(mod func(*VMA)) *VMA {
		v := base
		v.Start, v.End = 0x2000, 0x3000
		if mod != nil {
			mod(&v)
		}
		return &v
	}
	fileA := VMA{Start: 0x1000, End: 0x2000, Prot: ProtRead, MaxProt: protRWX, Kind: KindFile, Backing: f, Offset: 0x5000, Name: "f"}
	fileB := fileA
	fileB.Start, fileB.End, fileB.Offset = 0x2000, 0x3000, 0x6000

	tests := []struct {
		name string
		a, b *VMA
		want bool
	}{
		{"identical anon", &base, next(nil), true},
		{"not adjacent", &base, next(func(v *VMA) { v.Start = 0x3000; v.End = 0x4000 }), false},
		{"prot differs", &base, next(func(v *VMA) { v.Prot = ProtRead }), false},
		{"dontdump differs", &base, next(func(v *VMA) { v.DontDump = true }), false},
		{"kind differs", &base, next(func(v *VMA) { v.Kind = KindHeap }), false},
		{"shared anon", &VMA{Start: 0x1000, End: 0x2000, Shared: true, Anonymous: true},
			&VMA{Start: 0x2000, End: 0x3000, Shared: true, Anonymous: true}, false},
		{"file contiguous", &fileA, &fileB, true},
		{"file offset gap", &fileA, func() *VMA { v := fileB; v.Offset = 0x7000; return &v }(), false},
		{"device", &VMA{Start: 0x1000, End: 0x2000, Kind: KindDevice, Backing: f},
			&VMA{Start: 0x2000, End: 0x3000, Kind: KindDevice, Backing: f, Offset: 0x1000}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, canMerge(tt.a, tt.b))
		})
	}
}

func TestVMAListSplitAndMerge(t *testing.T) {
	f := &memFile{name: "f"}
	var l vmaList
	l.insert(&VMA{Start: 0x10000, End: 0x20000, Prot: ProtRead, Kind: KindFile, Backing: f, Offset: 0x3000})
	l.insert(&VMA{Start: 0x1000, End: 0x2000, Anonymous: true})

	i, j := l.isolate(0x12000, 0x14000)
	require.Len(t, l.v, 4)
	assert.Equal(t, 2, i)
	assert.Equal(t, 3, j)
	assert.Equal(t, uint64(0x3000+0x2000), l.v[2].Offset, "offset follows the split")
	assert.Equal(t, uint64(0x3000+0x4000), l.v[3].Offset)

	v, idx := l.find(0x13fff)
	require.NotNil(t, v)
	assert.Equal(t, 2, idx)
	v, idx = l.find(0x5000)
	assert.Nil(t, v)
	assert.Equal(t, 1, idx)
	assert.True(t, l.overlaps(0x1fff, 0x3000))
	assert.False(t, l.overlaps(0x2000, 0x10000))

	l.mergeRange(2, 3)
	require.Len(t, l.v, 2, "splits of one VMA merge back")
	assert.Equal(t, VMA{Start: 0x10000, End: 0x20000, Prot: ProtRead, Kind: KindFile, Backing: f, Offset: 0x3000}, *l.v[1])
}
