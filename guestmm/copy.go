package guestmm

import (
	"bytes"

	"golang.org/x/sys/unix"
)

// CopyIn copies len(dst) bytes of guest memory at va into dst, faulting
// pages in like Linux's copy_from_user. It returns EFAULT if any byte is not
// readable; dst may then be partly filled.
func (as *AddressSpace) CopyIn(va uint64, dst []byte) error {
	_, err := as.copyUser(va, dst, false, false)
	return err
}

// CopyInPartial is CopyIn that also returns how many leading bytes were
// copied before a fault, for syscalls that report partial transfers.
func (as *AddressSpace) CopyInPartial(va uint64, dst []byte) (int, error) {
	return as.copyUser(va, dst, false, false)
}

// CopyOut copies src into guest memory at va like Linux's copy_to_user.
// Every page must belong to a writable mapping (else EFAULT); pages are
// faulted in and copied on write as needed.
func (as *AddressSpace) CopyOut(va uint64, src []byte) error {
	_, err := as.copyUser(va, src, true, false)
	return err
}

// CopyOutPartial is CopyOut that also returns how many leading bytes were
// copied before a fault.
func (as *AddressSpace) CopyOutPartial(va uint64, src []byte) (int, error) {
	return as.copyUser(va, src, true, false)
}

// WriteForce writes src at va regardless of the protection of the
// mappings, as a loader filling a read-only segment does. The range must
// be mapped (EFAULT otherwise) and must not be a device mapping. Written
// file pages become private copies (marked Copied).
func (as *AddressSpace) WriteForce(va uint64, src []byte) error {
	_, err := as.copyUser(va, src, true, true)
	return err
}

// ReadString reads a NUL-terminated string at va. max is the size of the
// buffer including the NUL, like PATH_MAX for path names: if no NUL is
// found in the first max bytes the result is ENAMETOOLONG. Unreadable
// memory before the NUL gives EFAULT.
func (as *AddressSpace) ReadString(va uint64, max int) (string, error) {
	if max <= 0 {
		return "", unix.ENAMETOOLONG
	}
	var out []byte
	for len(out) < max {
		if va >= TaskSize {
			return "", unix.EFAULT
		}
		pa, err := as.userPage(va, false, false)
		if err != nil {
			return "", err
		}
		chunk := as.mem[pa+va&pageMask : pa+PageSize]
		if rest := max - len(out); len(chunk) > rest {
			chunk = chunk[:rest]
		}
		if as.tsc != nil {
			chunk = bytes.Clone(chunk)
			as.tsc.overlay(pa, va&pageMask, chunk)
		}
		if i := bytes.IndexByte(chunk, 0); i >= 0 {
			return string(append(out, chunk[:i]...)), nil
		}
		out = append(out, chunk...)
		va += uint64(len(chunk))
	}
	return "", unix.ENAMETOOLONG
}

// copyUser moves bytes between buf and guest memory at va, page by page.
// toGuest selects the direction; force ignores the mapping protection.
func (as *AddressSpace) copyUser(va uint64, buf []byte, toGuest, force bool) (int, error) {
	if len(buf) == 0 {
		return 0, nil
	}
	if va >= TaskSize || uint64(len(buf)) > TaskSize-va {
		return 0, unix.EFAULT
	}
	done := 0
	for done < len(buf) {
		cur := va + uint64(done)
		pa, err := as.userPage(cur, toGuest, force)
		if err != nil {
			return done, err
		}
		page := as.mem[pa+cur&pageMask : pa+PageSize]
		if toGuest {
			PrepareWrite(page[:min(len(page), len(buf)-done)])
			as.frames.MarkWritten(pa)
			done += copy(page, buf[done:])
		} else {
			n := copy(buf[done:], page)
			as.tsc.overlay(pa, cur&pageMask, buf[done:done+n])
			done += n
		}
	}
	return done, nil
}

// userPage returns the guest-physical address of the RAM frame backing the
// page of va, ready for reading or (with write) writing. It takes the fast
// path when the PTE already allows the access and otherwise resolves the
// access like a fault from user mode. force skips the protection check.
func (as *AddressSpace) userPage(va uint64, write, force bool) (uint64, error) {
	pva := va &^ pageMask
	if e, ok := as.pt.Lookup(pva); ok && e&(User|Special) == User && (!write || e&Writable != 0) {
		return as.ramFrame(e.Addr())
	}
	v := as.vmaForAccess(va)
	if v == nil || v.Kind == KindDevice {
		return 0, unix.EFAULT
	}
	if !force && !accessAllowed(v.Prot, write, false) {
		return 0, unix.EFAULT
	}
	if err := as.faultPage(v, pva, write); err != nil {
		return 0, unix.EFAULT
	}
	e, ok := as.pt.Lookup(pva)
	if !ok || e&Special != 0 {
		return 0, unix.EFAULT
	}
	return as.ramFrame(e.Addr())
}

// ramFrame checks that a frame address lies inside guest RAM (not in the
// hole that guest RAM's host mapping spans).
func (as *AddressSpace) ramFrame(pa uint64) (uint64, error) {
	if pa > uint64(len(as.mem)) || uint64(len(as.mem))-pa < PageSize || as.frames.inHolePA(pa) {
		return 0, unix.EFAULT
	}
	return pa, nil
}
