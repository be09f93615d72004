package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/emuckpt/emuckpt/verify"
	"github.com/emuckpt/emuckpt/vmm"
	"golang.org/x/sys/unix"
)

const verifyUsage = `usage: emuckpt verify [flags] PROGRAM [ARGS...]
       emuckpt verify --merge [--junit FILE] [--json FILE] SHARD.json...

Checks that PROGRAM survives a checkpoint and restart at any moment. A
reference run (deterministic: virtual clock, --seed) records its stdout,
stderr, exit status and how many system calls, device MMIO accesses and
emuckpt_checkpoint() calls it made. One more run checkpoints it at every
chosen point; each image is restored in a new VM under each
--device-state policy and --perturb, and finished. What the program
printed before the point plus what it printed after, and its exit
status, must equal the reference.

Points: every K-th event (--every K) of the kinds --at names (system
calls first, then device accesses), or N spread evenly (--points N; by
default every event up to 200, else 200 spread evenly), plus every
emuckpt_checkpoint() call (where the restored program sees the call
return 2). The program's standard input is /dev/null.

Perturbations (--perturb, repeatable: each is tried in turn; items
joined by commas apply together; default none):
  hpet-jump=DUR   the HPET's time moves DUR on: its counter reads DUR of
                  ticks more and timers it passes fire (guest clocks stay)
  clock-jump=DUR  CLOCK_REALTIME and CLOCK_MONOTONIC move DUR on, as if the
                  machine had been down; sleeps and timers due end at once
  bsr-clear       every BSR register is cleared after the restore (matters
                  under preserve: fresh registers start cleared)
  none            no perturbation

Sharding: --shard I/N takes every N-th point from the I-th (0 <= I < N).
Without it, Bazel's TEST_SHARD_INDEX and TEST_TOTAL_SHARDS are honoured
(and TEST_SHARD_STATUS_FILE touched), then a Kubernetes indexed Job's
JOB_COMPLETION_INDEX with the shard count from EMUCKPT_VERIFY_SHARDS.
--merge joins the shards' --json files into one report (and --junit),
and fails if a result is missing or given twice.

Output: a progress line on a terminal (stderr), then a report of each
divergence (the point, policy and perturbation, the first differing
bytes with context, and with --keep the image and the 'emuckpt restore'
command that reproduces it) and a summary on stdout. --junit writes JUnit
XML (one testcase per point and policy), --json one JSON object per
result and line.

Exit status: 0 when every point passes, 1 when any diverges or cannot be
checked, 125 when emuckpt itself fails (the program cannot be run, does
not end within --timeout, or prints differently in two runs with the
same seed).

Flags:
`

// verifyShardsEnv is the shard count of a Kubernetes indexed Job (set it
// to the Job's .spec.completions).
const verifyShardsEnv = "EMUCKPT_VERIFY_SHARDS"

// listFlag is a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, " ") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func cmdVerify(args []string, stdout, stderr *os.File) int {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	var (
		env      envList
		mem      = memFlag{sizeFlag(vmm.DefaultMemSize)}
		perturbs listFlag
		cwd      = fs.String("cwd", "/", "guest working directory")
		seed     = fs.Uint64("seed", 0, "seed for the deterministic randomness")
		at       = fs.String("at", "all", "the events to checkpoint at: syscall, device or all")
		every    = fs.Uint64("every", 0, "checkpoint at every K-th event")
		points   = fs.Int("points", 0, "checkpoint at N events spread evenly (default: every event up to 200, else 200)")
		policies = fs.String("device-state", "fresh,preserve", "the device-state policies to restore under")
		jobs     = fs.Int("jobs", runtime.NumCPU(), "restores to run at once")
		junit    = fs.String("junit", "", "write a JUnit XML report to FILE")
		jsonOut  = fs.String("json", "", "write one JSON record per result to FILE")
		shard    = fs.String("shard", "", "take the I-th of N parts of the points (I/N)")
		keep     = fs.String("keep", "", "write the image of each diverging point to DIR")
		merge    = fs.Bool("merge", false, "join the --json files of shards given as arguments")
		quiet    = fs.Bool("q", false, "no progress line")
		machine  = addMachineFlags(fs)
	)
	fs.Var(&env, "env", "add KEY=VALUE to the guest environment (repeatable)")
	fs.Var(&mem, "mem", fmt.Sprintf("guest RAM size, from %s to %s (e.g. 512M, 2G)", humanSize(vmm.MinMemSize), humanSize(vmm.MaxMemSize)))
	fs.Var(&perturbs, "perturb", "a perturbation to restore with (repeatable; see above)")
	fs.Lookup("v").Usage = "list every result, passed ones too"
	fs.Lookup("trace").Usage = "(for run and restore only; verify refuses it)"
	*machine.timeout = verify.DefaultTimeout
	fs.Lookup("timeout").DefValue = verify.DefaultTimeout.String()
	fs.Lookup("timeout").Usage = "end each run of the program after this long (an emuckpt failure for the reference, a divergence for a restore)"
	if ok, st := parseFlags(fs, args, verifyUsage, stderr); !ok {
		return st
	}
	if *merge {
		return verifyMerge(fs.Args(), *junit, *jsonOut, stdout, stderr)
	}
	bad := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "emuckpt: verify: "+format+" (see 'emuckpt verify --help')\n", a...)
		return exitFailure
	}
	if fs.NArg() == 0 {
		return bad("missing PROGRAM")
	}
	if *machine.trace {
		return bad("--trace is for run and restore; verify shows what emuckpt said with each divergence")
	}
	cfg := verify.Config{Every: *every, Points: *points, Jobs: *jobs, Keep: *keep, Timeout: *machine.timeout}
	var err error
	if cfg.At, err = verify.ParseAt(*at); err != nil {
		return bad("--at: %v", err)
	}
	if *every > 0 && *points > 0 {
		return bad("--every and --points exclude each other")
	}
	if *points < 0 || *jobs < 1 {
		return bad("--points and --jobs must be positive")
	}
	for _, p := range strings.Split(*policies, ",") {
		if p != verify.Fresh && p != verify.Preserve {
			return bad("--device-state: %q: want fresh, preserve or both (fresh,preserve)", p)
		}
		cfg.Policies = append(cfg.Policies, p)
	}
	for _, s := range perturbs {
		p, err := verify.ParsePerturbation(s)
		if err != nil {
			return bad("--perturb: %v", err)
		}
		cfg.Perturbations = append(cfg.Perturbations, p)
	}
	if cfg.Shard, err = shardFromEnv(*shard); err != nil {
		return bad("%v", err)
	}
	kc := machine.config(nil, nil, nil)
	if status, ok := programConfig(&kc, fs.Args(), env, *cwd, uint64(mem.sizeFlag), stderr); !ok {
		return status
	}
	kc.Seed = *seed
	var ok bool
	if kc.CPUs, ok = machine.cpuCount("verify", true, stderr); !ok {
		return exitFailure
	}
	cfg.Kernel = kc
	progress := &progressLine{w: stderr, on: !*quiet && isTerminal(stderr)}
	cfg.Progress = progress.show
	rep, err := verify.Run(context.Background(), cfg)
	progress.end()
	if err != nil {
		fmt.Fprintf(stderr, "emuckpt: verify: %s: %v\n", kc.Name, err)
		if errors.Is(err, verify.ErrNotDeterministic) {
			fmt.Fprintln(stderr, "emuckpt: verify: (the output depends on more than the seed: see docs/VERIFY.md, \"What verify cannot see\")")
		}
		return exitFailure
	}
	ev := rep.Reference.Events
	fmt.Fprintf(stdout, "verify: %s: reference: exit status %d, %d system calls, %d device accesses, %d emuckpt_checkpoint() calls\n",
		kc.Name, rep.Reference.Status, ev.Syscalls, ev.Devices, ev.Calls)
	if s := rep.Shard.String(); s != "" {
		fmt.Fprintf(stdout, "verify: shard %s: %d of the %d points\n", s, len(rep.Shard.Of(rep.Selected)), len(rep.Selected))
	}
	recs := rep.Records(restoreCommand(fs, machine))
	_, fail, errs := verify.Summarize(stdout, recs, rep.Elapsed, *machine.verbose)
	if st := writeReports(recs, *junit, *jsonOut, stderr); st != 0 {
		return st
	}
	if len(recs) == 0 {
		fmt.Fprintln(stdout, "verify: no points to check (the program made no events of that kind)")
	}
	if fail+errs > 0 {
		return 1
	}
	return 0
}

func writeReports(recs []verify.Record, junit, jsonOut string, stderr io.Writer) int {
	if junit != "" {
		if err := verify.WriteJUnit(junit, recs); err != nil {
			fmt.Fprintf(stderr, "emuckpt: verify: --junit: %v\n", err)
			return exitFailure
		}
	}
	if jsonOut != "" {
		if err := verify.WriteJSON(jsonOut, recs); err != nil {
			fmt.Fprintf(stderr, "emuckpt: verify: --json: %v\n", err)
			return exitFailure
		}
	}
	return 0
}

// verifyMerge is verify --merge.
func verifyMerge(files []string, junit, jsonOut string, stdout, stderr io.Writer) int {
	if len(files) == 0 {
		fmt.Fprintln(stderr, "emuckpt: verify --merge: want the shards' --json files (see 'emuckpt verify --help')")
		return exitFailure
	}
	var sets [][]verify.Record
	for _, f := range files {
		recs, err := verify.ReadJSON(f)
		if err != nil {
			fmt.Fprintf(stderr, "emuckpt: verify --merge: %v\n", err)
			return exitFailure
		}
		sets = append(sets, recs)
	}
	recs, mergeErr := verify.Merge(sets...)
	verify.SortRecords(recs)
	_, fail, errs := verify.Summarize(stdout, recs, 0, false)
	if st := writeReports(recs, junit, jsonOut, stderr); st != 0 {
		return st
	}
	if mergeErr != nil {
		fmt.Fprintf(stderr, "emuckpt: verify --merge: %v\n", mergeErr)
		return exitFailure
	}
	if fail+errs > 0 {
		return 1
	}
	return 0
}

// shardFromEnv is --shard, else Bazel's test sharding, else a Kubernetes
// indexed Job.
func shardFromEnv(flagVal string) (verify.Shard, error) {
	if f := os.Getenv("TEST_SHARD_STATUS_FILE"); f != "" {
		// Bazel: say that this test runner shards.
		if fh, err := os.OpenFile(f, os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
			fh.Close()
		}
	}
	if flagVal != "" {
		s, err := verify.ParseShard(flagVal)
		if err != nil {
			return s, fmt.Errorf("--shard: %v", err)
		}
		return s, nil
	}
	if n := os.Getenv("TEST_TOTAL_SHARDS"); n != "" {
		s, err := verify.ParseShard(os.Getenv("TEST_SHARD_INDEX") + "/" + n)
		if err != nil {
			return s, fmt.Errorf("TEST_SHARD_INDEX and TEST_TOTAL_SHARDS: %v", err)
		}
		return s, nil
	}
	if i := os.Getenv("JOB_COMPLETION_INDEX"); i != "" {
		n := os.Getenv(verifyShardsEnv)
		if n == "" {
			return verify.Shard{}, fmt.Errorf("JOB_COMPLETION_INDEX is set but %s (the Job's completions) is not", verifyShardsEnv)
		}
		s, err := verify.ParseShard(i + "/" + n)
		if err != nil {
			return s, fmt.Errorf("JOB_COMPLETION_INDEX and %s: %v", verifyShardsEnv, err)
		}
		return s, nil
	}
	return verify.Shard{}, nil
}

// restoreCommand is the start of an 'emuckpt restore' command line in the
// world of this verify: the flags that describe the machine.
func restoreCommand(fs *flag.FlagSet, m *machineFlags) string {
	args := []string{"emuckpt", "restore"}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "root":
			args = append(args, "--root", *m.root)
		case "hpet":
			args = append(args, "--hpet", m.hpet.String())
		case "bsr":
			for _, s := range m.bsrs {
				args = append(args, "--bsr", s.String())
			}
		case "tmpfs":
			for _, t := range m.tmpfs {
				v := t.Path
				if t.Size > 0 {
					v += ":" + strconv.FormatInt(t.Size, 10)
				}
				args = append(args, "--tmpfs", v)
			}
		}
	})
	return verify.ShellQuote(args)
}

// progressLine is the progress line of a verify on a terminal.
type progressLine struct {
	w     io.Writer
	on    bool
	shown bool
	last  time.Time
}

func (p *progressLine) show(pr verify.Progress) {
	if !p.on || (pr.Done < pr.Total && time.Since(p.last) < 100*time.Millisecond) {
		return
	}
	p.last, p.shown = time.Now(), true
	v := max(1, pr.Variants)
	fmt.Fprintf(p.w, "\rverify: %d/%d points, %d/%d restores, %d failed, ETA %v\033[K", pr.Done/v, pr.Total/v, pr.Done, pr.Total, pr.Failed, pr.ETA().Round(time.Second))
}

func (p *progressLine) end() {
	if p.shown {
		fmt.Fprint(p.w, "\r\033[K")
	}
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
