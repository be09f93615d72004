package guestmm

import "io"

// Peek copies guest memory at va into buf for an observer (the system
// call trace) and returns how many leading bytes it could read. Unlike
// CopyIn it never faults a page in, never copies on write and never
// changes the address space: a present page is read through its frame,
// a page of a file mapping not yet faulted in from the file, a page of an
// anonymous mapping not yet touched reads as zeros. It stops at the first
// byte outside a readable, non-device mapping.
func (as *AddressSpace) Peek(va uint64, buf []byte) int {
	return as.peek(va, buf, ProtRead)
}

// peek is Peek for mappings that allow need (ProtRead, or ProtExec for
// code the program would fetch: see peekCode).
func (as *AddressSpace) peek(va uint64, buf []byte, need Prot) int {
	done := 0
	for done < len(buf) {
		cur := va + uint64(done)
		if cur < va || cur >= TaskSize {
			break
		}
		v, _ := as.vmas.find(cur)
		if v == nil || v.Kind == KindDevice || v.Prot&need == 0 {
			break
		}
		in := cur & pageMask
		n := min(uint64(len(buf)-done), PageSize-in)
		dst := buf[done : done+int(n)]
		if e, ok := as.pt.Lookup(cur &^ pageMask); ok && e&Special == 0 {
			pa := e.Addr()
			if !as.frames.Contains(pa) || pa+PageSize > uint64(len(as.mem)) {
				break
			}
			copy(dst, as.mem[pa+in:pa+in+n])
			as.tsc.overlay(pa, in, dst)
		} else if ok {
			break // a special entry: not RAM
		} else if v.isFile() {
			m, err := v.Backing.ReadAt(dst, int64(v.offsetOf(cur)))
			m = max(m, 0)
			if err != nil && err != io.EOF {
				done += m
				break
			}
			clear(dst[m:])
		} else {
			clear(dst)
		}
		done += int(n)
	}
	return done
}

// PeekString reads a NUL-terminated string of at most max bytes at va with
// Peek. complete is false when no NUL was found in the bytes read (the
// string is longer, or memory ends first).
func (as *AddressSpace) PeekString(va uint64, max int) (s string, complete bool) {
	var out []byte
	var chunk [256]byte
	for len(out) < max {
		want := min(len(chunk), max-len(out), int(PageSize-(va&pageMask)))
		n := as.Peek(va, chunk[:want])
		for i := 0; i < n; i++ {
			if chunk[i] == 0 {
				return string(append(out, chunk[:i]...)), true
			}
		}
		out = append(out, chunk[:n]...)
		if n < want {
			break
		}
		va += uint64(n)
	}
	return string(out), false
}
