package kernel

import (
	"fmt"

	"github.com/emuckpt/emuckpt/guestmm"
)

// Incremental checkpoints (CheckpointConfig.Incremental). After an image
// is written, the kernel tracks the frames of guest RAM written from then
// on: the guest's writes in KVM's dirty page log (vmm.Machine.
// HarvestDirty), the VMM's own in guestmm.Frames.TakeWritten. The next
// snapshot stores only the pages whose frame was written since: a page
// whose frame was not is, byte for byte, the page the previous image
// holds for that frame, so the snapshot names it there (Snapshot.Parent)
// instead of storing it. Pages are matched by frame, not by address:
// memory that moved (mremap), was shared by fork or changed its VMA
// keeps its frame and its bytes. A frame freed and handed out again is
// written (Alloc marks it), so it is never taken for the page it held.
//
// Writes are tracked from the first image written on; a checkpoint that
// fails keeps what was tracked, so the next one is a delta against the
// last image that was written.
//
// Why KVM's log and not a userfaultfd in write-protect mode with
// UFFD_FEATURE_WP_ASYNC and PAGEMAP_SCAN, which would see the guest's and
// the VMM's writes alike: guest RAM is MADV_HUGEPAGE, and PAGEMAP_SCAN
// reports a written huge page as 2 MiB written (1 % of 256 MiB rewritten
// at random touches nearly every 2 MiB page), while KVM's log is per
// 4 KiB page (a slot that logs is mapped in 4 KiB pages); and a range has
// one userfaultfd, which the restore's background fill (missing mode)
// and background checkpoints (synchronous write-protect) already use.
// The VMM's writes all go through guestmm, which marks them.

// incremental is the tracking state of incremental checkpoints.
type incremental struct {
	// prev says, by frame index, what the last image holds for each
	// frame: 0 nothing, prevZero a zero page (counted, not stored), i+2
	// page i of its page data. nil: no image yet, the next is full.
	prev []uint32
	// written is the frames written since that image.
	written *guestmm.WriteSet
	// spare is a table like prev to build the next one in (reused: a
	// fresh one costs a host page fault per 4 KiB), and pages the
	// number of pages of the last image (to size the next one's lists).
	spare []uint32
	pages int
	// sparePages and spareParent are the lists of the snapshot before,
	// to be filled again (Save is done with them when it returns).
	sparePages, spareParent []uint64
}

// trackFromImage makes the image a kernel was just restored from the
// base of its first delta (CheckpointConfig.FromImage): page i of the
// image is in frame frames[i], unchanged until the guest
// or the VMM writes it (the restore's background fill puts it there
// through the userfaultfd, which is no write of either). Called at the
// end of restore, before the guest runs: what restore itself wrote (page
// tables, the vDSO's data) is forgotten, and tracking starts here.
func (k *Kernel) trackFromImage(st *State, frames []uint64) error {
	cc := &k.cfg.Checkpoint
	if !cc.Incremental || !cc.FromImage {
		return nil
	}
	in := &k.ckpt.incr
	start, end := k.frames.Range()
	prev := make([]uint32, (end-start)/guestmm.PageSize)
	for i, pa := range frames {
		if k.frames.Contains(pa) {
			prev[(pa-start)/guestmm.PageSize] = uint32(i + 2)
		}
	}
	k.frames.TakeWritten()
	if err := k.m.SetDirtyLogging(true); err != nil {
		return fmt.Errorf("turning on KVM's dirty page log: %w", err)
	}
	in.prev, in.written, in.pages = prev, nil, int(st.PageCount)
	return nil
}

const prevZero = 1

// harvestWrites adds the writes since the last call to k.ckpt.incr.written
// (the vCPUs are stopped).
func (k *Kernel) harvestWrites() error {
	in := &k.ckpt.incr
	ws := k.frames.TakeWritten()
	if k.m.DirtyLogging() {
		if err := k.m.HarvestDirty(ws.Add); err != nil {
			in.prev = nil // writes may be lost: the next image is full
			return err
		}
	}
	if in.written == nil {
		in.written = ws
	} else {
		in.written.Or(ws)
	}
	return nil
}

// commitIncremental makes snap, just written, the base of the next
// delta, and turns on the tracking of guest writes if it is not yet.
func (k *Kernel) commitIncremental(snap *Snapshot) error {
	in := &k.ckpt.incr
	in.spare = in.prev
	in.prev, in.written, in.pages = snap.next, nil, len(snap.Pages)
	in.sparePages, in.spareParent = snap.Pages[:0], snap.Parent[:0]
	snap.next = nil
	if !k.m.DirtyLogging() {
		if err := k.m.SetDirtyLogging(true); err != nil {
			in.prev = nil
			return fmt.Errorf("turning on KVM's dirty page log: %w", err)
		}
	}
	return nil
}

// deltaState is what a snapshot needs to be a delta: the tables of the
// previous image and the frames written since, and the table it builds
// for the next one.
type deltaState struct {
	frames  *guestmm.Frames
	start   uint64
	prev    []uint32 // nil: a full snapshot that still builds next
	written *guestmm.WriteSet
}

// frame returns the index of the frame at pa.
func (d *deltaState) frame(pa uint64) uint64 { return (pa - d.start) / guestmm.PageSize }

// tracks says whether pa is a frame the tables cover (every page an
// image stores is one; anything else is stored as in a full snapshot).
func (d *deltaState) tracks(pa uint64) bool {
	return d != nil && d.frames.Contains(pa)
}

// isZero reads whether the frame at pa is all zeros, and records a zero
// one for the next delta.
func (ms *memorySnapshot) isZero(pa uint64) bool {
	zero := isZeroPage(ms.snap.Mem[pa : pa+guestmm.PageSize])
	if d := ms.delta; zero && d.tracks(pa) {
		ms.snap.next[d.frame(pa)] = prevZero
	}
	return zero
}

// knownZero says whether the page at pa, with refs references, of a VMA
// that is shared memory (shm) or not, is to be counted as a zero page,
// when that is known without reading it (ok). A page of shared memory
// that several mappings hold (processes after fork) must stay one page:
// it is never counted. And in a delta, a frame not written since the
// previous image, which held it, is zero or not as it was there: that
// is most pages of a delta.
func (ms *memorySnapshot) knownZero(pa uint64, refs int32, shm bool) (zero, ok bool) {
	if shm && refs > 1 {
		return false, true
	}
	d := ms.delta
	if d == nil || d.prev == nil || !d.tracks(pa) || d.written.Has(pa) {
		return false, false
	}
	switch p := d.prev[d.frame(pa)]; {
	case p == prevZero:
		ms.snap.next[d.frame(pa)] = prevZero
		return true, true
	case p > prevZero:
		return false, true
	}
	return false, false
}

// addPage appends the frame at pa to the snapshot's pages and returns
// its index; in a delta, a frame not written since the previous image
// names that image's page.
func (ms *memorySnapshot) addPage(pa uint64) uint64 {
	idx := uint64(len(ms.snap.Pages))
	ms.snap.Pages = append(ms.snap.Pages, pa)
	d := ms.delta
	if d == nil {
		return idx
	}
	from := uint64(0)
	if d.tracks(pa) {
		f := d.frame(pa)
		if p := d.prev; p != nil && p[f] > prevZero && !d.written.Has(pa) {
			from = uint64(p[f]-2) + 1
		}
		ms.snap.next[f] = uint32(idx + 2)
	}
	if d.prev != nil {
		ms.snap.Parent = append(ms.snap.Parent, from)
	}
	return idx
}

// newDelta returns the delta state of a snapshot: nil when the run takes
// no incremental checkpoints.
func (k *Kernel) newDelta(snap *Snapshot) *deltaState {
	if !k.cfg.Checkpoint.Incremental {
		return nil
	}
	start, end := k.frames.Range()
	in := &k.ckpt.incr
	d := &deltaState{frames: k.frames, start: start, prev: in.prev, written: in.written} // nil written: none
	n := int((end - start) / guestmm.PageSize)
	if len(in.spare) == n {
		snap.next, in.spare = in.spare, nil
		clear(snap.next)
	} else {
		snap.next = make([]uint32, n)
	}
	// Lists as long as the last image's and then some, reused from the
	// snapshot before where they are (fresh ones cost host page faults).
	want := in.pages + in.pages/8
	snap.Pages = in.sparePages
	if cap(snap.Pages) < want {
		snap.Pages = make([]uint64, 0, want)
	}
	if d.prev != nil {
		snap.Parent = in.spareParent
		if cap(snap.Parent) < want {
			snap.Parent = make([]uint64, 0, want)
		}
	}
	in.sparePages, in.spareParent = nil, nil
	return d
}
