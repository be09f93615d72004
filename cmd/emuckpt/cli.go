package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/emuckpt/emuckpt/kernel"
	"github.com/emuckpt/emuckpt/vmm"
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
  run [flags] PROGRAM [ARGS...]   run a static x86-64 Linux program in a fresh VM
  help                            show this help

Run 'emuckpt run --help' for the flags of run.

Exit status: the program's own status; 128+N if signal N killed it;
124 on --timeout; 125 if emuckpt itself failed; 126 if the program cannot
be executed (not an ELF, dynamic, wrong architecture); 127 if it is not found.
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
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "emuckpt: unknown command %q\n\n%s", args[0], usage)
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

// sizeFlag parses sizes such as 512M, 2G, 65536.
type sizeFlag uint64

func (s *sizeFlag) String() string { return strconv.FormatUint(uint64(*s), 10) }
func (s *sizeFlag) Set(v string) error {
	mult := uint64(1)
	switch {
	case strings.HasSuffix(v, "K"), strings.HasSuffix(v, "k"):
		mult = 1 << 10
	case strings.HasSuffix(v, "M"), strings.HasSuffix(v, "m"):
		mult = 1 << 20
	case strings.HasSuffix(v, "G"), strings.HasSuffix(v, "g"):
		mult = 1 << 30
	}
	if mult != 1 {
		v = v[:len(v)-1]
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n == 0 || n > (1<<62)/mult {
		return fmt.Errorf("want a size like 512M or 2G")
	}
	*s = sizeFlag(n * mult)
	return nil
}

// defaultEnv is the guest environment before --env.
var defaultEnv = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/"}

func cmdRun(args []string, stdin, stdout, stderr *os.File) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		env     envList
		mem     = sizeFlag(vmm.DefaultMemSize)
		root    = fs.String("root", "", "host directory the guest sees read-only as /")
		cwd     = fs.String("cwd", "/", "guest working directory")
		timeout = fs.Duration("timeout", 0, "end the guest after this long (exit status 124); 0 means never")
		det     = fs.Bool("deterministic", false, "virtual clock, seeded randomness, trapped rdtsc: runs repeat byte for byte")
		seed    = fs.Uint64("seed", 0, "seed for --deterministic randomness")
		verbose = fs.Bool("v", false, "report unknown system calls (once each) and killing signals")
		trace   = fs.Bool("trace", false, "log every system call to stderr")
	)
	var bsrs bsrFlag
	fs.Var(&env, "env", "add KEY=VALUE to the guest environment (repeatable)")
	fs.Var(&bsrs, "bsr", "a BSR register BYTES[:STRIDE[:LENGTH]] (repeatable; replaces the default bsr8, bsr16, bsr64, bsr128)")
	fs.Var(&mem, "mem", "guest RAM size (e.g. 512M, 2G)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: emuckpt run [flags] PROGRAM [ARGS...]\n\nRuns a static x86-64 Linux ELF in a fresh KVM VM.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return exitFailure
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "emuckpt: run: missing PROGRAM (see 'emuckpt run --help')")
		return exitFailure
	}
	name := fs.Arg(0)
	path, err := findProgram(name)
	if err != nil {
		fmt.Fprintf(stderr, "emuckpt: %s: %v\n", name, err)
		return exitNotFound
	}
	prog, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintf(stderr, "emuckpt: %s: %v\n", name, err)
		return exitNoExec
	}
	k, err := kernel.New(kernel.Config{
		Program: prog, Name: name, Args: fs.Args(), Env: mergeEnv(defaultEnv, env),
		Root: *root, Cwd: *cwd, Stdin: stdin, Stdout: stdout, Stderr: stderr,
		MemSize: uint64(mem), Deterministic: *det, Seed: *seed,
		Log: stderr, Trace: *trace, Verbose: *verbose,
		Devices: []kernel.DeviceFactory{bsrDevice(bsrs.specs())},
	})
	if err != nil {
		return reportSetupError(stderr, err)
	}
	defer k.Close()
	ctx := context.Background()
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	st, err := k.Run(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "emuckpt: %v\n", err)
		return exitFailure
	}
	if st.TimedOut {
		fmt.Fprintf(stderr, "emuckpt: %s: timed out after %v\n", name, timeout.Round(time.Millisecond))
	}
	return st.ShellStatus()
}

// findProgram resolves PROGRAM like env(1): a name with a slash is a path,
// anything else is looked up in $PATH.
func findProgram(name string) (string, error) {
	if strings.Contains(name, "/") {
		st, err := os.Stat(name)
		if err != nil {
			return "", errors.New("no such file")
		}
		if st.IsDir() {
			return "", errors.New("is a directory")
		}
		return name, nil
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", errors.New("not found in $PATH")
	}
	return p, nil
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
