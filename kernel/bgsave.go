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
	uffd  int
	ram   []byte // guest RAM from base on, registered with the userfaultfd
	base  uint64 // guest-physical address of ram[0]
	pages []uint64
	index []int32 // frame number from base -> index in pages + 1 (0: none)

	mu     sync.Mutex
	cond   *sync.Cond
	state  []uint8
	copies map[int][]byte
	stop   chan struct{}
	done   chan struct{}
}

// backgroundSaveDisabled turns background checkpoints off (tests of the
// stopped path).
var backgroundSaveDisabled bool

// newWPGuard write-protects guest RAM from base on for the frames of a
// snapshot, or returns nil when that is not possible here.
func newWPGuard(ram []byte, base uint64, pages []uint64) *wpGuard {
	if backgroundSaveDisabled || len(ram) == 0 || runtime.GOMAXPROCS(0) < 2 {
		return nil
	}
	fd, _, e := unix.Syscall(unix.SYS_USERFAULTFD, unix.O_CLOEXEC|unix.O_NONBLOCK, 0, 0)
	if e != 0 {
		return nil
	}
	g := &wpGuard{uffd: int(fd), ram: ram, base: base, pages: pages, index: make([]int32, len(ram)/guestmm.PageSize),
		state: make([]uint8, len(pages)), copies: map[int][]byte{}, stop: make(chan struct{}), done: make(chan struct{})}
	g.cond = sync.NewCond(&g.mu)
	api := uffdioAPIArg{API: uffdAPI, Features: uffdFeatureFlagWP}
	reg := uffdioRegisterArg{Range: g.rangeOf(0, uint64(len(ram))), Mode: uffdRegisterModeWP}
	if uffdIoctl(g.uffd, uffdioAPI, unsafe.Pointer(&api)) != nil ||
		uffdIoctl(g.uffd, uffdioRegister, unsafe.Pointer(&reg)) != nil || reg.Ioctls&uffdioWriteprotectOK == 0 {
		unix.Close(g.uffd)
		return nil
	}
	for i, pa := range pages {
		g.index[(pa-base)/guestmm.PageSize] = int32(i + 1)
	}
	if g.protect(0, uint64(len(ram)), true) != nil {
		g.unregister()
		return nil
	}
	go g.handle()
	return g
}

func (g *wpGuard) rangeOf(off, n uint64) uffdioRange {
	return uffdioRange{Start: uint64(uintptr(unsafe.Pointer(&g.ram[0]))) + off, Len: n}
}

// protect sets or lifts write protection on ram[off:off+n]; lifting it
// wakes the writers that wait there.
func (g *wpGuard) protect(off, n uint64, on bool) error {
	a := uffdioWriteprotectArg{Range: g.rangeOf(off, n)}
	if on {
		a.Mode = uffdWriteprotectWP
	}
	return uffdIoctl(g.uffd, uffdioWriteprotect, unsafe.Pointer(&a))
}

// handle serves write faults until close: a page the image still needs
// is copied aside first (or, while the writer holds it, written first);
// then the page is writable again.
func (g *wpGuard) handle() {
	defer close(g.done)
	var msg [uffdMsgSize * 16]byte
	fds := []unix.PollFd{{Fd: int32(g.uffd), Events: unix.POLLIN}}
	for {
		select {
		case <-g.stop:
			return
		default:
		}
		if n, err := unix.Poll(fds, 10); err != nil || n == 0 {
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
			off := (addr - uint64(uintptr(unsafe.Pointer(&g.ram[0])))) &^ (guestmm.PageSize - 1)
			if off >= uint64(len(g.ram)) {
				continue
			}
			g.keep(off)
			g.protect(off, guestmm.PageSize, false)
		}
	}
}

// keep makes sure the image's data of the page at ram offset off
// survives a write to it.
func (g *wpGuard) keep(off uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	i := int(g.index[off/guestmm.PageSize]) - 1
	if i < 0 {
		return
	}
	for g.state[i] == pageHeld {
		g.cond.Wait()
	}
	if g.state[i] == pageProtected {
		g.copies[i] = append([]byte(nil), g.ram[off:off+guestmm.PageSize]...)
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
		off := g.pages[i] - g.base
		if k := len(runs) - 1; lastPA != 0 && g.pages[i] == lastPA+guestmm.PageSize {
			runs[k] = g.ram[off-uint64(len(runs[k])) : off+guestmm.PageSize]
		} else {
			runs = append(runs, g.ram[off:off+guestmm.PageSize])
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
			lift = append(lift, g.pages[i]-g.base)
		}
		g.state[i] = pageWritten
		delete(g.copies, i)
	}
	g.cond.Broadcast()
	g.mu.Unlock()
	for _, off := range lift {
		g.protect(off, guestmm.PageSize, false)
	}
}

// close lifts every protection and ends the handler.
func (g *wpGuard) close() {
	g.protect(0, uint64(len(g.ram)), false)
	close(g.stop)
	<-g.done
	g.unregister()
}

func (g *wpGuard) unregister() {
	r := g.rangeOf(0, uint64(len(g.ram)))
	uffdIoctl(g.uffd, uffdioUnregister, unsafe.Pointer(&r))
	unix.Close(g.uffd)
}

// backgroundSave is a checkpoint being written while the guest runs.
type backgroundSave struct {
	done chan error
}

// saveInBackground hands snap to save on another goroutine with guest RAM
// write-protected, and returns at once; false means it cannot be done
// here (the caller saves with the guest stopped).
func (k *Kernel) saveInBackground(snap *Snapshot, save func(*Snapshot) error) bool {
	ram := k.m.Mem()[vmm.RAMBase:]
	// The state goes out as it is now: the kernel changes it from here on.
	meta, err := json.Marshal(snap.State)
	if err != nil {
		return false
	}
	g := newWPGuard(ram, vmm.RAMBase, snap.Pages)
	if g == nil {
		return false
	}
	snap.StateJSON = meta
	snap.Guard = g
	snap.Paused = time.Since(snap.Started)
	bg := &backgroundSave{done: make(chan error, 1)}
	k.ckpt.background = bg
	log := k.log
	go func() {
		err := save(snap)
		g.close()
		if err != nil {
			// Said at once; counted by awaitBackground.
			fmt.Fprintf(log, "emuckpt: checkpoint failed, the program goes on: %v\n", err)
		}
		bg.done <- err
	}()
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
	if err := <-bg.done; err != nil {
		k.ckpt.stats.Failed++
	}
}
