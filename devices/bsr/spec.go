package bsr

import (
	"fmt"
	"math/bits"
	"strconv"
	"strings"
)

// PageSize is the size of a guest page, the unit of every MMIO window.
const PageSize = 4096

// MaxLength is the largest bsr_length a register may have. Real BSR regions
// are at most a 64 KiB POWER page; 1 MiB leaves room for experiments while
// keeping the windows of a full set well inside the MMIO hole.
const MaxLength = 1 << 20

// sizes are the register sizes Linux's bsr driver knows (BSR_8, BSR_16,
// BSR_64, BSR_128, BSR_4096); any other size would be BSR_UNKNOWN there.
var sizes = []uint64{8, 16, 64, 128, 4096}

// Spec describes one Barrier Synchronization Register, as the firmware's
// device tree does: Bytes is "ibm,#lock-bytes" (the number of participants,
// sysfs bsr_size), Stride is "ibm,lock-stride" (the register repeats every
// Stride bytes, sysfs bsr_stride) and Length is the size of its "reg"
// region (what mmap may map, sysfs bsr_length).
type Spec struct {
	Bytes, Stride, Length uint64
}

// DefaultSpecs is the set of registers emuckpt gives a guest when no --bsr
// flag is given: one register of each size a POWER machine has, each with
// its stride equal to its size and one page of length (bsr8_0, bsr16_0,
// bsr64_0, bsr128_0).
func DefaultSpecs() []Spec {
	return []Spec{
		{Bytes: 8, Stride: 8, Length: PageSize},
		{Bytes: 16, Stride: 16, Length: PageSize},
		{Bytes: 64, Stride: 64, Length: PageSize},
		{Bytes: 128, Stride: 128, Length: PageSize},
	}
}

// ParseSpec parses the value of a --bsr flag, BYTES[:STRIDE[:LENGTH]].
// Each number is decimal or 0x-prefixed hexadecimal and may end in K or M
// (KiB, MiB). An omitted or empty STRIDE is BYTES; an omitted or empty
// LENGTH is one page, or STRIDE if that is larger. The result is validated
// as Spec.Validate does.
func ParseSpec(s string) (Spec, error) {
	fields := strings.Split(s, ":")
	if len(fields) > 3 {
		return Spec{}, fmt.Errorf("bsr %q: too many fields; the form is BYTES[:STRIDE[:LENGTH]], e.g. 8 or 128:128:4096", s)
	}
	var vals [3]uint64
	names := [3]string{"BYTES", "STRIDE", "LENGTH"}
	for i, f := range fields {
		if f == "" {
			if i == 0 {
				return Spec{}, fmt.Errorf("bsr %q: BYTES is missing; the form is BYTES[:STRIDE[:LENGTH]], e.g. 8 or 128:128:4096", s)
			}
			continue
		}
		v, err := parseSize(f)
		if err != nil {
			return Spec{}, fmt.Errorf("bsr %q: %s %q: %v", s, names[i], f, err)
		}
		if v == 0 {
			return Spec{}, fmt.Errorf("bsr %q: %s is 0; leave the field out for the default", s, names[i])
		}
		vals[i] = v
	}
	spec := Spec{Bytes: vals[0], Stride: vals[1], Length: vals[2]}.withDefaults()
	if err := spec.Validate(); err != nil {
		return Spec{}, fmt.Errorf("bsr %q: %v", s, err)
	}
	return spec, nil
}

// parseSize parses a decimal or 0x-hex number with an optional K or M
// suffix.
func parseSize(f string) (uint64, error) {
	mult := uint64(1)
	switch {
	case strings.HasSuffix(f, "K") || strings.HasSuffix(f, "k"):
		mult, f = 1<<10, f[:len(f)-1]
	case strings.HasSuffix(f, "M") || strings.HasSuffix(f, "m"):
		mult, f = 1<<20, f[:len(f)-1]
	}
	base := 10
	if strings.HasPrefix(f, "0x") || strings.HasPrefix(f, "0X") {
		base, f = 16, f[2:]
	}
	if f == "" || f[0] == '+' || f[0] == '-' || strings.Contains(f, "_") {
		return 0, fmt.Errorf("not a number")
	}
	v, err := strconv.ParseUint(f, base, 64)
	if err != nil {
		return 0, fmt.Errorf("not a number")
	}
	hi, lo := bits.Mul64(v, mult)
	if hi != 0 {
		return 0, fmt.Errorf("too large")
	}
	return lo, nil
}

// withDefaults fills in a zero Stride (Bytes) and a zero Length (a page, or
// the stride if larger).
func (s Spec) withDefaults() Spec {
	if s.Stride == 0 {
		s.Stride = s.Bytes
	}
	if s.Length == 0 {
		s.Length = max(PageSize, s.Stride)
	}
	return s
}

// Validate checks a fully specified Spec:
//   - Bytes is a size Linux's bsr driver knows: 8, 16, 64, 128 or 4096;
//   - Stride is a power of two, at least Bytes, and no larger than the
//     register's window;
//   - Length is at least Bytes, at most MaxLength, and either at most one
//     page or a whole number of pages.
func (s Spec) Validate() error {
	if !knownSize(s.Bytes) {
		return fmt.Errorf("size %d is not one a BSR has; use 8, 16, 64, 128 or 4096 (the sizes Linux's bsr driver knows)", s.Bytes)
	}
	if s.Stride < s.Bytes {
		return fmt.Errorf("stride %d is less than the register's %d bytes; the register repeats every STRIDE bytes, so STRIDE must be at least BYTES", s.Stride, s.Bytes)
	}
	if bits.OnesCount64(s.Stride) != 1 {
		return fmt.Errorf("stride %d is not a power of two", s.Stride)
	}
	if s.Length < s.Bytes {
		return fmt.Errorf("length %d is less than the register's %d bytes", s.Length, s.Bytes)
	}
	if s.Length > MaxLength {
		return fmt.Errorf("length %d is more than the largest supported, %d", s.Length, MaxLength)
	}
	if s.Length > PageSize && s.Length%PageSize != 0 {
		return fmt.Errorf("length %d is more than a page but not a multiple of the page size %d", s.Length, PageSize)
	}
	if s.Stride > s.WindowSize() {
		return fmt.Errorf("stride %d is larger than the register's %d-byte window; make LENGTH at least STRIDE", s.Stride, s.WindowSize())
	}
	return nil
}

func knownSize(n uint64) bool {
	for _, s := range sizes {
		if n == s {
			return true
		}
	}
	return false
}

// WindowSize is the size of the register's guest-physical MMIO window:
// Length, or one page for a register shorter than a page (Linux maps such a
// register as one 4 KiB page).
func (s Spec) WindowSize() uint64 { return max(s.Length, PageSize) }

// String formats the Spec as ParseSpec accepts it, BYTES:STRIDE:LENGTH.
func (s Spec) String() string {
	return fmt.Sprintf("%d:%d:%d", s.Bytes, s.Stride, s.Length)
}
