package kernel

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// cpuFlag is a /proc/cpuinfo flag: Linux's name for a CPUID bit.
type cpuFlag struct {
	leaf, index uint32
	reg         int // 0 EAX, 1 EBX, 2 ECX, 3 EDX
	bit         uint
	name        string
}

// cpuFlags are the CPUID bits /proc/cpuinfo names, in the order Linux
// prints them (its cpufeature words: 1 EDX, 0x80000001 EDX, 1 ECX,
// 0x80000001 ECX, 7 EBX, 0xd.1 EAX, 7 ECX). Linux's synthetic flags
// (constant_tsc, ...) and bug flags are not shown.
var cpuFlags = func() []cpuFlag {
	var out []cpuFlag
	add := func(leaf, index uint32, reg int, names map[uint]string) {
		for bit := range uint(32) {
			if n, ok := names[bit]; ok {
				out = append(out, cpuFlag{leaf, index, reg, bit, n})
			}
		}
	}
	add(1, 0, 3, map[uint]string{0: "fpu", 1: "vme", 2: "de", 3: "pse", 4: "tsc", 5: "msr", 6: "pae", 7: "mce",
		8: "cx8", 9: "apic", 11: "sep", 12: "mtrr", 13: "pge", 14: "mca", 15: "cmov", 16: "pat", 17: "pse36",
		19: "clflush", 23: "mmx", 24: "fxsr", 25: "sse", 26: "sse2", 27: "ss", 28: "ht"})
	add(0x80000001, 0, 3, map[uint]string{11: "syscall", 20: "nx", 22: "mmxext", 25: "fxsr_opt",
		26: "pdpe1gb", 27: "rdtscp", 29: "lm"})
	add(1, 0, 2, map[uint]string{0: "pni", 1: "pclmulqdq", 9: "ssse3", 12: "fma", 13: "cx16", 17: "pcid",
		19: "sse4_1", 20: "sse4_2", 21: "x2apic", 22: "movbe", 23: "popcnt", 24: "tsc_deadline_timer",
		25: "aes", 26: "xsave", 28: "avx", 29: "f16c", 30: "rdrand", 31: "hypervisor"})
	add(0x80000001, 0, 2, map[uint]string{0: "lahf_lm", 1: "cmp_legacy", 2: "svm", 5: "abm", 6: "sse4a",
		7: "misalignsse", 8: "3dnowprefetch", 11: "xop", 16: "fma4"})
	add(7, 0, 1, map[uint]string{0: "fsgsbase", 3: "bmi1", 4: "hle", 5: "avx2", 7: "smep", 8: "bmi2",
		9: "erms", 10: "invpcid", 11: "rtm", 16: "avx512f", 17: "avx512dq", 18: "rdseed", 19: "adx",
		20: "smap", 21: "avx512ifma", 23: "clflushopt", 24: "clwb", 28: "avx512cd", 29: "sha_ni",
		30: "avx512bw", 31: "avx512vl"})
	add(0xd, 1, 0, map[uint]string{0: "xsaveopt", 1: "xsavec", 2: "xgetbv1", 3: "xsaves"})
	add(7, 0, 2, map[uint]string{1: "avx512vbmi", 2: "umip", 3: "pku", 4: "ospke", 6: "avx512_vbmi2",
		8: "gfni", 9: "vaes", 10: "vpclmulqdq", 11: "avx512_vnni", 12: "avx512_bitalg",
		14: "avx512_vpopcntdq", 22: "rdpid"})
	return out
}()

// cpuinfo is /proc/cpuinfo: one block per vCPU, from the guest's CPUID
// (vendor, family, model, brand string, feature flags, address sizes),
// as Linux's x86 show_cpuinfo prints them. Fields Linux measures (cpu MHz,
// bogomips, caches) are left out.
func (k *Kernel) cpuinfo() []byte {
	if k.m == nil {
		return nil
	}
	cpuid := func(leaf, index uint32) [4]uint32 {
		a, b, c, d, _ := k.m.CPUID(leaf, index)
		return [4]uint32{a, b, c, d}
	}
	regs := func(r ...uint32) string {
		b := make([]byte, 0, 4*len(r))
		for _, x := range r {
			b = binary.LittleEndian.AppendUint32(b, x)
		}
		return strings.TrimSpace(strings.TrimRight(string(b), "\x00"))
	}
	l0, l1 := cpuid(0, 0), cpuid(1, 0)
	vendor := regs(l0[1], l0[3], l0[2])
	family, model := l1[0]>>8&0xf, l1[0]>>4&0xf
	if family == 0xf {
		family += l1[0] >> 20 & 0xff
	}
	if family >= 6 {
		model += (l1[0] >> 16 & 0xf) << 4
	}
	var brand []uint32
	for leaf := uint32(0x80000002); leaf <= 0x80000004; leaf++ {
		r := cpuid(leaf, 0)
		brand = append(brand, r[:]...)
	}
	modelName := regs(brand...)
	if modelName == "" {
		modelName = "unknown" // as Linux prints a CPU without a brand string
	}
	var flags []string
	for _, f := range cpuFlags {
		if cpuid(f.leaf, f.index)[f.reg]&(1<<f.bit) != 0 {
			flags = append(flags, f.name)
		}
	}
	addr := cpuid(0x80000008, 0)[0]
	n := max(len(k.cpus), 1)
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "processor\t: %d\nvendor_id\t: %s\ncpu family\t: %d\nmodel\t\t: %d\nmodel name\t: %s\nstepping\t: %d\n",
			i, vendor, family, model, modelName, l1[0]&0xf)
		fmt.Fprintf(&b, "physical id\t: 0\nsiblings\t: %d\ncore id\t\t: %d\ncpu cores\t: %d\napicid\t\t: %d\n", n, i, n, i)
		fmt.Fprintf(&b, "fpu\t\t: yes\nfpu_exception\t: yes\ncpuid level\t: %d\nwp\t\t: yes\nflags\t\t: %s\n",
			l0[0], strings.Join(flags, " "))
		fmt.Fprintf(&b, "clflush size\t: 64\ncache_alignment\t: 64\naddress sizes\t: %d bits physical, %d bits virtual\npower management:\n\n",
			addr&0xff, addr>>8&0xff)
	}
	return []byte(b.String())
}
