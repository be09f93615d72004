package devices_test

import (
	"encoding/binary"
	"slices"
	"testing"
	"time"

	"github.com/emuckpt/emuckpt/devices/bsr"
	"github.com/emuckpt/emuckpt/devices/hpet"
	"github.com/emuckpt/emuckpt/guestmm"
	"github.com/emuckpt/emuckpt/internal/kvmtest"
	"github.com/emuckpt/emuckpt/vmm"
)

// The figures: what a guest access to a device page costs, as a multiple
// of the same access to a null device's page. Every access to an MMIO page
// is a VM exit handled on the host (vCPU.Run dispatches it to the bus and
// re-enters the guest), so the null device measures the exit itself and
// the ratios measure what the device models add to it.

const (
	codeVA = 0x400000
	devVA  = 0x10000000 // the device page under test, in every rig
	nullPA = 0xD0000000 // the null device: above guest RAM, below the BSRs
	bsrPA  = 0xE0000000 // where emuckpt puts the BSR windows

	// accessesPerRun is how many device accesses the guest makes between
	// two system calls (each Run returns at a system call).
	accessesPerRun = 100
)

// Access instructions, three bytes each, on the device page at [rbx],
// through rdx (which the loop leaves alone).
var (
	load8  = []byte{0x48, 0x8B, 0x13} // mov rdx, [rbx]
	store1 = []byte{0x88, 0x13, 0x90} // mov [rbx], dl; nop
)

// loopCode is the guest: accessesPerRun accesses, then a system call, for
// ever.
//
//	top:  mov ecx, accessesPerRun
//	loop: ACCESS
//	      dec ecx
//	      jnz loop
//	      mov eax, 39
//	      syscall
//	      jmp top
func loopCode(access []byte) []byte {
	c := []byte{0xB9}
	c = binary.LittleEndian.AppendUint32(c, accessesPerRun)
	loop := len(c)
	c = append(c, access...)
	c = append(c, 0xFF, 0xC9)                  // dec ecx
	c = append(c, 0x75, byte(loop-(len(c)+2))) // jnz loop
	c = append(c, 0xB8, 39, 0, 0, 0, 0x0F, 0x05)
	return append(c, 0xEB, byte(-(len(c) + 2))) // jmp top
}

// nullDevice is the baseline: loads read zeros, stores vanish.
type nullDevice struct{}

func (nullDevice) Name() string { return "null" }
func (nullDevice) Read(_ uint64, d []byte) error {
	clear(d)
	return nil
}
func (nullDevice) Write(uint64, []byte) error { return nil }

// rig is a machine whose one vCPU runs loopCode(access) at CPL3 against
// the page at pa, mapped at devVA as the kernel maps device pages:
// uncached (PCD|PWT), Special (no RAM frame behind it).
type rig struct {
	name string
	m    *vmm.Machine
	c    *vmm.VCPU
}

func newRig(tb testing.TB, name string, access []byte, pa uint64, dev vmm.Device) *rig {
	tb.Helper()
	kvmtest.Require(tb)
	m, err := vmm.New(vmm.Config{MemSize: 16 << 20})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { m.Close() })
	var base, size uint64 = pa, guestmm.PageSize
	if r, ok := dev.(interface{ MMIOBase() uint64 }); ok {
		base = r.MMIOBase()
	}
	if r, ok := dev.(interface{ MMIOSize() uint64 }); ok {
		size = r.MMIOSize()
	}
	if err := m.Bus.Register(base, size, dev); err != nil {
		tb.Fatal(err)
	}
	frames := guestmm.NewFrames(m.Mem(), vmm.RAMBase, m.MemSize())
	pt, err := guestmm.NewPageTables(m.Mem(), frames)
	if err != nil {
		tb.Fatal(err)
	}
	if err := vmm.MapKernel(pt); err != nil {
		tb.Fatal(err)
	}
	code, err := frames.Alloc()
	if err != nil {
		tb.Fatal(err)
	}
	copy(m.Mem()[code:], loopCode(access))
	if err := pt.Map(codeVA, code, guestmm.User); err != nil {
		tb.Fatal(err)
	}
	devFlags := guestmm.User | guestmm.Writable | guestmm.NX | guestmm.PCD | guestmm.PWT | guestmm.Special
	if err := pt.Map(devVA, pa, devFlags); err != nil {
		tb.Fatal(err)
	}
	c, err := m.NewVCPU()
	if err != nil {
		tb.Fatal(err)
	}
	if err := c.Start(vmm.Regs{RIP: codeVA, RBX: devVA}, pt.Root(), 0); err != nil {
		tb.Fatal(err)
	}
	r := &rig{name: name, m: m, c: c}
	// Check that every access really is an exit to the device.
	before := m.Bus.TotalAccesses()
	r.step(tb)
	if n := m.Bus.TotalAccesses() - before; n != accessesPerRun {
		tb.Fatalf("%s: %d device accesses in one run, want %d", name, n, accessesPerRun)
	}
	return r
}

// step runs the guest to its next system call: accessesPerRun accesses.
func (r *rig) step(tb testing.TB) {
	ex, err := r.c.Run()
	if err != nil {
		tb.Fatalf("%s: %v", r.name, err)
	}
	if ex.Kind != vmm.ExitSyscall {
		tb.Fatalf("%s: exit %v (%+v), want a system call", r.name, ex.Kind, ex)
	}
}

func newHPET(tb testing.TB) *hpet.HPET {
	start := time.Now()
	h, err := hpet.New(hpet.Config{}, hpet.ClockFunc(func() int64 { return int64(time.Since(start)) }))
	if err != nil {
		tb.Fatal(err)
	}
	h.Enable()
	return h
}

func newBSR(tb testing.TB) *bsr.Register {
	s, err := bsr.New(bsr.DefaultSpecs(), bsrPA)
	if err != nil {
		tb.Fatal(err)
	}
	return s.Registers()[0] // bsr8_0
}

// The rigs, in the order the figures are reported.
const (
	rawLoad = iota
	rawStore
	hpetLoad
	bsrStore
	bsrLoad
	numRigs
)

var rigNames = [numRigs]string{"raw-load", "raw-store", "hpet", "bsr-store", "bsr-load"}

// newRigFor builds rig i, each with its own machine and device.
func newRigFor(tb testing.TB, i int) *rig {
	switch i {
	case rawLoad:
		return newRig(tb, rigNames[i], load8, nullPA, nullDevice{})
	case rawStore:
		return newRig(tb, rigNames[i], store1, nullPA, nullDevice{})
	case hpetLoad:
		// 8-byte loads of the main counter.
		r := newRig(tb, rigNames[i], load8, hpet.MMIOBase, newHPET(tb))
		r.c.Regs().RBX = devVA + hpet.RegCounter
		return r
	case bsrStore:
		// 1-byte stores: a participant arrives.
		return newRig(tb, rigNames[i], store1, bsrPA, newBSR(tb))
	case bsrLoad:
		return newRig(tb, rigNames[i], load8, bsrPA, newBSR(tb))
	}
	panic("no such rig")
}

// timeStep runs r once and returns the time per access in µs.
func timeStep(tb testing.TB, r *rig) float64 {
	start := time.Now()
	r.step(tb)
	return float64(time.Since(start).Nanoseconds()) / accessesPerRun / 1e3
}

// BenchmarkMMIO times each kind of access on its own: the median over
// the Runs of µs per access (see BenchmarkMMIORatios).
func BenchmarkMMIO(b *testing.B) {
	kvmtest.Require(b)
	for i, name := range rigNames {
		b.Run(name, func(b *testing.B) {
			r := newRigFor(b, i)
			var per []float64
			for b.Loop() {
				per = append(per, timeStep(b, r))
			}
			b.ReportMetric(median(per), "µs/access")
		})
	}
}

// BenchmarkMMIORatios runs every kind of access in interleaved rounds in
// one process, so that the noise of a shared machine cancels out, and
// reports the device accesses as ratios of the null device's:
//
//	hpet/raw       8-byte load of the HPET main counter / 8-byte null load
//	bsr-load/raw   8-byte load of bsr8_0 / 8-byte null load
//	bsr-store/raw  1-byte store to bsr8_0 / 1-byte null store
//
// (a store is compared with a store: KVM completes an MMIO store at the
// exit and a load at the re-entry), and each kind in µs per access. Each
// figure is the median over the rounds of one Run's time per access: on a
// loaded machine a few Runs take many times longer (the vCPU thread was
// preempted), and the mean would measure the preemptions. Each Run also
// includes one system call, 1/accessesPerRun of its accesses, which moves
// every ratio towards 1 by under 1%.
func BenchmarkMMIORatios(b *testing.B) {
	var rs [numRigs]*rig
	for i := range rs {
		rs[i] = newRigFor(b, i)
	}
	var per [numRigs][]float64 // µs per access, one entry per round
	round := 0
	for b.Loop() {
		for k := range rs {
			i := (k + round) % numRigs // rotate the order: no rig always follows another
			per[i] = append(per[i], timeStep(b, rs[i]))
		}
		round++
	}
	var med [numRigs]float64
	for i := range per {
		med[i] = median(per[i])
		b.ReportMetric(med[i], rigNames[i]+"-µs/access")
	}
	b.ReportMetric(med[hpetLoad]/med[rawLoad], "hpet/raw")
	b.ReportMetric(med[bsrStore]/med[rawStore], "bsr-store/raw")
	b.ReportMetric(med[bsrLoad]/med[rawLoad], "bsr-load/raw")
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// TestMMIORig checks that the benchmark's guests reach the devices: the
// HPET counter is read and advances, a BSR store lands in the register.
func TestMMIORig(t *testing.T) {
	h := newHPET(t)
	r := newRig(t, "hpet", load8, hpet.MMIOBase, h)
	r.c.Regs().RBX = devVA + hpet.RegCounter
	r.step(t)
	first := r.c.Regs().RDX
	time.Sleep(time.Millisecond)
	r.step(t)
	if second := r.c.Regs().RDX; first == 0 || second <= first {
		t.Errorf("hpet counter read %d then %d: want it running", first, second)
	}

	reg := newBSR(t)
	r = newRig(t, "bsr-store", store1, bsrPA, reg)
	r.c.Regs().RDX = 0x5a
	r.step(t)
	var b [8]byte
	if err := reg.Read(0, b[:]); err != nil {
		t.Fatal(err)
	}
	if b[0] != 0x5a {
		t.Errorf("bsr8_0 byte 0 = %#x after 1-byte stores of 0x5a", b[0])
	}
}
