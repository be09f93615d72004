package ckpt

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/emuckpt/emuckpt/ckpt/image"
	"github.com/emuckpt/emuckpt/guestmm"
	"github.com/emuckpt/emuckpt/kernel"
)

// RecState is the record type of the kernel State (JSON).
const RecState uint32 = 1

// ErrImage wraps every error that means the image itself is unusable
// (not an image, truncated, corrupt, another version, inconsistent).
var ErrImage = errors.New("bad checkpoint image")

// Write writes snap to path atomically: a file without a name in the same
// directory (O_TMPFILE), fsync, link, rename (see image.Create). A failure
// leaves path as it was, and no temporary file.
//
// Page data goes out with direct I/O where the file system allows it:
// straight from guest RAM to the device, with no copy into the page cache
// for fsync to write back afterwards, in vectored writes of many runs of
// frames each, several in flight (image.Writer.PageRuns). Measured here
// for 256 MiB, that halves the time to a durable image (about 135 ms
// against 290 ms), and the whole checkpoint takes 1.05-1.2 times a bare
// O_DIRECT write of the same bytes (BenchmarkCheckpoint256).
func Write(path string, snap *kernel.Snapshot) error {
	w, err := image.Create(path, image.DirectIO())
	if err != nil {
		return err
	}
	if err := encode(w, snap); err != nil {
		w.Abort()
		return err
	}
	return w.Commit()
}

// CheckDestination tells whether Write can put images at path (see
// image.CheckDestination): call it before the program runs, so that a
// mistake costs nothing. It removes stale temporary files of earlier
// writers of path that died, and returns their paths.
func CheckDestination(path string) (removed []string, err error) {
	return image.CheckDestination(path)
}

// WriteBuffer encodes snap as an in-memory image (for restores that need
// no file, such as a verify run).
func WriteBuffer(snap *kernel.Snapshot) ([]byte, error) {
	var buf image.Buffer
	w := image.NewWriter(&buf)
	if err := encode(w, snap); err != nil {
		w.Abort()
		return nil, err
	}
	if err := w.Commit(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func encode(w *image.Writer, snap *kernel.Snapshot) error {
	meta := snap.StateJSON
	if meta == nil {
		var err error
		if meta, err = json.Marshal(snap.State); err != nil {
			return err
		}
	}
	if err := w.Record(RecState, meta); err != nil {
		return err
	}
	if snap.Guard != nil {
		return encodeGuarded(w, snap)
	}
	// Pages go out in runs of physically contiguous frames, all runs in
	// one call: the writer writes many runs per system call, several
	// calls in flight (guest RAM does not change until Write returns).
	pages := snap.Pages
	var runs [][]byte
	for i := 0; i < len(pages); {
		j := i + 1
		for j < len(pages) && pages[j] == pages[j-1]+guestmm.PageSize {
			j++
		}
		runs = append(runs, snap.Mem[pages[i]:pages[j-1]+guestmm.PageSize])
		i = j
	}
	if _, err := w.PageRuns(runs); err != nil {
		return err
	}
	return nil
}

// guardBatch is how many pages a background checkpoint holds at a time:
// a guest write to a held page waits until the batch is written.
const guardBatch = 2048

// encodeGuarded writes the page data of a snapshot taken while the guest
// runs on, batch by batch through its guard (see kernel.PageGuard).
func encodeGuarded(w *image.Writer, snap *kernel.Snapshot) error {
	for first := 0; first < len(snap.Pages); first += guardBatch {
		n := min(guardBatch, len(snap.Pages)-first)
		_, err := w.PageRuns(snap.Guard.Hold(first, n))
		snap.Guard.Release(first, n)
		if err != nil {
			return err
		}
	}
	return nil
}

// Image is a checkpoint opened for restore or inspection.
type Image struct {
	img   *image.Image
	State *kernel.State
}

// Open opens the image at path and checks its header, its metadata and
// the State it holds (see kernel.State.Validate): an image that fails any
// check is refused before anything runs. The page data, whose check costs
// O(bytes), is checked as Restore copies it into guest RAM, or by Verify.
// A file that cannot be opened at all (it does not exist, no permission)
// is the operating system's error (*fs.PathError), not ErrImage.
func Open(path string) (*Image, error) {
	img, err := image.Open(path, image.LazyPages())
	var bad *image.Error
	if errors.As(err, &bad) {
		return nil, fmt.Errorf("%w: %v", ErrImage, err)
	}
	if err != nil {
		// The operating system's error (no such file, permission
		// denied): nothing is known about the image yet.
		return nil, err
	}
	return fromImage(img)
}

// Parse reads an in-memory image, checking everything at once.
func Parse(b []byte) (*Image, error) {
	img, err := image.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrImage, err)
	}
	return fromImage(img)
}

// MinStateVersion is the oldest image format whose state this emuckpt
// restores: version 1 images hold one process, in a state record that
// version 2 (process trees) replaced.
const MinStateVersion = 2

func fromImage(img *image.Image) (*Image, error) {
	if v := img.Info().Version; v < MinStateVersion {
		img.Close()
		return nil, fmt.Errorf("%w: format version %d was written by an emuckpt from before process trees; this one restores version %d and later: checkpoint the program again", ErrImage, v, MinStateVersion)
	}
	var st *kernel.State
	for _, r := range img.Records() {
		if r.Type != RecState {
			continue
		}
		if st != nil {
			img.Close()
			return nil, fmt.Errorf("%w: two state records", ErrImage)
		}
		st = new(kernel.State)
		if err := json.Unmarshal(r.Payload, st); err != nil {
			img.Close()
			return nil, fmt.Errorf("%w: state record: %v", ErrImage, err)
		}
	}
	if st == nil {
		img.Close()
		return nil, fmt.Errorf("%w: no state record", ErrImage)
	}
	if st.PageCount != img.NumPages() {
		img.Close()
		return nil, fmt.Errorf("%w: state names %d pages, the image holds %d", ErrImage, st.PageCount, img.NumPages())
	}
	if err := st.Validate(); err != nil {
		img.Close()
		return nil, fmt.Errorf("%w: state record: %v", ErrImage, err)
	}
	return &Image{img: img, State: st}, nil
}

// Verify checks all page data against its checksums (inspect does;
// Restore checks the pages it copies instead).
func (i *Image) Verify() error {
	if err := i.img.VerifyPages(); err != nil {
		return fmt.Errorf("%w: %v", ErrImage, err)
	}
	return nil
}

// Info is the container's layout.
func (i *Image) Info() image.Info { return i.img.Info() }

// ReadPages copies pages from page first on into dst and checks them
// against the image's checksums (a kernel.PageSource).
func (i *Image) ReadPages(dst []byte, first uint64) error {
	if err := i.img.ReadPages(dst, first); err != nil {
		return fmt.Errorf("%w: %v", ErrImage, err)
	}
	return nil
}

// Close releases the image. A kernel restored from it does not need it.
func (i *Image) Close() error { return i.img.Close() }

// Restore builds a kernel from the image. cfg supplies what the image
// does not hold: the program bytes (checked against the image), root,
// standard streams, devices and the device-state policy.
//
// The page data is copied into guest RAM and each chunk's checksum is
// checked on the copy, so the guest runs on exactly the verified bytes.
// The copy goes on in the background after Restore returns, while the
// guest runs (see kernel.PageSource), through a descriptor of its own:
// the Image may be closed, and the file deleted or replaced by a new
// image (rename, as Write does), at once. A file changed in place before
// the copy is done makes the run stop with an error at the first chunk
// whose checksum no longer matches, before the guest sees that chunk.
func (i *Image) Restore(cfg kernel.Config) (*kernel.Kernel, error) {
	own, err := i.img.Clone()
	if err != nil {
		return nil, err
	}
	k, err := kernel.Restore(cfg, i.State, &Image{img: own, State: i.State})
	if err != nil {
		own.Close()
	}
	return k, err
}
