// Package vdso holds the guest's vDSO: vdso.so, built from src/vdso.c and
// src/vdso.lds by the Makefile here, committed and embedded so that building
// emuckpt needs no C toolchain. Package kernel maps it into every process
// (outside --deterministic) with the vvar page just below it; see
// docs/KERNEL.md, "The vDSO".
package vdso

import (
	_ "embed"
)

// Image is the vDSO, an ELF shared object linked at address 0 whose
// first page is its ELF header (AT_SYSINFO_EHDR points there).
//
//go:embed vdso.so
var Image []byte

// VVarSize is the size of the vvar, which the image expects at its own
// address minus VVarSize (vvar_page in src/vdso.lds).
const VVarSize = 4096
