package loader

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// Auxiliary vector entry types (linux/auxvec.h, asm/auxvec.h). The names
// are Linux's so they can be grepped for.
const (
	AT_NULL              = 0  // end of vector
	AT_IGNORE            = 1  // entry should be ignored
	AT_EXECFD            = 2  // file descriptor of program
	AT_PHDR              = 3  // program headers address
	AT_PHENT             = 4  // size of a program header
	AT_PHNUM             = 5  // number of program headers
	AT_PAGESZ            = 6  // system page size
	AT_BASE              = 7  // interpreter base address (0: none)
	AT_FLAGS             = 8  // flags (0)
	AT_ENTRY             = 9  // program entry point
	AT_NOTELF            = 10 // program is not ELF
	AT_UID               = 11 // real uid
	AT_EUID              = 12 // effective uid
	AT_GID               = 13 // real gid
	AT_EGID              = 14 // effective gid
	AT_PLATFORM          = 15 // address of platform string ("x86_64")
	AT_HWCAP             = 16 // CPUID.1:EDX on x86
	AT_CLKTCK            = 17 // frequency of times() (100)
	AT_SECURE            = 23 // secure mode (setuid); 0
	AT_BASE_PLATFORM     = 24 // address of real platform string
	AT_RANDOM            = 25 // address of 16 random bytes
	AT_HWCAP2            = 26 // more hardware capability bits
	AT_RSEQ_FEATURE_SIZE = 27 // rseq supported feature size
	AT_RSEQ_ALIGN        = 28 // rseq allocation alignment
	AT_HWCAP3            = 29
	AT_HWCAP4            = 30
	AT_EXECFN            = 31 // address of the executable's path string
	AT_SYSINFO_EHDR      = 33 // vDSO address
	AT_MINSIGSTKSZ       = 51 // minimal signal stack size
)

var auxvNames = map[uint64]string{
	AT_NULL: "AT_NULL", AT_IGNORE: "AT_IGNORE", AT_EXECFD: "AT_EXECFD",
	AT_PHDR: "AT_PHDR", AT_PHENT: "AT_PHENT", AT_PHNUM: "AT_PHNUM",
	AT_PAGESZ: "AT_PAGESZ", AT_BASE: "AT_BASE", AT_FLAGS: "AT_FLAGS",
	AT_ENTRY: "AT_ENTRY", AT_NOTELF: "AT_NOTELF", AT_UID: "AT_UID",
	AT_EUID: "AT_EUID", AT_GID: "AT_GID", AT_EGID: "AT_EGID",
	AT_PLATFORM: "AT_PLATFORM", AT_HWCAP: "AT_HWCAP", AT_CLKTCK: "AT_CLKTCK",
	AT_SECURE: "AT_SECURE", AT_BASE_PLATFORM: "AT_BASE_PLATFORM",
	AT_RANDOM: "AT_RANDOM", AT_HWCAP2: "AT_HWCAP2",
	AT_RSEQ_FEATURE_SIZE: "AT_RSEQ_FEATURE_SIZE", AT_RSEQ_ALIGN: "AT_RSEQ_ALIGN",
	AT_HWCAP3: "AT_HWCAP3", AT_HWCAP4: "AT_HWCAP4", AT_EXECFN: "AT_EXECFN",
	AT_SYSINFO_EHDR: "AT_SYSINFO_EHDR", AT_MINSIGSTKSZ: "AT_MINSIGSTKSZ",
}

// AuxvName returns the symbolic name of an auxiliary vector type, such as
// "AT_PHDR", or "AT_UNKNOWN(n)".
func AuxvName(typ uint64) string {
	if name, ok := auxvNames[typ]; ok {
		return name
	}
	return fmt.Sprintf("AT_UNKNOWN(%d)", typ)
}

// AuxEntry is one auxiliary vector entry (an Elf64_auxv_t).
type AuxEntry struct {
	Type, Value uint64
}

func (a AuxEntry) String() string { return fmt.Sprintf("%s=%#x", AuxvName(a.Type), a.Value) }

// Limits on the arguments, from Linux's execve.
const (
	// MaxArgStrlen is the largest single argument or environment string,
	// counting its NUL (MAX_ARG_STRLEN).
	MaxArgStrlen = 32 * PageSize

	// DefaultStackLimit is the default RLIMIT_STACK (_STK_LIM, 8 MiB).
	DefaultStackLimit = 8 << 20

	argMax  = 128 << 10 // ARG_MAX: the limit is never below this
	maxAuxv = 64        // more auxv entries than Linux ever passes
)

// StackInfo is what goes on the initial stack besides the auxiliary vector.
type StackInfo struct {
	Args []string // argv; an empty argv becomes [""], as on Linux >= 5.18
	Env  []string // envp, "NAME=value" strings

	ExecFn   string   // AT_EXECFN: the path the program was executed as
	Random   [16]byte // AT_RANDOM: seeds libc's stack protector and pointer guard
	Platform string   // AT_PLATFORM: normally "x86_64"; "" omits it

	// StackLimit is the RLIMIT_STACK soft limit, which bounds the total
	// size of the strings (to a quarter of it, at most 6 MiB, at least
	// 128 KiB). 0 means DefaultStackLimit.
	StackLimit uint64
}

// AuxvParams holds the process values for the standard auxiliary vector.
type AuxvParams struct {
	UID, EUID, GID, EGID uint64
	HWCap                uint64 // AT_HWCAP: CPUID leaf 1 EDX, as Linux passes on x86
	HWCap2               uint64 // AT_HWCAP2: bit 1 = FSGSBASE usable
	MinSigStkSz          uint64 // AT_MINSIGSTKSZ; 0 omits the entry
	SysinfoEHDR          uint64 // AT_SYSINFO_EHDR (vDSO); 0 omits the entry
}

// Auxv returns the auxiliary vector Linux would pass this image, in Linux's
// order, without the final AT_NULL. The AT_RANDOM, AT_EXECFN and
// AT_PLATFORM values are placeholders that BuildStack fills in.
func (img *Image) Auxv(p AuxvParams) []AuxEntry {
	bias := img.Bias()
	var auxv []AuxEntry
	if p.SysinfoEHDR != 0 {
		auxv = append(auxv, AuxEntry{AT_SYSINFO_EHDR, p.SysinfoEHDR})
	}
	if p.MinSigStkSz != 0 {
		auxv = append(auxv, AuxEntry{AT_MINSIGSTKSZ, p.MinSigStkSz})
	}
	return append(auxv,
		AuxEntry{AT_HWCAP, p.HWCap},
		AuxEntry{AT_PAGESZ, PageSize},
		AuxEntry{AT_CLKTCK, 100},
		AuxEntry{AT_PHDR, img.PhdrVaddr + bias},
		AuxEntry{AT_PHENT, img.Phent},
		AuxEntry{AT_PHNUM, img.Phnum},
		AuxEntry{AT_BASE, 0}, // no interpreter
		AuxEntry{AT_FLAGS, 0},
		AuxEntry{AT_ENTRY, img.Entry + bias},
		AuxEntry{AT_UID, p.UID},
		AuxEntry{AT_EUID, p.EUID},
		AuxEntry{AT_GID, p.GID},
		AuxEntry{AT_EGID, p.EGID},
		AuxEntry{AT_SECURE, 0},
		AuxEntry{AT_RANDOM, 0},
		AuxEntry{AT_HWCAP2, p.HWCap2},
		AuxEntry{AT_EXECFN, 0},
		AuxEntry{AT_PLATFORM, 0},
	)
}

// Stack is the initial stack produced by LayoutStack.
type Stack struct {
	SP    uint64 // initial RSP: 16-byte aligned, points at argc
	Image []byte // the bytes of [SP, top)

	// Where things are, for /proc/self/{cmdline,environ,auxv} and prctl.
	ArgStart, ArgEnd uint64 // argv strings (ArgEnd == EnvStart)
	EnvStart, EnvEnd uint64 // envp strings
	ExecFn           uint64 // AT_EXECFN string
	Platform         uint64 // AT_PLATFORM string, 0 if none
	Random           uint64 // AT_RANDOM bytes
	Auxv             []AuxEntry
}

// BuildStack lays out the initial stack for a stack whose top is top
// (exclusive, 16-byte aligned). It returns the initial RSP and the bytes to
// write at [sp, top). See LayoutStack.
func BuildStack(top uint64, info StackInfo, auxv []AuxEntry) (sp uint64, image []byte, err error) {
	st, err := LayoutStack(top, info, auxv)
	if err != nil {
		return 0, nil, err
	}
	return st.SP, st.Image, nil
}

// LayoutStack lays out the initial stack like Linux's execve and
// create_elf_tables (without randomization). From top down:
//
//	top - 8         8 zero bytes (end marker)
//	                ExecFn string                  <- AT_EXECFN
//	                Env strings (Env[0] lowest)
//	                Args strings (Args[0] lowest)
//	                padding to 16 bytes
//	                Platform string                <- AT_PLATFORM
//	                16 Random bytes                <- AT_RANDOM
//	                padding so that SP is 16-byte aligned
//	                auxv pairs, ending with AT_NULL
//	                0
//	                envp pointers
//	                0
//	                argv pointers
//	SP ->           argc
//
// auxv must not contain AT_NULL (LayoutStack appends it). The values of
// AT_RANDOM, AT_EXECFN and AT_PLATFORM entries are set to the addresses
// above; those entries are appended if missing (AT_PLATFORM is dropped if
// info.Platform is empty). Image.Auxv gives a complete auxv to pass.
func LayoutStack(top uint64, info StackInfo, auxv []AuxEntry) (*Stack, error) {
	if top%16 != 0 {
		return nil, invalidStack("stack top %#x is not 16-byte aligned", top)
	}
	if len(auxv) > maxAuxv {
		return nil, invalidStack("%d auxv entries, at most %d allowed", len(auxv), maxAuxv)
	}
	args := info.Args
	if len(args) == 0 {
		args = []string{""} // Linux inserts an empty argv[0]
	}
	if err := checkArgSizes(args, info); err != nil {
		return nil, err
	}

	// Work with distances below top so that nothing can wrap: the sizes
	// are bounded by checkArgSizes, and top is checked at the end.
	// addr(d) == top - d, and (top - d) &^ 15 == top - roundUp16(d)
	// because top is 16-byte aligned.
	d := uint64(8) // end marker
	d += uint64(len(info.ExecFn)) + 1
	execFn := d
	envAt := stringsBelow(&d, info.Env)
	argAt := stringsBelow(&d, args)
	d = roundUp16(d)
	var platform uint64
	if info.Platform != "" {
		d += uint64(len(info.Platform)) + 1
		platform = d
	}
	d += uint64(len(info.Random))
	random := d

	addr := func(dist uint64) uint64 { return top - dist }
	finalAuxv, err := fillAuxv(auxv, addr(random), addr(execFn), platform != 0, addr(platform))
	if err != nil {
		return nil, err
	}
	d += uint64(len(finalAuxv)) * 16
	items := uint64(len(args)+1) + uint64(len(info.Env)+1) + 1 // argv, NULL, envp, NULL, argc
	d = roundUp16(d + items*8)
	if d > top {
		return nil, invalidStack("stack top %#x is too low for the %#x-byte initial stack", top, d)
	}

	sp := top - d
	st := &Stack{
		SP:       sp,
		Image:    make([]byte, d),
		ExecFn:   addr(execFn),
		Random:   addr(random),
		Auxv:     finalAuxv,
		ArgStart: addr(argAt[0]),
		ArgEnd:   addr(argAt[len(argAt)-1]) + uint64(len(args[len(args)-1])) + 1,
	}
	st.EnvStart, st.EnvEnd = st.ArgEnd, st.ArgEnd
	if len(envAt) > 0 {
		st.EnvEnd = addr(envAt[len(envAt)-1]) + uint64(len(info.Env[len(info.Env)-1])) + 1
	}
	if platform != 0 {
		st.Platform = addr(platform)
	}

	// Fill the image. Offsets into it are addresses minus sp; the
	// strings' NUL terminators and the padding are already zero.
	img := st.Image
	off := func(dist uint64) []byte { return img[d-dist:] }
	copy(off(execFn), info.ExecFn)
	for i, s := range info.Env {
		copy(off(envAt[i]), s)
	}
	for i, s := range args {
		copy(off(argAt[i]), s)
	}
	if platform != 0 {
		copy(off(platform), info.Platform)
	}
	copy(off(random), info.Random[:])

	le := binary.LittleEndian
	w := img // the vectors, written upwards from sp
	put := func(v uint64) { le.PutUint64(w, v); w = w[8:] }
	put(uint64(len(args)))
	for _, dist := range argAt {
		put(addr(dist))
	}
	put(0)
	for _, dist := range envAt {
		put(addr(dist))
	}
	put(0)
	for _, a := range finalAuxv {
		put(a.Type)
		put(a.Value)
	}
	return st, nil
}

// stringsBelow places strs below distance *d, last string highest, and
// returns each string's distance below top.
func stringsBelow(d *uint64, strs []string) []uint64 {
	at := make([]uint64, len(strs))
	for i := len(strs) - 1; i >= 0; i-- {
		*d += uint64(len(strs[i])) + 1
		at[i] = *d
	}
	return at
}

func roundUp16(n uint64) uint64 { return (n + 15) &^ 15 }

// checkArgSizes applies Linux's execve limits (bprm_stack_limits,
// copy_strings) and rejects strings that cannot be C strings. Because it
// bounds the total size, it also bounds what LayoutStack allocates.
func checkArgSizes(args []string, info StackInfo) error {
	rlim := info.StackLimit
	if rlim == 0 {
		rlim = DefaultStackLimit
	}
	limit := max(min(DefaultStackLimit/4*3, rlim/4), argMax)

	ptrs := uint64(len(args)) + uint64(len(info.Env))
	if ptrs >= limit/8 {
		return tooBig("%d arguments and %d environment strings", len(args), len(info.Env))
	}
	limit -= ptrs * 8

	// The platform string is not an argument and Linux does not count it.
	if strings.IndexByte(info.Platform, 0) >= 0 || len(info.Platform) > 64 {
		return invalidStack("platform string %s is not a short C string", printable([]byte(info.Platform), 64))
	}

	total := uint64(0)
	check := func(what string, i int, s string) error {
		if strings.IndexByte(s, 0) >= 0 {
			return invalidStack("%s %d contains a NUL byte", what, i)
		}
		if len(s)+1 > MaxArgStrlen {
			return tooBig("%s %d is %d bytes, the limit is %d", what, i, len(s)+1, MaxArgStrlen)
		}
		total += uint64(len(s)) + 1
		return nil
	}
	if err := check("execfn", 0, info.ExecFn); err != nil {
		return err
	}
	for i, s := range info.Env {
		if err := check("environment string", i, s); err != nil {
			return err
		}
	}
	for i, s := range args {
		if err := check("argument", i, s); err != nil {
			return err
		}
	}
	if total > limit {
		return tooBig("%d bytes of strings, the limit is %d (from the %d-byte stack size limit, less %d bytes of pointers)",
			total, limit, rlim, ptrs*8)
	}
	return nil
}

// fillAuxv returns auxv with the address entries set and AT_NULL appended.
func fillAuxv(auxv []AuxEntry, random, execFn uint64, hasPlatform bool, platform uint64) ([]AuxEntry, error) {
	out := make([]AuxEntry, 0, len(auxv)+4)
	seen := map[uint64]bool{}
	for _, a := range auxv {
		switch a.Type {
		case AT_NULL:
			return nil, invalidStack("auxv contains AT_NULL; LayoutStack terminates the vector itself")
		case AT_RANDOM:
			a.Value = random
		case AT_EXECFN:
			a.Value = execFn
		case AT_PLATFORM:
			if !hasPlatform {
				continue
			}
			a.Value = platform
		}
		seen[a.Type] = true
		out = append(out, a)
	}
	if !seen[AT_RANDOM] {
		out = append(out, AuxEntry{AT_RANDOM, random})
	}
	if !seen[AT_EXECFN] {
		out = append(out, AuxEntry{AT_EXECFN, execFn})
	}
	if hasPlatform && !seen[AT_PLATFORM] {
		out = append(out, AuxEntry{AT_PLATFORM, platform})
	}
	return append(out, AuxEntry{AT_NULL, 0}), nil
}
