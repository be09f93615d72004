package kernel

import xcpu "golang.org/x/sys/cpu"

// hostHWCap is AT_HWCAP for x86-64: CPUID leaf 1 EDX, as Linux reports it.
// The guest's CPUID comes from KVM's supported set, which is a subset of
// the host's; the feature bits that matter to user space (FPU, TSC, CMOV,
// MMX, FXSR, SSE, SSE2) are present on every x86-64 host.
func hostHWCap() uint64 {
	const base = 1<<0 | 1<<4 | 1<<15 | 1<<23 | 1<<24 | 1<<25 | 1<<26
	if !xcpu.X86.HasSSE2 {
		return base &^ (1 << 26)
	}
	return base
}
