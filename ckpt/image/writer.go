package image

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Writer writes an image. Records and pages may be added in any order and
// interleaved; page data goes to the file as it comes (the caller's slice
// may be reused as soon as Pages returns), records are kept in memory
// until Commit. A Writer is not safe for concurrent use.
//
// After any error other than a bad argument, the Writer is broken: every
// later call returns the same error, and Commit aborts.
type Writer struct {
	name string      // for messages
	out  io.WriterAt // the destination
	// For Create: the file being written (see tempfile.go), its name if
	// it has one yet, and the final path.
	f       *os.File
	tmpName string
	path    string
	// direct is the temporary file opened again with O_DIRECT, used for
	// page data when the file system supports it (see directio.go); nil
	// otherwise.
	direct *os.File

	npages uint64 // pages added so far
	meta   []byte // framed records

	// Page checksums: sums for complete chunks, crc over the fill pages
	// of the current chunk.
	sums []uint32
	crc  uint32
	fill uint64

	// Page data shorter than directMin is gathered in stage (a
	// page-aligned buffer of stageSize bytes, written at stageOff) so a
	// caller adding pages one by one does not cost a write per page.
	staging   bool
	directMin int
	stage     []byte
	stageOff  int64

	flags  uint32   // header flags (SetFlags)
	digest [32]byte // the header's SHA-256, once committed

	err  error // sticky
	done bool  // Commit or Abort was called
}

const (
	// stageSize is the size of the staging buffer.
	stageSize = 4 << 20
	// Runs of page data at least this long are written straight from the
	// caller's memory, the others are staged: with buffered I/O a write
	// costs a few µs, with direct I/O tens of µs plus the device's time.
	directMinBuffered = 64 << 10
	directMinDirect   = 1 << 20
	// Runs at least this long are checksummed on another goroutine while
	// they are written.
	parallelSumMin = 256 << 10
)

// Long runs are written in pieces of this size (see writePages).
var (
	pieceBuffered = 4 << 20
	pieceDirect   = 16 << 20
)

// Create starts writing an image that Commit will put at path, with mode
// 0600 (images hold process memory). Until then the data goes to a file
// in the same directory that has no name (O_TMPFILE), or, on file systems
// without O_TMPFILE, a temporary name (see tempfile.go). Commit renames it
// over path, so path never holds a partial image, even after a crash;
// Abort discards it. A process killed before Commit or Abort leaves
// nothing behind, except on file systems without O_TMPFILE, where it
// leaves a temporary file that a later Create or CheckDestination removes.
//
// Page data is written through the page cache, unless DirectIO is given.
// Options for readers (LazyPages) are ignored.
func Create(path string, opts ...Option) (*Writer, error) {
	o := getOptions(opts)
	if err := checkTarget(path); err != nil {
		return nil, err
	}
	dir := filepath.Dir(path)
	f, tmpName, err := createTemp(dir, filepath.Base(path))
	if err != nil {
		return nil, fmt.Errorf("%s: cannot create the image in %s: %w", path, dir, err)
	}
	w := newWriter(path, f)
	w.f, w.tmpName, w.path, w.staging = f, tmpName, path, true
	if o.direct {
		w.direct = openDirect(f)
	}
	if w.direct != nil {
		w.directMin = directMinDirect
	}
	return w, nil
}

// NewWriter starts writing an image to out, for images kept in memory
// (see Buffer) or written to a file the caller manages. out must be empty:
// the Writer writes the whole image, from offset 0 to its end, but does
// not truncate. The header is written last, by Commit, so until then out
// holds no valid image. Abort does nothing to out.
func NewWriter(out io.WriterAt) *Writer {
	w := newWriter(memName, out)
	if f, ok := out.(*os.File); ok {
		w.name, w.staging = f.Name(), true
	}
	return w
}

func newWriter(name string, out io.WriterAt) *Writer {
	return &Writer{name: name, out: out, directMin: directMinBuffered}
}

func (w *Writer) usable() error {
	if w.err != nil {
		return w.err
	}
	if w.done {
		return fmt.Errorf("%s: image writer already committed or aborted", w.name)
	}
	return nil
}

// fail makes err sticky.
func (w *Writer) fail(err error) error {
	w.err = err
	return err
}

// Record adds a record. typ must be nonzero and below ReservedTypes. The
// payload is copied. The metadata (all records with their 8-byte headers
// and padding) may not exceed MaxMetadataLen.
func (w *Writer) Record(typ uint32, payload []byte) error {
	if err := w.usable(); err != nil {
		return err
	}
	if typ == TypeInvalid || typ >= ReservedTypes {
		return fmt.Errorf("%s: record type %#x is reserved (use 1 to %#x)", w.name, typ, ReservedTypes-1)
	}
	return w.record(typ, payload)
}

func (w *Writer) record(typ uint32, payload []byte) error {
	// Keep room for the container's own records.
	reserve := uint64(recordHeaderLen+4*(len(w.sums)+1)+recordAlign) + recordHeaderLen
	if uint64(len(payload)) > MaxMetadataLen || uint64(len(w.meta))+recordHeaderLen+padLen(uint64(len(payload)))+reserve > MaxMetadataLen {
		return fmt.Errorf("%s: a %d-byte record of type %#x would make the metadata larger than %s", w.name, len(payload), typ, humanBytes(MaxMetadataLen))
	}
	w.meta = le.AppendUint32(w.meta, typ)
	w.meta = le.AppendUint32(w.meta, uint32(len(payload)))
	w.meta = append(w.meta, payload...)
	var zero [recordAlign]byte
	w.meta = append(w.meta, zero[:padLen(uint64(len(payload)))-uint64(len(payload))]...)
	return nil
}

// Pages appends page data: len(data) must be a multiple of PageSize. It
// returns the index of the first page added; the pages are numbered on
// from there, in the order they were added, across all calls. The data is
// written, or copied to a staging buffer, before Pages returns, so the
// caller may change data afterwards.
//
// Long runs (1 MiB with direct I/O, 64 KiB otherwise) are written
// straight from data, without a copy in between, and checksummed on
// another core at the same time: pass guest RAM in runs as long as
// possible. Shorter runs are gathered in a 4 MiB buffer so that adding
// scattered pages one at a time costs no write per page.
func (w *Writer) Pages(data []byte) (first uint64, err error) {
	if err := w.usable(); err != nil {
		return 0, err
	}
	if len(data)%PageSize != 0 {
		return 0, fmt.Errorf("%s: %d bytes of page data is not a multiple of the %d-byte page size", w.name, len(data), PageSize)
	}
	n := uint64(len(data) / PageSize)
	first = w.npages
	if n == 0 {
		return first, nil
	}
	if n > maxPages-first {
		return 0, fmt.Errorf("%s: too many pages", w.name)
	}
	off := int64(headerArea + first*PageSize)
	if w.staging && len(data) < w.directMin {
		if len(w.stage)+len(data) > stageSize {
			if err := w.flush(); err != nil {
				return 0, err
			}
		}
		if w.stage == nil {
			w.stage = getStage()
		}
		if len(w.stage) == 0 {
			w.stageOff = off
		}
		w.stage = append(w.stage, data...)
	} else {
		if err := w.flush(); err != nil {
			return 0, err
		}
		if err := w.writePages(data, off); err != nil {
			return 0, err
		}
	}
	w.npages += n
	return first, nil
}

// flush writes the staging buffer.
func (w *Writer) flush() error {
	if len(w.stage) == 0 {
		return nil
	}
	err := w.writePages(w.stage, w.stageOff)
	w.stage = w.stage[:0]
	return err
}

// writePages checksums and writes page data, the two at once for long
// runs. Page data reaches writePages in page order.
func (w *Writer) writePages(b []byte, off int64) error {
	if len(b) < parallelSumMin {
		w.sum(b)
		return w.writePagesAt(b, off)
	}
	// Write in pieces, each checksummed on another goroutine while it
	// is written, so the two read the same memory at about the same time
	// (once from RAM, once from the cache).
	piece := pieceBuffered
	if w.direct != nil {
		piece = pieceDirect
	}
	for len(b) > 0 {
		p := b[:min(len(b), piece)]
		var wg sync.WaitGroup
		wg.Go(func() { w.sum(p) }) // touches only the checksum fields
		err := w.writePagesAt(p, off)
		wg.Wait()
		if err != nil {
			return err
		}
		b, off = b[len(p):], off+int64(len(p))
	}
	return nil
}

func (w *Writer) writePagesAt(b []byte, off int64) error {
	if w.direct != nil && isAligned(b) {
		_, err := w.direct.WriteAt(b, off)
		if !errors.Is(err, syscall.EINVAL) {
			if err != nil {
				return w.fail(fmt.Errorf("%s: writing page data: %w", w.name, err))
			}
			return nil
		}
		// The file system refused direct I/O after all: write through
		// the page cache from now on.
		w.direct.Close()
		w.direct, w.directMin = nil, directMinBuffered
	}
	return w.writeAt(b, off, "page data")
}

// PageRuns appends the runs of page data in order, as Pages called for
// each would, and returns the index of the first page added. It is for
// page data scattered in memory (guest RAM in runs of contiguous
// frames): on a file, the runs are written with vectored writes of many
// runs at once (O_DIRECT where the file system allows it), several in
// flight together to keep the device busy, while the caller's goroutine
// checksums them. Like Pages, it returns once the data is written, so
// the caller may change it afterwards.
func (w *Writer) PageRuns(runs [][]byte) (first uint64, err error) {
	if err := w.usable(); err != nil {
		return 0, err
	}
	var n uint64
	for _, r := range runs {
		if len(r)%PageSize != 0 {
			return 0, fmt.Errorf("%s: %d bytes of page data is not a multiple of the %d-byte page size", w.name, len(r), PageSize)
		}
		n += uint64(len(r) / PageSize)
	}
	first = w.npages
	if n > maxPages-first {
		return 0, fmt.Errorf("%s: too many pages", w.name)
	}
	fd := w.vectorFD(runs)
	if fd >= 0 && w.direct != nil && len(runs) > 0 && n*PageSize/uint64(len(runs)) < scatteredRun {
		// Scattered pages (an incremental image): gathered in the
		// staging buffer, they go out in a few large writes instead
		// of as many small ones as there are runs.
		fd = -1
	}
	if fd < 0 {
		for _, r := range runs {
			if _, err := w.Pages(r); err != nil {
				return 0, err
			}
		}
		return first, nil
	}
	if err := w.flush(); err != nil {
		return 0, err
	}
	pieces := vectorPieces(runs, int64(headerArea+first*PageSize), pieceDirect)
	work := make(chan *vectorPiece)
	var wg sync.WaitGroup
	for range min(writersInFlight, len(pieces)) {
		wg.Go(func() {
			for p := range work {
				p.err = pwritevAll(fd, p.iovs, p.off)
			}
		})
	}
	// Checksums on this goroutine while the writers write: each piece is
	// handed out before it is summed, so the two read the same memory at
	// about the same time.
	for i := range pieces {
		work <- &pieces[i]
		for _, b := range pieces[i].iovs {
			w.sum(b)
		}
	}
	close(work)
	wg.Wait()
	for i := range pieces {
		if errors.Is(pieces[i].err, syscall.EINVAL) && w.direct != nil {
			// The file system refused direct I/O after all: this piece
			// and everything after go through the page cache.
			w.direct.Close()
			w.direct, w.directMin = nil, directMinBuffered
		}
		if errors.Is(pieces[i].err, syscall.EINVAL) {
			for off, j := pieces[i].off, 0; j < len(pieces[i].iovs); j++ {
				if err := w.writeAt(pieces[i].iovs[j], off, "page data"); err != nil {
					return 0, err
				}
				off += int64(len(pieces[i].iovs[j]))
			}
			continue
		}
		if pieces[i].err != nil {
			return 0, w.fail(fmt.Errorf("%s: writing page data: %w", w.name, pieces[i].err))
		}
	}
	w.npages += n
	return first, nil
}

// scatteredRun is the average run length below which PageRuns copies the
// runs into the staging buffer rather than write them from where they
// are: with direct I/O each buffer of a vectored write is a request of
// its own to the device, and a memcpy of a page costs far less.
const scatteredRun = 64 << 10

// writersInFlight is how many vectored writes PageRuns keeps in flight.
const writersInFlight = 4

// vectorFD returns the descriptor PageRuns writes runs to with pwritev,
// or -1 when they must go through Pages (an in-memory image, or buffers
// that direct I/O cannot take).
func (w *Writer) vectorFD(runs [][]byte) int {
	if !w.staging {
		return -1
	}
	if w.direct != nil {
		for _, r := range runs {
			if len(r) > 0 && !isAligned(r) {
				return -1
			}
		}
		return int(w.direct.Fd())
	}
	if f, ok := w.out.(*os.File); ok {
		return int(f.Fd())
	}
	return -1
}

// vectorPiece is one vectored write of PageRuns.
type vectorPiece struct {
	iovs [][]byte
	off  int64
	err  error
}

// vectorPieces splits runs, to be written from file offset off on, into
// vectored writes of at most max bytes (a longer run is split) and at most
// maxIovecs buffers each.
func vectorPieces(runs [][]byte, off int64, max int) []vectorPiece {
	const maxIovecs = 1024 // IOV_MAX
	var pieces []vectorPiece
	var cur vectorPiece
	size := 0
	for _, r := range runs {
		for len(r) > 0 {
			if size == max || len(cur.iovs) == maxIovecs {
				pieces = append(pieces, cur)
				cur = vectorPiece{off: off}
				size = 0
			}
			if len(cur.iovs) == 0 {
				cur.off = off
			}
			take := r[:min(len(r), max-size)]
			cur.iovs = append(cur.iovs, take)
			size += len(take)
			off += int64(len(take))
			r = r[len(take):]
		}
	}
	if len(cur.iovs) > 0 {
		pieces = append(pieces, cur)
	}
	return pieces
}

// pwritevAll writes all of iovs at off, going on after short writes.
func pwritevAll(fd int, iovs [][]byte, off int64) error {
	for len(iovs) > 0 {
		n, err := unix.Pwritev(fd, iovs, off)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrShortWrite
		}
		off += int64(n)
		for n > 0 {
			if n >= len(iovs[0]) {
				n -= len(iovs[0])
				iovs = iovs[1:]
			} else {
				iovs = append([][]byte{iovs[0][n:]}, iovs[1:]...)
				n = 0
			}
		}
	}
	return nil
}

// SetFlags sets the header's format feature flags (FlagParent): only
// flags this version knows.
func (w *Writer) SetFlags(flags uint32) error {
	if flags&^flagsKnown != 0 {
		return fmt.Errorf("%s: unknown format flags %#x", w.name, flags&^flagsKnown)
	}
	w.flags = flags
	return nil
}

// HeaderDigest returns the SHA-256 of the header Commit wrote (see
// Image.HeaderDigest); zero before Commit.
func (w *Writer) HeaderDigest() [32]byte { return w.digest }

// NumPages returns the number of pages added so far.
func (w *Writer) NumPages() uint64 { return w.npages }

// sum feeds data to the page checksums.
func (w *Writer) sum(data []byte) {
	const chunkBytes = ChunkPages * PageSize
	for len(data) > 0 {
		take := min(len(data), int(chunkBytes-w.fill*PageSize))
		w.crc = crc32Update(w.crc, data[:take])
		w.fill += uint64(take / PageSize)
		data = data[take:]
		if w.fill == ChunkPages {
			w.sums = append(w.sums, w.crc)
			w.crc, w.fill = 0, 0
		}
	}
}

func (w *Writer) writeAt(b []byte, off int64, what string) error {
	if _, err := w.out.WriteAt(b, off); err != nil {
		return w.fail(fmt.Errorf("%s: writing %s: %w", w.name, what, err))
	}
	return nil
}

// Commit completes the image: it writes the metadata and the header with
// their checksums and, for Create, syncs the file to disk and renames it
// over the final path (then syncs the directory). If Commit fails the
// image is aborted: the temporary file is removed and the final path is
// untouched. (The one exception is a failure to sync the directory after
// the rename: the image is then in place, and the error says so.)
func (w *Writer) Commit() error {
	if w.done && w.err == nil {
		return w.usable()
	}
	if err := w.commit(); err != nil {
		w.err = err
		w.Abort()
		return err
	}
	w.done = true
	putStage(w.stage)
	w.stage = nil
	return nil
}

// spareStage keeps one staging buffer between writers, for good (a
// sync.Pool would lose it at the next garbage collection): a fresh one
// costs a host page fault per 4 KiB on first use (about 3 ms for the
// 2.6 MiB of a small incremental image here), a reused one nothing.
var spareStage struct {
	mu sync.Mutex
	b  []byte
}

func getStage() []byte {
	spareStage.mu.Lock()
	b := spareStage.b
	spareStage.b = nil
	spareStage.mu.Unlock()
	if b == nil {
		b = alignedBuffer(stageSize)
	}
	return b[:0]
}

func putStage(b []byte) {
	if cap(b) != stageSize {
		return
	}
	spareStage.mu.Lock()
	if spareStage.b == nil {
		spareStage.b = b[:0]
	}
	spareStage.mu.Unlock()
}

func (w *Writer) commit() error {
	if w.err != nil {
		return w.err
	}
	if err := w.flush(); err != nil {
		return err
	}
	sums := w.sums
	if w.fill > 0 {
		sums = append(slices.Clip(sums), w.crc)
	}
	table := make([]byte, 0, 4*len(sums))
	for _, s := range sums {
		table = le.AppendUint32(table, s)
	}
	if err := w.record(TypePageSums, table); err != nil {
		return err
	}
	if err := w.record(TypeEnd, nil); err != nil {
		return err
	}
	lastBytes := uint64(ChunkPages * PageSize)
	if w.fill > 0 {
		lastBytes = w.fill * PageSize
	}
	h := header{
		flags:      w.flags,
		version:    Version,
		headerLen:  headerLen,
		pageSize:   PageSize,
		chunkPages: ChunkPages,
		pageOff:    headerArea,
		numPages:   w.npages,
		metaOff:    headerArea + w.npages*PageSize,
		metaLen:    uint64(len(w.meta)),
		metaCRC:    crc32c(w.meta),
		pagesCRC:   pagesCRC(sums, ChunkPages*PageSize, lastBytes),
	}
	if err := w.writeAt(w.meta, int64(h.metaOff), "metadata"); err != nil {
		return err
	}
	hb := make([]byte, headerArea)
	h.encode(hb)
	w.digest = h.digest
	if err := w.writeAt(hb, 0, "header"); err != nil {
		return err
	}
	if w.f == nil {
		return nil
	}
	w.closeDirect()
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("%s: syncing image to disk: %w", w.path, err)
	}
	if err := w.putInPlace(); err != nil {
		return err
	}
	// The image is in place; make the rename durable too. Some file
	// systems cannot sync a directory (EINVAL): nothing to do then.
	if err := syncDir(filepath.Dir(w.path)); err != nil && !errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("%s: image written, but syncing its directory failed: %w", w.path, err)
	}
	return nil
}

// putInPlace gives the complete, synced file its final name: a temporary
// name first if it has none (linkat cannot replace a file), then a rename
// over the final path. On failure it leaves nothing at the temporary name
// and the final path untouched.
func (w *Writer) putInPlace() error {
	if w.tmpName == "" {
		name, err := linkTemp(w.f, filepath.Dir(w.path), filepath.Base(w.path))
		if err != nil {
			return fmt.Errorf("%s: naming the image file: %w", w.path, err)
		}
		w.tmpName = name
	}
	err := w.f.Close()
	w.f = nil
	if err != nil {
		return fmt.Errorf("%s: closing image: %w", w.path, err)
	}
	// The image this one replaces is freed when its last reference goes.
	// On ext4 freeing 256 MiB (and discarding it, with -o discard) takes
	// 40-60 ms, in rename when rename drops the last link: hold one more
	// reference across the rename, and drop it on another goroutine, off
	// the time the guest is paused for.
	old, oldErr := os.OpenFile(w.path, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err := os.Rename(w.tmpName, w.path); err != nil {
		if oldErr == nil {
			old.Close()
		}
		return fmt.Errorf("%s: putting image in place: %w", w.path, err)
	}
	if oldErr == nil {
		go old.Close()
	}
	w.tmpName = ""
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Abort discards the image: for Create it closes the file being written
// and removes its temporary name if it has one; the final path is
// untouched. It may be called after Commit (it then does nothing) and
// more than once, so `defer w.Abort()` is the usual pattern.
func (w *Writer) Abort() {
	if w.done && w.f == nil && w.tmpName == "" {
		return
	}
	w.done = true
	if w.err == nil {
		w.err = fmt.Errorf("%s: image writer aborted", w.name)
	}
	w.closeDirect()
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
	if w.tmpName != "" {
		os.Remove(w.tmpName)
		w.tmpName = ""
	}
	putStage(w.stage)
	w.stage = nil
}

// Buffer is an in-memory io.WriterAt for NewWriter: it grows to hold what
// is written, like a sparse file (gaps read as zeros). Its zero value is
// empty and ready to use.
type Buffer struct{ b []byte }

// WriteAt copies p to offset off, growing the buffer as needed.
func (b *Buffer) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || uint64(off)+uint64(len(p)) > math.MaxInt {
		return 0, fmt.Errorf("image.Buffer: write of %d bytes at offset %d out of range", len(p), off)
	}
	end := int(off) + len(p)
	if end > len(b.b) {
		old := len(b.b)
		b.b = slices.Grow(b.b, end-old)[:end]
		if int(off) > old {
			clear(b.b[old:off])
		}
	}
	copy(b.b[off:], p)
	return len(p), nil
}

// Bytes returns the buffer's contents (not a copy).
func (b *Buffer) Bytes() []byte { return b.b }
