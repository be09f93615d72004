package loader

import (
	"debug/elf"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type parseCase struct {
	name string
	data []byte
	kind error  // nil: must parse
	msg  string // substring of the error message
}

const interp = "/lib64/ld-linux-x86-64.so.2"

// parseCases are the crafted files; they also seed FuzzParse.
func parseCases() []parseCase {
	exec, pie := validExec(), validPIE()
	load := func(s *elfSpec, i int) *prog { return &s.Progs[i] }
	withInterp := func(path string, size uint64) elfSpec {
		return exec.with(func(s *elfSpec) {
			s.Progs = append([]prog{{Type: elf.PT_INTERP, Flags: pfR, Off: 0x1e0, Vaddr: 0x4001e0, Filesz: size, Memsz: size, Align: 1}}, s.Progs...)
			s.Patches = append(s.Patches, patch{0x1e0, []byte(path)})
		})
	}
	hdr := func(f func(b []byte) []byte) []byte { return f(exec.bytes()) }

	return []parseCase{
		// Valid files.
		{name: "exec", data: exec.bytes()},
		{name: "static-pie", data: pie.bytes()},
		{name: "text and data share a page", data: exec.with(func(s *elfSpec) {
			// Text [0x401180, 0x4011c0), data right after it in the
			// same memory and file page, as old GNU ld laid files out.
			load(s, 2).Vaddr = 0x4011c0
		}).bytes()},
		{name: "shared page, different file pages", data: exec.with(func(s *elfSpec) {
			load(s, 2).Vaddr = 0x4011c0
			load(s, 2).Off = 0x11c0
		}).bytes()},
		{name: "empty PT_LOAD is skipped", data: exec.with(func(s *elfSpec) {
			s.Progs = append(s.Progs, prog{Type: elf.PT_LOAD, Flags: pfR})
		}).bytes()},
		{name: "PT_PHDR", data: exec.with(func(s *elfSpec) {
			s.Progs = append([]prog{{Type: elf.PT_PHDR, Flags: pfR, Off: 64, Vaddr: 0x400040, Filesz: 5 * phdrSize, Memsz: 5 * phdrSize, Align: 8}}, s.Progs...)
		}).bytes()},
		{name: "executable stack", data: exec.with(func(s *elfSpec) { s.Progs[3].Flags |= pfX }).bytes()},
		{name: "no PT_GNU_STACK", data: exec.with(func(s *elfSpec) { s.Progs = s.Progs[:3] }).bytes()},
		{name: "phdrs not loaded", data: exec.with(func(s *elfSpec) {
			*load(s, 0) = prog{Type: elf.PT_LOAD, Flags: pfR, Off: 0x160, Vaddr: 0x400160, Filesz: 0x10, Memsz: 0x10}
		}).bytes()},
		{name: "align 0", data: exec.with(func(s *elfSpec) { load(s, 1).Align = 0 }).bytes()},
		{name: "pie aligned 2MiB", data: pie.with(func(s *elfSpec) { load(s, 1).Align = 0x200000 }).bytes()},

		// Not ELF at all.
		{name: "empty file", data: []byte{}, kind: ErrNotELF, msg: "not an ELF file: the file is empty"},
		{name: "shell script", data: []byte("#!/bin/sh\necho hi\n"), kind: ErrNotELF, msg: "script (#!/bin/sh)"},
		{name: "text", data: []byte("hello"), kind: ErrNotELF, msg: "starts with 68 65 6c 6c"},
		{name: "ar archive", data: []byte("!<arch>\nfoo.o/"), kind: ErrNotELF, msg: "ar archive"},
		{name: "PE", data: []byte("MZ\x90\x00"), kind: ErrNotELF, msg: "Windows"},
		{name: "Mach-O", data: []byte{0xcf, 0xfa, 0xed, 0xfe, 7, 0, 0, 1}, kind: ErrNotELF, msg: "Mach-O"},
		{name: "short magic", data: []byte("\x7fEL"), kind: ErrNotELF},

		// Wrong architecture.
		{name: "i386", data: hdr(func(b []byte) []byte { return put16(put8(b, 4, 1), 18, uint16(elf.EM_386))[:52] }),
			kind: ErrWrongArch, msg: "32-bit ELF for i386, need 64-bit x86-64"},
		{name: "x32", data: hdr(func(b []byte) []byte { return put8(b, 4, 1) }), kind: ErrWrongArch, msg: "x32 ABI"},
		{name: "aarch64", data: hdr(func(b []byte) []byte { return put16(b, 18, uint16(elf.EM_AARCH64)) }),
			kind: ErrWrongArch, msg: "ELF for AArch64, need x86-64"},
		{name: "big-endian ppc64", data: hdr(func(b []byte) []byte { return put8(put16(b, 18, 0x1500), 5, 2) }),
			kind: ErrWrongArch, msg: "big-endian 64-bit ELF for PowerPC64, need little-endian 64-bit x86-64"},
		{name: "big-endian unknown machine", data: hdr(func(b []byte) []byte { return put8(put16(b, 18, 0xfdcd), 5, 2) }),
			kind: ErrWrongArch, msg: "big-endian 64-bit ELF for unknown machine 52733 (0xcdfd), need little-endian 64-bit x86-64"},
		{name: "big-endian 32-bit", data: hdr(func(b []byte) []byte { return put8(put8(put16(b, 18, 0x0800), 5, 2), 4, 1)[:52] }),
			kind: ErrWrongArch, msg: "big-endian 32-bit ELF for MIPS"},
		{name: "x86-64 with the big-endian flag", data: hdr(func(b []byte) []byte { return put8(b, 5, 2) }),
			kind: ErrWrongArch, msg: "big-endian 64-bit ELF for"},
		{name: "unknown machine", data: hdr(func(b []byte) []byte { return put16(b, 18, 0x1234) }), kind: ErrWrongArch, msg: "ELF for unknown machine 4660 (0x1234), need x86-64"},
		{name: "known machine by debug/elf", data: hdr(func(b []byte) []byte { return put16(b, 18, uint16(elf.EM_SPARC)) }), kind: ErrWrongArch, msg: "ELF for EM_SPARC, need x86-64"},

		// Dynamically linked.
		{name: "PT_INTERP", data: withInterp(interp+"\x00", uint64(len(interp)+1)).bytes(), kind: ErrDynamic,
			msg: "dynamically linked (interpreter " + interp + "); emuckpt runs static programs: rebuild with -static or musl-gcc -static"},
		{name: "PT_INTERP with escapes", data: withInterp("/x\x1b[31m\x00", 8).bytes(), kind: ErrDynamic, msg: `"/x\x1b[31m"`},
		{name: "PT_INTERP long", data: withInterp("/"+strings.Repeat("a", 300)+"\x00", 302).bytes(), kind: ErrDynamic, msg: strings.Repeat("a", 255) + "...)"},
		{name: "long shebang", data: []byte("#!" + strings.Repeat("b", 100)), kind: ErrNotELF, msg: "(#!" + strings.Repeat("b", 80) + "...)"},
		{name: "PT_INTERP not terminated", data: withInterp(interp+"X", uint64(len(interp)+1)).bytes(), kind: ErrCorrupt, msg: "not NUL-terminated"},
		{name: "PT_INTERP beyond file", data: withInterp(interp, 1<<40).bytes(), kind: ErrCorrupt, msg: "interpreter path"},
		{name: "PT_INTERP too long", data: withInterp(interp, 5000).with(func(s *elfSpec) { s.Size = 0x3000 }).bytes(), kind: ErrCorrupt, msg: "not between 2 and 4096"},

		// Malformed headers.
		{name: "ident only", data: exec.bytes()[:16], kind: ErrCorrupt, msg: "truncated ELF header"},
		{name: "truncated header", data: exec.bytes()[:63], kind: ErrCorrupt, msg: "truncated ELF header: file is 63 bytes"},
		{name: "bad class", data: hdr(func(b []byte) []byte { return put8(b, 4, 0) }), kind: ErrCorrupt, msg: "invalid ELF class"},
		{name: "bad data encoding", data: hdr(func(b []byte) []byte { return put8(b, 5, 7) }), kind: ErrCorrupt, msg: "data encoding"},
		{name: "ET_REL", data: exec.with(func(s *elfSpec) { s.Type = elf.ET_REL }).bytes(), kind: ErrCorrupt, msg: "relocatable object file"},
		{name: "ET_CORE", data: exec.with(func(s *elfSpec) { s.Type = elf.ET_CORE }).bytes(), kind: ErrCorrupt, msg: "core dump"},
		{name: "ET_NONE", data: exec.with(func(s *elfSpec) { s.Type = elf.ET_NONE }).bytes(), kind: ErrCorrupt, msg: "ET_NONE is not an executable"},
		{name: "phentsize", data: hdr(func(b []byte) []byte { return put16(b, 54, 32) }), kind: ErrCorrupt, msg: "e_phentsize is 32"},
		{name: "phnum 0", data: hdr(func(b []byte) []byte { return put16(b, 56, 0) }), kind: ErrCorrupt, msg: "no program headers"},
		{name: "phnum huge", data: hdr(func(b []byte) []byte { return put16(b, 56, 0xffff) }), kind: ErrCorrupt, msg: "at most 73"},
		{name: "phnum past end", data: hdr(func(b []byte) []byte { return put16(b, 56, 73) }), kind: ErrCorrupt, msg: "program header table"},
		{name: "phoff past end", data: hdr(func(b []byte) []byte { return put64(b, 32, 0x100000) }), kind: ErrCorrupt, msg: "program header table"},
		{name: "phoff overflow", data: hdr(func(b []byte) []byte { return put64(b, 32, ^uint64(7)) }), kind: ErrCorrupt, msg: "program header table"},

		// Malformed segments.
		{name: "filesz > memsz", data: exec.with(func(s *elfSpec) { load(s, 2).Memsz = 0x10 }).bytes(), kind: ErrCorrupt, msg: "file size 0x20 is larger than memory size 0x10"},
		{name: "segment past end of file", data: exec.with(func(s *elfSpec) { s.Size = 0x1d0 }).bytes(), kind: ErrCorrupt, msg: "program header 2 (PT_LOAD): file contents (offset 0x1c0, size 0x20) extend past the end"},
		{name: "segment offset overflow", data: exec.with(func(s *elfSpec) { load(s, 2).Off = ^uint64(0xfff) }).bytes(), kind: ErrCorrupt, msg: "extend past the end"},
		{name: "align not power of two", data: exec.with(func(s *elfSpec) { load(s, 1).Align = 0x3000 }).bytes(), kind: ErrCorrupt, msg: "alignment 0x3000 is not a power of two"},
		{name: "vaddr/offset mismatch", data: exec.with(func(s *elfSpec) { load(s, 2).Vaddr = 0x402100 }).bytes(), kind: ErrCorrupt, msg: "not congruent"},
		{name: "vaddr overflow", data: exec.with(func(s *elfSpec) { load(s, 2).Vaddr = ^uint64(0xfff) + 0x1c0 }).bytes(), kind: ErrCorrupt, msg: "beyond user address space"},
		{name: "beyond user space", data: exec.with(func(s *elfSpec) { load(s, 2).Vaddr = UserSpaceEnd - 0x1000 + 0x1c0 }).bytes(), kind: ErrCorrupt, msg: "beyond user address space"},
		{name: "overlap", data: exec.with(func(s *elfSpec) { load(s, 2).Vaddr, load(s, 2).Off = 0x401180, 0x180 }).bytes(), kind: ErrCorrupt, msg: "overlaps the previous PT_LOAD [0x401180, 0x4011c0)"},
		{name: "overlap by one byte", data: exec.with(func(s *elfSpec) {
			load(s, 1).Memsz = 0x41
			load(s, 2).Vaddr = 0x4011c0
		}).bytes(), kind: ErrCorrupt, msg: "overlaps"},
		{name: "unsorted", data: exec.with(func(s *elfSpec) { s.Progs[1], s.Progs[2] = s.Progs[2], s.Progs[1] }).bytes(), kind: ErrCorrupt, msg: "must be sorted by address"},
		{name: "no PT_LOAD", data: exec.with(func(s *elfSpec) { s.Progs = s.Progs[3:] }).bytes(), kind: ErrCorrupt, msg: "no loadable (PT_LOAD) segments"},
		{name: "only empty PT_LOAD", data: exec.with(func(s *elfSpec) { s.Progs = []prog{{Type: elf.PT_LOAD}} }).bytes(), kind: ErrCorrupt, msg: "no loadable"},
		{name: "entry outside", data: exec.with(func(s *elfSpec) { s.Entry = 0x10 }).bytes(), kind: ErrCorrupt, msg: "entry point 0x10 is not inside any loadable segment"},
		{name: "entry in data", data: exec.with(func(s *elfSpec) { s.Entry = 0x4021c0 }).bytes(), kind: ErrCorrupt, msg: "not executable"},
		{name: "entry at text end", data: exec.with(func(s *elfSpec) { s.Entry = 0x4011c0 }).bytes(), kind: ErrCorrupt, msg: "not inside"},
		{name: "exec at address 0", data: pie.with(func(s *elfSpec) { s.Type = elf.ET_EXEC }).bytes(), kind: ErrCorrupt, msg: "below the lowest mappable address"},
		{name: "pie too large", data: pie.with(func(s *elfSpec) { load(s, 2).Memsz = 0x300000000000 }).bytes(), kind: ErrCorrupt, msg: "too large to load"},
	}
}

func TestParseCrafted(t *testing.T) {
	for _, tc := range parseCases() {
		t.Run(tc.name, func(t *testing.T) {
			img, err := Parse(tc.data)
			if tc.kind == nil {
				require.NoError(t, err)
				checkImage(t, tc.data, img)
				return
			}
			require.Error(t, err)
			assert.Nil(t, img)
			assert.ErrorIs(t, err, tc.kind)
			var le *Error
			require.ErrorAs(t, err, &le)
			assert.NotEmpty(t, le.Hint, "every Parse error says what to do")
			assert.Contains(t, err.Error(), tc.msg)
		})
	}
}

// checkImage verifies the invariants Parse promises for a successful parse.
// It is shared with FuzzParse.
func checkImage(t *testing.T, data []byte, img *Image) {
	t.Helper()
	require.NotEmpty(t, img.Segments)
	assert.Contains(t, []elf.Type{elf.ET_EXEC, elf.ET_DYN}, img.Type)
	assert.Equal(t, uint64(phdrSize), img.Phent)
	bias := img.Bias()
	assert.Zero(t, bias%PageSize, "bias is page aligned")
	entryOK := false
	for i, s := range img.Segments {
		assert.NotZero(t, s.Memsz)
		assert.LessOrEqual(t, s.Filesz, s.Memsz)
		assert.Equal(t, s.Filesz, uint64(len(s.Data)))
		assert.LessOrEqual(t, s.Offset+s.Filesz, uint64(len(data)))
		assert.Equal(t, data[s.Offset:s.Offset+s.Filesz], s.Data)
		assert.Zero(t, (s.Vaddr-s.Offset)%PageSize)
		assert.Zero(t, s.Prot&^(ProtRead|ProtWrite|ProtExec))
		start := s.Vaddr + bias
		assert.GreaterOrEqual(t, start, uint64(MinAddr))
		assert.LessOrEqual(t, PageUp(start+s.Memsz), uint64(UserSpaceEnd))
		if i > 0 {
			assert.GreaterOrEqual(t, s.Vaddr, img.Segments[i-1].End(), "sorted, no overlap")
		}
		if s.Vaddr <= img.Entry && img.Entry < s.End() && s.Prot&ProtExec != 0 {
			entryOK = true
		}
	}
	assert.True(t, entryOK, "entry in an executable segment")
	assert.LessOrEqual(t, img.InitialBrk(), uint64(UserSpaceEnd))
}

func TestParseDetails(t *testing.T) {
	data := validExec().bytes()
	img, err := Parse(data)
	require.NoError(t, err)
	assert.Equal(t, elf.ET_EXEC, img.Type)
	assert.Equal(t, uint64(0x401190), img.Entry)
	assert.Equal(t, uint64(0x400040), img.PhdrVaddr, "computed from the PT_LOAD holding the headers")
	assert.Equal(t, uint64(4), img.Phnum)
	assert.False(t, img.StackExec)
	assert.Zero(t, img.Bias())
	assert.Equal(t, uint64(0x406000), img.InitialBrk())
	require.Len(t, img.Segments, 3)
	assert.Equal(t, Segment{Vaddr: 0x401180, Memsz: 0x40, Filesz: 0x40, Offset: 0x180, Align: 0x1000,
		Prot: ProtRead | ProtExec, Data: data[0x180:0x1c0]}, img.Segments[1])
	assert.Equal(t, uint32(ProtRead|ProtWrite), img.Segments[2].Prot)
	assert.Equal(t, uint32(ProtRead), img.Segments[0].Prot)
	assert.Equal(t, len(img.Segments[2].Data), cap(img.Segments[2].Data), "Data cannot be appended into the file")

	cases := map[string]func(img *Image){
		"PT_PHDR": func(img *Image) { assert.Equal(t, uint64(0x400040), img.PhdrVaddr) },
		"executable stack": func(img *Image) {
			assert.True(t, img.StackExec)
		},
		"phdrs not loaded": func(img *Image) { assert.Zero(t, img.PhdrVaddr) },
		"static-pie": func(img *Image) {
			assert.Equal(t, elf.ET_DYN, img.Type)
			assert.Equal(t, uint64(0x555555554000), img.Bias())
			assert.Equal(t, uint64(0x1190), img.Entry)
			assert.Equal(t, uint64(0x555555554000+0x6000), img.InitialBrk())
		},
		"pie aligned 2MiB": func(img *Image) { assert.Equal(t, uint64(0x555555400000), img.Bias()) },
		"empty PT_LOAD is skipped": func(img *Image) {
			assert.Len(t, img.Segments, 3)
		},
	}
	for _, tc := range parseCases() {
		if check, ok := cases[tc.name]; ok {
			img, err := Parse(tc.data)
			require.NoError(t, err, tc.name)
			check(img)
		}
	}
}

func TestDynBase(t *testing.T) {
	// ELF_ET_DYN_BASE = DEFAULT_MAP_WINDOW / 3 * 2, page-aligned by Bias.
	assert.Equal(t, uint64(0x555555554aaa), uint64(DynBase))
	assert.Equal(t, uint64(0x555555554000), PageDown(DynBase))
}

func TestErrorErrno(t *testing.T) {
	_, err := Parse([]byte("#!/bin/sh\n"))
	assert.ErrorIs(t, err, syscall.ENOEXEC)
	img := validExec().bytes()
	_, err = Parse(img[:40])
	assert.ErrorIs(t, err, syscall.ENOEXEC)
	assert.False(t, errors.Is(err, ErrNotELF))
}

// TestParseBoundedAllocation checks that Parse's allocations do not depend
// on what the headers claim: the worst case is a full table of 73 PT_LOAD
// headers.
func TestParseBoundedAllocation(t *testing.T) {
	s := elfSpec{Type: elf.ET_EXEC, Entry: 0x400000}
	for i := range maxPhdrBytes / phdrSize {
		s.Progs = append(s.Progs, prog{Type: elf.PT_LOAD, Flags: pfR | pfX, Off: 0, Vaddr: 0x400000 + uint64(i)*0x1000, Filesz: 0x1000, Memsz: 0x1000})
	}
	s.Size = 1 << 20
	data := s.bytes()
	img, err := Parse(data)
	require.NoError(t, err)
	require.Len(t, img.Segments, 73)

	var before, after runtime.MemStats
	const runs = 100
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range runs {
		_, _ = Parse(data)
	}
	runtime.ReadMemStats(&after)
	perCall := (after.TotalAlloc - before.TotalAlloc) / runs
	t.Logf("Parse of a 73-segment file allocates %d bytes", perCall)
	assert.Less(t, perCall, uint64(32<<10))
}

// TestParseHostBinaries parses every ELF file in the usual binary
// directories: each must be accepted, or rejected as dynamic, never as
// corrupt. Successful parses are compared with debug/elf.
func TestParseHostBinaries(t *testing.T) {
	var files []string
	for _, dir := range []string{"/bin", "/usr/bin", "/usr/sbin", "/usr/local/bin", filepath.Join(runtime.GOROOT(), "bin"), filepath.Join(runtime.GOROOT(), "pkg", "tool", runtime.GOOS+"_"+runtime.GOARCH)} {
		m, _ := filepath.Glob(filepath.Join(dir, "*"))
		files = append(files, m...)
	}
	if len(files) == 0 {
		t.Skip("no host binaries")
	}
	var static, dynamic int
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil || !fi.Mode().IsRegular() || fi.Size() > 512<<20 {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil || !strings.HasPrefix(string(data), elf.ELFMAG) {
			continue
		}
		img, err := Parse(data)
		switch {
		case err == nil:
			static++
			checkImage(t, data, img)
			compareWithDebugELF(t, f, data, img)
		case errors.Is(err, ErrDynamic):
			dynamic++
		default:
			t.Errorf("%s: %v", f, err)
		}
	}
	t.Logf("%d static and %d dynamic executables", static, dynamic)
}

func TestParseBinLs(t *testing.T) {
	data, err := os.ReadFile("/bin/ls")
	if err != nil {
		t.Skip("no /bin/ls")
	}
	_, err = Parse(data)
	require.ErrorIs(t, err, ErrDynamic)
	assert.Contains(t, err.Error(), "dynamically linked (interpreter /lib")
	assert.Contains(t, err.Error(), "rebuild with -static")
	t.Log(err)
}

// TestParseTestImages parses the project's test programs, if built.
func TestParseTestImages(t *testing.T) {
	files, _ := filepath.Glob("../../testimages/bin/*")
	if len(files) == 0 {
		t.Skip("testimages/bin is empty or absent")
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		img, err := Parse(data)
		if !assert.NoError(t, err, f) {
			continue
		}
		checkImage(t, data, img)
		compareWithDebugELF(t, f, data, img)
	}
}

// compareWithDebugELF checks Parse's segments against the standard
// library's ELF reader.
func compareWithDebugELF(t *testing.T, name string, data []byte, img *Image) {
	t.Helper()
	f, err := elf.NewFile(strings.NewReader(string(data)))
	require.NoError(t, err, name)
	var want []Segment
	for _, p := range f.Progs {
		if p.Type != elf.PT_LOAD || p.Memsz == 0 {
			continue
		}
		want = append(want, Segment{Vaddr: p.Vaddr, Memsz: p.Memsz, Filesz: p.Filesz, Offset: p.Off, Align: p.Align,
			Prot: uint32(p.Flags&elf.PF_R)>>2 | uint32(p.Flags&elf.PF_W) | uint32(p.Flags&elf.PF_X)<<2,
			Data: data[p.Off : p.Off+p.Filesz]})
	}
	assert.Equal(t, want, img.Segments, name)
	assert.Equal(t, f.Entry, img.Entry, name)
	assert.Equal(t, f.Type, img.Type, name)
}
