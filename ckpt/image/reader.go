package image

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"

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
// more when it must come from disk), which is what restoring by mmap is
// meant to avoid. With LazyPages, Page and PageRange verify each chunk of
// ChunkPages pages the first time they touch it, VerifyPages checks all of
// them on demand, and page data read through PageFile is not verified at
// all: a restorer that maps the file should call VerifyPages unless it can
// accept silently corrupted memory.
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
	pages   []byte   // the page-data area: a read-only mapping or part of Parse's input
	mapped  bool     // pages is an mmap of f
	f       *os.File // nil for Parse
	// state[i] is the verification state of chunk i.
	state  []atomic.Uint32
	closed atomic.Bool
}

const (
	chunkUnverified = iota
	chunkOK
	chunkBad
)

// Open opens the image at path and verifies its header, its metadata and,
// unless LazyPages is given, its page data. Page data is mapped read-only,
// not read into memory. The error is an *Error (errors.Is ErrNotImage,
// ErrTruncated, ErrCorrupt or ErrVersion) when the file is not a valid
// image, and an error from the operating system otherwise.
//
// The file must not be modified while the image is open: page data is
// read through a shared mapping, and reading pages beyond a shrunk file
// raises SIGBUS (VerifyPages turns that into an error).
func Open(path string, opts ...Option) (img *Image, err error) {
	o := getOptions(opts)
	f, err := os.Open(path)
	if err != nil {
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
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		what := "a special file"
		switch {
		case fi.IsDir():
			what = "a directory"
		case fi.Mode()&os.ModeNamedPipe != 0:
			what = "a pipe"
		case fi.Mode()&os.ModeDevice != 0:
			what = "a device"
		}
		return nil, errNotImage(path, "%s, not a regular file", what)
	}
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
	if h.numPages > 0 {
		if uint64(int(h.numPages*PageSize)) != h.numPages*PageSize {
			return nil, fmt.Errorf("%s: %d pages do not fit this process's address space", path, h.numPages)
		}
		img.pages, err = unix.Mmap(int(f.Fd()), int64(h.pageOff), int(h.numPages*PageSize), unix.PROT_READ, unix.MAP_SHARED)
		if err != nil {
			return nil, &os.PathError{Op: "mmap", Path: path, Err: err}
		}
		img.mapped = true
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
		return errTruncated(name, "the file became shorter while it was read")
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

// Page returns page i (the i-th page given to Writer.Pages, counting from
// 0). See PageRange.
func (img *Image) Page(i uint64) ([]byte, error) { return img.PageRange(i, 1) }

// PageRange returns n consecutive pages from page first as one slice of
// n·PageSize bytes, without copying. The slice is read-only (writing to it
// faults for an image from Open) and valid until Close. With LazyPages,
// the chunks it covers are verified first. Asking for pages the image does
// not hold is ErrCorrupt: page indexes come from the image's records.
func (img *Image) PageRange(first, n uint64) ([]byte, error) {
	if img.closed.Load() {
		return nil, fmt.Errorf("%s: image is closed", img.name)
	}
	np := img.hdr.numPages
	if first > np || n > np-first {
		return nil, errCorrupt(img.name, "pages %d-%d requested, but the image holds %d pages", first, first+n-1, np)
	}
	if n == 0 {
		return []byte{}, nil
	}
	cp := uint64(img.hdr.chunkPages)
	for c := first / cp; c <= (first+n-1)/cp; c++ {
		if err := img.verifyChunk(c); err != nil {
			return nil, err
		}
	}
	return img.pages[first*PageSize : (first+n)*PageSize : (first+n)*PageSize], nil
}

// PageFile returns the open image file and the offset of page 0 in it, for
// a restorer that maps page data instead of copying it: page i is at
// offset+i·PageSize, and offset is a multiple of PageSize. Map it
// MAP_PRIVATE so guest writes never reach the file. ok is false for an
// image from Parse. The file belongs to the Image and is closed by Close
// (mappings made from it stay valid). With LazyPages, call VerifyPages
// first: pages read through the file are not verified.
func (img *Image) PageFile() (f *os.File, offset int64, ok bool) {
	if img.f == nil || img.closed.Load() {
		return nil, 0, false
	}
	return img.f, int64(img.hdr.pageOff), true
}

// VerifyPages checks the page data against its checksums, in parallel on
// up to GOMAXPROCS cores, skipping chunks already verified. Open and Parse
// call it unless given LazyPages. It reports the first bad chunk.
func (img *Image) VerifyPages() error {
	if img.closed.Load() {
		return fmt.Errorf("%s: image is closed", img.name)
	}
	nchunks := uint64(len(img.sums))
	workers := min(uint64(runtime.GOMAXPROCS(0)), nchunks)
	// Chunks are handed out in batches so workers rarely contend.
	const batch = 4
	var next atomic.Uint64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				start := next.Add(batch) - batch
				if start >= nchunks {
					return
				}
				for c := start; c < min(start+batch, nchunks); c++ {
					img.verifyChunk(c) // the result is read from state below
				}
			}
		})
	}
	wg.Wait()
	for c := range nchunks {
		if err := img.verifyChunk(c); err != nil {
			return err
		}
	}
	return nil
}

// verifyChunk checks chunk c unless it was checked before.
func (img *Image) verifyChunk(c uint64) (err error) {
	switch img.state[c].Load() {
	case chunkOK:
		return nil
	case chunkBad:
		return img.chunkErr(c, "checksum mismatch")
	}
	cp := uint64(img.hdr.chunkPages)
	first, end := c*cp, min((c+1)*cp, img.hdr.numPages)
	data := img.pages[first*PageSize : end*PageSize]
	if img.mapped {
		// A file that shrank under the mapping raises SIGBUS: make it an
		// error instead of a crash.
		defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
		defer func() {
			if r := recover(); r != nil {
				err = img.chunkErr(c, fmt.Sprintf("cannot read page data (%v); was the file truncated while open?", r))
			}
		}()
	}
	if crc32c(data) != img.sums[c] {
		img.state[c].Store(chunkBad)
		return img.chunkErr(c, "checksum mismatch")
	}
	img.state[c].Store(chunkOK)
	return nil
}

func (img *Image) chunkErr(c uint64, what string) error {
	cp := uint64(img.hdr.chunkPages)
	first, end := c*cp, min((c+1)*cp, img.hdr.numPages)
	return errCorrupt(img.name, "page data %s in pages %d-%d (file offsets %d-%d, chunk %d of %d) (file corrupted?)",
		what, first, end-1, img.hdr.pageOff+first*PageSize, img.hdr.pageOff+end*PageSize-1, c, len(img.sums))
}

// Close unmaps the page data and closes the file. Slices returned by Page
// and PageRange must not be used afterwards; Records stay valid.
func (img *Image) Close() error {
	if img.closed.Swap(true) {
		return nil
	}
	var err error
	if img.mapped {
		err = unix.Munmap(img.pages)
		img.pages = nil
	}
	if img.f != nil {
		if cerr := img.f.Close(); err == nil {
			err = cerr
		}
	}
	return err
}
