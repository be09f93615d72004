package image

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

// vmaRecord is the kind of fixed-layout struct the kernel layer stores.
type vmaRecord struct {
	Start, End uint64
	Prot       uint32
	Flags      uint32
	Anonymous  bool
	_          [7]byte
	Pgoff      int64
}

func TestCodecRoundTrip(t *testing.T) {
	v := vmaRecord{Start: 0x400000, End: 0x401000, Prot: 5, Flags: 2, Anonymous: true, Pgoff: -1}
	var e Encoder
	e.U8(0xab)
	e.U16(0xbeef)
	e.U32(0xdeadbeef)
	e.U64(math.MaxUint64 - 1)
	e.I64(-42)
	e.Bool(true)
	e.Bool(false)
	e.Bytes([]byte("bytes"))
	e.Bytes(nil)
	e.String("a string")
	e.Raw([]byte{1, 2, 3})
	e.Struct(&v)
	e.Struct([]uint32{7, 8})
	payload, err := e.Finish()
	require.NoError(t, err)
	require.Equal(t, 1+2+4+8+8+2+(4+5)+4+(4+8)+3+40+8, len(payload))
	require.Equal(t, len(payload), e.Len())

	d := Record{Type: 9, Payload: payload}.Decoder()
	require.Equal(t, uint8(0xab), d.U8())
	require.Equal(t, uint16(0xbeef), d.U16())
	require.Equal(t, uint32(0xdeadbeef), d.U32())
	require.Equal(t, uint64(math.MaxUint64-1), d.U64())
	require.Equal(t, int64(-42), d.I64())
	require.True(t, d.Bool())
	require.False(t, d.Bool())
	require.Equal(t, []byte("bytes"), d.Bytes(5))
	require.Equal(t, []byte{}, d.Bytes(0))
	require.Equal(t, "a string", d.String(100))
	require.Equal(t, []byte{1, 2, 3}, d.Raw(3))
	var got vmaRecord
	d.Struct(&got)
	require.Equal(t, v, got)
	two := make([]uint32, 2)
	d.Struct(two)
	require.Equal(t, []uint32{7, 8}, two)
	require.Zero(t, d.Len())
	require.NoError(t, d.Finish())

	e.Reset()
	require.Zero(t, e.Len())
}

func TestDecoderErrors(t *testing.T) {
	lenPrefixed := func(n uint32, data string) []byte { return append(le.AppendUint32(nil, n), data...) }
	tests := []struct {
		name    string
		payload []byte
		read    func(d *Decoder)
		msg     string
	}{
		{"u8", nil, func(d *Decoder) { d.U8() }, "record type 0x9: u8 needs 1 bytes at offset 0, only 0 left"},
		{"u16", []byte{1}, func(d *Decoder) { d.U16() }, "u16 needs 2 bytes at offset 0, only 1 left"},
		{"u32", []byte{1, 2, 3}, func(d *Decoder) { d.U32() }, "u32 needs 4 bytes"},
		{"u64 after u32", make([]byte, 11), func(d *Decoder) { d.U32(); d.U64() }, "u64 needs 8 bytes at offset 4, only 7 left"},
		{"bool", []byte{2}, func(d *Decoder) { d.Bool() }, "bool at offset 0 is 2, not 0 or 1"},
		{"raw", []byte{1}, func(d *Decoder) { d.Raw(2) }, "raw bytes needs 2 bytes at offset 0, only 1 left"},
		{"raw negative", nil, func(d *Decoder) { d.Raw(-1) }, "negative length -1"},
		{"bytes over limit", lenPrefixed(5, "hello"), func(d *Decoder) { d.Bytes(4) }, "length 5 at offset 0 exceeds the limit of 4"},
		{"bytes negative limit", lenPrefixed(1, "h"), func(d *Decoder) { d.Bytes(-1) }, "exceeds the limit of -1"},
		{"huge length", lenPrefixed(math.MaxUint32, "x"), func(d *Decoder) { d.String(math.MaxInt) }, "length-prefixed bytes needs 4294967295 bytes at offset 4, only 1 left"},
		{"string short", lenPrefixed(6, "hello"), func(d *Decoder) { d.String(10) }, "needs 6 bytes at offset 4, only 5 left"},
		{"struct short", make([]byte, 39), func(d *Decoder) { d.Struct(&vmaRecord{}) }, "*image.vmaRecord needs 40 bytes"},
		{"trailing", []byte{1, 2}, func(d *Decoder) { d.U8() }, "1 unexpected bytes after offset 1"},
		{"sticky", []byte{1}, func(d *Decoder) { d.U16(); d.U8() }, "u16 needs 2 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := Record{Type: 9, Payload: tc.payload}.Decoder()
			tc.read(d)
			err := d.Finish()
			requireKind(t, err, ErrCorrupt)
			require.Contains(t, err.Error(), tc.msg)
			require.Equal(t, err, d.Err())
			require.Zero(t, d.U64(), "reads after an error return zero")
		})
	}

	// Not a pointer to a fixed-size value: a programming error.
	d := NewDecoder(make([]byte, 64))
	var s struct{ S string }
	d.Struct(&s)
	require.ErrorContains(t, d.Err(), "not a pointer to a fixed-size value")
	d = NewDecoder(make([]byte, 64))
	d.Struct(vmaRecord{})
	require.ErrorContains(t, d.Err(), "not a pointer to a fixed-size value")

	var e Encoder
	e.Struct(&s)
	_, err := e.Finish()
	require.ErrorContains(t, err, "image.Encoder")
}

func TestCodecAllocations(t *testing.T) {
	v := vmaRecord{Start: 1, End: 2}
	e := NewEncoder(make([]byte, 0, 256))
	allocs := testing.AllocsPerRun(100, func() {
		e.Reset()
		e.U64(1)
		e.U32(2)
		e.String("path")
		e.Struct(&v)
	})
	require.Zero(t, allocs, "Encoder with a buffer")
	payload, err := e.Finish()
	require.NoError(t, err)
	var got vmaRecord
	allocs = testing.AllocsPerRun(100, func() {
		d := NewDecoder(payload)
		d.U64()
		d.U32()
		d.Bytes(100)
		d.Struct(&got)
		if d.Finish() != nil {
			panic("decode")
		}
	})
	require.Zero(t, allocs, "Decoder")
	t.Logf("allocations: encoder %.0f, decoder %.0f", testing.AllocsPerRun(100, func() {
		e.Reset()
		e.Struct(&v)
	}), allocs)
}
