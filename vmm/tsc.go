package vmm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"unsafe"

	"github.com/bobuhiro11/gokvm/kvm"
)

// The guest's time stamp counter, for the vDSO's clock (package kernel):
// the kernel computes guest time from the guest's TSC with the same
// formula the vDSO uses, so it must know the guest's TSC at any moment.
// It is the host's TSC plus an offset (KVM scales it too when the guest's
// frequency differs; emuckpt never asks for that).

// RDTSC reads the host's TSC after an lfence, as the vDSO reads the
// guest's.
func RDTSC() uint64

const (
	ioctlGetMSRs   = 0x88 // KVM_GET_MSRS, _IOWR
	ioctlGetTSCKHz = 0xa3 // KVM_GET_TSC_KHZ, _IO

	msrTSC = 0x10 // IA32_TIME_STAMP_COUNTER
)

// readMSR reads one model-specific register with KVM_GET_MSRS.
func readMSR(vcpuFd uintptr, idx uint32) (uint64, error) {
	var buf [8 + 16]byte
	binary.LittleEndian.PutUint32(buf[:], 1)
	binary.LittleEndian.PutUint32(buf[8:], idx)
	n, err := ioctl(vcpuFd, kvm.IIOWR(ioctlGetMSRs, 8), uintptr(unsafe.Pointer(&buf[0])))
	if err != nil {
		return 0, fmt.Errorf("KVM_GET_MSRS: %w", err)
	}
	if n != 1 {
		return 0, fmt.Errorf("KVM_GET_MSRS: MSR %#x not read", idx)
	}
	return binary.LittleEndian.Uint64(buf[16:]), nil
}

// TSCKHz is the guest TSC's frequency as KVM keeps it (KVM_GET_TSC_KHZ).
func (c *VCPU) TSCKHz() (uint64, error) {
	n, err := ioctl(c.fd, kvm.IIO(ioctlGetTSCKHz), 0)
	if err != nil {
		return 0, fmt.Errorf("KVM_GET_TSC_KHZ: %w", err)
	}
	if n == 0 {
		return 0, errors.New("KVM_GET_TSC_KHZ: 0 kHz")
	}
	return uint64(n), nil
}

// msrTSCOffset is the guest's IA32_TSC (KVM_GET_MSRS) minus the host's
// TSC, from the narrowest of a few host readings around the ioctl. It
// also returns that bracket's width in ticks.
func msrTSCOffset(vcpuFd uintptr) (off int64, width uint64, err error) {
	width = ^uint64(0)
	for range 5 {
		h0 := RDTSC()
		g, err := readMSR(vcpuFd, msrTSC)
		h1 := RDTSC()
		if err != nil {
			return 0, 0, err
		}
		if h1-h0 < width {
			width = h1 - h0
			off = int64(g - (h0 + (h1-h0)/2))
		}
	}
	return off, width, nil
}

// TSCMode says how a guest's rdtsc relates to the host's TSC.
type TSCMode int

const (
	// TSCUnknown: the guest's rdtsc matches neither; no TSC clock.
	TSCUnknown TSCMode = iota
	// TSCHost: the guest's rdtsc reads the host's TSC unchanged (PVM,
	// which does not virtualize it).
	TSCHost
	// TSCOffsetMSR: the guest's rdtsc reads the host's TSC plus the
	// offset KVM keeps, which KVM_GET_MSRS shows (hardware KVM).
	TSCOffsetMSR
)

func (m TSCMode) String() string {
	switch m {
	case TSCHost:
		return "host TSC"
	case TSCOffsetMSR:
		return "host TSC + KVM offset"
	}
	return "unknown"
}

var tscModeProbe struct {
	once sync.Once
	mode TSCMode
	err  error
}

// GuestTSCMode finds out, once per process, how a guest's rdtsc relates
// to the host's TSC: it runs `lfence; rdtsc` in a throwaway machine and
// compares the value with host TSC readings around the run and with the
// guest's IA32_TSC as KVM_GET_MSRS reports it.
func GuestTSCMode() (TSCMode, error) {
	tscModeProbe.once.Do(func() { tscModeProbe.mode, tscModeProbe.err = probeTSCMode() })
	return tscModeProbe.mode, tscModeProbe.err
}

func probeTSCMode() (TSCMode, error) {
	m, c, err := probeMachine([]byte{0x0F, 0xAE, 0xE8, 0x0F, 0x31, 0x0F, 0x05}, false) // lfence; rdtsc; syscall
	if err != nil {
		return TSCUnknown, err
	}
	defer m.Close()
	h0 := RDTSC()
	ex, err := c.Run()
	h1 := RDTSC()
	if err != nil {
		return TSCUnknown, err
	}
	if ex.Kind != ExitSyscall {
		return TSCUnknown, fmt.Errorf("probing the guest's TSC: exit %v", ex.Kind)
	}
	r := c.Regs()
	g := r.RDX<<32 | r.RAX&0xffffffff
	if h0 <= g && g <= h1 {
		return TSCHost, nil
	}
	off, width, err := msrTSCOffset(c.fd)
	if err != nil {
		return TSCUnknown, nil
	}
	if lo, hi := h0+uint64(off)-width, h1+uint64(off)+width; lo <= g && g <= hi {
		return TSCOffsetMSR, nil
	}
	return TSCUnknown, nil
}

// GuestTSCOffset is what the guest's rdtsc on c reads minus the host's
// TSC (RDTSC) at the same moment, in mode, and how uncertain it is, in
// ticks.
func (c *VCPU) GuestTSCOffset(mode TSCMode) (off int64, width uint64, err error) {
	switch mode {
	case TSCHost:
		return 0, 0, nil
	case TSCOffsetMSR:
		return msrTSCOffset(c.fd)
	}
	return 0, 0, errors.New("the guest's TSC does not follow the host's in a known way")
}
