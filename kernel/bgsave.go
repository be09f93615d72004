package kernel

import (
	"encoding/json"
	"fmt"
	"runtime"
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
// pauses it only to take the kernel's state and write-protect guest RAM
// through a userfaultfd (UFFDIO_WRITEPROTECT), as QEMU's background
// snapshots do; the page data is written while the guest runs on. The
// first write to a protected page, by the guest (KVM faults on the host
// page) or by the kernel itself (a system call's result), stops in the
// host kernel until the guard's handler has copied the page aside, if the
// image still needs it, and lifted the protection. The writer takes each
// page either from its copy or, still protected, from guest RAM, and
// lifts the protection once it is written. So the image holds the memory
// as it was at the checkpoint, exactly, as a stop-mode checkpoint at the
// same point would.
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

type uffdioWriteprotectArg struct {
	Range uffdioRange
	Mode  uint64
}

// Page states in a wpGuard.
const (
	pageProtected = iota // not written yet, unchanged in guest RAM
	pageHeld             // being written from guest RAM
	pageCopied           // the guest wrote it: the old data is in copies
	pageWritten          // in the image
)

// wpGuard is a PageGuard over guest RAM.
type wpGuard struct {
	uffd   int
	wakeFd int            // an eventfd: close wakes the handler with it
	mem    []byte         // guest memory from guest-physical 0 (vmm.Machine.Mem)
	ranges []vmm.RAMRange // the RAM in mem from RAMBase on, each registered
	pages  []uint64
	index  []int32 // frame number -> index in pages + 1 (0: none)

	mu     sync.Mutex
	cond   *sync.Cond
	state  []uint8
	copies map[int][]byte
	done   chan struct{}
}

// backgroundSaveDisabled turns background checkpoints off (tests of the
// stopped path).
var backgroundSaveDisabled bool

// newWPGuard write-protects the guest RAM ranges of mem (guest memory
// from guest-physical 0) from RAMBase on, for the frames of a snapshot,
// or returns nil when that is not possible here. Each range is
// registered on its own: with RAM above 4 GiB, the MMIO hole between the
// two is PROT_NONE and never touched.
func newWPGuard(mem []byte, ranges []vmm.RAMRange, pages []uint64, bufs *bgBuffers) *wpGuard {
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
	if bufs == nil || uint64(len(bufs.index)) < nFrames || cap(bufs.state) < len(pages) {
		bufs = &bgBuffers{index: make([]int32, nFrames), state: make([]uint8, len(pages))}
	}
	g := &wpGuard{uffd: int(fd), wakeFd: wake, mem: mem, pages: pages, index: bufs.index[:nFrames],
		state: bufs.state[:len(pages)], copies: map[int][]byte{}, done: make(chan struct{})}
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
	for i, pa := range pages {
		g.index[pa/guestmm.PageSize] = int32(i + 1)
	}
	for _, r := range g.ranges {
		if g.protect(r.Start, r.End-r.Start, true) != nil {
			g.unprotect()
			g.release()
			return nil
		}
	}
	go g.handle()
	return g
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
	if f >= uint64(len(g.index)) {
		return
	}
	i := int(g.index[f]) - 1
	if i < 0 {
		return
	}
	for g.state[i] == pageHeld {
		g.cond.Wait()
	}
	if g.state[i] == pageProtected {
		g.copies[i] = append([]byte(nil), g.mem[pa:pa+guestmm.PageSize]...)
		g.state[i] = pageCopied
	}
}

// Hold implements PageGuard.
func (g *wpGuard) Hold(first, n int) [][]byte {
	g.mu.Lock()
	defer g.mu.Unlock()
	var runs [][]byte
	lastPA := uint64(0)
	for i := first; i < first+n; i++ {
		if c, ok := g.copies[i]; ok {
			runs = append(runs, c)
			lastPA = 0
			continue
		}
		g.state[i] = pageHeld
		pa := g.pages[i]
		if k := len(runs) - 1; lastPA != 0 && pa == lastPA+guestmm.PageSize {
			runs[k] = g.mem[pa-uint64(len(runs[k])) : pa+guestmm.PageSize]
		} else {
			runs = append(runs, g.mem[pa:pa+guestmm.PageSize])
		}
		lastPA = g.pages[i]
	}
	return runs
}

// Release implements PageGuard: the pages are in the image, so the guest
// may write them.
func (g *wpGuard) Release(first, n int) {
	g.mu.Lock()
	var lift []uint64
	for i := first; i < first+n; i++ {
		if g.state[i] == pageHeld {
			lift = append(lift, g.pages[i])
		}
		g.state[i] = pageWritten
		delete(g.copies, i)
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

// unprotect lifts the protection of every range registered.
func (g *wpGuard) unprotect() {
	for _, r := range g.ranges {
		g.protect(r.Start, r.End-r.Start, false)
	}
}

// release unregisters the ranges registered, closes the descriptors and
// clears the index entries it set (for the next guard).
func (g *wpGuard) release() {
	for _, pa := range g.pages {
		if f := pa / guestmm.PageSize; f < uint64(len(g.index)) {
			g.index[f] = 0
		}
	}
	for _, r := range g.ranges {
		u := g.rangeOf(r.Start, r.End-r.Start)
		uffdIoctl(g.uffd, uffdioUnregister, unsafe.Pointer(&u))
	}
	unix.Close(g.uffd)
	unix.Close(g.wakeFd)
}

// bgBuffers are the big buffers of a background checkpoint, allocated and
// touched before the guest is stopped: fresh memory costs a host page
// fault per 4 KiB the first time it is written (several µs each on PVM),
// about 2 ms of a 256 MiB checkpoint's pause when the page list and the
// guard's index were grown there. All zero.
type bgBuffers struct {
	pages []uint64 // room for Snapshot.Pages: every frame in use and some
	index []int32  // wpGuard.index: Kernel.ckpt.index, all zero
	state []uint8  // wpGuard.state, as long as pages
	cands []pageCand
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
	if k.ckpt.index == nil {
		// One index for the run: each guard clears what it set.
		k.ckpt.index = make([]int32, vmm.PhysEnd(k.m.MemSize())/guestmm.PageSize)
		touch(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(k.ckpt.index))), len(k.ckpt.index)*4))
	}
	b := &bgBuffers{pages: make([]uint64, n), index: k.ckpt.index, state: make([]uint8, n)}
	touch(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(b.pages))), len(b.pages)*8))
	touch(b.state)
	b.cands = make([]pageCand, n)
	touch(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(b.cands))), len(b.cands)*int(unsafe.Sizeof(pageCand{}))))
	b.pages = b.pages[:0]
	k.ckpt.buffers = b
	if cap(b.pages)*8+len(b.cands)*int(unsafe.Sizeof(pageCand{})) >= 1<<20 {
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

// saveInBackground hands snap to save on another goroutine with guest RAM
// write-protected, and returns at once; false means it cannot be done
// here (the caller saves with the guest stopped). Every vCPU is stopped
// (stopAll) and no other background checkpoint is being written.
func (k *Kernel) saveInBackground(snap *Snapshot, save func(*Snapshot) error) bool {
	// The state goes out as it is now: the kernel changes it from here on.
	meta, err := json.Marshal(snap.State)
	if err != nil {
		return false
	}
	g := newWPGuard(k.m.Mem(), k.m.RAMRanges(), snap.Pages, k.ckpt.buffers)
	if g == nil {
		return false
	}
	snap.StateJSON = meta
	snap.Guard = g
	snap.Paused = time.Since(snap.Started)
	bg := &backgroundSave{done: make(chan struct{}), over: make(chan struct{})}
	k.ckpt.background = bg
	log := k.log
	go func() {
		defer close(bg.over)
		bg.err = save(snap)
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
	return true
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
