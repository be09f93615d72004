package guestmm

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"
)

// opReader decodes fuzz input into operation arguments. It yields zeros
// once the input is used up.
type opReader struct{ data []byte }

func (r *opReader) empty() bool { return len(r.data) == 0 }

func (r *opReader) byte() byte {
	if len(r.data) == 0 {
		return 0
	}
	b := r.data[0]
	r.data = r.data[1:]
	return b
}

func (r *opReader) u64() uint64 {
	var b [8]byte
	n := copy(b[:], r.data)
	r.data = r.data[n:]
	return binary.LittleEndian.Uint64(b[:])
}

// Fuzzed addresses mostly fall into a small window so that operations
// collide; some are arbitrary to exercise the argument checks.
const (
	fuzzWindow = 0x100000
	fuzzPages  = 48
)

func (r *opReader) addr() uint64 {
	switch m := r.byte(); {
	case m < 200:
		return fuzzWindow + uint64(r.byte()%fuzzPages)*PageSize
	case m < 220:
		return fuzzWindow + uint64(r.byte()%fuzzPages)*PageSize + uint64(r.byte())
	case m < 235:
		// Near the ends of the address space.
		return TaskSize - uint64(r.byte()%4)*PageSize
	default:
		return r.u64()
	}
}

func (r *opReader) length() uint64 {
	switch m := r.byte(); {
	case m < 200:
		return uint64(r.byte()%12) * PageSize
	case m < 230:
		return uint64(r.byte()%12)*PageSize + uint64(r.byte())
	default:
		return r.u64()
	}
}

func (r *opReader) flags() uint32 {
	if m := r.byte(); m >= 240 {
		return uint32(r.u64())
	}
	choices := []uint32{
		anonPriv, anonPriv | MapFixed, anonPriv | MapFixedNoReplace,
		MapShared | MapAnonymous | MapFixed, anonPriv | MapPopulate | MapFixed,
		anonPriv | MapGrowsDown | MapFixed, anonPriv | Map32Bit, MapPrivate | MapFixed,
		MapShared | MapFixed, MapPrivate, MapSharedValidate | MapFixed, 0,
	}
	return choices[int(r.byte())%len(choices)]
}

var fuzzAdvice = []int{
	MadvNormal, MadvDontNeed, MadvFree, MadvRemove, MadvDontFork, MadvDoFork,
	MadvDontDump, MadvDoDump, MadvWipeOnFork, MadvKeepOnFork,
	MadvPopulateRead, MadvPopulateWrite, MadvDontNeedLocked, 5, -1,
}

// FuzzAddressSpaceOps runs a fuzzer-chosen sequence of memory operations,
// including fork, and checks after each one that nothing panicked and the
// invariants hold: sorted, non-overlapping, page-aligned VMAs; every
// present PTE inside a VMA and consistent with it; frame reference counts
// matching the page tables; and no frame leaked at the end.
func FuzzAddressSpaceOps(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 0, 3, 3, 1, 0, 9, 0, 0, 1, 2})
	f.Add([]byte{
		0, 0, 0, 1, 0, 4, 3, 1, 0, 5, // mmap fixed
		8, 0, 0, 1, 0, 0, 20, // copy out
		12, 0, // fork
		8, 1, 0, 1, 0, 0, 20, // copy out in the child
		4, 0, 0, 1, 0, 2, 0, 8, 1, 0, 0, 40, // mremap
	})
	f.Add([]byte{1, 0, 0, 2, 0, 3, 1, 7, 0, 0, 9, 0, 0, 2, 2, 6, 0, 0, 2, 0, 2, 1})
	f.Add([]byte{5, 0, 0x10, 5, 0, 0x40, 9, 0, 0, 0, 6, 5, 0, 0x10, 0, 0, 3})

	f.Fuzz(runOps)
}

// runOps is the body of FuzzAddressSpaceOps.
func runOps(t *testing.T, data []byte) {
	mem := make([]byte, 192*PageSize)
	frames := NewFrames(mem, PageSize, uint64(len(mem)))
	as, err := NewAddressSpace(mem, frames, Layout{
		MmapBase:    0x40000000,
		StackMax:    32 * PageSize,
		MaxMapCount: 40,
	})
	require.NoError(t, err)
	as.SetBrkBase(fuzzWindow + 40*PageSize)
	require.NoError(t, as.SetupStack(fuzzWindow+fuzzPages*PageSize+DefaultStackGuardGap+16*PageSize, 4*PageSize))

	file := &memFile{name: "/file", data: pattern(3*PageSize+123, 1)}
	roFile := &accessFile{memFile{name: "/ro", data: pattern(PageSize, 2), access: ProtRead}}
	dev := &testDevice{base: 0xfe000000, size: 8 * PageSize}
	backings := []Backing{file, roFile, dev, nil}

	spaces := []*AddressSpace{as}
	r := &opReader{data: data}
	buf := make([]byte, 3*PageSize)
	for step := 0; step < 48 && !r.empty(); step++ {
		op := r.byte() % 15
		target := spaces[int(r.byte())%len(spaces)]
		switch op {
		case 0: // anonymous mmap
			_, _ = target.Mmap(r.addr(), r.length(), Prot(r.byte()), r.flags()|MapAnonymous, nil, 0)
		case 1: // file or device mmap
			b := backings[int(r.byte())%len(backings)]
			_, _ = target.Mmap(r.addr(), r.length(), Prot(r.byte()), r.flags()&^MapAnonymous, b, uint64(r.byte()%6)*PageSize)
		case 2:
			_ = target.Munmap(r.addr(), r.length())
		case 3:
			prot := Prot(r.byte())
			if prot&0x80 != 0 {
				prot |= protGrowsDown
			}
			_ = target.Mprotect(r.addr(), r.length(), prot)
		case 4:
			_, _ = target.Mremap(r.addr(), r.length(), r.length(), uint32(r.byte()%8), r.addr())
		case 5:
			target.Brk(target.brk + uint64(int64(int8(r.byte())))*512)
		case 6:
			_ = target.Madvise(r.addr(), r.length(), fuzzAdvice[int(r.byte())%len(fuzzAdvice)])
		case 7:
			_ = target.CopyIn(r.addr(), buf[:int(r.byte())*12%len(buf)])
		case 8:
			n := int(r.byte()) * 12 % len(buf)
			_ = target.CopyOut(r.addr(), pattern(n, r.byte()))
		case 9:
			target.HandleFault(r.addr(), uint64(r.byte()&0x1f))
		case 10:
			_ = target.WriteForce(r.addr(), pattern(int(r.byte())*12%len(buf), 3))
		case 11:
			_, _ = target.ReadString(r.addr(), int(r.byte())*20)
		case 12:
			if len(spaces) < 3 {
				if child, err := target.Fork(); err == nil {
					spaces = append(spaces, child)
				}
			}
		case 13:
			if i := int(r.byte()) % len(spaces); i > 0 {
				spaces[i].Destroy()
				spaces = append(spaces[:i], spaces[i+1:]...)
			}
		case 14:
			_ = target.Populate(r.addr(), r.length())
		}
		checkInvariants(t, 0, spaces...)
	}
	for _, s := range spaces {
		s.Destroy()
	}
	require.Zero(t, frames.Used(), "frames leaked")
}
