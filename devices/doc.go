// Package devices holds the device models emuckpt maps into guests, one
// subpackage each: hpet (the High Precision Event Timer and Linux's
// /dev/hpet) and bsr (IBM POWER's Barrier Synchronization Registers and
// Linux's /dev/bsr*). Each model is a vmm.Device on the machine's MMIO bus
// plus the character device a guest opens and maps; the command line
// (cmd/emuckpt) wires them into the kernel. docs/DEVICES.md describes
// both.
//
// This package itself holds only benchmarks: BenchmarkMMIORatios times
// guest accesses to each device's page against a null device's.
package devices
