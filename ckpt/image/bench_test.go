package image

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// benchRAM is 256 MiB of "guest RAM": an anonymous mapping, like the VMM's,
// with every page touched and different.
func benchRAM(b *testing.B) []byte {
	b.Helper()
	ram, err := unix.Mmap(-1, 0, 256<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { unix.Munmap(ram) })
	for i := 0; i < len(ram); i += 512 {
		le.PutUint64(ram[i:], uint64(i)*0x9e3779b97f4a7c15)
	}
	return ram
}

// BenchmarkWrite writes 256 MiB of pages to a file in $TMPDIR (Create,
// Pages, Commit) and reports MB/s for the whole, plus the time spent in
// Pages ("pages-ms": the time the guest must stay paused) and in Commit
// ("commit-ms", mostly fsync). Sub-benchmarks: direct or buffered I/O
// (direct falls back to buffered where the file system has no direct
// I/O), and how the caller hands over the pages:
//
//   - one-call: all of guest RAM in one Pages call;
//   - 2MiB-runs: runs of 512 contiguous pages;
//   - 4KiB-pages: page by page, as for scattered present pages (these go
//     through the staging buffer).
//
// The file is removed after each iteration (outside the timer).
func BenchmarkWrite(b *testing.B) {
	ram := benchRAM(b)
	dir := b.TempDir()
	for _, direct := range []bool{true, false} {
		for _, bc := range []struct {
			name string
			run  int
		}{
			{"one-call", len(ram)},
			{"2MiB-runs", 2 << 20},
			{"4KiB-pages", PageSize},
		} {
			name := "buffered/" + bc.name
			if direct {
				name = "direct/" + bc.name
			}
			var opts []Option
			if direct {
				opts = append(opts, DirectIO())
			}
			b.Run(name, func(b *testing.B) {
				b.SetBytes(int64(len(ram)))
				var pagesTime, commitTime time.Duration
				for b.Loop() {
					path := filepath.Join(dir, "bench.ckpt")
					t0 := time.Now()
					w, err := Create(path, opts...)
					if err != nil {
						b.Fatal(err)
					}
					for off := 0; off < len(ram); off += bc.run {
						if _, err := w.Pages(ram[off : off+bc.run]); err != nil {
							b.Fatal(err)
						}
					}
					w.Record(1, make([]byte, 8*len(ram)/PageSize)) // page addresses
					t1 := time.Now()
					if err := w.Commit(); err != nil {
						b.Fatal(err)
					}
					t2 := time.Now()
					pagesTime += t1.Sub(t0)
					commitTime += t2.Sub(t1)
					b.StopTimer()
					os.Remove(path)
					b.StartTimer()
				}
				b.ReportMetric(float64(pagesTime.Microseconds())/1e3/float64(b.N), "pages-ms")
				b.ReportMetric(float64(commitTime.Microseconds())/1e3/float64(b.N), "commit-ms")
			})
		}
	}
}

// BenchmarkWriteBuffer writes 256 MiB of pages to an in-memory Buffer (the
// image a `verify` run would restore from).
func BenchmarkWriteBuffer(b *testing.B) {
	ram := benchRAM(b)
	b.SetBytes(int64(len(ram)))
	for b.Loop() {
		buf := Buffer{b: make([]byte, 0, len(ram)+2*PageSize+64<<10)}
		w := NewWriter(&buf)
		if _, err := w.Pages(ram); err != nil {
			b.Fatal(err)
		}
		if err := w.Commit(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpen opens a 256 MiB image (in the page cache) with full page
// verification and with LazyPages.
func BenchmarkOpen(b *testing.B) {
	ram := benchRAM(b)
	path := filepath.Join(b.TempDir(), "bench.ckpt")
	w, err := Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w.Pages(ram)
	if err := w.Commit(); err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		opts []Option
	}{
		{"verify", nil},
		{"lazy", []Option{LazyPages()}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(ram)))
			for b.Loop() {
				img, err := Open(path, bc.opts...)
				if err != nil {
					b.Fatal(err)
				}
				img.Close()
			}
		})
	}
}

// BenchmarkCRC32C is the checksum alone, on one core, for reference.
func BenchmarkCRC32C(b *testing.B) {
	ram := benchRAM(b)
	b.SetBytes(int64(len(ram)))
	for b.Loop() {
		crc32c(ram)
	}
}

// BenchmarkPieceSize is a tuning aid: buffered writes of 256 MiB in one
// Pages call with different piece sizes.
func BenchmarkPieceSize(b *testing.B) {
	ram := benchRAM(b)
	dir := b.TempDir()
	defer func(old int) { pieceBuffered = old }(pieceBuffered)
	for _, piece := range []int{512 << 10, 1 << 20, 2 << 20, 4 << 20, 8 << 20, 256 << 20} {
		b.Run(humanBytes(uint64(piece)), func(b *testing.B) {
			pieceBuffered = piece
			b.SetBytes(int64(len(ram)))
			for b.Loop() {
				path := filepath.Join(dir, "bench.ckpt")
				w, err := Create(path)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := w.Pages(ram); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				w.Abort()
				b.StartTimer()
			}
		})
	}
}
