//go:build !amd64

package kvmtest

// cpuid reports no features where there is no CPUID instruction.
func cpuid(leaf, sub uint32) (eax, ebx, ecx, edx uint32) { return 0, 0, 0, 0 }
