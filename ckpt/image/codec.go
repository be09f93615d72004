package image

import (
	"encoding/binary"
	"fmt"
	"math"
	"reflect"
)

// Encoder builds a record payload: little-endian integers, fixed-layout
// structs and length-prefixed byte strings, appended to one buffer. Its
// zero value is ready to use; Reset reuses the buffer, so encoding many
// records allocates only when the buffer grows. Errors are sticky: the
// first one is returned by Finish and later calls do nothing.
type Encoder struct {
	b   []byte
	err error
}

// NewEncoder returns an Encoder that appends to buf[:0].
func NewEncoder(buf []byte) *Encoder { return &Encoder{b: buf[:0]} }

// Reset empties the buffer (keeping its memory) and clears the error.
func (e *Encoder) Reset() { e.b, e.err = e.b[:0], nil }

// U8 appends v.
func (e *Encoder) U8(v uint8) { e.b = append(e.b, v) }

// U16 appends v, little-endian.
func (e *Encoder) U16(v uint16) { e.b = le.AppendUint16(e.b, v) }

// U32 appends v, little-endian.
func (e *Encoder) U32(v uint32) { e.b = le.AppendUint32(e.b, v) }

// U64 appends v, little-endian.
func (e *Encoder) U64(v uint64) { e.b = le.AppendUint64(e.b, v) }

// I64 appends v, little-endian two's complement.
func (e *Encoder) I64(v int64) { e.U64(uint64(v)) }

// Bool appends 1 for true, 0 for false.
func (e *Encoder) Bool(v bool) {
	if v {
		e.U8(1)
	} else {
		e.U8(0)
	}
}

// Raw appends b as it is, with no length: the reader must know its size.
func (e *Encoder) Raw(b []byte) { e.b = append(e.b, b...) }

// Bytes appends len(b) as a u32, then b.
func (e *Encoder) Bytes(b []byte) {
	if uint64(len(b)) > math.MaxUint32 {
		e.setErr(fmt.Errorf("image.Encoder: %d-byte string is longer than a u32 length allows", len(b)))
		return
	}
	e.U32(uint32(len(b)))
	e.b = append(e.b, b...)
}

// String appends len(s) as a u32, then s.
func (e *Encoder) String(s string) {
	if uint64(len(s)) > math.MaxUint32 {
		e.setErr(fmt.Errorf("image.Encoder: %d-byte string is longer than a u32 length allows", len(s)))
		return
	}
	e.U32(uint32(len(s)))
	e.b = append(e.b, s...)
}

// Struct appends v, a fixed-size value (a struct of fixed-size integers,
// bools, floats and arrays of them, a pointer to one, or a slice of them)
// in little-endian order with no padding between fields, as
// encoding/binary does. A blank (_) field is written as zeros.
func (e *Encoder) Struct(v any) {
	if e.err != nil {
		return
	}
	b, err := binary.Append(e.b, le, v)
	if err != nil {
		e.setErr(fmt.Errorf("image.Encoder: %T: %w", v, err))
		return
	}
	e.b = b
}

func (e *Encoder) setErr(err error) {
	if e.err == nil {
		e.err = err
	}
}

// Len returns the number of bytes encoded so far.
func (e *Encoder) Len() int { return len(e.b) }

// Finish returns the payload, or the first error. The payload aliases the
// Encoder's buffer until Reset.
func (e *Encoder) Finish() ([]byte, error) {
	if e.err != nil {
		return nil, e.err
	}
	return e.b, nil
}

// Decoder reads a record payload written by an Encoder. Payloads come from
// images, which are untrusted: every read checks that enough bytes are
// left, length-prefixed strings are checked against a limit the caller
// gives before anything is allocated, and nothing ever panics. Errors are
// sticky: after the first one (an *Error wrapping ErrCorrupt), reads
// return zero values, and Err and Finish return that error. Check once at
// the end:
//
//	d := rec.Decoder()
//	start, end := d.U64(), d.U64()
//	path := d.String(4096)
//	if err := d.Finish(); err != nil { ... }
type Decoder struct {
	b   []byte
	off int
	err error
	ctx string // what is decoded, for messages
}

// NewDecoder returns a Decoder over b. Record.Decoder is the same, with
// the record type in its error messages.
func NewDecoder(b []byte) *Decoder { return &Decoder{b: b, ctx: "record payload"} }

// take returns the next n bytes, or nil after setting the error.
func (d *Decoder) take(n uint64, what string) []byte {
	if d.err != nil {
		return nil
	}
	if left := uint64(len(d.b) - d.off); n > left {
		d.err = errCorrupt("", "%s: %s needs %d bytes at offset %d, only %d left", d.ctx, what, n, d.off, left)
		return nil
	}
	b := d.b[d.off : d.off+int(n) : d.off+int(n)]
	d.off += int(n)
	return b
}

// U8 reads a byte.
func (d *Decoder) U8() uint8 {
	if b := d.take(1, "u8"); b != nil {
		return b[0]
	}
	return 0
}

// U16 reads a little-endian u16.
func (d *Decoder) U16() uint16 {
	if b := d.take(2, "u16"); b != nil {
		return le.Uint16(b)
	}
	return 0
}

// U32 reads a little-endian u32.
func (d *Decoder) U32() uint32 {
	if b := d.take(4, "u32"); b != nil {
		return le.Uint32(b)
	}
	return 0
}

// U64 reads a little-endian u64.
func (d *Decoder) U64() uint64 {
	if b := d.take(8, "u64"); b != nil {
		return le.Uint64(b)
	}
	return 0
}

// I64 reads a little-endian two's-complement i64.
func (d *Decoder) I64() int64 { return int64(d.U64()) }

// Bool reads a byte that must be 0 or 1.
func (d *Decoder) Bool() bool {
	off := d.off
	switch v := d.U8(); v {
	case 0:
		return false
	case 1:
		return true
	default:
		if d.err == nil {
			d.err = errCorrupt("", "%s: bool at offset %d is %d, not 0 or 1", d.ctx, off, v)
		}
		return false
	}
}

// Raw reads n bytes. The result aliases the payload.
func (d *Decoder) Raw(n int) []byte {
	if n < 0 {
		d.setErr(fmt.Sprintf("negative length %d", n))
		return nil
	}
	return d.take(uint64(n), "raw bytes")
}

// Bytes reads a u32 length and that many bytes; a length above max is an
// error. The result aliases the payload (it is empty, not nil, for length
// 0).
func (d *Decoder) Bytes(max int) []byte {
	off := d.off
	n := d.U32()
	if d.err != nil {
		return nil
	}
	if max < 0 || uint64(n) > uint64(max) {
		d.err = errCorrupt("", "%s: length %d at offset %d exceeds the limit of %d", d.ctx, n, off, max)
		return nil
	}
	return d.take(uint64(n), "length-prefixed bytes")
}

// String reads a u32 length and that many bytes as a string (a copy); a
// length above max is an error.
func (d *Decoder) String(max int) string { return string(d.Bytes(max)) }

// Struct reads a fixed-size value into *ptr (see Encoder.Struct). ptr must
// be a non-nil pointer to a fixed-size value, or a slice of fixed-size
// values (filled entirely); blank (_) fields are skipped.
func (d *Decoder) Struct(ptr any) {
	if d.err != nil {
		return
	}
	n := binary.Size(ptr)
	if k := reflect.ValueOf(ptr).Kind(); n < 0 || k != reflect.Pointer && k != reflect.Slice {
		// A programming error, not bad input.
		d.err = fmt.Errorf("image.Decoder: %T is not a pointer to a fixed-size value or a slice of them", ptr)
		return
	}
	if left := d.Len(); n > left {
		d.err = errCorrupt("", "%s: %T needs %d bytes at offset %d, only %d left", d.ctx, ptr, n, d.off, left)
		return
	}
	b := d.take(uint64(n), "")
	if _, err := binary.Decode(b, le, ptr); err != nil {
		d.err = fmt.Errorf("image.Decoder: %T: %w", ptr, err)
	}
}

func (d *Decoder) setErr(what string) {
	if d.err == nil {
		d.err = errCorrupt("", "%s: %s at offset %d", d.ctx, what, d.off)
	}
}

// Len returns the number of bytes not read yet.
func (d *Decoder) Len() int { return len(d.b) - d.off }

// Err returns the first error, or nil.
func (d *Decoder) Err() error { return d.err }

// Finish returns the first error or, if there was none, an error when
// bytes are left unread: a payload longer than expected is as suspicious
// as a shorter one. Use Err instead to allow trailing bytes (fields a
// later writer appended).
func (d *Decoder) Finish() error {
	if d.err == nil && d.off != len(d.b) {
		d.err = errCorrupt("", "%s: %d unexpected bytes after offset %d", d.ctx, len(d.b)-d.off, d.off)
	}
	return d.err
}
