package image

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestEveryBitFlip flips each bit of a small image in turn: Parse and Open
// must refuse every one of them with ErrCorrupt (a bit flip in the magic
// number included), and Parse with LazyPages every one outside the page
// data.
func TestEveryBitFlip(t *testing.T) {
	orig := build(t, small())
	t.Logf("image of %d bytes, %d bit flips", len(orig), 8*len(orig))
	b := bytes.Clone(orig)
	path := writeFile(t, t.TempDir(), "img", orig)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	// Open is slower (a file per flip): in -short mode it checks every
	// 7th byte.
	fileStep := 1
	if testing.Short() {
		fileStep = 7
	}
	for i := range b {
		for bit := range 8 {
			b[i] ^= 1 << bit
			where := fmt.Sprintf("byte %d bit %d", i, bit)
			kind := ErrCorrupt // one bit off the magic is damage too, not another format
			_, err := Parse(b)
			requireKind(t, err, kind, where)
			_, err = Parse(b, LazyPages())
			if i >= PageSize && i < PageSize+2*PageSize {
				require.NoError(t, err, "lazy: page data is not read, %s", where)
			} else {
				requireKind(t, err, kind, where)
			}
			if i%fileStep == 0 {
				_, err = f.WriteAt(b[i:i+1], int64(i))
				require.NoError(t, err)
				_, err = Open(path)
				requireKind(t, err, kind, "Open, %s", where)
				_, err = f.WriteAt(orig[i:i+1], int64(i))
				require.NoError(t, err)
			}
			b[i] ^= 1 << bit
		}
	}
	img, err := Open(path)
	require.NoError(t, err, "the file is restored")
	img.Close()
}

// TestEveryTruncation cuts a small image at every length.
func TestEveryTruncation(t *testing.T) {
	b := build(t, small())
	path := filepath.Join(t.TempDir(), "img")
	for n := range len(b) {
		_, err := Parse(b[:n])
		// Cut inside the magic, what is left is still a prefix of it:
		// always ErrTruncated.
		requireKind(t, err, ErrTruncated, "length %d", n)
		if testing.Short() && n%7 != 0 {
			continue
		}
		require.NoError(t, os.WriteFile(path, b[:n], 0o600))
		_, err = Open(path)
		requireKind(t, err, ErrTruncated, "Open, length %d", n)
	}
}

// TestExtraBytes: an image with bytes appended is refused too.
func TestExtraBytes(t *testing.T) {
	b := build(t, small())
	for _, extra := range []int{1, 8, PageSize} {
		_, err := Parse(append(bytes.Clone(b), make([]byte, extra)...))
		requireKind(t, err, ErrCorrupt, "%d extra bytes", extra)
	}
}

func TestNotImage(t *testing.T) {
	for _, b := range [][]byte{
		[]byte("\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00"),
		[]byte("#!/bin/sh\necho hello\n"),
		[]byte("x"),
		bytes.Repeat([]byte{0}, 2*PageSize),
		[]byte("EMUCKPT\x00"[:7] + "Z"), // 3 bits off: another format
		[]byte("\x1b[31mred\x1b[0m terminal escape"),
	} {
		_, err := Parse(b)
		requireKind(t, err, ErrNotImage, "%q", b)
		require.NotContains(t, err.Error(), "\x1b", "no control characters in messages")
	}
}

// reheader changes the header of an image with edit and fixes the header
// checksum, so the change itself is what the reader sees.
func reheader(b []byte, edit func(h []byte)) []byte {
	b = bytes.Clone(b)
	edit(b[:headerArea])
	n := min(int(le.Uint32(b[offHeaderLen:])), headerArea)
	le.PutUint32(b[offHeaderCRC:], headerChecksum(b[:n]))
	return b
}

func TestVersion(t *testing.T) {
	b := build(t, small())
	tests := []struct {
		name string
		edit func(h []byte)
		kind error
		msg  string
	}{
		{"newer", func(h []byte) { le.PutUint32(h[offVersion:], 3) }, ErrVersion,
			"format version 3 is newer than this emuckpt reads (version 2); restore it with the emuckpt that wrote it, or a newer one"},
		{"newer with longer header", func(h []byte) {
			le.PutUint32(h[offVersion:], 7)
			le.PutUint32(h[offHeaderLen:], 512)
			h[300] = 0xaa
		}, ErrVersion, "format version 7 is newer"},
		{"newer with a header we cannot check", func(h []byte) {
			le.PutUint32(h[offVersion:], 4)
			le.PutUint32(h[offHeaderLen:], 1<<20)
		}, ErrVersion, "format version 4 is newer"},
		{"zero", func(h []byte) { le.PutUint32(h[offVersion:], 0) }, ErrCorrupt, "format version 0 is invalid"},
		{"unknown flags", func(h []byte) { le.PutUint32(h[offFlags:], 0x4) }, ErrVersion,
			"the image uses format features (flags 0x4) that this emuckpt (format version 2) does not know"},
		{"short header", func(h []byte) { le.PutUint32(h[offHeaderLen:], 64) }, ErrCorrupt, "header length 64, format version 2 has 128"},
		{"page size", func(h []byte) { le.PutUint32(h[offPageSize:], 65536) }, ErrCorrupt, "page size 65536"},
		{"chunk", func(h []byte) { le.PutUint32(h[offChunkPages:], 0) }, ErrCorrupt, "chunk of 0 pages"},
		{"reserved", func(h []byte) { h[100] = 1 }, ErrCorrupt, "reserved header bytes"},
		{"page offset", func(h []byte) { le.PutUint64(h[offPageOff:], 8192) }, ErrCorrupt, "page data at offset 8192"},
		{"huge page count", func(h []byte) { le.PutUint64(h[offNumPages:], 1<<62) }, ErrCorrupt, "more than a file can hold"},
		{"metadata offset", func(h []byte) { le.PutUint64(h[offMetaOff:], 1<<40) }, ErrCorrupt, "metadata at offset"},
		{"huge metadata", func(h []byte) { le.PutUint64(h[offMetaLen:], 1<<40) }, ErrCorrupt, "more than the limit of 1 GiB"},
		{"claims more metadata", func(h []byte) { le.PutUint64(h[offMetaLen:], le.Uint64(h[offMetaLen:])+8) }, ErrTruncated, "bytes of metadata at offset"},
		{"claims more pages", func(h []byte) {
			le.PutUint64(h[offNumPages:], 3)
			le.PutUint64(h[offMetaOff:], 4*PageSize)
		}, ErrTruncated, "header says 3 pages"},
		{"padding", func(h []byte) { h[headerArea-1] = 1 }, ErrCorrupt, "padding after the header"},
		{"pages checksum", func(h []byte) { h[offPagesCRC] ^= 1 }, ErrCorrupt, "page checksum table does not match"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(reheader(b, tc.edit))
			requireKind(t, err, tc.kind)
			require.Contains(t, err.Error(), tc.msg)
		})
	}
}

// remeta replaces an image's metadata with meta (records framed by the
// test) and fixes every checksum.
func remeta(b []byte, meta []byte) []byte {
	h, err := parseHeader("", b[:headerArea], int64(len(b)))
	if err != nil {
		panic(err)
	}
	out := append(bytes.Clone(b[:h.metaOff]), meta...)
	return reheader(out, func(hb []byte) {
		le.PutUint64(hb[offMetaLen:], uint64(len(meta)))
		le.PutUint32(hb[offMetaCRC:], crc32c(meta))
	})
}

func frame(typ uint32, payload []byte) []byte {
	b := le.AppendUint32(nil, typ)
	b = le.AppendUint32(b, uint32(len(payload)))
	b = append(b, payload...)
	return append(b, make([]byte, padLen(uint64(len(payload)))-uint64(len(payload)))...)
}

func TestRecordFraming(t *testing.T) {
	b := build(t, randContent(1, nil, []int{1})) // one page: a 4-byte sum table
	sums := frame(TypePageSums, le.AppendUint32(nil, crc32c(b[PageSize:2*PageSize])))
	end := frame(TypeEnd, nil)
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	_, err := Parse(remeta(b, cat(frame(5, []byte("ok")), sums, end)))
	require.NoError(t, err, "the test builds valid metadata")

	tests := []struct {
		name string
		meta []byte
		msg  string
	}{
		{"type 0", cat(frame(0, nil), sums, end), "type 0 (invalid)"},
		{"no end", cat(sums, frame(1, nil)), "no end record"},
		{"after end", cat(sums, end, frame(1, nil)), "after the end record"},
		{"end with payload", cat(sums, frame(TypeEnd, []byte("x"))), "end record at offset"},
		{"no sums", cat(frame(1, nil), end), "no page checksum table"},
		{"two sums", cat(sums, sums, end), "second page checksum table"},
		{"short sums", cat(frame(TypePageSums, nil), end), "page checksum table at offset"},
		{"unknown reserved", cat(sums, frame(ReservedTypes+7, nil), end), "type 0xffff0007, reserved for the container"},
		{"payload overruns", cat(sums, le.AppendUint32(le.AppendUint32(nil, 1), 100), end), "100 bytes of payload, but only"},
		{"bad padding", cat(sums, frame(1, []byte("abc"))[:11], []byte("Z\x00\x00\x00\x00"), end), "bad padding"},
		{"wrong sum", cat(frame(TypePageSums, []byte{1, 2, 3, 4}), end), "page checksum table does not match"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(remeta(b, tc.meta))
			requireKind(t, err, ErrCorrupt)
			require.Contains(t, err.Error(), tc.msg)
		})
	}
}

// TestAtomicCommit: the final path holds nothing, or the old image, until
// Commit; then the new one. Abort and failed commits leave no file. While
// an image is written, its file has no name (O_TMPFILE), or a temporary
// one on file systems without O_TMPFILE.
func TestAtomicCommit(t *testing.T) {
	for _, named := range []bool{false, true} {
		t.Run(fmt.Sprintf("named=%v", named), func(t *testing.T) {
			forceNamed(t, named)
			testAtomicCommit(t, named)
		})
	}
}

func testAtomicCommit(t *testing.T, named bool) {
	dir := t.TempDir()
	path := filepath.Join(dir, "image.ckpt")
	listDir := func() []string {
		ents, err := os.ReadDir(dir)
		require.NoError(t, err)
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		return names
	}

	// Abort leaves nothing behind.
	w, err := Create(path)
	require.NoError(t, err)
	if !named && w.tmpName != "" {
		t.Skipf("%s has no O_TMPFILE", dir)
	}
	write(t, w, small())
	if named {
		require.Len(t, listDir(), 1, "one temporary file")
		require.Regexp(t, fmt.Sprintf(`^\.image\.ckpt\.emuckpt-tmp\.%d\.\d+$`, os.Getpid()), listDir()[0])
	} else {
		require.Empty(t, listDir(), "the file has no name yet")
	}
	_, err = os.Stat(path)
	require.ErrorIs(t, err, os.ErrNotExist, "nothing at the final path before Commit")
	w.Abort()
	w.Abort()
	require.Empty(t, listDir())
	require.Error(t, w.Commit(), "Commit after Abort")
	require.Empty(t, listDir())

	// A first image; then a second replaces it only at Commit.
	old := small()
	buildFile(t, dir, "image.ckpt", old)
	require.Equal(t, []string{"image.ckpt"}, listDir())
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	next := randContent(9, []int{3}, []int{5})
	w, err = Create(path)
	require.NoError(t, err)
	write(t, w, next)
	img, err := Open(path)
	require.NoError(t, err, "the old image is intact while the new one is written")
	check(t, img, old)
	img.Close()
	require.NoError(t, w.Commit())
	require.Equal(t, []string{"image.ckpt"}, listDir())
	img, err = Open(path)
	require.NoError(t, err)
	check(t, img, next)
	img.Close()

	// A commit that fails (here: the final path became a directory)
	// leaves no temporary file.
	other := filepath.Join(dir, "other.ckpt")
	w, err = Create(other)
	require.NoError(t, err)
	write(t, w, small())
	require.NoError(t, os.Mkdir(other, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(other, "f"), nil, 0o600))
	err = w.Commit()
	require.ErrorContains(t, err, "putting image in place")
	require.ElementsMatch(t, []string{"image.ckpt", "other.ckpt"}, listDir())
	w.Abort()

	_, err = Create(other)
	require.ErrorContains(t, err, "is a directory")
	_, err = Create(filepath.Join(dir, "no/such/dir/img"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

// TestConcurrentReader opens the final path over and over while images are
// written and committed to it: every Open sees a complete image.
func TestConcurrentReader(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "img")
	stop := make(chan struct{})
	done := make(chan error)
	go func() {
		opens := 0
		for {
			select {
			case <-stop:
				if opens == 0 {
					done <- errors.New("the reader never opened an image")
				}
				done <- nil
				return
			default:
			}
			img, err := Open(path)
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				done <- err
				return
			}
			opens++
			img.Close()
		}
	}()
	for i := range 20 {
		buildFile(t, dir, "img", randContent(uint64(i), []int{i}, []int{i % 7, 300}))
	}
	close(stop)
	require.NoError(t, <-done)
}
