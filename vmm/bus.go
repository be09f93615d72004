package vmm

import (
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
)

// Device is an MMIO device model. Off is the offset of the access within
// the device's region and len(data) its width (1, 2, 4 or 8 bytes). Read
// fills data; Write consumes it. An error means the access is one the
// device does not accept (for example a wide store to a BSR): the task
// that made it gets the signal the error carries (see AccessFault).
type Device interface {
	Name() string
	Read(off uint64, data []byte) error
	Write(off uint64, data []byte) error
}

// AccessFault is a device's refusal of an access. Signal is the signal
// the faulting task receives (SIGBUS by default) and Code its si_code.
type AccessFault struct {
	Signal int
	Code   int
	Reason string
}

func (e *AccessFault) Error() string { return e.Reason }

type region struct {
	base, size uint64
	dev        Device
	count      atomic.Uint64
}

// Bus routes guest-physical MMIO accesses to device models. Regions never
// overlap guest RAM or each other. It is safe for concurrent use.
type Bus struct {
	mu      sync.RWMutex
	regions []*region // sorted by base
	// last is the latest access a device completed (see LastAccess).
	last atomic.Pointer[Access]
}

// Access is one device access, as LastAccess reports it.
type Access struct {
	Device string // the device's Name
	Off    uint64 // offset within the device's region
	Size   int
	Write  bool
}

// NewBus returns an empty bus.
func NewBus() *Bus { return &Bus{} }

// Register claims [base, base+size) for dev.
func (b *Bus) Register(base, size uint64, dev Device) error {
	if size == 0 || base+size < base {
		return fmt.Errorf("mmio: bad region %#x+%#x for %s", base, size, dev.Name())
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, r := range b.regions {
		if base < r.base+r.size && r.base < base+size {
			return fmt.Errorf("mmio: %s at %#x+%#x overlaps %s at %#x+%#x", dev.Name(), base, size, r.dev.Name(), r.base, r.size)
		}
	}
	b.regions = append(b.regions, &region{base: base, size: size, dev: dev})
	sort.Slice(b.regions, func(i, j int) bool { return b.regions[i].base < b.regions[j].base })
	return nil
}

func (b *Bus) find(addr uint64) *region {
	b.mu.RLock()
	defer b.mu.RUnlock()
	i := sort.Search(len(b.regions), func(i int) bool { return b.regions[i].base+b.regions[i].size > addr })
	if i < len(b.regions) && b.regions[i].base <= addr {
		return b.regions[i]
	}
	return nil
}

// Access performs one MMIO access. It returns an error when no device
// claims addr or when the device refuses the access.
func (b *Bus) Access(addr uint64, data []byte, write bool) error {
	r := b.find(addr)
	if r == nil {
		return fmt.Errorf("mmio: no device at guest-physical %#x", addr)
	}
	if addr+uint64(len(data)) > r.base+r.size {
		return &AccessFault{Signal: 7, Code: 2, Reason: fmt.Sprintf("%d-byte access at %#x crosses the end of %s", len(data), addr, r.dev.Name())}
	}
	var err error
	if write {
		err = r.dev.Write(addr-r.base, data)
	} else {
		err = r.dev.Read(addr-r.base, data)
	}
	if err == nil {
		r.count.Add(1)
		b.last.Store(&Access{Device: r.dev.Name(), Off: addr - r.base, Size: len(data), Write: write})
	}
	return err
}

// LastAccess is the latest access a device completed (the last one
// Accesses counts), or nil.
func (b *Bus) LastAccess() *Access { return b.last.Load() }

// Accesses returns the number of accesses each device has completed, by
// name: an access the device refused is not counted (as VCPU.StopAfterMMIO
// does not count it).
func (b *Bus) Accesses() map[string]uint64 {
	b.mu.RLock()
	defer b.mu.RUnlock()
	out := make(map[string]uint64, len(b.regions))
	for _, r := range b.regions {
		out[r.dev.Name()] += r.count.Load()
	}
	return out
}

// TotalAccesses is the sum of Accesses.
func (b *Bus) TotalAccesses() uint64 {
	var n uint64
	for _, c := range b.Accesses() {
		n += c
	}
	return n
}
