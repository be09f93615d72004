package vmm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"unsafe"

	"github.com/bobuhiro11/gokvm/kvm"
	"golang.org/x/sys/unix"
)

// What gokvm's kvm package lacks: the kvm_run layout beyond the exit union
// (KVM_CAP_SYNC_REGS), immediate_exit, MSRs, CPUID and XCRs in the shapes
// used here. Offsets are from linux/kvm.h for x86-64.
const (
	runExitReason   = 8
	runExitData     = 32  // the exit union
	runValidRegs    = 288 // kvm_valid_regs
	runDirtyRegs    = 296 // kvm_dirty_regs
	runSyncRegs     = 304 // struct kvm_regs
	runSyncSregs    = 304 + 144
	syncRegsBit     = 1 << 0 // KVM_SYNC_X86_REGS
	syncSregsBit    = 1 << 1 // KVM_SYNC_X86_SREGS
	runImmediateExt = 1

	capSyncRegs      = 74
	capImmediateExit = 136
	capDisableQuirks = 213 // KVM_CAP_DISABLE_QUIRKS2

	// quirkFixHypercall is KVM_X86_QUIRK_FIX_HYPERCALL_INSN: KVM rewrites
	// a guest's vmmcall into vmcall (or back) in guest memory.
	quirkFixHypercall = 1 << 5

	ioctlEnableCap = 0xa3

	ioctlSetMSRs         = 0x89
	ioctlGetSupportedCPU = 0x05
	ioctlSetCPUID2       = 0x90
	ioctlGetXCRS         = 0xa6
	ioctlSetXCRS         = 0xa7
	ioctlGetXSave        = 0xa4
	ioctlSetXSave        = 0xa5

	msrSTAR        = 0xC0000081
	msrLSTAR       = 0xC0000082
	msrCSTAR       = 0xC0000083
	msrSFMASK      = 0xC0000084
	msrMTRRDefType = 0x2FF
	msrPAT         = 0x277
)

// ioctl is kvm.Ioctl retried while a signal interrupts it: the Go runtime
// preempts goroutines with SIGURG (and Kick uses it too), so any ioctl may
// fail with EINTR without having done anything.
func ioctl(fd, op, arg uintptr) (uintptr, error) {
	for {
		r, err := kvm.Ioctl(fd, op, arg)
		if err != unix.EINTR {
			return r, err
		}
	}
}

// retry calls one of gokvm's ioctl wrappers until no signal interrupts it.
func retry(f func() error) error {
	for {
		if err := f(); !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// retryValue is retry for wrappers that return a value.
func retryValue[T any](f func() (T, error)) (T, error) {
	for {
		v, err := f()
		if !errors.Is(err, unix.EINTR) {
			return v, err
		}
	}
}

func getSregs(vcpuFd uintptr) (*kvm.Sregs, error) {
	s, err := retryValue(func() (*kvm.Sregs, error) { return kvm.GetSregs(vcpuFd) })
	if err != nil {
		return nil, fmt.Errorf("KVM_GET_SREGS: %w", err)
	}
	return s, nil
}

func setSregs(vcpuFd uintptr, s *kvm.Sregs) error {
	if err := retry(func() error { return kvm.SetSregs(vcpuFd, s) }); err != nil {
		return fmt.Errorf("KVM_SET_SREGS: %w", err)
	}
	return nil
}

// enableCap is KVM_ENABLE_CAP on a VM with the capability's first argument.
func enableCap(vmFd uintptr, capability uint32, arg uint64) error {
	var c struct {
		Cap, Flags uint32
		Args       [4]uint64
		_          [64]byte
	}
	c.Cap, c.Args[0] = capability, arg
	_, err := ioctl(vmFd, kvm.IIOW(ioctlEnableCap, unsafe.Sizeof(c)), uintptr(unsafe.Pointer(&c)))
	return err
}

// setMSRs writes model-specific registers with KVM_SET_MSRS.
func setMSRs(vcpuFd uintptr, msrs map[uint32]uint64) error {
	buf := make([]byte, 8+16*len(msrs))
	binary.LittleEndian.PutUint32(buf, uint32(len(msrs)))
	i := 0
	for idx, val := range msrs {
		binary.LittleEndian.PutUint32(buf[8+16*i:], idx)
		binary.LittleEndian.PutUint64(buf[8+16*i+8:], val)
		i++
	}
	n, err := ioctl(vcpuFd, kvm.IIOW(ioctlSetMSRs, 8), uintptr(unsafe.Pointer(&buf[0])))
	if err != nil {
		return fmt.Errorf("KVM_SET_MSRS: %w", err)
	}
	if int(n) != len(msrs) {
		return fmt.Errorf("KVM_SET_MSRS: only %d of %d MSRs accepted", n, len(msrs))
	}
	return nil
}

// cpuidEntry is struct kvm_cpuid_entry2.
type cpuidEntry struct {
	Function, Index, Flags, Eax, Ebx, Ecx, Edx uint32
	_                                          [3]uint32
}

const maxCPUIDEntries = 256

type cpuidTable struct {
	Nent    uint32
	_       uint32
	Entries [maxCPUIDEntries]cpuidEntry
}

// lookup finds a leaf (and subleaf, where the leaf has significant
// indexes) in the table.
func (t *cpuidTable) lookup(leaf, index uint32) (cpuidEntry, bool) {
	const significantIndex = 1 // KVM_CPUID_FLAG_SIGNIFCANT_INDEX
	for _, e := range t.Entries[:min(t.Nent, maxCPUIDEntries)] {
		if e.Function == leaf && (e.Flags&significantIndex == 0 || e.Index == index) {
			return e, true
		}
	}
	return cpuidEntry{}, false
}

// physBits returns the physical address width in CPUID leaf 0x80000008
// (EAX[7:0]), 0 when the table lacks the leaf.
func (t *cpuidTable) physBits() uint {
	for _, e := range t.Entries[:min(t.Nent, maxCPUIDEntries)] {
		if e.Function == 0x80000008 {
			return uint(e.Eax & 0xff)
		}
	}
	return 0
}

// supportedCPUID asks KVM which CPUID leaves it can present to a guest.
// The answer is the host's, the same for every machine, so it is asked
// once per process (it costs about a third of making a machine, which
// matters to a verify that makes hundreds); callers copy the table
// before changing it.
func supportedCPUID(kvmFd uintptr) (*cpuidTable, error) {
	cpuidCache.Lock()
	defer cpuidCache.Unlock()
	if cpuidCache.t != nil {
		return cpuidCache.t, nil
	}
	t := &cpuidTable{Nent: maxCPUIDEntries}
	_, err := ioctl(kvmFd, kvm.IIOWR(ioctlGetSupportedCPU, 8), uintptr(unsafe.Pointer(t)))
	if err != nil {
		return nil, fmt.Errorf("KVM_GET_SUPPORTED_CPUID: %w", err)
	}
	cpuidCache.t = t
	return t, nil
}

var cpuidCache struct {
	sync.Mutex
	t *cpuidTable
}

func setCPUID(vcpuFd uintptr, t *cpuidTable) error {
	_, err := ioctl(vcpuFd, kvm.IIOW(ioctlSetCPUID2, 8), uintptr(unsafe.Pointer(t)))
	if err != nil {
		return fmt.Errorf("KVM_SET_CPUID2: %w", err)
	}
	return nil
}

// xcrs is struct kvm_xcrs.
type xcrs struct {
	Nr    uint32
	Flags uint32
	XCR   [16]struct {
		Index, _ uint32
		Value    uint64
	}
	_ [16]uint64
}

func setXCR0(vcpuFd uintptr, v uint64) error {
	x := &xcrs{Nr: 1}
	x.XCR[0].Value = v
	_, err := ioctl(vcpuFd, kvm.IIOW(ioctlSetXCRS, unsafe.Sizeof(*x)), uintptr(unsafe.Pointer(x)))
	if err != nil {
		return fmt.Errorf("KVM_SET_XCRS: %w", err)
	}
	return nil
}

// XSaveSize is the size of struct kvm_xsave: the legacy FXSAVE area, the
// XSAVE header and the extended state components KVM reports.
const XSaveSize = 4096

func getXSave(vcpuFd uintptr) ([]byte, error) {
	buf := make([]byte, XSaveSize)
	_, err := ioctl(vcpuFd, kvm.IIOR(ioctlGetXSave, XSaveSize), uintptr(unsafe.Pointer(&buf[0])))
	if err != nil {
		return nil, fmt.Errorf("KVM_GET_XSAVE: %w", err)
	}
	canonicalXSave(buf)
	return buf, nil
}

// canonicalXSave clears the x87 bit of the XSAVE header's XSTATE_BV
// (offset 512) when the x87 state is its initial state (FCW 0x037F,
// everything else zero): the CPU may report the untouched x87 state
// either way (its "in use" tracking depends on what ran on the host
// thread before), and a restore loads the same registers from both, so
// that images of the same point are the same bytes. The bit stays when
// no SSE or AVX bit is left to make KVM_SET_XSAVE take MXCSR from the
// buffer, unless MXCSR has its initial value too.
func canonicalXSave(buf []byte) {
	const xstateBV = 512
	if len(buf) < xstateBV+8 {
		return
	}
	bv := binary.LittleEndian.Uint64(buf[xstateBV:])
	if bv&1 == 0 || binary.LittleEndian.Uint16(buf[0:]) != 0x037F {
		return
	}
	for _, b := range buf[2:24] { // FSW, FTW, FOP, FIP, FDP
		if b != 0 {
			return
		}
	}
	for _, b := range buf[32:160] { // ST0-ST7
		if b != 0 {
			return
		}
	}
	if bv&6 == 0 && binary.LittleEndian.Uint32(buf[24:]) != 0x1F80 {
		return
	}
	binary.LittleEndian.PutUint64(buf[xstateBV:], bv&^1)
}

func setXSave(vcpuFd uintptr, buf []byte) error {
	if len(buf) != XSaveSize {
		return fmt.Errorf("KVM_SET_XSAVE: FPU state is %d bytes, want %d", len(buf), XSaveSize)
	}
	_, err := ioctl(vcpuFd, kvm.IIOW(ioctlSetXSave, XSaveSize), uintptr(unsafe.Pointer(&buf[0])))
	if err != nil {
		return fmt.Errorf("KVM_SET_XSAVE: %w", err)
	}
	return nil
}
