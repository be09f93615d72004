package image

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		recLens []int
		runs    []int // pages per Pages call
	}{
		{"empty", nil, nil},
		{"records only", []int{0, 1, 7, 8, 9, 4096, 100000}, nil},
		{"pages only", nil, []int{1}},
		{"one chunk exactly", []int{3}, []int{ChunkPages}},
		{"chunk plus one", []int{3}, []int{ChunkPages, 1}},
		{"unaligned runs", []int{5, 6}, []int{3, 300, 1, 1, 17, 250}},
		{"page by page", []int{1}, nil}, // 600 calls of one page, filled in below
		{"zero-length runs", []int{2}, []int{0, 2, 0, 1}},
	}
	for i := range tests {
		if tests[i].name == "page by page" {
			tests[i].runs = make([]int, 600)
			for j := range tests[i].runs {
				tests[i].runs[j] = 1
			}
		}
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := randContent(uint64(i), tc.recLens, tc.runs)
			b := build(t, c)
			for _, lazy := range []bool{false, true} {
				var opts []Option
				if lazy {
					opts = append(opts, LazyPages())
				}
				img, err := Parse(b, opts...)
				require.NoError(t, err)
				check(t, img, c)
				require.NoError(t, img.Close())

				path := buildFile(t, t.TempDir(), "image.ckpt", c)
				fileBytes, err := os.ReadFile(path)
				require.NoError(t, err)
				require.Equal(t, b, fileBytes, "Create and NewWriter write the same bytes")
				img, err = Open(path, opts...)
				require.NoError(t, err)
				check(t, img, c)
				require.NoError(t, img.Close())
				require.NoError(t, img.Close(), "Close twice")
			}
		})
	}
}

// TestReadPages reads ranges that start and end inside chunks, across
// chunk boundaries and whole chunks, into the caller's memory.
func TestReadPages(t *testing.T) {
	c := randContent(1, []int{8}, []int{ChunkPages, ChunkPages, 5})
	all := c.allPages()
	b := build(t, c)
	path := writeFile(t, t.TempDir(), "img", b)
	for _, open := range []struct {
		name string
		open func() (*Image, error)
	}{
		{"Parse", func() (*Image, error) { return Parse(b, LazyPages()) }},
		{"Open", func() (*Image, error) { return Open(path, LazyPages()) }},
	} {
		img, err := open.open()
		require.NoError(t, err)
		for _, r := range []struct{ first, n uint64 }{
			{0, 1}, {0, ChunkPages}, {3, 2}, {ChunkPages - 1, 2}, {ChunkPages, ChunkPages},
			{1, 2*ChunkPages + 3}, {0, 2*ChunkPages + 5}, {2 * ChunkPages, 5}, {2*ChunkPages + 4, 1}, {7, 0},
		} {
			dst := make([]byte, r.n*PageSize)
			require.NoError(t, img.ReadPages(dst, r.first), "%s %+v", open.name, r)
			require.Equal(t, all[r.first*PageSize:(r.first+r.n)*PageSize], dst, "%s %+v", open.name, r)
		}
		require.ErrorContains(t, img.ReadPages(make([]byte, 100), 0), "not a multiple of the page size")
		requireKind(t, img.ReadPages(make([]byte, 6*PageSize), 2*ChunkPages), ErrCorrupt)
		require.NoError(t, img.Close())
		require.ErrorContains(t, img.ReadPages(make([]byte, PageSize), 0), "closed")
	}
}

// TestImageChangedWhileOpen: an image file that is overwritten or
// truncated while it is open (a restore reads it) gives an error from
// every read of the changed pages, never a fault and never the new bytes;
// pages copied out before stay as they were.
func TestImageChangedWhileOpen(t *testing.T) {
	dir := t.TempDir()
	c := randContent(4, []int{8}, []int{ChunkPages + 1})
	other := build(t, randContent(5, []int{8}, []int{ChunkPages + 1}))
	tests := []struct {
		name   string
		change func(path string)
		msg    string
	}{
		{"overwritten in place by another image", func(path string) {
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			require.NoError(t, err)
			_, err = f.WriteAt(other, 0)
			require.NoError(t, err)
			require.NoError(t, f.Close())
		}, "checksum mismatch"},
		{"truncated", func(path string) { require.NoError(t, os.Truncate(path, PageSize+10)) }, "the file became shorter"},
		{"truncated to nothing", func(path string) { require.NoError(t, os.Truncate(path, 0)) }, "the file became shorter"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := buildFile(t, dir, "img", c)
			img, err := Open(path, LazyPages())
			require.NoError(t, err)
			defer img.Close()
			before, err := img.Page(0)
			require.NoError(t, err)
			tt.change(path)
			for _, err := range []error{img.VerifyPages(), img.ReadPages(make([]byte, PageSize), 0), img.ReadPages(make([]byte, PageSize), ChunkPages)} {
				requireKind(t, err, ErrCorrupt)
				require.ErrorContains(t, err, tt.msg)
			}
			require.Equal(t, c.pages[0][:PageSize], before, "a copy made before the change is unchanged")
		})
	}
}

func TestPageRangeErrors(t *testing.T) {
	img, err := Parse(build(t, randContent(1, nil, []int{3})))
	require.NoError(t, err)
	for _, r := range [][2]uint64{{3, 1}, {0, 4}, {2, 2}, {1 << 63, 1 << 63}, {^uint64(0), 1}} {
		_, err := img.PageRange(r[0], r[1])
		requireKind(t, err, ErrCorrupt, "range %v", r)
	}
	p, err := img.PageRange(3, 0)
	require.NoError(t, err)
	require.Empty(t, p)
	require.NoError(t, img.Close())
	_, err = img.Page(0)
	require.ErrorContains(t, err, "closed")
	require.ErrorContains(t, img.VerifyPages(), "closed")
}

func TestLazyPages(t *testing.T) {
	c := randContent(2, []int{1}, []int{ChunkPages, ChunkPages, 10})
	b := build(t, c)
	bad := 1 + PageSize + (ChunkPages+5)*PageSize // in chunk 1
	b[bad] ^= 0x10

	_, err := Parse(b)
	requireKind(t, err, ErrCorrupt)
	require.ErrorContains(t, err, "page data checksum mismatch in pages 256-511")

	for _, open := range []func() (*Image, error){
		func() (*Image, error) { return Parse(b, LazyPages()) },
		func() (*Image, error) { return Open(writeFile(t, t.TempDir(), "lazy", b), LazyPages()) },
	} {
		img, err := open()
		require.NoError(t, err, "lazy open does not read pages")
		p, err := img.Page(0)
		require.NoError(t, err)
		require.Equal(t, c.pages[0][:PageSize], p)
		_, err = img.Page(2 * ChunkPages)
		require.NoError(t, err)
		_, err = img.Page(ChunkPages + 100) // a good page in the bad chunk
		requireKind(t, err, ErrCorrupt)
		_, err = img.PageRange(0, 2*ChunkPages+1)
		requireKind(t, err, ErrCorrupt)
		requireKind(t, img.VerifyPages(), ErrCorrupt)
		requireKind(t, img.VerifyPages(), ErrCorrupt, "the result is remembered")
		require.NoError(t, img.Close())
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	_, err := Open(dir + "/missing")
	require.ErrorIs(t, err, os.ErrNotExist)
	_, err = Open(dir)
	requireKind(t, err, ErrNotImage)
	require.ErrorContains(t, err, "not an emuckpt image: a directory, not a regular file")
	_, err = Open("/dev/null")
	requireKind(t, err, ErrNotImage)
	require.ErrorContains(t, err, "a character device, not a regular file")
	_, err = Open("/dev/zero")
	requireKind(t, err, ErrNotImage)
	fifo := filepath.Join(dir, "fifo")
	require.NoError(t, unix.Mkfifo(fifo, 0o600))
	_, err = Open(fifo) // must not block: there is no writer
	requireKind(t, err, ErrNotImage)
	require.ErrorContains(t, err, "a FIFO, not a regular file")
}

func TestWriterErrors(t *testing.T) {
	var buf Buffer
	w := NewWriter(&buf)
	for _, typ := range []uint32{0, ReservedTypes, TypePageSums, TypeEnd} {
		require.ErrorContains(t, w.Record(typ, nil), "reserved", "type %#x", typ)
	}
	_, err := w.Pages(make([]byte, 100))
	require.ErrorContains(t, err, "not a multiple of the 4096-byte page size")
	// Bad arguments do not break the writer.
	require.NoError(t, w.Record(ReservedTypes-1, []byte("x")))
	require.NoError(t, w.Commit())
	require.ErrorContains(t, w.Record(1, nil), "already committed")
	_, err = w.Pages(nil)
	require.ErrorContains(t, err, "already committed")
	require.ErrorContains(t, w.Commit(), "already committed")
	w.Abort() // no effect after Commit
	img, err := Parse(buf.Bytes())
	require.NoError(t, err)
	require.Equal(t, []Record{{ReservedTypes - 1, []byte("x")}}, img.Records())
}

// failWriterAt fails every write from the n-th on.
type failWriterAt struct {
	Buffer
	n int
}

func (f *failWriterAt) WriteAt(p []byte, off int64) (int, error) {
	if f.n--; f.n < 0 {
		return 0, unix.ENOSPC
	}
	return f.Buffer.WriteAt(p, off)
}

func TestWriterIOErrorIsSticky(t *testing.T) {
	for n := range 3 {
		out := &failWriterAt{n: n}
		w := NewWriter(out)
		_, err := w.Pages(make([]byte, 16*PageSize)) // large: written at once
		if n == 0 {
			require.ErrorIs(t, err, unix.ENOSPC)
			require.ErrorContains(t, err, "writing page data")
			require.ErrorIs(t, w.Record(1, nil), unix.ENOSPC, "sticky")
		} else {
			require.NoError(t, err)
		}
		err = w.Commit()
		require.ErrorIs(t, err, unix.ENOSPC, "fail after %d writes", n)
	}
}

func TestBuffer(t *testing.T) {
	var b Buffer
	_, err := b.WriteAt([]byte("xy"), 5)
	require.NoError(t, err)
	_, err = b.WriteAt([]byte("ab"), 1)
	require.NoError(t, err)
	require.Equal(t, []byte("\x00ab\x00\x00xy"), b.Bytes())
	_, err = b.WriteAt([]byte("z"), -1)
	require.Error(t, err)
}

func TestErrorMessages(t *testing.T) {
	b := build(t, randContent(4, []int{100}, []int{2}))
	dir := t.TempDir()
	tests := []struct {
		name string
		data []byte
		kind error
		msg  string
	}{
		{"metadata cut", b[:len(b)-8], ErrTruncated,
			fmt.Sprintf("img: truncated: header says %d bytes of metadata at offset %d but the file has %d bytes; the file was cut short", len(b)-3*PageSize, 3*PageSize, len(b)-8)},
		{"pages cut", b[:2*PageSize], ErrTruncated,
			fmt.Sprintf("img: truncated: header says 2 pages (8 KiB) at offset 4096 but the file has %d bytes", 2*PageSize)},
		{"empty", nil, ErrTruncated, "img: truncated: the file is empty"},
		{"metadata flip", flip(b, len(b)-20), ErrCorrupt, "img: metadata checksum mismatch"},
		{"page flip", flip(b, PageSize+1), ErrCorrupt, "img: page data checksum mismatch in pages 0-1 (file offsets 4096-12287, chunk 0 of 1) (file corrupted?); the image is damaged"},
		{"header flip", flip(b, offNumPages), ErrCorrupt, "img: header checksum mismatch"},
		{"elf", []byte("\x7fELF\x02\x01\x01\x00\x00\x00"), ErrNotImage, `img: not an emuckpt image: it starts with "\x7fELF\x02\x01\x01\x00", not "EMUCKPT\x00"; pass an image written by 'emuckpt run --checkpoint-to FILE'`},
		{"text", []byte("hello"), ErrNotImage, "img: not an emuckpt image: the file has only 5 bytes (hello)"},
		{"magic flip", flip(b, 3), ErrCorrupt, "img: damaged magic number"},
		{"prefix", []byte("EMUCK"), ErrTruncated, "img: truncated: the file has only 5 bytes"},
		{"appended", append(bytes.Clone(b), 0), ErrCorrupt, fmt.Sprintf("img: 1 unexpected bytes after the end of the image at offset %d", len(b))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(writeFile(t, dir, "img", tc.data))
			requireKind(t, err, tc.kind)
			require.Contains(t, err.Error(), tc.msg)
			_, err = Parse(tc.data)
			requireKind(t, err, tc.kind)
			require.Contains(t, err.Error(), memName+": "+tc.msg[len("img: "):])
		})
	}
}

func flip(b []byte, i int) []byte {
	b = bytes.Clone(b)
	b[i] ^= 1
	return b
}

// TestWritePaths writes the same content through every path page data can
// take (staged, direct I/O from the caller's memory, buffered because the
// caller's memory is not page aligned, buffered because direct I/O is
// off) and checks the files are identical.
func TestWritePaths(t *testing.T) {
	dir := t.TempDir()
	c := randContent(5, []int{16}, []int{1, 2, 300, 3, 512, 1})
	// Re-home the runs: the 300-page one page aligned, the 512-page one
	// misaligned by 8 bytes.
	aligned := alignedBuffer(300 * PageSize)
	copy(aligned, c.pages[2])
	c.pages[2] = aligned
	mis := alignedBuffer(512*PageSize + PageSize)[8 : 8+512*PageSize]
	copy(mis, c.pages[4])
	c.pages[4] = mis
	want := build(t, c)

	w, err := Create(dir+"/probe", DirectIO())
	require.NoError(t, err)
	direct := w.direct != nil
	w.Abort()
	t.Logf("direct I/O in %s: %v", dir, direct)

	for _, opts := range [][]Option{{DirectIO()}, nil} {
		path := buildFile(t, dir, fmt.Sprintf("img-%d", len(opts)), c, opts...)
		got, err := os.ReadFile(path)
		require.NoError(t, err)
		require.True(t, bytes.Equal(want, got), "options %d", len(opts))
		img, err := Open(path)
		require.NoError(t, err)
		check(t, img, c)
		img.Close()
	}
}

// TestNewWriterFile: NewWriter on a file the caller manages.
func TestNewWriterFile(t *testing.T) {
	c := randContent(6, []int{4}, []int{1, 1, 40})
	f, err := os.Create(t.TempDir() + "/own")
	require.NoError(t, err)
	defer f.Close()
	w := NewWriter(f)
	write(t, w, c)
	require.NoError(t, w.Commit())
	img, err := Open(f.Name())
	require.NoError(t, err)
	check(t, img, c)
	img.Close()
}
