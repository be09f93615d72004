package guestmm

import (
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// pageCacheFile is a PageCache backing whose pages are frames of the
// address space's own allocator, as tmpfs files are.
type pageCacheFile struct {
	memFile
	frames *Frames
	pages  map[uint64]uint64 // offset -> frame
	size   uint64
}

// ReadAt reads the file's pages, for private mappings.
func (f *pageCacheFile) ReadAt(p []byte, off int64) (int, error) {
	if uint64(off) >= f.size {
		return 0, io.EOF
	}
	n := min(len(p), int(f.size-uint64(off)))
	clear(p[:n])
	if pa, ok := f.pages[uint64(off)&^pageMask]; ok {
		copy(p[:n], f.frames.Bytes(pa)[uint64(off)&pageMask:])
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *pageCacheFile) Frame(off uint64) (uint64, error) {
	if off >= f.size {
		return 0, unix.EFAULT
	}
	pa, ok := f.pages[off]
	if !ok {
		var err error
		if pa, err = f.frames.Alloc(); err != nil {
			return 0, err
		}
		f.pages[off] = pa
	}
	f.frames.IncRef(pa)
	return pa, nil
}

// TestSharedMappingOfPageCache: a shared mapping maps the file's own
// frames, writable at once, so two mappings and the file see one page;
// a private mapping still copies; past the end of the file is SIGBUS.
func TestSharedMappingOfPageCache(t *testing.T) {
	as := newTestAS(t, 64)
	f := &pageCacheFile{memFile: memFile{name: "/tmp/f"}, frames: as.frames, pages: map[uint64]uint64{}, size: 2 * PageSize}
	a := mustMmap(t, as, 0, 2*PageSize, ProtRead|ProtWrite, MapShared, f, 0)
	b := mustMmap(t, as, 0, PageSize, ProtRead|ProtWrite, MapShared, f, 0)
	require.NoError(t, as.CopyOut(a+5, []byte("shared")))
	got := make([]byte, 6)
	require.NoError(t, as.CopyIn(b+5, got))
	assert.Equal(t, "shared", string(got), "both mappings are the file's page")
	assert.Equal(t, "shared", string(as.frames.Bytes(f.pages[0])[5:11]), "and the file holds it")
	assert.Equal(t, 3, as.frames.RefCount(f.pages[0]), "the file's reference and one per mapping")

	e, ok := as.pt.Lookup(a)
	require.True(t, ok)
	assert.True(t, e&Writable != 0, "writable without a second fault")

	p := mustMmap(t, as, 0, PageSize, ProtRead|ProtWrite, MapPrivate, f, 0)
	mustFault(t, as, p, PFUser)
	pe, ok := as.pt.Lookup(p)
	require.True(t, ok)
	assert.NotEqual(t, f.pages[0], pe.Addr(), "a private mapping copies")
	require.NoError(t, as.CopyIn(p+5, got))
	assert.Equal(t, "shared", string(got), "what the file held")

	require.NoError(t, as.Munmap(b, PageSize))
	assert.Equal(t, 2, as.frames.RefCount(f.pages[0]), "munmap drops the mapping's reference only")

	c := mustMmap(t, as, 0, 4*PageSize, ProtRead, MapShared, f, 0)
	r := as.HandleFault(c+2*PageSize, PFUser)
	assert.False(t, r.Resolved, "past the end of the file")
	assert.Equal(t, int(unix.SIGBUS), int(r.Signal))
}
