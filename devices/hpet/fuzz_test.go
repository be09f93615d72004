package hpet

import (
	"encoding/binary"
	"errors"
	"sync"
	"testing"

	"github.com/emuckpt/emuckpt/vmm"
	"golang.org/x/sys/unix"
)

// FuzzRegisters runs random sequences of register accesses, clock moves
// and /dev/hpet operations. It checks that nothing panics, that refused
// accesses are AccessFaults, that the read-only registers stay put and
// that the counter never runs backwards while enabled.
func FuzzRegisters(f *testing.F) {
	f.Add([]byte{0, 0x10, 0, 8, 1, 0, 0, 0, 0, 0, 0, 0, 3, 0xff, 0xff, 0, 0})
	f.Add([]byte{1, 0x01, 0x00, 8, 0x4c, 0, 0, 0, 0, 0, 0, 0, 1, 0x09, 0x01, 4, 0x10, 0, 0, 0})
	f.Add([]byte{4, 1, 5, 0x40, 6, 0, 2, 0, 7, 0, 3, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{1, 0x10, 0x01, 4, 9, 0, 0, 0, 0, 0, 0, 0, 2, 0x21, 0x01, 2})
	f.Fuzz(func(t *testing.T, prog []byte) {
		cfg := Config{Timers: 1 + int(len(prog)%32)}
		if len(prog)%3 == 0 {
			cfg.PeriodFS = 1 + uint32(len(prog))*12345
		}
		clk := &fakeClock{}
		h, err := New(cfg, clk)
		if err != nil {
			t.Fatal(err)
		}
		gcap := h.ReadRegister(RegCapID)
		s := &fakeSleeper{clk: clk}
		var files []*File
		mem := &fakeMemory{base: 0x1000, b: make([]byte, 64)}
		var lastCounter uint64
		var wasEnabled bool
		next := func(n int) []byte {
			if len(prog) < n {
				prog = append(prog, make([]byte, n-len(prog))...)
			}
			b := prog[:n]
			prog = prog[n:]
			return b
		}
		for len(prog) > 0 {
			op := next(1)[0]
			switch op % 8 {
			case 0, 1: // an access: offset (2 bytes), width, value
				b := next(3)
				off := uint64(binary.LittleEndian.Uint16(b)) % (MMIOSize + 16)
				size := int(b[2] % 10)
				data := make([]byte, size)
				copy(data, next(8))
				if op%8 == 0 {
					err = h.Read(off, data)
				} else {
					err = h.Write(off, data)
				}
				var af *vmm.AccessFault
				ok := size == 4 || size == 8
				ok = ok && off%uint64(size) == 0 && off < MMIOSize
				if ok != (err == nil) || err != nil && !errors.As(err, &af) {
					t.Fatalf("%d bytes at %#x: %v", size, off, err)
				}
			case 2: // move the clock
				b := next(2)
				clk.advance(int64(binary.LittleEndian.Uint16(b)) << (b[1] % 40))
			case 3: // move the clock back a little
				clk.advance(-int64(next(1)[0]))
			case 4:
				if fl, errno := h.Open(int(next(1)[0]%4), s); errno == 0 {
					files = append(files, fl.(*File))
				}
			case 5, 6:
				if len(files) == 0 {
					continue
				}
				b := next(3)
				fl := files[int(b[0])%len(files)]
				reqs := []uint64{HPET_IE_ON, HPET_IE_OFF, HPET_INFO, HPET_EPI, HPET_DPI, HPET_IRQFREQ, 0}
				req := reqs[int(b[1])%len(reqs)]
				arg := uint64(b[2])
				if req == HPET_INFO {
					arg = 0x1000 + arg%64
				}
				_, _ = fl.Ioctl(req, arg, mem)
				if op%8 == 6 {
					fl.SetFlags(unix.O_NONBLOCK)
					_, _ = fl.Read(make([]byte, 8))
				}
			case 7:
				if len(files) == 0 {
					h.Enable()
					continue
				}
				i := int(next(1)[0]) % len(files)
				files[i].Close()
				files = append(files[:i], files[i+1:]...)
			}
			if g := h.ReadRegister(RegCapID); g != gcap {
				t.Fatalf("GCAP_ID changed: %#x -> %#x", gcap, g)
			}
			c := h.ReadRegister(RegCounter)
			enabled := h.ReadRegister(RegConfig)&ConfEnable != 0
			if wasEnabled && enabled && c < lastCounter && lastCounter-c < 1<<62 {
				t.Fatalf("counter ran backwards: %#x -> %#x", lastCounter, c)
			}
			lastCounter, wasEnabled = c, enabled
			for n := range cfg.Timers {
				_, _ = h.NextFire(n, clk.Now())
				_ = h.Fired(n, clk.Now()-1000, clk.Now()+1000)
			}
		}
		st := h.SaveState()
		if err := h.RestoreState(st); err != nil {
			t.Fatal(err)
		}
	})
}

// TestConcurrentAccess exercises the lock under the race detector.
func TestConcurrentAccess(t *testing.T) {
	h, clk := newTest(t, Config{})
	h.Enable()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var b [8]byte
			for i := range 2000 {
				clk.advance(100)
				switch (g + i) % 4 {
				case 0:
					_ = h.Read(RegCounter, b[:])
				case 1:
					_ = h.Write(tcmp(g%3), b[:])
				case 2:
					_ = h.Read(RegIntStatus, b[:4])
				case 3:
					_, _ = h.NextFire(g%3, clk.Now())
				}
			}
		}()
	}
	wg.Wait()
}
