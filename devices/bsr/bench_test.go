package bsr

import (
	"testing"

	"github.com/emuckpt/emuckpt/vmm"
)

// BenchmarkDispatch measures the device side of a guest access: a 1-byte
// store and an 8-byte load through the vmm.Device interface (the cost the
// VMM adds to an MMIO exit, which itself is tens of microseconds).
func BenchmarkDispatch(b *testing.B) {
	s, err := New(DefaultSpecs(), testBase)
	if err != nil {
		b.Fatal(err)
	}
	var dev vmm.Device = s.Registers()[0]
	one := []byte{1}
	eight := make([]byte, 8)

	b.Run("store1", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if err := dev.Write(uint64(i&4095), one); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("load8", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if err := dev.Read(uint64(i&511)*8, eight); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("bus-store1-load8", func(b *testing.B) {
		bus := vmm.NewBus()
		for _, r := range s.Registers() {
			if err := bus.Register(r.MMIOBase(), r.MMIOSize(), r); err != nil {
				b.Fatal(err)
			}
		}
		for i := 0; b.Loop(); i++ {
			if err := bus.Access(testBase+uint64(i&7), one, true); err != nil {
				b.Fatal(err)
			}
			if err := bus.Access(testBase, eight, false); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel-store1-load8", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			d := make([]byte, 8)
			for i := 0; pb.Next(); i++ {
				if err := dev.Write(uint64(i&7), one); err != nil {
					b.Fatal(err)
				}
				if err := dev.Read(0, d); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}
