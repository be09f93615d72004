package vmm

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestCanonicalXSave: the x87 bit of XSTATE_BV is cleared exactly when
// the x87 state is the initial one and MXCSR still reaches KVM.
func TestCanonicalXSave(t *testing.T) {
	initial := func(bv uint64) []byte {
		b := make([]byte, XSaveSize)
		binary.LittleEndian.PutUint16(b[0:], 0x037F)
		binary.LittleEndian.PutUint32(b[24:], 0x1F80)
		binary.LittleEndian.PutUint32(b[28:], 0xFFFF)
		binary.LittleEndian.PutUint64(b[512:], bv)
		return b
	}
	for _, tc := range []struct {
		name   string
		buf    []byte
		change func(b []byte)
		want   uint64
	}{
		{"initial x87 with SSE", initial(3), nil, 2},
		{"initial x87 with SSE and AVX", initial(7), nil, 6},
		{"initial x87 alone, initial MXCSR", initial(1), nil, 0},
		{"initial x87 alone, MXCSR changed", initial(1), func(b []byte) { b[24] = 0xC0 }, 1},
		{"x87 bit clear", initial(2), nil, 2},
		{"control word changed", initial(3), func(b []byte) { b[0] = 0x7E }, 3},
		{"a register in use", initial(3), func(b []byte) { b[32+16*7+9] = 0x40 }, 3},
		{"tag word", initial(3), func(b []byte) { b[4] = 0x80 }, 3},
		{"last instruction pointer", initial(3), func(b []byte) { b[8] = 1 }, 3},
	} {
		if tc.change != nil {
			tc.change(tc.buf)
		}
		before := append([]byte(nil), tc.buf...)
		canonicalXSave(tc.buf)
		assert.Equal(t, tc.want, binary.LittleEndian.Uint64(tc.buf[512:]), tc.name)
		binary.LittleEndian.PutUint64(before[512:], tc.want)
		assert.Equal(t, before, tc.buf, "%s: nothing but XSTATE_BV changes", tc.name)
	}
	canonicalXSave(make([]byte, 100)) // too short: left alone
}
