package kvmtest

import "encoding/binary"

// QEMUTCG is the hypervisor signature QEMU reports when it emulates the
// CPU itself (TCG) instead of using an accelerator.
const QEMUTCG = "TCGTCGTCGTCG"

// HostHypervisor returns the hypervisor signature of the machine the test
// runs on, from CPUID leaf 0x40000000 ("KVMKVMKVM", QEMUTCG, "Microsoft
// Hv", ...), or "" when CPUID does not report a hypervisor. Tests use it
// to accept an emulator's known deviation from real CPUs on that emulator
// only.
func HostHypervisor() string {
	if _, _, ecx, _ := cpuid(1, 0); ecx&(1<<31) == 0 {
		return ""
	}
	_, ebx, ecx, edx := cpuid(0x40000000, 0)
	var sig [12]byte
	binary.LittleEndian.PutUint32(sig[0:], ebx)
	binary.LittleEndian.PutUint32(sig[4:], ecx)
	binary.LittleEndian.PutUint32(sig[8:], edx)
	n := 0
	for n < len(sig) && sig[n] != 0 {
		n++
	}
	return string(sig[:n])
}
