package loader

import (
	"debug/elf"
	"encoding/binary"
)

// This file holds a tiny ELF writer for tests: elfSpec describes a file
// with a 64-byte header, the program header table right after it and
// arbitrary file contents; bytes() serializes it. Malformed files are made
// by changing the spec or by patching the serialized bytes.

type prog struct {
	Type   elf.ProgType
	Flags  elf.ProgFlag
	Off    uint64
	Vaddr  uint64
	Filesz uint64
	Memsz  uint64
	Align  uint64
}

type patch struct {
	off  int
	data []byte
}

type elfSpec struct {
	Type    elf.Type
	Machine elf.Machine
	Entry   uint64
	Phoff   uint64 // 0 means right after the header
	Progs   []prog
	Size    int     // file size; 0 means just large enough for every segment
	Patches []patch // raw bytes written last
}

const (
	pfR = elf.PF_R
	pfW = elf.PF_W
	pfX = elf.PF_X
)

// validExec is a well-formed static ET_EXEC laid out like GNU ld's default:
// a read-only segment holding the headers, text, and data with a .bss. It
// is packed into 0x1e0 bytes (each segment in its own memory page but
// sharing file pages) to keep fuzzing inputs small.
func validExec() elfSpec {
	return elfSpec{
		Type:  elf.ET_EXEC,
		Entry: 0x401190,
		Progs: []prog{
			{Type: elf.PT_LOAD, Flags: pfR, Off: 0, Vaddr: 0x400000, Filesz: 0x160, Memsz: 0x160, Align: 0x1000},
			{Type: elf.PT_LOAD, Flags: pfR | pfX, Off: 0x180, Vaddr: 0x401180, Filesz: 0x40, Memsz: 0x40, Align: 0x1000},
			{Type: elf.PT_LOAD, Flags: pfR | pfW, Off: 0x1c0, Vaddr: 0x4021c0, Filesz: 0x20, Memsz: 0x3000, Align: 0x1000},
			{Type: elf.PT_GNU_STACK, Flags: pfR | pfW, Align: 0x10},
		},
	}
}

// validPIE is a well-formed static-pie (ET_DYN linked at 0).
func validPIE() elfSpec {
	s := validExec()
	s.Type = elf.ET_DYN
	s.Entry -= 0x400000
	for i := range s.Progs {
		if s.Progs[i].Type == elf.PT_LOAD {
			s.Progs[i].Vaddr -= 0x400000
		}
	}
	return s
}

// with returns a copy of s changed by f.
func (s elfSpec) with(f func(s *elfSpec)) elfSpec {
	s.Progs = append([]prog(nil), s.Progs...)
	s.Patches = append([]patch(nil), s.Patches...)
	f(&s)
	return s
}

func (s elfSpec) bytes() []byte {
	phoff := s.Phoff
	if phoff == 0 {
		phoff = ehdrSize
	}
	size := int(phoff) + len(s.Progs)*phdrSize
	for _, p := range s.Progs {
		if end := p.Off + p.Filesz; p.Type == elf.PT_LOAD && end < 1<<20 {
			size = max(size, int(end))
		}
	}
	if s.Size != 0 {
		size = s.Size
	}
	for _, p := range s.Patches {
		size = max(size, p.off+len(p.data))
	}
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(i*7 + 1) // recognizable contents, never all zero
	}

	machine := s.Machine
	if machine == 0 {
		machine = elf.EM_X86_64
	}
	le := binary.LittleEndian
	copy(b, elf.ELFMAG)
	b[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	b[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	b[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	clear(b[7:16])
	le.PutUint16(b[16:], uint16(s.Type))
	le.PutUint16(b[18:], uint16(machine))
	le.PutUint32(b[20:], uint32(elf.EV_CURRENT))
	le.PutUint64(b[24:], s.Entry)
	le.PutUint64(b[32:], phoff)
	le.PutUint64(b[40:], 0) // no section headers
	le.PutUint32(b[48:], 0)
	le.PutUint16(b[52:], ehdrSize)
	le.PutUint16(b[54:], phdrSize)
	le.PutUint16(b[56:], uint16(len(s.Progs)))
	le.PutUint16(b[58:], 64)
	le.PutUint16(b[60:], 0)
	le.PutUint16(b[62:], 0)
	for i, p := range s.Progs {
		h := b[int(phoff)+i*phdrSize:]
		le.PutUint32(h[0:], uint32(p.Type))
		le.PutUint32(h[4:], uint32(p.Flags))
		le.PutUint64(h[8:], p.Off)
		le.PutUint64(h[16:], p.Vaddr)
		le.PutUint64(h[24:], p.Vaddr)
		le.PutUint64(h[32:], p.Filesz)
		le.PutUint64(h[40:], p.Memsz)
		le.PutUint64(h[48:], p.Align)
	}
	for _, p := range s.Patches {
		copy(b[p.off:], p.data)
	}
	return b
}

// Raw byte patching helpers for header fields; they modify b in place and
// return it.
func put8(b []byte, off int, v uint8) []byte { b[off] = v; return b }
func put16(b []byte, off int, v uint16) []byte {
	binary.LittleEndian.PutUint16(b[off:], v)
	return b
}
func put64(b []byte, off int, v uint64) []byte {
	binary.LittleEndian.PutUint64(b[off:], v)
	return b
}
