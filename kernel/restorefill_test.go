package kernel

import (
	"context"
	"errors"
	"io"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emuckpt/emuckpt/guestmm"
	"github.com/emuckpt/emuckpt/internal/kvmtest"
	"github.com/stretchr/testify/require"
)

// snapshotReadback checkpoints `readback MIB` at its emuckpt_checkpoint()
// and returns the state, its page data and the program.
func snapshotReadback(t *testing.T, mib string) (*State, []byte, []byte) {
	st, pages, prog, _ := snapshotProgram(t, "readback", []string{mib}, 64<<20)
	return st, pages, prog
}

// eachFill runs fn with the restore fill in the background and with the
// synchronous fill, as subtests named after them.
func eachFill(t *testing.T, fn func(t *testing.T, background bool)) {
	for _, background := range []bool{true, false} {
		name := map[bool]string{true: "background", false: "synchronous"}[background]
		t.Run(name, func(t *testing.T) {
			old := backgroundFillDisabled
			backgroundFillDisabled = !background
			t.Cleanup(func() { backgroundFillDisabled = old })
			fn(t, background)
		})
	}
}

// testSource is page data whose chunk at page bad fails (as a chunk whose
// checksum does not match), read after delay per read; it records its
// reads and whether it was closed.
type testSource struct {
	PageBytes
	bad    uint64
	delay  time.Duration
	reads  atomic.Int32
	closed atomic.Bool
	mu     sync.Mutex
	order  []uint64 // the first page of each read
	pages  []uint64 // how many times each page was read
}

var errTestChecksum = errors.New("page data checksum mismatch in pages 512-767 (test)")

func (s *testSource) ReadPages(dst []byte, first uint64) error {
	s.reads.Add(1)
	s.mu.Lock()
	s.order = append(s.order, first)
	for i := range uint64(len(dst)) / guestmm.PageSize {
		for first+i >= uint64(len(s.pages)) {
			s.pages = append(s.pages, 0)
		}
		s.pages[first+i]++
	}
	s.mu.Unlock()
	time.Sleep(s.delay)
	if first < s.bad+restoreChunk && first+uint64(len(dst))/guestmm.PageSize > s.bad {
		return errTestChecksum
	}
	return s.PageBytes.ReadPages(dst, first)
}

func (s *testSource) Close() error { s.closed.Store(true); return nil }

func restoreReadback(t *testing.T, st *State, prog []byte, src PageSource, w io.Writer) (*Kernel, error) {
	t.Helper()
	cfg := Config{Program: prog}
	if f, ok := w.(*os.File); ok {
		cfg.Stdout = f
	}
	return Restore(cfg, st, src)
}

// TestRestoreFill restores a 4 MiB readback image whose page data is
// filled in the background (or before Restore returns, where the
// background fill is off): the guest reads every word back and checks
// the sum; a chunk that fails its check stops the run with the error
// before the guest got past it; a kernel closed while its fill runs stops
// the fill.
func TestRestoreFill(t *testing.T) {
	kvmtest.Require(t)
	st, pages, prog := snapshotReadback(t, "4")
	for _, background := range []bool{true, false} {
		name := map[bool]string{true: "background", false: "synchronous"}[background]
		setFill := func(t *testing.T) {
			old := backgroundFillDisabled
			backgroundFillDisabled = !background
			t.Cleanup(func() { backgroundFillDisabled = old })
		}
		t.Run(name+"/good", func(t *testing.T) {
			setFill(t)
			r, w, err := os.Pipe()
			require.NoError(t, err)
			defer r.Close()
			src := &testSource{PageBytes: PageBytes(pages), bad: st.PageCount}
			k, err := restoreReadback(t, st, prog, src, w)
			require.NoError(t, err)
			defer k.Close()
			if background {
				require.NotNil(t, k.fill, "no background fill: userfaultfd unavailable here?")
			} else {
				require.Nil(t, k.fill)
				require.True(t, src.closed.Load(), "the source is closed once read")
			}
			status, err := k.Run(context.Background())
			require.NoError(t, err)
			w.Close()
			out, _ := io.ReadAll(r)
			require.Equal(t, 0, status.ShellStatus())
			require.Equal(t, "readback 4 MiB: ok (checkpoint returned 2)\n", string(out))
			require.Nil(t, k.fill, "the fill is over after the first exit")
			require.True(t, src.closed.Load(), "the source is closed once read")
			if !background {
				require.Equal(t, int32(1), src.reads.Load())
			}
			src.requireEachPageReadOnce(t, st.PageCount)
		})
		for _, delay := range []time.Duration{0, 30 * time.Millisecond} {
			// With a delay, the guest is sure to wait for the bad chunk
			// in the host kernel when the fill fails.
			t.Run(name+"/bad chunk/delay "+delay.String(), func(t *testing.T) {
				setFill(t)
				r, w, err := os.Pipe()
				require.NoError(t, err)
				defer r.Close()
				src := &testSource{PageBytes: PageBytes(pages), bad: 2 * restoreChunk, delay: delay}
				k, err := restoreReadback(t, st, prog, src, w)
				if !background {
					require.ErrorIs(t, err, errTestChecksum)
					require.ErrorContains(t, err, "reading the page data of the image")
					require.Nil(t, k)
					return
				}
				require.NoError(t, err)
				defer k.Close()
				done := make(chan struct{})
				var runErr error
				go func() {
					defer close(done)
					_, runErr = k.Run(context.Background())
				}()
				select {
				case <-done:
				case <-time.After(20 * time.Second):
					t.Fatal("the run did not stop after the fill failed")
				}
				require.ErrorIs(t, runErr, ErrRestore)
				require.ErrorIs(t, runErr, errTestChecksum)
				require.ErrorContains(t, runErr, "reading the page data of the image")
				w.Close()
				out, _ := io.ReadAll(r)
				require.Empty(t, string(out), "the guest went past the bad chunk")
				require.True(t, src.closed.Load())
			})
		}
	}
	t.Run("the chunk waited for first", func(t *testing.T) {
		// The restored task returns from its call on its stack, whose
		// page is the last of the page data: with the fill slowed down,
		// that chunk must come before the ones the guest needs later.
		r, w, err := os.Pipe()
		require.NoError(t, err)
		defer r.Close()
		src := &testSource{PageBytes: PageBytes(pages), bad: st.PageCount, delay: 30 * time.Millisecond}
		k, err := restoreReadback(t, st, prog, src, w)
		require.NoError(t, err)
		defer k.Close()
		require.NotNil(t, k.fill)
		_, err = k.Run(context.Background())
		require.NoError(t, err)
		w.Close()
		out, _ := io.ReadAll(r)
		require.Equal(t, "readback 4 MiB: ok (checkpoint returned 2)\n", string(out))
		last := (st.PageCount - 1) / restoreChunk * restoreChunk
		src.requireEachPageReadOnce(t, st.PageCount)
		src.mu.Lock()
		defer src.mu.Unlock()
		at := slices.Index(src.order, last)
		require.Less(t, at, len(src.order)-1, "the stack's chunk was read last: %v", src.order)
	})
	t.Run("close while filling", func(t *testing.T) {
		src := &testSource{PageBytes: PageBytes(pages), bad: st.PageCount, delay: 20 * time.Millisecond}
		k, err := restoreReadback(t, st, prog, src, nil)
		require.NoError(t, err)
		require.NotNil(t, k.fill)
		start := time.Now()
		require.NoError(t, k.Close())
		require.Less(t, src.reads.Load(), int32((st.PageCount+restoreChunk-1)/restoreChunk), "Close waited for the whole fill")
		require.Less(t, time.Since(start), 5*time.Second)
		require.True(t, src.closed.Load())
	})
}

func TestHotPages(t *testing.T) {
	const pg = guestmm.PageSize
	task := func(rsp, rip, fs uint64) TaskState {
		ts := TaskState{FSBase: fs}
		ts.Regs.RSP, ts.Regs.RIP = rsp, rip
		return ts
	}
	ps := ProcessState{
		VMAs: []VMAState{
			{Start: 0x400000, End: 0x402000, Pages: []PageRun{{VA: 0x401000, Count: 1, Index: 0}}},
			{Start: 0x10000000, End: 0x20000000, Pages: []PageRun{{VA: 0x10000000, Count: 1000, Index: 1}}},
			{Start: 0x7fff0000, End: 0x80000000, Pages: []PageRun{{VA: 0x7fffe000, Count: 2, Index: 1001}}},
		},
	}
	for _, tc := range []struct {
		name  string
		tasks []TaskState
		want  []uint64
	}{
		{"stack and tls", []TaskState{task(0x7ffff010, 0x400100, 0x401008)}, []uint64{1002, 1001, 0}},
		{"stack page below", []TaskState{task(0x7ffff000+8, 0x400100, 0)}, []uint64{1002, 1001}},
		{"code in anonymous memory", []TaskState{task(0x7ffff010, 0x10000000+600*pg, 0)}, []uint64{1002, 1001, 601}},
		{"nothing stored", []TaskState{task(0x1000, 0x2000, 0)}, nil},
		{"two threads", []TaskState{task(0x7ffff010, 0, 0), task(0x10000000+300*pg, 0, 0)},
			[]uint64{1002, 1001, 301, 300}},
		{"two threads, each page once", []TaskState{task(0x7ffff010, 0, 0), task(0x7ffff010, 0, 0)}, []uint64{1002, 1001}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := ps
			p.Tasks = tc.tasks
			require.Equal(t, tc.want, hotPages(&State{Processes: []ProcessState{p}}))
		})
	}
}

// requireEachPageReadOnce checks that each of the n pages was read once
// (a chunk at a time, or several chunks in one read).
func (s *testSource) requireEachPageReadOnce(t *testing.T, n uint64) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	want := make([]uint64, n)
	for i := range want {
		want[i] = 1
	}
	require.Equal(t, want, s.pages, "each page read once")
}

func TestFillOrder(t *testing.T) {
	// 1280 pages in 5 chunks: pages 0-99 and 1000-1279 in 4 KiB
	// frames, 100-611 in block 0, 612-999 in block 1.
	pl := &pagePlace{pa: make([]uint64, 5*restoreChunk), block: make([]int32, 5*restoreChunk),
		huge: []hugeBlock{{lo: 100, hi: 612, stored: 512}, {lo: 612, hi: 1000, stored: 388}}}
	for i := range pl.block {
		pl.block[i] = -1
		for id, b := range pl.huge {
			if uint64(i) >= b.lo && uint64(i) < b.hi {
				pl.block[i] = int32(id)
			}
		}
	}
	chunk := func(c uint64) fillUnit { return fillUnit{chunk: c, block: -1} }
	block := func(id int32) fillUnit { return fillUnit{block: id} }
	for _, tc := range []struct {
		name string
		hot  []uint64
		want []fillUnit
	}{
		// Chunk 1 begins in block 0, chunk 2 too (block 0 is listed
		// once), chunk 3 in block 1.
		{"page order", nil, []fillUnit{chunk(0), {chunk: 1, block: 0}, {chunk: 3, block: 1}, chunk(4)}},
		{"hot page in 4 KiB frames", []uint64{1100}, []fillUnit{chunk(4), chunk(0), {chunk: 1, block: 0}, {chunk: 3, block: 1}, chunk(4)}},
		// Its chunk holds the end of block 0 too: that waits.
		{"hot page in block 1: its chunk, then block 1 whole", []uint64{700},
			[]fillUnit{chunk(2), block(1), chunk(0), {chunk: 1, block: 0}, {chunk: 3, block: 1}, chunk(4)}},
		{"two hot pages", []uint64{1100, 150},
			[]fillUnit{chunk(4), chunk(0), block(0), chunk(0), {chunk: 1, block: 0}, {chunk: 3, block: 1}, chunk(4)}},
		{"hot page past the page data", []uint64{9 * restoreChunk}, []fillUnit{chunk(0), {chunk: 1, block: 0}, {chunk: 3, block: 1}, chunk(4)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, fillOrder(pl, tc.hot, 5))
		})
	}
}
