package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/emuckpt/emuckpt/ckpt"
	"github.com/emuckpt/emuckpt/internal/hostfile"
	"github.com/emuckpt/emuckpt/kernel"
	"github.com/emuckpt/emuckpt/verify"
)

// trigger is a parsed --checkpoint-at.
type trigger struct {
	syscall, device uint64
	after           time.Duration
	text            string // as given
}

// neverFired says why tr, which did not fire, did not: the run ended
// first. k has run.
func (tr trigger) neverFired(k *kernel.Kernel, ran time.Duration) string {
	syscalls, accesses := k.EventCounts()
	switch {
	case tr.syscall != 0:
		return fmt.Sprintf("the run ended after %d system calls", syscalls)
	case tr.device != 0:
		return fmt.Sprintf("the run ended after %d device accesses", accesses)
	}
	return fmt.Sprintf("the run ended after %v", ran.Round(time.Millisecond))
}

func parseTrigger(s string) (trigger, error) {
	if s == "" {
		return trigger{}, nil
	}
	kind, val, ok := strings.Cut(s, ":")
	if !ok {
		return trigger{}, fmt.Errorf("%q: want syscall:N, device:N or time:DUR", s)
	}
	switch kind {
	case "syscall", "device":
		n, err := strconv.ParseUint(val, 10, 64)
		if err != nil || n == 0 {
			return trigger{}, fmt.Errorf("%q: N must be a positive integer", s)
		}
		if kind == "syscall" {
			return trigger{syscall: n, text: s}, nil
		}
		return trigger{device: n, text: s}, nil
	case "time":
		d, err := time.ParseDuration(val)
		if err != nil || d <= 0 {
			return trigger{}, fmt.Errorf("%q: DUR must be a positive duration such as 50ms", s)
		}
		return trigger{after: d, text: s}, nil
	}
	return trigger{}, fmt.Errorf("%q: unknown trigger %q; want syscall:N, device:N or time:DUR", s, kind)
}

// checkDestination checks --checkpoint-to before the guest runs, so a
// mistake costs nothing: a missing directory, a directory as target or a
// place where no file can be created is status 125 at once. It also
// removes temporary files that writers of the same image which died left
// behind, and says so.
func checkDestination(cmd, to string, stderr io.Writer) bool {
	if to == "" {
		return true
	}
	removed, err := ckpt.CheckDestination(to)
	if err != nil {
		fmt.Fprintf(stderr, "emuckpt: %s: --checkpoint-to %s: %v\n", cmd, to, err)
		return false
	}
	for _, p := range removed {
		fmt.Fprintf(stderr, "emuckpt: removed %s, a temporary file left by an emuckpt that died\n", p)
	}
	return true
}

// checkpointConfig fills cfg.Checkpoint: where images go and what asks
// for them (the trigger, SIGUSR1). The returned func stops the watchers.
func checkpointConfig(cfg *kernel.Config, to string, tr trigger, leave bool, stderr io.Writer) func() {
	requests := make(chan struct{}, 1)
	ask := func() {
		select {
		case requests <- struct{}{}:
		default:
		}
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGUSR1)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-sigs:
				if to == "" {
					fmt.Fprintln(stderr, "emuckpt: SIGUSR1: no --checkpoint-to FILE, so no checkpoint")
					continue
				}
				ask()
			}
		}
	}()
	var timer *time.Timer
	if tr.after > 0 {
		timer = time.AfterFunc(tr.after, ask)
	}
	cfg.Checkpoint = kernel.CheckpointConfig{
		AtSyscall: tr.syscall, AtDevice: tr.device, Requests: requests, LeaveRunning: leave, Background: leave,
	}
	if to != "" {
		cfg.Checkpoint.Save = func(s *kernel.Snapshot) error {
			if err := ckpt.Write(to, s); err != nil {
				return err
			}
			took := time.Since(s.Started).Round(time.Microsecond)
			how := ""
			if s.Guard != nil {
				how = fmt.Sprintf(", written while the program ran on: it paused %v", s.Paused.Round(time.Microsecond))
			}
			fmt.Fprintf(stderr, "emuckpt: checkpoint written to %s (%d pages, after %d system calls, in %v%s)\n",
				to, s.State.PageCount, s.State.Syscalls, took, how)
			return nil
		}
	}
	return func() {
		signal.Stop(sigs)
		close(done)
		if timer != nil {
			timer.Stop()
		}
	}
}

const restoreUsage = `usage: emuckpt restore [flags] IMAGE

Builds a fresh VM from a checkpoint image and continues the program where
it stopped; the exit status is the program's. The program file named in
the image must still exist unchanged, and the devices must be configured
as they were (the same --bsr flags). An image of a run with --root needs
--root again: the same directory, or a copy of it ('emuckpt inspect'
shows it); restore refuses to go on without one. The same image can be
restored any number of times. --checkpoint-to and --leave-running work as
for run (see 'emuckpt run --help'), and so does a failed checkpoint.

Flags:
`

func cmdRestore(args []string, stdin, stdout, stderr *os.File) int {
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	policy := fs.String("device-state", "fresh", "fresh: devices start from their start-up state (mapping-only); preserve: devices get their saved registers back")
	ckptTo := fs.String("checkpoint-to", "", "write further checkpoints (SIGUSR1, emuckpt_checkpoint) to this image file")
	program := fs.String("program", "", "the program file, if it is no longer where the image says (its SHA-256 must match)")
	leave := fs.Bool("leave-running", false, "go on after a checkpoint instead of stopping")
	perturb := fs.String("perturb", "none", "what a real restart may bring: hpet-jump=DUR, clock-jump=DUR, bsr-clear, joined by commas (see 'emuckpt verify --help')")
	machine := addMachineFlags(fs)
	traceTo := addTraceJSONFlag(fs)
	if ok, st := parseFlags(fs, args, restoreUsage, stderr); !ok {
		return st
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "emuckpt: restore: want exactly one IMAGE (see 'emuckpt restore --help')")
		return exitFailure
	}
	if *policy != "fresh" && *policy != "preserve" {
		fmt.Fprintf(stderr, "emuckpt: restore: --device-state=%s: want fresh or preserve\n", *policy)
		return exitFailure
	}
	pert, err := verify.ParsePerturbation(*perturb)
	if err != nil {
		fmt.Fprintf(stderr, "emuckpt: restore: --perturb: %v\n", err)
		return exitFailure
	}
	if !checkDestination("restore", *ckptTo, stderr) {
		return exitFailure
	}
	img, err := ckpt.Open(fs.Arg(0))
	if err != nil {
		return imageError(stderr, fs.Arg(0), err)
	}
	defer img.Close() // Restore keeps a descriptor of its own: closed earlier below
	if r := img.State.Root; r != "" && *machine.root == "" {
		fmt.Fprintf(stderr, "emuckpt: %s: the program ran with --root %s: restore it with --root %s (or a copy of that directory)\n",
			fs.Arg(0), printable(r), printable(r))
		return exitFailure
	}
	ref := img.State.Program
	path := ref.Path
	if *program != "" {
		path = *program
	}
	prog, err := hostfile.ReadFile(path, maxProgramSize)
	if err != nil {
		fmt.Fprintf(stderr, "emuckpt: %s: the image's program %s cannot be read: %v (use --program PATH if it moved)\n", fs.Arg(0), path, why(err))
		return exitFailure
	}
	cfg := machine.config(stdin, stdout, stderr)
	cfg.Program, cfg.Path = prog, path
	cfg.CPUs, _ = machine.cpuCount("restore", false, stderr) // an image of a deterministic run restores on one
	cfg.PreserveDevices = *policy == "preserve"
	stopRequests := checkpointConfig(&cfg, *ckptTo, trigger{}, *leave, stderr)
	defer stopRequests()
	tj, ok := openTraceJSON("restore", *traceTo, &cfg, stderr)
	if !ok {
		return exitFailure
	}
	defer tj.finish(stderr)
	k, err := verify.Restore(img, cfg, pert)
	if err != nil {
		return imageError(stderr, fs.Arg(0), err)
	}
	defer k.Close()
	tj.mark("restore", map[string]any{"image": fs.Arg(0), "device-state": *policy})
	img.Close() // the restore goes on reading through a descriptor of its own
	return supervise(k, ref.Name, *machine.timeout, trigger{}, stderr)
}

// imageError reports an image that cannot be used: exit status 125. A
// file that cannot be opened is said to be that, not a bad image.
func imageError(stderr io.Writer, path string, err error) int {
	var pe *fs.PathError
	if !errors.Is(err, ckpt.ErrImage) && errors.As(err, &pe) {
		fmt.Fprintf(stderr, "emuckpt: %s: cannot open the image: %v\n", path, pe.Err)
		return exitFailure
	}
	fmt.Fprintf(stderr, "emuckpt: %s: %v\n", path, err)
	return exitFailure
}
