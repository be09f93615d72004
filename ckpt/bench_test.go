package ckpt

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/emuckpt/emuckpt/internal/kvmtest"
	"github.com/emuckpt/emuckpt/kernel"
	"github.com/emuckpt/emuckpt/testimages"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// checkpointBigmem runs testimages/bin/bigmem MIB until it checkpoints
// itself into path and returns how long the checkpoint took (snapshot
// and image write, the guest stopped throughout).
func checkpointBigmem(tb testing.TB, mib int, path string) time.Duration {
	tb.Helper()
	return checkpointBigmemTree(tb, mib, 1, path)
}

// checkpointBigmemTree is checkpointBigmem with procs processes of mib
// MiB each.
func checkpointBigmemTree(tb testing.TB, mib, procs int, path string) time.Duration {
	tb.Helper()
	return checkpointProgram(tb, "bigmem", []string{strconv.Itoa(mib), strconv.Itoa(procs)}, uint64(procs*mib)<<20+128<<20, path)
}

// checkpointProgram runs testimages/bin/NAME with args until it
// checkpoints itself into path and returns how long the checkpoint took
// (snapshot and image write, the guest stopped throughout).
func checkpointProgram(tb testing.TB, name string, args []string, memSize uint64, path string) time.Duration {
	tb.Helper()
	prog, err := testimages.FS.ReadFile("bin/" + name)
	require.NoError(tb, err)
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	require.NoError(tb, err)
	defer null.Close()
	var took time.Duration
	cfg := kernel.Config{
		Program: prog, Name: name, Path: testimages.Path(name),
		Args: append([]string{name}, args...), Stdout: null, Stderr: null,
		MemSize: memSize,
	}
	cfg.Checkpoint.Save = func(s *kernel.Snapshot) error {
		err := Write(path, s)
		took = time.Since(s.Started)
		return err
	}
	k, err := kernel.New(cfg)
	require.NoError(tb, err)
	defer k.Close()
	st, err := k.Run(context.Background())
	require.NoError(tb, err)
	require.True(tb, st.Checkpointed, "%+v", st)
	return took
}

// restoreImage opens path, an image of testimages/bin/bigmem, and builds
// the restored kernel: the time to the guest's next instruction.
func restoreImage(tb testing.TB, path string) (*kernel.Kernel, *Image, time.Duration) {
	tb.Helper()
	return restoreProgram(tb, "bigmem", path, nil)
}

// restoreProgram opens path, an image of testimages/bin/NAME, and builds
// the restored kernel with stdout as its standard output: the time to the
// guest's next instruction.
func restoreProgram(tb testing.TB, name, path string, stdout *os.File) (*kernel.Kernel, *Image, time.Duration) {
	tb.Helper()
	prog, err := testimages.FS.ReadFile("bin/" + name)
	require.NoError(tb, err)
	start := time.Now()
	img, err := Open(path)
	require.NoError(tb, err)
	k, err := img.Restore(kernel.Config{Program: prog, Path: testimages.Path(name), Stdout: stdout})
	require.NoError(tb, err)
	return k, img, time.Since(start)
}

func TestBigmemRoundTrip(t *testing.T) {
	kvmtest.Require(t)
	path := filepath.Join(t.TempDir(), "big.img")
	checkpointBigmem(t, 8, path)
	st, err := os.Stat(path)
	require.NoError(t, err)
	pages := int64(8 << 20 / 4096)
	require.Less(t, st.Size(), (pages+16)*4096*101/100, "image no larger than the touched pages + 1%%")
	requireBigmemRestores(t, path, 8)
}

// requireBigmemRestores restores path, an image of bigmem with mib MiB
// touched, runs it to its end and requires the program to find its
// memory intact; it returns the image's state.
func requireBigmemRestores(t *testing.T, path string, mib int) *kernel.State {
	t.Helper()
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	k, img, _ := restoreProgram(t, "bigmem", path, w)
	defer img.Close()
	defer k.Close()
	status, err := k.Run(context.Background())
	require.NoError(t, err)
	w.Close()
	out := make([]byte, 200)
	n, _ := r.Read(out)
	require.Equal(t, 0, status.ShellStatus())
	require.Equal(t, "bigmem "+strconv.Itoa(mib)+" MiB: ok (checkpoint returned 2)\n", string(out[:n]))
	return img.State
}

// directWriteFloor is the floor of BenchmarkCheckpoint256: an O_DIRECT
// write of size bytes of non-zero data into a new file in dir (the file
// system the image goes to), from page-aligned memory in one pwrite, and
// an fsync, as a durable image needs. The buffer is filled before the
// clock starts.
func directWriteFloor(tb testing.TB, dir string, buf []byte) time.Duration {
	tb.Helper()
	f, err := os.OpenFile(filepath.Join(dir, "floor"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC|unix.O_DIRECT, 0o600)
	require.NoError(tb, err)
	defer os.Remove(f.Name())
	defer f.Close()
	start := time.Now()
	_, err = f.WriteAt(buf, 0)
	require.NoError(tb, err)
	require.NoError(tb, f.Sync())
	return time.Since(start)
}

// BenchmarkCheckpoint256 is the figure "stop-mode checkpoint of 256 MiB
// to a file: ≤ 1.15× an O_DIRECT write of the same bytes to the same file
// system, in the same run": each round checkpoints a guest with 256 MiB
// of touched anonymous memory, the guest stopped throughout, and writes
// the image's size with O_DIRECT beside it. It also reports the image
// size against the touched pages.
func BenchmarkCheckpoint256(b *testing.B) {
	kvmtest.Require(b)
	dir := b.TempDir()
	path := filepath.Join(dir, "big.img")
	checkpointBigmem(b, 256, path)
	st, err := os.Stat(path)
	require.NoError(b, err)
	buf, err := unix.Mmap(-1, 0, int(st.Size()+4095)&^4095, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	require.NoError(b, err)
	defer unix.Munmap(buf)
	for i := range buf {
		buf[i] = byte(i%251) + 1
	}
	var ckpt, floor []time.Duration
	for b.Loop() {
		floor = append(floor, directWriteFloor(b, dir, buf))
		ckpt = append(ckpt, checkpointBigmem(b, 256, path))
	}
	reportMedians(b, map[string][]time.Duration{"ckpt-ms": ckpt, "odirect-ms": floor})
	reportRatio(b, "ckpt/odirect", ckpt, floor)
	b.ReportMetric(float64(st.Size())/float64(256<<20), "image/touched")
}

// BenchmarkRestore reports the time from opening an image to a machine
// ready to run the guest's next instruction, for a small program and for
// 256 MiB: restore copies the page data in the background while the guest
// runs, so both should be a few ms.
func BenchmarkRestore(b *testing.B) {
	kvmtest.Require(b)
	for _, mib := range []int{1, 256} {
		b.Run(strconv.Itoa(mib)+"MiB", func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "big.img")
			checkpointBigmem(b, mib, path)
			var total time.Duration
			for b.Loop() {
				k, img, took := restoreImage(b, path)
				total += took
				k.Close()
				img.Close()
			}
			b.ReportMetric(float64(total.Microseconds())/1e3/float64(b.N), "restore-ms")
		})
	}
}

// BenchmarkTreeCheckpoint is the figure "checkpoint and restore of a tree
// of 8 processes x 8 MiB touched: <= 1.5x the time for one process with
// 64 MiB", both measured in the same run: it reports each time and the
// tree's ratio to the single process.
func BenchmarkTreeCheckpoint(b *testing.B) {
	kvmtest.Require(b)
	dir := b.TempDir()
	var ckpt, restore [2]time.Duration
	shapes := [2][2]int{{64, 1}, {8, 8}} // MiB per process, processes
	for b.Loop() {
		for i, sh := range shapes {
			path := filepath.Join(dir, strconv.Itoa(i)+".img")
			ckpt[i] += checkpointBigmemTree(b, sh[0], sh[1], path)
			k, img, took := restoreImage(b, path)
			restore[i] += took
			k.Close()
			img.Close()
		}
	}
	n := float64(b.N)
	b.ReportMetric(float64(ckpt[0].Microseconds())/1e3/n, "ckpt-1x64-ms")
	b.ReportMetric(float64(ckpt[1].Microseconds())/1e3/n, "ckpt-8x8-ms")
	b.ReportMetric(float64(restore[0].Microseconds())/1e3/n, "restore-1x64-ms")
	b.ReportMetric(float64(restore[1].Microseconds())/1e3/n, "restore-8x8-ms")
	b.ReportMetric(float64(ckpt[1])/float64(ckpt[0]), "ckpt-tree/one")
	b.ReportMetric(float64(restore[1])/float64(restore[0]), "restore-tree/one")
}

// readImageFloor is the floor of BenchmarkRestoreReadBack: what a plain
// host process takes to map the image file and read every page of its
// page data, summing its 64-bit words as testimages/bin/readback does
// after restore.
func readImageFloor(tb testing.TB, path string) time.Duration {
	tb.Helper()
	img, err := Open(path)
	require.NoError(tb, err)
	info := img.Info()
	require.NoError(tb, img.Close())
	start := time.Now()
	f, err := os.Open(path)
	require.NoError(tb, err)
	defer f.Close()
	n := int(info.NumPages) * 4096
	m, err := unix.Mmap(int(f.Fd()), info.PageOffset, n, unix.PROT_READ, unix.MAP_PRIVATE)
	require.NoError(tb, err)
	var sum uint64
	for _, w := range unsafe.Slice((*uint64)(unsafe.Pointer(&m[0])), n/8) {
		sum += w
	}
	took := time.Since(start)
	require.NoError(tb, unix.Munmap(m))
	require.NotZero(tb, sum)
	return took
}

// hugeBuffer maps n bytes of fresh anonymous memory, 2 MiB aligned and
// MADV_HUGEPAGE (nothing populated yet), for the host-process floors;
// unmap frees it.
func hugeBuffer(tb testing.TB, n int) (buf []byte, unmap func()) {
	tb.Helper()
	const huge = 2 << 20
	m, err := unix.Mmap(-1, 0, n+huge, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	require.NoError(tb, err)
	off := (huge - int(uintptr(unsafe.Pointer(&m[0])))%huge) % huge
	buf = m[off : off+n]
	require.NoError(tb, unix.Madvise(buf, unix.MADV_HUGEPAGE))
	return buf, func() { unix.Munmap(m) }
}

// fillWork measures, in a host process, the two parts of putting the
// page data of the image at path into memory in 2 MiB pages that the
// restore's background fill cannot avoid: populating as many bytes of
// fresh MADV_HUGEPAGE memory (the host allocates and clears each huge
// page), and reading the page data into that memory and checking it
// (Image.ReadPages: pread from the page cache and CRC-32C, in parallel).
func fillWork(tb testing.TB, path string) (populate, check time.Duration) {
	tb.Helper()
	img, err := Open(path)
	require.NoError(tb, err)
	defer img.Close()
	buf, unmap := hugeBuffer(tb, int(img.Info().NumPages)*4096)
	defer unmap()
	start := time.Now()
	require.NoError(tb, unix.Madvise(buf, 23)) // MADV_POPULATE_WRITE
	populate = time.Since(start)
	start = time.Now()
	require.NoError(tb, img.ReadPages(buf, 0))
	return populate, time.Since(start)
}

// sameWorkFloor is what restore-and-read-back cannot do without, done by
// a host process with as many threads as the benchmark has cores and no
// guest: each 2 MiB of fresh MADV_HUGEPAGE memory populated (the host
// allocates and clears a huge page), the page data of the image at path
// read into it and checked (Image.ReadPages: pread from the page cache,
// CRC-32C) a chunk at a time, and its 64-bit words summed right after,
// by the thread that filled it, while they are in its cache.
func sameWorkFloor(tb testing.TB, path string) time.Duration {
	tb.Helper()
	img, err := Open(path)
	require.NoError(tb, err)
	defer img.Close()
	info := img.Info()
	pages := info.NumPages
	const huge, chunk = 2 << 20, 1 << 20 // chunk: the image's checksum chunk (256 pages)
	buf, unmap := hugeBuffer(tb, int(pages)*4096)
	defer unmap()
	var next atomic.Int64
	var sum atomic.Uint64
	errs := make(chan error, runtime.GOMAXPROCS(0))
	start := time.Now()
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for {
				at := int(next.Add(huge) - huge)
				if at >= len(buf) {
					return
				}
				b := buf[at:min(at+huge, len(buf))]
				_ = unix.Madvise(b, 23) // MADV_POPULATE_WRITE
				for c := 0; c < len(b); c += chunk {
					if err := img.ReadPages(b[c:min(c+chunk, len(b))], uint64(at+c)/4096); err != nil {
						errs <- err
						return
					}
				}
				var s uint64
				for _, w := range unsafe.Slice((*uint64)(unsafe.Pointer(&b[0])), len(b)/8) {
					s += w
				}
				sum.Add(s)
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	close(errs)
	require.NoError(tb, <-errs)
	require.NotZero(tb, sum.Load())
	return took
}

// restoreReadBack restores the readback image at path and runs it to its
// end, which reads every word it wrote back: it returns the time to the
// first instruction and the time to the end.
func restoreReadBack(tb testing.TB, path string) (first, total time.Duration) {
	tb.Helper()
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	require.NoError(tb, err)
	defer null.Close()
	start := time.Now()
	k, img, first := restoreProgram(tb, "readback", path, null)
	defer k.Close()
	defer img.Close()
	st, err := k.Run(context.Background())
	require.NoError(tb, err)
	require.Equal(tb, 0, st.ShellStatus())
	return first, time.Since(start)
}

// BenchmarkRestoreReadBack is the figure "restore, then read all memory
// back, 256 MiB: ≤ 2× the time a plain host process takes to mmap the
// same image file and read every page", both measured in the same run
// with the image in the page cache. It also reports restore to the first
// instruction for 64 and 256 MiB, which should not grow with the size,
// and what the fill of 256 MiB of 2 MiB pages cannot do without, each
// in the same round: the host allocating and clearing 256 MiB of huge
// pages (populate-ms) and reading the page data out of the page cache
// and checking it (check-ms). samework-ms is all of that work together
// with the guest's read, done as well as a host process can on the same
// cores (sameWorkFloor): readback/samework is what the VMM adds to it,
// samework/floor what the fill costs over the plain mapping.
func BenchmarkRestoreReadBack(b *testing.B) {
	kvmtest.Require(b)
	dir := b.TempDir()
	paths := map[int]string{}
	for _, mib := range []int{64, 256} {
		paths[mib] = filepath.Join(dir, strconv.Itoa(mib)+".img")
		checkpointProgram(b, "readback", []string{strconv.Itoa(mib)}, uint64(mib)<<20+64<<20, paths[mib])
		readImageFloor(b, paths[mib]) // into the page cache, for both
	}
	var floor, total, first64, first256, populate, check, same []time.Duration
	for b.Loop() {
		p, c := fillWork(b, paths[256])
		populate, check = append(populate, p), append(check, c)
		same = append(same, sameWorkFloor(b, paths[256]))
		floor = append(floor, readImageFloor(b, paths[256]))
		f, t := restoreReadBack(b, paths[256])
		first256, total = append(first256, f), append(total, t)
		f, _ = restoreReadBack(b, paths[64])
		first64 = append(first64, f)
	}
	reportMedians(b, map[string][]time.Duration{"floor-ms": floor, "readback-ms": total,
		"first-insn-64MiB-ms": first64, "first-insn-256MiB-ms": first256,
		"populate-ms": populate, "check-ms": check, "samework-ms": same})
	reportRatio(b, "readback/floor", total, floor)
	reportRatio(b, "samework/floor", same, floor)
	reportRatio(b, "readback/samework", total, same)
}

// reportMedians reports the median of each series of round times, in ms:
// on a shared, noisy machine the median says more than the mean.
func reportMedians(b *testing.B, series map[string][]time.Duration) {
	for unit, ds := range series {
		b.ReportMetric(float64(median(ds).Microseconds())/1e3, unit)
	}
}

// reportRatio reports the median over the rounds of num[i]/den[i]: each
// round's two measurements were taken back to back, under the same load.
func reportRatio(b *testing.B, unit string, num, den []time.Duration) {
	r := make([]time.Duration, len(num))
	for i := range num {
		r[i] = time.Duration(float64(num[i]) / float64(den[i]) * 1e6)
	}
	b.ReportMetric(float64(median(r))/1e6, unit)
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

// BenchmarkIncrementalCheckpoint256 is the figure "second checkpoint
// after dirtying 1 % of 256 MiB: image ≤ the dirtied pages + 1 %, time
// ≤ 10 ms": testimages/bin/dirtypct touches 256 MiB, checkpoints itself
// (a full image), rewrites 1 % of its pages (655 distinct random ones)
// and checkpoints again, a delta against the first image. It reports
// both checkpoint times (the guest stopped throughout each), their
// ratio, the delta's time split into its snapshot and its write, the
// floor of that write (the delta's bytes in one O_DIRECT write and an
// fsync, beside it), and the delta's size against the bytes of the pages
// written between the checkpoints (the rewritten ones and the few the
// program wrote besides: its stack, its bitmap) and of the rewritten
// ones alone.
func BenchmarkIncrementalCheckpoint256(b *testing.B) {
	kvmtest.Require(b)
	dir := b.TempDir()
	prog, err := testimages.FS.ReadFile("bin/dirtypct")
	require.NoError(b, err)
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	require.NoError(b, err)
	defer null.Close()
	const mib, permille = 256, 10
	dirtied := int64(mib<<8) * permille / 1000
	var first, second, ratio, snaps, writes, floors []time.Duration
	var deltaSize, fullSize int64
	var written int
	round := 0
	for b.Loop() {
		// Fresh files each round: replacing the last round's images
		// would free 256 MiB on this file system while the next ones
		// are written and synced, which is not the checkpoint's cost.
		b.StopTimer()
		os.RemoveAll(filepath.Join(dir, strconv.Itoa(round-1)))
		round++
		sub := filepath.Join(dir, strconv.Itoa(round))
		require.NoError(b, os.Mkdir(sub, 0o700))
		unix.Sync()
		b.StartTimer()
		var took []time.Duration
		var sizes []int64
		var stored int
		var snapTook time.Duration
		var last *Written
		cfg := kernel.Config{
			Program: prog, Name: "dirtypct", Path: testimages.Path("dirtypct"),
			Args: []string{"dirtypct", strconv.Itoa(mib), strconv.Itoa(permille)}, Stdout: null, Stderr: null,
			MemSize: mib<<20 + 128<<20,
		}
		cfg.Checkpoint.LeaveRunning, cfg.Checkpoint.Incremental = true, true
		cfg.Checkpoint.Save = func(s *kernel.Snapshot) error {
			path := filepath.Join(sub, "inc.img."+strconv.Itoa(len(took)))
			snapped := time.Since(s.Started)
			w, err := WriteImage(path, s, last)
			took = append(took, time.Since(s.Started))
			if s.Delta() {
				snapTook, stored = snapped, s.StoredPages()
			}
			if err != nil {
				return err
			}
			last = w
			st, err := os.Stat(path)
			if err != nil {
				return err
			}
			sizes = append(sizes, st.Size())
			return nil
		}
		k, err := kernel.New(cfg)
		require.NoError(b, err)
		st, err := k.Run(context.Background())
		k.Close()
		require.NoError(b, err)
		require.Equal(b, 0, st.ShellStatus())
		require.Len(b, took, 2)
		first, second = append(first, took[0]), append(second, took[1])
		snaps, writes = append(snaps, snapTook), append(writes, took[1]-snapTook)
		ratio = append(ratio, time.Duration(float64(took[1])/float64(took[0])*1e6))
		fullSize, deltaSize = sizes[0], sizes[1]
		// The floor of the delta's write: its bytes in one O_DIRECT
		// write and an fsync, to the same file system.
		b.StopTimer()
		buf, err := unix.Mmap(-1, 0, int(deltaSize+4095)&^4095, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
		require.NoError(b, err)
		for i := range buf {
			buf[i] = byte(i%251) + 1
		}
		floors = append(floors, directWriteFloor(b, sub, buf))
		unix.Munmap(buf)
		b.StartTimer()
		written = stored
	}
	reportMedians(b, map[string][]time.Duration{"full-ms": first, "delta-ms": second,
		"delta-snapshot-ms": snaps, "delta-write-ms": writes, "delta-odirect-floor-ms": floors})
	b.ReportMetric(float64(median(ratio))/1e6, "delta/full")
	// The pages written between the checkpoints are the 655 rewritten
	// ones and a few of the program's own (its stack, its bitmap of
	// rewritten pages): all that the delta stores.
	b.ReportMetric(float64(written), "written-pages")
	b.ReportMetric(float64(deltaSize)/float64(int64(written)*4096), "delta-image/written")
	b.ReportMetric(float64(deltaSize)/float64(dirtied*4096), "delta-image/rewritten")
	b.ReportMetric(float64(deltaSize)/float64(fullSize), "delta-image/full-image")
}
