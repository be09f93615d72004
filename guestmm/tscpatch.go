package guestmm

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"io"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"

	"golang.org/x/arch/x86/x86asm"
)

// TSCTrapByte replaces the first byte of a patched rdtsc or rdtscp: hlt,
// which at CPL3 raises #GP with RIP at the instruction, exactly as rdtsc
// does under CR4.TSD. The VMM then emulates the instruction it finds at
// RIP through CopyIn, which shows the original bytes.
const TSCTrapByte = 0xF4

// maxSweep bounds how far before a page a linear decode may start (from
// the start of an anonymous mapping, or from the last known instruction
// boundary of a modified file page). Candidates needing a longer sweep
// are left untrapped and reported. Decoding runs at about 4 MB/s, and a
// sweep happens each time a page with rdtsc-like bytes is scanned.
const maxSweep = 1 << 20

// TSCPatch makes rdtsc and rdtscp trap on a KVM that ignores CR4.TSD
// (PVM), for deterministic runs. It patches the executable pages of every
// address space built on its Frames: a page becomes executable in the page
// tables only after its frame was scanned ("cleared"), and the scan
// replaces the first byte of each rdtsc/rdtscp instruction with
// TSCTrapByte. See docs/KERNEL.md, "Deterministic rdtsc on PVM", for the
// rules and what a program can still observe.
//
// The state is per frame (the patched bytes live in the frame): frames
// shared by several address spaces are patched once. Freeing a frame
// forgets its state.
type TSCPatch struct {
	mu     sync.Mutex
	mem    []byte
	f      *Frames              // records the frames it writes (MarkWritten)
	frames map[uint64][]tscSite // cleared frames and their patched sites
	files  map[Backing]*elfCode // decoded executable files, by backing

	// Undecided, when set, is called when a page holds bytes that read as
	// rdtsc or rdtscp but could not be decoded from a known instruction
	// boundary, so they are left untrapped: va of the first, how many.
	Undecided func(va uint64, n int)

	stats TSCStats
}

// TSCStats counts what a TSCPatch did.
type TSCStats struct {
	Pages     int // frames scanned and cleared for execution
	Sites     int // rdtsc/rdtscp instructions patched
	Undecided int // rdtsc-like byte sequences left untrapped
}

type tscSite struct {
	off  uint16 // offset in the frame of the instruction's first byte
	orig byte   // the byte TSCTrapByte replaced
}

// EnableTSCPatch turns on rdtsc patching for every address space created
// on f from now on (NewAddressSpace) and returns the patcher. Calling it
// again returns the same one.
func (f *Frames) EnableTSCPatch() *TSCPatch {
	if f.tsc == nil {
		f.tsc = &TSCPatch{mem: f.mem, f: f, frames: map[uint64][]tscSite{}, files: map[Backing]*elfCode{}}
	}
	return f.tsc
}

// TSCPatch returns the patcher of f, nil when patching is off.
func (f *Frames) TSCPatch() *TSCPatch { return f.tsc }

// Stats returns the counters.
func (p *TSCPatch) Stats() TSCStats {
	if p == nil {
		return TSCStats{}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

func (p *TSCPatch) cleared(pa uint64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.frames[pa]
	return ok
}

// patch writes the trap byte at every site of the frame at pa and marks
// the frame cleared.
func (p *TSCPatch) patch(pa uint64, offs []uint16) {
	p.mu.Lock()
	defer p.mu.Unlock()
	sites := make([]tscSite, 0, len(offs))
	for _, off := range offs {
		b := &p.mem[pa+uint64(off)]
		sites = append(sites, tscSite{off: off, orig: *b})
		*b = TSCTrapByte
	}
	p.f.MarkWritten(pa)
	p.frames[pa] = sites
	p.stats.Pages++
	p.stats.Sites += len(sites)
}

// forget puts the original bytes back into the frame at pa (it is about
// to be written) and drops its state, so it must be scanned again before
// it is executable.
func (p *TSCPatch) forget(pa uint64) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.frames[pa] {
		if b := &p.mem[pa+uint64(s.off)]; *b == TSCTrapByte {
			*b = s.orig
		}
	}
	p.f.MarkWritten(pa)
	delete(p.frames, pa)
}

// freed drops the state of a frame that went back to the allocator.
func (p *TSCPatch) freed(pa uint64) {
	p.mu.Lock()
	delete(p.frames, pa)
	p.mu.Unlock()
}

// unpatchCopy puts the original bytes of src's sites into dst, a fresh
// copy of src (copy on write).
func (p *TSCPatch) unpatchCopy(src, dst uint64) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.frames[src] {
		if b := &p.mem[dst+uint64(s.off)]; *b == TSCTrapByte {
			*b = s.orig
		}
	}
	p.f.MarkWritten(dst)
}

// overlay shows the original bytes in buf, a copy of the frame at pa from
// offset off on.
func (p *TSCPatch) overlay(pa, off uint64, buf []byte) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.frames[pa] {
		if i := uint64(s.off) - off; uint64(s.off) >= off && i < uint64(len(buf)) && buf[i] == TSCTrapByte {
			buf[i] = s.orig
		}
	}
}

// Unpatch puts the original bytes back into every patched frame and
// returns the function that patches them again. A checkpoint calls it
// around saving guest memory, so that images hold the program's own
// bytes; the vCPU must stay stopped in between.
func (p *TSCPatch) Unpatch() (repatch func()) {
	if p == nil {
		return func() {}
	}
	p.mu.Lock()
	var undone []uint64
	for pa, sites := range p.frames {
		for _, s := range sites {
			if b := &p.mem[pa+uint64(s.off)]; *b == TSCTrapByte {
				*b = s.orig
				undone = append(undone, pa+uint64(s.off))
				p.f.MarkWritten(pa)
			}
		}
	}
	p.mu.Unlock()
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, a := range undone {
			p.mem[a] = TSCTrapByte
			p.f.MarkWritten(a)
		}
	}
}

// tscPatchable reports whether pages of v are patched before they run:
// executable RAM mappings, except shared mappings of files whose pages
// are the file's own (tmpfs, memfd), where a patch would change the
// file's contents for read(2) and for its checkpoint.
func (as *AddressSpace) tscPatchable(v *VMA) bool {
	if as.tsc == nil || v.Prot&ProtExec == 0 || v.Kind == KindDevice {
		return false
	}
	if _, ok := v.Backing.(PageCache); ok && v.Shared {
		return false
	}
	return true
}

// tscPTE adjusts the leaf entry e of the frame at pa of a patchable VMA:
// no execution before the frame is cleared, and no writing while it is
// (W^X), so that a write always goes through faultPage, which puts the
// original bytes back first.
func (as *AddressSpace) tscPTE(e PTE, pa uint64) PTE {
	if !as.tsc.cleared(pa) {
		return e | NX
	}
	return e &^ Writable
}

// clearExec scans the present page pva of v, patches its rdtsc and rdtscp
// instructions and maps it executable.
func (as *AddressSpace) clearExec(v *VMA, pva uint64) {
	e, ok := as.pt.Lookup(pva)
	if !ok || e&Special != 0 || !as.frames.Contains(e.Addr()) {
		return
	}
	pa := e.Addr()
	if !as.tsc.cleared(pa) {
		sites, undecided, first := as.findTSC(v, pva, e)
		as.tsc.patch(pa, sites)
		if undecided > 0 {
			as.tsc.mu.Lock()
			as.tsc.stats.Undecided += undecided
			as.tsc.mu.Unlock()
			if as.tsc.Undecided != nil {
				as.tsc.Undecided(first, undecided)
			}
		}
	}
	_ = as.pt.SetPTE(pva, as.leafPTE(v, pa, e))
}

// clearExecRange clears the present pages of v in [start, end).
func (as *AddressSpace) clearExecRange(v *VMA, start, end uint64) {
	if !as.tscPatchable(v) {
		return
	}
	for va := range as.PresentPages(start, end) {
		as.clearExec(v, va)
	}
}

// forgetExecRange puts the original bytes back into the present pages of
// v in [start, end), which stop being executable: the program may now
// write to them without a fault, and must read what it wrote.
func (as *AddressSpace) forgetExecRange(v *VMA, start, end uint64) {
	if !as.tscPatchable(v) {
		return
	}
	for _, e := range as.PresentPages(start, end) {
		if e&Special == 0 {
			as.tsc.forget(e.Addr())
		}
	}
}

// tscCandidates returns the offsets in page of the byte sequences 0F 31
// (rdtsc) and 0F 01 F9 (rdtscp); next holds the bytes that follow the
// page. Sequences that start in next are included too (offsets from
// len(page) on): a prefixed rdtsc may start in the page with its 0F in
// the next one.
func tscCandidates(page, next []byte) []int {
	var out []int
	at := func(i int) (byte, bool) {
		switch {
		case i < len(page):
			return page[i], true
		case i-len(page) < len(next):
			return next[i-len(page)], true
		}
		return 0, false
	}
	for i := 0; i < len(page)+len(next); i++ {
		if b, _ := at(i); b != 0x0F {
			continue
		}
		b1, ok := at(i + 1)
		if !ok {
			continue
		}
		if b1 == 0x31 {
			out = append(out, i)
		} else if b2, ok := at(i + 2); ok && b1 == 0x01 && b2 == 0xF9 {
			out = append(out, i)
		}
	}
	return out
}

// findTSC decides which bytes of the page pva of v (leaf entry e) start
// an rdtsc or rdtscp instruction. It returns their offsets, how many
// rdtsc-like byte sequences it could not decide, and the address of the
// first of those.
func (as *AddressSpace) findTSC(v *VMA, pva uint64, e PTE) (sites []uint16, undecided int, first uint64) {
	pa := e.Addr()
	var next [16]byte
	n := as.peekCode(pva+PageSize, next[:])
	cands := tscCandidates(as.mem[pa:pa+PageSize], next[:n])
	if len(cands) == 0 {
		return nil, 0, 0
	}
	code := as.tsc.elfCodeOf(v)
	from := v.Start
	if code != nil {
		off := v.offsetOf(pva)
		if e&Copied == 0 {
			// The frame holds the file's bytes: use the file's decoding.
			i, _ := slices.BinarySearch(code.sites, off)
			for ; i < len(code.sites) && code.sites[i] < off+PageSize; i++ {
				sites = append(sites, uint16(code.sites[i]-off))
			}
			for _, c := range cands {
				if c < PageSize && code.lostAt(off+uint64(c)) {
					if undecided == 0 {
						first = pva + uint64(c)
					}
					undecided++
				}
			}
			return sites, undecided, first
		}
		// A modified page: decode its current bytes from the last known
		// boundary before it.
		b, ok := code.boundaryBefore(off)
		if !ok || b < v.Offset {
			return as.undecidedAll(pva, cands)
		}
		from = v.Start + (b - v.Offset)
	}
	if pva-from > maxSweep {
		return as.undecidedAll(pva, cands)
	}
	return as.sweep(from, pva, cands)
}

func (as *AddressSpace) undecidedAll(pva uint64, cands []int) ([]uint16, int, uint64) {
	n := 0
	for _, c := range cands {
		if c < PageSize {
			n++
		}
	}
	return nil, n, pva + uint64(cands[0])
}

// sweep decodes instructions from from, a known instruction boundary,
// through the page pva, and returns the rdtsc/rdtscp instructions that
// start in the page. Candidates after a byte that does not decode are
// undecided.
func (as *AddressSpace) sweep(from, pva uint64, cands []int) (sites []uint16, undecided int, first uint64) {
	end := pva + PageSize
	buf := make([]byte, 0, 64<<10)
	var bufAt uint64
	va := from
	for va < end {
		if va < bufAt || va+16 > bufAt+uint64(len(buf)) {
			bufAt = va
			buf = buf[:cap(buf)]
			buf = buf[:as.peekCode(va, buf)]
		}
		inst, ok := decodeInst(buf[va-bufAt:])
		if !ok {
			break
		}
		if va >= pva && (inst.Op == x86asm.RDTSC || inst.Op == x86asm.RDTSCP) {
			sites = append(sites, uint16(va-pva))
		}
		va += uint64(inst.Len)
	}
	if va < end {
		for _, c := range cands {
			if c < PageSize && pva+uint64(c) >= va {
				if undecided == 0 {
					first = pva + uint64(c)
				}
				undecided++
			}
		}
	}
	return sites, undecided, first
}

// decodeInst decodes one 64-bit instruction. x86asm does not know the
// hint NOPs 0F 18..0F 1E with a ModRM byte (endbr64 is F3 0F 1E FA), nor
// 0F 1F with a register operand, and takes a prefix before them for an
// instruction of its own; they are measured here: a register operand
// ends the instruction, a memory operand has the length of the NOP
// 0F 1F /0 with the same addressing. A few more that x86asm lacks or
// mismeasures are measured below. An instruction x86asm returns without
// an opcode (a lone prefix) counts as undecodable. On the text of bash,
// busybox (glibc, AVX-512) and libc.so.6 of Debian 12 this gives exactly
// objdump's instruction boundaries.
func decodeInst(b []byte) (x86asm.Inst, bool) {
	b = b[:min(len(b), 15)]
	i := 0
	for i < len(b) && isPrefix(b[i]) {
		i++
	}
	if i+2 < len(b) && b[i] == 0x0F && b[i+1] >= 0x18 && b[i+1] <= 0x1F {
		if b[i+2]>>6 == 3 {
			return x86asm.Inst{Op: x86asm.NOP, Len: i + 3}, true
		}
		c := slices.Clone(b)
		c[i+1] = 0x1F
		c[i+2] &^= 0x38 // x86asm knows only 0F 1F /0
		inst, err := x86asm.Decode(c, 64)
		inst.Op = x86asm.NOP
		return inst, err == nil && inst.Len > i+2
	}
	// 0F AE with a register operand (lfence, mfence, sfence, rdfsbase,
	// incsspq, ...): the ModRM byte ends it.
	if i+2 < len(b) && b[i] == 0x0F && b[i+1] == 0xAE && b[i+2]>>6 == 3 {
		return x86asm.Inst{Op: x86asm.LFENCE, Len: i + 3}, true
	}
	// adcx and adox (66/F3 0F 38 F6 /r), unknown to x86asm, have the shape
	// of pshufb (66 0F 38 00 /r).
	if i+3 < len(b) && b[i] == 0x0F && b[i+1] == 0x38 && b[i+2] == 0xF6 {
		c := slices.Clone(b)
		for k := range i {
			if c[k] == 0xF3 {
				c[k] = 0x66
			}
		}
		c[i+2] = 0x00
		inst, err := x86asm.Decode(c, 64)
		return x86asm.Inst{Op: x86asm.ADC, Len: inst.Len}, err == nil && inst.Op != 0
	}
	// vzeroupper and vzeroall (VEX 0F 77) have no ModRM byte, but x86asm
	// counts one when more bytes follow.
	if i+2 < len(b) && b[i] == 0xC5 && b[i+2] == 0x77 {
		return x86asm.Inst{Op: x86asm.VZEROUPPER, Len: i + 3}, true
	}
	if i+3 < len(b) && b[i] == 0xC4 && b[i+1]&0x1F == 1 && b[i+3] == 0x77 {
		return x86asm.Inst{Op: x86asm.VZEROUPPER, Len: i + 4}, true
	}
	inst, err := x86asm.Decode(b, 64)
	if err != nil && i+2 < len(b) && b[i] == 0x0F && b[i+1] == 0x01 && b[i+2]>>6 == 3 {
		// Other 0F 01 instructions with a register ModRM (rdpkru,
		// wrpkru, ...) end with it; x86asm knows rdtscp (0F 01 F9).
		return x86asm.Inst{Op: x86asm.NOP, Len: i + 3}, true
	}
	return inst, err == nil && inst.Op != 0
}

func isPrefix(b byte) bool {
	switch b {
	case 0x66, 0x67, 0xF0, 0xF2, 0xF3, 0x2E, 0x36, 0x3E, 0x26, 0x64, 0x65:
		return true
	}
	return b&0xF0 == 0x40 // REX
}

// peekCode copies the bytes at va into buf as the program would fetch
// them, without faulting anything in: present pages from their frames
// (original bytes), absent file pages from the file, absent anonymous
// pages as zeros. It stops at a hole, a device or a non-executable
// mapping and returns how many bytes it copied.
func (as *AddressSpace) peekCode(va uint64, buf []byte) int {
	return as.peek(va, buf, ProtExec)
}

// elfCode is the decoding of an executable file's code sections: the file
// offsets of its rdtsc and rdtscp instructions and the ranges that could
// not be decoded.
type elfCode struct {
	code  [][2]uint64 // file ranges of the executable sections, sorted
	syncs []uint64    // known instruction boundaries (section and function starts), sorted
	sites []uint64    // rdtsc/rdtscp instructions, sorted
	lost  [][2]uint64 // ranges that did not decode, sorted
}

// lostAt reports whether off lies in code that did not decode.
func (c *elfCode) lostAt(off uint64) bool {
	for _, r := range c.lost {
		if off >= r[0] && off < r[1] {
			return true
		}
	}
	return false
}

// boundaryBefore returns the last known instruction boundary at or before
// off inside the same code section.
func (c *elfCode) boundaryBefore(off uint64) (uint64, bool) {
	i := sort.Search(len(c.syncs), func(i int) bool { return c.syncs[i] > off })
	if i == 0 {
		return 0, false
	}
	b := c.syncs[i-1]
	for _, r := range c.code {
		if b >= r[0] && off < r[1] && off >= r[0] {
			return b, true
		}
	}
	return 0, false
}

// elfCodeOf returns the decoding of v's file when v maps an ELF file with
// section headers, decoding it on first use. Files whose pages are guest
// frames (tmpfs) may change and are not cached: nil.
func (p *TSCPatch) elfCodeOf(v *VMA) *elfCode {
	b := v.Backing
	if !v.isFile() || b == nil {
		return nil
	}
	if _, ok := b.(PageCache); ok {
		return nil
	}
	if !reflect.TypeOf(b).Comparable() {
		return nil
	}
	p.mu.Lock()
	c, ok := p.files[b]
	p.mu.Unlock()
	if ok {
		return c
	}
	c = decodeELF(b)
	p.mu.Lock()
	p.files[b] = c
	p.mu.Unlock()
	return c
}

// decodeELF decodes the executable sections of the ELF file behind r by
// a linear sweep from each known instruction boundary (the start of an
// executable section, of each function symbol, and of each function the
// unwind tables in .eh_frame describe) to the next. Only the stretches
// that hold rdtsc-like bytes are decoded. An instruction that would run
// over the next boundary means the sweep lost its way: that stretch counts
// as lost. A byte that does not decode makes the rest of its stretch lost.
// It returns nil when r is not an x86-64 ELF file with executable
// sections.
func decodeELF(r io.ReaderAt) *elfCode {
	f, err := elf.NewFile(r)
	if err != nil || f.Machine != elf.EM_X86_64 {
		return nil
	}
	c := &elfCode{}
	var secs []*elf.Section
	for _, s := range f.Sections {
		if s.Type == elf.SHT_PROGBITS && s.Flags&elf.SHF_EXECINSTR != 0 && s.Flags&elf.SHF_ALLOC != 0 && s.Size > 0 {
			secs = append(secs, s)
			c.code = append(c.code, [2]uint64{s.Offset, s.Offset + s.Size})
		}
	}
	if len(secs) == 0 {
		return nil
	}
	var starts []uint64 // function addresses
	syms, _ := f.Symbols()
	for _, sym := range syms {
		if elf.ST_TYPE(sym.Info) == elf.STT_FUNC {
			starts = append(starts, sym.Value)
		}
	}
	if eh := f.Section(".eh_frame"); eh != nil && eh.Type == elf.SHT_PROGBITS {
		if data, err := eh.Data(); err == nil {
			starts = append(starts, fdeStarts(data, eh.Addr)...)
		}
	}
	for _, s := range secs {
		data, err := s.Data()
		if err != nil {
			c.lost = append(c.lost, [2]uint64{s.Offset, s.Offset + s.Size})
			continue
		}
		bounds := []uint64{0, s.Size}
		for _, a := range starts {
			if a > s.Addr && a < s.Addr+s.Size {
				bounds = append(bounds, a-s.Addr)
			}
		}
		slices.Sort(bounds)
		bounds = slices.Compact(bounds)
		for _, b := range bounds[:len(bounds)-1] {
			c.syncs = append(c.syncs, s.Offset+b)
		}
		cands := tscCandidates(data, nil)
		for k := 0; k+1 < len(bounds) && len(cands) > 0; k++ {
			lo, hi := bounds[k], bounds[k+1]
			if uint64(cands[0]) >= hi {
				continue
			}
			for len(cands) > 0 && uint64(cands[0]) < hi {
				cands = cands[1:]
			}
			var found []uint64
			at := lo
			for at < hi {
				inst, ok := decodeInst(data[at:])
				if !ok {
					break
				}
				if inst.Op == x86asm.RDTSC || inst.Op == x86asm.RDTSCP {
					found = append(found, s.Offset+at)
				}
				at += uint64(inst.Len)
			}
			switch {
			case at == hi:
				c.sites = append(c.sites, found...)
			case at > hi: // ran over the next boundary: lost its way somewhere
				c.lost = append(c.lost, [2]uint64{s.Offset + lo, s.Offset + hi})
			default: // undecodable byte: keep what came before it
				c.sites = append(c.sites, found...)
				c.lost = append(c.lost, [2]uint64{s.Offset + at, s.Offset + hi})
			}
		}
	}
	slices.Sort(c.syncs)
	slices.Sort(c.sites)
	return c
}

// fdeStarts returns the initial locations of the FDEs in an .eh_frame
// section loaded at addr: the starts of the functions it describes.
// Records it cannot read end the walk.
func fdeStarts(data []byte, addr uint64) []uint64 {
	le := binary.LittleEndian
	enc := map[int]byte{} // CIE offset -> FDE pointer encoding
	var out []uint64
	for off := 0; off+8 <= len(data); {
		length := uint64(le.Uint32(data[off:]))
		hdr := 4
		if length == 0 {
			break // terminator
		}
		if length == 0xffffffff {
			if off+12 > len(data) {
				break
			}
			length, hdr = le.Uint64(data[off+4:]), 12
		}
		if length > uint64(len(data)-off-hdr) || length < 4 {
			break
		}
		rec := data[off+hdr : off+hdr+int(length)]
		idAt := off + hdr
		id := le.Uint32(rec)
		if id == 0 { // CIE
			if e, ok := cieEncoding(rec[4:]); ok {
				enc[off] = e
			}
		} else if cie := idAt - int(id); cie >= 0 {
			if e, ok := enc[cie]; ok {
				if pc, ok := readEncoded(rec[4:], e, addr+uint64(idAt+4)); ok {
					out = append(out, pc)
				}
			}
		}
		off += hdr + int(length)
	}
	return out
}

// cieEncoding returns the FDE pointer encoding of a CIE ('R' in its
// augmentation; absolute 8-byte pointers without one). b starts at the
// version byte.
func cieEncoding(b []byte) (byte, bool) {
	if len(b) < 2 {
		return 0, false
	}
	version := b[0]
	end := bytes.IndexByte(b[1:], 0)
	if end < 0 {
		return 0, false
	}
	aug := string(b[1 : 1+end])
	rest := b[2+end:]
	if strings.Contains(aug, "eh") {
		return 0, false
	}
	var ok bool
	if _, rest, ok = uleb(rest); !ok { // code alignment
		return 0, false
	}
	if _, rest, ok = uleb(rest); !ok { // data alignment (SLEB; only skipped)
		return 0, false
	}
	if version == 1 {
		if len(rest) < 1 {
			return 0, false
		}
		rest = rest[1:]
	} else if _, rest, ok = uleb(rest); !ok {
		return 0, false
	}
	if !strings.HasPrefix(aug, "z") {
		return 0x00, true // DW_EH_PE_absptr
	}
	if _, rest, ok = uleb(rest); !ok { // augmentation data length
		return 0, false
	}
	for _, ch := range aug[1:] {
		switch ch {
		case 'R':
			if len(rest) < 1 {
				return 0, false
			}
			return rest[0], true
		case 'L':
			if len(rest) < 1 {
				return 0, false
			}
			rest = rest[1:]
		case 'P':
			if len(rest) < 1 {
				return 0, false
			}
			n := encodedSize(rest[0])
			if n <= 0 || len(rest) < 1+n {
				return 0, false
			}
			rest = rest[1+n:]
		case 'S', 'B':
		default:
			return 0, false
		}
	}
	return 0x00, true
}

// encodedSize is the size of a fixed-size DW_EH_PE value (0: variable or
// unknown).
func encodedSize(e byte) int {
	switch e & 0x0f {
	case 0x00, 0x04, 0x0c:
		return 8
	case 0x02, 0x0a:
		return 2
	case 0x03, 0x0b:
		return 4
	}
	return 0
}

// readEncoded reads a DW_EH_PE-encoded pointer at the start of b, whose
// address is at (for pc-relative values).
func readEncoded(b []byte, e byte, at uint64) (uint64, bool) {
	if e == 0xff || e&0x80 != 0 { // omitted, indirect
		return 0, false
	}
	le := binary.LittleEndian
	var v uint64
	switch n := encodedSize(e); {
	case n == 8 && len(b) >= 8:
		v = le.Uint64(b)
	case n == 4 && len(b) >= 4:
		if e&0x08 != 0 {
			v = uint64(int64(int32(le.Uint32(b))))
		} else {
			v = uint64(le.Uint32(b))
		}
	case n == 2 && len(b) >= 2:
		if e&0x08 != 0 {
			v = uint64(int64(int16(le.Uint16(b))))
		} else {
			v = uint64(le.Uint16(b))
		}
	default:
		return 0, false
	}
	switch e & 0x70 {
	case 0x00:
	case 0x10: // pc-relative
		v += at
	default:
		return 0, false
	}
	return v, true
}

// uleb reads an unsigned LEB128 value.
func uleb(b []byte) (uint64, []byte, bool) {
	var v uint64
	for i := 0; i < len(b) && i < 10; i++ {
		v |= uint64(b[i]&0x7f) << (7 * i)
		if b[i]&0x80 == 0 {
			return v, b[i+1:], true
		}
	}
	return 0, nil, false
}
