package kernel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/emuckpt/emuckpt/guestmm"
	"github.com/emuckpt/emuckpt/kernel/loader"
	"github.com/emuckpt/emuckpt/kernel/vfs"
	"github.com/emuckpt/emuckpt/vmm"
	"golang.org/x/sys/unix"
)

// Config describes the program to run and the world it sees.
type Config struct {
	// Program is the ELF image; Name is how argv[0] and AT_EXECFN name it.
	// Path is the host file it came from, recorded in checkpoints.
	Program []byte
	Name    string
	Path    string
	Args    []string // argv, including argv[0]
	Env     []string // the complete environment
	// Root is a host directory the guest sees read-only as "/"; empty
	// means only synthetic files (/dev/null, /proc/self/maps, ...).
	Root string
	// Cwd is the guest's initial working directory (default "/").
	Cwd                   string
	Stdin, Stdout, Stderr *os.File
	MemSize               uint64
	// CPUs is the number of vCPUs (0 means 1, at most vmm.MaxCPUs). A
	// deterministic run has one.
	CPUs int
	// Deterministic selects the virtual clock and seeded randomness.
	Deterministic bool
	Seed          uint64
	// Log receives fault reports and, with Trace or Verbose, syscall
	// notes. Nil means os.Stderr.
	Log io.Writer
	// Trace logs every system call; Verbose logs each unknown one once.
	Trace, Verbose bool
	// TraceEvents, if set, receives the run as trace events (--trace-json).
	TraceEvents *TraceEvents
	// Devices are the device models to attach (see DeviceFactory).
	Devices []DeviceFactory
	// Checkpoint configures checkpoints (see CheckpointConfig).
	Checkpoint CheckpointConfig
	// PreserveDevices makes Restore give device models their saved
	// registers (--device-state=preserve); by default they start fresh.
	PreserveDevices bool
	// Tmpfs are the tmpfs mounts (--tmpfs) besides the default /tmp; see
	// tmpfsMountsForRun and restoreTmpfs.
	Tmpfs []TmpfsMount
}

// Kernel is one guest kernel on one machine.
type Kernel struct {
	cfg    Config
	log    io.Writer
	m      *vmm.Machine
	frames *guestmm.Frames
	fs     *vfs.FS
	clock  Clock
	rand   io.Reader
	// cpus are the vCPUs, each driven by a host thread of its own; bkl
	// is the big kernel lock that guards everything else here, and smp
	// what the vCPUs share to stop and wake each other (cpus.go).
	cpus []*cpu
	bkl  sync.Mutex
	smp  smp
	fill *pageFill // a restore's page data still being filled in (restorefill.go)
	// sched is the run queue and the tasks; procs every process that
	// was not reaped yet, by pid; first is the run's first process,
	// whose end ends the run (with end set to its status).
	sched scheduler
	procs map[int]*Process
	first *Process
	end   *ExitStatus
	// zapPending makes the next entry drop every translation KVM holds
	// (vmm.VCPU.FlushTLB): page tables were freed, and their frames
	// must not be seen through stale shadow pages.
	zapPending bool
	// futexes are the tasks waiting on futex words, oldest first.
	futexes []*futexWaiter
	// pendingExit ends the calling process (or, for a checkpoint, the
	// run) after the current system call returns.
	pendingExit error
	unknown     map[uint64]bool
	notes       map[string]bool // see noteOnce
	hwcap       uint64
	// ctx is the context of the current Run.
	ctx context.Context
	// progRef identifies the program for checkpoints; syscalls counts
	// system calls (checkpoint triggers); deviceStates are the devices
	// that save their own state.
	progRef      ProgramRef
	syscalls     uint64
	deviceStates []DeviceState
	vmaTypes     map[string]VMAType
	ckpt         checkpointer
	// wake interrupts a system call that waits (nanosleep, a blocking
	// device read) when a checkpoint is requested; the call is then
	// restarted after the checkpoint, unseen by the guest.
	wake chan struct{}
	// timers are the guest's interval and POSIX timers (timers.go).
	timers timerTable
	// privilege overrides privileged() (tests); nil means "the host's
	// euid is 0".
	privilege *bool
	// asyncTimer kicks the vCPU at the next event of an O_ASYNC file
	// (host clock only), asyncAt is when it fires (0: not armed); see
	// checkAsync.
	asyncTimer *time.Timer
	asyncAt    int64
	// asyncUsed is set once a descriptor had O_ASYNC: until then no exit
	// looks for O_ASYNC files.
	asyncUsed bool
	// trace is the --trace and --trace-json state (strace.go).
	trace tracer
	vdso  vdsoState // the vDSO and its clock (vdso.go)
}

// ErrLoad wraps every error that means "this program cannot be run"
// (not an ELF, dynamic, wrong architecture, corrupt): exit status 126.
var ErrLoad = errors.New("cannot execute")

// New creates the machine, loads the program and prepares its first task.
func New(cfg Config) (*Kernel, error) {
	img, err := loader.Parse(cfg.Program)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrLoad, cfg.Name, err)
	}
	var clock Clock = HostClock{}
	var random io.Reader = hostRand{}
	if cfg.Deterministic {
		clock, random = NewVirtualClock(), newSeededRand(cfg.Seed)
	}
	k, err := newKernel(cfg, clock, random)
	if err != nil {
		return nil, err
	}
	k.trapTSC()
	if err := k.mountTmpfs(tmpfsMountsForRun(&cfg)); err != nil {
		k.Close()
		return nil, fmt.Errorf("mounting tmpfs: %w", err)
	}
	p, regs, err := k.exec(img)
	if err != nil {
		k.Close()
		return nil, err
	}
	t := p.leader()
	t.ctx.Regs = regs
	k.adopt(p)
	if err := k.cpus[0].vcpu.StartContext(&t.ctx); err != nil {
		k.Close()
		return nil, err
	}
	t.last = k.cpus[0]
	return k, nil
}

// adopt makes p the run's first process, with its tasks runnable.
func (k *Kernel) adopt(p *Process) {
	k.first = p
	k.procs = map[int]*Process{p.pid: p}
	k.sched.nextPID = p.pid
	for _, t := range p.tasks {
		k.sched.nextPID = max(k.sched.nextPID, t.tid)
		k.sched.all = append(k.sched.all, t)
		k.sched.runq = append(k.sched.runq, t)
	}
}

// newKernel creates the machine, the file system and the devices: all a
// kernel needs before it has a process.
func newKernel(cfg Config, clock Clock, random io.Reader) (*Kernel, error) {
	k := &Kernel{cfg: cfg, log: cfg.Log, unknown: map[uint64]bool{}, clock: clock, rand: random,
		progRef: programRef(cfg.Name, cfg.Path, cfg.Program), wake: make(chan struct{}, 1)}
	if k.log == nil {
		k.log = os.Stderr
	}
	var err error
	k.m, err = vmm.New(vmm.Config{MemSize: cfg.MemSize, TrapTSC: cfg.Deterministic})
	if err != nil {
		return nil, err
	}
	k.frames = k.m.NewFrames()
	k.fs, err = vfs.New(vfs.Options{
		Root: cfg.Root, Stdin: cfg.Stdin, Stdout: cfg.Stdout, Stderr: cfg.Stderr,
		Random: k.rand, Frames: k.frames,
		Procs: procView{k},
		Now: func() vfs.Timespec {
			ns, _ := k.clock.Now(unix.CLOCK_REALTIME)
			return vfs.Timespec{Sec: ns / 1e9, Nsec: ns % 1e9}
		},
	})
	if err == nil {
		err = addSysctls(k.fs)
	}
	if err != nil {
		k.m.Close()
		return nil, fmt.Errorf("setting up files: %w", err)
	}
	k.hwcap = hostHWCap()
	if err := k.attachDevices(); err != nil {
		k.Close()
		return nil, fmt.Errorf("attaching devices: %w", err)
	}
	n := max(cfg.CPUs, 1)
	switch {
	case n > vmm.MaxCPUs:
		k.Close()
		return nil, fmt.Errorf("%d vCPUs: at most %d", n, vmm.MaxCPUs)
	case n > 1 && cfg.Deterministic:
		k.Close()
		return nil, fmt.Errorf("%d vCPUs: a deterministic run has one", n)
	}
	if err := k.newCPUs(n); err != nil {
		k.Close()
		return nil, err
	}
	k.setupVDSO()
	return k, nil
}

// Machine is the VM the kernel runs on.
func (k *Kernel) Machine() *vmm.Machine { return k.m }

// Close releases the machine and every open file.
func (k *Kernel) Close() error {
	k.awaitBackground()
	k.stopFill()
	for _, p := range k.procs {
		if !p.exited && p.fds != nil { // nil in a restore that failed
			p.fds.CloseAll()
		}
	}
	if k.fs != nil {
		k.fs.Close()
	}
	if k.m != nil {
		k.m.Close()
	}
	return nil
}

// trapTSC makes rdtsc and rdtscp trap under --deterministic on a KVM
// that ignores CR4.TSD (PVM): executable pages are patched before they
// run (guestmm.TSCPatch). It must come before the first address space.
// It warns once per run about rdtsc-like bytes it could not decode.
func (k *Kernel) trapTSC() {
	if !k.cfg.Deterministic {
		return
	}
	if ok, err := vmm.TSCTrapWorks(); err == nil && ok {
		return
	}
	warned := false
	k.frames.EnableTSCPatch().Undecided = func(va uint64, n int) {
		if !warned {
			warned = true
			fmt.Fprintf(k.log, "emuckpt: warning: %d byte sequence(s) reading as rdtsc/rdtscp at %#x could not be decoded as instructions and are not trapped; they read the host TSC\n", n, va)
		}
	}
}
