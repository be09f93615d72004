package kernel

import (
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
// yet, by the guest through KVM, waits in the host kernel. A goroutine
// (the filler) reads the page data chunk by chunk (restoreChunk pages,
// the image's checksum chunks), where PageSource.ReadPages checks the
// checksums, and only then puts the pages into guest RAM, which also
// wakes whatever waited for them:
//
//   - pages in 4 KiB frames are read into a buffer of the filler's and
//     copied in with UFFDIO_COPY;
//   - the pages of a block are read into its staging area, 2 MiB of the
//     filler's own memory where the host has put a huge page (a second
//     goroutine, the stager, populates the areas of the next blocks
//     meanwhile: the host clearing a huge page costs about as much as
//     reading and checking 2 MiB), and once all of them are there the
//     area goes into guest RAM whole with UFFDIO_MOVE: the huge page
//     itself moves, so the guest's 2 MiB page has a 2 MiB host page
//     under it, which PVM's shadow MMU maps at one fault where 4 KiB
//     host pages cost a fault per 8 pages (README, "Benchmarks"). The
//     block's pages that the image does not store (zero pages) are the
//     huge page's zeros. A guest access to any page of a block waits
//     until all of it is in. Without UFFDIO_MOVE (Linux before 6.8) the
//     area is copied with UFFDIO_COPY, in 4 KiB host pages.
//
// The chunks go in page order, but those of the pages each task needs
// at once (at its stack pointer, instruction pointer and thread
// pointer) first, with the rest of any block they begin: the stack's
// pages come last in the page data. A page therefore appears in guest
// RAM already checked: the guest can never see a byte that was not.
// The guest's page tables are complete at restore, as before.
//
// The VMM's own code must never touch a page that is not filled yet: a
// goroutine blocked in a page fault keeps its P, and cannot be stopped
// for a garbage collection inside runtime code such as memmove, which
// would then wait for it while the filler waits for the collection. So
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
// filler would compete with the vCPU's thread for it), the fill is done
// before Restore returns, as before.

// restoreChunk is the number of pages the filler reads, checks and puts
// into guest RAM at a time: the image's checksum chunk.
const restoreChunk = 256

// pageFill is a background fill of page data into guest RAM.
type pageFill struct {
	uffd   int
	mem    []byte     // guest RAM
	place  *pagePlace // where each page goes
	ranges [][]byte   // the parts of guest RAM registered with uffd
	src    PageSource
	hot    []uint64 // chunks to fill first
	kick   func()   // stops the vCPU at its next clean point
	move   bool     // UFFDIO_MOVE works: 2 MiB blocks are moved in whole
	stager *stager  // staging areas of 2 MiB blocks (the filler's)
	stop   atomic.Bool
	done   chan struct{}
	err    error // set before done is closed
	closed sync.Once
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
// starts the filler. It returns nil when a background fill is not
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
	slices.SortFunc(spans, func(a, b physSpan) int { return cmpU64(a.lo, b.lo) })
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

// fillState is what the filler keeps between chunks.
type fillState struct {
	filled, queued []bool   // per chunk
	urgent         []uint64 // chunks the blocks begun need
	left           []uint64 // per block: stored pages not staged yet
	begun          []bool   // per block
}

// run fills guest RAM chunk by chunk of the page data: the hot chunks
// first, then in page order, with the chunks that a 2 MiB block begun
// still needs before any other (a block goes in whole).
func (f *pageFill) run() {
	defer close(f.done)
	pl := f.place
	if len(pl.huge) > 0 {
		st, err := newStager(len(pl.huge))
		if err != nil {
			f.err = fmt.Errorf("%w: %w", ErrRestore, err)
			f.kick()
			return
		}
		f.stager = st
		defer st.close()
	}
	n := uint64(len(pl.pa))
	buf := make([]byte, restoreChunk*guestmm.PageSize)
	chunks := (n + restoreChunk - 1) / restoreChunk
	fs := &fillState{filled: make([]bool, chunks), queued: make([]bool, chunks),
		left: make([]uint64, len(pl.huge)), begun: make([]bool, len(pl.huge))}
	for i := range pl.huge {
		fs.left[i] = pl.huge[i].stored
	}
	order := append(slices.Clone(f.hot), make([]uint64, 0, chunks)...)
	for c := range chunks {
		order = append(order, c)
	}
	for pos := 0; ; {
		var c uint64
		hot := false
		switch {
		case len(fs.urgent) > 0:
			c, fs.urgent = fs.urgent[0], fs.urgent[1:]
		case pos < len(order):
			c, hot, pos = order[pos], pos < len(f.hot), pos+1
		default:
			return
		}
		if f.stop.Load() {
			return
		}
		if c >= chunks || fs.filled[c] {
			continue
		}
		fs.filled[c] = true
		first := c * restoreChunk
		count := min(restoreChunk, n-first)
		// A chunk whose pages all go, in order, into the staging areas
		// of blocks is read and checked right there; any other through
		// buf.
		b, direct := f.stager.window(pl, first, count)
		if !direct {
			b = buf[:count*guestmm.PageSize]
		} else if !hot {
			// Several such chunks at once: the image reads and checks
			// them in parallel.
			k := uint64(1)
			for k < readAhead && c+k < chunks && !fs.filled[c+k] {
				k++
			}
			if wb, ok := f.stager.window(pl, first, min(k*restoreChunk, n-first)); k > 1 && ok {
				for j := uint64(1); j < k; j++ {
					fs.filled[c+j] = true
				}
				b, count = wb, min(k*restoreChunk, n-first)
			}
		}
		if err := f.src.ReadPages(b, first); err != nil {
			f.err = fmt.Errorf("%w: reading the page data of the image: %w", ErrRestore, err)
			f.kick()
			return
		}
		if err := f.put(fs, b, first, direct, hot); err != nil {
			f.err = fmt.Errorf("%w: putting pages %d-%d of the image into guest memory: %w", ErrRestore, first, first+count-1, err)
			f.kick()
			return
		}
	}
}

// put puts the checked pages b, from page first on, into guest RAM: a
// run of pages in consecutive 4 KiB frames with one UFFDIO_COPY, the
// pages of a 2 MiB block into its staging area (unless staged says they
// were read there), and a block whose pages are all there into guest
// RAM at once (putHuge). A block that a hot chunk begins has the other
// chunks it needs read next; any other block waits for the page order
// to reach them (the pages of a block are mostly consecutive in the
// page data, and urgency for every block begun would go through them
// backwards from the stack's chunk, which holds the end of the last).
func (f *pageFill) put(fs *fillState, b []byte, first uint64, staged, hot bool) error {
	pl := f.place
	count := uint64(len(b)) / guestmm.PageSize
	for j := uint64(0); j < count; {
		i := first + j
		if id := pl.block[i]; id >= 0 {
			blk := &pl.huge[id]
			if !fs.begun[id] {
				fs.begun[id] = true
				f.stager.begin(int(id))
				for c := blk.lo / restoreChunk; hot && c <= (blk.hi-1)/restoreChunk; c++ {
					if !fs.filled[c] && !fs.queued[c] {
						fs.queued[c] = true
						fs.urgent = append(fs.urgent, c)
					}
				}
			}
			if !staged {
				copy(f.stager.area(int(id))[pl.pa[i]-blk.pa:], b[j*guestmm.PageSize:(j+1)*guestmm.PageSize])
			}
			if fs.left[id]--; fs.left[id] == 0 {
				if err := f.putHuge(int(id)); err != nil {
					return err
				}
			}
			j++
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

// stager holds the staging areas of the 2 MiB blocks: block k's is
// 2 MiB at k·2 MiB of one reservation (2 MiB aligned, MADV_HUGEPAGE), so
// that page data in the order of consecutive blocks is consecutive there
// too and read straight in (window). A goroutine populates the areas of
// the next blocks ahead of the filler, on another core
// (MADV_POPULATE_WRITE, which leaves what is there as it is): the host
// allocating and clearing a huge page costs about as much as reading
// and checking its 2 MiB.
type stager struct {
	mem   []byte // the reservation
	areas []byte // 2 MiB aligned: the areas, in block order
	moved []atomic.Bool
	begun atomic.Int64 // the highest block the filler began, + 1
	tick  chan struct{}
	quit  chan struct{}
	done  chan struct{}
}

// readAhead is how many chunks the filler reads at once when they go
// straight into staging areas (stager.window).
const readAhead = 4

// stagesAhead is how many blocks past the filler's the stager populates.
const stagesAhead = 16

// Linux's MADV_POPULATE_WRITE (5.14).
const madvPopulateWrite = 23

func newStager(blocks int) (*stager, error) {
	size := (blocks + 1) * guestmm.HugePageSize
	m, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, fmt.Errorf("staging areas of 2 MiB pages: %w", err)
	}
	a := uint64(uintptr(unsafe.Pointer(&m[0])))
	off := (guestmm.HugePageSize - a%guestmm.HugePageSize) % guestmm.HugePageSize
	st := &stager{mem: m, areas: m[off : off+uint64(blocks)*guestmm.HugePageSize],
		moved: make([]atomic.Bool, blocks), tick: make(chan struct{}, 1),
		quit: make(chan struct{}), done: make(chan struct{})}
	_ = unix.Madvise(st.areas, unix.MADV_HUGEPAGE) // only an optimization
	go st.run()
	return st, nil
}

func (st *stager) area(k int) []byte {
	return st.areas[k*guestmm.HugePageSize : (k+1)*guestmm.HugePageSize]
}

// run populates the areas in block order, at most stagesAhead blocks
// past the filler. A populate that fails is no error: the filler's
// writes then fault the pages in.
func (st *stager) run() {
	defer close(st.done)
	for k := range len(st.moved) {
		for int64(k) >= st.begun.Load()+stagesAhead {
			select {
			case <-st.tick:
			case <-st.quit:
				return
			}
		}
		if !st.moved[k].Load() {
			unix.Madvise(st.area(k), madvPopulateWrite)
		}
	}
}

// begin tells the stager that the filler began block k.
func (st *stager) begin(k int) {
	for {
		b := st.begun.Load()
		if int64(k) < b || st.begun.CompareAndSwap(b, int64(k)+1) {
			break
		}
	}
	select {
	case st.tick <- struct{}{}:
	default:
	}
}

// window returns the staging bytes where pages [first, first+count) go
// when they all go into blocks, each page right after the one before.
func (st *stager) window(pl *pagePlace, first, count uint64) ([]byte, bool) {
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

// close stops the stager and unmaps the areas.
func (st *stager) close() {
	close(st.quit)
	<-st.done
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
	st := f.stager
	s := st.area(k)
	pa := f.place.huge[k].pa
	st.moved[k].Store(true)
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
	if done < guestmm.HugePageSize {
		if err := f.copyPart(f.mem, s[done:], pa+done); err != nil {
			return err
		}
	}
	// After a move the area has no pages left; after a copy it must
	// lose them.
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

// cancel stops the filler (Close of a kernel whose fill still runs).
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

// hotChunks returns the chunks of the page data that hold the pages the
// live tasks of st touch first: at their stack pointer (and the page
// below it), instruction pointer and thread pointer.
func hotChunks(st *State) []uint64 {
	var hot []uint64
	for i := range st.Processes {
		ps := &st.Processes[i]
		for j := range ps.Tasks {
			ts := &ps.Tasks[j]
			for _, va := range []uint64{ts.Regs.RSP, ts.Regs.RSP - guestmm.PageSize, ts.Regs.RIP, ts.FSBase} {
				if idx, ok := storedPage(ps, va&^(guestmm.PageSize-1)); ok && !slices.Contains(hot, idx/restoreChunk) {
					hot = append(hot, idx/restoreChunk)
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
	slices.SortFunc(chosen, func(a, b *hugeBlock) int { return cmpU64(a.lo, b.lo) })
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

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
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
