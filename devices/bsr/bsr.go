package bsr

import (
	"fmt"
	"sync"

	"github.com/emuckpt/emuckpt/vmm"
)

// MaxRegisters is the number of registers a Set may hold: Linux's bsr
// driver reserves BSR_MAX_DEVS = 32 minor numbers.
const MaxRegisters = 32

// Signal numbers and si_codes of the faults a register raises.
const (
	sigbus    = 7 // SIGBUS
	busAdrAln = 1 // BUS_ADRALN: invalid address alignment
	busAdrErr = 2 // BUS_ADRERR: nonexistent physical address
)

// Set is the machine's Barrier Synchronization Registers, each with its own
// page-aligned MMIO window, laid out one after the other.
type Set struct {
	base, size uint64
	regs       []*Register
}

// Register is one Barrier Synchronization Register. It is a vmm.Device
// serving its MMIO window; every mapping of the register, in any task of
// any process, reaches this one object, so they all share its bytes. It is
// safe for concurrent use.
type Register struct {
	name  string
	spec  Spec
	minor int
	base  uint64
	size  uint64
	mask  uint64 // Stride - 1

	mu    sync.Mutex
	bytes []byte // one per participant; len == spec.Bytes
}

// New makes the registers described by specs (zero Stride and Length take
// ParseSpec's defaults), named bsr<bytes>_<n> with n counting the registers
// of each size in order, and lays out their windows from base: each takes
// Spec.WindowSize() bytes, page aligned, right after the previous one. An
// empty specs gives an empty Set.
func New(specs []Spec, base uint64) (*Set, error) {
	if base%PageSize != 0 {
		return nil, fmt.Errorf("bsr: MMIO base %#x is not page aligned", base)
	}
	if len(specs) > MaxRegisters {
		return nil, fmt.Errorf("bsr: %d registers asked for; Linux's bsr driver has minors for at most %d", len(specs), MaxRegisters)
	}
	s := &Set{base: base}
	count := map[uint64]int{}
	addr := base
	for i, spec := range specs {
		spec = spec.withDefaults()
		if err := spec.Validate(); err != nil {
			return nil, fmt.Errorf("bsr: register %d (%s): %v", i, spec, err)
		}
		size := spec.WindowSize()
		if addr+size < addr {
			return nil, fmt.Errorf("bsr: the windows from %#x overflow the address space", base)
		}
		r := &Register{
			name:  fmt.Sprintf("bsr%d_%d", spec.Bytes, count[spec.Bytes]),
			spec:  spec,
			minor: i,
			base:  addr,
			size:  size,
			mask:  spec.Stride - 1,
			bytes: make([]byte, spec.Bytes),
		}
		count[spec.Bytes]++
		s.regs = append(s.regs, r)
		addr += size
	}
	s.size = addr - base
	return s, nil
}

// Registers returns the registers in the order of their specs (which is
// also the order of their minor numbers and windows).
func (s *Set) Registers() []*Register { return append([]*Register(nil), s.regs...) }

// Lookup returns the register named name (such as "bsr8_0"), or nil.
func (s *Set) Lookup(name string) *Register {
	for _, r := range s.regs {
		if r.name == name {
			return r
		}
	}
	return nil
}

// Base and Size are the guest-physical range all the windows occupy.
func (s *Set) Base() uint64 { return s.base }

// Size is the total size of the windows, in bytes.
func (s *Set) Size() uint64 { return s.size }

// Reset clears every register.
func (s *Set) Reset() {
	for _, r := range s.regs {
		r.Reset()
	}
}

// Name is the register's device name, such as "bsr8_0".
func (r *Register) Name() string { return r.name }

// Spec is the register's geometry.
func (r *Register) Spec() Spec { return r.spec }

// Minor is the register's minor device number (its index in the Set).
func (r *Register) Minor() int { return r.minor }

// MMIOBase is the guest-physical address of the register's window.
func (r *Register) MMIOBase() uint64 { return r.base }

// MMIOSize is the size of the register's window: Spec().WindowSize().
func (r *Register) MMIOSize() uint64 { return r.size }

// Read is a load of len(data) bytes at offset off of the window. Loads of
// 1, 2, 4 and 8 bytes at an offset aligned to their width return the bytes
// at those offsets, in memory order: participant byte off%Stride, or 0 for
// the bytes of a stride beyond the register. Any other width is SIGBUS
// (BUS_ADRERR), as is an access outside the window; a misaligned load is
// SIGBUS (BUS_ADRALN). Loads have no side effects.
func (r *Register) Read(off uint64, data []byte) error {
	n := uint64(len(data))
	switch n {
	case 1, 2, 4, 8:
	default:
		return r.fault(busAdrErr, "%d-byte load at offset %#x: BSR loads are 1, 2, 4 or 8 bytes", n, off)
	}
	if off >= r.size || n > r.size-off {
		return r.fault(busAdrErr, "%d-byte load at offset %#x: outside the %#x-byte window", n, off, r.size)
	}
	if off&(n-1) != 0 {
		return r.fault(busAdrAln, "%d-byte load at offset %#x: BSR loads must be aligned to their width", n, off)
	}
	o := off & r.mask
	nb := uint64(len(r.bytes))
	r.mu.Lock()
	if o+n <= nb {
		copy(data, r.bytes[o:o+n])
	} else {
		// Not reached with the sizes Validate allows (an aligned load of
		// at most 8 bytes never straddles the end of a register of 8·k
		// bytes), but kept general.
		for i := range data {
			if p := (off + uint64(i)) & r.mask; p < nb {
				data[i] = r.bytes[p]
			} else {
				data[i] = 0
			}
		}
	}
	r.mu.Unlock()
	return nil
}

// Write is a store at offset off of the window. Only single-byte stores
// are accepted: one sets participant byte off%Stride to data[0] (a store
// into the part of a stride beyond the register is ignored). A wider store,
// or one outside the window, is SIGBUS (BUS_ADRERR) and changes nothing.
func (r *Register) Write(off uint64, data []byte) error {
	if len(data) != 1 {
		return r.fault(busAdrErr, "%d-byte store at offset %#x: BSR stores must be single bytes, one participant's byte at a time", len(data), off)
	}
	if off >= r.size {
		return r.fault(busAdrErr, "1-byte store at offset %#x: outside the %#x-byte window", off, r.size)
	}
	o := off & r.mask
	if o >= uint64(len(r.bytes)) {
		return nil
	}
	r.mu.Lock()
	r.bytes[o] = data[0]
	r.mu.Unlock()
	return nil
}

func (r *Register) fault(code int, format string, args ...any) error {
	return &vmm.AccessFault{
		Signal: sigbus,
		Code:   code,
		Reason: r.name + ": " + fmt.Sprintf(format, args...),
	}
}

// peek copies the window's contents at [off, off+len(p)) as byte loads
// would see them; the caller has checked the range.
func (r *Register) peek(off uint64, p []byte) {
	nb := uint64(len(r.bytes))
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range p {
		if o := (off + uint64(i)) & r.mask; o < nb {
			p[i] = r.bytes[o]
		} else {
			p[i] = 0
		}
	}
}

// Bytes returns a copy of the register's participant bytes.
func (r *Register) Bytes() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]byte(nil), r.bytes...)
}

// Reset clears every participant byte, as at power-on.
func (r *Register) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	clear(r.bytes)
}

// String describes the register for logs: "bsr8_0 (8:8:4096) at 0xfeb00000".
func (r *Register) String() string {
	return fmt.Sprintf("%s (%s) at %#x", r.name, r.spec, r.base)
}
