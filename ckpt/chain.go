package ckpt

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/emuckpt/emuckpt/ckpt/image"
	"github.com/emuckpt/emuckpt/guestmm"
	"github.com/emuckpt/emuckpt/kernel"
)

// Incremental images (docs/FORMAT.md, "Incremental images"): an image
// with the container flag image.FlagParent stores only some of its pages;
// a parent record names the image that holds the others (its parent) and
// says which pages come from there. The parent may itself be a delta: the
// images form a chain that ends at a full image.

// RecParent is the record type of the parent record (JSON ParentRef),
// exactly one in an image with image.FlagParent, none in another.
const RecParent uint32 = 2

// MaxChainDepth bounds the number of parents a chain may have.
const MaxChainDepth = 64

// ParentRef is the parent record.
type ParentRef struct {
	// Path is the parent's path, relative to the directory of this image
	// (absolute where no relative path leads there).
	Path string `json:"path"`
	// HeaderSHA256 is the SHA-256 of the parent's header (hex): it
	// covers the parent's metadata and page checksums, so it identifies
	// that very image.
	HeaderSHA256 string `json:"header_sha256"`
	// PageCount is the parent's page_count.
	PageCount uint64 `json:"page_count"`
	// Depth is the number of images below this one: 1 when the parent is
	// a full image.
	Depth int `json:"depth"`
	// Runs are the pages of this image (state page indexes) that the
	// parent holds, in increasing Index, not overlapping. The other
	// pages are this image's page data, in order. In the record they
	// are encoded compactly (see parentRecordJSON).
	Runs []ParentRun `json:"-"`
}

// parentRecordJSON is the parent record as stored: the runs as one flat
// list of numbers, three per run: the pages of the image's own page data
// between the end of the run before (0 for the first) and this run, the
// run's length, and the change of its shift (parent_index − index) from
// the run before's (from 0 for the first). A delta's runs mostly keep
// their shift, so a run costs a few bytes: 655 runs take about 5 KB
// where objects would take 30 KB.
type parentRecordJSON struct {
	Path         string  `json:"path"`
	HeaderSHA256 string  `json:"header_sha256"`
	PageCount    uint64  `json:"page_count"`
	Depth        int     `json:"depth"`
	Runs         []int64 `json:"runs"`
}

// MarshalJSON encodes the record with its runs compact.
func (r ParentRef) MarshalJSON() ([]byte, error) {
	enc := parentRecordJSON{Path: r.Path, HeaderSHA256: r.HeaderSHA256, PageCount: r.PageCount, Depth: r.Depth,
		Runs: make([]int64, 0, 3*len(r.Runs))}
	var end uint64
	var shift int64
	for _, run := range r.Runs {
		s := int64(run.ParentIndex) - int64(run.Index)
		enc.Runs = append(enc.Runs, int64(run.Index-end), int64(run.Count), s-shift)
		end, shift = run.Index+run.Count, s
	}
	return json.Marshal(enc)
}

// UnmarshalJSON decodes the record. Runs that do not add up (negative
// or overflowing indexes) are refused; checkRuns checks the rest.
func (r *ParentRef) UnmarshalJSON(b []byte) error {
	var dec parentRecordJSON
	if err := json.Unmarshal(b, &dec); err != nil {
		return err
	}
	if len(dec.Runs)%3 != 0 {
		return fmt.Errorf("runs: %d numbers, not three per run", len(dec.Runs))
	}
	*r = ParentRef{Path: dec.Path, HeaderSHA256: dec.HeaderSHA256, PageCount: dec.PageCount, Depth: dec.Depth}
	r.Runs = make([]ParentRun, 0, len(dec.Runs)/3)
	var end, shift int64
	for k := 0; k < len(dec.Runs); k += 3 {
		skip, count, ds := dec.Runs[k], dec.Runs[k+1], dec.Runs[k+2]
		index := end + skip
		shift += ds
		parent := index + shift
		if skip < 0 || count < 1 || index < end || parent < 0 || count > math.MaxInt64-index || count > math.MaxInt64-parent {
			return fmt.Errorf("runs[%d]: %d, %d, %d do not make a run", k/3, skip, count, ds)
		}
		r.Runs = append(r.Runs, ParentRun{Index: uint64(index), Count: uint64(count), ParentIndex: uint64(parent)})
		end = index + count
	}
	return nil
}

// ParentRun is Count pages from page Index of this image on, which are
// pages ParentIndex... of the parent.
type ParentRun struct {
	Index       uint64 `json:"index"`
	Count       uint64 `json:"count"`
	ParentIndex uint64 `json:"parent_index"`
}

// Written identifies an image that was written, for a delta to name it as
// its parent.
type Written struct {
	Path       string // as the writer was given it
	ParentPath string // the parent's, for a delta
	Digest     [32]byte
	PageCount  uint64 // page_count
	Depth      int    // parents below it
}

// WriteImage writes snap to path as Write does. A delta snapshot
// (snap.Delta) is written as a delta against parent, the image written
// from the snapshot before it, and needs one; a full snapshot ignores
// parent. It returns what the next delta needs to name the new image.
//
// A delta whose chain would grow deeper than MaxChainDepth is written as
// a full image instead (a delta snapshot has all its pages in guest RAM;
// the next delta can still be one against it).
func WriteImage(path string, snap *kernel.Snapshot, parent *Written) (*Written, error) {
	if snap.Delta() && parent == nil {
		return nil, fmt.Errorf("%s: a delta checkpoint needs the image before it", path)
	}
	if !snap.Delta() || parent.Depth+1 > MaxChainDepth {
		parent = nil
	}
	w, err := image.Create(path, image.DirectIO())
	if err != nil {
		return nil, err
	}
	depth := 0
	var ref []byte
	if parent != nil {
		if ref, err = parentRecord(path, snap, parent); err != nil {
			w.Abort()
			return nil, err
		}
		depth = parent.Depth + 1
	}
	if err := writeImage(w, snap, ref); err != nil {
		return nil, err
	}
	out := &Written{Path: path, Digest: w.HeaderDigest(), PageCount: snap.State.PageCount, Depth: depth}
	if parent != nil {
		out.ParentPath = parent.Path
	}
	return out, nil
}

// parentRecord encodes the parent record of snap, a delta against parent.
func parentRecord(path string, snap *kernel.Snapshot, parent *Written) ([]byte, error) {
	// Named relative to the image's directory, so that a chain moved or
	// copied together still finds its parents.
	rel, err := filepath.Abs(parent.Path)
	if err != nil {
		return nil, err
	}
	if dir, err := filepath.Abs(filepath.Dir(path)); err == nil {
		if r, err := filepath.Rel(dir, rel); err == nil {
			rel = r
		}
	}
	return encodeParent(rel, snap, parent)
}

// encodeParent encodes the parent record of snap, a delta against
// parent, which is at path (relative to the image; "" for an image in
// memory).
func encodeParent(path string, snap *kernel.Snapshot, parent *Written) ([]byte, error) {
	ref := ParentRef{Path: path, HeaderSHA256: hex.EncodeToString(parent.Digest[:]), PageCount: parent.PageCount, Depth: parent.Depth + 1,
		Runs: parentRuns(snap)}
	return json.Marshal(ref)
}

// parentRuns are the runs of snap's pages that its parent holds.
func parentRuns(snap *kernel.Snapshot) []ParentRun {
	var runs []ParentRun
	for i, p := range snap.Parent {
		if p == 0 {
			continue
		}
		if n := len(runs); n > 0 {
			last := &runs[n-1]
			if last.Index+last.Count == uint64(i) && last.ParentIndex+last.Count == p-1 {
				last.Count++
				continue
			}
		}
		runs = append(runs, ParentRun{Index: uint64(i), Count: 1, ParentIndex: p - 1})
	}
	return runs
}

// chain is the parent of a delta image, and the map of its pages.
type chain struct {
	ref    ParentRef
	parent *Image
	// before[k] is the number of parent pages in Runs[:k].
	before []uint64
	// own is the image's own page data, read through a cache of a few
	// chunks: a delta's own pages are scattered between parent runs.
	own     cachedPages
	parents cachedPages
}

// cachedPages reads pages of an image a chunk at a time, keeping the
// last cachedChunks chunks read: reads of parts of one chunk read and
// check it once, also when the fill workers of a restore (one per core)
// read parts of their chunks in turn.
type cachedPages struct {
	mu     sync.Mutex
	read   func(dst []byte, first uint64) error
	count  uint64 // pages of the source
	chunk  uint64 // pages per chunk
	cached [cachedChunks]struct {
		at  uint64 // the chunk's first page
		buf []byte // nil: nothing cached
	}
	next int // the entry to replace next
}

// cachedChunks is how many chunks a cachedPages keeps.
const cachedChunks = 4

func (c *cachedPages) readPages(dst []byte, first uint64) error {
	n := uint64(len(dst)) / guestmm.PageSize
	if n >= c.chunk {
		return c.read(dst, first) // big reads check their chunks in parallel
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for n > 0 {
		cf := first / c.chunk * c.chunk
		cn := min(c.chunk, c.count-cf)
		var buf []byte
		for i := range c.cached {
			if e := &c.cached[i]; e.buf != nil && e.at == cf && uint64(len(e.buf)) == cn*guestmm.PageSize {
				buf = e.buf
			}
		}
		if buf == nil {
			buf = make([]byte, cn*guestmm.PageSize)
			if err := c.read(buf, cf); err != nil {
				return err
			}
			e := &c.cached[c.next]
			e.at, e.buf = cf, buf
			c.next = (c.next + 1) % cachedChunks
		}
		k := min(n, cf+cn-first)
		copy(dst, buf[(first-cf)*guestmm.PageSize:(first-cf+k)*guestmm.PageSize])
		dst, first, n = dst[k*guestmm.PageSize:], first+k, n-k
	}
	return nil
}

// readPages copies pages first... of the delta's state into dst: its own
// page data and, for the runs its parent holds, the parent's pages.
func (ch *chain) readPages(dst []byte, first uint64) error {
	runs := ch.ref.Runs
	for len(dst) > 0 {
		n := uint64(len(dst)) / guestmm.PageSize
		// The first run that ends after page first.
		k := sort.Search(len(runs), func(k int) bool { return runs[k].Index+runs[k].Count > first })
		if k < len(runs) && runs[k].Index <= first {
			r := runs[k]
			m := min(n, r.Index+r.Count-first)
			if err := ch.parents.readPages(dst[:m*guestmm.PageSize], r.ParentIndex+first-r.Index); err != nil {
				return err
			}
			dst, first = dst[m*guestmm.PageSize:], first+m
			continue
		}
		m := n
		if k < len(runs) {
			m = min(n, runs[k].Index-first)
		}
		if err := ch.own.readPages(dst[:m*guestmm.PageSize], first-ch.before[k]); err != nil {
			return err
		}
		dst, first = dst[m*guestmm.PageSize:], first+m
	}
	return nil
}

// parentRef reads and checks the parent record of img, a delta whose
// state is st.
func parentRef(img *image.Image, st *kernel.State) (*ParentRef, error) {
	var ref *ParentRef
	for _, r := range img.Records() {
		if r.Type != RecParent {
			continue
		}
		if ref != nil {
			return nil, fmt.Errorf("%w: two parent records", ErrImage)
		}
		ref = new(ParentRef)
		if err := json.Unmarshal(r.Payload, ref); err != nil {
			return nil, fmt.Errorf("%w: parent record: %v", ErrImage, err)
		}
	}
	if ref == nil {
		return nil, fmt.Errorf("%w: the image is a delta (format flag %#x) but names no parent", ErrImage, image.FlagParent)
	}
	if err := checkRuns(ref, st.PageCount, img.NumPages()); err != nil {
		return nil, fmt.Errorf("%w: parent record: %v", ErrImage, err)
	}
	if ref.Depth < 1 || ref.Depth > MaxChainDepth {
		return nil, fmt.Errorf("%w: the chain is %d images deep, more than the %d this emuckpt follows", ErrImage, ref.Depth+1, MaxChainDepth+1)
	}
	return ref, nil
}

// openChain opens the parent of img (at path), a delta, and checks the
// link: the parent record, the parent's identity, its pages. seen holds
// the files of the images above it (a cycle is refused).
func openChain(path string, img *image.Image, st *kernel.State, seen map[[2]uint64]bool) (*chain, error) {
	ref, err := parentRef(img, st)
	if err != nil {
		return nil, err
	}
	ppath := ref.Path
	if !filepath.IsAbs(ppath) {
		ppath = filepath.Join(filepath.Dir(path), ppath)
	}
	link := fmt.Sprintf("its parent %s (depth %d)", ppath, ref.Depth)
	parent, err := openImage(ppath, seen)
	if err != nil {
		var pe *os.PathError
		if !errors.Is(err, ErrImage) && errors.As(err, &pe) {
			return nil, fmt.Errorf("%w: %s cannot be opened: %v", ErrImage, link, pe.Err)
		}
		if !errors.Is(err, ErrImage) {
			return nil, fmt.Errorf("%w: %s: %v", ErrImage, link, err)
		}
		return nil, fmt.Errorf("%w: %s: %s", ErrImage, link, strings.TrimPrefix(err.Error(), ErrImage.Error()+": "))
	}
	ch, err := linkChain(img, ref, parent, link)
	if err != nil {
		parent.Close()
	}
	return ch, err
}

// linkChain checks parent against the parent record ref of img and
// returns the chain that reads img's pages through it; it owns parent.
func linkChain(img *image.Image, ref *ParentRef, parent *Image, link string) (*chain, error) {
	if got := parent.img.HeaderDigest(); hex.EncodeToString(got[:]) != ref.HeaderSHA256 {
		return nil, fmt.Errorf("%w: %s is not the image this one was written against (header SHA-256 %x, the image names %s): was it replaced by a later checkpoint?", ErrImage, link, got, ref.HeaderSHA256)
	}
	if parent.State.PageCount != ref.PageCount {
		return nil, fmt.Errorf("%w: %s holds %d pages, the image says %d", ErrImage, link, parent.State.PageCount, ref.PageCount)
	}
	if d := parent.depth(); d != ref.Depth-1 {
		return nil, fmt.Errorf("%w: %s has %d parents, the image says %d", ErrImage, link, d, ref.Depth-1)
	}
	return newChain(ref, img, parent), nil
}

// newChain returns the chain that reads img's pages through parent, as
// its parent record ref says; it owns parent.
func newChain(ref *ParentRef, img *image.Image, parent *Image) *chain {
	ch := &chain{ref: *ref, parent: parent}
	ch.before = make([]uint64, len(ref.Runs)+1)
	for k, r := range ref.Runs {
		ch.before[k+1] = ch.before[k] + r.Count
	}
	chunk := uint64(img.Info().ChunkPages)
	ch.own = cachedPages{read: img.ReadPages, count: img.NumPages(), chunk: chunk}
	ch.parents = cachedPages{read: parent.ReadPages, count: parent.State.PageCount, chunk: chunk}
	return ch
}

// WriteBufferDelta encodes snap as an in-memory image, as WriteBuffer
// does, but a delta snapshot as a delta against parent, the image of the
// snapshot before it (from WriteBufferDelta or WriteBuffer, through
// ParseDelta), unless the chain would then be deeper than maxDepth: a
// full image then. A pass that keeps many images in memory (verify)
// stores each point's written pages only.
func WriteBufferDelta(snap *kernel.Snapshot, parent *Image, maxDepth int) ([]byte, error) {
	if !snap.Delta() || parent == nil || parent.depth()+1 > min(maxDepth, MaxChainDepth) {
		return WriteBuffer(snap)
	}
	rec, err := encodeParent("", snap, parent.AsParent())
	if err != nil {
		return nil, err
	}
	var buf image.Buffer
	if err := writeImage(image.NewWriter(&buf), snap, rec); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ParseDelta reads an in-memory image as Parse does; a delta is read
// through parent, which must be the image it was written against (its
// header is checked): the Image returned holds a handle of its own on
// it (parent may be closed).
func ParseDelta(b []byte, parent *Image) (*Image, error) {
	img, err := image.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrImage, err)
	}
	i, err := fromImage(img)
	if err != nil || img.Info().Flags&image.FlagParent == 0 {
		return i, err
	}
	ref, err := parentRef(img, i.State)
	if err != nil {
		img.Close()
		return nil, err
	}
	if parent == nil {
		img.Close()
		return nil, fmt.Errorf("%w: the image is a delta and no parent was given", ErrImage)
	}
	own, err := parent.clone()
	if err != nil {
		img.Close()
		return nil, err
	}
	if i.chain, err = linkChain(img, ref, own, "its parent"); err != nil {
		own.Close()
		img.Close()
		return nil, err
	}
	return i, nil
}

// Bytes returns i as one full in-memory image: its state and every page,
// read through its chain (to keep a delta of an in-memory chain).
func (i *Image) Bytes() ([]byte, error) {
	meta, err := json.Marshal(i.State)
	if err != nil {
		return nil, err
	}
	var buf image.Buffer
	w := image.NewWriter(&buf)
	if err := w.Record(RecState, meta); err != nil {
		return nil, err
	}
	chunk := make([]byte, 256*guestmm.PageSize)
	for first := uint64(0); first < i.State.PageCount; first += 256 {
		b := chunk[:min(256, i.State.PageCount-first)*guestmm.PageSize]
		if err := i.ReadPages(b, first); err != nil {
			w.Abort()
			return nil, err
		}
		if _, err := w.Pages(b); err != nil {
			return nil, err
		}
	}
	if err := w.Commit(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// checkRuns checks the runs of a parent record against the image: in
// order, inside its pages and the parent's, and leaving exactly the pages
// its page data holds.
func checkRuns(ref *ParentRef, pages, stored uint64) error {
	var next, from uint64
	for k, r := range ref.Runs {
		switch {
		case r.Count == 0:
			return fmt.Errorf("runs[%d] is empty", k)
		case r.Index < next:
			return fmt.Errorf("runs[%d] at page %d overlaps or precedes the run before it", k, r.Index)
		case r.Index > pages || r.Count > pages-r.Index:
			return fmt.Errorf("runs[%d] pages %d+%d are outside the image's %d pages", k, r.Index, r.Count, pages)
		case r.ParentIndex > ref.PageCount || r.Count > ref.PageCount-r.ParentIndex:
			return fmt.Errorf("runs[%d] parent pages %d+%d are outside the parent's %d pages", k, r.ParentIndex, r.Count, ref.PageCount)
		}
		next = r.Index + r.Count
		from += r.Count
	}
	if pages-from != stored {
		return fmt.Errorf("%d of the %d pages come from the parent, but the page data holds %d, not %d", from, pages, stored, pages-from)
	}
	return nil
}

// fileID is the device and inode of an open image file.
func fileID(path string) ([2]uint64, bool) {
	fi, err := os.Stat(path)
	if err != nil {
		return [2]uint64{}, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return [2]uint64{}, false
	}
	return [2]uint64{uint64(st.Dev), st.Ino}, true
}

// AsParent returns what a delta written against i needs to name it: a
// run restored from i writes its first checkpoint as a delta against it
// (kernel.CheckpointConfig.FromImage).
func (i *Image) AsParent() *Written {
	return &Written{Path: i.path, Digest: i.img.HeaderDigest(), PageCount: i.State.PageCount, Depth: i.depth()}
}

// depth is the number of parents of i.
func (i *Image) depth() int {
	if i.chain == nil {
		return 0
	}
	return i.chain.ref.Depth
}

// Link describes one image of a chain, for inspect.
type Link struct {
	Path         string // as opened
	HeaderSHA256 string
	PageCount    uint64 // page_count of its state
	StoredPages  uint64 // pages of its own page data
	FromParent   uint64 // pages it takes from its parent
	Size         int64  // bytes of the file
}

// Chain returns the images of i's chain, i first, its full image last.
func (i *Image) Chain() []Link {
	var links []Link
	for cur := i; cur != nil; {
		d := cur.img.HeaderDigest()
		l := Link{Path: cur.path, HeaderSHA256: hex.EncodeToString(d[:]), PageCount: cur.State.PageCount,
			StoredPages: cur.img.NumPages(), Size: cur.img.Info().Size}
		l.FromParent = l.PageCount - l.StoredPages
		links = append(links, l)
		if cur.chain == nil {
			break
		}
		cur = cur.chain.parent
	}
	return links
}
