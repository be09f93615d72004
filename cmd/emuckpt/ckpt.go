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
	syscalls, devices []uint64      // the points, ascending
	after             time.Duration // time:DUR, once
	every             time.Duration // every:DUR, again and again
	text              string        // as given
}

// points is the number of checkpoints the trigger asks for: 0 for none
// or for every:DUR (no end).
func (tr trigger) points() int {
	switch {
	case tr.every > 0:
		return 0
	case tr.after > 0:
		return 1
	}
	return len(tr.syscalls) + len(tr.devices)
}

// repeated says whether the trigger asks for more than one checkpoint.
func (tr trigger) repeated() bool { return tr.every > 0 || tr.points() > 1 }

// neverFired says why tr, which did not fire, did not: the run ended
// first. k has run.
func (tr trigger) neverFired(k *kernel.Kernel, ran time.Duration) string {
	syscalls, accesses := k.EventCounts()
	switch {
	case len(tr.syscalls) > 0:
		return fmt.Sprintf("the run ended after %d system calls", syscalls)
	case len(tr.devices) > 0:
		return fmt.Sprintf("the run ended after %d device accesses", accesses)
	}
	return fmt.Sprintf("the run ended after %v", ran.Round(time.Millisecond))
}

const triggerForms = "syscall:N[,N...], device:N[,N...], time:DUR or every:DUR"

func parseTrigger(s string) (trigger, error) {
	if s == "" {
		return trigger{}, nil
	}
	kind, val, ok := strings.Cut(s, ":")
	if !ok {
		return trigger{}, fmt.Errorf("%q: want %s", s, triggerForms)
	}
	switch kind {
	case "syscall", "device":
		var points []uint64
		for _, f := range strings.Split(val, ",") {
			n, err := strconv.ParseUint(f, 10, 64)
			if err != nil || n == 0 {
				return trigger{}, fmt.Errorf("%q: each N must be a positive integer", s)
			}
			if len(points) > 0 && n <= points[len(points)-1] {
				return trigger{}, fmt.Errorf("%q: the points must increase (%d after %d)", s, n, points[len(points)-1])
			}
			points = append(points, n)
		}
		if kind == "syscall" {
			return trigger{syscalls: points, text: s}, nil
		}
		return trigger{devices: points, text: s}, nil
	case "time", "every":
		d, err := time.ParseDuration(val)
		if err != nil || d <= 0 {
			return trigger{}, fmt.Errorf("%q: DUR must be a positive duration such as 50ms", s)
		}
		if kind == "every" {
			return trigger{every: d, text: s}, nil
		}
		return trigger{after: d, text: s}, nil
	}
	return trigger{}, fmt.Errorf("%q: unknown trigger %q; want %s", s, kind, triggerForms)
}

// imageSeries names the images of a run. A FILE with "%d" names the
// n-th checkpoint (from 0) FILE with n for the "%d"; so does a run that
// asks for several checkpoints (--checkpoint-at syscall:N,M,... or
// every:DUR), whose images are FILE, FILE.1, FILE.2, ... Those runs
// write incremental images: each after the first is a delta against the
// one before (unless --full). Any other run writes every checkpoint to
// FILE, a full image that replaces the one before.
type imageSeries struct {
	to       string
	numbered bool // each checkpoint has its own file
	full     bool // --full: no deltas
}

func newImageSeries(to string, tr trigger, full bool) imageSeries {
	return imageSeries{to: to, numbered: strings.Contains(to, "%d") || tr.repeated(), full: full}
}

// path is the file of checkpoint n (from 0).
func (s imageSeries) path(n int) string {
	switch {
	case strings.Contains(s.to, "%d"):
		return strings.ReplaceAll(s.to, "%d", strconv.Itoa(n))
	case s.numbered && n > 0:
		return s.to + "." + strconv.Itoa(n)
	}
	return s.to
}

// incremental says whether checkpoints after the first are deltas.
func (s imageSeries) incremental() bool { return s.numbered && !s.full }

// checkDestination checks --checkpoint-to before the guest runs, so a
// mistake costs nothing: a missing directory, a directory as target or a
// place where no file can be created is status 125 at once. It also
// removes temporary files that writers of the same image which died left
// behind, and says so.
func checkDestination(cmd, to string, stderr io.Writer) bool {
	if to == "" {
		return true
	}
	removed, err := ckpt.CheckDestination(strings.ReplaceAll(to, "%d", "0"))
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
//
// parent, for a restored run with --incremental, is the image it was
// restored from: the run's first checkpoint is a delta against it.
func checkpointConfig(cfg *kernel.Config, to string, tr trigger, leave, full bool, parent *ckpt.Written, stderr io.Writer) func() {
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
	var ticker *time.Ticker
	if tr.every > 0 {
		ticker = time.NewTicker(tr.every)
		go func() {
			for {
				select {
				case <-done:
					return
				case <-ticker.C:
					ask()
				}
			}
		}()
	}
	series := newImageSeries(to, tr, full)
	if parent != nil {
		series.numbered = true
	}
	cfg.Checkpoint = kernel.CheckpointConfig{
		AtSyscalls: tr.syscalls, AtDevices: tr.devices, Requests: requests,
		LeaveRunning: leave || tr.every > 0, Background: leave || tr.every > 0,
		Points: tr.points(), Incremental: series.incremental(),
		FromImage: parent != nil && series.incremental(),
	}
	if to != "" {
		last := parent // the image before, for a delta
		n := 0
		cfg.Checkpoint.Save = func(s *kernel.Snapshot) error {
			path := series.path(n)
			w, err := ckpt.WriteImage(path, s, last)
			if err != nil {
				return err
			}
			n++
			if series.incremental() {
				last = w
			}
			what := fmt.Sprintf("%d pages", s.State.PageCount)
			if w.ParentPath != "" {
				what = fmt.Sprintf("%d pages, %d of them stored, the others in %s", s.State.PageCount, s.StoredPages(), w.ParentPath)
			}
			how := ""
			if s.Guard != nil {
				how = fmt.Sprintf(", written while the program ran on: it paused %v", s.Paused.Round(time.Microsecond))
			}
			fmt.Fprintf(stderr, "emuckpt: checkpoint written to %s (%s, after %d system calls, in %v%s)\n",
				path, what, s.State.Syscalls, time.Since(s.Started).Round(time.Microsecond), how)
			return nil
		}
	}
	return func() {
		signal.Stop(sigs)
		close(done)
		if timer != nil {
			timer.Stop()
		}
		if ticker != nil {
			ticker.Stop()
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
restored any number of times. --checkpoint-to, --leave-running and --full
work as for run (see 'emuckpt run --help': a FILE with %d gets a series
of incremental images), and so does a failed checkpoint. An incremental
image (a delta) is restored with its chain of parents, which must be
where the image names them (next to it, as written) and unchanged: a
missing, replaced or damaged link is refused (status 125), naming it.
With --incremental, the run's own checkpoints are a series too (FILE,
FILE.1, ..., or a FILE with %d), and the first is a delta against IMAGE
itself: only the pages written since the restore are stored, so IMAGE
must stay where it is, unchanged.

Flags:
`

func cmdRestore(args []string, stdin, stdout, stderr *os.File) int {
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	policy := fs.String("device-state", "fresh", "fresh: devices start from their start-up state (mapping-only); preserve: devices get their saved registers back")
	ckptTo := fs.String("checkpoint-to", "", "write further checkpoints (SIGUSR1, emuckpt_checkpoint) to this image file")
	program := fs.String("program", "", "the program file, if it is no longer where the image says (its SHA-256 must match)")
	leave := fs.Bool("leave-running", false, "go on after a checkpoint instead of stopping")
	full := fs.Bool("full", false, "write every checkpoint as a full image, never as a delta (see 'emuckpt run --help')")
	incremental := fs.Bool("incremental", false, "write the run's checkpoints as a series of deltas (FILE, FILE.1, ... or a FILE with %d), the first against IMAGE")
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
	if *incremental && (*full || *ckptTo == "") {
		fmt.Fprintln(stderr, "emuckpt: restore: --incremental needs --checkpoint-to FILE and no --full")
		return exitFailure
	}
	var parent *ckpt.Written
	if *incremental {
		parent = img.AsParent()
	}
	stopRequests := checkpointConfig(&cfg, *ckptTo, trigger{}, *leave, *full, parent, stderr)
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
