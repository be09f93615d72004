package main

import (
	"encoding/json"

	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/emuckpt/emuckpt/ckpt"
	"github.com/emuckpt/emuckpt/internal/hostfile"
	"github.com/emuckpt/emuckpt/kernel"
)

// trigger is a parsed --checkpoint-at.
type trigger struct {
	syscall, device uint64
	after           time.Duration
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
			return trigger{syscall: n}, nil
		}
		return trigger{device: n}, nil
	case "time":
		d, err := time.ParseDuration(val)
		if err != nil || d <= 0 {
			return trigger{}, fmt.Errorf("%q: DUR must be a positive duration such as 50ms", s)
		}
		return trigger{after: d}, nil
	}
	return trigger{}, fmt.Errorf("%q: unknown trigger %q; want syscall:N, device:N or time:DUR", s, kind)
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
		AtSyscall: tr.syscall, AtDevice: tr.device, Requests: requests, LeaveRunning: leave,
	}
	if to != "" {
		cfg.Checkpoint.Save = func(s *kernel.Snapshot) error {
			if err := ckpt.Write(to, s); err != nil {
				return err
			}
			fmt.Fprintf(stderr, "emuckpt: checkpoint written to %s (%d pages, after %d system calls, in %v)\n",
				to, s.State.PageCount, s.State.Syscalls, time.Since(s.Started).Round(time.Microsecond))
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
as they were (the same --bsr flags). The same image can be restored any
number of times.

Flags:
`

func cmdRestore(args []string, stdin, stdout, stderr *os.File) int {
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	policy := fs.String("device-state", "fresh", "fresh: devices start from their start-up state (mapping-only); preserve: devices get their saved registers back")
	ckptTo := fs.String("checkpoint-to", "", "write further checkpoints (SIGUSR1, emuckpt_checkpoint) to this image file")
	program := fs.String("program", "", "the program file, if it is no longer where the image says (its SHA-256 must match)")
	leave := fs.Bool("leave-running", false, "go on after a checkpoint instead of stopping")
	machine := addMachineFlags(fs)
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
	img, err := ckpt.Open(fs.Arg(0))
	if err != nil {
		return imageError(stderr, fs.Arg(0), err)
	}
	defer img.Close() // Restore copies what it needs: closed earlier below
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
	cfg.PreserveDevices = *policy == "preserve"
	stopRequests := checkpointConfig(&cfg, *ckptTo, trigger{}, *leave, stderr)
	defer stopRequests()
	k, err := img.Restore(cfg)
	if err != nil {
		return imageError(stderr, fs.Arg(0), err)
	}
	defer k.Close()
	img.Close() // the guest runs on verified copies: the image may now change
	return supervise(k, ref.Name, *machine.timeout, stderr)
}

// inspection is the stable JSON form of `emuckpt inspect --json`
// (documented in docs/FORMAT.md).
type inspection struct {
	Image    string            `json:"image"`
	Version  uint32            `json:"format_version"`
	Size     int64             `json:"size"`
	Program  kernel.ProgramRef `json:"program"`
	Clock    string            `json:"clock"`
	Syscalls uint64            `json:"syscalls"`
	Tasks    []inspectTask     `json:"tasks"`
	Devices  []string          `json:"device_state,omitempty"`
	Objects  []kernel.Object   `json:"objects,omitempty"`
	Totals   inspectTotals     `json:"totals"`
}

type inspectTask struct {
	PID  int          `json:"pid"`
	TID  int          `json:"tid"`
	RIP  uint64       `json:"rip"`
	RSP  uint64       `json:"rsp"`
	VMAs []inspectVMA `json:"vmas"`
}

type inspectVMA struct {
	Start       uint64 `json:"start"`
	End         uint64 `json:"end"`
	Perms       string `json:"perms"`
	Offset      uint64 `json:"offset"`
	Type        string `json:"type"`
	Device      string `json:"device_type,omitempty"`
	Backing     string `json:"backing,omitempty"`
	StoredBytes uint64 `json:"stored_bytes"`
	ZeroPages   uint64 `json:"zero_pages"`
}

type inspectTotals struct {
	VMAs        int    `json:"vmas"`
	StoredPages uint64 `json:"stored_pages"`
	StoredBytes uint64 `json:"stored_bytes"`
	ZeroPages   uint64 `json:"zero_pages"`
}

func perms(v *kernel.VMAState) string {
	b := []byte("---p")
	if v.Prot&1 != 0 {
		b[0] = 'r'
	}
	if v.Prot&2 != 0 {
		b[1] = 'w'
	}
	if v.Prot&4 != 0 {
		b[2] = 'x'
	}
	if v.Shared {
		b[3] = 's'
	}
	return string(b)
}

func inspect(path string, img *ckpt.Image) inspection {
	st := img.State
	info := img.Info()
	out := inspection{Image: path, Version: info.Version, Size: info.Size, Program: st.Program,
		Clock: "host", Syscalls: st.Syscalls, Objects: st.Objects}
	if st.Clock.Virtual {
		out.Clock = fmt.Sprintf("virtual, %d ns", st.Clock.NS)
	}
	for _, d := range st.Devices {
		out.Devices = append(out.Devices, d.Name)
	}
	for _, ts := range st.Tasks {
		t := inspectTask{PID: st.Process.PID, TID: ts.TID, RIP: ts.Regs.RIP, RSP: ts.Regs.RSP}
		for i := range st.Process.VMAs {
			v := &st.Process.VMAs[i]
			iv := inspectVMA{Start: v.Start, End: v.End, Perms: perms(v), Offset: v.Offset, Type: v.Type,
				Device: v.Device, Backing: v.Name, StoredBytes: v.Stored() * 4096, ZeroPages: v.ZeroPages}
			t.VMAs = append(t.VMAs, iv)
			out.Totals.VMAs++
			out.Totals.StoredPages += v.Stored()
			out.Totals.ZeroPages += v.ZeroPages
		}
		out.Tasks = append(out.Tasks, t)
	}
	out.Totals.StoredBytes = out.Totals.StoredPages * 4096
	return out
}

func cmdInspect(args []string, stdout, stderr *os.File) int {
	fs := flag.NewFlagSet("inspect", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON (stable; see docs/FORMAT.md)")
	if ok, st := parseFlags(fs, args, "usage: emuckpt inspect [--json] IMAGE\n\nShows a checkpoint image: header, tasks and, per task, its VMAs with their\ntype, backing object and stored bytes.\n\nFlags:\n", stderr); !ok {
		return st
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "emuckpt: inspect: want exactly one IMAGE")
		return exitFailure
	}
	img, err := ckpt.Open(fs.Arg(0))
	if err != nil {
		return imageError(stderr, fs.Arg(0), err)
	}
	defer img.Close()
	if err := img.Verify(); err != nil {
		return imageError(stderr, fs.Arg(0), err)
	}
	in := inspect(fs.Arg(0), img)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(in); err != nil {
			return exitFailure
		}
		return 0
	}
	fmt.Fprintf(stdout, "image %s: format version %d, %d bytes\n", in.Image, in.Version, in.Size)
	fmt.Fprintf(stdout, "program %s (sha256 %s)\nclock %s, %d system calls\n", in.Program.Path, in.Program.SHA256, in.Clock, in.Syscalls)
	if len(in.Devices) > 0 {
		fmt.Fprintf(stdout, "device state saved for: %s\n", strings.Join(in.Devices, ", "))
	}
	for _, o := range in.Objects {
		fmt.Fprintf(stdout, "object %d: %s %s\n", o.Ref, o.Kind, o.Path)
	}
	for _, t := range in.Tasks {
		fmt.Fprintf(stdout, "\ntask pid %d tid %d: rip %#x rsp %#x\n", t.PID, t.TID, t.RIP, t.RSP)
		tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "RANGE\tPERMS\tOFFSET\tTYPE\tSTORED\tZERO PAGES\tBACKING")
		for _, v := range t.VMAs {
			typ := v.Type
			if v.Device != "" {
				typ += "(" + v.Device + ")"
			}
			fmt.Fprintf(tw, "%08x-%08x\t%s\t%08x\t%s\t%d\t%d\t%s\n", v.Start, v.End, v.Perms, v.Offset, typ, v.StoredBytes, v.ZeroPages, v.Backing)
		}
		tw.Flush()
	}
	fmt.Fprintf(stdout, "\ntotal: %d VMAs, %d pages stored (%d bytes), %d zero pages not stored\n",
		in.Totals.VMAs, in.Totals.StoredPages, in.Totals.StoredBytes, in.Totals.ZeroPages)
	return 0
}

// imageError reports an image that cannot be used: exit status 125.
func imageError(stderr io.Writer, path string, err error) int {
	fmt.Fprintf(stderr, "emuckpt: %s: %v\n", path, err)
	return exitFailure
}
