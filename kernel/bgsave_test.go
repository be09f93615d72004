package kernel

import (
	"bytes"
	"context"
	"encoding/json"
	"iter"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/emuckpt/emuckpt/guestmm"
	"github.com/emuckpt/emuckpt/internal/kvmtest"
	"github.com/emuckpt/emuckpt/kernel/vfs"
	"github.com/emuckpt/emuckpt/testimages"
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
	g := newWPGuard(mem, []vmm.RAMRange{{Start: 0, End: uint64(len(mem))}}, framesOf(pages), nil)
	if g == nil {
		kvmtest.Require(t) // the same machines have userfaultfd
		t.Skip("no userfaultfd write protection here")
	}
	require.NoError(t, g.setPages(pages))
	return mem, g
}

// framesOf is pages as runs of one frame, for newWPGuard.
func framesOf(pages []uint64) iter.Seq2[uint64, uint64] {
	return func(yield func(pa, n uint64) bool) {
		for _, pa := range pages {
			if !yield(pa, 1) {
				return
			}
		}
	}
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
	writeAsGuest(t, mem, "written!", pages[0], vmm.RAMBase+guestmm.PageSize)
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

// TestWPGuardStateReused: the run's one table of frame states is all
// zero again after each guard, closed or failed, so the next one sees
// only its own frames.
func TestWPGuardStateReused(t *testing.T) {
	mem, g := guardedMem(t, 1<<20, []uint64{vmm.RAMBase + guestmm.PageSize})
	g.close()
	state := make([]uint8, len(mem)/guestmm.PageSize)
	for round, pages := range [][]uint64{{vmm.RAMBase, vmm.RAMBase + 5*guestmm.PageSize}, {vmm.RAMBase + 3*guestmm.PageSize}} {
		g := newWPGuard(mem, []vmm.RAMRange{{Start: 0, End: uint64(len(mem))}}, framesOf(pages), state)
		require.NotNil(t, g)
		set := 0
		for _, v := range state {
			if v != pageFree {
				set++
			}
		}
		assert.Equal(t, len(pages), set, "round %d: only this guard's frames are kept", round)
		g.close()
		assert.Equal(t, make([]uint8, len(state)), state, "round %d: cleared", round)
	}
}

// TestWPGuardSetPages: the frames of the guard that the page list made
// after the guest went on leaves out are not kept any more (a write to
// one copies nothing); the others still are, also a frame in two runs
// (shared after fork) that was written before the list came. A list
// that names a frame twice, or one the guard does not keep, is refused.
func TestWPGuardSetPages(t *testing.T) {
	mem, err := unix.Mmap(-1, 0, int(vmm.RAMBase+1<<20), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	require.NoError(t, err)
	t.Cleanup(func() { unix.Munmap(mem) })
	for pa := uint64(vmm.RAMBase); pa < uint64(len(mem)); pa += guestmm.PageSize {
		mem[pa] = byte(pa / guestmm.PageSize)
	}
	base := uint64(vmm.RAMBase)
	runs := func(yield func(pa, n uint64) bool) {
		_ = yield(base, 8) && yield(base+3*guestmm.PageSize, 1)
	}
	g := newWPGuard(mem, []vmm.RAMRange{{Start: 0, End: uint64(len(mem))}}, runs, nil)
	if g == nil {
		kvmtest.Require(t)
		t.Skip("no userfaultfd write protection here")
	}
	defer g.close()
	copies := func() int {
		g.mu.Lock()
		defer g.mu.Unlock()
		return len(g.copies)
	}
	write := func(pa uint64) { writeAsGuest(t, mem, "written!", pa) }
	write(base + 2*guestmm.PageSize) // before the list: kept
	write(base + 3*guestmm.PageSize)
	assert.Equal(t, 2, copies())
	page := func(i uint64) uint64 { return base + i*guestmm.PageSize }
	assert.Error(t, g.setPages([]uint64{page(1), page(1)}), "a frame twice")
	assert.Error(t, g.setPages([]uint64{page(1), page(9)}), "a frame not kept")
	pages := []uint64{page(1), page(3)}
	require.NoError(t, g.setPages(pages))
	assert.Equal(t, 1, copies(), "frame 2 is not in the image: its copy is dropped; frame 3's is kept")
	write(page(4))
	write(page(1))
	assert.Equal(t, 2, copies(), "frame 1 is kept, frame 4 not")
	got := bytes.Join(g.Hold(0, 2), nil)
	assert.Equal(t, byte(page(1)/guestmm.PageSize), got[0])
	assert.Equal(t, byte(page(3)/guestmm.PageSize), got[guestmm.PageSize])
	g.Release(0, 2)
}

// TestFillPlaceholders: the state encoded in the pause with placeholders,
// once filled in, is byte for byte the encoding of the finished state,
// whatever else the state holds: a placeholder's digits under another
// key, or key and digits inside a string, are left alone.
func TestFillPlaceholders(t *testing.T) {
	ph := strconv.FormatUint(placeholder, 10)
	tricky := []string{`":` + ph, `,"zero_pages":` + ph, `,"page":` + ph + `}`, "\xff\xfe not UTF-8", `"page_count":` + ph}
	for _, c := range []struct {
		name  string
		pages [][]PageRun // of each pending VMA once finished
		zero  []uint64
		tmpfs int
	}{
		{"pages and zero pages", [][]PageRun{{{VA: 0x1000, Count: 2, Index: 0}}, {{VA: 0x9000, Count: 1, Index: 2, Copied: true}}}, []uint64{3, 0}, 2},
		{"only zero pages", [][]PageRun{nil}, []uint64{7}, 0},
		{"nothing stored", [][]PageRun{nil, nil}, []uint64{0, 0}, 1},
		{"no pending VMA", nil, nil, 3},
	} {
		t.Run(c.name, func(t *testing.T) {
			st := &State{Syscalls: placeholder}
			ps := ProcessState{PID: 2, Args: tricky, Cwd: tricky[1]}
			ps.Tasks = []TaskState{{TID: 2}}
			ps.Tasks[0].Regs.RAX = placeholder
			ps.Tasks[0].Regs.RBX = placeholder + 1
			ps.VMAs = append(ps.VMAs, VMAState{Type: VMAAnon, Start: 0, End: 0x1000, Name: tricky[0], Offset: placeholder})
			for range c.pages {
				ps.VMAs = append(ps.VMAs, VMAState{Type: VMAAnon, Start: 0x1000, End: 0x20000, Name: tricky[2], NoHugePage: true})
			}
			st.Processes = []ProcessState{ps}
			in := vfs.InodeState{Ino: 2, Mode: unix.S_IFREG | 0o600, Size: int64(c.tmpfs) * 4096}
			for i := range c.tmpfs {
				in.Pages = append(in.Pages, vfs.TmpPage{Index: int64(i)})
			}
			st.Tmpfs = []vfs.MountState{{Path: tricky[3], Inodes: []vfs.InodeState{{Ino: 1, Mode: unix.S_IFDIR | 0o777}, in}}}
			snap := &Snapshot{State: st}
			ms := &memorySnapshot{st: st, snap: snap}
			for i := range c.pages {
				ms.pend = append(ms.pend, pendingVMA{proc: 0, vma: 1 + i})
			}
			for i := range c.tmpfs {
				ms.tmpfs = append(ms.tmpfs, uint64(0x100000+i*4096))
			}
			ms.placeholders()
			meta, err := json.Marshal(st)
			require.NoError(t, err)
			// What finishPages finds.
			stored := 0
			for i, pv := range ms.pend {
				vs := &st.Processes[0].VMAs[pv.vma]
				vs.Pages, vs.ZeroPages = c.pages[i], c.zero[i]
				stored += len(c.pages[i])
			}
			snap.Pages = make([]uint64, stored+c.tmpfs)
			for i := range in.Pages {
				st.Tmpfs[0].Inodes[1].Pages[i].Page = uint64(stored + i)
			}
			st.PageCount = uint64(len(snap.Pages))
			want, err := json.Marshal(st)
			require.NoError(t, err)
			got, err := ms.fillPlaceholders(meta)
			require.NoError(t, err)
			assert.Equal(t, string(want), string(got))
		})
	}
}

// TestBackgroundSnapshotMatchesStopped runs programs three times with
// checkpoints at the same system calls: with the guest stopped until
// Save returns, written in the background, and written in the background
// without PAGEMAP_SCAN (the page lists made in the pause). The states and
// the page data handed to Save must be the same bytes in all three.
// dirtywork forks, maps tmpfs files privately, drops pages with
// MADV_DONTNEED; touchlater writes, right after the checkpoint, the 4 KiB
// pages of 2 MiB pages that were zero at it (those the host has not
// populated change without a write-protect fault: TestWPGuardHoles).
func TestBackgroundSnapshotMatchesStopped(t *testing.T) {
	kvmtest.Require(t)
	if os.Geteuid() != 0 {
		t.Skip("background checkpoints need a userfaultfd that handles KVM's faults: root")
	}
	type image struct {
		state string
		pages []byte
	}
	run := func(args []string, points []uint64, background, noScan bool) (imgs []image, guarded int) {
		holeScanDisabled = noScan
		defer func() { holeScanDisabled = false }()
		prog, err := testimages.FS.ReadFile("bin/" + args[0])
		require.NoError(t, err)
		var mu sync.Mutex
		out := tempFile(t)
		cfg := Config{Program: prog, Name: args[0], Args: args, Stdout: out, Stderr: out, MemSize: 256 << 20, Deterministic: true}
		cfg.Checkpoint = CheckpointConfig{AtSyscalls: points, LeaveRunning: true, Background: background,
			Save: func(s *Snapshot) error {
				var im image
				if s.Guard != nil {
					im.state = string(s.StateJSON)
					for first := 0; first < len(s.Pages); first += 64 {
						n := min(64, len(s.Pages)-first)
						for _, r := range s.Guard.Hold(first, n) {
							im.pages = append(im.pages, r...)
						}
						s.Guard.Release(first, n)
					}
				} else {
					b, err := json.Marshal(s.State)
					require.NoError(t, err)
					im.state = string(b)
					for _, pa := range s.Pages {
						im.pages = append(im.pages, s.Mem[pa:pa+guestmm.PageSize]...)
					}
				}
				mu.Lock()
				defer mu.Unlock()
				imgs = append(imgs, im)
				if s.Guard != nil {
					guarded++
				}
				return nil
			}}
		k, err := New(cfg)
		require.NoError(t, err)
		defer k.Close()
		st, err := k.Run(context.Background())
		require.NoError(t, err)
		require.Equal(t, ExitStatus{}, st)
		return imgs, guarded
	}
	for _, c := range []struct {
		args   []string
		points []uint64
	}{
		{[]string{"dirtywork", "300", "3"}, []uint64{150, 190, 230}},
		{[]string{"touchlater", "64"}, []uint64{4}},
	} {
		want, guarded := run(c.args, c.points, false, false)
		require.Len(t, want, len(c.points), c.args[0])
		require.Zero(t, guarded)
		for _, noScan := range []bool{false, true} {
			got, guarded := run(c.args, c.points, true, noScan)
			require.Len(t, got, len(c.points), c.args[0])
			assert.Equal(t, len(c.points), guarded, "%s, noScan %v: written in the background", c.args[0], noScan)
			for i := range want {
				assert.Equal(t, want[i].state, got[i].state, "%s, noScan %v, checkpoint %d", c.args[0], noScan, i)
				assert.True(t, bytes.Equal(want[i].pages, got[i].pages), "%s, noScan %v, checkpoint %d: page data", c.args[0], noScan, i)
			}
		}
	}
}

// TestWPGuardHoles: a page with no host page at the checkpoint is not
// write-protected, so a write to it goes through without a fault; the
// guard takes it as the zero page it was, in the zero check and when it
// is written (a shared page is stored even when zero). A page with a
// host page is kept as it was as usual.
func TestWPGuardHoles(t *testing.T) {
	const ram = 4 << 20
	mem, err := unix.Mmap(-1, 0, int(vmm.RAMBase+ram), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	require.NoError(t, err)
	t.Cleanup(func() { unix.Munmap(mem) })
	require.NoError(t, unix.Madvise(mem, unix.MADV_NOHUGEPAGE)) // 4 KiB host pages: holes between them
	page := func(i uint64) uint64 { return vmm.RAMBase + i*guestmm.PageSize }
	for i := range uint64(4) {
		mem[page(i)+1] = byte(i + 1) // pages 4-7 stay without host pages
	}
	runs := func(yield func(pa, n uint64) bool) { yield(page(0), 8) }
	g := newWPGuard(mem, []vmm.RAMRange{{Start: 0, End: uint64(len(mem))}}, runs, nil)
	if g == nil {
		kvmtest.Require(t)
		t.Skip("no userfaultfd write protection here")
	}
	defer g.close()
	if !g.holesKnown {
		t.Skip("no PAGEMAP_SCAN here (Linux 6.7)")
	}
	writeAsGuest(t, mem, "written", page(1)+2, page(5)+2, page(6)+2)
	var cands []pageCand
	for i := range uint64(8) {
		cands = append(cands, pageCand{pa: page(i), refs: 1})
	}
	g.checkZero(cands)
	for i, c := range cands {
		assert.Equal(t, i >= 4, c.zero, "page %d", i)
	}
	require.NoError(t, g.setPages([]uint64{page(1), page(5)}))
	got := g.Hold(0, 2)
	want := make([]byte, 2*guestmm.PageSize)
	want[1] = 2
	assert.Equal(t, want, bytes.Join(got, nil), "page 1 as it was, page 5 zero")
	g.Release(0, 2)
	assert.Equal(t, "written", string(mem[page(5)+2:page(5)+9]), "the write itself went through")
}

// writeAsGuest writes data at each address of mem in order, from another
// goroutine as the guest's vCPU thread would, and fails the test when a
// write to a protected page is not let through within 10 s.
func writeAsGuest(t *testing.T, mem []byte, data string, at ...uint64) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, pa := range at {
			guestmm.PrepareWrite(mem[pa : pa+uint64(len(data))])
			copy(mem[pa:], data)
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a write to a protected page was never let through")
	}
}
