package guestmm

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestHugeRandomOps runs random sequences of faults, writes, munmap,
// mmap, mprotect, MADV_DONTNEED, mremap and fork over 2 MiB aligned
// memory with 2 MiB pages on, against a model of every page's first
// byte, checking the tables and frame counts after every step.
func TestHugeRandomOps(t *testing.T) {
	for seed := uint64(1); seed <= 6; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { hugeRandomOps(t, seed) })
	}
}

func hugeRandomOps(t *testing.T, seed uint64) {
	const (
		base  = 0x40000000
		pages = 4 * HugeFrames
	)
	rng := rand.New(rand.NewPCG(seed, 7))
	as := newHugeAS(t, 16384)
	require.NoError(t, as.pt.SetRecursiveSlot(testRecursiveSlot))
	mustMmap(t, as, base, pages*PageSize, rw, anonPriv|MapFixed, nil, 0)
	type page struct {
		mapped bool
		prot   Prot
		val    byte
	}
	model := make([]page, pages)
	for i := range model {
		model[i] = page{mapped: true, prot: rw}
	}
	span := func() (lo, hi int) {
		switch rng.IntN(3) {
		case 0: // a few pages
			lo = rng.IntN(pages)
			hi = min(pages, lo+1+rng.IntN(4))
		case 1: // a whole 2 MiB page or two
			lo = rng.IntN(4) * HugeFrames
			hi = min(pages, lo+HugeFrames*(1+rng.IntN(2)))
		default:
			lo = rng.IntN(pages)
			hi = min(pages, lo+1+rng.IntN(2*HugeFrames))
		}
		return lo, hi
	}
	va := func(i int) uint64 { return base + uint64(i)*PageSize }
	for step := 0; step < 100; step++ {
		op := rng.IntN(9)
		lo, hi := span()
		what := ""
		switch op {
		case 0, 1: // a user write (through the fault path), possibly a 2 MiB fault
			i := lo
			what = fmt.Sprintf("write page %d", i)
			if !model[i].mapped || model[i].prot&ProtWrite == 0 {
				r := as.HandleFault(va(i), PFUser|PFWrite)
				require.False(t, r.Resolved, what)
				break
			}
			if e, ok := as.pt.Lookup(va(i)); !ok || e&Writable == 0 {
				code := uint64(PFUser | PFWrite)
				if ok {
					code |= PFPresent
				}
				mustFault(t, as, va(i), code)
			}
			v := byte(rng.IntN(255) + 1)
			require.NoError(t, as.CopyOut(va(i), []byte{v}), what)
			model[i].val = v
		case 2: // a read fault
			i := lo
			what = fmt.Sprintf("read page %d", i)
			r := as.HandleFault(va(i), PFUser)
			require.Equal(t, model[i].mapped && model[i].prot != ProtNone, r.Resolved, what)
		case 3:
			what = fmt.Sprintf("munmap %d-%d", lo, hi)
			require.NoError(t, as.Munmap(va(lo), va(hi)-va(lo)))
			for i := lo; i < hi; i++ {
				model[i] = page{}
			}
		case 4:
			what = fmt.Sprintf("mmap %d-%d", lo, hi)
			mustMmap(t, as, va(lo), va(hi)-va(lo), rw, anonPriv|MapFixed, nil, 0)
			for i := lo; i < hi; i++ {
				model[i] = page{mapped: true, prot: rw}
			}
		case 5:
			prot := []Prot{ProtRead, rw, ProtNone}[rng.IntN(3)]
			what = fmt.Sprintf("mprotect %d-%d %v", lo, hi, prot)
			err := as.Mprotect(va(lo), va(hi)-va(lo), prot)
			holes := false
			for i := lo; i < hi; i++ {
				holes = holes || !model[i].mapped
			}
			if holes {
				require.Error(t, err, what)
				break
			}
			require.NoError(t, err, what)
			for i := lo; i < hi; i++ {
				model[i].prot = prot
			}
		case 6:
			what = fmt.Sprintf("MADV_DONTNEED %d-%d", lo, hi)
			_ = as.Madvise(va(lo), va(hi)-va(lo), MadvDontNeed)
			for i := lo; i < hi; i++ {
				model[i].val = 0
			}
		case 7: // move a range out and back: data follows
			what = fmt.Sprintf("mremap %d-%d out and back", lo, hi)
			whole := true
			for i := lo; i < hi; i++ {
				whole = whole && model[i].mapped
			}
			v, _ := as.FindVMA(va(lo))
			if !whole || v.End < va(hi) {
				break
			}
			tmp, err := as.Mremap(va(lo), va(hi)-va(lo), va(hi)-va(lo), MremapMayMove|MremapFixed, 0x50000000)
			require.NoError(t, err, what)
			_, err = as.Mremap(tmp, va(hi)-va(lo), va(hi)-va(lo), MremapMayMove|MremapFixed, va(lo))
			require.NoError(t, err, what)
		case 8: // fork; the child writes; the parent must not see it
			what = "fork"
			child, err := as.Fork()
			require.NoError(t, err)
			for i := lo; i < hi; i++ {
				if model[i].mapped && model[i].prot&ProtWrite != 0 {
					require.NoError(t, child.CopyOut(va(i), []byte{0xEE}))
				}
			}
			checkInvariants(t, 0, as, child)
			child.Destroy()
		}
		checkInvariants(t, 0, as)
		for i := range model {
			e, ok := as.pt.Lookup(va(i))
			if !model[i].mapped {
				require.False(t, ok, "%s: page %d present after unmap", what, i)
				continue
			}
			if !ok {
				require.Zero(t, model[i].val, "%s: page %d lost its byte", what, i)
				continue
			}
			require.Equal(t, model[i].val, as.mem[e.Addr()], "%s: page %d", what, i)
		}
	}
	as.Destroy()
	require.Zero(t, as.frames.Used(), "frames leaked")
}
