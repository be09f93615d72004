package guestmm

import (
	"errors"

	"golang.org/x/sys/unix"
)

// madvise advice values (Linux).
const (
	MadvNormal         = 0
	MadvRandom         = 1
	MadvSequential     = 2
	MadvWillNeed       = 3
	MadvDontNeed       = 4
	MadvFree           = 8
	MadvRemove         = 9
	MadvDontFork       = 10
	MadvDoFork         = 11
	MadvMergeable      = 12
	MadvUnmergeable    = 13
	MadvHugePage       = 14
	MadvNoHugePage     = 15
	MadvDontDump       = 16
	MadvDoDump         = 17
	MadvWipeOnFork     = 18
	MadvKeepOnFork     = 19
	MadvCold           = 20
	MadvPageOut        = 21
	MadvPopulateRead   = 22
	MadvPopulateWrite  = 23
	MadvDontNeedLocked = 24
	MadvCollapse       = 25
)

// Madvise implements madvise(2). Hints without an effect here (NORMAL,
// RANDOM, SEQUENTIAL, WILLNEED, MERGEABLE, COLD, PAGEOUT, ...) are
// accepted. NOHUGEPAGE keeps later faults from mapping 2 MiB pages (those
// already mapped stay, as on Linux); HUGEPAGE undoes it. DONTNEED and FREE drop private pages (anonymous memory
// reads back as zero, private file pages re-read from the file); on shared
// mappings, whose pages have no other home here, they keep the pages.
// DONTDUMP/DODUMP, DONTFORK/DOFORK and WIPEONFORK/KEEPONFORK set VMA flags,
// splitting VMAs as needed. As in Linux, the advice is applied to the
// mapped parts of the range and ENOMEM is returned if there were holes.
func (as *AddressSpace) Madvise(addr, length uint64, advice int) error {
	if !validAdvice(advice) || addr&pageMask != 0 {
		return unix.EINVAL
	}
	aligned := alignUp(length)
	if length != 0 && aligned == 0 {
		return unix.EINVAL
	}
	end := addr + aligned
	if end < addr {
		return unix.EINVAL
	}
	if end == addr {
		return nil
	}
	if end > TaskSize {
		// Nothing is mapped up there: a hole.
		if addr >= TaskSize {
			return unix.ENOMEM
		}
		if err := as.Madvise(addr, TaskSize-addr, advice); err != nil {
			return err
		}
		return unix.ENOMEM
	}
	holes, err := as.eachPiece(addr, end, func(v *VMA, lo, hi uint64) error {
		return as.advise(v, lo, hi, advice)
	})
	if err != nil {
		return err
	}
	if holes {
		return unix.ENOMEM
	}
	return nil
}

func validAdvice(advice int) bool {
	switch advice {
	case MadvNormal, MadvRandom, MadvSequential, MadvWillNeed, MadvDontNeed,
		MadvFree, MadvRemove, MadvDontFork, MadvDoFork, MadvMergeable,
		MadvUnmergeable, MadvHugePage, MadvNoHugePage, MadvDontDump, MadvDoDump,
		MadvWipeOnFork, MadvKeepOnFork, MadvCold, MadvPageOut,
		MadvPopulateRead, MadvPopulateWrite, MadvDontNeedLocked, MadvCollapse:
		return true
	}
	return false
}

// advise applies advice to the part [lo, hi) of v.
func (as *AddressSpace) advise(v *VMA, lo, hi uint64, advice int) error {
	switch advice {
	case MadvDontNeed, MadvDontNeedLocked:
		if v.Kind == KindDevice || advice == MadvDontNeed && v.Locked {
			return unix.EINVAL
		}
		if !v.Shared {
			as.dropPages(lo, hi)
		}
	case MadvFree:
		if v.Kind == KindDevice || !v.Anonymous || v.Shared {
			return unix.EINVAL
		}
		as.dropPages(lo, hi)
	case MadvRemove:
		if v.Locked || v.Kind == KindDevice || !v.Shared {
			return unix.EINVAL
		}
		if v.MaxProt&ProtWrite == 0 {
			return unix.EACCES
		}
		as.dropPages(lo, hi)
	case MadvDontDump:
		return as.setFlag(lo, hi, v.DontDump, func(v *VMA) { v.DontDump = true })
	case MadvDoDump:
		if v.Kind == KindDevice {
			return unix.EINVAL
		}
		return as.setFlag(lo, hi, !v.DontDump, func(v *VMA) { v.DontDump = false })
	case MadvDontFork:
		return as.setFlag(lo, hi, v.DontFork, func(v *VMA) { v.DontFork = true })
	case MadvDoFork:
		if v.Kind == KindDevice {
			return unix.EINVAL
		}
		return as.setFlag(lo, hi, !v.DontFork, func(v *VMA) { v.DontFork = false })
	case MadvHugePage:
		return as.setFlag(lo, hi, !v.NoHugePage, func(v *VMA) { v.NoHugePage = false })
	case MadvNoHugePage:
		return as.setFlag(lo, hi, v.NoHugePage, func(v *VMA) { v.NoHugePage = true })
	case MadvWipeOnFork:
		if !v.Anonymous || v.Shared {
			return unix.EINVAL
		}
		return as.setFlag(lo, hi, v.WipeOnFork, func(v *VMA) { v.WipeOnFork = true })
	case MadvKeepOnFork:
		return as.setFlag(lo, hi, !v.WipeOnFork, func(v *VMA) { v.WipeOnFork = false })
	case MadvPopulateRead, MadvPopulateWrite:
		write := advice == MadvPopulateWrite
		if v.Kind == KindDevice || !accessAllowed(v.Prot, write, false) {
			return unix.EINVAL
		}
		err := as.populateRange(v, lo, hi, write)
		if err != nil && !errors.Is(err, unix.ENOMEM) {
			return unix.EFAULT
		}
		return err
	}
	return nil
}

// setFlag applies set to the VMAs covering [lo, hi), splitting them so the
// change stays inside the range, and merges what became equal. unchanged
// short-cuts the common case where the flag already has the wanted value.
func (as *AddressSpace) setFlag(lo, hi uint64, unchanged bool, set func(*VMA)) error {
	if unchanged {
		return nil
	}
	i, j, err := as.isolate(lo, hi)
	if err != nil {
		return err
	}
	for _, v := range as.vmas.v[i:j] {
		set(v)
	}
	as.vmas.mergeRange(i, j)
	return nil
}
