package loader

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// decodedStack is an initial stack read back the way a program's startup
// code reads it: by following pointers from sp.
type decodedStack struct {
	argv, envp         []string
	argvAddr, envpAddr []uint64
	auxv               []AuxEntry // including AT_NULL
	vectorsEnd         uint64     // address just past AT_NULL
}

// stackReader reads guest memory [sp, top) held in image.
type stackReader struct {
	sp    uint64
	image []byte
}

func (r stackReader) word(addr uint64) (uint64, error) {
	if addr < r.sp || addr-r.sp > uint64(len(r.image))-8 {
		return 0, fmt.Errorf("word at %#x outside the stack [%#x, %#x)", addr, r.sp, r.sp+uint64(len(r.image)))
	}
	return binary.LittleEndian.Uint64(r.image[addr-r.sp:]), nil
}

func (r stackReader) bytesAt(addr, n uint64) ([]byte, error) {
	if addr < r.sp || addr-r.sp > uint64(len(r.image)) || n > uint64(len(r.image))-(addr-r.sp) {
		return nil, fmt.Errorf("%d bytes at %#x outside the stack", n, addr)
	}
	return r.image[addr-r.sp : addr-r.sp+n], nil
}

func (r stackReader) cstring(addr uint64) (string, error) {
	rest, err := r.bytesAt(addr, 0)
	if err != nil {
		return "", err
	}
	rest = r.image[addr-r.sp:]
	s, _, found := bytes.Cut(rest, []byte{0})
	if !found {
		return "", fmt.Errorf("string at %#x is not terminated", addr)
	}
	return string(s), nil
}

func decodeStack(sp uint64, image []byte) (*decodedStack, error) {
	r := stackReader{sp, image}
	d := &decodedStack{}
	argc, err := r.word(sp)
	if err != nil {
		return nil, err
	}
	if argc > uint64(len(image))/8 {
		return nil, fmt.Errorf("argc %d too large", argc)
	}
	addr := sp + 8
	readVector := func(n int) ([]string, []uint64, error) { // n < 0: until NULL
		var strs []string
		var addrs []uint64
		for i := 0; n < 0 || i < n; i++ {
			p, err := r.word(addr)
			if err != nil {
				return nil, nil, err
			}
			addr += 8
			if p == 0 {
				if n >= 0 {
					return nil, nil, fmt.Errorf("argv[%d] is NULL", i)
				}
				return strs, addrs, nil
			}
			s, err := r.cstring(p)
			if err != nil {
				return nil, nil, err
			}
			strs, addrs = append(strs, s), append(addrs, p)
		}
		if p, err := r.word(addr); err != nil || p != 0 {
			return nil, nil, fmt.Errorf("argv not NULL-terminated")
		}
		addr += 8
		return strs, addrs, nil
	}
	if d.argv, d.argvAddr, err = readVector(int(argc)); err != nil {
		return nil, err
	}
	if d.envp, d.envpAddr, err = readVector(-1); err != nil {
		return nil, err
	}
	for {
		typ, err := r.word(addr)
		if err != nil {
			return nil, err
		}
		val, err := r.word(addr + 8)
		if err != nil {
			return nil, err
		}
		addr += 16
		d.auxv = append(d.auxv, AuxEntry{typ, val})
		if typ == AT_NULL {
			break
		}
	}
	d.vectorsEnd = addr
	return d, nil
}

func auxValue(auxv []AuxEntry, typ uint64) (uint64, bool) {
	for _, a := range auxv {
		if a.Type == typ {
			return a.Value, true
		}
	}
	return 0, false
}

func testAuxv(t *testing.T) []AuxEntry {
	img, err := Parse(validExec().bytes())
	require.NoError(t, err)
	return img.Auxv(AuxvParams{UID: 1000, EUID: 1000, GID: 100, EGID: 100, HWCap: 0x178bfbff, HWCap2: 2, MinSigStkSz: 3632})
}

func testRandom() (r [16]byte) {
	for i := range r {
		r[i] = byte(0xa0 + i)
	}
	return r
}

// checkStack decodes a built stack and checks it against its inputs and
// the Linux layout rules.
func checkStack(t *testing.T, top uint64, info StackInfo, auxvIn []AuxEntry, st *Stack) {
	t.Helper()
	require.Zero(t, st.SP%16, "sp 16-byte aligned")
	require.Equal(t, top-st.SP, uint64(len(st.Image)))
	d, err := decodeStack(st.SP, st.Image)
	require.NoError(t, err)

	wantArgs := info.Args
	if len(wantArgs) == 0 {
		wantArgs = []string{""}
	}
	assert.Equal(t, wantArgs, d.argv)
	assert.Equal(t, nilIfEmpty(info.Env), nilIfEmpty(d.envp))
	assert.Equal(t, st.Auxv, d.auxv)
	assert.Equal(t, AuxEntry{AT_NULL, 0}, d.auxv[len(d.auxv)-1])

	// The caller's entries come first and in order, with the address
	// entries filled in.
	for i, a := range auxvIn {
		if a.Type == AT_PLATFORM && info.Platform == "" {
			break
		}
		assert.Equal(t, a.Type, d.auxv[i].Type)
		switch a.Type {
		case AT_RANDOM, AT_EXECFN, AT_PLATFORM:
		default:
			assert.Equal(t, a.Value, d.auxv[i].Value, AuxvName(a.Type))
		}
	}
	r := stackReader{st.SP, st.Image}
	execFn, ok := auxValue(d.auxv, AT_EXECFN)
	require.True(t, ok)
	assert.Equal(t, st.ExecFn, execFn)
	s, err := r.cstring(execFn)
	require.NoError(t, err)
	assert.Equal(t, info.ExecFn, s)
	random, ok := auxValue(d.auxv, AT_RANDOM)
	require.True(t, ok)
	assert.Equal(t, st.Random, random)
	rb, err := r.bytesAt(random, 16)
	require.NoError(t, err)
	assert.Equal(t, info.Random[:], rb)
	platform, ok := auxValue(d.auxv, AT_PLATFORM)
	assert.Equal(t, info.Platform != "", ok)
	if ok {
		assert.Equal(t, st.Platform, platform)
		s, err := r.cstring(platform)
		require.NoError(t, err)
		assert.Equal(t, info.Platform, s)
		assert.Equal(t, random+16, platform, "platform string right above the random bytes")
	}

	// Strings: argv, envp, execfn contiguous from ArgStart up to the
	// 8-byte end marker at the top.
	next := st.ArgStart
	for i, a := range d.argvAddr {
		assert.Equal(t, next, a, "argv[%d] address", i)
		next += uint64(len(d.argv[i])) + 1
	}
	assert.Equal(t, st.ArgEnd, next)
	assert.Equal(t, st.EnvStart, next)
	for i, a := range d.envpAddr {
		assert.Equal(t, next, a, "envp[%d] address", i)
		next += uint64(len(d.envp[i])) + 1
	}
	assert.Equal(t, st.EnvEnd, next)
	assert.Equal(t, execFn, next)
	assert.Equal(t, top-8, execFn+uint64(len(info.ExecFn))+1)
	assert.Equal(t, make([]byte, 8), st.Image[len(st.Image)-8:], "end marker")
	assert.Less(t, random+16+uint64(len(info.Platform))+1, st.ArgStart+16, "at most 15 bytes padding")
	assert.LessOrEqual(t, d.vectorsEnd, random)
	assert.Less(t, random-d.vectorsEnd, uint64(16+8), "padding below the random bytes is minimal")
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

func TestBuildStack(t *testing.T) {
	auxv := testAuxv(t)
	info := StackInfo{
		Args:     []string{"/bin/prog", "-x", "hello world", ""},
		Env:      []string{"A=1", "PATH=/bin:/usr/bin"},
		ExecFn:   "/bin/prog",
		Random:   testRandom(),
		Platform: "x86_64",
	}
	const top = UserSpaceEnd
	sp, image, err := BuildStack(top, info, auxv)
	require.NoError(t, err)
	st, err := LayoutStack(top, info, auxv)
	require.NoError(t, err)
	assert.Equal(t, st.SP, sp)
	assert.Equal(t, st.Image, image)
	checkStack(t, top, info, auxv, st)

	d, err := decodeStack(sp, image)
	require.NoError(t, err)
	want := []uint64{AT_MINSIGSTKSZ, AT_HWCAP, AT_PAGESZ, AT_CLKTCK, AT_PHDR, AT_PHENT, AT_PHNUM, AT_BASE, AT_FLAGS,
		AT_ENTRY, AT_UID, AT_EUID, AT_GID, AT_EGID, AT_SECURE, AT_RANDOM, AT_HWCAP2, AT_EXECFN, AT_PLATFORM, AT_NULL}
	var got []uint64
	for _, a := range d.auxv {
		got = append(got, a.Type)
	}
	assert.Equal(t, want, got, "Linux's order")
	phdr, _ := auxValue(d.auxv, AT_PHDR)
	entry, _ := auxValue(d.auxv, AT_ENTRY)
	pagesz, _ := auxValue(d.auxv, AT_PAGESZ)
	assert.Equal(t, uint64(0x400040), phdr)
	assert.Equal(t, uint64(0x401190), entry)
	assert.Equal(t, uint64(4096), pagesz)
}

func TestBuildStackVariants(t *testing.T) {
	base := StackInfo{Args: []string{"prog"}, Env: []string{"X=y"}, ExecFn: "./prog", Random: testRandom(), Platform: "x86_64"}
	cases := map[string]struct {
		info StackInfo
		auxv []AuxEntry
	}{
		"no env":             {info: StackInfo{Args: []string{"a"}, ExecFn: "a", Platform: "x86_64"}},
		"empty argv":         {info: StackInfo{Env: []string{"E=1"}, ExecFn: "/p", Platform: "x86_64"}},
		"no platform":        {info: StackInfo{Args: []string{"a"}, ExecFn: "a"}, auxv: []AuxEntry{{AT_PAGESZ, 4096}, {AT_PLATFORM, 0}}},
		"empty auxv":         {info: base},
		"empty execfn":       {info: StackInfo{Args: []string{"a"}}},
		"placeholders moved": {info: base, auxv: []AuxEntry{{AT_EXECFN, 7}, {AT_UID, 5}, {AT_RANDOM, 9}}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			st, err := LayoutStack(UserSpaceEnd, tc.info, tc.auxv)
			require.NoError(t, err)
			checkStack(t, UserSpaceEnd, tc.info, tc.auxv, st)
		})
	}

	// Every string length modulo 16, and argument counts of both
	// parities, to exercise all the alignment paths.
	for n := range 40 {
		info := base
		info.Args = []string{strings.Repeat("a", n)}
		for i := range n % 3 {
			info.Args = append(info.Args, strings.Repeat("b", i+n))
		}
		info.Env = []string{strings.Repeat("e", n/2)}
		info.ExecFn = strings.Repeat("x", n%5)
		info.Platform = strings.Repeat("p", n%9)
		st, err := LayoutStack(0x7fff_0000_0000, info, nil)
		require.NoError(t, err)
		checkStack(t, 0x7fff_0000_0000, info, nil, st)
	}
}

func TestBuildStackErrors(t *testing.T) {
	long := strings.Repeat("x", MaxArgStrlen-1) // longest allowed string
	many := make([]string, 20)
	for i := range many {
		many[i] = strings.Repeat("y", 120<<10)
	}
	cases := []struct {
		name string
		top  uint64
		info StackInfo
		auxv []AuxEntry
		kind error
		msg  string
	}{
		{name: "NUL in argument", info: StackInfo{Args: []string{"a\x00b"}}, kind: ErrInvalidStack, msg: "argument 0 contains a NUL byte"},
		{name: "NUL in env", info: StackInfo{Env: []string{"A=\x00"}}, kind: ErrInvalidStack, msg: "environment string 0"},
		{name: "NUL in platform", info: StackInfo{Platform: "x\x00"}, kind: ErrInvalidStack, msg: "platform"},
		{name: "string too long", info: StackInfo{Args: []string{long + "x"}}, kind: ErrArgListTooLong, msg: "argument 0 is 131073 bytes, the limit is 131072"},
		{name: "execfn too long", info: StackInfo{ExecFn: long + "x"}, kind: ErrArgListTooLong, msg: "execfn"},
		{name: "total too long", info: StackInfo{Args: many}, kind: ErrArgListTooLong, msg: "bytes of strings, the limit is 2096992"},
		{name: "small rlimit", info: StackInfo{Args: many[:3], StackLimit: 1 << 20}, kind: ErrArgListTooLong, msg: "the limit is 262120"},
		{name: "too many pointers", info: StackInfo{Env: make([]string, 300000)}, kind: ErrArgListTooLong, msg: "300000 environment strings"},
		{name: "misaligned top", top: UserSpaceEnd - 8, kind: ErrInvalidStack, msg: "not 16-byte aligned"},
		{name: "top too low", top: 0x100, info: StackInfo{Args: []string{strings.Repeat("z", 0x200)}}, kind: ErrInvalidStack, msg: "too low"},
		{name: "AT_NULL in auxv", auxv: []AuxEntry{{AT_PAGESZ, 4096}, {AT_NULL, 0}, {AT_UID, 0}}, kind: ErrInvalidStack, msg: "AT_NULL"},
		{name: "too many auxv", auxv: make([]AuxEntry, 65), kind: ErrInvalidStack, msg: "65 auxv entries"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			top := tc.top
			if top == 0 {
				top = UserSpaceEnd
			}
			sp, image, err := BuildStack(top, tc.info, tc.auxv)
			require.Error(t, err)
			assert.Zero(t, sp)
			assert.Nil(t, image)
			assert.ErrorIs(t, err, tc.kind)
			assert.Contains(t, err.Error(), tc.msg)
			if tc.kind == ErrArgListTooLong {
				assert.ErrorIs(t, err, syscall.E2BIG)
			}
		})
	}

	// Just inside the limits.
	_, _, err := BuildStack(UserSpaceEnd, StackInfo{Args: []string{long}}, nil)
	assert.NoError(t, err)
	_, _, err = BuildStack(UserSpaceEnd, StackInfo{Args: many, StackLimit: 64 << 20}, nil)
	assert.NoError(t, err, "a larger RLIMIT_STACK allows up to 6 MiB")
}

func TestAuxvName(t *testing.T) {
	assert.Equal(t, "AT_PHDR", AuxvName(AT_PHDR))
	assert.Equal(t, "AT_MINSIGSTKSZ", AuxvName(51))
	assert.Equal(t, "AT_UNKNOWN(99)", AuxvName(99))
	assert.Equal(t, "AT_PAGESZ=0x1000", AuxEntry{AT_PAGESZ, 4096}.String())
}

// stackDumpC prints its own initial stack: "sp top" and then the bytes of
// [sp, top) in hex. The top is found from AT_EXECFN, which Linux puts
// right below the 8-byte end marker.
const stackDumpC = `
#include <elf.h>
#include <stdio.h>
#include <string.h>
int main(int argc, char **argv, char **envp) {
	unsigned long *sp = (unsigned long *)argv - 1;
	char **e = envp;
	while (*e) e++;
	const char *execfn = 0;
	for (Elf64_auxv_t *a = (Elf64_auxv_t *)(e + 1); a->a_type != AT_NULL; a++)
		if (a->a_type == AT_EXECFN) execfn = (const char *)a->a_un.a_val;
	unsigned long top = (unsigned long)execfn + strlen(execfn) + 1 + 8;
	printf("%lx %lx\n", (unsigned long)sp, top);
	for (unsigned char *p = (unsigned char *)sp; p < (unsigned char *)top; p++) printf("%02x", *p);
	printf("\n");
	return 0;
}
`

// TestStackMatchesLinux runs a static program under the host kernel with
// address randomization off (setarch -R) and checks that LayoutStack,
// given the same arguments, environment, auxv and random bytes, produces
// the identical stack at the identical address. It also checks Parse and
// Image.Auxv against the kernel's AT_PHDR and AT_ENTRY, for a static
// ET_EXEC and a static-pie.
func TestStackMatchesLinux(t *testing.T) {
	setarch, err := exec.LookPath("setarch")
	if err != nil {
		t.Skip("no setarch")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "stackdump.c")
	require.NoError(t, os.WriteFile(src, []byte(stackDumpC), 0o644))

	builds := []struct{ name, cc, flag string }{
		{"musl static", "musl-gcc", "-static"},
		{"glibc static", "gcc", "-static"},
		{"glibc static-pie", "gcc", "-static-pie"},
	}
	for _, b := range builds {
		t.Run(b.name, func(t *testing.T) {
			prog := filepath.Join(dir, strings.ReplaceAll(b.name, " ", "-"))
			if out, err := exec.Command(b.cc, b.flag, "-O1", "-o", prog, src).CombinedOutput(); err != nil {
				t.Skipf("cannot build: %s %s: %v: %s", b.cc, b.flag, err, out)
			}
			compareWithLinux(t, setarch, prog)
		})
	}
}

func compareWithLinux(t *testing.T, setarch, prog string) {
	data, err := os.ReadFile(prog)
	require.NoError(t, err)
	img, err := Parse(data)
	require.NoError(t, err, "the host's static binary parses")

	args := []string{prog, "one", "", "three three", strings.Repeat("long", 100)}
	env := []string{"A=1", "EMPTY=", "LONGER_NAME=some value"}
	cmd := exec.Command(setarch, append([]string{"x86_64", "-R"}, args...)...)
	cmd.Env = env
	out, err := cmd.Output()
	if err != nil {
		t.Skipf("cannot run with randomization off: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	require.Len(t, lines, 2)
	var linuxSP, top uint64
	_, err = fmt.Sscanf(lines[0], "%x %x", &linuxSP, &top)
	require.NoError(t, err)
	linuxImage, err := hex.DecodeString(lines[1])
	require.NoError(t, err)
	t.Logf("Linux: sp=%#x top=%#x (%d bytes)", linuxSP, top, len(linuxImage))

	linux, err := decodeStack(linuxSP, linuxImage)
	require.NoError(t, err)
	require.Equal(t, args, linux.argv)
	require.Equal(t, env, linux.envp)

	// Feed Linux's own auxv (minus AT_NULL) and random bytes back in.
	r := stackReader{linuxSP, linuxImage}
	info := StackInfo{Args: args, Env: env, ExecFn: prog}
	randomAddr, _ := auxValue(linux.auxv, AT_RANDOM)
	rb, err := r.bytesAt(randomAddr, 16)
	require.NoError(t, err)
	copy(info.Random[:], rb)
	if p, ok := auxValue(linux.auxv, AT_PLATFORM); ok {
		info.Platform, err = r.cstring(p)
		require.NoError(t, err)
	}
	for _, a := range linux.auxv {
		t.Logf("  %v", a)
	}
	st, err := LayoutStack(top, info, linux.auxv[:len(linux.auxv)-1])
	require.NoError(t, err)
	assert.Equal(t, strconv.FormatUint(linuxSP, 16), strconv.FormatUint(st.SP, 16), "sp")
	assert.Equal(t, linux.auxv, st.Auxv)
	assert.Equal(t, linuxImage, st.Image, "stack bytes")

	// The auxv entries Image.Auxv computes agree with the kernel's. A
	// static-pie lands elsewhere (Linux >= 5.18 maps an ET_DYN without
	// interpreter at the mmap base, not ELF_ET_DYN_BASE), so compare
	// unrelocated addresses.
	ours := img.Auxv(AuxvParams{})
	linuxEntry, _ := auxValue(linux.auxv, AT_ENTRY)
	linuxBias := linuxEntry - img.Entry
	assert.Zero(t, linuxBias%PageSize)
	if img.Type == elf.ET_EXEC {
		assert.Zero(t, linuxBias)
	}
	for _, typ := range []uint64{AT_PHDR, AT_PHENT, AT_PHNUM, AT_ENTRY, AT_PAGESZ, AT_CLKTCK, AT_BASE, AT_FLAGS, AT_SECURE} {
		want, _ := auxValue(linux.auxv, typ)
		got, _ := auxValue(ours, typ)
		if typ == AT_PHDR || typ == AT_ENTRY {
			want, got = want-linuxBias, got-img.Bias()
		}
		assert.Equal(t, want, got, AuxvName(typ))
	}
	var ourTypes, linuxTypes []uint64
	for _, a := range ours {
		if a.Type != AT_MINSIGSTKSZ && a.Type != AT_SYSINFO_EHDR {
			ourTypes = append(ourTypes, a.Type)
		}
	}
	for _, a := range linux.auxv {
		switch a.Type {
		case AT_MINSIGSTKSZ, AT_SYSINFO_EHDR, AT_RSEQ_FEATURE_SIZE, AT_RSEQ_ALIGN, AT_HWCAP3, AT_HWCAP4, AT_NULL:
		default:
			linuxTypes = append(linuxTypes, a.Type)
		}
	}
	assert.Equal(t, linuxTypes, ourTypes, "same order as Linux")
}
