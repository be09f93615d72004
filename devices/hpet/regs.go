package hpet

import "fmt"

// The HPET's place in the guest-physical address space and in /dev.
const (
	// MMIOBase is the guest-physical address of the register block, the
	// address PC firmware conventionally gives the first HPET.
	MMIOBase = 0xFED00000
	// MMIOSize is the size of the MMIO region: one page. The spec's
	// register block is 1 KiB; the rest of the page is reserved (reads 0).
	MMIOSize = 0x1000

	// DevicePath is the character device of Linux's driver.
	DevicePath = "/dev/hpet"
	// DeviceMajor and DeviceMinor are its device number: a misc device
	// (major 10) with minor HPET_MINOR, 228.
	DeviceMajor = 10
	DeviceMinor = 228
	// DevicePerm is the permission bits of /dev/hpet (see docs/DEVICES.md).
	DevicePerm = 0o644

	// VMAType is the checkpoint VMA type of a mapping of /dev/hpet.
	VMAType = "hpet"
)

// Identification in the General Capabilities and ID register.
const (
	// VendorID is Intel's PCI vendor id: emuckpt's HPET reads like the
	// one in Intel's ICH chipsets (GCAP_ID low half 0x8086A201 with three
	// timers), the HPET most software has met.
	VendorID = 0x8086
	// RevisionID is the REV_ID field. The spec requires it nonzero.
	RevisionID = 1
)

// Register offsets within the block (HPET 1.0a, section 2.3).
const (
	RegCapID     = 0x000 // General Capabilities and ID (read-only)
	RegConfig    = 0x010 // General Configuration
	RegIntStatus = 0x020 // General Interrupt Status
	RegCounter   = 0x0F0 // Main Counter Value

	RegTimer0    = 0x100 // timer N's registers start at RegTimer0 + N*TimerStride
	TimerStride  = 0x20
	TimerConfig  = 0x00 // Timer N Configuration and Capability
	TimerCompare = 0x08 // Timer N Comparator Value
	TimerFSB     = 0x10 // Timer N FSB Interrupt Route
)

// Fields of the General Capabilities and ID register.
const (
	CapRevIDMask      = 0xff
	CapNumTimShift    = 8 // NUM_TIM_CAP [12:8]: number of timers - 1
	CapNumTimMask     = 0x1f << CapNumTimShift
	CapCountSize      = 1 << 13 // COUNT_SIZE_CAP: 64-bit main counter
	CapLegacyRoute    = 1 << 15 // LEG_RT_CAP
	CapVendorShift    = 16      // VENDOR_ID [31:16]
	CapPeriodShift    = 32      // COUNTER_CLK_PERIOD [63:32], femtoseconds
	MaxPeriodFS       = 0x05F5E100
	DefaultPeriodFS   = 69841279 // 14.31818 MHz
	DefaultTimers     = 3
	MaxTimers         = 32
	femtosecondsPerNS = 1_000_000
)

// Bits of the General Configuration register.
const (
	ConfEnable = 1 << 0 // ENABLE_CNF: the main counter runs, interrupts allowed
	ConfLegacy = 1 << 1 // LEG_RT_CNF: legacy replacement routing
)

// Bits of a Timer N Configuration and Capability register.
const (
	TnIntTypeLevel  = 1 << 1 // Tn_INT_TYPE_CNF: level-triggered
	TnIntEnable     = 1 << 2 // Tn_INT_ENB_CNF
	TnPeriodic      = 1 << 3 // Tn_TYPE_CNF: periodic mode
	TnPeriodicCap   = 1 << 4 // Tn_PER_INT_CAP (read-only)
	TnSize64Cap     = 1 << 5 // Tn_SIZE_CAP: 64-bit comparator (read-only)
	TnValSet        = 1 << 6 // Tn_VAL_SET_CNF (write-only: reads 0)
	Tn32Bit         = 1 << 8 // Tn_32MODE_CNF
	TnRouteShift    = 9      // Tn_INT_ROUTE_CNF [13:9]
	TnRouteMask     = 0x1f << TnRouteShift
	TnFSBEnable     = 1 << 14 // Tn_FSB_EN_CNF (read-only 0 here)
	TnFSBCap        = 1 << 15 // Tn_FSB_INT_DEL_CAP (read-only 0 here)
	TnRouteCapShift = 32      // Tn_INT_ROUTE_CAP [63:32]

	// RouteCap is every timer's Tn_INT_ROUTE_CAP: I/O APIC inputs 20-23,
	// as on Intel's ICH. Linux's driver skips the legacy IRQs 0-15 and
	// takes the first of these, 20.
	RouteCap = 0x00F00000
)

// Linux's ioctl numbers (include/uapi/linux/hpet.h).
const (
	HPET_IE_ON   = 0x6801     // _IO('h', 0x01)
	HPET_IE_OFF  = 0x6802     // _IO('h', 0x02)
	HPET_INFO    = 0x80186803 // _IOR('h', 0x03, struct hpet_info)
	HPET_EPI     = 0x6804     // _IO('h', 0x04)
	HPET_DPI     = 0x6805     // _IO('h', 0x05)
	HPET_IRQFREQ = 0x40086806 // _IOW('h', 0x06, unsigned long)

	// HPET_INFO_PERIODIC is hi_flags' bit for a periodic-capable timer
	// (it is Tn_PER_INT_CAP, which the driver copies).
	HPET_INFO_PERIODIC = 0x10
	// InfoSize is sizeof(struct hpet_info) on x86-64.
	InfoSize = 24

	// DefaultMaxUserFreq is Linux's HPET_USER_FREQ, the initial value of
	// the sysctl dev.hpet.max-user-freq.
	DefaultMaxUserFreq = 64
)

// RegisterName names the register at offset off of the block, as Linux's
// hpet.h does (HPET_ID, HPET_CFG, HPET_STATUS, HPET_COUNTER,
// HPET_Tn_CFG, HPET_Tn_CMP, HPET_Tn_ROUTE), with "+N" for a byte within
// it; "reserved+0xOFF" for anything else.
func RegisterName(off uint64) string {
	base, name := off&^7, ""
	switch base {
	case RegCapID:
		name = "HPET_ID"
	case RegConfig:
		name = "HPET_CFG"
	case RegIntStatus:
		name = "HPET_STATUS"
	case RegCounter:
		name = "HPET_COUNTER"
	}
	if name == "" && base >= RegTimer0 && base < RegTimer0+32*TimerStride {
		n := (base - RegTimer0) / TimerStride
		switch (base - RegTimer0) % TimerStride {
		case TimerConfig:
			name = fmt.Sprintf("HPET_T%d_CFG", n)
		case TimerCompare:
			name = fmt.Sprintf("HPET_T%d_CMP", n)
		case TimerFSB:
			name = fmt.Sprintf("HPET_T%d_ROUTE", n)
		}
	}
	if name == "" {
		return fmt.Sprintf("reserved+%#x", off)
	}
	if off != base {
		name += fmt.Sprintf("+%d", off-base)
	}
	return name
}
