package hpet

import (
	"testing"
	"time"

	"github.com/emuckpt/emuckpt/vmm"
)

// BenchmarkDispatch is one 8-byte load of the main counter through the
// vmm.Device interface, on the host's monotonic clock: the model's share
// of a guest HPET read.
func BenchmarkDispatch(b *testing.B) {
	start := time.Now()
	h, err := New(Config{}, ClockFunc(func() int64 { return int64(time.Since(start)) }))
	if err != nil {
		b.Fatal(err)
	}
	h.Enable()
	var d vmm.Device = h
	var buf [8]byte
	b.ReportAllocs()
	for b.Loop() {
		if err := d.Read(RegCounter, buf[:]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkComparatorRead is a load of a comparator, which settles every
// timer first (three running periodic timers).
func BenchmarkComparatorRead(b *testing.B) {
	start := time.Now()
	h, err := New(Config{}, ClockFunc(func() int64 { return int64(time.Since(start)) }))
	if err != nil {
		b.Fatal(err)
	}
	h.Enable()
	for n := range 2 {
		h.WriteRegister(tcfg(n), TnPeriodic|TnValSet|TnIntEnable)
		h.WriteRegister(tcmp(n), 1000)
	}
	var d vmm.Device = h
	var buf [8]byte
	b.ReportAllocs()
	for b.Loop() {
		if err := d.Read(tcmp(0), buf[:]); err != nil {
			b.Fatal(err)
		}
	}
}
