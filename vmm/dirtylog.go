package vmm

import (
	"fmt"
	"math/bits"
	"unsafe"
)

// KVM's dirty page log (linux/kvm.h): a RAM slot registered with
// KVM_MEM_LOG_DIRTY_PAGES has a bitmap, one bit per 4 KiB page of the
// slot, that KVM sets when the guest writes the page through its MMU
// (and when KVM itself writes guest memory, such as the accessed and
// dirty bits of guest page tables). KVM_GET_DIRTY_LOG copies the bitmap
// out, clears it and write-protects the pages again, so the next write
// to each is logged again. Writes of the VMM to guest RAM (through
// Mem) do not go through KVM and are not in the log: guestmm.Frames
// tracks those (Frames.TakeWritten).
const (
	memLogDirtyPages = 1 << 0     // KVM_MEM_LOG_DIRTY_PAGES
	ioctlGetDirtyLog = 0x4010ae42 // _IOW(KVMIO, 0x42, struct kvm_dirty_log)
)

// kvmDirtyLog is struct kvm_dirty_log.
type kvmDirtyLog struct {
	Slot   uint32
	_      uint32
	Bitmap uint64 // a pointer to the bitmap
}

// SetDirtyLogging turns KVM's dirty page log of the RAM slots on or off.
// Turning it on write-protects all of guest RAM in KVM's MMU (the first
// write to each page then exits to KVM, not to the VMM) and makes KVM
// map guest RAM in 4 KiB pages only, so a run pays for it only while it
// needs it: between incremental checkpoints. The log starts empty.
//
// The RAM slots are never deleted while the machine lives (translation
// flushes delete the zap slot, see zapTranslations), so the log survives
// them.
func (m *Machine) SetDirtyLogging(on bool) error {
	if m.dirtyLog == on {
		return nil
	}
	m.dirtyLog = on
	if err := m.setRAMSlots(true); err != nil {
		m.dirtyLog = !on
		return err
	}
	if on {
		ranges := m.RAMRanges()
		m.dirtyBitmaps = make([][]uint64, len(ranges))
		for i, r := range ranges {
			pages := (r.End - r.Start) / pageSize
			m.dirtyBitmaps[i] = make([]uint64, (pages+63)/64)
		}
	} else {
		m.dirtyBitmaps = nil
	}
	return nil
}

// DirtyLogging says whether the dirty page log is on.
func (m *Machine) DirtyLogging() bool { return m.dirtyLog }

// HarvestDirty calls fn for each run of guest pages [pa, pa+n·4096) that
// the guest wrote since dirty logging was turned on or since the last
// HarvestDirty, and starts a new log. The vCPUs should be stopped (a write
// during the call may be reported now or next time, but is never lost).
func (m *Machine) HarvestDirty(fn func(pa, n uint64)) error {
	if !m.dirtyLog {
		return fmt.Errorf("KVM_GET_DIRTY_LOG: dirty logging is off")
	}
	for i, r := range m.RAMRanges() {
		bm := m.dirtyBitmaps[i]
		if len(bm) == 0 {
			continue
		}
		arg := kvmDirtyLog{Slot: uint32(i), Bitmap: uint64(uintptr(unsafe.Pointer(&bm[0])))}
		if _, err := ioctl(m.vmFd, ioctlGetDirtyLog, uintptr(unsafe.Pointer(&arg))); err != nil {
			return fmt.Errorf("KVM_GET_DIRTY_LOG (slot %d): %w", i, err)
		}
		eachRun(bm, func(first, n uint64) { fn(r.Start+first*pageSize, n) })
	}
	return nil
}

// eachRun calls fn for each run of set bits of bm, as (first bit, count).
func eachRun(bm []uint64, fn func(first, n uint64)) {
	var start, n uint64
	for w, word := range bm {
		for word != 0 {
			b := uint64(bits.TrailingZeros64(word))
			i := uint64(w)*64 + b
			if n > 0 && start+n == i {
				n++
			} else {
				if n > 0 {
					fn(start, n)
				}
				start, n = i, 1
			}
			word &= word - 1
		}
	}
	if n > 0 {
		fn(start, n)
	}
}
