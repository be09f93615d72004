package guestmm

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestCopyAcrossPagesAndVMAs(t *testing.T) {
	as := newTestAS(t, 64)
	base := mustMmap(t, as, 0x100000, 2*PageSize, rw, anonPriv|MapFixed, nil, 0)
	// A second VMA right after, with other attributes.
	mustMmap(t, as, base+2*PageSize, 2*PageSize, rw|ProtExec, anonPriv|MapFixed, nil, 0)
	require.Len(t, as.VMAs(), 2)

	src := pattern(3*PageSize, 7)
	require.NoError(t, as.CopyOut(base+100, src))
	dst := make([]byte, len(src))
	require.NoError(t, as.CopyIn(base+100, dst))
	assert.Equal(t, src, dst)

	// Empty copies always succeed, even at bad addresses.
	assert.NoError(t, as.CopyIn(0, nil))
	assert.NoError(t, as.CopyOut(TaskSize+5, nil))
	checkInvariants(t, 0, as)
}

func TestCopyFaults(t *testing.T) {
	as := newTestAS(t, 64)
	base := mustMmap(t, as, 0x100000, 2*PageSize, rw, anonPriv|MapFixed, nil, 0)
	ro := mustMmap(t, as, 0x200000, PageSize, ProtRead, anonPriv|MapFixed, nil, 0)
	none := mustMmap(t, as, 0x300000, PageSize, ProtNone, anonPriv|MapFixed, nil, 0)

	tests := []struct {
		name    string
		va      uint64
		n       int
		out     bool
		wantN   int
		wantErr error
	}{
		{"in: runs into a hole", base + PageSize + 10, PageSize, false, PageSize - 10, unix.EFAULT},
		{"out: runs into a hole", base + 2*PageSize - 1, 2, true, 1, unix.EFAULT},
		{"out: read-only", ro, 1, true, 0, unix.EFAULT},
		{"in: read-only", ro, 10, false, 10, nil},
		{"in: PROT_NONE", none, 1, false, 0, unix.EFAULT},
		{"in: unmapped", 0x900000, 1, false, 0, unix.EFAULT},
		{"in: at TaskSize", TaskSize, 1, false, 0, unix.EFAULT},
		{"in: crossing TaskSize", TaskSize - 1, 2, false, 0, unix.EFAULT},
		{"in: kernel half", kernelHalf, 1, false, 0, unix.EFAULT},
		{"in: wraps", ^uint64(0) - 2, 8, false, 0, unix.EFAULT},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			buf := make([]byte, tt.n)
			var n int
			var err error
			if tt.out {
				n, err = as.CopyOutPartial(tt.va, buf)
				assert.ErrorIs(t, as.CopyOut(tt.va, buf), tt.wantErr)
			} else {
				n, err = as.CopyInPartial(tt.va, buf)
				assert.ErrorIs(t, as.CopyIn(tt.va, buf), tt.wantErr)
			}
			assert.Equal(t, tt.wantN, n)
			if tt.wantErr == nil {
				assert.NoError(t, err)
			} else {
				assert.ErrorIs(t, err, tt.wantErr)
			}
		})
	}
	checkInvariants(t, 0, as)
}

func TestCopyOutBreaksCOW(t *testing.T) {
	as := newTestAS(t, 64)
	file := &memFile{name: "/f", data: pattern(PageSize, 3)}
	addr := mustMmap(t, as, 0, PageSize, rw, MapPrivate, file, 0)
	buf := make([]byte, 8)
	require.NoError(t, as.CopyIn(addr, buf))
	e, _ := as.pt.Lookup(addr)
	assert.Zero(t, e&Copied)
	require.NoError(t, as.CopyOut(addr+1, []byte{0xff}))
	e, _ = as.pt.Lookup(addr)
	assert.True(t, e.Has(Copied|Writable))
	assert.Equal(t, pattern(PageSize, 3)[0], as.frames.Bytes(e.Addr())[0])
	assert.Equal(t, byte(0xff), as.frames.Bytes(e.Addr())[1])
	assert.Equal(t, pattern(PageSize, 3), file.data, "the file is untouched")
}

func TestWriteForce(t *testing.T) {
	as := newTestAS(t, 64)
	file := &memFile{name: "/prog", data: pattern(2*PageSize, 1)}
	text := mustMmap(t, as, 0x400000, 2*PageSize, ProtRead|ProtExec, MapPrivate|MapFixed, file, 0)
	none := mustMmap(t, as, 0x500000, PageSize, ProtNone, anonPriv|MapFixed, nil, 0)

	require.NoError(t, as.WriteForce(text+PageSize-2, []byte{9, 9, 9, 9}))
	for _, va := range []uint64{text, text + PageSize} {
		e, ok := as.pt.Lookup(va)
		require.True(t, ok)
		assert.True(t, e.Has(Copied), "forced write makes a private copy")
		assert.Zero(t, e&Writable, "protection unchanged")
		assert.Zero(t, e&NX)
	}
	buf := make([]byte, 6)
	require.NoError(t, as.CopyIn(text+PageSize-3, buf))
	want := []byte{file.data[PageSize-3], 9, 9, 9, 9, file.data[PageSize+2]}
	assert.Equal(t, want, buf)

	require.NoError(t, as.WriteForce(none, []byte("secret")))
	assert.ErrorIs(t, as.CopyIn(none, buf), unix.EFAULT, "still PROT_NONE for the guest")
	require.NoError(t, as.Mprotect(none, PageSize, ProtRead))
	s, err := as.ReadString(none, 16)
	require.NoError(t, err)
	assert.Equal(t, "secret", s)

	assert.ErrorIs(t, as.WriteForce(0x600000, []byte{1}), unix.EFAULT, "unmapped")
	checkInvariants(t, 0, as)
}

func TestReadString(t *testing.T) {
	as := newTestAS(t, 64)
	base := mustMmap(t, as, 0x100000, 2*PageSize, rw, anonPriv|MapFixed, nil, 0)
	// A string crossing into the second page, then the end of the mapping.
	long := strings.Repeat("a", 300)
	start := base + PageSize - 100
	require.NoError(t, as.CopyOut(start, append([]byte(long), 0)))
	require.NoError(t, as.CopyOut(base+2*PageSize-3, []byte("xyz")))

	tests := []struct {
		name string
		va   uint64
		max  int
		want string
		err  error
	}{
		{"crossing pages", start, 4096, long, nil},
		{"exactly fits with NUL", start, 301, long, nil},
		{"one short", start, 300, "", unix.ENAMETOOLONG},
		{"empty string", base, 10, "", nil},
		{"zero max", base, 0, "", unix.ENAMETOOLONG},
		{"runs off the mapping", base + 2*PageSize - 3, 100, "", unix.EFAULT},
		{"limit hits before the hole", base + 2*PageSize - 3, 3, "", unix.ENAMETOOLONG},
		{"unmapped", 0x900000, 10, "", unix.EFAULT},
		{"kernel address", kernelHalf, 10, "", unix.EFAULT},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := as.ReadString(tt.va, tt.max)
			if tt.err != nil {
				assert.ErrorIs(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}
