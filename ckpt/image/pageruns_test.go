package image

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestPageRuns writes the same content with Pages and with PageRuns (in
// one call, and mixed with Pages), into memory and into files with and
// without direct I/O, with pieces small enough that runs are split across
// vectored writes, and checks that the images are identical.
func TestPageRuns(t *testing.T) {
	defer func(p int) { pieceDirect = p }(pieceDirect)
	pieceDirect = 3 * PageSize
	for _, misaligned := range []bool{false, true} {
		t.Run(fmt.Sprintf("misaligned=%v", misaligned), func(t *testing.T) { testPageRuns(t, misaligned) })
	}
}

func testPageRuns(t *testing.T, misaligned bool) {
	c := randContent(11, []int{24}, []int{1, 2, 7, 1, 3, 5, 1})
	// Runs in page-aligned memory, as guest RAM is (direct I/O takes
	// them), or one that is not (all go through Pages then).
	for i := range c.pages {
		a := alignedBuffer(len(c.pages[i]) + PageSize)
		if misaligned && i == len(c.pages)-1 {
			a = a[8:]
		}
		a = a[:len(c.pages[i])]
		copy(a, c.pages[i])
		c.pages[i] = a
	}
	want := build(t, c)

	writeRuns := func(t *testing.T, w *Writer, split int) {
		require.NoError(t, w.Record(c.records[0].Type, c.records[0].Payload))
		var next uint64
		for _, p := range c.pages[:split] {
			first, err := w.Pages(p)
			require.NoError(t, err)
			require.Equal(t, next, first)
			next += uint64(len(p) / PageSize)
		}
		first, err := w.PageRuns(c.pages[split:])
		require.NoError(t, err)
		require.Equal(t, next, first)
		require.Equal(t, uint64(len(c.allPages())/PageSize), w.NumPages())
		require.NoError(t, w.Commit())
	}
	dir := t.TempDir()
	for _, split := range []int{0, 2} {
		t.Run(fmt.Sprintf("buffer/after%d", split), func(t *testing.T) {
			var buf Buffer
			writeRuns(t, NewWriter(&buf), split)
			require.True(t, bytes.Equal(want, buf.Bytes()))
		})
		for _, opts := range [][]Option{{DirectIO()}, nil} {
			t.Run(fmt.Sprintf("create%d/after%d", len(opts), split), func(t *testing.T) {
				path := filepath.Join(dir, fmt.Sprintf("img-%d-%d", len(opts), split))
				w, err := Create(path, opts...)
				require.NoError(t, err)
				defer w.Abort()
				writeRuns(t, w, split)
				got, err := os.ReadFile(path)
				require.NoError(t, err)
				require.True(t, bytes.Equal(want, got))
				img, err := Open(path)
				require.NoError(t, err)
				defer img.Close()
				check(t, img, c)
			})
		}
	}
}

func TestPageRunsErrors(t *testing.T) {
	var buf Buffer
	w := NewWriter(&buf)
	_, err := w.PageRuns([][]byte{make([]byte, PageSize), make([]byte, 100)})
	require.ErrorContains(t, err, "not a multiple of the 4096-byte page size")
	require.Zero(t, w.NumPages(), "nothing added after a bad argument")
	first, err := w.PageRuns(nil)
	require.NoError(t, err)
	require.Zero(t, first)
	require.NoError(t, w.Commit())
	_, err = w.PageRuns([][]byte{make([]byte, PageSize)})
	require.ErrorContains(t, err, "already committed")
}

func TestVectorPieces(t *testing.T) {
	p := func(n int) []byte { return make([]byte, n) }
	type piece struct {
		lens []int
		off  int64
	}
	for _, tc := range []struct {
		name string
		runs []int
		max  int
		want []piece
	}{
		{"none", nil, 10, nil},
		{"one fits", []int{4}, 10, []piece{{[]int{4}, 100}}},
		{"gathered", []int{4, 6, 3}, 10, []piece{{[]int{4, 6}, 100}, {[]int{3}, 110}}},
		{"split run", []int{25}, 10, []piece{{[]int{10}, 100}, {[]int{10}, 110}, {[]int{5}, 120}}},
		{"run across pieces", []int{7, 7}, 10, []piece{{[]int{7, 3}, 100}, {[]int{4}, 110}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var runs [][]byte
			for _, n := range tc.runs {
				runs = append(runs, p(n))
			}
			var got []piece
			for _, vp := range vectorPieces(runs, 100, tc.max) {
				var lens []int
				for _, b := range vp.iovs {
					lens = append(lens, len(b))
				}
				got = append(got, piece{lens, vp.off})
			}
			require.Equal(t, tc.want, got)
		})
	}
	t.Run("iovec limit", func(t *testing.T) {
		runs := make([][]byte, 1500)
		for i := range runs {
			runs[i] = p(1)
		}
		got := vectorPieces(runs, 0, 1<<20)
		require.Len(t, got, 2)
		require.Len(t, got[0].iovs, 1024)
		require.Len(t, got[1].iovs, 476)
		require.Equal(t, int64(1024), got[1].off)
	})
}

// TestReplaceOpenImage: an image written over one that a reader still has
// open leaves that reader its image, and the path the new one.
func TestReplaceOpenImage(t *testing.T) {
	dir := t.TempDir()
	a, b := randContent(1, []int{3}, []int{2}), randContent(2, []int{5}, []int{3})
	path := buildFile(t, dir, "img", a, DirectIO())
	old, err := Open(path)
	require.NoError(t, err)
	defer old.Close()
	buildFile(t, dir, "img", b, DirectIO())
	check(t, old, a)
	img, err := Open(path)
	require.NoError(t, err)
	defer img.Close()
	check(t, img, b)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "no temporary file left")
}

// TestClone: a clone reads the same image through its own descriptor,
// after the original is closed and the path is replaced by another image.
func TestClone(t *testing.T) {
	dir := t.TempDir()
	a, b := randContent(3, []int{7}, []int{300}), randContent(4, []int{2}, []int{1})
	path := buildFile(t, dir, "img", a)
	for _, lazy := range []bool{false, true} {
		var opts []Option
		if lazy {
			opts = append(opts, LazyPages())
		}
		img, err := Open(path, opts...)
		require.NoError(t, err)
		c, err := img.Clone()
		require.NoError(t, err)
		require.NoError(t, img.Close())
		_, err = img.Page(0)
		require.ErrorContains(t, err, "closed")
		check(t, c, a)
		require.NoError(t, c.Close())
		_, err = img.Clone()
		require.ErrorContains(t, err, "closed", "a closed image has no clone")
	}
	img, err := Open(path)
	require.NoError(t, err)
	c, err := img.Clone()
	require.NoError(t, err)
	defer c.Close()
	img.Close()
	buildFile(t, dir, "img", b)
	check(t, c, a)

	mem, err := Parse(build(t, b))
	require.NoError(t, err)
	mc, err := mem.Clone()
	require.NoError(t, err)
	mem.Close()
	check(t, mc, b)
}
