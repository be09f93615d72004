package kernel

import (
	"bytes"
	"encoding/json"
	"fmt"
	"iter"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"time"
	"unsafe"

	"github.com/emuckpt/emuckpt/guestmm"
	"github.com/emuckpt/emuckpt/vmm"
	"golang.org/x/sys/unix"
)

// Background checkpoints.
//
// With --leave-running, a checkpoint asked for from outside the guest
// pauses it only to take the kernel's state, the frames its VMAs map,
// and write-protect guest RAM through a userfaultfd
// (UFFDIO_WRITEPROTECT), as QEMU's background snapshots do; the page
// list (which pages are zero, see memorySnapshot) and the page data are
// made and written while the guest runs on. The first write to a
// protected page, by the guest (KVM faults on the host page) or by the
// kernel itself (a system call's result), stops in the host kernel until
// the guard's handler has copied the page aside, if the image may still
// need it, and lifted the protection. The writer takes each page either
// from its copy or, still protected, from guest RAM, and lifts the
// protection once it is written. So the image holds the memory as it was
// at the checkpoint, exactly, as a stop-mode checkpoint at the same point
// would.
//
// It needs a userfaultfd that handles faults from the kernel (KVM's
// accesses): root, or vm.unprivileged_userfaultfd=1. Without one, and for
// emuckpt_checkpoint() (whose result the guest gets), checkpoints are
// written with the guest stopped, as before.

// PageGuard hands out the page data of a snapshot taken while the guest
// goes on (Snapshot.Guard): Hold returns the data of pages [first,
// first+n) of Snapshot.Pages as it was at the checkpoint, in order, which
// stays unchanged until Release of the same pages.
type PageGuard interface {
	Hold(first, n int) [][]byte
	Release(first, n int)
}

// Userfaultfd write-protection (linux/userfaultfd.h).
const (
	uffdioWriteprotect   = 0xC018AA06 // _IOWR(0xAA, 0x06, struct uffdio_writeprotect)
	uffdRegisterModeWP   = 2          // UFFDIO_REGISTER_MODE_WP
	uffdWriteprotectWP   = 1          // UFFDIO_WRITEPROTECT_MODE_WP
	uffdEventPagefault   = 0x12       // UFFD_EVENT_PAGEFAULT
	uffdPagefaultFlagWP  = 2          // UFFD_PAGEFAULT_FLAG_WP
	uffdFeatureFlagWP    = 1          // UFFD_FEATURE_PAGEFAULT_FLAG_WP
	uffdMsgSize          = 32
	uffdioWriteprotectOK = 1 << 6 // _UFFDIO_WRITEPROTECT in uffdio_register.ioctls
)

// PAGEMAP_SCAN (linux/fs.h): which pages of a range have no host page.
const (
	pagemapScan   = 0xC0606610 // _IOWR('f', 16, struct pm_scan_arg)
	pageIsPresent = 1 << 3     // PAGE_IS_PRESENT
	pageIsSwapped = 1 << 4     // PAGE_IS_SWAPPED
)

type pmScanArg struct {
	Size, Flags, Start, End, WalkEnd, Vec, VecLen, MaxPages uint64
	CategoryInverted, CategoryMask, CategoryAnyofMask       uint64
	ReturnMask                                              uint64
}

type pageRegion struct{ Start, End, Categories uint64 }

// pagemap is /proc/self/pagemap, opened once.
var pagemap = sync.OnceValues(func() (int, error) {
	return unix.Open("/proc/self/pagemap", unix.O_RDONLY|unix.O_CLOEXEC, 0)
})

type uffdioWriteprotectArg struct {
	Range uffdioRange
	Mode  uint64
}

// Frame states in a wpGuard.
const (
	pageFree      = iota // not in the image: nothing to keep
	pageProtected        // may be in the image, unchanged in guest RAM
	pageHeld             // being written from guest RAM
	pageCopied           // the guest wrote it: the old data is in copies
	pageWritten          // in the image, or not in it after all
	pageListed    = 0x80 // added to a state while setPages runs
)

// wpGuard is a PageGuard over guest RAM. It is made, with the guest
// stopped, for the frames that may be in the image (the snapshot's
// extents: its page list is made after the guest runs on again, see
// memorySnapshot), and keeps each of them as it was until it is written
// or known not to be in the image (setPages).
type wpGuard struct {
	uffd   int
	wakeFd int            // an eventfd: close wakes the handler with it
	mem    []byte         // guest memory from guest-physical 0 (vmm.Machine.Mem)
	ranges []vmm.RAMRange // the RAM in mem from RAMBase on, each registered
	kept   []vmm.RAMRange // the part of it write-protected
	frames iter.Seq2[uint64, uint64]
	pages  []uint64 // Snapshot.Pages, once setPages has them
	// holes are the guest-physical ranges [start, end) of RAM that had
	// no host page at the checkpoint, in order: all zero then, they are
	// written without a write-protect fault (there is no page to
	// protect), so a page there is taken as zero, whatever it holds
	// now. holesKnown: the host told (PAGEMAP_SCAN, Linux 6.7); without
	// it, the page lists are made before the guest goes on.
	holes      [][2]uint64
	holesKnown bool

	mu     sync.Mutex
	cond   *sync.Cond
	state  []uint8 // by frame number (guest-physical / PageSize)
	copies map[uint64][]byte
	done   chan struct{}
}

// backgroundSaveDisabled turns background checkpoints off (tests of the
// stopped path); holeScanDisabled makes them do without PAGEMAP_SCAN
// (tests of the path for kernels before 6.7).
var backgroundSaveDisabled, holeScanDisabled bool

// newWPGuard write-protects the guest RAM ranges of mem (guest memory
// from guest-physical 0) from RAMBase on, for the frames of a snapshot
// (runs of n frames from pa), or returns nil when that is not possible
// here. Each range is registered on its own: with RAM above 4 GiB, the
// MMIO hole between the two is PROT_NONE and never touched. state, all
// zero, is the frame states' room if long enough (see bgBuffers).
func newWPGuard(mem []byte, ranges []vmm.RAMRange, frames iter.Seq2[uint64, uint64], state []uint8) *wpGuard {
	if backgroundSaveDisabled || len(ranges) == 0 || runtime.GOMAXPROCS(0) < 2 {
		return nil
	}
	var rs []vmm.RAMRange
	for _, r := range ranges {
		r.Start = max(r.Start, vmm.RAMBase)
		if r.Start < r.End && r.End <= uint64(len(mem)) {
			rs = append(rs, r)
		}
	}
	if len(rs) == 0 {
		return nil
	}
	fd, _, e := unix.Syscall(unix.SYS_USERFAULTFD, unix.O_CLOEXEC|unix.O_NONBLOCK, 0, 0)
	if e != 0 {
		return nil
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(int(fd))
		return nil
	}
	nFrames := rs[len(rs)-1].End / guestmm.PageSize
	if uint64(len(state)) < nFrames {
		state = make([]uint8, nFrames)
	}
	g := &wpGuard{uffd: int(fd), wakeFd: wake, mem: mem, frames: frames, state: state[:nFrames],
		copies: map[uint64][]byte{}, done: make(chan struct{})}
	g.cond = sync.NewCond(&g.mu)
	api := uffdioAPIArg{API: uffdAPI, Features: uffdFeatureFlagWP}
	if uffdIoctl(g.uffd, uffdioAPI, unsafe.Pointer(&api)) != nil {
		g.release()
		return nil
	}
	for _, r := range rs {
		reg := uffdioRegisterArg{Range: g.rangeOf(r.Start, r.End-r.Start), Mode: uffdRegisterModeWP}
		if uffdIoctl(g.uffd, uffdioRegister, unsafe.Pointer(&reg)) != nil || reg.Ioctls&uffdioWriteprotectOK == 0 {
			g.release()
			return nil
		}
		g.ranges = append(g.ranges, r)
	}
	top := uint64(0)
	for pa, n := range frames {
		f := pa / guestmm.PageSize
		if f+n > nFrames {
			g.release()
			return nil
		}
		s := g.state[f : f+n]
		for i := range s {
			s[i] = pageProtected
		}
		top = max(top, pa+n*guestmm.PageSize)
	}
	// Only RAM up to the last frame kept is protected: above it there
	// is nothing to keep (in a big guest, mostly RAM never touched,
	// whose protection costs a good part of a millisecond all the same).
	for _, r := range g.ranges {
		if r.End = min(r.End, top); r.Start < r.End {
			g.kept = append(g.kept, r)
		}
	}
	g.holesKnown = !holeScanDisabled && g.findHoles() == nil
	for _, r := range g.kept {
		if g.protect(r.Start, r.End-r.Start, true) != nil {
			g.unprotect()
			g.release()
			return nil
		}
	}
	go g.handle()
	return g
}

// findHoles finds the RAM without host pages (holes).
func (g *wpGuard) findHoles() error {
	fd, err := pagemap()
	if err != nil {
		return err
	}
	base := uint64(uintptr(unsafe.Pointer(&g.mem[0])))
	vec := make([]pageRegion, 256)
	for _, r := range g.kept {
		a := pmScanArg{Start: base + r.Start, End: base + r.End}
		for a.Start < a.End {
			a.Size = uint64(unsafe.Sizeof(a))
			a.Vec, a.VecLen = uint64(uintptr(unsafe.Pointer(&vec[0]))), uint64(len(vec))
			// Neither present nor swapped out.
			a.CategoryInverted = pageIsPresent | pageIsSwapped
			a.CategoryMask = pageIsPresent | pageIsSwapped
			a.ReturnMask = pageIsPresent | pageIsSwapped
			n, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), pagemapScan, uintptr(unsafe.Pointer(&a)))
			runtime.KeepAlive(vec)
			if e != 0 {
				g.holes = nil
				return e
			}
			for _, v := range vec[:n] {
				h := [2]uint64{v.Start - base, v.End - base}
				if k := len(g.holes) - 1; k >= 0 && g.holes[k][1] == h[0] {
					g.holes[k][1] = h[1]
				} else {
					g.holes = append(g.holes, h)
				}
			}
			if a.WalkEnd <= a.Start {
				// No progress: what is left is not known.
				g.holes = nil
				return unix.EIO
			}
			a.Start = a.WalkEnd
		}
	}
	return nil
}

// inHole says whether the page at pa had no host page at the checkpoint.
func (g *wpGuard) inHole(pa uint64) bool {
	i, _ := slices.BinarySearchFunc(g.holes, pa, func(h [2]uint64, pa uint64) int {
		switch {
		case h[1] <= pa:
			return -1
		case h[0] > pa:
			return 1
		}
		return 0
	})
	return i < len(g.holes) && g.holes[i][0] <= pa && pa < g.holes[i][1]
}

// setPages hands the guard the snapshot's page list, made from its
// frames after the guest went on: the frames not in it need not be kept
// any more. A frame in it twice, or not one of the guard's, is an error
// (the image would not hold it as it was).
func (g *wpGuard) setPages(pages []uint64) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, pa := range pages {
		f := pa / guestmm.PageSize
		if f >= uint64(len(g.state)) || g.state[f] == pageFree || g.state[f]&pageListed != 0 {
			for _, pa := range pages[:i] {
				g.state[pa/guestmm.PageSize] &^= pageListed
			}
			return fmt.Errorf("cannot checkpoint: frame %#x is in the page list twice, or was not protected", pa)
		}
		g.state[f] |= pageListed
	}
	// A frame may be in several runs (shared by processes after fork):
	// the listed ones keep their mark until all runs are seen.
	for pa, n := range g.frames {
		s := g.state[pa/guestmm.PageSize:][:n]
		for i := range s {
			if s[i]&pageListed != 0 {
				continue
			}
			if s[i] == pageCopied {
				delete(g.copies, pa/guestmm.PageSize+uint64(i))
			}
			s[i] = pageWritten
		}
	}
	for _, pa := range pages {
		g.state[pa/guestmm.PageSize] &^= pageListed
	}
	g.pages = pages
	return nil
}

// checkZero is the zeroChecker of a snapshot whose guest runs on: the
// pages are read as they were at the checkpoint, a batch at a time with
// the guard's lock held (a page still protected cannot change
// meanwhile: the write waits for keep).
func (g *wpGuard) checkZero(cands []pageCand) {
	const batch = 1024
	for first := 0; first < len(cands); first += batch {
		g.mu.Lock()
		for i := first; i < min(first+batch, len(cands)); i++ {
			c := &cands[i]
			c.zero = isZeroPage(g.data(c.pa))
		}
		g.mu.Unlock()
	}
}

// data is the page at pa as it was at the checkpoint (g.mu held).
func (g *wpGuard) data(pa uint64) []byte {
	if g.inHole(pa) {
		return zeroPage[:]
	}
	if c, ok := g.copies[pa/guestmm.PageSize]; ok {
		return c
	}
	return g.mem[pa : pa+guestmm.PageSize]
}

// rangeOf is the host range of guest-physical [pa, pa+n).
func (g *wpGuard) rangeOf(pa, n uint64) uffdioRange {
	return uffdioRange{Start: uint64(uintptr(unsafe.Pointer(&g.mem[0]))) + pa, Len: n}
}

// protect sets or lifts write protection on guest-physical [pa, pa+n);
// lifting it wakes the writers that wait there. The host kernel refuses
// with EAGAIN while the address space changes under it (a concurrent
// mmap, munmap or madvise): it is tried again, since a fault left
// protected would wait for ever.
func (g *wpGuard) protect(pa, n uint64, on bool) error {
	a := uffdioWriteprotectArg{Range: g.rangeOf(pa, n)}
	if on {
		a.Mode = uffdWriteprotectWP
	}
	for {
		err := uffdIoctl(g.uffd, uffdioWriteprotect, unsafe.Pointer(&a))
		if err != unix.EAGAIN {
			return err
		}
		runtime.Gosched()
	}
}

// handle serves write faults until close: a page the image still needs
// is copied aside first (or, while the writer holds it, written first);
// then the page is writable again. It polls the userfaultfd and the
// eventfd that close writes, so close does not wait for a timeout.
func (g *wpGuard) handle() {
	defer close(g.done)
	var msg [uffdMsgSize * 16]byte
	fds := []unix.PollFd{{Fd: int32(g.uffd), Events: unix.POLLIN}, {Fd: int32(g.wakeFd), Events: unix.POLLIN}}
	base := uint64(uintptr(unsafe.Pointer(&g.mem[0])))
	for {
		if _, err := unix.Poll(fds, -1); err != nil && err != unix.EINTR {
			return
		}
		if fds[1].Revents != 0 {
			return
		}
		if fds[0].Revents == 0 {
			continue
		}
		n, err := unix.Read(g.uffd, msg[:])
		if err != nil {
			continue
		}
		for m := 0; m+uffdMsgSize <= n; m += uffdMsgSize {
			b := msg[m : m+uffdMsgSize]
			flags := *(*uint64)(unsafe.Pointer(&b[8]))
			addr := *(*uint64)(unsafe.Pointer(&b[16]))
			if b[0] != uffdEventPagefault || flags&uffdPagefaultFlagWP == 0 {
				continue
			}
			pa := (addr - base) &^ (guestmm.PageSize - 1)
			if pa >= uint64(len(g.mem)) {
				continue
			}
			g.keep(pa)
			g.protect(pa, guestmm.PageSize, false)
		}
	}
}

// keep makes sure the image's data of the page at guest-physical pa
// survives a write to it.
func (g *wpGuard) keep(pa uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	f := pa / guestmm.PageSize
	if f >= uint64(len(g.state)) {
		return
	}
	for g.state[f] == pageHeld {
		g.cond.Wait()
	}
	if g.state[f] == pageProtected {
		g.copies[f] = append([]byte(nil), g.mem[pa:pa+guestmm.PageSize]...)
		g.state[f] = pageCopied
	}
}

// Hold implements PageGuard.
func (g *wpGuard) Hold(first, n int) [][]byte {
	g.mu.Lock()
	defer g.mu.Unlock()
	var runs [][]byte
	lastPA := uint64(0)
	for _, pa := range g.pages[first : first+n] {
		f := pa / guestmm.PageSize
		if g.state[f] == pageCopied || g.inHole(pa) {
			runs = append(runs, g.data(pa))
			lastPA = 0
			continue
		}
		g.state[f] = pageHeld
		if k := len(runs) - 1; lastPA != 0 && pa == lastPA+guestmm.PageSize {
			runs[k] = g.mem[pa-uint64(len(runs[k])) : pa+guestmm.PageSize]
		} else {
			runs = append(runs, g.mem[pa:pa+guestmm.PageSize])
		}
		lastPA = pa
	}
	return runs
}

// Release implements PageGuard: the pages are in the image, so the guest
// may write them.
func (g *wpGuard) Release(first, n int) {
	g.mu.Lock()
	var lift []uint64
	for _, pa := range g.pages[first : first+n] {
		f := pa / guestmm.PageSize
		if g.state[f] == pageHeld {
			lift = append(lift, pa)
		}
		g.state[f] = pageWritten
		delete(g.copies, f)
	}
	g.cond.Broadcast()
	g.mu.Unlock()
	for _, pa := range lift {
		g.protect(pa, guestmm.PageSize, false)
	}
}

// close lifts every protection, which wakes every write that waits, and
// ends the handler. It leaves the index all zero again.
func (g *wpGuard) close() {
	g.unprotect()
	one := [8]byte{1}
	unix.Write(g.wakeFd, one[:])
	<-g.done
	g.release()
}

// unprotect lifts the protection of every range protected.
func (g *wpGuard) unprotect() {
	for _, r := range g.kept {
		g.protect(r.Start, r.End-r.Start, false)
	}
}

// release unregisters the ranges registered, closes the descriptors and
// clears the frame states (for the next guard).
func (g *wpGuard) release() {
	clear(g.state)
	for _, r := range g.ranges {
		u := g.rangeOf(r.Start, r.End-r.Start)
		uffdIoctl(g.uffd, uffdioUnregister, unsafe.Pointer(&u))
	}
	unix.Close(g.uffd)
	unix.Close(g.wakeFd)
}

// bgBuffers are the buffers a background checkpoint fills with the guest
// stopped, allocated and touched before: fresh memory costs a host page
// fault per 4 KiB the first time it is written (several µs each on PVM).
// All zero.
type bgBuffers struct {
	state []uint8 // wpGuard.state: Kernel.ckpt.state, all zero
	exts  []pageExtent
	refs  []int32 // room for a reference count per frame in use, and some
}

// prepareBackground allocates the buffers of a checkpoint about to be
// taken in the background (k.ckpt.buffers), sized for the frames in use
// now.
func (k *Kernel) prepareBackground() {
	if backgroundSaveDisabled || runtime.GOMAXPROCS(0) < 2 {
		return
	}
	n := k.frames.Used()
	n += n/16 + 64 // frames the other vCPUs take before they stop
	if k.ckpt.state == nil {
		// One for the run: each guard clears it.
		k.ckpt.state = make([]uint8, vmm.PhysEnd(k.m.MemSize())/guestmm.PageSize)
		touch(k.ckpt.state)
		// The first json.Marshal of a type builds its encoder, a good
		// part of a millisecond for the State's: done here, not in
		// the pause.
		json.Marshal(&State{})
	}
	b := &bgBuffers{state: k.ckpt.state, refs: make([]int32, n), exts: make([]pageExtent, 0, 64)}
	touch(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(b.refs))), len(b.refs)*4))
	k.ckpt.buffers = b
	if len(b.refs)*4 >= 1<<20 {
		// Big buffers often take the heap over the collector's goal: a
		// collection now, not in the pause (where its assists made the
		// state's JSON encoding 2-3 times slower).
		runtime.GC()
	}
}

// touch writes a zero into every 4 KiB of b, which is all zero.
func touch(b []byte) {
	for i := 0; i < len(b); i += guestmm.PageSize {
		b[i] = 0
	}
}

// backgroundSave is a checkpoint being written while the guest runs.
type backgroundSave struct {
	done chan struct{} // closed once written, the guard closed
	err  error         // then: what Save returned
	over chan struct{} // closed after done, when the goroutine is gone
}

// saveInBackground hands snap, whose page lists are not finished yet
// (Kernel.snapshot with deferPages), to save on another goroutine with
// guest RAM write-protected, and returns true at once; false means it
// cannot be done here (the caller finishes the lists if snap.pages is
// still set, and saves with the guest stopped), or, with an error, that
// the lists could not be made.
// Every vCPU is stopped (stopAll) and no other background checkpoint is
// being written.
//
// The pause is so independent of the memory's size: the page tables are
// walked in 2 MiB pages where they have them, and the zero check and
// numbering of the pages (finishPages) and the state's page lists are
// done by the writer, from the pages as the guard keeps them. The state
// is encoded in the pause (the kernel changes what it refers to from
// then on) with a placeholder for each of those numbers (placeholders),
// which the writer replaces (fillPlaceholders): the same bytes as the
// encoding of the finished state.
func (k *Kernel) saveInBackground(snap *Snapshot, save func(*Snapshot) error) (bool, error) {
	ms := snap.pages
	ms.placeholders()
	meta, err := json.Marshal(snap.State)
	if err != nil {
		return false, nil
	}
	var state []uint8
	if b := k.ckpt.buffers; b != nil {
		state = b.state
	}
	g := newWPGuard(k.m.Mem(), k.m.RAMRanges(), ms.frameRuns, state)
	if g == nil {
		return false, nil
	}
	finished := !g.holesKnown
	if finished {
		// Pages without a host page change without a fault: which
		// of them are zero is known only now.
		snap.pages = nil
		if err := ms.finishPages(ms.checkZero); err != nil {
			g.close()
			return false, err
		}
		if g.setPages(snap.Pages) != nil {
			g.close()
			return false, nil // saved with the guest stopped
		}
	}
	snap.Guard = g
	snap.pages = nil
	snap.Paused = time.Since(snap.Started)
	bg := &backgroundSave{done: make(chan struct{}), over: make(chan struct{})}
	k.ckpt.background = bg
	log := k.log
	go func() {
		defer close(bg.over)
		if !finished {
			bg.err = ms.finishPages(g.checkZero)
			if bg.err == nil {
				bg.err = g.setPages(snap.Pages)
			}
		}
		if bg.err == nil {
			snap.StateJSON, bg.err = ms.fillPlaceholders(meta)
		}
		if bg.err == nil {
			bg.err = save(snap)
		}
		g.close()
		if bg.err != nil {
			// Said at once; counted by awaitBackground.
			fmt.Fprintf(log, "emuckpt: checkpoint failed, the program goes on: %v\n", bg.err)
		}
		close(bg.done)
		// A request that came in meanwhile was put off (deferBackground):
		// it is asked for again now.
		if k.ckpt.deferred.Swap(false) {
			k.askCheckpoint()
		}
	}()
	return true, nil
}

// frameRuns yields the frames that may be in the image, as runs of n
// frames from pa: the extents', then the tmpfs files'.
func (ms *memorySnapshot) frameRuns(yield func(pa, n uint64) bool) {
	for _, e := range ms.exts {
		if !yield(e.pa, e.n) {
			return
		}
	}
	for _, pa := range ms.tmpfs {
		if !yield(pa, 1) {
			return
		}
	}
}

// placeholder is the first of the numbers that stand for those
// finishPages finds, in the state encoded in the pause: no page count or
// index comes near it. Placeholder k is placeholder+k, 19 digits.
const placeholder = 9_000_000_000_000_000_000

// placeholders puts placeholders where finishPages puts numbers: in
// PageCount, in ZeroPages of the i-th pending VMA (i; its Pages, nil
// until then, are not encoded, and come in front of it), and in Page of
// the j-th tmpfs page (j).
func (ms *memorySnapshot) placeholders() {
	ms.st.PageCount = placeholder
	for i, pv := range ms.pend {
		ms.st.Processes[pv.proc].VMAs[pv.vma].ZeroPages = placeholder + uint64(i)
	}
	j := uint64(0)
	for m := range ms.st.Tmpfs {
		for i := range ms.st.Tmpfs[m].Inodes {
			for p := range ms.st.Tmpfs[m].Inodes[i].Pages {
				ms.st.Tmpfs[m].Inodes[i].Pages[p].Page = placeholder + j
				j++
			}
		}
	}
}

// fillPlaceholders returns meta, the state encoded with placeholders, with
// the numbers finishPages found instead: a placeholder is a number of 19
// digits from placeholder on, after the key "page_count", "zero_pages" or
// "page" (a quote not in a string: a string's quotes are escaped); the
// same number after any other key is left alone.
func (ms *memorySnapshot) fillPlaceholders(meta []byte) ([]byte, error) {
	mark := []byte(`":` + strconv.FormatUint(placeholder, 10)[:7])
	out := make([]byte, 0, len(meta)+len(ms.pend)*64+len(ms.tmpfs)*8)
	filled := 0
	for {
		i := bytes.Index(meta, mark)
		if i < 0 {
			break
		}
		num := i + 2
		end := num
		for end < len(meta) && meta[end] >= '0' && meta[end] <= '9' {
			end++
		}
		v, err := strconv.ParseUint(string(meta[num:end]), 10, 64)
		if end-num != 19 || err != nil || v < placeholder {
			out = append(out, meta[:end]...)
			meta = meta[end:]
			continue
		}
		k, key := v-placeholder, meta[:i+1]
		switch {
		case bytes.HasSuffix(key, []byte(`"page_count"`)):
			out = strconv.AppendUint(append(out, meta[:num]...), ms.st.PageCount, 10)
		case bytes.HasSuffix(key, []byte(`,"zero_pages"`)) && k < uint64(len(ms.pend)):
			out = append(out, key[:len(key)-len(`,"zero_pages"`)]...)
			pv := ms.pend[k]
			vs := &ms.st.Processes[pv.proc].VMAs[pv.vma]
			if len(vs.Pages) > 0 {
				runs, err := json.Marshal(vs.Pages)
				if err != nil {
					return nil, err
				}
				out = append(append(out, `,"pages":`...), runs...)
			}
			if vs.ZeroPages > 0 {
				out = strconv.AppendUint(append(out, `,"zero_pages":`...), vs.ZeroPages, 10)
			}
		case bytes.HasSuffix(key, []byte(`,"page"`)) && k < uint64(len(ms.tmpfs)):
			out = strconv.AppendUint(append(out, meta[:num]...), ms.tmpfsPage(k), 10)
		default:
			out = append(out, meta[:end]...)
			meta = meta[end:]
			continue
		}
		filled++
		meta = meta[end:]
	}
	if want := 1 + len(ms.pend) + len(ms.tmpfs); filled != want {
		return nil, fmt.Errorf("cannot checkpoint: %d of the state's %d page numbers filled in", filled, want)
	}
	return append(out, meta...), nil
}

// tmpfsPage is the index finishPages gave the k-th tmpfs page: tmpfs
// pages come last, in order, each stored.
func (ms *memorySnapshot) tmpfsPage(k uint64) uint64 {
	return uint64(len(ms.snap.Pages)-len(ms.tmpfs)) + k
}

// backgroundBusy says whether a background checkpoint is still being
// written.
func (k *Kernel) backgroundBusy() bool {
	bg := k.ckpt.background
	if bg == nil {
		return false
	}
	select {
	case <-bg.done:
		return false
	default:
		return true
	}
}

// deferBackground puts off a checkpoint asked for from outside while the
// one before is still being written in the background: it is asked for
// again once that one is written, and the guest runs on meanwhile.
// Waiting for it here instead, with the requests coming faster than a
// checkpoint is written (SIGUSR1 every millisecond), would let the guest
// run only from one checkpoint to the next request, often not a single
// instruction. It reports false when the write ended meanwhile: the
// checkpoint is to be taken now.
func (k *Kernel) deferBackground() bool {
	k.ckpt.deferred.Store(true)
	if !k.backgroundBusy() && k.ckpt.deferred.Swap(false) {
		return false // the writer missed the flag: take it now
	}
	return true
}

// awaitBackground waits for a background checkpoint to be written and
// counts it as failed if it was not.
func (k *Kernel) awaitBackground() {
	bg := k.ckpt.background
	if bg == nil {
		return
	}
	k.ckpt.background = nil
	<-bg.over
	if bg.err != nil {
		k.ckpt.stats.Failed++
	}
}
