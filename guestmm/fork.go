package guestmm

import "golang.org/x/sys/unix"

// kernelHalf is the first canonical address of the upper half, where the
// VMM maps its own pages.
const kernelHalf = 0xffff_8000_0000_0000

// Fork creates a copy of the address space for a child process, as fork(2)
// does: VMAs are copied (except MADV_DONTFORK ones), private pages become
// copy-on-write in both address spaces, shared pages stay shared, and the
// entries of the VMM's upper-half area are copied as they are.
//
// Shared anonymous memory has no object of its own here, only its frames,
// so Fork first faults in all of it: pages created later would otherwise
// not be shared. The parent's page tables change (writable private pages
// become read-only), so it needs a flush afterwards.
func (as *AddressSpace) Fork() (*AddressSpace, error) {
	if as.destroyed {
		return nil, unix.ENOMEM
	}
	for _, v := range as.vmas.v {
		if v.Shared && v.Anonymous && !v.DontFork {
			if err := as.populateRange(v, v.Start, v.End, false); err != nil {
				return nil, err
			}
		}
	}
	child, err := NewAddressSpace(as.mem, as.frames, as.layout)
	if err != nil {
		return nil, errno(err)
	}
	child.startBrk, child.brk, child.brkSet = as.startBrk, as.brk, as.brkSet

	var failed error
	as.pt.Walk(kernelHalf, 0, func(va uint64, e PTE) bool {
		failed = child.pt.SetPTE(va, e)
		return failed == nil
	})
	for _, v := range as.vmas.v {
		if failed != nil {
			break
		}
		if v.DontFork {
			continue
		}
		nv := *v
		child.vmas.v = append(child.vmas.v, &nv)
		if v.WipeOnFork {
			continue // the child starts with zero pages
		}
		copyPages := func(start, end uint64) {
			lo, hi, _ := linearRange(start, end)
			as.pt.visit(lo, hi, false, func(va uint64, e PTE) (PTE, bool) {
				if e&Special == 0 && !v.Shared {
					e &^= Writable // both copies fault on write and copy
				}
				if err := child.pt.SetPTE(va, e); err != nil {
					failed = err
					return e, true
				}
				if e&Special == 0 {
					as.frames.IncRef(e.Addr())
				}
				return e, false
			})
		}
		// 2 MiB at a time: a 2 MiB page is shared as one, read-only on
		// both sides.
		for cur := v.Start; cur < v.End && failed == nil; {
			next := min(v.End, (cur+HugePageSize)&^hugeMask)
			if next-cur == HugePageSize {
				copied, err := as.forkHuge(child, cur)
				if err != nil {
					failed = err
					break
				}
				if copied {
					cur = next
					continue
				}
			}
			copyPages(cur, next)
			cur = next
		}
	}
	if failed != nil {
		child.Destroy()
		return nil, errno(failed)
	}
	return child, nil
}

// forkHuge gives child the 2 MiB page of the address space at va (2 MiB
// aligned), if there is one, as a read-only 2 MiB page of the same
// frames, and write-protects it here: Linux's copy_huge_pmd. copied
// false means there is none (or the child's tables are in the way).
func (as *AddressSpace) forkHuge(child *AddressSpace, va uint64) (copied bool, err error) {
	ea, e, ok := as.pt.hugeEntryAt(va)
	if !ok {
		return false, nil
	}
	ro := e &^ Writable
	if ok, err := child.pt.mapHuge(va, e.Addr(), ro.Flags()&^PS); !ok || err != nil {
		return false, err
	}
	for i := uint64(0); i < HugeFrames; i++ {
		as.frames.IncRef(e.Addr() + i*PageSize)
	}
	as.pt.setHuge(ea, va, ro)
	return true, nil
}
