package guestmm

import (
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"sync"
	"sync/atomic"
)

// PageSize is the size of a guest page and of a physical frame.
const PageSize = 4096

const (
	pageShift = 12
	pageMask  = PageSize - 1
)

// ErrNoMemory is wrapped by every error that reports that the frame pool
// is exhausted. AddressSpace methods translate it to unix.ENOMEM.
var ErrNoMemory = errors.New("guestmm: out of guest physical frames")

// Frames is a reference-counted allocator of 4 KiB frames of guest physical
// RAM. It manages the frames that lie inside [start, end) of mem, where mem
// is the whole guest RAM (index = guest-physical address).
//
// A frame is either free (reference count 0) or in use. Alloc hands out a
// zero-filled frame with count 1, IncRef and DecRef adjust the count and a
// frame whose count drops to 0 goes back to the pool.
//
// Guest RAM is normally a lazily populated anonymous host mapping, so the
// host only commits memory for pages that are touched. To keep it that way
// Frames remembers per frame whether its contents are known to be zero: a
// frame that has never been handed out is not cleared again, and a freed
// frame is only cleared when it is handed out the next time.
//
// Frames is safe for concurrent use; it is shared by all address spaces of
// a VM.
type Frames struct {
	mu    sync.Mutex
	mem   []byte
	start uint64 // PA of frame 0
	count uint32 // number of frames managed

	refs []int32  // reference count per frame
	zero []uint64 // bitset: frame contents are known to be zero
	// written: bitset of the frames the VMM wrote since the last
	// TakeWritten (written.go); atomic.
	written []uint64
	free    []uint32 // stack of freed frame indexes (LIFO keeps hot frames hot)
	next    uint32   // frames with index >= next have never been allocated
	inUse   int
	// Frames [holeLo, holeHi) are not RAM (the MMIO hole): never handed
	// out, never counted; next jumps over them. holeLo == holeHi: none.
	holeLo, holeHi uint32
	// blockFree counts the free frames of each 2 MiB aligned block of
	// guest-physical addresses (frame i is in block blockOf(i)); a block
	// only partly managed never reaches HugeFrames.
	blockFree []uint16
	block0    uint64 // the block of frame 0

	tsc *TSCPatch // rdtsc patching of executable frames; nil when off
}

// NewFrames returns an allocator for the frames inside guest RAM [start, end).
// start is rounded up and end rounded down to a page boundary and both are
// clipped to len(mem). The range is assumed to be zero-filled (fresh
// anonymous memory); call MarkDirty for ranges that already hold data.
func NewFrames(mem []byte, start, end uint64) *Frames {
	if end > uint64(len(mem)) {
		end = uint64(len(mem))
	}
	end &^= pageMask
	var n uint64
	if start < end { // end <= len(mem), so rounding start up cannot overflow
		start = alignUp(start)
		if start < end {
			n = (end - start) >> pageShift
		}
	}
	if n > 1<<32-1 {
		n = 1<<32 - 1
	}
	f := &Frames{
		mem:   mem,
		start: start,
		count: uint32(n),
		refs:  make([]int32, n),
		zero:  make([]uint64, (n+63)/64),
	}
	f.written = make([]uint64, len(f.zero))
	for i := range f.zero {
		f.zero[i] = ^uint64(0)
	}
	if n > 0 {
		f.block0 = start >> 21
		f.blockFree = make([]uint16, f.blockOf(uint32(n-1))+1)
		end := start + n<<pageShift
		for b := range f.blockFree {
			lo := max(start, (f.block0+uint64(b))<<21)
			hi := min(end, (f.block0+uint64(b)+1)<<21)
			f.blockFree[b] = uint16((hi - lo) >> pageShift)
		}
	}
	return f
}

// NewFramesAround is NewFrames for RAM with a hole: the frames inside
// [holeStart, holeEnd) (rounded out to 2 MiB) are never handed out, so no
// run of AllocRun and no 2 MiB block of AllocHuge includes them; Capacity
// does not count them.
func NewFramesAround(mem []byte, start, end, holeStart, holeEnd uint64) *Frames {
	f := NewFrames(mem, start, end)
	holeStart &^= hugeMask
	holeEnd = (holeEnd + hugeMask) &^ hugeMask
	lo, hi, ok := f.clip(holeStart, holeEnd)
	if !ok || holeStart >= holeEnd {
		return f
	}
	f.holeLo, f.holeHi = lo, hi
	for i := lo; i < hi; i++ {
		f.blockFree[f.blockOf(i)]--
	}
	if f.next == lo {
		f.next = hi
	}
	return f
}

// inHole reports whether frame i lies in the hole.
func (f *Frames) inHole(i uint32) bool { return i >= f.holeLo && i < f.holeHi }

// bumpNext moves next past the hole when it reached it.
func (f *Frames) bumpNext() {
	if f.next == f.holeLo && f.holeLo < f.holeHi {
		f.next = f.holeHi
	}
}

// inHolePA reports whether the page at pa overlaps the hole.
func (f *Frames) inHolePA(pa uint64) bool {
	lo, hi := f.Hole()
	return lo < hi && pa < hi && pa+PageSize > lo
}

// blockOf returns the index of the 2 MiB block frame i is in.
func (f *Frames) blockOf(i uint32) uint32 {
	return uint32((f.start>>pageShift+uint64(i))>>9 - f.block0)
}

// Mem returns the guest RAM the frames live in.
func (f *Frames) Mem() []byte { return f.mem }

// Range returns the guest-physical range [start, end) that f manages.
func (f *Frames) Range() (start, end uint64) {
	return f.start, f.start + uint64(f.count)<<pageShift
}

// Capacity returns the number of frames f manages (not those of the
// hole).
func (f *Frames) Capacity() int { return int(f.count - (f.holeHi - f.holeLo)) }

// Hole returns the guest-physical range [start, end) inside Range whose
// frames f never hands out; start == end when there is none.
func (f *Frames) Hole() (start, end uint64) {
	return f.start + uint64(f.holeLo)<<pageShift, f.start + uint64(f.holeHi)<<pageShift
}

// Used returns the number of frames in use.
func (f *Frames) Used() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.inUse
}

// Contains reports whether pa lies inside a frame managed by f.
func (f *Frames) Contains(pa uint64) bool {
	_, ok := f.index(pa)
	return ok
}

// index converts a physical address to a frame index.
func (f *Frames) index(pa uint64) (uint32, bool) {
	if pa < f.start {
		return 0, false
	}
	i := (pa - f.start) >> pageShift
	if i >= uint64(f.count) || f.inHole(uint32(i)) {
		return 0, false
	}
	return uint32(i), true
}

// Alloc returns the physical address of a zero-filled frame with reference
// count 1. When no frame is left the error wraps ErrNoMemory.
func (f *Frames) Alloc() (pa uint64, err error) {
	pa, zeroed, err := f.alloc()
	if err != nil {
		return 0, err
	}
	if !zeroed {
		PrepareWrite(f.mem[pa : pa+PageSize])
		clear(f.mem[pa : pa+PageSize])
	}
	return pa, nil
}

// alloc takes a frame without clearing it and reports whether its contents
// are known to be zero, so a caller that overwrites the frame anyway (a file
// read, a copy on write) can skip the memclr.
func (f *Frames) alloc() (uint64, bool, error) {
	f.mu.Lock()
	var i uint32
	switch {
	case len(f.free) > 0:
		i = f.free[len(f.free)-1]
		f.free = f.free[:len(f.free)-1]
	case f.next < f.count:
		i = f.next
		f.next++
		f.bumpNext()
	default:
		used := f.inUse
		f.mu.Unlock()
		return 0, false, fmt.Errorf("%w (%d of %d frames in use)", ErrNoMemory, used, f.count)
	}
	f.refs[i] = 1
	f.inUse++
	f.blockFree[f.blockOf(i)]--
	w, bit := i/64, uint64(1)<<(i%64)
	zeroed := f.zero[w]&bit != 0
	f.zero[w] &^= bit // in use: the owner may write to it
	f.markWritten(i)
	f.mu.Unlock()
	return f.start + uint64(i)<<pageShift, zeroed, nil
}

// HugePageSize is the size of a 2 MiB page: HugeFrames frames at a
// physical address that is a multiple of it.
const (
	HugePageSize = 2 << 20
	HugeFrames   = HugePageSize / PageSize
	hugeMask     = HugePageSize - 1
)

// AllocHuge returns the physical address of HugeFrames zero-filled frames
// at consecutive physical addresses, the first one 2 MiB aligned, each
// with reference count 1 (they stay separate frames: each can be freed
// or shared on its own). It takes never-used frames first, then a block
// of free ones; frames never used are not cleared. When no such block is
// left the error wraps ErrNoMemory, though single frames may remain.
func (f *Frames) AllocHuge() (uint64, error) {
	f.mu.Lock()
	first, ok := f.takeHugeLocked()
	if !ok {
		used := f.inUse
		f.mu.Unlock()
		return 0, fmt.Errorf("%w: no free 2 MiB block (%d of %d frames in use)", ErrNoMemory, used, f.count)
	}
	var dirty [HugeFrames]bool
	f.blockFree[f.blockOf(first)] = 0
	for i := first; i < first+HugeFrames; i++ {
		f.refs[i] = 1
	}
	// The bitsets a word at a time (restore takes a block per 2 MiB of
	// the image before the guest's first instruction).
	for i := first; i < first+HugeFrames; {
		w, lo := i/64, i%64
		n := min(64-lo, first+HugeFrames-i)
		mask := ^uint64(0) >> (64 - n) << lo
		for d := ^f.zero[w] & mask; d != 0; d &= d - 1 {
			dirty[w*64+uint32(bits.TrailingZeros64(d))-first] = true
		}
		f.zero[w] &^= mask
		atomic.OrUint64(&f.written[w], mask) // markWritten, for the word
		i += n
	}
	f.inUse += HugeFrames
	f.mu.Unlock()
	pa := f.start + uint64(first)<<pageShift
	for j := 0; j < HugeFrames; {
		if !dirty[j] {
			j++
			continue
		}
		k := j
		for k < HugeFrames && dirty[k] {
			k++
		}
		PrepareWrite(f.mem[pa+uint64(j)<<pageShift : pa+uint64(k)<<pageShift])
		clear(f.mem[pa+uint64(j)<<pageShift : pa+uint64(k)<<pageShift])
		j = k
	}
	return pa, nil
}

// takeHugeLocked finds the index of the first frame of a free, 2 MiB
// aligned block: one of freed frames below next if there is one (their
// host memory is already there; clearing them costs less than the host's
// first touch of fresh memory), else at the top of the never-used frames
// (the frames skipped to align it go to the free list, still zero).
func (f *Frames) takeHugeLocked() (uint32, bool) {
	firstOf := func(b uint32) uint64 { return (f.block0+uint64(b))<<9 - f.start>>pageShift }
	if len(f.free) >= HugeFrames {
		for b, n := range f.blockFree {
			if n == HugeFrames && firstOf(uint32(b))+HugeFrames <= uint64(f.next) {
				lo := uint32(firstOf(uint32(b)))
				hi := lo + HugeFrames
				f.free = slices.DeleteFunc(f.free, func(i uint32) bool { return i >= lo && i < hi })
				return lo, true
			}
		}
	}
	pa := f.start + uint64(f.next)<<pageShift
	a := ((pa+hugeMask)&^hugeMask - f.start) >> pageShift
	if a+HugeFrames > uint64(f.holeLo) && a < uint64(f.holeHi) {
		// The block would reach into the hole: take the first one
		// above it (the hole's ends are 2 MiB aligned).
		a = uint64(f.holeHi)
	}
	if a+HugeFrames > uint64(f.count) {
		return 0, false
	}
	for i := f.next; i < uint32(a); i++ {
		if !f.inHole(i) {
			f.free = append(f.free, i)
		}
	}
	f.next = uint32(a) + HugeFrames
	f.bumpNext()
	return uint32(a), true
}

// IncRef adds a reference to the in-use frame at pa. Addresses outside f and
// free frames are ignored.
func (f *Frames) IncRef(pa uint64) {
	i, ok := f.index(pa)
	if !ok {
		return
	}
	f.mu.Lock()
	if f.refs[i] > 0 {
		f.refs[i]++
	}
	f.mu.Unlock()
}

// DecRef drops a reference to the frame at pa and frees the frame when the
// count reaches zero. Addresses outside f and free frames are ignored.
func (f *Frames) DecRef(pa uint64) {
	i, ok := f.index(pa)
	if !ok {
		return
	}
	f.mu.Lock()
	freed := false
	if f.refs[i] > 0 {
		f.refs[i]--
		if f.refs[i] == 0 {
			f.inUse--
			f.free = append(f.free, i)
			f.blockFree[f.blockOf(i)]++
			freed = true
		}
	}
	f.mu.Unlock()
	if freed && f.tsc != nil {
		f.tsc.freed(pa &^ pageMask)
	}
}

// RefCount returns the reference count of the frame at pa (0 when free or
// outside f).
func (f *Frames) RefCount(pa uint64) int {
	i, ok := f.index(pa)
	if !ok {
		return 0
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return int(f.refs[i])
}

// RefCountStopped is RefCount without taking the lock, for a caller that
// reads many counts while nothing can allocate, free or share a frame
// (a checkpoint, every vCPU stopped): about half the cost per frame.
func (f *Frames) RefCountStopped(pa uint64) int {
	i, ok := f.index(pa)
	if !ok {
		return 0
	}
	return int(f.refs[i])
}

// RefCountsStopped is RefCountStopped for the len(dst) frames from pa
// on, into dst (0 for a page that is not a frame of f).
func (f *Frames) RefCountsStopped(pa uint64, dst []int32) {
	i, ok := f.index(pa)
	if n := uint64(len(dst)); ok && n > 0 {
		// Indexes are linear in the address: only the hole can lie between.
		if j, ok := f.index(pa + (n-1)*PageSize); ok && !(i < f.holeLo && j >= f.holeHi && f.holeLo < f.holeHi) {
			copy(dst, f.refs[i:j+1])
			return
		}
	}
	for k := range dst {
		dst[k] = int32(f.RefCountStopped(pa + uint64(k)*PageSize))
	}
}

// Bytes returns the contents of the frame at pa as a slice of guest RAM, or
// nil when pa is not a frame of f. pa is rounded down to its frame.
func (f *Frames) Bytes(pa uint64) []byte {
	if _, ok := f.index(pa); !ok {
		return nil
	}
	pa &^= pageMask
	return f.mem[pa : pa+PageSize : pa+PageSize]
}

// MarkDirty forgets that the frames overlapping [start, end) are zero, so
// that they are cleared before being handed out. Use it when guest RAM under
// f was written before f took it over.
func (f *Frames) MarkDirty(start, end uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	lo, hi, ok := f.clip(start, end)
	for i := lo; ok && i < hi; i++ {
		f.zero[i/64] &^= 1 << (i % 64)
	}
}

// MarkZero records that the free frames overlapping [start, end) are zero
// again, e.g. after the VMM returned them to the host with
// madvise(MADV_DONTNEED). Frames in use are left alone.
func (f *Frames) MarkZero(start, end uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	lo, hi, ok := f.clip(start, end)
	for i := lo; ok && i < hi; i++ {
		if f.refs[i] == 0 {
			f.zero[i/64] |= 1 << (i % 64)
		}
	}
}

// clip converts the physical range [start, end) to the frame indexes
// [lo, hi) of the frames it overlaps.
func (f *Frames) clip(start, end uint64) (lo, hi uint32, ok bool) {
	fend := f.start + uint64(f.count)<<pageShift
	start = max(start, f.start)
	end = min(end, fend)
	if start >= end {
		return 0, 0, false
	}
	lo = uint32((start - f.start) >> pageShift)
	hi = uint32((end - f.start + pageMask) >> pageShift)
	return lo, hi, true
}

// ForEachUsed calls fn for every frame in use, in address order, with its
// reference count. fn must not call back into f.
func (f *Frames) ForEachUsed(fn func(pa uint64, refs int) bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := uint32(0); i < f.next; i++ {
		if f.refs[i] > 0 && !fn(f.start+uint64(i)<<pageShift, int(f.refs[i])) {
			return
		}
	}
}

// alignUp rounds x up to a page boundary; it returns 0 on overflow.
func alignUp(x uint64) uint64 {
	if x > ^uint64(0)-pageMask {
		return 0
	}
	return (x + pageMask) &^ pageMask
}

// AllocRun takes n never-used frames at consecutive physical addresses
// (but for the hole, which the run skips: see RunFrame and RunSegments),
// each with reference count 1, without clearing them: the caller fills
// them (a restore maps image pages over them). It fails if fewer than n
// untouched frames are left at the top of the allocator.
func (f *Frames) AllocRun(n int) (pa uint64, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	span := uint64(n)
	if n >= 0 && f.next < f.holeLo && uint64(f.next)+span > uint64(f.holeLo) {
		span += uint64(f.holeHi - f.holeLo)
	}
	if n < 0 || uint64(f.next)+span > uint64(f.count) {
		return 0, fmt.Errorf("%w: no run of %d free frames (%d of %d used)", ErrNoMemory, n, f.inUse, f.Capacity())
	}
	first := f.next
	for i := first; i < first+uint32(span); i++ {
		if f.inHole(i) {
			continue
		}
		f.refs[i] = 1
		f.zero[i/64] &^= 1 << (i % 64)
		f.markWritten(i)
		f.blockFree[f.blockOf(i)]--
	}
	f.next += uint32(span)
	f.bumpNext()
	f.inUse += n
	return f.start + uint64(first)<<pageShift, nil
}

// RunFrame returns the physical address of frame i of the run AllocRun
// returned at base: base+i pages, and past the hole for a run that
// crosses it.
func (f *Frames) RunFrame(base, i uint64) uint64 {
	pa := base + i<<pageShift
	if lo, hi := f.Hole(); lo < hi && base < lo && pa >= lo {
		pa += hi - lo
	}
	return pa
}

// Segment is a part of a run of frames: Count frames from guest-physical
// PA on, frames First to First+Count-1 of the run.
type Segment struct{ PA, First, Count uint64 }

// RunSegments returns the parts of the physically consecutive frames of
// a run of n frames at base: one, or two for a run that crosses the hole.
func (f *Frames) RunSegments(base, n uint64) []Segment {
	if lo, hi := f.Hole(); lo < hi && base < lo && base+n<<pageShift > lo {
		k := (lo - base) >> pageShift
		return []Segment{{PA: base, First: 0, Count: k}, {PA: hi, First: k, Count: n - k}}
	}
	return []Segment{{PA: base, First: 0, Count: n}}
}
