package kernel

import (
	"bytes"
	"encoding/binary"
	"errors"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/emuckpt/emuckpt/guestmm"
	"github.com/emuckpt/emuckpt/kernel/loader"
	"github.com/emuckpt/emuckpt/kernel/vfs"
	"github.com/emuckpt/emuckpt/vmm"
	"golang.org/x/sys/unix"
)

// execve and execveat: static ELF programs from the guest's files, and
// `#!` scripts whose interpreter is one.

const (
	// maxArgStrlen and maxArgBytes bound execve's strings as Linux does
	// (MAX_ARG_STRLEN; a quarter of the 8 MiB stack limit in all).
	maxArgStrlen = 32 * guestmm.PageSize
	maxArgBytes  = 2 << 20
	// binprmBufSize is how much of a file exec looks at for `#!`.
	binprmBufSize = 256
	// maxInterpDepth is how many `#!` levels an exec follows (ELOOP).
	maxInterpDepth = 4
	// maxExecSize bounds the program file exec reads.
	maxExecSize = 1 << 30
)

func (k *Kernel) sysExecve(t *Task, a *args) (uint64, unix.Errno) {
	return k.execveat(t, atCWD, a[0], a[1], a[2], 0)
}

func (k *Kernel) sysExecveat(t *Task, a *args) (uint64, unix.Errno) {
	return k.execveat(t, a[0], a[1], a[2], a[3], a[4])
}

// program is an executable file exec has read.
type program struct {
	data    []byte
	backing guestmm.Backing
	path    string // its absolute guest path
}

func (k *Kernel) execveat(t *Task, dirfd, pathVA, argvVA, envpVA, flags uint64) (uint64, unix.Errno) {
	if flags&^(atEmptyPath|atSymlinkNofollow) != 0 {
		return 0, unix.EINVAL
	}
	name, e := k.path(t, pathVA)
	if e != 0 {
		return 0, e
	}
	argv, e := k.stringArray(t, argvVA)
	if e != 0 {
		return 0, e
	}
	if len(argv) == 0 {
		// An empty argv gets an empty argv[0], as Linux (5.18 on) gives
		// it, so that argc is never 0.
		argv = []string{""}
	}
	envp, e := k.stringArray(t, envpVA)
	if e != 0 {
		return 0, e
	}
	var f vfs.File
	dir := t.proc.cwd
	if name == "" {
		if flags&atEmptyPath == 0 {
			return 0, unix.ENOENT
		}
		if f, e = k.file(t, dirfd); e != 0 {
			return 0, e
		}
		name = "/dev/fd/" + strconv.Itoa(int(int32(dirfd)))
	} else {
		if dir, e = k.dirOf(t, dirfd, name); e != 0 {
			return 0, e
		}
	}
	var prog program
	if name == "/proc/self/exe" || name == "/proc/"+strconv.Itoa(t.proc.pid)+"/exe" {
		// The process's own program (busybox runs its applets so).
		prog, e = k.ownProgram(t)
	} else {
		prog, argv, e = k.loadProgram(f, dir, name, argv, 0)
	}
	if e != 0 {
		return 0, e
	}
	img, err := loader.Parse(prog.data)
	if err != nil {
		if errors.Is(err, loader.ErrDynamic) {
			k.noteOnce("exec-dynamic", "execve of a dynamically linked program: emuckpt runs static programs only (ENOEXEC)")
		}
		return 0, unix.ENOEXEC
	}
	as, regs, err := k.buildImage(img, prog.backing, name, argv, envp)
	if err != nil {
		if errors.Is(err, ErrLoad) {
			return 0, unix.ENOEXEC
		}
		return 0, unix.ENOMEM
	}
	k.replaceImage(t, as, regs, prog.path, name, argv)
	return 0, 0
}

// replaceImage is execve's point of no return: the process gets the new
// address space and loses its other threads, its handlers, its
// close-on-exec descriptors and its POSIX timers.
func (k *Kernel) replaceImage(t *Task, as *guestmm.AddressSpace, regs vmm.Regs, exe, name string, argv []string) {
	p := t.proc
	for _, o := range slices.Clone(p.tasks) {
		if o != t {
			k.removeTask(o)
		}
	}
	k.clearChildTID(t)
	k.exitRobustList(t)
	k.dropMM(p)
	p.as, p.asUsers = as, newCount()
	unshareFiles(p)
	p.fds.CloseOnExec()
	for sig := range p.actions {
		if p.actions[sig].Handler == sigIgn {
			p.actions[sig] = sigAction{Handler: sigIgn}
		} else {
			p.actions[sig] = sigAction{}
		}
	}
	p.exe, p.prog, p.args, p.execed = exe, nil, argv, true
	p.vforkParent = nil
	k.dropTimers(p, false)
	t.altstack = stackT{Flags: ssDisable}
	t.comm = commOf(name)
	if t.tid != p.pid {
		// A thread that execs takes over the thread-group leader's id.
		t.tid = p.pid
	}
	p.tasks = []*Task{t}
	c := t.cpu.vcpu
	*c.Regs() = regs
	c.SetFSBase(0)
	c.SetGSBase(0)
	c.SetCR3(as.PageTables().Root())
	t.cpu.as = as
	c.SetFPUState(c.InitialFPU())
}

// ownProgram is the program t's process runs: the run's program, or the
// file it exec'ed.
func (k *Kernel) ownProgram(t *Task) (program, unix.Errno) {
	p := t.proc
	if p.prog != nil {
		return program{data: p.prog.data, backing: p.prog, path: p.exe}, 0
	}
	prog, _, e := k.loadProgram(nil, "/", p.exe, nil, maxInterpDepth)
	return prog, e
}

// loadProgram reads the program at name (relative to dir), or in f when
// it is given (AT_EMPTY_PATH). A `#!` script gives way to its
// interpreter, with argv rewritten as Linux's binfmt_script does.
func (k *Kernel) loadProgram(f vfs.File, dir, name string, argv []string, depth int) (program, []string, unix.Errno) {
	abs := name
	if f == nil {
		var e unix.Errno
		if f, e = k.fs.Open(dir, name, unix.O_RDONLY); e != 0 {
			return program{}, nil, e
		}
		defer f.Close()
		if !path.IsAbs(abs) {
			abs = path.Join(dir, name)
		}
	}
	st, e := f.Stat()
	if e != 0 {
		return program{}, nil, e
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Mode&0o111 == 0 {
		return program{}, nil, unix.EACCES
	}
	if st.Size > maxExecSize {
		return program{}, nil, unix.ENOMEM
	}
	data := make([]byte, st.Size)
	for off := 0; off < len(data); {
		n, e := f.Pread(data[off:], int64(off))
		if e != 0 {
			return program{}, nil, e
		}
		if n == 0 {
			data = data[:off]
			break
		}
		off += n
	}
	if bytes.HasPrefix(data, []byte("#!")) {
		if depth >= maxInterpDepth {
			return program{}, nil, unix.ELOOP
		}
		interp, arg, ok := shebang(data)
		if !ok {
			return program{}, nil, unix.ENOEXEC
		}
		nargv := []string{interp}
		if arg != "" {
			nargv = append(nargv, arg)
		}
		nargv = append(nargv, abs)
		if len(argv) > 1 {
			nargv = append(nargv, argv[1:]...)
		}
		return k.loadProgram(nil, dir, interp, nargv, depth+1)
	}
	m, ok := vfs.As[vfs.Mappable](f)
	if !ok {
		return program{}, nil, unix.EACCES
	}
	b, e := m.MmapBacking(0, uint64(max(len(data), 1)), uint32(guestmm.ProtRead|guestmm.ProtExec), false)
	if e != 0 {
		return program{}, nil, e
	}
	return program{data: data, backing: b, path: abs}, argv, 0
}

// shebang parses a `#!` line: the interpreter and at most one argument
// (the rest of the line, as Linux passes it).
func shebang(data []byte) (interp, arg string, ok bool) {
	line := data[2:min(len(data), binprmBufSize)]
	if i := bytes.IndexByte(line, '\n'); i >= 0 {
		line = line[:i]
	} else if len(data) >= binprmBufSize {
		return "", "", false // no end of line in the first 256 bytes
	}
	s := strings.Trim(string(line), " \t")
	if s == "" {
		return "", "", false
	}
	interp, arg, _ = strings.Cut(s, " ")
	if i := strings.IndexAny(interp, "\t"); i >= 0 {
		interp, arg = interp[:i], interp[i+1:]+" "+arg
	}
	return interp, strings.Trim(arg, " \t"), true
}

// stringArray reads a NULL-terminated array of string pointers (argv,
// envp); a NULL array is empty.
func (k *Kernel) stringArray(t *Task, va uint64) ([]string, unix.Errno) {
	var out []string
	if va == 0 {
		return nil, 0
	}
	total := 0
	for i := uint64(0); ; i++ {
		var b [8]byte
		if e := k.copyIn(t, va+8*i, b[:]); e != 0 {
			return nil, e
		}
		p := binary.LittleEndian.Uint64(b[:])
		if p == 0 {
			return out, 0
		}
		s, err := t.proc.as.ReadString(p, maxArgStrlen)
		if err != nil {
			if errors.Is(err, unix.ENAMETOOLONG) {
				return nil, unix.E2BIG
			}
			return nil, errnoOf(err)
		}
		if total += len(s) + 1 + 8; total > maxArgBytes {
			return nil, unix.E2BIG
		}
		out = append(out, s)
	}
}
