package kernel

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/emuckpt/emuckpt/guestmm"
	"github.com/emuckpt/emuckpt/kernel/loader"
	"github.com/emuckpt/emuckpt/vmm"
	"golang.org/x/sys/unix"
)

// programBacking serves the pages of the program's ELF file to its
// file-backed VMAs.
type programBacking struct {
	data []byte
	name string
}

func (b *programBacking) Name() string { return b.name }

func (b *programBacking) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= int64(len(b.data)) {
		clear(p)
		return 0, nil
	}
	n := copy(p, b.data[off:])
	clear(p[n:])
	return len(p), nil
}

const initialStackSize = 128 << 10

// addressLayout is the layout of every process: Linux's defaults, with
// faults filling 64 KiB at a time (anonymous memory, and file mappings on
// a read fault: each fault is a VM exit), and 2 MiB pages for anonymous
// memory where the VMA allows them.
var addressLayout = guestmm.Layout{FaultAround: 16, HugePages: true}

// exec builds the run's first process from the configured program.
func (k *Kernel) exec(img *loader.Image) (*Process, vmm.Regs, error) {
	prog := &programBacking{data: k.cfg.Program, name: k.cfg.Name}
	as, regs, err := k.buildImage(img, prog, k.cfg.Name, k.cfg.Args, k.cfg.Env)
	if err != nil {
		return nil, vmm.Regs{}, err
	}
	cwd, err := k.initialCwd()
	if err != nil {
		as.Destroy()
		return nil, vmm.Regs{}, err
	}
	p := newProcess(as, k.fs.NewFDTable(), cwd, exePath(k.cfg.Path, k.cfg.Name, k.cfg.Root))
	p.prog, p.args = prog, k.cfg.Args
	return p, regs, nil
}

// buildImage builds a fresh address space for img, as Linux's execve does
// for a static binary: file-backed private mappings (of file) for PT_LOAD
// segments, zeroed bss, a heap after the image, and the initial stack with
// args, env and the auxiliary vector. name is the program's name in
// errors and AT_EXECFN.
func (k *Kernel) buildImage(img *loader.Image, file guestmm.Backing, name string, args, env []string) (*guestmm.AddressSpace, vmm.Regs, error) {
	as, err := guestmm.NewAddressSpace(k.m.Mem(), k.frames, addressLayout)
	if err != nil {
		return nil, vmm.Regs{}, fmt.Errorf("creating address space: %w", err)
	}
	as, regs, err := k.fillImage(as, img, file, name, args, env)
	if err != nil {
		as.Destroy()
		return nil, vmm.Regs{}, err
	}
	return as, regs, nil
}

func (k *Kernel) fillImage(as *guestmm.AddressSpace, img *loader.Image, file guestmm.Backing, name string, args, env []string) (*guestmm.AddressSpace, vmm.Regs, error) {
	if err := vmm.MapKernel(as.PageTables()); err != nil {
		return nil, vmm.Regs{}, fmt.Errorf("mapping kernel pages: %w", err)
	}
	bias := img.Bias()
	for _, s := range img.Segments {
		n, err := loadSegment(as, file, s, bias)
		if err != nil {
			return nil, vmm.Regs{}, fmt.Errorf("%w: %s: loading segment at %#x: %v", ErrLoad, name, s.Vaddr, err)
		}
		// ru_minflt counts the faults Linux would take for these pages
		// with its fault-around: one per 64 KiB block.
		k.timers.minFaults += (n + 15) / 16
	}
	as.SetBrkBase(img.InitialBrk())

	top := as.Layout().StackTop
	if err := as.SetupStack(top, initialStackSize); err != nil {
		return nil, vmm.Regs{}, fmt.Errorf("creating stack: %w", err)
	}
	if img.StackExec {
		// PT_GNU_STACK with PF_X (-z execstack): Linux maps the stack
		// executable, for nested-function trampolines and the like.
		if err := as.Mprotect(top-initialStackSize, initialStackSize, guestmm.ProtRead|guestmm.ProtWrite|guestmm.ProtExec); err != nil {
			return nil, vmm.Regs{}, fmt.Errorf("making the stack executable: %w", err)
		}
	}
	info := loader.StackInfo{Args: args, Env: env, ExecFn: name, Platform: "x86_64"}
	if _, err := k.rand.Read(info.Random[:]); err != nil {
		return nil, vmm.Regs{}, err
	}
	vdsoBase, err := k.mapVDSO(as)
	if err != nil {
		return nil, vmm.Regs{}, err
	}
	auxv := img.Auxv(loader.AuxvParams{
		SysinfoEHDR: vdsoBase,
		UID:         uint64(unix.Getuid()), EUID: uint64(unix.Geteuid()),
		GID: uint64(unix.Getgid()), EGID: uint64(unix.Getegid()),
		HWCap: k.hwcap, MinSigStkSz: 2048,
	})
	sp, image, err := loader.BuildStack(top, info, auxv)
	if err != nil {
		return nil, vmm.Regs{}, fmt.Errorf("%w: %v", ErrLoad, err)
	}
	if err := as.WriteForce(sp, image); err != nil {
		return nil, vmm.Regs{}, fmt.Errorf("writing initial stack: %w", err)
	}
	return as, vmm.Regs{RIP: img.Entry + bias, RSP: sp, RFLAGS: 0x202}, nil
}

// CwdError is the error for a Config.Cwd the guest cannot start in.
type CwdError struct {
	Cwd    string
	Reason string // "not an absolute path", or the errno's text
}

func (e *CwdError) Error() string { return "working directory " + e.Cwd + ": " + e.Reason }

// initialCwd is Config.Cwd ("/" if empty) checked as chdir(2) would check
// it in the guest's file system: an absolute path to a directory the
// guest may search. It returns the canonical path, which getcwd shows.
func (k *Kernel) initialCwd() (string, error) {
	cwd := k.cfg.Cwd
	if cwd == "" {
		return "/", nil
	}
	if !strings.HasPrefix(cwd, "/") {
		return "", &CwdError{cwd, "not an absolute path"}
	}
	dir, errno := k.fs.Chdir("/", cwd)
	if errno != 0 {
		return "", &CwdError{cwd, errno.Error()}
	}
	return dir, nil
}

// exePath is what readlink("/proc/self/exe") gives the guest: Linux shows
// the absolute path of the executable's file, symbolic links resolved,
// however the program was named (argv[0] and AT_EXECFN keep that). glibc's
// static start-up asserts that it is absolute.
//
//   - With a root, a program inside it is shown by its guest path
//     (ROOT/usr/bin/busybox is /usr/bin/busybox); one outside it by
//     "/" and its file name, since no guest path leads to it and the
//     host's path is no business of the guest.
//   - Without a root the guest has no files of its own; it sees the host
//     path, which is what the program shows when run natively.
//
// hostPath is the program's host file (Config.Path); name stands in for
// it when it is empty.
func exePath(hostPath, name, root string) string {
	if hostPath == "" {
		hostPath = name
	}
	p, err := filepath.Abs(hostPath)
	if err != nil {
		return "/" + filepath.Base(hostPath)
	}
	if real, err := filepath.EvalSymlinks(p); err == nil {
		p = real
	}
	if root == "" {
		return p
	}
	if r, err := filepath.Abs(root); err == nil {
		if real, err := filepath.EvalSymlinks(r); err == nil {
			r = real
		}
		if rel, err := filepath.Rel(r, p); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
			return filepath.Join("/", rel)
		}
	}
	return "/" + filepath.Base(p)
}

// preloadMax bounds the file part of a segment that loadSegment maps
// at once; larger ones fault in, 64 KiB at a time (fault-around).
const preloadMax = 16 << 20

// loadSegment maps one PT_LOAD segment like Linux's elf_map/set_brk: the
// file part as a private file mapping, the tail of its last file page
// zeroed, and the rest of memsz as anonymous memory. Unlike Linux it maps
// the file part's pages right away, as a read fault would (clean and
// read-only, so a checkpoint still reads them from the file): each
// fault would be a VM exit. That is only an optimization; if guest RAM
// runs short the pages fault in later. It returns how many pages it
// mapped at once.
func loadSegment(as *guestmm.AddressSpace, prog guestmm.Backing, s loader.Segment, bias uint64) (preloaded uint64, err error) {
	prot := guestmm.Prot(s.Prot)
	va := s.Vaddr + bias
	start := loader.PageDown(va)
	fileEnd := loader.PageUp(va + s.Filesz)
	memEnd := loader.PageUp(va + s.Memsz)
	flags := uint32(guestmm.MapPrivate | guestmm.MapFixed)
	if s.Filesz > 0 {
		if _, err := as.Mmap(start, fileEnd-start, prot, flags, prog, loader.PageDown(s.Offset)); err != nil {
			return 0, err
		}
		if fileEnd-start <= preloadMax && prot != guestmm.ProtNone &&
			as.Madvise(start, fileEnd-start, guestmm.MadvPopulateRead) == nil {
			preloaded = (fileEnd - start) / guestmm.PageSize
		}
		if tail := fileEnd - (va + s.Filesz); s.Memsz > s.Filesz && tail > 0 {
			if err := as.WriteForce(va+s.Filesz, make([]byte, tail)); err != nil {
				return 0, err
			}
		}
	} else {
		fileEnd = start
	}
	if memEnd > fileEnd {
		if _, err := as.Mmap(fileEnd, memEnd-fileEnd, prot, flags|guestmm.MapAnonymous, nil, 0); err != nil {
			return 0, err
		}
	}
	return preloaded, nil
}
