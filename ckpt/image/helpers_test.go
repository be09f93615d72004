package image

import (
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// content is what a test puts into an image.
type content struct {
	records []Record
	// pages are added with one Pages call per element; each element is
	// a multiple of PageSize long.
	pages [][]byte
}

// allPages returns the page data in image order.
func (c content) allPages() []byte {
	var all []byte
	for _, p := range c.pages {
		all = append(all, p...)
	}
	return all
}

// randContent makes records of the given payload lengths and page runs of
// the given page counts, with pseudo-random bytes.
func randContent(seed uint64, recLens []int, runs []int) content {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	fill := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	var c content
	for i, n := range recLens {
		c.records = append(c.records, Record{Type: uint32(i%5 + 1), Payload: fill(n)})
	}
	for _, n := range runs {
		c.pages = append(c.pages, fill(n*PageSize))
	}
	return c
}

// small is the image used by the exhaustive bit-flip and truncation tests:
// a few records of awkward lengths and two pages.
func small() content { return randContent(7, []int{0, 1, 13, 8}, []int{1, 1}) }

// write adds c to w, records and pages interleaved, and checks the page
// indexes Pages returns.
func write(t testing.TB, w *Writer, c content) {
	t.Helper()
	var next uint64
	for i := range max(len(c.records), len(c.pages)) {
		if i < len(c.records) {
			require.NoError(t, w.Record(c.records[i].Type, c.records[i].Payload))
		}
		if i < len(c.pages) {
			first, err := w.Pages(c.pages[i])
			require.NoError(t, err)
			require.Equal(t, next, first)
			next += uint64(len(c.pages[i]) / PageSize)
		}
	}
	require.Equal(t, next, w.NumPages())
}

// build returns c as an in-memory image.
func build(t testing.TB, c content) []byte {
	t.Helper()
	var buf Buffer
	w := NewWriter(&buf)
	write(t, w, c)
	require.NoError(t, w.Commit())
	return buf.Bytes()
}

// buildFile writes c to dir/name with Create and returns the path.
func buildFile(t testing.TB, dir, name string, c content, opts ...Option) string {
	t.Helper()
	path := filepath.Join(dir, name)
	w, err := Create(path, opts...)
	require.NoError(t, err)
	defer w.Abort()
	write(t, w, c)
	require.NoError(t, w.Commit())
	return path
}

// check verifies that img holds exactly c.
func check(t testing.TB, img *Image, c content) {
	t.Helper()
	require.Equal(t, uint32(Version), img.Version())
	want := c.records
	if want == nil {
		want = []Record(nil)
	}
	require.Equal(t, len(want), len(img.Records()))
	for i, r := range img.Records() {
		require.Equal(t, want[i].Type, r.Type, "record %d", i)
		require.Equal(t, len(want[i].Payload), len(r.Payload), "record %d", i)
		if len(r.Payload) > 0 {
			require.Equal(t, want[i].Payload, r.Payload, "record %d", i)
		}
	}
	all := c.allPages()
	require.Equal(t, uint64(len(all)/PageSize), img.NumPages())
	for i := range img.NumPages() {
		p, err := img.Page(i)
		require.NoError(t, err)
		require.Equal(t, all[i*PageSize:(i+1)*PageSize], p, "page %d", i)
	}
	if n := img.NumPages(); n > 0 {
		r, err := img.PageRange(0, n)
		require.NoError(t, err)
		require.Equal(t, all, r)
	}
	require.NoError(t, img.VerifyPages())
	info := img.Info()
	require.Equal(t, int64(PageSize), info.PageOffset)
	require.Equal(t, info.MetadataOffset+info.MetadataLength, info.Size)
	require.Equal(t, crc32c(all), info.PagesCRC)
}

// requireKind checks that err is an *Error of the given kind with a
// message of reasonable length.
func requireKind(t testing.TB, err error, kind error, msgAndArgs ...any) {
	t.Helper()
	require.Error(t, err, msgAndArgs...)
	var ie *Error
	require.True(t, errors.As(err, &ie), "error %q is not an *image.Error", err)
	require.ErrorIs(t, err, kind, msgAndArgs...)
	require.Less(t, len(err.Error()), 400, "message too long: %s", err)
}

// writeFile writes b to a new file in dir.
func writeFile(t testing.TB, dir, name string, b []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(path, b, 0o600))
	return path
}
