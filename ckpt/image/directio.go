package image

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Direct I/O for page data. Pages written with O_DIRECT go from the
// caller's memory (guest RAM) to the device by DMA: no copy into the page
// cache, no dirty pages for fsync to write back later, no page cache
// filled with a checkpoint nobody reads soon. The price: each write waits
// for the device, so small runs are gathered first (Writer.stage), and an
// image read right after it was written comes from the device, not from
// memory.
//
// O_DIRECT needs the buffer's address, the file offset and the length
// aligned, to what statx(STATX_DIOALIGN) reports. Offsets and lengths of
// page data are multiples of PageSize; buffers that are not aligned
// (rare: guest RAM and Go allocations of 8 KiB or more are page aligned)
// go through the page cache instead.

// openDirect opens f's file again with O_DIRECT, or returns nil when the
// file system does not support direct I/O with page-aligned buffers (or
// /proc is not mounted).
func openDirect(f *os.File) *os.File {
	var stx unix.Statx_t
	if err := unix.Statx(int(f.Fd()), "", unix.AT_EMPTY_PATH, unix.STATX_DIOALIGN|unix.STATX_INO, &stx); err != nil {
		return nil
	}
	// Without STATX_DIOALIGN in the mask the file system does not know
	// (tmpfs, for one, accepts O_DIRECT but copies anyway); with
	// alignments of 0 it does not support direct I/O.
	if stx.Mask&unix.STATX_DIOALIGN == 0 || stx.Dio_mem_align == 0 || stx.Dio_offset_align == 0 ||
		stx.Dio_mem_align > PageSize || stx.Dio_offset_align > PageSize {
		return nil
	}
	// Through /proc: f may have no name (O_TMPFILE).
	d, err := os.OpenFile(procFD(f), os.O_WRONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	// Make sure it is the same file, not one renamed into its place.
	var dstx unix.Statx_t
	if err := unix.Statx(int(d.Fd()), "", unix.AT_EMPTY_PATH, unix.STATX_INO, &dstx); err != nil ||
		dstx.Ino != stx.Ino || dstx.Dev_major != stx.Dev_major || dstx.Dev_minor != stx.Dev_minor {
		d.Close()
		return nil
	}
	return d
}

func (w *Writer) closeDirect() {
	if w.direct != nil {
		w.direct.Close()
		w.direct = nil
	}
}

// isAligned reports whether b starts on a page boundary.
func isAligned(b []byte) bool {
	return len(b) > 0 && uintptr(unsafe.Pointer(unsafe.SliceData(b)))%PageSize == 0
}

// alignedBuffer returns n bytes starting on a page boundary.
func alignedBuffer(n int) []byte {
	b := make([]byte, n+PageSize)
	skip := int(-uintptr(unsafe.Pointer(unsafe.SliceData(b))) & (PageSize - 1))
	return b[skip : skip+n : skip+n]
}
