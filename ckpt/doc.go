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
// Restore maps the page data of an image file into guest RAM with
// MAP_PRIVATE: its cost follows the number of mappings, not the bytes.
package ckpt
