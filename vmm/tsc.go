package vmm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
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

// knownTSCMode is the mode the first MeasureTSC of this process found:
// it is a property of the KVM, not of one machine.
var knownTSCMode atomic.Int32

// TSCOffset is the guest TSC minus the host's on c, without running it,
// once a MeasureTSC of this process has found the mode (ok false
// before).
func (c *VCPU) TSCOffset() (off int64, ok bool, err error) {
	switch TSCMode(knownTSCMode.Load()) {
	case TSCHost:
		return 0, true, nil
	case TSCOffsetMSR:
		off, _, err := msrTSCOffset(c.fd)
		return off, err == nil, err
	}
	return 0, false, nil
}

// TSCProbeCode is the code MeasureTSC runs: lfence; rdtsc; syscall.
var TSCProbeCode = []byte{0x0F, 0xAE, 0xE8, 0x0F, 0x31, 0x0F, 0x05}

// MeasureTSC finds out how the guest's rdtsc on c relates to the host's
// TSC: it runs TSCProbeCode at codeVA, which cr3 must map for user
// execution, and compares the value with host TSC readings around the
// run and with the guest's IA32_TSC as KVM_GET_MSRS reports it. It
// returns the mode and the guest TSC minus the host's. Call it before
// the vCPU's first user context: that context's StartContext replaces
// what the probe left.
func (c *VCPU) MeasureTSC(cr3, codeVA uint64) (TSCMode, int64, error) {
	if err := c.Start(Regs{RIP: codeVA}, cr3, 0); err != nil {
		return TSCUnknown, 0, err
	}
	h0 := RDTSC()
	ex, err := c.Run()
	h1 := RDTSC()
	if err != nil {
		return TSCUnknown, 0, err
	}
	if ex.Kind != ExitSyscall {
		return TSCUnknown, 0, fmt.Errorf("probing the guest's TSC: exit %v", ex.Kind)
	}
	r := c.Regs()
	g := r.RDX<<32 | r.RAX&0xffffffff
	if h0 <= g && g <= h1 {
		knownTSCMode.Store(int32(TSCHost))
		return TSCHost, 0, nil
	}
	off, width, err := msrTSCOffset(c.fd)
	if err != nil {
		return TSCUnknown, 0, err
	}
	if lo, hi := h0+uint64(off)-width, h1+uint64(off)+width; lo <= g && g <= hi {
		knownTSCMode.Store(int32(TSCOffsetMSR))
		return TSCOffsetMSR, off, nil
	}
	return TSCUnknown, 0, errors.New("the guest's TSC follows neither the host's nor KVM's offset")
}
