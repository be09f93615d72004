package guestmm

import (
	"math/bits"
	"sync/atomic"
)

// Frames remembers which frames the VMM wrote (through guestmm or
// WritableBytes) since the last TakeWritten: incremental checkpoints
// store only the frames written since the checkpoint before, and the
// guest's own writes, which do not go through the VMM, come from KVM's
// dirty log (vmm.Machine.HarvestDirty). A frame counts as written when
//
//   - it is handed out (Alloc, AllocHuge, AllocRun, the allocations of
//     faults and copies on write): whatever it held before, its contents
//     are new, so a frame freed and reallocated is never taken for the
//     page it held before;
//   - the VMM copies bytes into it (AddressSpace.Write, CopyOut and every
//     other copy to user memory: system call results, signal frames, the
//     loader's stack), and rdtsc patching writes it (TSCPatch);
//   - the VMM takes it for writing with WritableBytes (tmpfs and memfd
//     file data).
//
// The set is a bitset by frame index, updated with atomic operations
// (frames are written by the VMM on every vCPU's thread and by the
// restore's fill workers); each mark costs one atomic OR.

// WriteSet is a set of frames, by guest-physical address.
type WriteSet struct {
	start uint64   // the address of bit 0
	n     uint64   // frames in the set's range
	bits  []uint64 // one bit per 4 KiB frame
}

// NewWriteSet returns an empty set for the frames of [start, end).
func NewWriteSet(start, end uint64) *WriteSet {
	n := (end - start + PageSize - 1) / PageSize
	return &WriteSet{start: start, n: n, bits: make([]uint64, (n+63)/64)}
}

// Add adds the n frames from pa on (those outside the set's range are
// ignored).
func (s *WriteSet) Add(pa, n uint64) {
	for ; n > 0; n, pa = n-1, pa+PageSize {
		if pa < s.start {
			continue
		}
		i := (pa - s.start) >> pageShift
		if i >= s.n {
			return
		}
		s.bits[i/64] |= 1 << (i % 64)
	}
}

// Has says whether the frame at pa is in the set.
func (s *WriteSet) Has(pa uint64) bool {
	if s == nil || pa < s.start {
		return false
	}
	i := (pa - s.start) >> pageShift
	return i < s.n && s.bits[i/64]&(1<<(i%64)) != 0
}

// Len is the number of frames in the set.
func (s *WriteSet) Len() int {
	n := 0
	for _, w := range s.bits {
		n += bits.OnesCount64(w)
	}
	return n
}

// markWritten adds frame i to the written set.
func (f *Frames) markWritten(i uint32) {
	atomic.OrUint64(&f.written[i/64], 1<<(i%64))
}

// MarkWritten records that the VMM wrote the frame at pa (see the top of
// this file); an address outside f is ignored.
func (f *Frames) MarkWritten(pa uint64) {
	if i, ok := f.index(pa); ok {
		f.markWritten(i)
	}
}

// WritableBytes is Bytes for a caller that writes the frame: it records
// the write (see MarkWritten) and takes a write fault pending on the
// page in Go code (PrepareWrite).
func (f *Frames) WritableBytes(pa uint64) []byte {
	b := f.Bytes(pa)
	if b != nil {
		f.MarkWritten(pa)
		PrepareWrite(b)
	}
	return b
}

// TakeWritten returns the frames the VMM wrote since the last call (or
// since f was made) and starts a new set.
func (f *Frames) TakeWritten() *WriteSet {
	s := &WriteSet{start: f.start, n: uint64(f.count), bits: make([]uint64, len(f.written))}
	for i := range f.written {
		if atomic.LoadUint64(&f.written[i]) != 0 {
			s.bits[i] = atomic.SwapUint64(&f.written[i], 0)
		}
	}
	return s
}

// Or adds the frames of o (a set of the same range) to s.
func (s *WriteSet) Or(o *WriteSet) {
	for i := range min(len(s.bits), len(o.bits)) {
		s.bits[i] |= o.bits[i]
	}
}
