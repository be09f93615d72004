package image

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"math"
)

// Format constants. docs/FORMAT.md describes the layout byte by byte.
const (
	// Magic is the first 8 bytes of every image.
	Magic = "EMUCKPT\x00"
	// Version is the format version this package writes, and the newest
	// it reads. Readers refuse images with a higher version (ErrVersion).
	// Versions 1 and 2 have the same layout; 2 marks state records that
	// hold a process tree (the ckpt package refuses version 1 states).
	Version = 2
	// PageSize is the size of a page of page data. The page-data area
	// starts at a multiple of PageSize in the file, so that it can be read
	// with direct I/O or mapped.
	PageSize = 4096
	// ChunkPages is the number of pages covered by one CRC-32C in the
	// page-checksum table (1 MiB of page data).
	ChunkPages = 256
	// MaxMetadataLen bounds the metadata area: a reader refuses a larger
	// one before allocating anything, a writer refuses to grow past it.
	MaxMetadataLen = 1 << 30
)

// Record types. Types are chosen by the caller, except 0 and the range
// from ReservedTypes up, which belong to the container.
const (
	// TypeInvalid is never a valid record type.
	TypeInvalid uint32 = 0
	// ReservedTypes is the first record type reserved for the container;
	// Writer.Record refuses it and every type above it.
	ReservedTypes uint32 = 0xffff_0000
	// TypePageSums is the container's page-checksum table: one
	// little-endian CRC-32C per chunk of ChunkPages pages (the last chunk
	// may be shorter). Exactly one per image.
	TypePageSums uint32 = 0xffff_0001
	// TypeEnd ends the metadata area; its payload is empty. Exactly one
	// per image, the last record.
	TypeEnd uint32 = 0xffff_ffff
)

// Header layout: offsets of the fields in the first page of the file.
// The first 20 bytes (magic, version, header length, header CRC) keep
// their place and meaning in every version, so any reader can check the
// header checksum and then report an unknown version.
const (
	offMagic      = 0  // [8]byte
	offVersion    = 8  // u32
	offHeaderLen  = 12 // u32
	offHeaderCRC  = 16 // u32, CRC-32C of the header with this field zero
	offFlags      = 20 // u32, format features; none in version 1
	offPageSize   = 24 // u32
	offChunkPages = 28 // u32
	offPageOff    = 32 // u64
	offNumPages   = 40 // u64
	offMetaOff    = 48 // u64
	offMetaLen    = 56 // u64
	offMetaCRC    = 64 // u32
	offPagesCRC   = 68 // u32
	offReserved   = 72 // up to headerLen: zero

	headerLen    = 128      // the header's length in version 1
	minHeaderLen = 20       // the frozen prefix
	headerArea   = PageSize // the header and its zero padding

	recordHeaderLen = 8 // u32 type, u32 length
	recordAlign     = 8
)

// flagsKnown are the header flags this version understands. A reader
// refuses an image with any other flag set (ErrVersion): flags announce
// format features an older reader would misread.
const flagsKnown uint32 = FlagParent

// FlagParent marks an image whose page data holds only part of its pages:
// the others are in a parent image, which a record of the caller names
// (package ckpt: docs/FORMAT.md, "Incremental images"). A reader from
// before it refuses such an image instead of restoring missing pages.
const FlagParent uint32 = 1 << 0

// maxPages bounds the page count so that offsets fit in an int64.
const maxPages = (math.MaxInt64 - headerArea - MaxMetadataLen) / PageSize

var le = binary.LittleEndian

// header is the decoded fixed header.
type header struct {
	version, headerLen, headerCRC, flags uint32
	pageSize, chunkPages                 uint32
	pageOff, numPages, metaOff, metaLen  uint64
	metaCRC, pagesCRC                    uint32
	digest                               [32]byte // SHA-256 of the header's headerLen bytes
}

// encode writes h into the first headerLen bytes of b (at least
// headerArea long, zeroed) and sets the header checksum.
func (h *header) encode(b []byte) {
	copy(b[offMagic:], Magic)
	le.PutUint32(b[offVersion:], h.version)
	le.PutUint32(b[offHeaderLen:], h.headerLen)
	le.PutUint32(b[offFlags:], h.flags)
	le.PutUint32(b[offPageSize:], h.pageSize)
	le.PutUint32(b[offChunkPages:], h.chunkPages)
	le.PutUint64(b[offPageOff:], h.pageOff)
	le.PutUint64(b[offNumPages:], h.numPages)
	le.PutUint64(b[offMetaOff:], h.metaOff)
	le.PutUint64(b[offMetaLen:], h.metaLen)
	le.PutUint32(b[offMetaCRC:], h.metaCRC)
	le.PutUint32(b[offPagesCRC:], h.pagesCRC)
	h.headerCRC = headerChecksum(b[:h.headerLen])
	le.PutUint32(b[offHeaderCRC:], h.headerCRC)
	h.digest = sha256.Sum256(b[:h.headerLen])
}

// headerChecksum is the CRC-32C of hdr with the checksum field taken as
// zero. hdr is at least minHeaderLen long.
func headerChecksum(hdr []byte) uint32 {
	var zero [4]byte
	crc := crc32c(hdr[:offHeaderCRC])
	crc = crc32Update(crc, zero[:])
	return crc32Update(crc, hdr[offHeaderCRC+4:])
}

// parseHeader decodes and checks the header. b is the start of the file
// (up to headerArea bytes of it), size the file's length. It checks
// everything that can be checked without reading beyond the header area:
// magic, checksum, version, geometry, and that the file is exactly as long
// as the header says.
func parseHeader(name string, b []byte, size int64) (*header, error) {
	if len(b) < len(Magic) {
		if len(b) == 0 {
			return nil, errTruncated(name, "the file is empty")
		}
		if bytes.HasPrefix([]byte(Magic), b) {
			return nil, errTruncated(name, "the file has only %d bytes, an image has at least %d", len(b), headerArea)
		}
		return nil, errNotImage(name, "the file has only %d bytes (%s)", len(b), printable(b, 16))
	}
	if string(b[:len(Magic)]) != Magic {
		if bitDistance(b[:len(Magic)], []byte(Magic)) <= 2 {
			return nil, errCorrupt(name, "damaged magic number %s (file corrupted?)", printable(b[:len(Magic)], 16))
		}
		return nil, errNotImage(name, "it starts with %s, not %q", printable(b[:len(Magic)], 16), Magic)
	}
	if len(b) < minHeaderLen {
		return nil, errTruncated(name, "the file has only %d bytes, an image has at least %d", len(b), headerArea)
	}
	h := &header{
		version:   le.Uint32(b[offVersion:]),
		headerLen: le.Uint32(b[offHeaderLen:]),
		headerCRC: le.Uint32(b[offHeaderCRC:]),
	}
	if h.headerLen < minHeaderLen || h.headerLen > headerArea {
		if h.version > Version {
			return nil, errNewer(name, h.version)
		}
		return nil, errCorrupt(name, "header length %d is outside [%d, %d] (file corrupted?)", h.headerLen, minHeaderLen, headerArea)
	}
	if uint64(len(b)) < uint64(h.headerLen) {
		return nil, errTruncated(name, "the file has only %d bytes, the header alone has %d", len(b), h.headerLen)
	}
	if got := headerChecksum(b[:h.headerLen]); got != h.headerCRC {
		return nil, errCorrupt(name, "header checksum mismatch: stored %#08x, computed %#08x (file corrupted?)", h.headerCRC, got)
	}
	h.digest = sha256.Sum256(b[:h.headerLen])
	switch {
	case h.version == 0:
		return nil, errCorrupt(name, "format version 0 is invalid")
	case h.version > Version:
		return nil, errNewer(name, h.version)
	}
	// Versions 1 and 2 from here on: the same layout.
	if h.headerLen != headerLen {
		return nil, errCorrupt(name, "header length %d, format version %d has %d", h.headerLen, h.version, headerLen)
	}
	h.flags = le.Uint32(b[offFlags:])
	h.pageSize = le.Uint32(b[offPageSize:])
	h.chunkPages = le.Uint32(b[offChunkPages:])
	h.pageOff = le.Uint64(b[offPageOff:])
	h.numPages = le.Uint64(b[offNumPages:])
	h.metaOff = le.Uint64(b[offMetaOff:])
	h.metaLen = le.Uint64(b[offMetaLen:])
	h.metaCRC = le.Uint32(b[offMetaCRC:])
	h.pagesCRC = le.Uint32(b[offPagesCRC:])
	if unknown := h.flags &^ flagsKnown; unknown != 0 {
		return nil, errVersion(name, "the image uses format features (flags %#x) that this emuckpt (format version %d) does not know", unknown, Version)
	}
	if !allZero(b[offReserved:headerLen]) {
		return nil, errCorrupt(name, "reserved header bytes %d-%d are not zero", offReserved, headerLen-1)
	}
	if h.pageSize != PageSize {
		return nil, errCorrupt(name, "page size %d, format version %d uses %d", h.pageSize, h.version, PageSize)
	}
	if h.chunkPages == 0 || h.chunkPages > 1<<20 {
		return nil, errCorrupt(name, "page checksum chunk of %d pages is outside [1, %d]", h.chunkPages, 1<<20)
	}
	if h.pageOff != headerArea {
		return nil, errCorrupt(name, "page data at offset %d, format version %d puts it at %d", h.pageOff, h.version, headerArea)
	}
	if h.numPages > maxPages {
		return nil, errCorrupt(name, "%d pages is more than a file can hold", h.numPages)
	}
	pageEnd := h.pageOff + h.numPages*PageSize
	if h.metaOff != pageEnd {
		return nil, errCorrupt(name, "metadata at offset %d, but %d pages at offset %d end at %d", h.metaOff, h.numPages, h.pageOff, pageEnd)
	}
	if h.metaLen > MaxMetadataLen {
		return nil, errCorrupt(name, "%d bytes of metadata, more than the limit of %s", h.metaLen, humanBytes(MaxMetadataLen))
	}
	if h.metaLen < 2*recordHeaderLen || h.metaLen%recordAlign != 0 {
		return nil, errCorrupt(name, "metadata length %d is not a multiple of %d of at least %d", h.metaLen, recordAlign, 2*recordHeaderLen)
	}
	end := h.metaOff + h.metaLen
	switch {
	case uint64(size) < pageEnd:
		return nil, errTruncated(name, "header says %d pages (%s) at offset %d but the file has %d bytes", h.numPages, humanBytes(h.numPages*PageSize), h.pageOff, size)
	case uint64(size) < end:
		return nil, errTruncated(name, "header says %d bytes of metadata at offset %d but the file has %d bytes", h.metaLen, h.metaOff, size)
	case uint64(size) > end:
		return nil, errCorrupt(name, "%d unexpected bytes after the end of the image at offset %d (file appended to or corrupted?)", uint64(size)-end, end)
	}
	if len(b) >= headerArea && !allZero(b[headerLen:headerArea]) {
		return nil, errCorrupt(name, "the padding after the header (offsets %d-%d) is not zero (file corrupted?)", headerLen, headerArea-1)
	}
	return h, nil
}

func errNewer(name string, v uint32) *Error {
	return errVersion(name, "format version %d is newer than this emuckpt reads (version %d)", v, Version)
}

func allZero(b []byte) bool {
	for len(b) >= 8 {
		if le.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// padLen returns n rounded up to the record alignment.
func padLen(n uint64) uint64 { return (n + recordAlign - 1) &^ (recordAlign - 1) }
