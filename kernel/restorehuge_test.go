package kernel

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"maps"
	"os"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/emuckpt/emuckpt/guestmm"
	"github.com/emuckpt/emuckpt/internal/kvmtest"
	"github.com/emuckpt/emuckpt/testimages"
	"github.com/emuckpt/emuckpt/vmm"
	"github.com/stretchr/testify/require"
)

// snapshotProgram runs testimages/bin/NAME with args until its
// emuckpt_checkpoint() and returns the state, its page data, the
// program and what it wrote to stdout.
func snapshotProgram(t *testing.T, name string, args []string, mem uint64) (*State, []byte, []byte, string) {
	t.Helper()
	prog, err := testimages.FS.ReadFile("bin/" + name)
	require.NoError(t, err)
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	var st *State
	var pages []byte
	cfg := Config{Program: prog, Name: name, Args: append([]string{name}, args...), Stdout: w, MemSize: mem}
	cfg.Checkpoint = CheckpointConfig{Save: func(s *Snapshot) error {
		st = s.State
		for _, pa := range s.Pages {
			pages = append(pages, s.Mem[pa:pa+guestmm.PageSize]...)
		}
		return nil
	}}
	k, err := New(cfg)
	require.NoError(t, err)
	_, err = k.Run(context.Background())
	k.Close()
	w.Close()
	require.NoError(t, err)
	require.NotNil(t, st)
	out, err := io.ReadAll(r)
	require.NoError(t, err)
	return st, pages, prog, string(out)
}

// hostHugeKiB returns the host's AnonHugePages, in KiB, of the mappings
// inside mem (/proc/self/smaps).
func hostHugeKiB(t *testing.T, mem []byte) int {
	t.Helper()
	lo := uint64(uintptr(unsafe.Pointer(&mem[0])))
	hi := lo + uint64(len(mem))
	data, err := os.ReadFile("/proc/self/smaps")
	require.NoError(t, err)
	total, inside := 0, false
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if a, b, ok := strings.Cut(f[0], "-"); ok && !strings.HasSuffix(f[0], ":") {
			start, err1 := strconv.ParseUint(a, 16, 64)
			end, err2 := strconv.ParseUint(b, 16, 64)
			inside = err1 == nil && err2 == nil && start >= lo && end <= hi
			continue
		}
		if inside && f[0] == "AnonHugePages:" && len(f) > 1 {
			n, err := strconv.Atoi(f[1])
			require.NoError(t, err)
			total += n
		}
	}
	return total
}

// thpAvailable reports whether the host gives MADV_HUGEPAGE memory
// transparent huge pages.
func thpAvailable() bool {
	b, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	return err == nil && !strings.Contains(string(b), "[never]")
}

// TestRestoreHugePages restores hugerestore, whose eight 2 MiB regions
// are whole, with zero pages, split by munmap and by mprotect,
// MADV_NOHUGEPAGE, nearly all zero and untouched: exactly the four that
// a fresh fault would map with a 2 MiB page and whose pages the image
// stores come back as 2 MiB pages (the zero pages in them read as zeros
// although the image does not store them), in the background fill over
// host huge pages; the program then checks every page, and that a fork
// after the restore copies on write.
func TestRestoreHugePages(t *testing.T) {
	kvmtest.Require(t)
	st, pages, prog, out := snapshotProgram(t, "hugerestore", nil, 64<<20)
	region, err := strconv.ParseUint(strings.TrimPrefix(strings.TrimSpace(out), "region 0x"), 16, 64)
	require.NoError(t, err, "output %q", out)
	noHuge := map[uint64]bool{}
	for _, v := range st.Processes[0].VMAs {
		noHuge[v.Start] = v.NoHugePage
	}
	require.Equal(t, map[bool]bool{true: true, false: false}, map[bool]bool{
		true:  noHuge[region+4*guestmm.HugePageSize],
		false: noHuge[region] || noHuge[region+5*guestmm.HugePageSize],
	}, "MADV_NOHUGEPAGE is saved: %v", noHuge)
	for _, tc := range []struct {
		name             string
		background, move bool
	}{{"background", true, true}, {"background without UFFDIO_MOVE", true, false}, {"synchronous", false, false}} {
		background := tc.background
		t.Run(tc.name, func(t *testing.T) {
			oldFill, oldMove := backgroundFillDisabled, moveDisabled
			backgroundFillDisabled, moveDisabled = !background, !tc.move
			t.Cleanup(func() { backgroundFillDisabled, moveDisabled = oldFill, oldMove })
			r, w, err := os.Pipe()
			require.NoError(t, err)
			defer r.Close()
			k, err := Restore(Config{Program: prog, Stdout: w}, st, PageBytes(pages))
			require.NoError(t, err)
			defer k.Close()
			require.Equal(t, background, k.fill != nil)
			// Host huge pages: moved in, or faulted in by the copy.
			hostHuge := !background || k.fill.move
			if background && !tc.move {
				require.False(t, k.fill.move)
			}
			require.Equal(t, 4, k.first.as.PageTables().HugePages(), "regions 0, 1, 5 and 7")
			for _, reg := range []uint64{0, 1, 5, 7} {
				pte, ok := k.first.as.PageTables().Lookup(region + reg*guestmm.HugePageSize)
				require.True(t, ok)
				require.Zero(t, pte.Addr()%guestmm.HugePageSize, "region %d at a 2 MiB aligned frame", reg)
			}
			// A checkpoint of the restored process stores the same
			// pages, and not the zero ones inside its 2 MiB pages.
			require.NoError(t, k.awaitPages())
			snap, err := k.Snapshot(nil)
			require.NoError(t, err)
			again := make([]byte, 0, len(snap.Pages)*guestmm.PageSize)
			for _, pa := range snap.Pages {
				again = append(again, snap.Mem[pa:pa+guestmm.PageSize]...)
			}
			wantPages, wantZero := storedByVA(st, pages)
			gotPages, gotZero := storedByVA(snap.State, again)
			require.Equal(t, len(wantPages), len(gotPages))
			require.True(t, maps.Equal(wantPages, gotPages), "the stored pages differ")
			require.Equal(t, wantZero, gotZero)
			status, err := k.Run(context.Background())
			require.NoError(t, err)
			w.Close()
			got, _ := io.ReadAll(r)
			require.Equal(t, "hugerestore: ok (checkpoint returned 2)\n", string(got))
			require.Equal(t, 0, status.ShellStatus())
			if thpAvailable() && hostHuge {
				require.GreaterOrEqual(t, hostHugeKiB(t, k.m.Mem()), 4*2048, "host huge pages under the four 2 MiB pages")
			}
		})
	}
}

// TestPlacePagesAboveTheHole: on a 5 GiB guest whose frames below the
// MMIO hole are nearly all taken, the page data of 4 MiB of anonymous
// memory (its first page zero, not stored) goes into two 2 MiB blocks,
// the last one below the hole and one above it, and that of a
// grows-down stack into 4 KiB frames above it; the fill, in the
// background and synchronously, puts every page at its frame, and the
// page the image does not store reads as zeros.
func TestPlacePagesAboveTheHole(t *testing.T) {
	kvmtest.Require(t)
	eachFill(t, func(t *testing.T, background bool) {
		m, err := vmm.New(vmm.Config{MemSize: 5 << 30})
		require.NoError(t, err)
		defer m.Close()
		k := &Kernel{m: m, frames: m.NewFrames()}
		lo, hi := k.frames.Hole()
		start, _ := k.frames.Range()
		_, err = k.frames.AllocRun(int((lo-start)/guestmm.PageSize) - guestmm.HugeFrames - 300)
		require.NoError(t, err)
		const anon = 0x7f0000000000
		const blockPages = guestmm.HugeFrames
		// Pages 1..1023 of the 4 MiB, then 600 pages of stack.
		st := &State{PageCount: 2*blockPages - 1 + 600, Processes: []ProcessState{{VMAs: []VMAState{
			{Start: anon, End: anon + 2*guestmm.HugePageSize, Prot: 3, Anonymous: true, Kind: "anon",
				Pages: []PageRun{{VA: anon + guestmm.PageSize, Count: 2*blockPages - 1, Index: 0}}},
			{Start: 0x7ffff0000000, End: 0x7ffff0000000 + 600*guestmm.PageSize, Prot: 3, Anonymous: true, GrowsDown: true, Kind: "stack",
				Pages: []PageRun{{VA: 0x7ffff0000000, Count: 600, Index: 2*blockPages - 1}}},
		}}}}
		uses := make([]uint32, st.PageCount)
		for i := range uses {
			uses[i] = 1
		}
		pl, err := k.placePages(st, uses)
		require.NoError(t, err)
		require.Len(t, pl.huge, 2)
		require.Equal(t, uint64(600), pl.small)
		require.Equal(t, [2]uint64{lo - guestmm.HugePageSize, hi}, [2]uint64{pl.huge[0].pa, pl.huge[1].pa}, "the blocks on both sides of the hole")
		require.Equal(t, [2]uint64{anon, anon + guestmm.HugePageSize}, [2]uint64{pl.huge[0].va, pl.huge[1].va})
		for i := range st.PageCount {
			pa := pl.pa[i]
			require.False(t, pa >= lo && pa < hi+guestmm.HugePageSize && i >= 2*blockPages-1, "stack page %d at %#x", i, pa)
			if i < 2*blockPages-1 {
				require.Equal(t, pl.huge[(i+1)/blockPages].pa+(i+1)%blockPages*guestmm.PageSize, pa, "page %d", i)
			}
		}
		data := make([]byte, st.PageCount*guestmm.PageSize)
		for i := range data {
			data[i] = byte(i/guestmm.PageSize) ^ byte(i>>3) | 1
		}
		mem := m.Mem()
		src := &testSource{PageBytes: PageBytes(data), bad: st.PageCount}
		require.NoError(t, k.fillPages(pl, src, nil))
		require.Equal(t, background, k.fill != nil)
		require.NoError(t, k.awaitPages())
		for i := range st.PageCount {
			pa := pl.pa[i]
			require.Equal(t, data[i*guestmm.PageSize:(i+1)*guestmm.PageSize], mem[pa:pa+guestmm.PageSize], "page %d at %#x", i, pa)
		}
		require.Equal(t, make([]byte, guestmm.PageSize), mem[pl.huge[0].pa:pl.huge[0].pa+guestmm.PageSize], "the page not stored is zero")
		if background {
			if thpAvailable() {
				require.GreaterOrEqual(t, hostHugeKiB(t, mem), 2*2048, "host huge pages under the blocks")
			}
		}
	})
}

// storedByVA returns the contents of the pages st stores, by virtual
// address (of its first process), and its count of zero pages not
// stored.
func storedByVA(st *State, data []byte) (map[uint64]string, uint64) {
	m := map[uint64]string{}
	var zero uint64
	for _, v := range st.Processes[0].VMAs {
		zero += v.ZeroPages
		for _, r := range v.Pages {
			for j := range r.Count {
				i := r.Index + j
				m[r.VA+j*guestmm.PageSize] = string(data[i*guestmm.PageSize : (i+1)*guestmm.PageSize])
			}
		}
	}
	return m, zero
}

// TestPlacePagesNearlyFull: a full 2 MiB block costs no frame more than
// 4 KiB frames, so it comes back as a 2 MiB page however little room the
// guest has beyond the page data; a sparse block's zero pages must leave
// guestmm.HugeReserve frames free.
func TestPlacePagesNearlyFull(t *testing.T) {
	kvmtest.Require(t)
	const anon = 0x7f0000000000
	const blockPages = guestmm.HugeFrames
	// Two full blocks, then 100 pages of a third.
	st := &State{PageCount: 2*blockPages + 100, Processes: []ProcessState{{VMAs: []VMAState{
		{Start: anon, End: anon + 3*guestmm.HugePageSize, Prot: 3, Anonymous: true, Kind: "anon",
			Pages: []PageRun{{VA: anon, Count: 2*blockPages + 100, Index: 0}}},
	}}}}
	uses := make([]uint32, st.PageCount)
	for i := range uses {
		uses[i] = 1
	}
	for _, tc := range []struct {
		name      string
		spare     int // free frames beyond the page data and one block
		wantHuge  int
		wantSmall uint64
	}{
		{"room for the reserve", 2 << 10, 3, 0},
		{"less than the reserve", 200, 2, 100},
		{"no room beyond the page data", 0, 2, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := vmm.New(vmm.Config{MemSize: 64 << 20})
			require.NoError(t, err)
			defer m.Close()
			k := &Kernel{m: m, frames: m.NewFrames()}
			require.Less(t, guestmm.HugeReserve(k.frames.Capacity()), 2<<10-blockPages)
			free := k.frames.Capacity() - k.frames.Used()
			_, err = k.frames.AllocRun(free - int(st.PageCount) - blockPages - tc.spare)
			require.NoError(t, err)
			pl, err := k.placePages(st, uses)
			require.NoError(t, err)
			require.Len(t, pl.huge, tc.wantHuge)
			require.Equal(t, tc.wantSmall, pl.small)
		})
	}
}
