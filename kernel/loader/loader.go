package loader

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"math/bits"
	"strings"
)

// Address-space constants (x86-64 Linux, 4-level paging).
const (
	// PageSize is the x86-64 page size (ELF_EXEC_PAGESIZE).
	PageSize = 4096

	// UserSpaceEnd is the exclusive upper end of user address space
	// (TASK_SIZE_MAX = 2^47 - one guard page). Linux also uses it as the
	// stack top.
	UserSpaceEnd = 0x7ffffffff000

	// MinAddr is the lowest address a segment may be mapped at: Linux's
	// default vm.mmap_min_addr, which keeps NULL-pointer dereferences
	// faulting.
	MinAddr = 0x10000

	// DynBase is Linux's ELF_ET_DYN_BASE for x86-64 (2/3 of the 47-bit
	// user address space). ET_DYN images load just below it, rounded
	// down to their alignment; 0x555555554000 for page-aligned images.
	DynBase = UserSpaceEnd / 3 * 2
)

// Memory protection bits of Segment.Prot; same values as PROT_READ,
// PROT_WRITE and PROT_EXEC.
const (
	ProtRead  = 0x1
	ProtWrite = 0x2
	ProtExec  = 0x4
)

// Sizes of ELF64 structures.
const (
	ehdrSize = 64 // sizeof(Elf64_Ehdr)
	phdrSize = 56 // sizeof(Elf64_Phdr)

	// maxPhdrBytes is the largest program header table Linux accepts
	// for an executable (load_elf_phdrs: size <= ELF_MIN_ALIGN), i.e. at
	// most 73 entries. It also bounds what Parse allocates.
	maxPhdrBytes = PageSize

	// pathMax is Linux's PATH_MAX, the largest PT_INTERP it accepts.
	pathMax = 4096
)

// Image is the load plan for one executable, produced by Parse. Addresses
// are unrelocated (link-time) addresses: add Bias() to get guest addresses.
type Image struct {
	Type  elf.Type // elf.ET_EXEC, or elf.ET_DYN for static-pie
	Entry uint64   // e_entry, unrelocated

	// Segments are the PT_LOAD segments with a non-zero memory size, in
	// file order, which Parse has checked is ascending by address and
	// free of overlapping byte ranges.
	Segments []Segment

	// PhdrVaddr is the unrelocated address of the program header table
	// in memory, for AT_PHDR (static libcs read their PT_TLS from it).
	// It comes from PT_PHDR, or else from the first PT_LOAD whose file
	// bytes contain the table. It is 0 if the table is not loaded, in
	// which case Linux passes AT_PHDR = bias anyway.
	PhdrVaddr uint64
	Phent     uint64 // e_phentsize, for AT_PHENT (always 56)
	Phnum     uint64 // e_phnum, for AT_PHNUM

	// StackExec is true if PT_GNU_STACK asks for an executable stack. On
	// x86-64 Linux a missing PT_GNU_STACK means a non-executable stack.
	StackExec bool
}

// Segment is one PT_LOAD segment: map [Vaddr, Vaddr+Memsz) with Prot, fill
// the first Filesz bytes from Data and zero the rest (the .bss).
type Segment struct {
	Vaddr  uint64 // p_vaddr, unrelocated
	Memsz  uint64 // p_memsz, >= Filesz, > 0
	Filesz uint64 // p_filesz
	Offset uint64 // p_offset; Offset%PageSize == Vaddr%PageSize
	Align  uint64 // p_align: 0, 1 or a power of two
	Prot   uint32 // ProtRead|ProtWrite|ProtExec, from p_flags

	// Data is the file bytes [Offset, Offset+Filesz). It aliases the
	// slice given to Parse: do not modify it.
	Data []byte
}

// End returns the unrelocated end address Vaddr+Memsz (exclusive).
func (s *Segment) End() uint64 { return s.Vaddr + s.Memsz }

// PageDown rounds addr down to a page boundary.
func PageDown(addr uint64) uint64 { return addr &^ (PageSize - 1) }

// PageUp rounds addr up to a page boundary. addr must be at most
// 2^64 - PageSize.
func PageUp(addr uint64) uint64 { return PageDown(addr + PageSize - 1) }

// Bias returns the load bias, the amount to add to every address in the
// Image: 0 for ET_EXEC; for ET_DYN the value that puts the first segment's
// page at DynBase rounded down to the image's largest alignment, as Linux's
// load_elf_binary does with randomization off. Additions wrap modulo 2^64,
// which only matters for ET_DYN images linked at high addresses.
func (img *Image) Bias() uint64 {
	if img.Type != elf.ET_DYN {
		return 0
	}
	base := uint64(DynBase) &^ (img.maxAlign() - 1)
	if len(img.Segments) == 0 {
		return PageDown(base)
	}
	return PageDown(base - img.Segments[0].Vaddr)
}

// maxAlign is Linux's maximum_alignment: the largest power-of-two p_align,
// at least PageSize.
func (img *Image) maxAlign() uint64 {
	align := uint64(PageSize)
	for _, s := range img.Segments {
		if s.Align > align && s.Align&(s.Align-1) == 0 {
			align = s.Align
		}
	}
	return align
}

// InitialBrk returns the guest address where the program break starts: the
// end of the highest segment (its .bss), relocated and rounded up to a page.
func (img *Image) InitialBrk() uint64 {
	var end uint64
	for _, s := range img.Segments {
		end = max(end, s.End())
	}
	return PageUp(end + img.Bias())
}

// phdr is one decoded Elf64_Phdr.
type phdr struct {
	index  int // position in the table, for error messages
	typ    elf.ProgType
	flags  elf.ProgFlag
	offset uint64
	vaddr  uint64
	filesz uint64
	memsz  uint64
	align  uint64
}

func (p *phdr) String() string {
	return fmt.Sprintf("program header %d (%s)", p.index, p.typ)
}

// Parse validates an ELF image and returns its load plan. data is the whole
// file; the returned Segments alias it. Errors are *Error values whose Kind
// is ErrNotELF, ErrWrongArch, ErrDynamic or ErrCorrupt.
func Parse(data []byte) (*Image, error) {
	if err := checkIdent(data); err != nil {
		return nil, err
	}
	if len(data) < ehdrSize {
		return nil, corrupt("truncated ELF header: file is %d bytes, the header alone is %d", len(data), ehdrSize)
	}
	le := binary.LittleEndian
	img := &Image{
		Type:  elf.Type(le.Uint16(data[16:])),
		Entry: le.Uint64(data[24:]),
		Phent: uint64(le.Uint16(data[54:])),
		Phnum: uint64(le.Uint16(data[56:])),
	}
	if err := checkType(img.Type); err != nil {
		return nil, err
	}

	phdrs, err := readPhdrs(data, le.Uint64(data[32:]), img.Phent, img.Phnum)
	if err != nil {
		return nil, err
	}
	// A dynamic program is the most likely reason for failure, and the
	// one whose fix is clearest, so report it before any other problem.
	for i := range phdrs {
		if phdrs[i].typ == elf.PT_INTERP {
			return nil, dynamicError(data, &phdrs[i])
		}
	}

	loads := 0
	for i := range phdrs {
		if phdrs[i].typ == elf.PT_LOAD {
			loads++
		}
	}
	img.Segments = make([]Segment, 0, loads)
	hasPhdr := false
	for i := range phdrs {
		p := &phdrs[i]
		switch p.typ {
		case elf.PT_LOAD:
			if err := img.addSegment(data, p); err != nil {
				return nil, err
			}
		case elf.PT_PHDR:
			if !hasPhdr {
				img.PhdrVaddr, hasPhdr = p.vaddr, true
			}
		case elf.PT_GNU_STACK:
			img.StackExec = p.flags&elf.PF_X != 0
		}
	}
	if len(img.Segments) == 0 {
		return nil, corrupt("no loadable (PT_LOAD) segments")
	}
	if !hasPhdr {
		img.PhdrVaddr = img.phdrFromLoad(le.Uint64(data[32:]))
	}
	if err := img.checkEntry(); err != nil {
		return nil, err
	}
	if err := img.checkPlacement(); err != nil {
		return nil, err
	}
	return img, nil
}

// checkIdent checks the magic number, class, byte order and machine. These
// are checked before the header length so that a 32-bit ELF (whose header
// is shorter) is reported as the wrong architecture, not as truncated.
func checkIdent(data []byte) error {
	if !bytes.HasPrefix(data, []byte(elf.ELFMAG)) {
		return notELF(data)
	}
	const identEnd = 20 // e_ident, e_type, e_machine
	if len(data) < identEnd {
		return corrupt("truncated ELF header: file is only %d bytes", len(data))
	}
	class := elf.Class(data[elf.EI_CLASS])
	order := elf.Data(data[elf.EI_DATA])
	if class != elf.ELFCLASS32 && class != elf.ELFCLASS64 {
		return corrupt("invalid ELF class %d in e_ident", data[elf.EI_CLASS])
	}
	var machine elf.Machine
	switch order {
	case elf.ELFDATA2LSB:
		machine = elf.Machine(binary.LittleEndian.Uint16(data[18:]))
	case elf.ELFDATA2MSB:
		machine = elf.Machine(binary.BigEndian.Uint16(data[18:]))
	default:
		return corrupt("invalid ELF data encoding %d in e_ident", data[elf.EI_DATA])
	}
	name := machineName(machine)
	width := 64
	if class == elf.ELFCLASS32 {
		width = 32
	}
	switch {
	case order == elf.ELFDATA2MSB:
		// Said first: the byte order is what decides how every other
		// field reads, and no x86 program is big-endian.
		return wrongArch("big-endian %d-bit ELF for %s, need little-endian 64-bit x86-64", width, name)
	case class == elf.ELFCLASS32 && machine == elf.EM_X86_64:
		return wrongArch("32-bit ELF for x86-64 (the x32 ABI), need 64-bit x86-64")
	case class == elf.ELFCLASS32:
		return wrongArch("32-bit ELF for %s, need 64-bit x86-64", name)
	case machine != elf.EM_X86_64:
		return wrongArch("ELF for %s, need x86-64", name)
	}
	return nil
}

// machineName gives a readable name for the machines people are likely to
// come across, debug/elf's EM_ name for the other known ones, and the
// number for the rest (debug/elf would call 52733 "EM_ALPHA_STD+15831").
func machineName(m elf.Machine) string {
	switch m {
	case elf.EM_386:
		return "i386"
	case elf.EM_AARCH64:
		return "AArch64"
	case elf.EM_ARM:
		return "32-bit ARM"
	case elf.EM_RISCV:
		return "RISC-V"
	case elf.EM_PPC64:
		return "PowerPC64"
	case elf.EM_PPC:
		return "PowerPC"
	case elf.EM_S390:
		return "IBM Z (s390)"
	case elf.EM_MIPS:
		return "MIPS"
	case elf.EM_LOONGARCH:
		return "LoongArch"
	case elf.EM_SPARCV9:
		return "SPARC V9"
	case elf.EM_X86_64:
		return "x86-64"
	case elf.EM_NONE:
		return "no machine (EM_NONE)"
	}
	if name := m.String(); !strings.Contains(name, "+") && strings.HasPrefix(name, "EM_") {
		return name
	}
	return fmt.Sprintf("unknown machine %d (%#x)", uint16(m), uint16(m))
}

// notELF builds the ErrNotELF error, naming the kind of file if it is a
// common one.
func notELF(data []byte) error {
	e := &Error{Kind: ErrNotELF, Hint: hintNotELF}
	switch {
	case len(data) == 0:
		e.Detail = "not an ELF file: the file is empty"
	case bytes.HasPrefix(data, []byte("#!")):
		line, _, _ := bytes.Cut(data[2:], []byte("\n"))
		e.Detail = "not an ELF file: it is a script (#!" + printable(bytes.TrimSpace(line), 80) + ")"
		e.Hint = "emuckpt does not run scripts directly: run a static build of the interpreter with the script as its argument"
	case bytes.HasPrefix(data, []byte("!<arch>\n")):
		e.Detail = "not an ELF file: it is an ar archive (a static library?)"
		e.Hint = "link the library into a static executable"
	case bytes.HasPrefix(data, []byte("MZ")):
		e.Detail = "not an ELF file: it is a DOS/Windows (PE) executable"
	case bytes.HasPrefix(data, []byte{0xcf, 0xfa, 0xed, 0xfe}), bytes.HasPrefix(data, []byte{0xce, 0xfa, 0xed, 0xfe}):
		e.Detail = "not an ELF file: it is a macOS (Mach-O) executable"
	default:
		n := min(len(data), 4)
		e.Detail = fmt.Sprintf("not an ELF file: it starts with % x, not 7f 45 4c 46 (\"\\x7fELF\")", data[:n])
	}
	return e
}

// checkType accepts ET_EXEC and ET_DYN and explains the other types.
func checkType(t elf.Type) error {
	switch t {
	case elf.ET_EXEC, elf.ET_DYN:
		return nil
	case elf.ET_REL:
		e := corrupt("relocatable object file (ET_REL, a .o file), not an executable")
		e.Hint = "link it into a static executable first, e.g. gcc -static -o prog file.o"
		return e
	case elf.ET_CORE:
		e := corrupt("core dump (ET_CORE), not an executable")
		e.Hint = "run the program that produced it instead"
		return e
	}
	return corrupt("ELF type %v is not an executable: need ET_EXEC or ET_DYN", t)
}

// readPhdrs decodes the program header table after checking that it lies
// inside the file and has the size Linux accepts.
func readPhdrs(data []byte, phoff, phent, phnum uint64) ([]phdr, error) {
	if phent != phdrSize {
		return nil, corrupt("e_phentsize is %d, an ELF64 program header is %d bytes", phent, phdrSize)
	}
	if phnum == 0 {
		return nil, corrupt("no program headers (e_phnum is 0)")
	}
	if phnum*phdrSize > maxPhdrBytes { // cannot overflow: phnum < 2^16
		return nil, corrupt("%d program headers, Linux accepts at most %d", phnum, maxPhdrBytes/phdrSize)
	}
	end, ok := addOK(phoff, phnum*phdrSize)
	if !ok || end > uint64(len(data)) {
		return nil, corrupt("program header table (offset %#x, %d entries) extends past the end of the file (%#x bytes)",
			phoff, phnum, len(data))
	}
	le := binary.LittleEndian
	phdrs := make([]phdr, phnum)
	for i := range phdrs {
		b := data[phoff+uint64(i)*phdrSize:]
		phdrs[i] = phdr{
			index:  i,
			typ:    elf.ProgType(le.Uint32(b[0:])),
			flags:  elf.ProgFlag(le.Uint32(b[4:])),
			offset: le.Uint64(b[8:]),
			vaddr:  le.Uint64(b[16:]),
			// p_paddr at b[24:] is unused.
			filesz: le.Uint64(b[32:]),
			memsz:  le.Uint64(b[40:]),
			align:  le.Uint64(b[48:]),
		}
	}
	return phdrs, nil
}

// dynamicError builds the ErrDynamic error for a PT_INTERP header, or an
// ErrCorrupt one if the header itself is bad (Linux rejects those too).
func dynamicError(data []byte, p *phdr) error {
	end, ok := addOK(p.offset, p.filesz)
	if !ok || end > uint64(len(data)) {
		return corrupt("%v: interpreter path (offset %#x, size %#x) extends past the end of the file (%#x bytes)",
			p, p.offset, p.filesz, len(data))
	}
	if p.filesz < 2 || p.filesz > pathMax {
		return corrupt("%v: interpreter path length %d is not between 2 and %d", p, p.filesz, pathMax)
	}
	path := data[p.offset:end]
	if path[len(path)-1] != 0 {
		return corrupt("%v: interpreter path is not NUL-terminated", p)
	}
	path, _, _ = bytes.Cut(path, []byte{0})
	return &Error{
		Kind:   ErrDynamic,
		Detail: "dynamically linked (interpreter " + printable(path, 256) + ")",
		Hint:   hintStatic,
	}
}

// addSegment validates one PT_LOAD header and appends it to img.Segments.
func (img *Image) addSegment(data []byte, p *phdr) error {
	if p.filesz > p.memsz {
		return corrupt("%v: file size %#x is larger than memory size %#x", p, p.filesz, p.memsz)
	}
	fileEnd, ok := addOK(p.offset, p.filesz)
	if !ok || fileEnd > uint64(len(data)) {
		return corrupt("%v: file contents (offset %#x, size %#x) extend past the end of the file (%#x bytes)",
			p, p.offset, p.filesz, len(data))
	}
	if p.align > 1 && p.align&(p.align-1) != 0 {
		return corrupt("%v: alignment %#x is not a power of two", p, p.align)
	}
	if (p.vaddr-p.offset)%PageSize != 0 {
		return corrupt("%v: address %#x and file offset %#x are not congruent modulo the page size (%#x), so it cannot be mapped",
			p, p.vaddr, p.offset, PageSize)
	}
	end, ok := addOK(p.vaddr, p.memsz)
	if !ok || end > UserSpaceEnd {
		return corrupt("%v: memory range (address %#x, size %#x) extends beyond user address space (ends at %#x)",
			p, p.vaddr, p.memsz, uint64(UserSpaceEnd))
	}
	if p.memsz == 0 {
		return nil // maps nothing; Linux skips it too
	}
	if n := len(img.Segments); n > 0 {
		prev := &img.Segments[n-1]
		if p.vaddr < prev.Vaddr {
			return corrupt("%v at %#x comes after a PT_LOAD at %#x: PT_LOAD segments must be sorted by address",
				p, p.vaddr, prev.Vaddr)
		}
		if p.vaddr < prev.End() {
			return corrupt("%v: memory range [%#x, %#x) overlaps the previous PT_LOAD [%#x, %#x)",
				p, p.vaddr, end, prev.Vaddr, prev.End())
		}
	}
	var prot uint32
	if p.flags&elf.PF_R != 0 {
		prot |= ProtRead
	}
	if p.flags&elf.PF_W != 0 {
		prot |= ProtWrite
	}
	if p.flags&elf.PF_X != 0 {
		prot |= ProtExec
	}
	img.Segments = append(img.Segments, Segment{
		Vaddr:  p.vaddr,
		Memsz:  p.memsz,
		Filesz: p.filesz,
		Offset: p.offset,
		Align:  p.align,
		Prot:   prot,
		Data:   data[p.offset:fileEnd:fileEnd],
	})
	return nil
}

// phdrFromLoad finds the program header table's address through the first
// segment whose file bytes contain the whole table, or returns 0.
func (img *Image) phdrFromLoad(phoff uint64) uint64 {
	size := img.Phnum * img.Phent // readPhdrs checked phoff+size does not overflow
	for _, s := range img.Segments {
		if s.Offset <= phoff && phoff+size <= s.Offset+s.Filesz {
			return s.Vaddr + (phoff - s.Offset)
		}
	}
	return 0
}

// checkEntry requires the entry point to be inside an executable segment.
func (img *Image) checkEntry() error {
	for _, s := range img.Segments {
		if s.Vaddr <= img.Entry && img.Entry < s.End() {
			if s.Prot&ProtExec == 0 {
				return corrupt("entry point %#x is in a segment [%#x, %#x) that is not executable",
					img.Entry, s.Vaddr, s.End())
			}
			return nil
		}
	}
	return corrupt("entry point %#x is not inside any loadable segment", img.Entry)
}

// checkPlacement checks that the relocated image lies within
// [MinAddr, UserSpaceEnd). addSegment has already checked the unrelocated
// addresses against UserSpaceEnd, and with it PageUp's overflow.
func (img *Image) checkPlacement() error {
	lo := PageDown(img.Segments[0].Vaddr)
	hi := PageUp(img.Segments[len(img.Segments)-1].End()) // sorted, no overlaps
	bias := img.Bias()
	start := lo + bias // wraps for ET_DYN images linked above DynBase
	if start < MinAddr {
		return corrupt("first segment is at %#x, below the lowest mappable address %#x (Linux's vm.mmap_min_addr)",
			start, uint64(MinAddr))
	}
	if span := hi - lo; span > UserSpaceEnd-start {
		return corrupt("position-independent image spans %#x bytes, too large to load at %#x below %#x",
			span, start, uint64(UserSpaceEnd))
	}
	return nil
}

// addOK returns a+b and whether it did not overflow.
func addOK(a, b uint64) (uint64, bool) {
	sum, carry := bits.Add64(a, b, 0)
	return sum, carry == 0
}
