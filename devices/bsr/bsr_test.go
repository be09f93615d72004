package bsr

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/emuckpt/emuckpt/vmm"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const testBase = 0xFEB00000

func newSet(t testing.TB, specs ...Spec) *Set {
	t.Helper()
	s, err := New(specs, testBase)
	require.NoError(t, err)
	return s
}

func newReg(t testing.TB, spec Spec) *Register {
	t.Helper()
	return newSet(t, spec).Registers()[0]
}

// requireFault checks that err is a SIGBUS AccessFault with code.
func requireFault(t *testing.T, err error, code int) {
	t.Helper()
	var f *vmm.AccessFault
	require.True(t, errors.As(err, &f), "want an AccessFault, got %v", err)
	assert.Equal(t, 7, f.Signal, "SIGBUS")
	assert.Equal(t, code, f.Code)
	assert.NotEmpty(t, f.Reason)
}

func store(t *testing.T, r *Register, off uint64, v byte) {
	t.Helper()
	require.NoError(t, r.Write(off, []byte{v}))
}

func load(t *testing.T, r *Register, off uint64, width int) []byte {
	t.Helper()
	b := make([]byte, width)
	require.NoError(t, r.Read(off, b))
	return b
}

func TestNaming(t *testing.T) {
	s := newSet(t,
		Spec{Bytes: 8}, Spec{Bytes: 8}, Spec{Bytes: 16}, Spec{Bytes: 128},
		Spec{Bytes: 8}, Spec{Bytes: 4096}, Spec{Bytes: 16, Stride: 64})
	var names []string
	for i, r := range s.Registers() {
		names = append(names, r.Name())
		assert.Equal(t, i, r.Minor())
	}
	assert.Equal(t, []string{"bsr8_0", "bsr8_1", "bsr16_0", "bsr128_0", "bsr8_2", "bsr4096_0", "bsr16_1"}, names)
	assert.Equal(t, "bsr16_1", s.Lookup("bsr16_1").Name())
	assert.Nil(t, s.Lookup("bsr32_0"))
}

func TestDefaultSet(t *testing.T) {
	s := newSet(t, DefaultSpecs()...)
	want := []struct {
		name string
		base uint64
	}{
		{"bsr8_0", 0xFEB00000}, {"bsr16_0", 0xFEB01000}, {"bsr64_0", 0xFEB02000}, {"bsr128_0", 0xFEB03000},
	}
	regs := s.Registers()
	require.Len(t, regs, len(want))
	for i, w := range want {
		assert.Equal(t, w.name, regs[i].Name())
		assert.Equal(t, w.base, regs[i].MMIOBase())
		assert.Equal(t, uint64(PageSize), regs[i].MMIOSize())
	}
	assert.Equal(t, uint64(testBase), s.Base())
	assert.Equal(t, uint64(4*PageSize), s.Size())
}

func TestWindows(t *testing.T) {
	specs := []Spec{
		{8, 8, 8},             // shorter than a page: one page
		{8, 8, 4096},          // one page
		{128, 128, 8192},      // two pages
		{4096, 4096, 65536},   // sixteen
		{16, 16, 16},          // one page again
		{4096, 8192, 1 << 20}, // 256 pages
	}
	s := newSet(t, specs...)
	wantSize := []uint64{4096, 4096, 8192, 65536, 4096, 1 << 20}
	base := uint64(testBase)
	for i, r := range s.Registers() {
		assert.Equal(t, base, r.MMIOBase(), r.Name())
		assert.Equal(t, wantSize[i], r.MMIOSize(), r.Name())
		assert.Zero(t, r.MMIOBase()%PageSize)
		assert.Equal(t, specs[i], r.Spec())
		base += wantSize[i]
	}
	assert.Equal(t, base-testBase, s.Size())

	// Every window is registrable on one bus: no overlaps.
	bus := vmm.NewBus()
	for _, r := range s.Registers() {
		require.NoError(t, bus.Register(r.MMIOBase(), r.MMIOSize(), r))
	}
}

func TestNewErrors(t *testing.T) {
	_, err := New(DefaultSpecs(), testBase+8)
	assert.ErrorContains(t, err, "not page aligned")

	many := make([]Spec, MaxRegisters+1)
	for i := range many {
		many[i] = Spec{Bytes: 8}
	}
	_, err = New(many, testBase)
	assert.ErrorContains(t, err, "at most 32")
	s, err := New(many[:MaxRegisters], testBase)
	require.NoError(t, err)
	assert.Equal(t, "bsr8_31", s.Registers()[31].Name())

	_, err = New([]Spec{{Bytes: 8}, {Bytes: 24}}, testBase)
	assert.ErrorContains(t, err, "register 1")
	assert.ErrorContains(t, err, "use 8, 16, 64, 128 or 4096")

	_, err = New([]Spec{{Bytes: 8}, {Bytes: 8}}, ^uint64(0)-PageSize+1)
	assert.ErrorContains(t, err, "overflow")

	s, err = New(nil, testBase)
	require.NoError(t, err)
	assert.Empty(t, s.Registers())
	assert.Zero(t, s.Size())
}

// Every width at every offset of the first two strides: aligned loads of
// 1, 2, 4 and 8 bytes return the bytes at those offsets; misaligned ones
// are BUS_ADRALN.
func TestLoads(t *testing.T) {
	r := newReg(t, Spec{Bytes: 16, Stride: 16, Length: 4096})
	for i := range uint64(16) {
		store(t, r, i, byte(0xa0+i))
	}
	for _, width := range []int{1, 2, 4, 8} {
		for off := uint64(0); off < 32; off++ {
			t.Run(fmt.Sprintf("w%d/off%d", width, off), func(t *testing.T) {
				b := make([]byte, width)
				err := r.Read(off, b)
				if off%uint64(width) != 0 {
					requireFault(t, err, busAdrAln)
					return
				}
				require.NoError(t, err)
				for i := range b {
					assert.Equal(t, byte(0xa0+(off+uint64(i))%16), b[i], "byte %d", i)
				}
			})
		}
	}
}

// An 8-byte load is the little-endian value of eight participants.
func TestLoadLittleEndian(t *testing.T) {
	r := newReg(t, Spec{Bytes: 8})
	store(t, r, 0, 1)
	store(t, r, 7, 0x80)
	b := load(t, r, 0, 8)
	assert.Equal(t, []byte{1, 0, 0, 0, 0, 0, 0, 0x80}, b)
}

func TestLoadBadWidths(t *testing.T) {
	r := newReg(t, Spec{Bytes: 128})
	for _, width := range []int{0, 3, 5, 6, 7, 16, 32} {
		requireFault(t, r.Read(0, make([]byte, width)), busAdrErr)
	}
}

func TestStores(t *testing.T) {
	r := newReg(t, Spec{Bytes: 64})
	for _, width := range []int{0, 2, 3, 4, 8, 16} {
		for _, off := range []uint64{0, 1, 2, 4, 8} {
			t.Run(fmt.Sprintf("w%d/off%d", width, off), func(t *testing.T) {
				data := make([]byte, width)
				for i := range data {
					data[i] = 0xff
				}
				requireFault(t, r.Write(off, data), busAdrErr)
				assert.Equal(t, make([]byte, 64), r.Bytes(), "a refused store changes nothing")
			})
		}
	}
	// A 1-byte store sets exactly one participant's byte, any value.
	for i := range uint64(64) {
		store(t, r, i, byte(i*3+1))
		got := r.Bytes()
		for j := range uint64(64) {
			if j <= i {
				assert.Equal(t, byte(j*3+1), got[j])
			} else {
				assert.Zero(t, got[j])
			}
		}
	}
	store(t, r, 5, 0)
	assert.Equal(t, []byte{0}, load(t, r, 5, 1))
}

func TestOutsideWindow(t *testing.T) {
	r := newReg(t, Spec{Bytes: 8, Stride: 8, Length: 8})
	requireFault(t, r.Read(4096, make([]byte, 1)), busAdrErr)
	requireFault(t, r.Read(1<<40, make([]byte, 8)), busAdrErr)
	requireFault(t, r.Read(^uint64(0)-3, make([]byte, 8)), busAdrErr)
	requireFault(t, r.Write(4096, []byte{1}), busAdrErr)
	requireFault(t, r.Write(^uint64(0), []byte{1}), busAdrErr)
	// The last byte and the last 8 bytes of the page are inside.
	store(t, r, 4095, 9)
	assert.Equal(t, []byte{0, 0, 0, 0, 0, 0, 0, 9}, load(t, r, 4088, 8))
}

// The register repeats every Stride bytes; the part of a stride beyond the
// register reads 0 and ignores stores.
func TestStride(t *testing.T) {
	tests := []Spec{
		{8, 8, 4096},
		{8, 64, 4096},
		{16, 128, 8192},
		{128, 128, 4096},
		{64, 4096, 65536},
		{8, 8, 8},
	}
	for _, spec := range tests {
		t.Run(spec.String(), func(t *testing.T) {
			r := newReg(t, spec)
			window := spec.WindowSize()
			for k := uint64(0); k*spec.Stride < window; k += max(1, window/spec.Stride/7) {
				for i := uint64(0); i < spec.Stride; i += max(1, spec.Stride/16) {
					r.Reset()
					off := k*spec.Stride + i
					store(t, r, off, 0x5a)
					if i < spec.Bytes {
						// Visible at the same place of every stride.
						assert.Equal(t, []byte{0x5a}, load(t, r, i, 1))
						last := (window/spec.Stride-1)*spec.Stride + i
						assert.Equal(t, []byte{0x5a}, load(t, r, last, 1))
					} else {
						assert.Equal(t, make([]byte, spec.Bytes), r.Bytes(), "store at %#x ignored", off)
					}
				}
			}
			// The gap reads zero even when the register is full.
			for i := range spec.Bytes {
				store(t, r, i, 0xff)
			}
			for off := spec.Bytes; off < spec.Stride; off += 8 {
				assert.Equal(t, make([]byte, 8), load(t, r, off, 8))
			}
			assert.Equal(t, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, load(t, r, window-spec.Stride, 8))
		})
	}
}

// Two mappings of one register, reached through the MMIO bus as two tasks
// would reach it, see each other's stores; other registers are untouched.
func TestSharing(t *testing.T) {
	s := newSet(t, DefaultSpecs()...)
	bus := vmm.NewBus()
	for _, r := range s.Registers() {
		require.NoError(t, bus.Register(r.MMIOBase(), r.MMIOSize(), r))
	}
	r := s.Lookup("bsr8_0")
	fa, errno := r.Open(0o2)
	require.Zero(t, errno)
	fb, errno := r.Open(0o2)
	require.Zero(t, errno)
	ma, errno := fa.(*file).MmapBacking(0, PageSize, 3, true)
	require.Zero(t, errno)
	mb, errno := fb.(*file).MmapBacking(0, PageSize, 3, true)
	require.Zero(t, errno)
	a, b := ma.(*Backing), mb.(*Backing)
	require.Equal(t, a.MMIOBase(), b.MMIOBase())

	for i := range uint64(8) {
		m := a
		if i%2 == 1 {
			m = b
		}
		require.NoError(t, bus.Access(m.MMIOBase()+i, []byte{1}, true))
	}
	got := make([]byte, 8)
	require.NoError(t, bus.Access(b.MMIOBase(), got, false))
	assert.Equal(t, []byte{1, 1, 1, 1, 1, 1, 1, 1}, got)
	require.NoError(t, bus.Access(a.MMIOBase()+8, got, false), "the next stride")
	assert.Equal(t, []byte{1, 1, 1, 1, 1, 1, 1, 1}, got)

	// A wide store through the bus is the device's refusal.
	err := bus.Access(a.MMIOBase(), []byte{0, 0}, true)
	requireFault(t, err, busAdrErr)

	for _, o := range s.Registers()[1:] {
		assert.Equal(t, make([]byte, o.Spec().Bytes), o.Bytes(), o.Name())
	}
}

// Participants storing concurrently all arrive (run with -race).
func TestConcurrentBarrier(t *testing.T) {
	r := newReg(t, Spec{Bytes: 128})
	var wg sync.WaitGroup
	for p := range uint64(128) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Store at the participant's byte of some stride.
			if err := r.Write(p+128*(p%32), []byte{1}); err != nil {
				t.Error(err)
			}
			b := make([]byte, 8)
			if err := r.Read(p&^7, b); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for off := uint64(0); off < 128; off += 8 {
		assert.Equal(t, []byte{1, 1, 1, 1, 1, 1, 1, 1}, load(t, r, off, 8))
	}
}

func TestState(t *testing.T) {
	s := newSet(t, DefaultSpecs()...)
	store(t, s.Registers()[0], 3, 1)
	store(t, s.Registers()[3], 127, 0x42)
	st := s.SaveState()
	require.Len(t, st.Registers, 4)
	assert.Equal(t, "bsr8_0", st.Registers[0].Name)
	assert.Equal(t, Spec{8, 8, 4096}, st.Registers[0].Spec)
	assert.Equal(t, []byte{0, 0, 0, 1, 0, 0, 0, 0}, st.Registers[0].Bytes)

	// The state is a copy.
	store(t, s.Registers()[0], 3, 2)
	assert.Equal(t, byte(1), st.Registers[0].Bytes[3])

	s.Reset()
	for _, r := range s.Registers() {
		assert.Equal(t, make([]byte, r.Spec().Bytes), r.Bytes())
	}

	other := newSet(t, DefaultSpecs()...)
	require.NoError(t, other.RestoreState(st))
	assert.True(t, st.Equal(other.SaveState()))
	assert.Equal(t, []byte{0x42}, load(t, other.Registers()[3], 127, 1))
	assert.False(t, st.Equal(s.SaveState()))

	// Restoring into a different configuration fails and changes nothing.
	diff := newSet(t, Spec{Bytes: 8}, Spec{Bytes: 16}, Spec{Bytes: 64}, Spec{Bytes: 128, Stride: 256})
	err := diff.RestoreState(st)
	assert.ErrorContains(t, err, "bsr128_0")
	assert.ErrorContains(t, err, "--bsr flags")
	assert.Equal(t, make([]byte, 8), diff.Registers()[0].Bytes())
	assert.ErrorContains(t, newSet(t, Spec{Bytes: 8}).RestoreState(st), "4 registers")

	bad := s.SaveState()
	bad.Registers[1].Bytes = []byte{1}
	assert.ErrorContains(t, s.RestoreState(bad), "corrupt")

	// Per register.
	r := newReg(t, Spec{Bytes: 8})
	require.NoError(t, r.RestoreState(st.Registers[0]))
	assert.Equal(t, st.Registers[0].Bytes, r.Bytes())
	assert.Error(t, r.RestoreState(st.Registers[1]))
}

func TestString(t *testing.T) {
	r := newReg(t, Spec{Bytes: 8})
	assert.Equal(t, "bsr8_0 (8:8:4096) at 0xfeb00000", r.String())
	var f *vmm.AccessFault
	require.True(t, errors.As(r.Write(0, []byte{1, 2}), &f))
	assert.Equal(t, "bsr8_0: 2-byte store at offset 0x0: BSR stores must be single bytes, one participant's byte at a time", f.Error())
}
