package image

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/emuckpt/emuckpt/internal/hostfile"
	"golang.org/x/sys/unix"
)

// Record is one record of an image's metadata: a type chosen by the
// caller and an opaque payload.
type Record struct {
	Type    uint32
	Payload []byte
}

// Decoder returns a Decoder over the payload whose errors name the record
// type.
func (r Record) Decoder() *Decoder {
	d := NewDecoder(r.Payload)
	d.ctx = fmt.Sprintf("record type %#x", r.Type)
	return d
}

// Info describes an image's layout, for tools that inspect images.
type Info struct {
	Version        uint32 // format version
	Flags          uint32 // format feature flags (none in version 1)
	Size           int64  // length of the image in bytes
	PageOffset     int64  // file offset of page 0, a multiple of PageSize
	NumPages       uint64 // number of pages of page data
	ChunkPages     uint32 // pages per page-checksum chunk
	MetadataOffset int64  // file offset of the metadata area
	MetadataLength int64  // length of the metadata area
	MetadataCRC    uint32 // CRC-32C of the metadata area
	PagesCRC       uint32 // CRC-32C of the page-data area
}

// Option changes how Open and Parse read an image, or how Create writes
// one. Each option says which of them it applies to; the others ignore it.
type Option func(*options)

type options struct{ lazy, direct bool }

func getOptions(opts []Option) options {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// LazyPages makes Open and Parse check the header and metadata but not the
// page data. Full verification reads every byte of page data, so it costs
// O(bytes) (about 12 ms per 256 MiB on two cores when the file is cached,
// more when it must come from disk). With LazyPages, the page data is
// verified as it is read instead: ReadPages, Page and PageRange check every
// chunk of ChunkPages pages they return, and VerifyPages checks them all
// on demand.
func LazyPages() Option { return func(o *options) { o.lazy = true } }

// DirectIO makes Create write page data with direct I/O (O_DIRECT) where
// the file system supports it (ext4, xfs, btrfs; not tmpfs), from the
// caller's memory to the device with no copy into the page cache.
//
// The trade-off, measured for 256 MiB on ext4 on a virtio disk (see
// BenchmarkWrite): through the page cache, Pages takes 50-90 ms (the
// kernel's copy into the page cache; the checksums are computed alongside
// on another core) and Commit's fsync 65-95 ms; with direct I/O, Pages
// waits for the device (85-115 ms there, longer on slower disks) and
// Commit takes 1-6 ms. Direct I/O finishes sooner in total and leaves no
// dirty page cache behind, but the time a caller spends in Pages, when the
// guest is usually paused, becomes the device's time; and an image read
// soon after it was written comes from the device instead of memory.
func DirectIO() Option { return func(o *options) { o.direct = true } }

// Image is an image opened for reading. Its methods may be called from
// several goroutines at once, except Close.
type Image struct {
	name    string
	hdr     *header
	size    int64
	records []Record
	sums    []uint32 // CRC-32C of each chunk of page data
	f       *os.File // the image file (Open); nil for Parse
	pages   []byte   // the page-data area, part of Parse's input; nil for Open
	// state[i] is the verification state of chunk i of pages (Parse only:
	// bytes in memory cannot change, a file can).
	state  []atomic.Uint32
	closed atomic.Bool
}

const (
	chunkUnverified = iota
	chunkOK
	chunkBad
)

// Open opens the image at path and verifies its header, its metadata and,
// unless LazyPages is given, its page data. The error is an *Error
// (errors.Is ErrNotImage, ErrTruncated, ErrCorrupt or ErrVersion) when the
// file is not a valid image, and an error from the operating system
// otherwise. Open refuses anything but a regular file without blocking (a
// FIFO) or reading endlessly (/dev/zero).
//
// Page data is never mapped: ReadPages, Page and PageRange read it with
// pread into the caller's memory and check the checksums of the bytes they
// copied, so what they return is exactly what was verified. A file that is
// changed or truncated while the image is open gives an error from them,
// never a fault, and bytes they returned earlier stay what they were.
func Open(path string, opts ...Option) (img *Image, err error) {
	o := getOptions(opts)
	f, fi, err := hostfile.Open(path)
	if err != nil {
		var he *hostfile.Error
		if errors.As(err, &he) {
			return nil, errNotImage(path, "%s", he.Detail)
		}
		return nil, err
	}
	var opened *Image // once set, owns f
	defer func() {
		if err != nil {
			if opened != nil {
				opened.Close()
			} else {
				f.Close()
			}
		}
	}()
	size := fi.Size()
	hb := make([]byte, min(size, headerArea))
	if _, err := f.ReadAt(hb, 0); err != nil {
		return nil, readErr(path, err)
	}
	h, err := parseHeader(path, hb, size)
	if err != nil {
		return nil, err
	}
	meta := make([]byte, h.metaLen) // bounded: ≤ MaxMetadataLen and ≤ the file's size
	if _, err := f.ReadAt(meta, int64(h.metaOff)); err != nil {
		return nil, readErr(path, err)
	}
	img = &Image{name: path, hdr: h, size: size, f: f}
	opened = img
	if err := img.parseMetadata(meta); err != nil {
		return nil, err
	}
	if !o.lazy {
		if err := img.VerifyPages(); err != nil {
			return nil, err
		}
	}
	return img, nil
}

func readErr(name string, err error) error {
	if errors.Is(err, io.EOF) { // the file shrank after Stat
		return errTruncated(name, "the file became shorter while it was read (was it changed while in use?)")
	}
	return err
}

// Parse reads an image from memory (as written to a Buffer) and verifies
// it like Open. The Image's records and pages alias b, which must not be
// modified while the Image is used; Parse itself never modifies b.
func Parse(b []byte, opts ...Option) (*Image, error) {
	o := getOptions(opts)
	h, err := parseHeader(memName, b[:min(len(b), headerArea)], int64(len(b)))
	if err != nil {
		return nil, err
	}
	img := &Image{name: memName, hdr: h, size: int64(len(b))}
	if err := img.parseMetadata(b[h.metaOff : h.metaOff+h.metaLen]); err != nil {
		return nil, err
	}
	img.pages = b[h.pageOff:h.metaOff:h.metaOff]
	if !o.lazy {
		if err := img.VerifyPages(); err != nil {
			return nil, err
		}
	}
	return img, nil
}

// parseMetadata checks the metadata checksum and splits the metadata into
// records. Payloads alias meta.
func (img *Image) parseMetadata(meta []byte) error {
	name, h := img.name, img.hdr
	if got := crc32c(meta); got != h.metaCRC {
		return errCorrupt(name, "metadata checksum mismatch: stored %#08x, computed %#08x (file corrupted?)", h.metaCRC, got)
	}
	nchunks := (h.numPages + uint64(h.chunkPages) - 1) / uint64(h.chunkPages)
	img.records = make([]Record, 0, countRecords(meta)) // bounded by len(meta)/8
	haveSums, haveEnd := false, false
	for off := uint64(0); off < uint64(len(meta)); {
		at := h.metaOff + off
		if haveEnd {
			return errCorrupt(name, "record at offset %d after the end record", at)
		}
		if uint64(len(meta))-off < recordHeaderLen {
			return errCorrupt(name, "metadata ends in the middle of a record header at offset %d", at)
		}
		typ := le.Uint32(meta[off:])
		n := uint64(le.Uint32(meta[off+4:]))
		rest := uint64(len(meta)) - off - recordHeaderLen
		if n > rest {
			return errCorrupt(name, "record type %#x at offset %d has %d bytes of payload, but only %d bytes of metadata follow", typ, at, n, rest)
		}
		payload := meta[off+recordHeaderLen : off+recordHeaderLen+n : off+recordHeaderLen+n]
		next := off + recordHeaderLen + padLen(n)
		if next > uint64(len(meta)) || !allZero(meta[off+recordHeaderLen+n:next]) {
			return errCorrupt(name, "record type %#x at offset %d: bad padding after its %d-byte payload", typ, at, n)
		}
		switch {
		case typ == TypeInvalid:
			return errCorrupt(name, "record of type 0 (invalid) at offset %d", at)
		case typ == TypePageSums:
			if haveSums {
				return errCorrupt(name, "second page checksum table at offset %d", at)
			}
			if n != nchunks*4 {
				return errCorrupt(name, "page checksum table at offset %d has %d bytes, %d pages in chunks of %d need %d", at, n, h.numPages, h.chunkPages, nchunks*4)
			}
			haveSums = true
			img.sums = make([]uint32, nchunks) // bounded by the metadata length
			for i := range img.sums {
				img.sums[i] = le.Uint32(payload[4*i:])
			}
		case typ == TypeEnd:
			if n != 0 {
				return errCorrupt(name, "end record at offset %d has a %d-byte payload", at, n)
			}
			haveEnd = true
		case typ >= ReservedTypes:
			return errCorrupt(name, "record at offset %d has type %#x, reserved for the container but unknown to format version %d", at, typ, Version)
		default:
			img.records = append(img.records, Record{Type: typ, Payload: payload})
		}
		off = next
	}
	if !haveEnd {
		return errCorrupt(name, "metadata has no end record")
	}
	if !haveSums {
		return errCorrupt(name, "metadata has no page checksum table")
	}
	chunkBytes := uint64(h.chunkPages) * PageSize
	lastBytes := chunkBytes
	if r := h.numPages % uint64(h.chunkPages); r != 0 {
		lastBytes = r * PageSize
	}
	if got := pagesCRC(img.sums, chunkBytes, lastBytes); got != h.pagesCRC {
		return errCorrupt(name, "page checksum table does not match the header's page-data checksum: stored %#08x, computed %#08x (file corrupted?)", h.pagesCRC, got)
	}
	img.state = make([]atomic.Uint32, nchunks)
	return nil
}

// countRecords counts the caller's records in meta, as far as the framing
// is intact (parseMetadata reports what is wrong with it), so that the
// slice of records is allocated once, at its final size.
func countRecords(meta []byte) int {
	n := 0
	for off := uint64(0); uint64(len(meta))-off >= recordHeaderLen; {
		if typ := le.Uint32(meta[off:]); typ != TypeInvalid && typ < ReservedTypes {
			n++
		}
		off += recordHeaderLen + padLen(uint64(le.Uint32(meta[off+4:])))
		if off > uint64(len(meta)) {
			break
		}
	}
	return n
}

// Version returns the image's format version.
func (img *Image) Version() uint32 { return img.hdr.version }

// HeaderDigest returns the SHA-256 of the image's header: it covers the
// checksums of the metadata and of the page data, so it identifies the
// image (a delta names its parent by it).
func (img *Image) HeaderDigest() [32]byte { return img.hdr.digest }

// Info returns the image's layout.
func (img *Image) Info() Info {
	h := img.hdr
	return Info{
		Version: h.version, Flags: h.flags, Size: img.size,
		PageOffset: int64(h.pageOff), NumPages: h.numPages, ChunkPages: h.chunkPages,
		MetadataOffset: int64(h.metaOff), MetadataLength: int64(h.metaLen),
		MetadataCRC: h.metaCRC, PagesCRC: h.pagesCRC,
	}
}

// Records returns the caller's records in the order they were written
// (the container's own records are left out). The slice and the payloads
// belong to the Image: do not modify them. Payloads stay valid after
// Close.
func (img *Image) Records() []Record { return img.records }

// NumPages returns the number of pages of page data.
func (img *Image) NumPages() uint64 { return img.hdr.numPages }

// Page returns a copy of page i (the i-th page given to Writer.Pages,
// counting from 0), verified. See ReadPages.
func (img *Image) Page(i uint64) ([]byte, error) { return img.PageRange(i, 1) }

// PageRange returns a copy of n consecutive pages from page first, as one
// slice of n·PageSize bytes, verified. See ReadPages.
func (img *Image) PageRange(first, n uint64) ([]byte, error) {
	if err := img.checkRange(first, n); err != nil {
		return nil, err
	}
	b := make([]byte, n*PageSize) // bounded: n ≤ NumPages, and the file holds them
	if err := img.ReadPages(b, first); err != nil {
		return nil, err
	}
	return b, nil
}

// checkRange refuses a page range the image does not hold. Page indexes
// come from the image's records, so asking for pages beyond the page data
// means the image is corrupt.
func (img *Image) checkRange(first, n uint64) error {
	if img.closed.Load() {
		return fmt.Errorf("%s: image is closed", img.name)
	}
	np := img.hdr.numPages
	if first > np || n > np-first {
		return errCorrupt(img.name, "pages %d-%d requested, but the image holds %d pages", first, first+n-1, np)
	}
	return nil
}

// ReadPages copies len(dst)/PageSize pages, from page first on, into dst
// and checks them against the page checksums; len(dst) must be a multiple
// of PageSize. When it returns nil, dst holds exactly the bytes that were
// verified: each chunk is checked after it was copied, from the copy, so a
// file changed meanwhile cannot slip unverified bytes in. On error, dst
// holds unspecified bytes and must not be used.
//
// Chunks are read and checked in parallel, on up to GOMAXPROCS cores. A
// range that covers part of a chunk costs a read of the whole chunk, which
// is what the checksum covers. A restorer can call it for all pages at
// once, or chunk by chunk when a page is first needed.
func (img *Image) ReadPages(dst []byte, first uint64) error {
	if len(dst)%PageSize != 0 {
		return fmt.Errorf("%s: ReadPages into %d bytes, not a multiple of the page size", img.name, len(dst))
	}
	n := uint64(len(dst) / PageSize)
	if err := img.checkRange(first, n); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	cp := uint64(img.hdr.chunkPages)
	firstChunk, lastChunk := first/cp, (first+n-1)/cp
	return img.eachChunk(firstChunk, lastChunk+1, func(c uint64, scratch *[]byte) error {
		// The pages of chunk c that dst wants, and where they go.
		cFirst, cEnd := img.chunkPages(c)
		from, to := max(cFirst, first), min(cEnd, first+n)
		out := dst[(from-first)*PageSize : (to-first)*PageSize]
		if from == cFirst && to == cEnd {
			return img.readChunk(c, out) // the whole chunk: straight into dst
		}
		buf := img.scratch(scratch)[:(cEnd-cFirst)*PageSize]
		if err := img.readChunk(c, buf); err != nil {
			return err
		}
		copy(out, buf[(from-cFirst)*PageSize:])
		return nil
	})
}

// VerifyPages checks all page data against its checksums, in parallel on
// up to GOMAXPROCS cores, and reports the first bad chunk. Open and Parse
// call it unless given LazyPages. For an image from Open it reads the file
// again on every call.
func (img *Image) VerifyPages() error {
	if img.closed.Load() {
		return fmt.Errorf("%s: image is closed", img.name)
	}
	return img.eachChunk(0, uint64(len(img.sums)), func(c uint64, scratch *[]byte) error {
		cFirst, cEnd := img.chunkPages(c)
		if img.f == nil {
			return img.verifyMemChunk(c, img.pages[cFirst*PageSize:cEnd*PageSize])
		}
		return img.readChunk(c, img.scratch(scratch)[:(cEnd-cFirst)*PageSize])
	})
}

// eachChunk calls do for chunks [from, to) on up to GOMAXPROCS goroutines.
// After the first failure no further chunk is started, and the error of
// the lowest chunk that failed is returned. Each goroutine has a scratch
// buffer of its own, which do allocates if it needs one.
func (img *Image) eachChunk(from, to uint64, do func(c uint64, scratch *[]byte) error) error {
	n := to - from
	workers := min(uint64(runtime.GOMAXPROCS(0)), n)
	if workers <= 1 {
		var scratch []byte
		for c := from; c < to; c++ {
			if err := do(c, &scratch); err != nil {
				return err
			}
		}
		return nil
	}
	errs := make([]error, n)
	var next atomic.Uint64
	var failed atomic.Bool // stop early: the image is unusable anyway
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			var scratch []byte
			for !failed.Load() {
				i := next.Add(1) - 1
				if i >= n {
					return
				}
				if errs[i] = do(from+i, &scratch); errs[i] != nil {
					failed.Store(true)
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// scratch returns *buf, allocated first if need be, with room for one
// chunk.
func (img *Image) scratch(buf *[]byte) []byte {
	if *buf == nil {
		*buf = make([]byte, min(uint64(img.hdr.chunkPages), img.hdr.numPages)*PageSize)
	}
	return *buf
}

// chunkPages returns the pages [first, end) that chunk c covers.
func (img *Image) chunkPages(c uint64) (first, end uint64) {
	cp := uint64(img.hdr.chunkPages)
	return c * cp, min((c+1)*cp, img.hdr.numPages)
}

// readChunk copies chunk c into buf (exactly the chunk's length) and
// checks the copy against the chunk's checksum.
func (img *Image) readChunk(c uint64, buf []byte) error {
	first, _ := img.chunkPages(c)
	if img.f == nil {
		// Parse: the bytes in memory cannot change, so a chunk is
		// checked once.
		src := img.pages[first*PageSize : first*PageSize+uint64(len(buf))]
		if err := img.verifyMemChunk(c, src); err != nil {
			return err
		}
		copy(buf, src)
		return nil
	}
	off := int64(img.hdr.pageOff + first*PageSize)
	if _, err := img.f.ReadAt(buf, off); err != nil {
		if errors.Is(err, io.EOF) {
			return img.chunkErr(c, "cannot be read: the file became shorter (was it truncated while in use?)")
		}
		return fmt.Errorf("%s: reading page data: %w", img.name, err)
	}
	if crc32c(buf) != img.sums[c] {
		return img.chunkErr(c, "checksum mismatch")
	}
	return nil
}

// verifyMemChunk checks chunk c of an in-memory image unless it was
// checked before.
func (img *Image) verifyMemChunk(c uint64, data []byte) error {
	switch img.state[c].Load() {
	case chunkOK:
		return nil
	case chunkBad:
		return img.chunkErr(c, "checksum mismatch")
	}
	if crc32c(data) != img.sums[c] {
		img.state[c].Store(chunkBad)
		return img.chunkErr(c, "checksum mismatch")
	}
	img.state[c].Store(chunkOK)
	return nil
}

func (img *Image) chunkErr(c uint64, what string) error {
	first, end := img.chunkPages(c)
	return errCorrupt(img.name, "page data %s in pages %d-%d (file offsets %d-%d, chunk %d of %d) (file corrupted?)",
		what, first, end-1, img.hdr.pageOff+first*PageSize, img.hdr.pageOff+end*PageSize-1, c, len(img.sums))
}

// Clone returns a second Image of the same image, with a descriptor of its
// own for the same file (the same inode, even if the path was replaced
// meanwhile), to be closed independently: a reader that goes on after its
// caller has closed the Image it was given.
func (img *Image) Clone() (*Image, error) {
	if img.closed.Load() {
		return nil, fmt.Errorf("%s: image is closed", img.name)
	}
	c := &Image{name: img.name, hdr: img.hdr, size: img.size, records: img.records, sums: img.sums,
		pages: img.pages, state: img.state}
	if img.f != nil {
		fd, err := unix.FcntlInt(img.f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", img.name, err)
		}
		c.f = os.NewFile(uintptr(fd), img.f.Name())
	}
	return c, nil
}

// Close closes the image file. Records stay valid; pages returned before
// are copies and stay valid too.
func (img *Image) Close() error {
	if img.closed.Swap(true) {
		return nil
	}
	if img.f != nil {
		return img.f.Close()
	}
	return nil
}
