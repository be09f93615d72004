package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/emuckpt/emuckpt/devices/hpet"
	"github.com/emuckpt/emuckpt/internal/hostfile"
	"github.com/emuckpt/emuckpt/kernel"
	"github.com/emuckpt/emuckpt/vmm"
	"golang.org/x/sys/unix"
)

// Exit statuses of emuckpt itself, after timeout(1) and env(1).
const (
	exitTimeout  = 124
	exitFailure  = 125
	exitNoExec   = 126
	exitNotFound = 127
)

const usage = `usage: emuckpt <command> [flags] [arguments]

Commands:
  demo                            checkpoint and restore an embedded program that maps devices
  run [flags] PROGRAM [ARGS...]   run a static x86-64 Linux program in a fresh VM
  restore [flags] IMAGE           continue a checkpointed program in a fresh VM
  verify [flags] PROGRAM [ARGS...]
                                  restart PROGRAM at every point and check its output
  inspect [--json] IMAGE          show what a checkpoint image holds
  help                            show this help

Run 'emuckpt COMMAND --help' for the flags of a command.

Exit status: the program's own status; 128+N if signal N killed it;
124 on --timeout; 125 if emuckpt itself failed (a bad flag, a missing or
bad image, ...), or if a checkpoint asked for by --checkpoint-at or
SIGUSR1 failed, or the --checkpoint-at trigger never fired (or fired at
only some of its points) because the run ended first (the last line of stderr then ends with
"exit status 125 instead of N", N being the status the run would have
had); 126 if the program cannot be executed (a directory or other
non-regular file, no execute permission, not an ELF, dynamic, wrong
architecture); 127 if it is not found. verify exits 0 when every point
passed, 1 when one diverged, 125 when emuckpt failed.
`

// Main is the whole command line tool, callable from tests.
func Main(args []string, stdin, stdout, stderr *os.File) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitFailure
	}
	switch args[0] {
	case "run":
		return cmdRun(args[1:], stdin, stdout, stderr)
	case "restore":
		return cmdRestore(args[1:], stdin, stdout, stderr)
	case "inspect":
		return cmdInspect(args[1:], stdout, stderr)
	case "demo":
		return cmdDemo(args[1:], stdout, stderr)
	case "verify":
		return cmdVerify(args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "emuckpt: unknown command %q\nRun 'emuckpt help' for usage.\n", args[0])
	return exitFailure
}

// envList is a repeatable --env K=V flag.
type envList []string

func (e *envList) String() string { return strings.Join(*e, ",") }
func (e *envList) Set(v string) error {
	if !strings.Contains(v, "=") || strings.HasPrefix(v, "=") {
		return fmt.Errorf("want KEY=VALUE, got %q", v)
	}
	*e = append(*e, v)
	return nil
}

// sizeFlag parses sizes such as 512M, 2G, 65536 (suffixes K, M, G and T,
// powers of 1024) and shows them the same way.
type sizeFlag uint64

var sizeUnits = []struct {
	suffix string
	mult   uint64
}{{"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}}

// String is the size with the largest suffix that divides it: 512M, not
// 536870912.
func (s *sizeFlag) String() string { return humanSize(uint64(*s)) }

// humanSize writes n as --mem and --tmpfs take it.
func humanSize(n uint64) string {
	for _, u := range sizeUnits {
		if n != 0 && n%u.mult == 0 {
			return strconv.FormatUint(n/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatUint(n, 10)
}

func (s *sizeFlag) Set(v string) error {
	digits, mult := v, uint64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(strings.ToUpper(v), u.suffix) {
			digits, mult = v[:len(v)-1], u.mult
			break
		}
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	if err != nil || n == 0 || n > (1<<62)/mult {
		return fmt.Errorf("want a size like 512M or 2G")
	}
	*s = sizeFlag(n * mult)
	return nil
}

// memFlag is --mem: a size within what the machine supports.
type memFlag struct{ sizeFlag }

func (m *memFlag) Set(v string) error {
	var s sizeFlag
	if err := s.Set(v); err != nil {
		return err
	}
	lo, hi := sizeFlag(vmm.MinMemSize), sizeFlag(vmm.MaxMemSize)
	switch {
	case s < lo:
		return fmt.Errorf("%s is less than the minimum, %s", v, humanSize(uint64(lo)))
	case s > hi:
		return fmt.Errorf("%s is more than the maximum, %s", v, humanSize(uint64(hi)))
	}
	m.sizeFlag = s
	return nil
}

// defaultEnv is the guest environment before --env.
var defaultEnv = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/"}

// machineFlags are the flags run and restore share: the world around the
// guest (root, devices) and how the run is supervised.
type machineFlags struct {
	root    *string
	timeout *time.Duration
	verbose *bool
	trace   *bool
	bsrs    bsrFlag
	hpet    hpetFlag
	tmpfs   tmpfsFlag
	cpus    cpusFlag
}

// cpusFlag is --cpus N: 0 (not given) means the default (see cpuCount).
type cpusFlag int

func (c *cpusFlag) String() string { return strconv.Itoa(int(*c)) }

func (c *cpusFlag) Set(v string) error {
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > vmm.MaxCPUs {
		return fmt.Errorf("want a number of vCPUs from 1 to %d", vmm.MaxCPUs)
	}
	*c = cpusFlag(n)
	return nil
}

// cpuCount is the number of vCPUs for a run: --cpus, or by default the
// host's CPUs (at most vmm.MaxCPUs), and one for a deterministic run,
// which cannot have more.
func (m *machineFlags) cpuCount(cmd string, deterministic bool, stderr io.Writer) (int, bool) {
	n := int(m.cpus)
	switch {
	case n == 0 && deterministic:
		return 1, true
	case n == 0:
		return min(runtime.NumCPU(), vmm.MaxCPUs), true
	case n > 1 && deterministic:
		fmt.Fprintf(stderr, "emuckpt: %s: --cpus %d: a deterministic run has one vCPU\n", cmd, n)
		return 0, false
	}
	return n, true
}

func addMachineFlags(fs *flag.FlagSet) *machineFlags {
	m := &machineFlags{
		root:    fs.String("root", "", "host directory the guest sees read-only as /"),
		timeout: fs.Duration("timeout", 0, "end the guest after this long (exit status 124); 0 means never"),
		verbose: fs.Bool("v", false, "report unknown system calls (once each) and killing signals"),
		trace:   fs.Bool("trace", false, "log every system call to stderr when it completes, decoded as strace does (see docs/TRACE.md)"),
	}
	m.hpet.cfg = hpet.DefaultConfig()
	fs.Var(&m.bsrs, "bsr", "a BSR register BYTES[:STRIDE[:LENGTH]] (repeatable; replaces the default bsr8, bsr16, bsr64, bsr128)")
	fs.Var(&m.hpet, "hpet", "HPET configuration timers=N,period=FS (default timers=3,period=69841279)")
	fs.Var(&m.cpus, "cpus", fmt.Sprintf("vCPUs that run the guest's tasks in parallel, 1 to %d (default: the host's CPUs; 1 with --deterministic)", vmm.MaxCPUs))
	fs.Var(&m.tmpfs, "tmpfs", "mount an in-memory tmpfs at PATH[:SIZE] (repeatable; /tmp is always one, of half the guest RAM by default; on restore see the README)")
	return m
}

func (m *machineFlags) config(stdin, stdout, stderr *os.File) kernel.Config {
	root := *m.root
	if abs, err := filepath.Abs(root); root != "" && err == nil {
		root = abs // as images record it (inspect shows it)
	}
	return kernel.Config{
		Root: root, Stdin: stdin, Stdout: stdout, Stderr: stderr,
		Log: stderr, Trace: *m.trace, Verbose: *m.verbose,
		Devices: deviceFactories(m.hpet.cfg, m.bsrs.specs()),
		Tmpfs:   m.tmpfs,
	}
}

// tmpfsFlag is the repeatable --tmpfs PATH[:SIZE].
type tmpfsFlag []kernel.TmpfsMount

func (t *tmpfsFlag) String() string {
	var s []string
	for _, m := range *t {
		s = append(s, fmt.Sprintf("%s:%d", m.Path, m.Size))
	}
	return strings.Join(s, ",")
}

func (t *tmpfsFlag) Set(v string) error {
	path, size, hasSize := strings.Cut(v, ":")
	m := kernel.TmpfsMount{Path: path}
	if !strings.HasPrefix(path, "/") || path == "/" || filepath.Clean(path) != path {
		return fmt.Errorf("want an absolute, clean guest path other than / (PATH[:SIZE]), got %q", path)
	}
	if hasSize {
		var sz sizeFlag
		if err := sz.Set(size); err != nil {
			return err
		}
		m.Size = int64(sz)
	}
	for _, o := range *t {
		if o.Path == path {
			return fmt.Errorf("%s is given twice", path)
		}
	}
	*t = append(*t, m)
	return nil
}

// parseFlags parses a command's flags. --help prints usage (the command's
// text and its flags) and is status 0; a bad flag or value prints
// "emuckpt: COMMAND: the error" and one line pointing to --help, not the
// whole usage, and is status 125 like every other usage error.
func parseFlags(fs *flag.FlagSet, args []string, usage string, stderr io.Writer) (ok bool, status int) {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stderr, usage)
		fs.SetOutput(stderr)
		fs.PrintDefaults()
		return false, 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "emuckpt: %s: %v\nRun 'emuckpt %s --help' for usage.\n", fs.Name(), err, fs.Name())
		return false, exitFailure
	}
	return true, 0
}

const runUsage = `usage: emuckpt run [flags] PROGRAM [ARGS...]

Runs a static x86-64 Linux ELF in a fresh KVM VM.

Checkpoints: with --checkpoint-to FILE, a checkpoint is written when
--checkpoint-at fires, when emuckpt receives SIGUSR1, or when the guest
calls emuckpt_checkpoint() (testimages/include/emuckpt.h). The run then
stops with status 0, unless --leave-running is given; with it, a full
checkpoint asked for from outside the guest pauses the program only for
a few milliseconds and is written while it runs on.

Several checkpoints: --checkpoint-at syscall:N,M,... (or device:N,M,...)
checkpoints at each point, going on after each but the last (after the
last too with --leave-running); every:DUR checkpoints every DUR until the
program ends. Each checkpoint of such a run gets its own file: FILE,
then FILE.1, FILE.2, ...; a FILE with %d in it names checkpoint n (from
0) with n in place of the %d, in any run. The checkpoints after the
first are incremental: each image holds only the pages written since
the one before and names it as its parent (restore reads the chain;
keep the files together; see docs/FORMAT.md). --full writes full images
instead. Other runs write each checkpoint to FILE, a full image that
replaces the one before.

FILE is checked before the program runs: its directory must exist and
let emuckpt create files, and FILE must not be a directory (status 125
otherwise). A checkpoint that fails later (the program holds a socket,
the disk is full, the directory is gone) is reported on stderr and the
program goes on, with or without --leave-running; FILE keeps what it
held. If one asked for by --checkpoint-at or SIGUSR1 failed, or the
--checkpoint-at trigger never fired, or not at all of its points (the
run ended first), emuckpt exits with 125 when the program ends, and
the last line of stderr ends
"exit status 125 instead of N", N being the status the run would have
had. emuckpt_checkpoint() returns -EIO when its checkpoint fails and
leaves the exit status to the program.

Tracing: --trace prints each system call on stderr as strace -f would
("emuckpt: trace: [pid N] NAME(ARGS) = RESULT"); --trace-json FILE writes
a Chrome/Perfetto trace-event file of the run (system calls, signals,
page faults, device accesses, checkpoints). See docs/TRACE.md.

Flags:
`

func cmdRun(args []string, stdin, stdout, stderr *os.File) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var (
		env     envList
		mem     = memFlag{sizeFlag(vmm.DefaultMemSize)}
		cwd     = fs.String("cwd", "/", "guest working directory: an absolute guest path to a directory")
		det     = fs.Bool("deterministic", false, "virtual clock, seeded randomness, trapped rdtsc: runs repeat byte for byte")
		seed    = fs.Uint64("seed", 0, "seed for --deterministic randomness")
		ckptTo  = fs.String("checkpoint-to", "", "write checkpoints to this image file")
		ckptAt  = fs.String("checkpoint-at", "", "when to checkpoint: syscall:N, device:N (Nth device MMIO access), time:DUR, several points syscall:N,M,... or device:N,M,..., or every:DUR")
		leave   = fs.Bool("leave-running", false, "go on after a checkpoint instead of stopping (checkpoints asked for from outside are then written while the program runs on, deltas excepted)")
		full    = fs.Bool("full", false, "write every checkpoint as a full image, never as a delta against the one before")
		machine = addMachineFlags(fs)
		traceTo = addTraceJSONFlag(fs)
	)
	fs.Var(&env, "env", "add KEY=VALUE to the guest environment (repeatable)")
	fs.Var(&mem, "mem", fmt.Sprintf("guest RAM size, from %s to %s (e.g. 512M, 2G)", humanSize(vmm.MinMemSize), humanSize(vmm.MaxMemSize)))
	if ok, st := parseFlags(fs, args, runUsage, stderr); !ok {
		return st
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "emuckpt: run: missing PROGRAM (see 'emuckpt run --help')")
		return exitFailure
	}
	trigger, err := parseTrigger(*ckptAt)
	if err != nil {
		fmt.Fprintf(stderr, "emuckpt: run: --checkpoint-at: %v\n", err)
		return exitFailure
	}
	if *ckptAt != "" && *ckptTo == "" {
		fmt.Fprintln(stderr, "emuckpt: run: --checkpoint-at needs --checkpoint-to FILE")
		return exitFailure
	}
	if !strings.HasPrefix(*cwd, "/") {
		fmt.Fprintf(stderr, "emuckpt: run: --cwd %s: want an absolute guest path, such as /tmp\n", *cwd)
		return exitFailure
	}
	if !checkDestination("run", *ckptTo, stderr) {
		return exitFailure
	}
	cfg := machine.config(stdin, stdout, stderr)
	if status, ok := programConfig(&cfg, fs.Args(), env, *cwd, uint64(mem.sizeFlag), stderr); !ok {
		return status
	}
	cfg.Deterministic, cfg.Seed = *det, *seed
	var ok bool
	if cfg.CPUs, ok = machine.cpuCount("run", *det, stderr); !ok {
		return exitFailure
	}
	stopRequests := checkpointConfig(&cfg, *ckptTo, trigger, *leave, *full, nil, stderr)
	defer stopRequests()
	tj, ok := openTraceJSON("run", *traceTo, &cfg, stderr)
	if !ok {
		return exitFailure
	}
	defer tj.finish(stderr)
	k, err := kernel.New(cfg)
	if ce := (*kernel.CwdError)(nil); errors.As(err, &ce) {
		where := "in the guest's file system"
		if cfg.Root == "" {
			where += ", which without --root holds only /, /tmp, /dev and /proc"
		}
		fmt.Fprintf(stderr, "emuckpt: run: --cwd %s: %s %s\n", ce.Cwd, ce.Reason, where)
		return exitFailure
	}
	if err != nil {
		return reportSetupError(stderr, err)
	}
	defer k.Close()
	return supervise(k, cfg.Name, *machine.timeout, trigger, stderr)
}

// supervise runs k to its end and turns the result into emuckpt's status.
// tr is the --checkpoint-at trigger of the run, if any.
func supervise(k *kernel.Kernel, name string, timeout time.Duration, tr trigger, stderr io.Writer) int {
	ctx := context.Background()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	start := time.Now()
	st, err := k.Run(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "emuckpt: %v\n", err)
		return exitFailure
	}
	if st.TimedOut {
		fmt.Fprintf(stderr, "emuckpt: %s: timed out after %v\n", name, timeout.Round(time.Millisecond))
	}
	// A requested checkpoint that failed did not stop the program, but a
	// script must still learn of it: status 125, and the status the run
	// would have had on the last line. So must one that never happened.
	cs := k.CheckpointStats()
	if cs.Failed > 0 {
		fmt.Fprintf(stderr, "emuckpt: %s: %d of %d requested checkpoints failed; exit status %d instead of %d\n",
			name, cs.Failed, cs.Requested, exitFailure, st.ShellStatus())
		return exitFailure
	}
	if tr.text != "" && cs.Requested == 0 {
		fmt.Fprintf(stderr, "emuckpt: %s: --checkpoint-at %s never fired: %s, and no checkpoint was written; exit status %d instead of %d\n",
			name, tr.text, tr.neverFired(k, time.Since(start)), exitFailure, st.ShellStatus())
		return exitFailure
	}
	if n := tr.points(); n > 1 && cs.Requested < n {
		fmt.Fprintf(stderr, "emuckpt: %s: --checkpoint-at %s fired at %d of its %d points: %s; exit status %d instead of %d\n",
			name, tr.text, cs.Requested, n, tr.neverFired(k, time.Since(start)), exitFailure, st.ShellStatus())
		return exitFailure
	}
	return st.ShellStatus()
}

// maxProgramSize bounds the program file that run and restore read into
// memory. Static binaries are rarely above 100 MiB.
const maxProgramSize = 1 << 30

// loadProgram finds PROGRAM like env(1) and reads it. A name with a slash
// is a path, anything else is looked up in $PATH. Like env, it fails with
// 127 (exitNotFound) when there is no such file and with 126 (exitNoExec)
// when the file cannot be executed: a directory, a file without execute
// permission, or anything but a regular file (reading /dev/zero or a FIFO
// would never end).
func loadProgram(name string) (path string, prog []byte, status int, err error) {
	path = name
	if !strings.Contains(name, "/") {
		if path, err = exec.LookPath(name); err != nil {
			return "", nil, exitNotFound, errors.New("not found in $PATH")
		}
	}
	f, fi, err := hostfile.Open(path)
	if err != nil {
		var notRegular *hostfile.Error
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return "", nil, exitNotFound, errors.New("No such file or directory")
		case errors.As(err, &notRegular) && notRegular.Mode.IsDir():
			return "", nil, exitNoExec, errors.New("cannot execute: Is a directory")
		case errors.Is(err, fs.ErrPermission):
			return "", nil, exitNoExec, errors.New("cannot execute: Permission denied")
		}
		return "", nil, exitNoExec, fmt.Errorf("cannot execute: %s", why(err))
	}
	defer f.Close()
	// execve(2) wants execute permission for the caller (for root: any
	// execute bit), which access(2) with AT_EACCESS decides.
	if err := unix.Faccessat(unix.AT_FDCWD, path, unix.X_OK, unix.AT_EACCESS); err != nil {
		return "", nil, exitNoExec, errors.New("cannot execute: Permission denied")
	}
	if prog, err = hostfile.Read(f, fi, maxProgramSize); err != nil {
		return "", nil, exitNoExec, fmt.Errorf("cannot execute: %s", why(err))
	}
	return path, prog, 0, nil
}

// why is the reason in an error about a file whose path the message
// already names: "a FIFO, not a regular file" rather than
// "/tmp/f: a FIFO, not a regular file".
func why(err error) string {
	var he *hostfile.Error
	if errors.As(err, &he) {
		return he.Detail
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// programConfig loads the program args[0] names and puts it in cfg with
// its arguments, environment (emuckpt's default plus env), working
// directory and memory size. When it cannot, it says why on stderr and
// returns the exit status with ok false.
func programConfig(cfg *kernel.Config, args, env []string, cwd string, mem uint64, stderr io.Writer) (status int, ok bool) {
	name := args[0]
	path, prog, status, err := loadProgram(name)
	if err != nil {
		fmt.Fprintf(stderr, "emuckpt: %s: %v\n", name, err)
		return status, false
	}
	abs, _ := filepath.Abs(path)
	cfg.Program, cfg.Name, cfg.Path, cfg.Args = prog, name, abs, args
	cfg.Env, cfg.Cwd, cfg.MemSize = mergeEnv(defaultEnv, env), cwd, mem
	return 0, true
}

func mergeEnv(base, add []string) []string {
	out := append([]string(nil), base...)
	for _, kv := range add {
		key := kv[:strings.IndexByte(kv, '=')+1]
		replaced := false
		for i, old := range out {
			if strings.HasPrefix(old, key) {
				out[i], replaced = kv, true
			}
		}
		if !replaced {
			out = append(out, kv)
		}
	}
	return out
}

func reportSetupError(w io.Writer, err error) int {
	fmt.Fprintf(w, "emuckpt: %v\n", err)
	if errors.Is(err, kernel.ErrLoad) {
		return exitNoExec
	}
	return exitFailure
}
