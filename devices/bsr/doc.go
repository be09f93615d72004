// Package bsr models IBM POWER's Barrier Synchronization Registers (BSR)
// as MMIO devices for emuckpt, with the character devices and sysfs files
// of Linux's drivers/char/bsr.c.
//
// # The register
//
// A BSR is an array of Spec.Bytes bytes, one per participant of a
// barrier. Each participant announces its arrival with a single-byte store
// to its own byte; anyone can then see many participants at once with one
// aligned 1, 2, 4 or 8-byte load, which is what makes a barrier cheap. The
// register repeats every Spec.Stride bytes throughout its window: offset
// off is participant byte off%Stride, and the bytes of a stride beyond the
// register read 0 and ignore stores.
//
// A store wider than a byte, or any access outside the window, raises
// SIGBUS with BUS_ADRERR; a load not aligned to its width raises SIGBUS
// with BUS_ADRALN. A refused access changes nothing.
//
// Every mapping of a register, in any task of any process, reaches the
// same *Register through the MMIO bus: it is one device, and its bytes are
// shared.
//
// # Registers, names and windows
//
// New makes a Set from a list of Specs (the --bsr flags, or DefaultSpecs).
// Registers are named as Linux names them, bsr<bytes>_<n> with n counting
// the registers of each size, and get consecutive page-aligned
// guest-physical windows of Spec.WindowSize() bytes each.
//
// # Files
//
// Register.Open makes the /dev/bsr<bytes>_<n> file: only mmap does
// anything (read and write fail with EINVAL, lseek succeeds at offset 0).
// Its mapping is a *Backing, a guestmm.DeviceBacking whose VMAType is
// "bsr". Register.SysfsFiles gives the attributes of
// /sys/class/bsr/<name>/.
//
// docs/DEVICES.md describes the ABI, the errnos and every difference
// from POWER hardware and Linux.
package bsr
