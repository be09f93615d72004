// Package ckpt writes checkpoints of a guest process to images and
// restores them into fresh machines.
//
// A checkpoint is the kernel's State (package kernel: registers, FPU, the
// descriptor table, signal state, the clock, and every VMA with its type)
// as one JSON record, plus the contents of the pages that the VMA types
// say must be stored, in the page-data area of an image (package
// ckpt/image, format in docs/FORMAT.md). Which pages are stored:
//
//	ANON, SHM_ANON, HEAP, STACK  present pages; all-zero pages are counted, not stored
//	FILE                         only pages copied on write; clean pages come from the file
//	FILE_SHARED                  none: the (read-only) file holds them
//	SCRATCH (MADV_DONTDUMP)      none: restored as a zero-filled mapping
//	DEVICE                       none: the mapping is restored, the device contents are not
//
// Device VMAs carry the VMA type their device registered ("hpet", "bsr",
// or "vanilla"). Restore opens the device file again and calls its mmap,
// so an image that names a device this machine lacks, or one configured
// differently, is refused before anything runs.
//
// Restore copies the page data of an image into guest RAM with pread and
// checks every chunk's checksum on the copy, before the guest runs: the
// guest runs on exactly the bytes that were verified, and the image file
// is not used afterwards, so changing, truncating or deleting it cannot
// affect a restored run (nor crash emuckpt with a SIGBUS, as a mapping of
// the file could). The price is O(bytes): about 0.25 s for 256 MiB on the
// CI machines (BenchmarkRestore), where a mapping cost O(mappings).
//
// Incremental images (chain.go; docs/FORMAT.md, "Incremental images"): a
// delta names its parent, the image before it (its path, relative to the
// delta, and its header's SHA-256), and stores only the pages written
// since; WriteImage writes one from a delta snapshot
// (kernel.CheckpointConfig.Incremental), Open follows and checks the
// chain, and ReadPages reads each page from the image of the chain that
// holds it, checked against that image's checksums. WriteBufferDelta and
// ParseDelta do the same in memory (verify).
package ckpt
