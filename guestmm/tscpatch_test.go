package guestmm

import (
	"bytes"
	"debug/elf"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/arch/x86/x86asm"
)

// Code used by the tests below.
var (
	// rdtsc; shl $32,%rdx; or %rdx,%rax; ret
	codeRdtsc = []byte{0x0f, 0x31, 0x48, 0xc1, 0xe2, 0x20, 0x48, 0x09, 0xd0, 0xc3}
	// mov $0x90310f90,%eax; ret: the rdtsc bytes inside an immediate
	codeImm = []byte{0xb8, 0x90, 0x0f, 0x31, 0x90, 0xc3}
	// rdtscp; ret
	codeRdtscp = []byte{0x0f, 0x01, 0xf9, 0xc3}
)

func TestDecodeInst(t *testing.T) {
	for _, tt := range []struct {
		name  string
		code  []byte
		ok    bool
		op    x86asm.Op
		bytes int
	}{
		{"rdtsc", []byte{0x0f, 0x31}, true, x86asm.RDTSC, 2},
		{"rdtscp", []byte{0x0f, 0x01, 0xf9}, true, x86asm.RDTSCP, 3},
		{"data16 rdtsc", []byte{0x66, 0x0f, 0x31}, true, x86asm.RDTSC, 3},
		{"endbr64", []byte{0xf3, 0x0f, 0x1e, 0xfa, 0x55}, true, x86asm.NOP, 4},
		{"nop with register", []byte{0x0f, 0x1f, 0xc0, 0x90}, true, x86asm.NOP, 3},
		{"nopl 0(%rax)", []byte{0x0f, 0x1f, 0x80, 0, 0, 0, 0, 0x90}, true, x86asm.NOP, 7},
		{"nopw 0(%rax,%rax)", []byte{0x66, 0x0f, 0x1f, 0x44, 0, 0, 0x90}, true, x86asm.NOP, 6},
		{"vzeroupper", []byte{0xc5, 0xf8, 0x77}, true, x86asm.VZEROUPPER, 3},
		{"vzeroupper; jmp", []byte{0xc5, 0xf8, 0x77, 0xe9, 0x60, 0xfe, 0xff, 0xff}, true, x86asm.VZEROUPPER, 3},
		{"vzeroupper (3-byte VEX)", []byte{0xc4, 0xe1, 0x78, 0x77, 0x90}, true, x86asm.VZEROUPPER, 4},
		{"prefetcht0 0x80(%rsi)", []byte{0x0f, 0x18, 0x8e, 0x80, 0, 0, 0, 0x0f}, true, x86asm.NOP, 7},
		{"incsspq %rcx", []byte{0xf3, 0x48, 0x0f, 0xae, 0xe9, 0x90}, true, x86asm.LFENCE, 5},
		{"lfence", []byte{0x0f, 0xae, 0xe8, 0x90}, true, x86asm.LFENCE, 3},
		{"adcx %rbx,%r13", []byte{0x66, 0x4c, 0x0f, 0x38, 0xf6, 0xeb, 0x90}, true, x86asm.ADC, 6},
		{"adox 0x8(%r8),%r14", []byte{0xf3, 0x4d, 0x0f, 0x38, 0xf6, 0x70, 0x08, 0x90}, true, x86asm.ADC, 7},
		{"rdpkru", []byte{0x0f, 0x01, 0xee, 0x90}, true, x86asm.NOP, 3},
		{"mov imm32", codeImm, true, x86asm.MOV, 5},
		{"push es (not in 64-bit mode)", []byte{0x06, 0x90}, false, 0, 0},
		{"lone prefix before garbage", []byte{0xf3, 0x0f, 0x0e}, false, 0, 0},
		{"truncated", []byte{0x0f}, false, 0, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			inst, ok := decodeInst(tt.code)
			require.Equal(t, tt.ok, ok, "%v", inst)
			if ok {
				assert.Equal(t, tt.op, inst.Op)
				assert.Equal(t, tt.bytes, inst.Len)
			}
		})
	}
}

func TestTSCCandidates(t *testing.T) {
	for _, tt := range []struct {
		name       string
		page, next []byte
		want       []int
	}{
		{"none", []byte{0x90, 0x0f, 0x05}, nil, nil},
		{"rdtsc and rdtscp", []byte{0x0f, 0x31, 0x0f, 0x01, 0xf9}, nil, []int{0, 2}},
		{"rdtscp needs its third byte", []byte{0x0f, 0x01, 0xf8}, nil, nil},
		{"straddling the page end", []byte{0x90, 0x0f}, []byte{0x31}, []int{1}},
		{"rdtscp straddling", []byte{0x90, 0x0f, 0x01}, []byte{0xf9}, []int{1}},
		{"in the next page", []byte{0x66}, []byte{0x0f, 0x31}, []int{1}},
		{"at the very end", []byte{0x90, 0x0f}, nil, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, tscCandidates(tt.page, tt.next))
		})
	}
}

// newTSCAS returns an address space with rdtsc patching on.
func newTSCAS(t *testing.T) (*AddressSpace, *TSCPatch) {
	t.Helper()
	mem, frames := newTestFrames(t, 64)
	p := frames.EnableTSCPatch()
	as, err := NewAddressSpace(mem, frames, Layout{})
	require.NoError(t, err)
	return as, p
}

// frameOf returns the frame bytes and the leaf entry of va.
func frameOf(t *testing.T, as *AddressSpace, va uint64) ([]byte, PTE) {
	t.Helper()
	e, ok := as.pt.Lookup(va &^ pageMask)
	require.True(t, ok, "page %#x present", va)
	return as.mem[e.Addr() : e.Addr()+PageSize], e
}

// jitPage maps an anonymous page, fills it with nops and the code at the
// given offsets, and makes it executable with mprotect.
func jitPage(t *testing.T, as *AddressSpace, pages int, code map[int][]byte) uint64 {
	t.Helper()
	va, err := as.Mmap(0, uint64(pages)*PageSize, ProtRead|ProtWrite, MapPrivate|MapAnonymous, nil, 0)
	require.NoError(t, err)
	buf := bytes.Repeat([]byte{0x90}, pages*PageSize)
	for off, c := range code {
		copy(buf[off:], c)
	}
	require.NoError(t, as.CopyOut(va, buf))
	require.NoError(t, as.Mprotect(va, uint64(pages)*PageSize, ProtRead|ProtExec))
	return va
}

func TestTSCPatchAnonymous(t *testing.T) {
	as, p := newTSCAS(t)
	va := jitPage(t, as, 2, map[int][]byte{0: codeImm, 16: codeRdtsc, 32: codeRdtscp, 48: {0x0f, 0x31, 0}, PageSize - 1: codeRdtsc})
	page, e := frameOf(t, as, va)
	assert.Zero(t, e&NX, "cleared: executable")
	assert.Zero(t, e&Writable)
	assert.Equal(t, codeImm, page[:len(codeImm)], "the rdtsc bytes inside an immediate stay")
	assert.Equal(t, byte(TSCTrapByte), page[16], "rdtsc patched")
	assert.Equal(t, codeRdtsc[1:], page[17:16+len(codeRdtsc)], "only its first byte")
	assert.Equal(t, byte(TSCTrapByte), page[32], "rdtscp patched")
	assert.Equal(t, byte(TSCTrapByte), page[PageSize-1], "rdtsc straddling two pages patched")
	assert.Equal(t, TSCStats{Pages: 2, Sites: 4}, p.Stats())

	// The kernel's view (CopyIn, and so the VMM's decoder) is the program's.
	got := make([]byte, 48)
	require.NoError(t, as.CopyIn(va, got))
	want := bytes.Repeat([]byte{0x90}, 48)
	copy(want, codeImm)
	copy(want[16:], codeRdtsc)
	copy(want[32:], codeRdtscp)
	assert.Equal(t, want, got)
	s, err := as.ReadString(va+48, 10)
	require.NoError(t, err)
	assert.Equal(t, "\x0f\x31", s)
}

func TestTSCPatchSelfModifying(t *testing.T) {
	as, _ := newTSCAS(t)
	va, err := as.Mmap(0, PageSize, ProtRead|ProtWrite|ProtExec, MapPrivate|MapAnonymous, nil, 0)
	require.NoError(t, err)
	require.NoError(t, as.CopyOut(va, codeRdtsc))
	page, e := frameOf(t, as, va)
	assert.NotZero(t, e&NX, "written, not yet cleared: not executable")
	assert.NotZero(t, e&Writable)

	// The program jumps there: an instruction fetch fault clears it.
	r := as.HandleFault(va, PFPresent|PFUser|PFInstr)
	require.True(t, r.Resolved)
	_, e = frameOf(t, as, va)
	assert.Zero(t, e&NX)
	assert.Zero(t, e&Writable, "W^X: a write must fault to unpatch first")
	assert.Equal(t, byte(TSCTrapByte), page[0])

	// It writes: the original bytes come back before its store.
	r = as.HandleFault(va+1, PFPresent|PFUser|PFWrite)
	require.True(t, r.Resolved)
	_, e = frameOf(t, as, va)
	assert.Equal(t, codeRdtsc, page[:len(codeRdtsc)])
	assert.NotZero(t, e&NX)
	assert.NotZero(t, e&Writable)
	copy(page, codeImm)
	r = as.HandleFault(va, PFPresent|PFUser|PFInstr)
	require.True(t, r.Resolved)
	assert.Equal(t, codeImm, page[:len(codeImm)], "new code rescanned: nothing to patch")

	// Writes by the kernel (read(2) into the page) unpatch as well.
	require.NoError(t, as.CopyOut(va, codeRdtscp))
	r = as.HandleFault(va, PFPresent|PFUser|PFInstr)
	require.True(t, r.Resolved)
	assert.Equal(t, byte(TSCTrapByte), page[0])
	require.NoError(t, as.WriteForce(va+4, []byte{0xc3}))
	assert.Equal(t, byte(0x0f), page[0])
}

func TestTSCPatchForkCopyOnWrite(t *testing.T) {
	as, p := newTSCAS(t)
	va, err := as.Mmap(0, PageSize, ProtRead|ProtWrite|ProtExec, MapPrivate|MapAnonymous, nil, 0)
	require.NoError(t, err)
	require.NoError(t, as.CopyOut(va, codeRdtsc))
	require.True(t, as.HandleFault(va, PFPresent|PFUser|PFInstr).Resolved)
	child, err := as.Fork()
	require.NoError(t, err)
	parentPage, _ := frameOf(t, as, va)
	childPage, ce := frameOf(t, child, va)
	assert.Zero(t, ce&NX, "the child shares the cleared frame")
	// The child writes: its copy gets the original bytes, the parent's
	// frame stays patched.
	require.True(t, child.HandleFault(va+100, PFPresent|PFUser|PFWrite).Resolved)
	childPage, ce = frameOf(t, child, va)
	assert.NotZero(t, ce&NX)
	assert.Equal(t, codeRdtsc, childPage[:len(codeRdtsc)])
	assert.Equal(t, byte(TSCTrapByte), parentPage[0])
	got := make([]byte, 2)
	require.NoError(t, as.CopyIn(va, got))
	assert.Equal(t, codeRdtsc[:2], got)

	// Freed frames forget their state.
	e, _ := as.pt.Lookup(va)
	require.NoError(t, as.Munmap(va, PageSize))
	assert.False(t, p.cleared(e.Addr()))
}

// TestTSCPatchMprotectBack: code made writable again gets its own bytes
// back (writes no longer fault), and is rescanned when it is made
// executable again.
func TestTSCPatchMprotectBack(t *testing.T) {
	as, _ := newTSCAS(t)
	va := jitPage(t, as, 1, map[int][]byte{16: codeRdtsc})
	page, _ := frameOf(t, as, va)
	require.Equal(t, byte(TSCTrapByte), page[16])
	require.NoError(t, as.Mprotect(va, PageSize, ProtRead|ProtWrite))
	assert.Equal(t, codeRdtsc, page[16:16+len(codeRdtsc)])
	_, e := frameOf(t, as, va)
	assert.NotZero(t, e&Writable)
	copy(page[32:], codeRdtscp) // a store that does not fault
	require.NoError(t, as.Mprotect(va, PageSize, ProtRead|ProtExec))
	assert.Equal(t, byte(TSCTrapByte), page[16])
	assert.Equal(t, byte(TSCTrapByte), page[32], "the new rdtscp too")
}

func TestTSCPatchUnpatch(t *testing.T) {
	as, p := newTSCAS(t)
	va := jitPage(t, as, 1, map[int][]byte{16: codeRdtsc})
	page, _ := frameOf(t, as, va)
	repatch := p.Unpatch()
	assert.Equal(t, byte(0x0f), page[16], "a checkpoint sees the program's own bytes")
	repatch()
	assert.Equal(t, byte(TSCTrapByte), page[16])
}

func TestTSCPatchUndecided(t *testing.T) {
	as, p := newTSCAS(t)
	var calls []uint64
	p.Undecided = func(va uint64, n int) { calls = append(calls, va, uint64(n)) }
	// 06 does not decode in 64-bit mode: nothing after it is trusted.
	va := jitPage(t, as, 1, map[int][]byte{0: codeRdtsc, 12: {0x06}, 32: codeRdtsc, 64: codeImm})
	page, _ := frameOf(t, as, va)
	assert.Equal(t, byte(TSCTrapByte), page[0], "before the undecodable byte")
	assert.Equal(t, byte(0x0f), page[32], "after it: left alone")
	assert.Equal(t, codeImm, page[64:64+len(codeImm)])
	assert.Equal(t, []uint64{va + 32, 2}, calls)
	assert.Equal(t, 2, p.Stats().Undecided)
}

// TestTSCPatchELF decodes testimages/bin/rdtsc from its section headers:
// its five rdtsc/rdtscp instructions, and not the byte sequences inside
// the immediates of imm_rdtsc and imm_rdtscp.
func TestTSCPatchELF(t *testing.T) {
	data, err := os.ReadFile("../testimages/bin/rdtsc")
	require.NoError(t, err)
	c := decodeELF(bytes.NewReader(data))
	require.NotNil(t, c)
	assert.Empty(t, c.lost)
	require.Len(t, c.sites, 5)
	for _, imm := range [][]byte{{0x90, 0x0f, 0x31, 0x90}, {0x90, 0x0f, 0x01, 0xf9}} {
		i := bytes.Index(data, imm)
		require.Positive(t, i, "% x", imm)
		assert.NotContains(t, c.sites, uint64(i+1), "inside an immediate")
	}
	for _, s := range c.sites {
		inst, ok := decodeInst(data[s:])
		require.True(t, ok)
		assert.Contains(t, []x86asm.Op{x86asm.RDTSC, x86asm.RDTSCP}, inst.Op)
	}
	assert.Nil(t, decodeELF(bytes.NewReader([]byte("not an ELF file"))))

	// Mapped as a program's text: the file's decoding patches the page.
	as, _ := newTSCAS(t)
	f := &memFile{name: "rdtsc", data: data}
	text := c.code[1] // .text
	off := text[0] &^ pageMask
	va, err := as.Mmap(0, PageSize*4, ProtRead|ProtExec, MapPrivate, f, off)
	require.NoError(t, err)
	site := c.sites[0]
	r := as.HandleFault(va+site-off, PFUser|PFInstr)
	require.True(t, r.Resolved)
	page, _ := frameOf(t, as, va+site-off)
	assert.Equal(t, byte(TSCTrapByte), page[site&pageMask])
}

// TestTSCPatchTooFar: code more than maxSweep into an anonymous mapping
// has no known boundary close enough; it is left alone and reported.
func TestTSCPatchTooFar(t *testing.T) {
	as, p := newTSCAS(t)
	var calls []uint64
	p.Undecided = func(va uint64, n int) { calls = append(calls, va, uint64(n)) }
	size := uint64(maxSweep + 2*PageSize)
	va, err := as.Mmap(0, size, ProtRead|ProtWrite, MapPrivate|MapAnonymous, nil, 0)
	require.NoError(t, err)
	near, far := va+PageSize, va+maxSweep+PageSize
	require.NoError(t, as.CopyOut(near, codeRdtsc))
	require.NoError(t, as.CopyOut(far, codeRdtsc))
	require.NoError(t, as.Mprotect(va, size, ProtRead|ProtExec))
	nearPage, _ := frameOf(t, as, near)
	farPage, _ := frameOf(t, as, far)
	assert.Equal(t, byte(TSCTrapByte), nearPage[0], "decoded from the mapping's start through a zero page")
	assert.Equal(t, byte(0x0f), farPage[0])
	assert.Equal(t, []uint64{far, 1}, calls)
}

// TestFDEStarts reads the function starts of .eh_frame: a hand-made one
// (pc-relative and absolute encodings, a personality routine, a 64-bit
// length, a terminator) and testimages/bin/rdtsc's, as readelf prints it.
func TestFDEStarts(t *testing.T) {
	le := func(n int, v uint64) []byte {
		b := make([]byte, n)
		for i := range n {
			b[i] = byte(v >> (8 * i))
		}
		return b
	}
	record := func(body ...[]byte) []byte {
		b := bytes.Join(body, nil)
		return append(le(4, uint64(len(b))), b...)
	}
	const addr = 0x600000
	var eh []byte
	// CIE 0: "zR", pcrel|sdata4.
	eh = append(eh, record(le(4, 0), []byte{1, 'z', 'R', 0, 1, 0x78, 16, 1, 0x1b})...)
	// FDE for 0x401000: the field is at addr+len(eh)+8.
	field := uint64(addr + len(eh) + 8)
	eh = append(eh, record(le(4, uint64(len(eh)+4)), le(4, uint64(0x401000-field)), le(4, 0x20))...)
	// CIE 2: "zPR", personality udata4, then absptr FDEs.
	cie2 := len(eh)
	eh = append(eh, record(le(4, 0), []byte{1, 'z', 'P', 'R', 0, 1, 0x78, 16, 6, 0x03, 0, 0, 0, 0, 0x00})...)
	eh = append(eh, record(le(4, uint64(len(eh)+4-cie2)), le(8, 0x402000), le(8, 0x10))...)
	// An FDE with a 64-bit length.
	body := bytes.Join([][]byte{le(4, uint64(len(eh)+12-cie2)), le(8, 0x403000), le(8, 0x10)}, nil)
	eh = append(eh, append(append(le(4, 0xffffffff), le(8, uint64(len(body)))...), body...)...)
	eh = append(eh, le(4, 0)...) // terminator
	eh = append(eh, record(le(4, 0), []byte{1, 0})...)
	assert.Equal(t, []uint64{0x401000, 0x402000, 0x403000}, fdeStarts(eh, addr))
	assert.Empty(t, fdeStarts(eh[:10], addr), "truncated")

	f, err := os.Open("../testimages/bin/rdtsc")
	require.NoError(t, err)
	defer f.Close()
	ef, err := elf.NewFile(f)
	require.NoError(t, err)
	s := ef.Section(".eh_frame")
	data, err := s.Data()
	require.NoError(t, err)
	assert.Equal(t, []uint64{0x4014a0, 0x4014b0, 0x4014c0, 0x4014d0, 0x401500, 0x401030}, fdeStarts(data, s.Addr))
}

// TestTSCPatchModifiedFilePage: a program's text page it has written to
// (Copied) is decoded from its current bytes, from the last function
// start before it.
func TestTSCPatchModifiedFilePage(t *testing.T) {
	data, err := os.ReadFile("../testimages/bin/rdtsc")
	require.NoError(t, err)
	c := decodeELF(bytes.NewReader(data))
	require.NotNil(t, c)
	as, _ := newTSCAS(t)
	f := &memFile{name: "rdtsc", data: data}
	site := c.sites[0]
	off := site &^ pageMask
	va, err := as.Mmap(0, PageSize, ProtRead|ProtWrite|ProtExec, MapPrivate, f, off)
	require.NoError(t, err)
	// The program turns its first rdtsc into ud2 (0F 0B, same length)
	// and runs the page: the others are patched, not the ud2.
	require.NoError(t, as.CopyOut(va+site-off+1, []byte{0x0b}))
	require.True(t, as.HandleFault(va+site-off, PFPresent|PFUser|PFInstr).Resolved)
	page, e := frameOf(t, as, va)
	assert.NotZero(t, e&Copied)
	assert.Equal(t, []byte{0x0f, 0x0b}, page[site-off:site-off+2])
	n := 0
	for _, s := range c.sites[1:] {
		if s >= off && s < off+PageSize {
			assert.Equal(t, byte(TSCTrapByte), page[s-off], "site %#x", s)
			n++
		}
	}
	assert.Positive(t, n)
	for _, imm := range [][]byte{{0x90, 0x0f, 0x31, 0x90}, {0x90, 0x0f, 0x01, 0xf9}} {
		i := bytes.Index(data, imm)
		if uint64(i) >= off && uint64(i) < off+PageSize {
			assert.Equal(t, imm, page[uint64(i)-off:uint64(i)-off+4], "immediate intact")
		}
	}
}
