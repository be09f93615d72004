package kernel

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/emuckpt/emuckpt/guestmm"
	"golang.org/x/sys/unix"
)

// Restore puts the page data of an image in guest RAM in the background
// while the guest already runs (fillPages), so that the time to the first
// instruction does not grow with the image.
//
// Where the pages go is decided first (placePages): the stored pages of
// each 2 MiB of anonymous memory that a fresh fault would map with a
// 2 MiB page get a 2 MiB block of frames, to be mapped with one 2 MiB
// page (InstallHugePage), and the other pages a run of 4 KiB frames.
// Those frames are registered with a userfaultfd (missing mode) on the
// host mapping of guest RAM, so an access to one that is not filled
// yet, by the guest through KVM, waits in the host kernel. Goroutines
// (the fill workers, one per P, at most 4) read the page data chunk by
// chunk (restoreChunk pages, the image's checksum chunks), each chunk
// by one of them, where PageSource.ReadPages checks the checksums, and
// only then put the pages into guest RAM, which also wakes whatever
// waited for them:
//
//   - pages in 4 KiB frames are read into a buffer of the worker's and
//     copied in with UFFDIO_COPY;
//   - the pages of a block are read into its staging area, 2 MiB of the
//     VMM's own memory where the host has put a huge page: the worker
//     that first needs an area has the host populate it
//     (MADV_POPULATE_WRITE) just before it reads into it, and once all
//     the block's pages are there (whichever worker put the last) the
//     area goes into guest RAM whole with UFFDIO_MOVE: the huge page
//     itself moves, so the guest's 2 MiB page has a 2 MiB host page
//     under it, which PVM's shadow MMU maps at one fault where 4 KiB
//     host pages cost a fault per 8 pages (README, "Benchmarks"). The
//     block's pages that the image does not store (zero pages) are the
//     huge page's zeros. A guest access to any page of a block waits
//     until all of it is in. Without UFFDIO_MOVE (Linux before 6.8) the
//     area is copied with UFFDIO_COPY, in 4 KiB host pages.
//
// The work is the host clearing a huge page per 2 MiB, the copy out of
// the page cache and the checksum; for a guest that reads its memory
// right away it competes with the vCPU's thread for the cores. A worker
// takes a whole block at a time (fillOrder), so that each populates its
// own area right before reading into it and none waits for another's
// (an area is populated once: two workers writing into a fresh one
// would have the host clear a huge page for each and keep one).
//
// With the stager this replaced (one goroutine populating areas
// ahead of a filler whose reads of 4 chunks the image checked on two
// more; it never got ahead) restore-and-read-back of 256 MiB took
// 92-185 ms (median 112) in the quiet rounds of alternating runs, where
// it takes 81-110 ms (median 89) now, against 56-63 ms for the same work
// in a host process on the same cores without a guest (README,
// "Benchmarks"); 3 workers on 2 cores were slower than 2: they only
// take the cores from the guest.
//
// The chunks go in page order, but those of the pages each task needs
// at once (at its stack pointer, instruction pointer and thread
// pointer) first, with the rest of any block those pages are in: the
// stack's pages come last in the page data. A page therefore appears
// in guest RAM already checked: the guest can never see a byte that was
// not. The guest's page tables are complete at restore, as before.
//
// The VMM's own code must never touch a page that is not filled yet: a
// goroutine blocked in a page fault keeps its P, and cannot be stopped
// for a garbage collection inside runtime code such as memmove, which
// would then wait for it while the fill waits for the collection. So
// every exit of the guest first waits for the whole fill (awaitPages),
// and system calls, signals, faults and checkpoints see guest RAM
// complete, as after a synchronous restore; restore itself reads no page
// data after starting the fill. A fill that fails (a chunk whose checksum does not
// match, an image truncated meanwhile) kicks the vCPU, and the run ends at
// that exit with the error, before the guest used any byte of the bad
// chunk (its pages were never filled).
//
// Where no userfaultfd can be had (a kernel without it, an unprivileged
// user without vm.unprivileged_userfaultfd=1), or with a single P (the
// fill would compete with the vCPU's thread for it), the fill is done
// before Restore returns, as before.

// restoreChunk is the number of pages a fill worker reads, checks and puts
// into guest RAM at a time: the image's checksum chunk.
const restoreChunk = 256

// pageFill is a background fill of page data into guest RAM.
type pageFill struct {
	uffd    int
	mem     []byte     // guest RAM
	place   *pagePlace // where each page goes
	ranges  [][]byte   // the parts of guest RAM registered with uffd
	src     PageSource
	hot     []uint64        // pages to fill first
	kick    func()          // stops the vCPU at its next clean point
	move    bool            // UFFDIO_MOVE works: 2 MiB blocks are moved in whole
	staging *staging        // staging areas of 2 MiB blocks (the workers')
	left    []atomic.Uint64 // per block: stored pages not staged yet
	stop    atomic.Bool
	done    chan struct{}
	err     error // set before done is closed
	closed  sync.Once
}

// Linux's userfaultfd ABI (linux/userfaultfd.h), for x86-64.
const (
	uffdAPI            = 0xAA
	uffdioAPI          = 0xC018AA3F // _IOWR(0xAA, 0x3F, struct uffdio_api)
	uffdioRegister     = 0xC020AA00 // _IOWR(0xAA, 0x00, struct uffdio_register)
	uffdioUnregister   = 0x8010AA01 // _IOR(0xAA, 0x01, struct uffdio_range)
	uffdioCopy         = 0xC028AA03 // _IOWR(0xAA, 0x03, struct uffdio_copy)
	uffdioMove         = 0xC028AA05 // _IOWR(0xAA, 0x05, struct uffdio_move)
	uffdRegisterMissng = 1          // UFFDIO_REGISTER_MODE_MISSING
	uffdFeatureMove    = 1 << 16    // UFFD_FEATURE_MOVE (Linux 6.8)
	uffdIoctlMove      = 1 << 5     // 1 << _UFFDIO_MOVE in uffdio_register.ioctls
)

type uffdioAPIArg struct{ API, Features, Ioctls uint64 }

type uffdioRange struct{ Start, Len uint64 }

type uffdioRegisterArg struct {
	Range  uffdioRange
	Mode   uint64
	Ioctls uint64
}

// uffdioCopyArg is struct uffdio_copy, and struct uffdio_move, whose
// last field (move) is where copy is.
type uffdioCopyArg struct {
	Dst, Src, Len, Mode uint64
	Copy                int64
}

func uffdIoctl(fd int, req uintptr, arg unsafe.Pointer) error {
	for {
		_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg))
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return e
		}
		return nil
	}
}

// backgroundFillDisabled turns the background fill off (tests of the
// synchronous path); moveDisabled leaves UFFDIO_MOVE unused (tests of a
// kernel without it).
var backgroundFillDisabled, moveDisabled bool

// physSpan is the guest-physical range [lo, hi).
type physSpan struct{ lo, hi uint64 }

// startFill registers spans of guest RAM mem (page aligned, where
// nothing has touched it: the frames of pl) with a new userfaultfd and
// starts the fill workers. It returns nil when a background fill is not
// possible here; the caller then fills synchronously.
func startFill(mem []byte, spans []physSpan, pl *pagePlace, src PageSource, kick func(), hot []uint64) *pageFill {
	if backgroundFillDisabled || len(pl.pa) == 0 || runtime.GOMAXPROCS(0) < 2 {
		return nil
	}
	f := &pageFill{mem: mem, place: pl, src: src, hot: hot, kick: kick, done: make(chan struct{})}
	if !f.open() {
		return nil
	}
	for _, sp := range mergeSpans(spans) {
		r := mem[sp.lo:sp.hi]
		// The frames are fresh, but make sure no host page is behind
		// them: UFFDIO_COPY and UFFDIO_MOVE fill only missing pages.
		if unix.Madvise(r, unix.MADV_DONTNEED) != nil {
			f.unregister()
			unix.Close(f.uffd)
			return nil
		}
		reg := uffdioRegisterArg{Range: rangeOf(r), Mode: uffdRegisterMissng}
		if uffdIoctl(f.uffd, uffdioRegister, unsafe.Pointer(&reg)) != nil {
			f.unregister()
			unix.Close(f.uffd)
			return nil
		}
		f.ranges = append(f.ranges, r)
		if reg.Ioctls&uffdIoctlMove == 0 {
			f.move = false
		}
	}
	go f.run()
	return f
}

// open makes the userfaultfd, with UFFD_FEATURE_MOVE where the kernel
// has it.
func (f *pageFill) open() bool {
	for _, features := range []uint64{uffdFeatureMove, 0} {
		if features != 0 && moveDisabled {
			continue
		}
		fd, _, e := unix.Syscall(unix.SYS_USERFAULTFD, unix.O_CLOEXEC|unix.O_NONBLOCK, 0, 0)
		if e != 0 {
			return false
		}
		api := uffdioAPIArg{API: uffdAPI, Features: features}
		if uffdIoctl(int(fd), uffdioAPI, unsafe.Pointer(&api)) == nil {
			f.uffd, f.move = int(fd), features != 0
			return true
		}
		unix.Close(int(fd))
	}
	return false
}

// mergeSpans sorts spans and joins the adjacent ones (each registered
// range splits the host's VMA of guest RAM).
func mergeSpans(spans []physSpan) []physSpan {
	spans = slices.DeleteFunc(slices.Clone(spans), func(s physSpan) bool { return s.lo >= s.hi })
	slices.SortFunc(spans, func(a, b physSpan) int { return cmp.Compare(a.lo, b.lo) })
	var out []physSpan
	for _, s := range spans {
		if n := len(out); n > 0 && out[n-1].hi == s.lo {
			out[n-1].hi = s.hi
			continue
		}
		out = append(out, s)
	}
	return out
}

func rangeOf(b []byte) uffdioRange {
	return uffdioRange{Start: uint64(uintptr(unsafe.Pointer(&b[0]))), Len: uint64(len(b))}
}

// unregister unregisters the registered ranges (which wakes any waiter
// left).
func (f *pageFill) unregister() {
	for _, r := range f.ranges {
		r := rangeOf(r)
		uffdIoctl(f.uffd, uffdioUnregister, unsafe.Pointer(&r))
	}
}

// fillWorkers is how many goroutines fill at once, each a chunk at a
// time; the vCPUs' threads compete with them for the cores.
func fillWorkers() int {
	return min(runtime.GOMAXPROCS(0), 4)
}

// run fills guest RAM chunk by chunk of the page data, on fillWorkers
// goroutines that take the units of fillOrder in turn (a chunk, or the
// chunks of a block that no other worker took), each reading, checking
// and putting into guest RAM one chunk at a time (fillChunk). The first
// failure stops them all.
func (f *pageFill) run() {
	defer close(f.done)
	pl := f.place
	if len(pl.huge) > 0 {
		st, err := newStaging(len(pl.huge))
		if err != nil {
			f.err = fmt.Errorf("%w: %w", ErrRestore, err)
			f.kick()
			return
		}
		f.staging = st
		defer st.close()
	}
	n := uint64(len(pl.pa))
	chunks := (n + restoreChunk - 1) / restoreChunk
	order := fillOrder(pl, f.hot, chunks)
	claimed := make([]atomic.Bool, chunks)
	f.left = make([]atomic.Uint64, len(pl.huge))
	for i := range pl.huge {
		f.left[i].Store(pl.huge[i].stored)
	}
	var next atomic.Uint64
	var failed atomic.Bool
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range fillWorkers() {
		wg.Go(func() {
			var buf []byte // for chunks that do not go straight into staging areas
			for !f.stop.Load() && !failed.Load() {
				i := next.Add(1) - 1
				if i >= uint64(len(order)) {
					return
				}
				u := order[i]
				from, to := u.chunk, u.chunk+1
				if u.block >= 0 {
					b := &pl.huge[u.block]
					from, to = b.lo/restoreChunk, (b.hi-1)/restoreChunk+1
				}
				for c := from; c < to && !f.stop.Load() && !failed.Load(); c++ {
					if claimed[c].Swap(true) {
						continue
					}
					if err := f.fillChunk(c, &buf); err != nil {
						mu.Lock()
						if f.err == nil {
							f.err = err
						}
						mu.Unlock()
						failed.Store(true)
						f.kick()
						return
					}
				}
			}
		})
	}
	wg.Wait()
}

// fillUnit is what a fill worker takes at a time: a chunk, or every
// chunk of a 2 MiB block (block >= 0) that no other worker took.
type fillUnit struct {
	chunk uint64
	block int32
}

// fillOrder is the order in which the chunks are filled: the chunks of
// the hot pages first, then the other chunks of the 2 MiB blocks those
// pages are in (a block goes into guest RAM whole), then all in page
// order, each block whole (the pages of a block are mostly consecutive
// in the page data). Other blocks that a hot chunk begins wait for the
// page order: the stack's chunk, last in the page data, holds the end
// of the last block, which the guest needs last. So the workers work on
// different blocks at once (see staging.populate). A chunk may be
// listed more than once: the first time counts.
func fillOrder(pl *pagePlace, hot []uint64, chunks uint64) []fillUnit {
	var order []fillUnit
	for _, p := range hot {
		if c := p / restoreChunk; c < chunks {
			order = append(order, fillUnit{chunk: c, block: -1})
		}
	}
	for _, p := range hot {
		if p < uint64(len(pl.block)) && pl.block[p] >= 0 {
			order = append(order, fillUnit{block: pl.block[p]})
		}
	}
	for c := range chunks {
		u := fillUnit{chunk: c, block: pl.block[c*restoreChunk]}
		if u.block < 0 || len(order) == 0 || order[len(order)-1].block != u.block {
			order = append(order, u)
		}
	}
	return order
}

// fillChunk reads and checks chunk c of the page data and puts its pages
// into guest RAM. A chunk whose pages all go, in order, into the staging
// areas of blocks is read and checked right there (the first write to
// an area makes the host put a huge page there and clear it, just
// before the read writes the same bytes, while they are in the cache);
// any other through *buf.
func (f *pageFill) fillChunk(c uint64, buf *[]byte) error {
	pl := f.place
	n := uint64(len(pl.pa))
	first := c * restoreChunk
	count := min(restoreChunk, n-first)
	b, direct := f.staging.window(pl, first, count)
	if direct {
		for id := pl.block[first]; id <= pl.block[first+count-1]; id++ {
			f.staging.populate(int(id))
		}
	} else {
		if *buf == nil {
			*buf = make([]byte, restoreChunk*guestmm.PageSize)
		}
		b = (*buf)[:count*guestmm.PageSize]
	}
	if err := f.src.ReadPages(b, first); err != nil {
		return fmt.Errorf("%w: reading the page data of the image: %w", ErrRestore, err)
	}
	if err := f.put(b, first, direct); err != nil {
		return fmt.Errorf("%w: putting pages %d-%d of the image into guest memory: %w", ErrRestore, first, first+count-1, err)
	}
	return nil
}

// put puts the checked pages b, from page first on, into guest RAM: a
// run of pages in consecutive 4 KiB frames with one UFFDIO_COPY, the
// pages of a 2 MiB block into its staging area (unless staged says they
// were read there), and a block whose pages are all there into guest
// RAM at once (putHuge): whichever worker puts a block's last page.
func (f *pageFill) put(b []byte, first uint64, staged bool) error {
	pl := f.place
	count := uint64(len(b)) / guestmm.PageSize
	for j := uint64(0); j < count; {
		i := first + j
		if id := pl.block[i]; id >= 0 {
			blk := &pl.huge[id]
			k := j
			if !staged {
				f.staging.populate(int(id))
			}
			for ; k < count && pl.block[first+k] == id; k++ {
				if !staged {
					p := pl.pa[first+k] - blk.pa
					copy(f.staging.area(int(id))[p:p+guestmm.PageSize], b[k*guestmm.PageSize:(k+1)*guestmm.PageSize])
				}
			}
			// The atomic orders this worker's writes to the area
			// before the move of whichever worker puts the last page.
			if f.left[id].Add(^(k - j - 1)) == 0 {
				if err := f.putHuge(int(id)); err != nil {
					return err
				}
			}
			j = k
			continue
		}
		k := j + 1
		for k < count && pl.block[first+k] < 0 && pl.pa[first+k] == pl.pa[first+k-1]+guestmm.PageSize {
			k++
		}
		if err := f.copyPart(f.mem, b[j*guestmm.PageSize:k*guestmm.PageSize], pl.pa[i]); err != nil {
			return err
		}
		j = k
	}
	return nil
}

// staging holds the staging areas of the 2 MiB blocks: block k's is
// 2 MiB at k·2 MiB of one reservation (2 MiB aligned, MADV_HUGEPAGE), so
// that page data in the order of consecutive blocks is consecutive there
// too and read straight in (window). The worker that first needs an
// area populates it (populate), just before it reads into it.
type staging struct {
	mem       []byte // the reservation
	areas     []byte // 2 MiB aligned: the areas, in block order
	populated []sync.Once
}

// Linux's MADV_POPULATE_WRITE (5.14).
const madvPopulateWrite = 23

// populate makes the host put a huge page under area k, once: the host
// allocates and clears it, which costs about half as much as reading
// and checking its 2 MiB. Two workers that both wrote into a fresh area
// would have the host clear two huge pages, one of them for nothing. A
// populate that fails is no error: the writes then fault the pages in.
func (st *staging) populate(k int) {
	st.populated[k].Do(func() { unix.Madvise(st.area(k), madvPopulateWrite) })
}

func newStaging(blocks int) (*staging, error) {
	size := (blocks + 1) * guestmm.HugePageSize
	m, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, fmt.Errorf("staging areas of 2 MiB pages: %w", err)
	}
	a := uint64(uintptr(unsafe.Pointer(&m[0])))
	off := (guestmm.HugePageSize - a%guestmm.HugePageSize) % guestmm.HugePageSize
	st := &staging{mem: m, areas: m[off : off+uint64(blocks)*guestmm.HugePageSize],
		populated: make([]sync.Once, blocks)}
	_ = unix.Madvise(st.areas, unix.MADV_HUGEPAGE) // only an optimization
	return st, nil
}

func (st *staging) area(k int) []byte {
	return st.areas[k*guestmm.HugePageSize : (k+1)*guestmm.HugePageSize]
}

// window returns the staging bytes where pages [first, first+count) go
// when they all go into blocks, each page right after the one before.
func (st *staging) window(pl *pagePlace, first, count uint64) ([]byte, bool) {
	if st == nil {
		return nil, false
	}
	at := func(i uint64) (uint64, bool) {
		id := pl.block[i]
		if id < 0 {
			return 0, false
		}
		return uint64(id)*guestmm.HugePageSize + pl.pa[i] - pl.huge[id].pa, true
	}
	start, ok := at(first)
	if !ok {
		return nil, false
	}
	for j := uint64(1); j < count; j++ {
		if o, ok := at(first + j); !ok || o != start+j*guestmm.PageSize {
			return nil, false
		}
	}
	return st.areas[start : start+count*guestmm.PageSize], true
}

// close unmaps the areas.
func (st *staging) close() {
	unix.Munmap(st.mem)
}

// putHuge puts the staging area of block k, whole, into guest RAM at
// the block's frames (2 MiB aligned) and wakes whatever waited for any
// of it. With UFFDIO_MOVE the host's huge page under the area becomes
// guest RAM's as it is: no copy, and a 2 MiB host page under the
// guest's 2 MiB page, which PVM's shadow MMU then maps at one fault.
// Without it (or for what a move left: the area was not one huge page)
// the rest is copied, in 4 KiB host pages.
func (f *pageFill) putHuge(k int) error {
	s := f.staging.area(k)
	pa := f.place.huge[k].pa
	var done uint64
	if f.move {
		for tries := 0; done < guestmm.HugePageSize && tries < 100; tries++ {
			m := uffdioCopyArg{
				Dst: uint64(uintptr(unsafe.Pointer(&f.mem[pa]))) + done,
				Src: uint64(uintptr(unsafe.Pointer(&s[0]))) + done,
				Len: guestmm.HugePageSize - done,
			}
			err := uffdIoctl(f.uffd, uffdioMove, unsafe.Pointer(&m))
			if m.Copy > 0 {
				done += uint64(m.Copy)
				continue
			}
			if !errors.Is(err, unix.EAGAIN) {
				break // copy the rest
			}
		}
	}
	if done == guestmm.HugePageSize {
		return nil // the area has no pages left
	}
	if err := f.copyPart(f.mem, s[done:], pa+done); err != nil {
		return err
	}
	// After a copy the area must lose its pages.
	return unix.Madvise(s, unix.MADV_DONTNEED)
}

// copyPart puts b into region at offset off.
func (f *pageFill) copyPart(region, b []byte, off uint64) error {
	for len(b) > 0 {
		c := uffdioCopyArg{
			Dst: uint64(uintptr(unsafe.Pointer(&region[off]))),
			Src: uint64(uintptr(unsafe.Pointer(&b[0]))),
			Len: uint64(len(b)),
		}
		err := uffdIoctl(f.uffd, uffdioCopy, unsafe.Pointer(&c))
		runtime.KeepAlive(b)
		if c.Copy > 0 {
			b, off = b[c.Copy:], off+uint64(c.Copy)
			continue
		}
		if errors.Is(err, unix.EAGAIN) {
			continue // the address space changed meanwhile: try again
		}
		if err == nil {
			err = unix.Errno(-c.Copy)
		}
		return err
	}
	return nil
}

// wait waits for the fill to end and returns its error; after it, the
// region is an ordinary part of guest RAM again.
func (f *pageFill) wait() error {
	<-f.done
	f.release()
	return f.err
}

// cancel stops the fill workers (Close of a kernel whose fill still runs).
// Pages it had not filled then read as zeros: only for a machine that
// will not run again.
func (f *pageFill) cancel() {
	f.stop.Store(true)
	<-f.done
	f.release()
}

func (f *pageFill) release() {
	f.closed.Do(func() {
		closeSource(f.src)
		f.unregister() // wakes any waiter left
		unix.Close(f.uffd)
	})
}

// awaitPages waits until the page data of a restore is all in guest RAM
// (see the top of this file): every exit calls it before the VMM looks at
// guest memory. A failed fill ends the run with its error.
func (k *Kernel) awaitPages() error {
	if k.fill == nil {
		return nil
	}
	err := k.fill.wait()
	k.fill = nil
	return err
}

// stopFill stops a background fill that still runs (Close).
func (k *Kernel) stopFill() {
	if k.fill != nil {
		k.fill.cancel()
		k.fill = nil
	}
}

// closeSource closes a PageSource that is an io.Closer.
func closeSource(src PageSource) {
	if c, ok := src.(io.Closer); ok {
		c.Close()
	}
}

// hotPages returns the pages of the page data that the live tasks of st
// touch first: at their stack pointer (and the page below it),
// instruction pointer and thread pointer.
func hotPages(st *State) []uint64 {
	var hot []uint64
	for i := range st.Processes {
		ps := &st.Processes[i]
		for j := range ps.Tasks {
			ts := &ps.Tasks[j]
			for _, va := range []uint64{ts.Regs.RSP, ts.Regs.RSP - guestmm.PageSize, ts.Regs.RIP, ts.FSBase} {
				if idx, ok := storedPage(ps, va&^(guestmm.PageSize-1)); ok && !slices.Contains(hot, idx) {
					hot = append(hot, idx)
				}
			}
		}
	}
	return hot
}

// storedPage returns the index in the page data of the page at va of ps,
// if the image stores it (a process that shares its memory stores none:
// the one it shares with does).
func storedPage(ps *ProcessState, va uint64) (uint64, bool) {
	for i := range ps.VMAs {
		for _, r := range ps.VMAs[i].Pages {
			if va >= r.VA && (va-r.VA)/guestmm.PageSize < r.Count {
				return r.Index + (va-r.VA)/guestmm.PageSize, true
			}
		}
	}
	return 0, false
}

// pagePlace is where the pages of an image's page data go in guest RAM
// (placePages): in 2 MiB blocks, for the stored pages of every 2 MiB of
// anonymous memory that restore maps with one 2 MiB page, and in a run
// of 4 KiB frames for the rest.
type pagePlace struct {
	pa    []uint64 // the frame of each page of the page data
	block []int32  // the block each page is in, or -1
	huge  []hugeBlock
	// The run of frames of the pages in no block: small pages from
	// smallBase on (see Frames.RunFrame).
	smallBase, small uint64
}

// hugeBlock is 2 MiB of anonymous memory at va that restore maps with
// one 2 MiB page of the HugeFrames frames at pa. Its stored pages have
// page data indices in [lo, hi); the frames of its other pages hold
// zeros (a zero page is not stored, even inside a 2 MiB page).
type hugeBlock struct {
	va, pa    uint64
	lo, hi    uint64
	stored    uint64
	runs      []PageRun // its stored pages (Index: in the page data)
	installed bool      // mapped (restoreMemory)
}

// placePages decides where the page data of st goes in guest RAM and
// takes the frames. uses counts the mappings of each page.
//
// A 2 MiB aligned piece of a private anonymous VMA that allows 2 MiB
// pages (the rules of a fresh fault: guestmm.Layout.HugeEligible, which
// includes MADV_NOHUGEPAGE, saved in the image) comes back as one 2 MiB
// page when it lies wholly inside the VMA, the image stores at least
// one of its pages, and each of its stored pages is mapped only there
// (a page that processes shared after fork comes back in a 4 KiB frame
// with a reference per mapping, as before). The run the checkpoint
// came from had a 2 MiB page there unless memory was short or its page
// had been split. A block costs the frames of its pages the image does
// not store (zero pages) more than 4 KiB frames would: blocks are taken,
// the fullest first, while those extra frames leave guestmm.HugeReserve
// frames free once all the page data is placed, as a fault leaves them.
// A full block costs nothing more, so it is taken however little room
// the guest has to spare: a nearly full guest, whose run had to fault
// its last blocks in 4 KiB pages, gets them back in 2 MiB pages.
func (k *Kernel) placePages(st *State, uses []uint32) (*pagePlace, error) {
	n := st.PageCount
	pl := &pagePlace{pa: make([]uint64, n), block: make([]int32, n)}
	for i := range pl.block {
		pl.block[i] = -1
	}
	var cands []*hugeBlock
	for i := range st.Processes {
		ps := &st.Processes[i]
		for j := range ps.VMAs {
			cands = appendHugeCandidates(cands, &ps.VMAs[j], uses)
		}
	}
	// Choose the fullest blocks while they fit.
	slices.SortStableFunc(cands, func(a, b *hugeBlock) int { return int(b.stored) - int(a.stored) })
	capacity := k.frames.Capacity()
	spare := int64(capacity-k.frames.Used()) - int64(n) - guestmm.HugeFrames // after the page data and alignment
	budget := spare - int64(guestmm.HugeReserve(capacity))                   // for the zero pages of blocks
	var chosen []*hugeBlock
	for _, b := range cands {
		extra := int64(guestmm.HugeFrames - b.stored)
		if spare >= 0 && (extra == 0 || extra <= budget) {
			budget -= extra
			chosen = append(chosen, b)
		}
	}
	slices.SortFunc(chosen, func(a, b *hugeBlock) int { return cmp.Compare(a.lo, b.lo) })
	for _, b := range chosen {
		pa, err := k.frames.AllocHuge()
		if err != nil {
			break // the rest go into the run
		}
		b.pa = pa
		id := int32(len(pl.huge))
		for _, r := range b.runs {
			for j := uint64(0); j < r.Count; j++ {
				pl.block[r.Index+j] = id
				pl.pa[r.Index+j] = pa + (r.VA - b.va + j*guestmm.PageSize)
			}
		}
		b.runs = nil
		pl.huge = append(pl.huge, *b)
	}
	for i := range n {
		if pl.block[i] < 0 {
			pl.small++
		}
	}
	if pl.small > 0 {
		base, err := k.frames.AllocRun(int(pl.small))
		if err != nil {
			return nil, err
		}
		pl.smallBase = base
		s := uint64(0)
		for i := range n {
			if pl.block[i] < 0 {
				pl.pa[i] = k.frames.RunFrame(base, s)
				s++
			}
		}
	}
	return pl, nil
}

// appendHugeCandidates appends the 2 MiB blocks of vs that placePages
// may map with 2 MiB pages.
func appendHugeCandidates(cands []*hugeBlock, vs *VMAState, uses []uint32) []*hugeBlock {
	v := guestmm.VMA{Prot: guestmm.Prot(vs.Prot), Shared: vs.Shared, Anonymous: vs.Anonymous,
		GrowsDown: vs.GrowsDown, NoHugePage: vs.NoHugePage}
	if len(vs.Pages) == 0 || !addressLayout.HugeEligible(&v) {
		return cands
	}
	blocks := map[uint64]*hugeBlock{}
	var order []*hugeBlock
	bad := map[uint64]bool{}
	for _, r := range vs.Pages { // inside the VMA and the page data (Validate)
		end := r.VA + r.Count*guestmm.PageSize
		for va := r.VA; va < end; {
			base := va &^ (guestmm.HugePageSize - 1)
			next := min(end, base+guestmm.HugePageSize)
			if base < vs.Start || vs.End-base < guestmm.HugePageSize || bad[base] {
				va = next
				continue
			}
			piece := PageRun{VA: va, Count: (next - va) / guestmm.PageSize, Index: r.Index + (va-r.VA)/guestmm.PageSize}
			for j := range piece.Count {
				if uses[piece.Index+j] != 1 {
					bad[base] = true
				}
			}
			b := blocks[base]
			if b == nil {
				b = &hugeBlock{va: base, lo: piece.Index, hi: piece.Index + piece.Count}
				blocks[base] = b
				order = append(order, b)
			}
			b.lo, b.hi = min(b.lo, piece.Index), max(b.hi, piece.Index+piece.Count)
			b.stored += piece.Count
			b.runs = append(b.runs, piece)
			va = next
		}
	}
	for _, b := range order {
		if !bad[b.va] {
			cands = append(cands, b)
		}
	}
	return cands
}
