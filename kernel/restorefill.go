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
// The frames of the page data are registered with a userfaultfd (missing
// mode) on the host mapping of guest RAM, so an access to one that is not
// filled yet, by the guest through KVM, waits in the host kernel. A
// goroutine (the filler) reads the page data chunk by chunk (restoreChunk
// pages, the image's checksum chunks), in page order, into a buffer of its
// own, where PageSource.ReadPages checks the checksums, and only then puts
// the chunk's pages into guest RAM with UFFDIO_COPY, which also wakes
// whatever waited for them. The chunks of the pages each task needs at
// once (at its stack pointer, instruction pointer and thread pointer) go
// first: the stack's pages come last in the page data. A page therefore appears in guest RAM already
// checked: the guest can never see a byte that was not. The guest's page
// tables are complete at restore, as before.
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

// fillPart is a physically consecutive part of the frames of the page
// data: mem holds pages first, first+1, ... of it.
type fillPart struct {
	mem   []byte
	first uint64
}

// pageFill is a background fill of page data into guest RAM.
type pageFill struct {
	uffd   int
	parts  []fillPart // the frames of the page data, in guest RAM
	pages  uint64     // the number of pages in parts
	src    PageSource
	hot    []uint64 // chunks to fill first
	kick   func()   // stops the vCPU at its next clean point
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
	uffdRegisterMissng = 1          // UFFDIO_REGISTER_MODE_MISSING
)

type uffdioAPIArg struct{ API, Features, Ioctls uint64 }

type uffdioRange struct{ Start, Len uint64 }

type uffdioRegisterArg struct {
	Range  uffdioRange
	Mode   uint64
	Ioctls uint64
}

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
// synchronous path).
var backgroundFillDisabled bool

// startFill registers parts (page-aligned guest RAM that nothing has
// touched; more than one when the frames cross the MMIO hole) with a new
// userfaultfd and starts the filler. It returns nil when a background
// fill is not possible here; the caller then fills synchronously.
func startFill(parts []fillPart, src PageSource, kick func(), hot []uint64) *pageFill {
	var pages uint64
	for _, p := range parts {
		pages += uint64(len(p.mem)) / guestmm.PageSize
	}
	if backgroundFillDisabled || pages == 0 || runtime.GOMAXPROCS(0) < 2 {
		return nil
	}
	fd, _, e := unix.Syscall(unix.SYS_USERFAULTFD, unix.O_CLOEXEC|unix.O_NONBLOCK, 0, 0)
	if e != 0 {
		return nil
	}
	parts = slices.DeleteFunc(slices.Clone(parts), func(p fillPart) bool { return len(p.mem) == 0 })
	f := &pageFill{uffd: int(fd), parts: parts, pages: pages, src: src, hot: hot, kick: kick, done: make(chan struct{})}
	api := uffdioAPIArg{API: uffdAPI}
	if uffdIoctl(f.uffd, uffdioAPI, unsafe.Pointer(&api)) != nil {
		unix.Close(f.uffd)
		return nil
	}
	// The frames are fresh, but make sure no host page is behind them:
	// UFFDIO_COPY fills only missing pages.
	for i, p := range parts {
		if unix.Madvise(p.mem, unix.MADV_DONTNEED) != nil {
			f.unregister(i)
			unix.Close(f.uffd)
			return nil
		}
		reg := uffdioRegisterArg{Range: rangeOf(p.mem), Mode: uffdRegisterMissng}
		if uffdIoctl(f.uffd, uffdioRegister, unsafe.Pointer(&reg)) != nil {
			f.unregister(i)
			unix.Close(f.uffd)
			return nil
		}
	}
	go f.run()
	return f
}

func rangeOf(b []byte) uffdioRange {
	return uffdioRange{Start: uint64(uintptr(unsafe.Pointer(&b[0]))), Len: uint64(len(b))}
}

// unregister unregisters the first n parts (which wakes any waiter left).
func (f *pageFill) unregister(n int) {
	for _, p := range f.parts[:n] {
		r := rangeOf(p.mem)
		uffdIoctl(f.uffd, uffdioUnregister, unsafe.Pointer(&r))
	}
}

// run fills the region chunk by chunk, in page order.
func (f *pageFill) run() {
	defer close(f.done)
	buf := make([]byte, restoreChunk*guestmm.PageSize)
	n := f.pages
	chunks := (n + restoreChunk - 1) / restoreChunk
	filled := make([]bool, chunks)
	order := append(slices.Clone(f.hot), make([]uint64, 0, chunks)...)
	for c := range chunks {
		order = append(order, c)
	}
	for _, c := range order {
		if f.stop.Load() {
			return
		}
		if c >= chunks || filled[c] {
			continue
		}
		filled[c] = true
		first := c * restoreChunk
		count := min(restoreChunk, n-first)
		b := buf[:count*guestmm.PageSize]
		if err := f.src.ReadPages(b, first); err != nil {
			f.err = fmt.Errorf("%w: reading the page data of the image: %w", ErrRestore, err)
			f.kick()
			return
		}
		if err := f.copyIn(b, first); err != nil {
			f.err = fmt.Errorf("%w: putting pages %d-%d of the image into guest memory: %w", ErrRestore, first, first+count-1, err)
			f.kick()
			return
		}
	}
}

// copyIn puts the checked bytes b, the pages from page first on, into
// their frames.
func (f *pageFill) copyIn(b []byte, first uint64) error {
	for _, p := range f.parts {
		n := uint64(len(p.mem)) / guestmm.PageSize
		if len(b) == 0 || first < p.first || first >= p.first+n {
			continue
		}
		k := min(uint64(len(b)), (p.first+n-first)*guestmm.PageSize)
		if err := f.copyPart(p.mem, b[:k], (first-p.first)*guestmm.PageSize); err != nil {
			return err
		}
		b, first = b[k:], first+k/guestmm.PageSize
	}
	if len(b) != 0 {
		return fmt.Errorf("page %d is outside the page data's frames", first)
	}
	return nil
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
		f.unregister(len(f.parts)) // wakes any waiter left
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
