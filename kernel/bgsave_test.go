package kernel

import (
	"bytes"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/emuckpt/emuckpt/guestmm"
	"github.com/emuckpt/emuckpt/internal/kvmtest"
	"github.com/emuckpt/emuckpt/vmm"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// guardedMem maps guest memory of ram bytes of RAM from RAMBase on, with
// every page filled with its frame number, and write-protects it for the
// image frames pages.
func guardedMem(t *testing.T, ram uint64, pages []uint64) ([]byte, *wpGuard) {
	t.Helper()
	mem, err := unix.Mmap(-1, 0, int(vmm.RAMBase+ram), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	require.NoError(t, err)
	t.Cleanup(func() { unix.Munmap(mem) })
	for pa := uint64(vmm.RAMBase); pa < uint64(len(mem)); pa += guestmm.PageSize {
		mem[pa] = byte(pa / guestmm.PageSize)
	}
	g := newWPGuard(mem, []vmm.RAMRange{{Start: 0, End: uint64(len(mem))}}, pages, nil)
	if g == nil {
		kvmtest.Require(t) // the same machines have userfaultfd
		t.Skip("no userfaultfd write protection here")
	}
	return mem, g
}

// TestWPGuardKeepsImagePages: a page of the image written after the
// checkpoint is handed out as it was; one written by the writer first is
// written as it is.
func TestWPGuardKeepsImagePages(t *testing.T) {
	pages := []uint64{vmm.RAMBase, vmm.RAMBase + 2*guestmm.PageSize, vmm.RAMBase + 3*guestmm.PageSize}
	mem, g := guardedMem(t, 1<<20, pages)
	want := [][]byte{}
	for _, pa := range pages {
		want = append(want, bytes.Clone(mem[pa:pa+guestmm.PageSize]))
	}
	// Written by "the guest" (another thread) before the writer got
	// there: page 0 and page 1 (a frame not in the image).
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, pa := range []uint64{pages[0], vmm.RAMBase + guestmm.PageSize} {
			guestmm.PrepareWrite(mem[pa : pa+8])
			copy(mem[pa:], "written!")
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a write to a protected page was never let through")
	}
	got := g.Hold(0, len(pages))
	assert.Equal(t, bytes.Join(want, nil), bytes.Join(got, nil), "the image's pages as they were")
	g.Release(0, len(pages))
	g.close()
	assert.Equal(t, "written!", string(mem[pages[0]:pages[0]+8]))
	copy(mem[pages[2]:], "after") // no guard, no wait
}

// TestWPGuardWritesDuringGC: Go code writes protected guest pages while
// the garbage collector stops the world over and over. A copy or clear
// that faulted in runtime assembly would keep its P, and the handler
// would find none to run on (the SIGUSR1-storm hang); PrepareWrite takes
// the fault where the goroutine can be preempted. Without it the whole
// process hangs here, its own timers too, until go test kills it.
func TestWPGuardWritesDuringGC(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("needs GOMAXPROCS >= 2")
	}
	const ram = 64 << 20
	var pages []uint64
	for pa := uint64(vmm.RAMBase); pa < vmm.RAMBase+ram; pa += 2 * guestmm.PageSize {
		pages = append(pages, pa)
	}
	mem, g := guardedMem(t, ram, pages)
	defer g.close()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				runtime.GC()
			}
		}
	}()
	done := make(chan struct{})
	src := bytes.Repeat([]byte{0xAB}, 3*guestmm.PageSize)
	go func() {
		defer close(done)
		for pa := uint64(vmm.RAMBase); pa+uint64(len(src)) <= vmm.RAMBase+ram; pa += uint64(len(src)) {
			dst := mem[pa+100 : pa+uint64(len(src))]
			guestmm.PrepareWrite(dst)
			copy(dst, src)
			guestmm.PrepareWrite(mem[pa : pa+100])
			clear(mem[pa : pa+100])
		}
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("the writes hang")
	}
	close(stop)
	wg.Wait()
	// Every image page written was kept as it was.
	got := bytes.Join(g.Hold(0, len(pages)), nil)
	for i, pa := range pages {
		require.Equal(t, byte(pa/guestmm.PageSize), got[i*guestmm.PageSize], "page %d", i)
		require.Equal(t, byte(0), got[i*guestmm.PageSize+1], "page %d", i)
	}
	g.Release(0, len(pages))
}

// TestWPGuardIndexReused: the run's one frame index is all zero again
// after each guard, closed or failed, so the next one sees only its own
// pages.
func TestWPGuardIndexReused(t *testing.T) {
	mem, g := guardedMem(t, 1<<20, []uint64{vmm.RAMBase + guestmm.PageSize})
	g.close()
	bufs := &bgBuffers{index: make([]int32, len(mem)/guestmm.PageSize), state: make([]uint8, 0, 4)}
	for round, pages := range [][]uint64{{vmm.RAMBase, vmm.RAMBase + 5*guestmm.PageSize}, {vmm.RAMBase + 3*guestmm.PageSize}} {
		g := newWPGuard(mem, []vmm.RAMRange{{Start: 0, End: uint64(len(mem))}}, pages, bufs)
		require.NotNil(t, g)
		set := 0
		for _, v := range bufs.index {
			if v != 0 {
				set++
			}
		}
		assert.Equal(t, len(pages), set, "round %d: only this guard's pages are indexed", round)
		g.close()
		assert.Equal(t, make([]int32, len(bufs.index)), bufs.index, "round %d: cleared", round)
	}
}
