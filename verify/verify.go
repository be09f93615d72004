package verify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emuckpt/emuckpt/ckpt"
	"github.com/emuckpt/emuckpt/devices/hpet"
	"github.com/emuckpt/emuckpt/kernel"
	"golang.org/x/sys/unix"
)

// Policies are the device-state policies of a restore.
const (
	Fresh    = "fresh"
	Preserve = "preserve"
)

// Config is one verify.
type Config struct {
	// Kernel is the run: program, arguments, environment, root, memory,
	// tmpfs mounts, devices and Seed. Verify sets the rest: the streams
	// (stdin is /dev/null), the deterministic clock and the checkpoints.
	Kernel kernel.Config
	// At, Every and Points choose the points (see Select); Shard takes a
	// part of them.
	At     At
	Every  uint64
	Points int
	Shard  Shard
	// Policies are the device-state policies to restore under (default
	// fresh and preserve); Perturbations the perturbations to restore
	// with, each in turn (default none).
	Policies      []string
	Perturbations []Perturbation
	// Jobs is how many restores run at once (default: the CPU count).
	Jobs int
	// Timeout bounds each run of the program (the reference, each
	// restore; the pass, which shares the CPUs with the restores, gets
	// (1+Jobs) times as long, not counting the time it waits for them);
	// 0 means DefaultTimeout.
	Timeout time.Duration
	// Keep, if set, is a directory where the image of each point that
	// diverged is written (see Result.Image).
	Keep string
	// Progress, if set, is called after each result.
	Progress func(Progress)
}

// DefaultTimeout bounds each run of the program when Config.Timeout is 0.
const DefaultTimeout = time.Minute

// Progress is how far a verify has come: results (restores) done and
// due, of which Failed did not pass; a point has Variants results.
type Progress struct {
	Done, Total, Failed int
	Variants            int
	Elapsed             time.Duration
}

// ETA is the time still needed at the rate so far.
func (p Progress) ETA() time.Duration {
	if p.Done == 0 {
		return 0
	}
	return time.Duration(float64(p.Elapsed) * float64(p.Total-p.Done) / float64(p.Done))
}

// Outcomes of a Result.
const (
	Pass  = "pass"
	Fail  = "fail"  // the restored run diverged from the reference
	Error = "error" // emuckpt could not check the point
)

// Result is one point restored under one policy and perturbation.
type Result struct {
	Point        Point
	Policy       string
	Perturbation Perturbation
	Outcome      string
	// Message says what diverged or failed; Diff shows the first
	// differing bytes with context.
	Message, Diff string
	// Status is the restored run's exit status (as a shell reports it).
	Status   int
	Duration time.Duration
	// Image is the --keep file of the point's image, Command the
	// `emuckpt restore` arguments that reproduce the result (after the
	// flags the caller adds, see Report.Restore).
	Image   string
	Command []string
}

// Reference is what the uninterrupted run did.
type Reference struct {
	Stdout, Stderr []byte
	Status         int
	Events         Events
	// Syscalls names each system call, in order, as far as known.
	Syscalls []string
}

// Report is a verify's outcome.
type Report struct {
	Program   string
	Args      []string
	Reference Reference
	// Selected are all the points chosen, of every shard; Results the
	// results of this shard, ordered by point, policy, perturbation.
	Selected []Point
	Shard    Shard
	Results  []Result
	// Variants is policies × perturbations: Total is len(Selected) ×
	// Variants.
	Variants int
	Elapsed  time.Duration
}

// Total is the number of results of the whole verify, all shards.
func (r *Report) Total() int { return len(r.Selected) * r.Variants }

// Counts counts r's results by outcome.
func (r *Report) Counts() (pass, fail, errs int) {
	for _, res := range r.Results {
		switch res.Outcome {
		case Pass:
			pass++
		case Fail:
			fail++
		default:
			errs++
		}
	}
	return
}

// ErrNotDeterministic means the pass did not repeat the reference, so
// the program's output depends on something verify does not control.
var ErrNotDeterministic = errors.New("the program is not deterministic")

// Run verifies the program of cfg.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	started := time.Now()
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if len(cfg.Policies) == 0 {
		cfg.Policies = []string{Fresh, Preserve}
	}
	for _, p := range cfg.Policies {
		if p != Fresh && p != Preserve {
			return nil, fmt.Errorf("device-state policy %q: want fresh or preserve", p)
		}
	}
	if len(cfg.Perturbations) == 0 {
		cfg.Perturbations = []Perturbation{{}}
	}
	if cfg.Jobs <= 0 {
		cfg.Jobs = runtime.NumCPU()
	}
	if cfg.At == "" {
		cfg.At = AtAll
	}
	cfg.Kernel.Deterministic = true
	if cfg.Keep != "" {
		if err := os.MkdirAll(cfg.Keep, 0o755); err != nil {
			return nil, fmt.Errorf("--keep: %w", err)
		}
	}
	v := &verifier{cfg: cfg}
	ref, err := v.reference(ctx)
	if err != nil {
		return nil, err
	}
	rep := &Report{
		Program: cfg.Kernel.Name, Args: cfg.Kernel.Args, Reference: *ref,
		Selected: Select(ref.Events, cfg.At, cfg.Every, cfg.Points),
		Shard:    cfg.Shard, Variants: len(cfg.Policies) * len(cfg.Perturbations),
	}
	v.ref, v.rep = ref, rep
	v.points = cfg.Shard.Of(rep.Selected)
	if err := v.pass(ctx); err != nil {
		return nil, err
	}
	order := map[string]int{}
	for i, p := range rep.Selected {
		order[p.key()] = i
	}
	slices.SortStableFunc(rep.Results, func(a, b Result) int {
		if c := order[a.Point.key()] - order[b.Point.key()]; c != 0 {
			return c
		}
		if c := slices.Index(cfg.Policies, a.Policy) - slices.Index(cfg.Policies, b.Policy); c != 0 {
			return c
		}
		return slices.Index(cfg.Perturbations, a.Perturbation) - slices.Index(cfg.Perturbations, b.Perturbation)
	})
	rep.Elapsed = time.Since(started)
	return rep, nil
}

type verifier struct {
	cfg    Config
	ref    *Reference
	rep    *Report
	points []Point // this shard's

	mu       sync.Mutex
	done     int
	failed   int
	started  time.Time
	progress func(Progress)
}

// capture is a guest's stdout and stderr, kept in memory files.
type capture struct{ out, err *os.File }

func newCapture() (*capture, error) {
	mk := func(name string) (*os.File, error) {
		fd, err := unix.MemfdCreate("emuckpt-verify-"+name, unix.MFD_CLOEXEC)
		if err != nil {
			return nil, fmt.Errorf("memfd_create: %w", err)
		}
		return os.NewFile(uintptr(fd), name), nil
	}
	out, err := mk("stdout")
	if err != nil {
		return nil, err
	}
	errf, err := mk("stderr")
	if err != nil {
		out.Close()
		return nil, err
	}
	return &capture{out, errf}, nil
}

// sizes is how much the guest has written so far.
func (c *capture) sizes() (int64, int64) {
	var a, b int64
	if fi, err := c.out.Stat(); err == nil {
		a = fi.Size()
	}
	if fi, err := c.err.Stat(); err == nil {
		b = fi.Size()
	}
	return a, b
}

func (c *capture) read() ([]byte, []byte, error) {
	a, err := readAll(c.out)
	if err != nil {
		return nil, nil, err
	}
	b, err := readAll(c.err)
	return a, b, err
}

func readAll(f *os.File) ([]byte, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	b := make([]byte, fi.Size())
	_, err = f.ReadAt(b, 0)
	if err == io.EOF {
		err = nil
	}
	return b, err
}

func (c *capture) close() {
	c.out.Close()
	c.err.Close()
}

// runConfig is cfg.Kernel with the streams of c and checkpoints to save.
func (v *verifier) runConfig(c *capture, log io.Writer) kernel.Config {
	kc := v.cfg.Kernel
	kc.Stdin, kc.Stdout, kc.Stderr, kc.Log = nil, c.out, c.err, log
	kc.Trace, kc.Verbose = false, false
	return kc
}

// reference runs the program without interruption.
func (v *verifier) reference(ctx context.Context) (*Reference, error) {
	c, err := newCapture()
	if err != nil {
		return nil, err
	}
	defer c.close()
	var log bytes.Buffer
	kc := v.runConfig(c, &log)
	kc.Trace = true // for the names of the system calls
	var calls uint64
	kc.Checkpoint = kernel.CheckpointConfig{LeaveRunning: true, Save: func(s *kernel.Snapshot) error {
		if s.Self {
			calls++
		}
		return nil
	}}
	k, err := kernel.New(kc)
	if err != nil {
		return nil, err
	}
	defer k.Close()
	rctx, cancel := context.WithTimeout(ctx, v.cfg.Timeout)
	defer cancel()
	st, err := k.Run(rctx)
	if err != nil {
		return nil, err
	}
	if st.TimedOut {
		return nil, fmt.Errorf("the reference run did not end within %v (see --timeout)", v.cfg.Timeout)
	}
	ref := &Reference{Status: st.ShellStatus(), Syscalls: traceNames(log.String())}
	ref.Events = Events{Syscalls: k.Syscalls(), Devices: k.Machine().Bus.TotalAccesses(), Calls: calls}
	if n := len(ref.Syscalls); n > 0 && uint64(n) == ref.Events.Syscalls {
		last := ref.Syscalls[n-1]
		ref.Events.LastSyscallExits = last == "exit" || last == "exit_group"
	}
	if st.Signal == 0 && !ref.Events.LastSyscallExits {
		ref.Events.LastSyscallExits = true // an exit the trace did not show
	}
	if ref.Stdout, ref.Stderr, err = c.read(); err != nil {
		return nil, err
	}
	return ref, nil
}

// traceNames takes the system call names from the kernel's --trace lines
// ("emuckpt: trace: NAME(...", or "emuckpt: trace: [pid N] NAME(...").
func traceNames(log string) []string {
	var names []string
	for _, l := range strings.Split(log, "\n") {
		rest, ok := strings.CutPrefix(l, "emuckpt: trace: ")
		if !ok {
			continue
		}
		if strings.HasPrefix(rest, "[pid ") {
			// "[pid N] NAME(": a guest with more than one task.
			_, rest, _ = strings.Cut(rest, "] ")
		}
		if i := strings.IndexByte(rest, '('); i > 0 {
			names = append(names, rest[:i])
		}
	}
	return names
}

// task is one restore to do.
type task struct {
	point Point
	// image is the point's image, shared by its restores (each restore
	// clones it); a delta against the point before, read through it.
	image        *ckpt.Image
	prefixOut    int64
	prefixErr    int64
	policy       string
	perturbation Perturbation
	keep         *keptImage
}

// keptImage writes a point's image to --keep once, when the first of its
// restores fails.
type keptImage struct {
	once sync.Once
	path string
	err  error
}

// chainDepth bounds the in-memory chains of a pass: each restore reads
// its image through all the images below it.
const chainDepth = 16

// pass runs the program once more, checkpointing at this shard's points,
// and restores the images as they come.
func (v *verifier) pass(ctx context.Context) error {
	v.started = time.Now()
	v.progress = v.cfg.Progress
	tasks := make(chan task, 2*v.cfg.Jobs)
	var wg sync.WaitGroup
	for range v.cfg.Jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for t := range tasks {
				v.record(v.restore(ctx, t))
			}
		}()
	}
	err := v.runPass(ctx, tasks)
	close(tasks)
	wg.Wait()
	return err
}

func (v *verifier) runPass(ctx context.Context, tasks chan<- task) error {
	c, err := newCapture()
	if err != nil {
		return err
	}
	defer c.close()
	var log bytes.Buffer
	kc := v.runConfig(c, &log)
	want := map[string]bool{}
	var cc kernel.CheckpointConfig
	for _, p := range v.points {
		want[p.key()] = true
		switch p.Kind {
		case KindSyscall:
			cc.AtSyscalls = append(cc.AtSyscalls, p.Index)
		case KindDevice:
			cc.AtDevices = append(cc.AtDevices, p.Index)
		}
	}
	slices.Sort(cc.AtSyscalls)
	slices.Sort(cc.AtDevices)
	var k *kernel.Kernel
	// The pass waits for the restores to take its images, which does not
	// count against the timeout, and shares the CPUs with them, so it
	// gets (1+Jobs) times as long as other runs.
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	limit := v.cfg.Timeout * time.Duration(1+v.cfg.Jobs)
	watch := newWatchdog(limit, cancel)
	defer watch.stop()
	taken := map[string]bool{}
	var calls uint64
	cc.LeaveRunning = true
	// The images are in memory, each a delta against the one before
	// (a full one every chainDepth): a point costs what the program
	// wrote since the point before, not all its memory.
	cc.Incremental = true
	var last *ckpt.Image
	cc.Save = func(s *kernel.Snapshot) error {
		p := Point{Kind: KindCall}
		switch {
		case s.Self:
			calls++
			p.Index = calls
		case !taken[KindSyscall+":"+fmt.Sprint(s.State.Syscalls)] && slices.Contains(cc.AtSyscalls, s.State.Syscalls):
			p = Point{Kind: KindSyscall, Index: s.State.Syscalls}
			if i := int(p.Index) - 1; i < len(v.ref.Syscalls) {
				p.Name = v.ref.Syscalls[i]
			}
		default:
			bus := k.Machine().Bus
			p = Point{Kind: KindDevice, Index: bus.TotalAccesses()}
			if a := bus.LastAccess(); a != nil {
				p.Name = accessName(a.Device, a.Off, a.Size, a.Write)
			}
		}
		if !want[p.key()] || taken[p.key()] {
			return kernel.ErrSkipped // the next delta is against the last image kept
		}
		taken[p.key()] = true
		b, err := ckpt.WriteBufferDelta(s, last, chainDepth)
		if err != nil {
			return err
		}
		img, err := ckpt.ParseDelta(b, last)
		if err != nil {
			return err
		}
		last = img
		out, errs := c.sizes()
		keep := &keptImage{}
		for _, pol := range v.cfg.Policies {
			for _, pert := range v.cfg.Perturbations {
				waitStart := time.Now()
				select {
				case tasks <- task{point: p, image: img, prefixOut: out, prefixErr: errs, policy: pol, perturbation: pert, keep: keep}:
				case <-ctx.Done():
					return ctx.Err()
				}
				watch.waited(time.Since(waitStart))
			}
		}
		return nil
	}
	kc.Checkpoint = cc
	k, err = kernel.New(kc)
	if err != nil {
		return err
	}
	defer k.Close()
	st, err := k.Run(rctx)
	if err != nil {
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if st.TimedOut {
		return fmt.Errorf("the checkpoint pass did not end within %v (%d × --timeout, for the restores running beside it)", limit, 1+v.cfg.Jobs)
	}
	out, errs, err := c.read()
	if err != nil {
		return err
	}
	if st.ShellStatus() != v.ref.Status || !bytes.Equal(out, v.ref.Stdout) || !bytes.Equal(errs, v.ref.Stderr) {
		why := fmt.Sprintf("exit status %d, the reference's %d", st.ShellStatus(), v.ref.Status)
		if d := firstDiff("stdout", v.ref.Stdout, out); d != "" {
			why = d
		} else if d := firstDiff("stderr", v.ref.Stderr, errs); d != "" {
			why = d
		}
		return fmt.Errorf("%w: a second run with the same seed differed from the first: %s%s", ErrNotDeterministic, why, logNote(log.String()))
	}
	for _, p := range v.points {
		if taken[p.key()] {
			continue
		}
		for _, pol := range v.cfg.Policies {
			for _, pert := range v.cfg.Perturbations {
				v.record(Result{Point: p, Policy: pol, Perturbation: pert, Outcome: Error,
					Message: "the pass never reached this point, so no checkpoint was taken there" + logNote(log.String())})
			}
		}
	}
	return nil
}

func logNote(log string) string {
	log = strings.TrimSpace(log)
	if log == "" {
		return ""
	}
	return "\nemuckpt said:\n" + log
}

// accessName describes a device access: "read HPET_COUNTER (8 bytes)".
func accessName(dev string, off uint64, size int, write bool) string {
	op := "read"
	if write {
		op = "write"
	}
	reg := fmt.Sprintf("%s+%#x", dev, off)
	if dev == "hpet" {
		reg = "hpet " + hpet.RegisterName(off)
	}
	unit := "bytes"
	if size == 1 {
		unit = "byte"
	}
	return fmt.Sprintf("%s %s, %d %s", op, reg, size, unit)
}

func (v *verifier) record(r Result) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.rep.Results = append(v.rep.Results, r)
	v.done++
	if r.Outcome != Pass {
		v.failed++
	}
	if v.progress != nil {
		v.progress(Progress{Done: v.done, Total: len(v.points) * v.rep.Variants, Failed: v.failed, Variants: v.rep.Variants, Elapsed: time.Since(v.started)})
	}
}

// restore restores one image under one policy and perturbation, runs it
// to its end and compares.
func (v *verifier) restore(ctx context.Context, t task) Result {
	started := time.Now()
	res := Result{Point: t.point, Policy: t.policy, Perturbation: t.perturbation}
	fail := func(outcome, msg, diff string) Result {
		res.Outcome, res.Message, res.Diff = outcome, msg, diff
		res.Duration = time.Since(started)
		if v.cfg.Keep != "" {
			v.keep(&res, t)
		}
		return res
	}
	c, err := newCapture()
	if err != nil {
		return fail(Error, err.Error(), "")
	}
	defer c.close()
	var log bytes.Buffer
	kc := v.runConfig(c, &log)
	kc.PreserveDevices = t.policy == Preserve
	// As in the reference: a later emuckpt_checkpoint() returns 1.
	kc.Checkpoint = kernel.CheckpointConfig{LeaveRunning: true, Save: func(*kernel.Snapshot) error { return nil }}
	k, err := Restore(t.image, kc, t.perturbation)
	if err != nil {
		return fail(Error, "restore: "+err.Error(), "")
	}
	defer k.Close()
	rctx, cancel := context.WithTimeout(ctx, v.cfg.Timeout)
	defer cancel()
	st, err := k.Run(rctx)
	if err != nil {
		return fail(Error, "restored run: "+err.Error()+logNote(log.String()), "")
	}
	out, errs, err := c.read()
	if err != nil {
		return fail(Error, err.Error(), "")
	}
	res.Status = st.ShellStatus()
	gotOut := append(append([]byte(nil), v.ref.Stdout[:min(t.prefixOut, int64(len(v.ref.Stdout)))]...), out...)
	gotErr := append(append([]byte(nil), v.ref.Stderr[:min(t.prefixErr, int64(len(v.ref.Stderr)))]...), errs...)
	var msgs, diffs []string
	if st.TimedOut {
		msgs = append(msgs, fmt.Sprintf("the restored run did not end within %v", v.cfg.Timeout))
	} else if res.Status != v.ref.Status {
		msgs = append(msgs, fmt.Sprintf("exit status %d, the reference's %d", res.Status, v.ref.Status))
	}
	if d := firstDiff("stdout", v.ref.Stdout, gotOut); d != "" {
		msgs = append(msgs, "stdout differs")
		diffs = append(diffs, d)
	}
	if d := firstDiff("stderr", v.ref.Stderr, gotErr); d != "" {
		msgs = append(msgs, "stderr differs")
		diffs = append(diffs, d)
	}
	if len(msgs) == 0 {
		res.Outcome, res.Duration = Pass, time.Since(started)
		return res
	}
	msg := strings.Join(msgs, "; ")
	if l := strings.TrimSpace(log.String()); l != "" {
		diffs = append(diffs, "emuckpt said while restoring:\n"+indent(l))
	}
	return fail(Fail, msg, strings.Join(diffs, "\n"))
}

// keep writes t's image to the --keep directory (once per point) and
// fills in the restore command that reproduces res.
func (v *verifier) keep(res *Result, t task) {
	k := t.keep
	k.once.Do(func() {
		name := fmt.Sprintf("%s-%s-%d.img", filepath.Base(v.cfg.Kernel.Name), t.point.Kind, t.point.Index)
		k.path = filepath.Join(v.cfg.Keep, name)
		// A delta of the in-memory chain is kept as a full image.
		var b []byte
		if b, k.err = t.image.Bytes(); k.err == nil {
			k.err = os.WriteFile(k.path, b, 0o644)
		}
	})
	if k.err != nil {
		res.Message += fmt.Sprintf(" (--keep: %v)", k.err)
		return
	}
	res.Image = k.path
	res.Command = []string{"--device-state=" + t.policy}
	if t.perturbation != (Perturbation{}) {
		res.Command = append(res.Command, "--perturb="+t.perturbation.String())
	}
}

// watchdog cancels a run that has run longer than a limit, not counting
// the time it waited.
type watchdog struct {
	mu      sync.Mutex
	started time.Time
	wait    time.Duration
	limit   time.Duration
	done    chan struct{}
}

func newWatchdog(limit time.Duration, cancel func()) *watchdog {
	w := &watchdog{started: time.Now(), limit: limit, done: make(chan struct{})}
	go func() {
		tick := time.NewTicker(min(limit/10+1, 100*time.Millisecond))
		defer tick.Stop()
		for {
			select {
			case <-w.done:
				return
			case <-tick.C:
				w.mu.Lock()
				over := time.Since(w.started)-w.wait > w.limit
				w.mu.Unlock()
				if over {
					cancel()
					return
				}
			}
		}
	}()
	return w
}

func (w *watchdog) waited(d time.Duration) {
	w.mu.Lock()
	w.wait += d
	w.mu.Unlock()
}

func (w *watchdog) stop() { close(w.done) }
