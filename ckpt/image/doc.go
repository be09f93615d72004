// Package image is the container format of emuckpt's checkpoint images:
// how typed records and page data are laid out in a file, checksummed,
// written atomically and read back safely.
//
// It does not know what the records mean. The kernel layer decides what a
// checkpoint holds (task registers, file table, VMAs, device state) and
// encodes each item as a record of a type it chooses; page contents go to
// the page-data area, and the records say which guest address each page
// belongs to. docs/FORMAT.md describes the file byte by byte.
//
// # Layout
//
//	offset 0       header (128 bytes) and zero padding to 4096
//	offset 4096    page data: NumPages pages of 4096 bytes, in the order
//	               Writer.Pages received them
//	after them     metadata: records {u32 type; u32 len; payload; pad to 8},
//	               then the container's page-checksum table and an end record
//
// Page data starts at a page-aligned offset (for direct I/O, and for a
// reader that maps it). The metadata comes last because a writer knows
// its size only at the end; it is read with one pread.
//
// Everything is little-endian. The header, the metadata and each 1 MiB
// chunk of page data have a CRC-32C (Castagnoli, computed with the CPU's
// CRC32 instruction), and the header also holds the CRC-32C of the whole
// page-data area, which a reader checks against the chunk table.
//
// # Writing
//
//	w, err := image.Create("app.ckpt") // a file without a name next to it
//	if err != nil { ... }
//	defer w.Abort() // no-op after Commit
//	first, err := w.Pages(guestRAM[start:end]) // pages first..first+n-1
//	var e image.Encoder
//	e.U64(vmaStart); e.U64(vmaEnd); e.U64(first)
//	payload, err := e.Finish()
//	err = w.Record(recVMA, payload) // recVMA: a type of the caller's
//	err = w.Commit() // checksums, fsync, link, rename over app.ckpt
//
// Commit renames the finished file over the final path, so the path holds
// either the previous image or the complete new one, never a partial one,
// even if the process or the machine crashes; a process killed while it
// writes leaves no temporary file behind (O_TMPFILE; see tempfile.go and
// CheckDestination). NewWriter with a Buffer
// builds an image in memory instead (for tests, and for restoring without
// a file).
//
// Pages writes page data as it comes, straight from the caller's slice
// (runs shorter than 64 KiB are gathered in a 4 MiB buffer first), and
// checksums it on another core at the same time. For 256 MiB of guest RAM
// on ext4 this takes 50-90 ms through the page cache, and Commit's fsync
// 65-95 ms more; DirectIO trades these for 85-115 ms in Pages (bound by
// the device) and 1-6 ms in Commit. See BenchmarkWrite.
//
// # Reading
//
//	img, err := image.Open("app.ckpt")
//	if err != nil {
//		// errors.Is(err, image.ErrCorrupt), ErrTruncated, ErrVersion,
//		// ErrNotImage: exit status 125, print err.
//	}
//	defer img.Close()
//	for _, r := range img.Records() {
//		d := r.Decoder()
//		start, end, first := d.U64(), d.U64(), d.U64()
//		if err := d.Finish(); err != nil { ... }
//		err = img.ReadPages(guestRAM[start:end], first) // copied, then verified
//	}
//
// Open verifies the header, the metadata and all page data before it
// returns. Verifying page data costs O(bytes), about 12 ms per 256 MiB on
// two cores from the page cache; with LazyPages it is done as pages are
// read instead, or all at once by VerifyPages.
//
// Page data is never mapped from the file, only copied out of it with
// pread (ReadPages, Page, PageRange), and each chunk's checksum is checked
// on the copy. A caller therefore gets exactly the bytes that were
// verified: a file truncated or overwritten while it is open gives an
// error from the next read (never a SIGBUS, never another image's bytes),
// and what was read before stays valid. A restore that has read its pages
// does not need the file any more.
//
// # Untrusted input
//
// An image is untrusted input. Open and Parse refuse a file that is
// truncated, has bytes appended, has any single bit flipped (tests check
// every bit of a small image), or comes from a newer format version, with
// an *Error that says what is wrong and what to do and wraps one of
// ErrNotImage, ErrTruncated, ErrCorrupt or ErrVersion. They never panic,
// and no length field can make them allocate more than the file's size:
// the metadata is bounded by the file and by MaxMetadataLen, page data is
// read only into the caller's memory. Open opens nothing but a regular
// file, without blocking on a FIFO. Decoder gives record payloads the
// same treatment.
//
// # Encoding record payloads
//
// Encoder and Decoder read and write little-endian integers, fixed-layout
// structs (as encoding/binary does) and u32-length-prefixed strings,
// without allocating per field. The Decoder checks every length against
// what is left and against a limit the caller gives, and keeps the first
// error, so a record is decoded with a single check at the end.
package image
