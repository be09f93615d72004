package bsr

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/emuckpt/emuckpt/vmm"
)

// FuzzAccess runs random sequences of accesses against a random register
// and checks them against a plain model: no access panics, every refusal
// is a SIGBUS AccessFault with the right code, and loads return what the
// model holds.
//
// Each access is 10 bytes of ops: flags (bit 0 write, bits 1-4 width
// 0..15), the value, and a little-endian offset.
func FuzzAccess(f *testing.F) {
	f.Add(uint8(0), []byte{1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add(uint8(3), []byte{3, 0xff, 7, 0, 0, 0, 0, 0, 0, 0})
	f.Add(uint8(9), []byte{1, 5, 0x83, 0, 0, 0, 0, 0, 0, 0, 0x08, 0, 0x03, 0, 0, 0, 0, 0, 0, 0})
	specs := []Spec{
		{8, 8, 4096}, {8, 8, 8}, {16, 16, 4096}, {16, 64, 4096}, {64, 64, 4096},
		{128, 128, 4096}, {128, 256, 8192}, {4096, 4096, 4096}, {4096, 8192, 16384}, {8, 4096, 4096},
	}
	f.Fuzz(func(t *testing.T, which uint8, ops []byte) {
		spec := specs[int(which)%len(specs)]
		s, err := New([]Spec{spec}, testBase)
		if err != nil {
			t.Fatal(err)
		}
		r := s.Registers()[0]
		model := make([]byte, spec.Bytes)
		at := func(off uint64) byte {
			if o := off % spec.Stride; o < spec.Bytes {
				return model[o]
			}
			return 0
		}
		for len(ops) >= 10 {
			flags, val := ops[0], ops[1]
			off := binary.LittleEndian.Uint64(ops[2:10])
			ops = ops[10:]
			if flags&0x20 != 0 {
				off %= 2 * r.MMIOSize() // mostly inside the window
			}
			write := flags&1 != 0
			width := int(flags>>1) & 15
			data := make([]byte, width)
			for i := range data {
				data[i] = val
			}
			if write {
				err = r.Write(off, data)
			} else {
				err = r.Read(off, data)
			}
			inside := off < r.MMIOSize() && uint64(width) <= r.MMIOSize()-off
			var wantCode int
			switch {
			case write && width != 1, !write && width != 1 && width != 2 && width != 4 && width != 8, !inside:
				wantCode = busAdrErr
			case !write && off%uint64(width) != 0:
				wantCode = busAdrAln
			}
			if wantCode != 0 {
				var af *vmm.AccessFault
				if !errors.As(err, &af) || af.Signal != sigbus || af.Code != wantCode {
					t.Fatalf("write=%v width %d off %#x: got %v, want SIGBUS code %d", write, width, off, err, wantCode)
				}
				continue
			}
			if err != nil {
				t.Fatalf("write=%v width %d off %#x: %v", write, width, off, err)
			}
			if write {
				if o := off % spec.Stride; o < spec.Bytes {
					model[o] = val
				}
				continue
			}
			for i, b := range data {
				if want := at(off + uint64(i)); b != want {
					t.Fatalf("load width %d at %#x: byte %d is %#x, want %#x", width, off, i, b, want)
				}
			}
		}
		if got := r.Bytes(); string(got) != string(model) {
			t.Fatalf("register %x, model %x", got, model)
		}
	})
}

// FuzzParseSpec checks that ParseSpec never panics and that what it
// accepts is valid and round-trips through String.
func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{"8", "16:64", "128:128:8K", "4096:8192", "0x40::0x1000", "8:8:8", ":", "8:8:8:8"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		spec, err := ParseSpec(in)
		if err != nil {
			return
		}
		if err := spec.Validate(); err != nil {
			t.Fatalf("%q parsed to invalid %v: %v", in, spec, err)
		}
		again, err := ParseSpec(spec.String())
		if err != nil || again != spec {
			t.Fatalf("%q: %v does not round-trip: %v %v", in, spec, again, err)
		}
		if _, err := New([]Spec{spec}, testBase); err != nil {
			t.Fatalf("%q: New: %v", in, err)
		}
	})
}
