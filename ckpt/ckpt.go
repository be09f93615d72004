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
//
// snap must be a full snapshot; WriteImage writes deltas too.
func Write(path string, snap *kernel.Snapshot) error {
	_, err := WriteImage(path, snap, nil)
	return err
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
//
// A delta snapshot is written as a full image (see WriteBufferDelta).
func WriteBuffer(snap *kernel.Snapshot) ([]byte, error) {
	var buf image.Buffer
	if err := writeImage(image.NewWriter(&buf), snap, nil); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeImage writes snap to w and commits it: a delta naming its parent
// when parentRec (a RecParent record) is set, else a full image. On an
// error w is aborted.
func writeImage(w *image.Writer, snap *kernel.Snapshot, parentRec []byte) error {
	err := func() error {
		if parentRec != nil {
			if err := w.SetFlags(image.FlagParent); err != nil {
				return err
			}
			if err := w.Record(RecParent, parentRec); err != nil {
				return err
			}
		}
		return encode(w, snap, parentRec != nil)
	}()
	if err != nil {
		w.Abort()
		return err
	}
	return w.Commit()
}

// encode writes snap's records and pages to w: as a delta (only the pages
// its parent does not hold) when delta, else all of them. A snapshot
// taken while the guest runs on (Guard set) is always whole: incremental
// checkpoints are not written in the background.
func encode(w *image.Writer, snap *kernel.Snapshot, delta bool) error {
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
	// A delta stores only the pages its parent does not hold.
	pages := snap.Pages
	if delta {
		pages = make([]uint64, 0, len(pages)/8)
		for i, pa := range snap.Pages {
			if snap.Parent[i] == 0 {
				pages = append(pages, pa)
			}
		}
	}
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

// Image is a checkpoint opened for restore or inspection: for a delta,
// with its chain of parents.
type Image struct {
	img   *image.Image
	path  string
	chain *chain // the parent of a delta; nil for a full image
	State *kernel.State
}

// Open opens the image at path and checks its header, its metadata and
// the State it holds (see kernel.State.Validate): an image that fails any
// check is refused before anything runs. The page data, whose check costs
// O(bytes), is checked as Restore copies it into guest RAM, or by Verify.
// A file that cannot be opened at all (it does not exist, no permission)
// is the operating system's error (*fs.PathError), not ErrImage.
//
// A delta (docs/FORMAT.md, "Incremental images") is opened with its
// chain of parents, each checked as it is and against the image that
// names it (its header's SHA-256, its pages); a link that fails is
// ErrImage, naming it.
func Open(path string) (*Image, error) {
	return openImage(path, map[[2]uint64]bool{})
}

func openImage(path string, seen map[[2]uint64]bool) (*Image, error) {
	if id, ok := fileID(path); ok {
		if seen[id] {
			return nil, fmt.Errorf("%w: %s is an image of the chain already: the chain is a cycle", ErrImage, path)
		}
		seen[id] = true
	}
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
	i, err := fromImage(img)
	if err != nil {
		return nil, err
	}
	i.path = path
	if img.Info().Flags&image.FlagParent != 0 {
		if i.chain, err = openChain(path, img, i.State, seen); err != nil {
			img.Close()
			return nil, err
		}
	}
	return i, nil
}

// Parse reads an in-memory image, checking everything at once.
func Parse(b []byte) (*Image, error) {
	img, err := image.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrImage, err)
	}
	if img.Info().Flags&image.FlagParent != 0 {
		return nil, fmt.Errorf("%w: an image in memory cannot be a delta: its parent is a file", ErrImage)
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
	if img.Info().Flags&image.FlagParent == 0 && st.PageCount != img.NumPages() {
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
	if i.chain != nil {
		return i.chain.parent.Verify()
	}
	return nil
}

// Info is the container's layout.
func (i *Image) Info() image.Info { return i.img.Info() }

// ReadPages copies pages from page first on into dst and checks them
// against the image's checksums (a kernel.PageSource).
//
// For a delta, the pages come from the images of its chain that hold
// them, each checked against its own image's checksums.
func (i *Image) ReadPages(dst []byte, first uint64) error {
	if i.chain != nil {
		return i.chain.readPages(dst, first)
	}
	if err := i.img.ReadPages(dst, first); err != nil {
		return fmt.Errorf("%w: %v", ErrImage, err)
	}
	return nil
}

// Close releases the image (and its parents). A kernel restored from it
// does not need it.
func (i *Image) Close() error {
	if i.chain != nil {
		i.chain.parent.Close()
	}
	return i.img.Close()
}

// clone returns a second Image of the same chain with descriptors of its
// own (see image.Image.Clone).
func (i *Image) clone() (*Image, error) {
	own, err := i.img.Clone()
	if err != nil {
		return nil, err
	}
	c := &Image{img: own, path: i.path, State: i.State}
	if i.chain != nil {
		parent, err := i.chain.parent.clone()
		if err != nil {
			own.Close()
			return nil, err
		}
		c.chain = newChain(&i.chain.ref, own, parent)
	}
	return c, nil
}

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
	own, err := i.clone()
	if err != nil {
		return nil, err
	}
	k, err := kernel.Restore(cfg, i.State, own)
	if err != nil {
		own.Close()
	}
	return k, err
}
