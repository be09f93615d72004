package guestmm

import (
	"errors"
	"io"
	"testing"

	"github.com/stretchr/testify/require"
)

// testRAMBase is where the test frame pool starts; not 0, so that a
// physical address of 0 is never a valid frame by accident.
const testRAMBase = 0x100000

// newTestFrames returns guest RAM of ramPages frames above testRAMBase.
func newTestFrames(tb testing.TB, ramPages int) ([]byte, *Frames) {
	tb.Helper()
	mem := make([]byte, testRAMBase+ramPages*PageSize)
	return mem, NewFrames(mem, testRAMBase, uint64(len(mem)))
}

// newTestAS returns an address space over ramPages frames with the
// default layout.
func newTestAS(tb testing.TB, ramPages int) *AddressSpace {
	tb.Helper()
	mem, frames := newTestFrames(tb, ramPages)
	as, err := NewAddressSpace(mem, frames, Layout{})
	require.NoError(tb, err)
	return as
}

// memFile is an in-memory Backing.
type memFile struct {
	name   string
	data   []byte
	access Prot  // 0: everything allowed
	err    error // returned by ReadAt instead of data when set
	reads  int
}

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	f.reads++
	if f.err != nil {
		return 0, f.err
	}
	if off >= int64(len(f.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *memFile) Name() string { return f.name }

// accessFile is a memFile that reports how it was opened.
type accessFile struct{ memFile }

func (f *accessFile) Access() Prot { return f.access }

// testDevice is a DeviceBacking with an MMIO window.
type testDevice struct {
	base, size uint64
}

func (d *testDevice) ReadAt([]byte, int64) (int, error) { return 0, errors.New("device read") }
func (d *testDevice) Name() string                      { return "/dev/testdev" }
func (d *testDevice) MMIOBase() uint64                  { return d.base }
func (d *testDevice) MMIOSize() uint64                  { return d.size }

// pattern returns n bytes of a recognizable pattern.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}

// mustMmap maps and fails the test on error.
func mustMmap(tb testing.TB, as *AddressSpace, addr, length uint64, prot Prot, flags uint32, b Backing, off uint64) uint64 {
	tb.Helper()
	got, err := as.Mmap(addr, length, prot, flags, b, off)
	require.NoError(tb, err)
	return got
}

// mustFault faults and fails the test unless the fault is resolved.
func mustFault(tb testing.TB, as *AddressSpace, va uint64, code uint64) {
	tb.Helper()
	r := as.HandleFault(va, code)
	require.True(tb, r.Resolved, "fault at %#x code %#x: %+v", va, code, r)
}

// tablePages lists the page-table pages of pt, the root included (once:
// the recursive slot is not followed).
func tablePages(pt *PageTables) []uint64 {
	if pt.destroyed {
		return nil
	}
	var out []uint64
	var walk func(table uint64, level int)
	walk = func(table uint64, level int) {
		out = append(out, table)
		if level == 0 {
			return
		}
		for idx := uint64(0); idx < entriesPerTable; idx++ {
			if level == levels-1 && int(idx) == pt.recursive {
				continue
			}
			e := pt.load(table + idx*8)
			if level == 1 && e&PS != 0 {
				out = append(out, pt.deposit[table+idx*8]) // a 2 MiB page
				continue
			}
			if e&Present != 0 {
				walk(e.Addr(), level-1)
			}
		}
	}
	walk(pt.root, levels-1)
	return out
}

// checkInvariants verifies the structural invariants of a set of address
// spaces sharing one Frames. extraFrames counts frames the test allocated
// itself.
func checkInvariants(tb testing.TB, extraFrames int, spaces ...*AddressSpace) {
	tb.Helper()
	refs := map[uint64]int{}
	var frames *Frames
	for _, as := range spaces {
		frames = as.frames
		checkVMAs(tb, as)
		tables := tablePages(as.pt)
		require.Equal(tb, len(tables), as.pt.TablePages(), "table page count")
		for _, t := range tables {
			refs[t]++
		}
		as.pt.Walk(0, TaskSize, func(va uint64, e PTE) bool {
			v, _ := as.vmas.find(va)
			require.NotNil(tb, v, "present PTE %v at %#x outside every VMA", e, va)
			checkLeaf(tb, as, v, va, e)
			if e&Special == 0 {
				refs[e.Addr()]++
			}
			return true
		})
	}
	if frames == nil {
		return
	}
	for pa, n := range refs {
		require.Equal(tb, n, frames.RefCount(pa), "refcount of frame %#x", pa)
	}
	require.Equal(tb, len(refs)+extraFrames, frames.Used(), "frames in use")
}

func checkVMAs(tb testing.TB, as *AddressSpace) {
	tb.Helper()
	var prev *VMA
	for _, v := range as.vmas.v {
		require.Zero(tb, v.Start&pageMask, "VMA start %#x unaligned", v.Start)
		require.Zero(tb, v.End&pageMask, "VMA end %#x unaligned", v.End)
		require.Less(tb, v.Start, v.End, "empty VMA")
		require.LessOrEqual(tb, v.End, uint64(TaskSize), "VMA beyond TaskSize")
		if prev != nil {
			require.LessOrEqual(tb, prev.End, v.Start, "VMAs overlap or unsorted: %+v %+v", *prev, *v)
			require.False(tb, canMerge(prev, v), "mergeable neighbours left apart: %+v %+v", *prev, *v)
		}
		require.Len(tb, as.vmas.v, len(as.VMAs()))
		prev = v
	}
}

// checkLeaf verifies that a present leaf entry agrees with its VMA.
func checkLeaf(tb testing.TB, as *AddressSpace, v *VMA, va uint64, e PTE) {
	tb.Helper()
	require.Equal(tb, v.Kind == KindDevice, e&Special != 0, "Special bit at %#x", va)
	if e&Copied != 0 {
		require.Equal(tb, KindFile, v.Kind, "Copied bit outside a file VMA at %#x", va)
	}
	if v.Prot == ProtNone {
		require.Zero(tb, e&(User|Writable), "PROT_NONE page %#x accessible: %v", va, e)
		return
	}
	require.NotZero(tb, e&User, "user page %#x without User: %v", va, e)
	require.Equal(tb, v.Prot&ProtExec == 0, e&NX != 0, "NX at %#x: %v prot %v", va, e, v.Prot)
	if e&Writable != 0 {
		require.NotZero(tb, v.Prot&ProtWrite, "writable PTE in read-only VMA at %#x", va)
		if e&Special == 0 && !v.Shared {
			require.Equal(tb, 1, as.frames.RefCount(e.Addr()), "writable shared frame at %#x", va)
		}
		if v.Kind == KindFile {
			require.NotZero(tb, e&Copied, "writable clean file page at %#x", va)
		}
	}
}
