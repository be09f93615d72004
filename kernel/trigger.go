package kernel

import (
	"errors"
	"fmt"
	"slices"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// CheckpointSyscall is the system call number behind emuckpt_checkpoint()
// (testimages/include/emuckpt.h). Linux has no such call and returns
// -ENOSYS, so the same binary runs natively.
const CheckpointSyscall = 0x454d55 // "EMU"

// Values emuckpt_checkpoint returns.
const (
	CheckpointWritten  = 1 // in the run that goes on after writing the image
	CheckpointRestored = 2 // in a run restored from the image
)

// CheckpointConfig says when the kernel takes checkpoints and what it does
// with them.
type CheckpointConfig struct {
	// Save writes a snapshot out (the image file). Nil disables
	// checkpoints: emuckpt_checkpoint then fails with EDESTADDRREQ. It
	// must be done with the snapshot (its Mem, and its Pages and Parent,
	// which Incremental reuses) when it returns: the guest
	// goes on, and on PVM under --deterministic the rdtsc patches, taken
	// out of guest memory during Save, come back (see trapTSC).
	Save func(*Snapshot) error
	// AtSyscall checkpoints after the Nth system call (0: never).
	AtSyscall uint64
	// AtDevice checkpoints after the Nth device MMIO access (0: never).
	AtDevice uint64
	// AtSyscalls and AtDevices are more such points, in ascending order,
	// for a run that takes many checkpoints (with LeaveRunning), such as
	// a verify pass.
	AtSyscalls, AtDevices []uint64
	// Requests asks for a checkpoint at the next exit, once per receive
	// (SIGUSR1, a time:DUR timer).
	Requests <-chan struct{}
	// LeaveRunning goes on after a checkpoint instead of ending the run.
	LeaveRunning bool
	// Background lets a LeaveRunning checkpoint asked for from outside
	// the guest be written while the guest runs on (bgsave.go): Save is
	// then called on another goroutine, with Snapshot.Guard set, and must
	// look at nothing but the snapshot.
	Background bool
	// Points, when more than 1 and LeaveRunning is false, goes on after
	// each checkpoint until Points images have been written (a repeated
	// --checkpoint-at), and then ends the run.
	Points int
	// Incremental makes every snapshot after the first image written a
	// delta against the image before it (Snapshot.Parent): the kernel
	// tracks the frames written since (incremental.go). Save must then
	// keep each image where the next one can name it.
	Incremental bool
	// FromImage, for a restored kernel with Incremental, makes its first
	// snapshot a delta against the image it was restored from.
	FromImage bool
}

// ErrSkipped is what Save returns for a snapshot it chose not to keep:
// the checkpoint counts as taken (the guest's emuckpt_checkpoint()
// succeeds), but no image was written, so with Incremental the next
// delta is against the image before it.
var ErrSkipped = errors.New("checkpoint not kept")

// syscallDue says whether a checkpoint is due after system call n.
func (cc *CheckpointConfig) syscallDue(n uint64) bool {
	if cc.AtSyscall != 0 && n == cc.AtSyscall {
		return true
	}
	_, found := slices.BinarySearch(cc.AtSyscalls, n)
	return found
}

// devicesToNext is how many more device accesses, after done of them,
// the next device checkpoint is due (0: none), for
// vmm.VCPU.StopAfterMMIO.
func (cc *CheckpointConfig) devicesToNext(done uint64) uint64 {
	next := uint64(0)
	if cc.AtDevice > done {
		next = cc.AtDevice
	}
	if i, _ := slices.BinarySearch(cc.AtDevices, done+1); i < len(cc.AtDevices) && (next == 0 || cc.AtDevices[i] < next) {
		next = cc.AtDevices[i]
	}
	if next == 0 {
		return 0
	}
	return next - done
}

// Syscalls is the number of system calls the program has made, those
// before a checkpoint included. Call it after Run returns.
func (k *Kernel) Syscalls() uint64 { return k.syscalls }

// checkpointer is the kernel's checkpoint state during Run.
type checkpointer struct {
	requested atomic.Bool
	// stats counts the checkpoints requested from outside the guest
	// (only the Run goroutine touches it).
	stats CheckpointStats
	// background is the last checkpoint written in the background
	// (bgsave.go); only the holder of the big kernel lock touches it,
	// with every vCPU stopped.
	background *backgroundSave
	// deferred is a request put off until background is written.
	deferred atomic.Bool
	// buffers are those of the checkpoint being taken, if it may be
	// written in the background (prepareBackground); state is the
	// guards' frame states, made once (bgsave.go).
	buffers *bgBuffers
	state   []uint8
	// written counts the images written.
	written int
	// incr tracks writes for incremental checkpoints.
	incr incremental
}

// CheckpointStats says how the checkpoints requested from outside the
// guest went: --checkpoint-at triggers (AtSyscall, AtDevice, a time:DUR
// request) and Requests (SIGUSR1). The guest's own emuckpt_checkpoint()
// calls are not counted: the guest learns of a failure from the call.
type CheckpointStats struct {
	Requested int // checkpoints attempted
	Failed    int // of those, the ones that saved nothing
}

// CheckpointStats returns the counts of the runs so far. Call it after
// Run returns.
func (k *Kernel) CheckpointStats() CheckpointStats { return k.ckpt.stats }

// EventCounts returns what AtSyscall and AtDevice count: the system calls
// and the device MMIO accesses of the run so far (of the whole history for
// a restored run). Call it after Run returns.
func (k *Kernel) EventCounts() (syscalls, deviceAccesses uint64) {
	return k.syscalls, k.m.Bus.TotalAccesses()
}

func (k *Kernel) watchRequests(stop <-chan struct{}) {
	reqs := k.cfg.Checkpoint.Requests
	if reqs == nil {
		return
	}
	go func() {
		for {
			select {
			case <-stop:
				return
			case _, ok := <-reqs:
				if !ok {
					return
				}
				k.askCheckpoint()
			}
		}
	}()
}

// askCheckpoint asks for a checkpoint at the next exit of any vCPU (a
// request from outside). It is safe from any goroutine.
func (k *Kernel) askCheckpoint() {
	k.ckpt.requested.Store(true)
	k.kickAll()
	select {
	case k.wake <- struct{}{}:
	default:
	}
}

// checkpoint takes a checkpoint requested from outside the guest (see
// CheckpointStats); rax is as for save. It returns errExit when the run
// ends after the checkpoint.
//
// A checkpoint that fails (a socket the image cannot hold, a full disk, a
// directory gone) ends nothing: nothing was saved, so there is nothing to
// stop for, with or without LeaveRunning. The failure goes to the log,
// saying what could not be saved and why, and is counted in
// CheckpointStats so the end of the run can still tell a script.
func (k *Kernel) checkpoint(rax *uint64) error {
	if k.cfg.Checkpoint.Save == nil {
		return nil
	}
	err := k.save(rax)
	if err == errDeferred {
		return nil
	}
	k.ckpt.stats.Requested++
	if _, ended := err.(*errExit); err == nil || ended {
		return err
	}
	k.ckpt.stats.Failed++
	fmt.Fprintf(k.log, "emuckpt: checkpoint failed, the program goes on: %v\n", err)
	return nil
}

// save snapshots the process and hands the snapshot to Config.Checkpoint.Save.
// rax overrides the saved RAX when non-nil (see Snapshot). It returns
// errExit when the run ends after a checkpoint (not LeaveRunning), and
// the error when nothing was saved.
func (k *Kernel) save(rax *uint64) error {
	if err := k.awaitPages(); err != nil {
		return err
	}
	cc := &k.cfg.Checkpoint
	// A wake-up meant for this request must not interrupt a later wait.
	select {
	case <-k.wake:
	default:
	}
	// A request while the checkpoint before is still being written is
	// put off (bgsave.go); so is one that finds it so after stopAll, which
	// may have let another vCPU take one meanwhile.
	deferrable := k.deferrable(rax)
	if deferrable && k.backgroundBusy() && k.deferBackground() {
		return errDeferred
	}
	if cc.inBackground() && rax == nil {
		k.prepareBackground()
		defer func() { k.ckpt.buffers = nil }()
	}
	// Every task stops at a clean boundary (cpus.go).
	if !k.stopAll(k.smp.holder, rax != nil) {
		return nil // the run ended first
	}
	defer k.resumeAll()
	if deferrable && k.backgroundBusy() && k.deferBackground() {
		return errDeferred
	}
	// The one before is written to the same file: one at a time, and
	// only the vCPU that stopped the others waits for it.
	k.awaitBackground()
	// Images hold the program's own bytes, not patched rdtscs (see trapTSC).
	repatch := k.frames.TSCPatch().Unpatch()
	var err error
	if cc.Incremental {
		err = k.harvestWrites()
	}
	var snap *Snapshot
	// One asked for from outside while the program goes on is written
	// in the background (bgsave.go), its page lists made there too.
	inBackground := cc.inBackground() && rax == nil
	if err == nil {
		snap, err = k.snapshot(rax, inBackground)
	}
	if err == nil {
		snap.Self = rax != nil
		// Guest RAM is protected before repatch writes the patched
		// rdtscs back, so the image keeps the program's own bytes.
		background := false
		if inBackground {
			background, err = k.saveInBackground(snap, cc.Save)
		}
		if !background && err == nil && snap.pages != nil {
			ms := snap.pages
			snap.pages = nil
			err = ms.finishPages(ms.checkZero)
		}
		if !background && err == nil {
			err = cc.Save(snap)
		}
	}
	repatch()
	skipped := errors.Is(err, ErrSkipped)
	if err != nil && !skipped {
		return err
	}
	if !skipped {
		k.ckpt.written++
	}
	if cc.Incremental && !skipped {
		if err := k.commitIncremental(snap); err != nil {
			fmt.Fprintf(k.log, "emuckpt: the next checkpoint will be a full image: %v\n", err)
		}
	}
	if !cc.LeaveRunning && (cc.Points <= 1 || k.ckpt.written >= cc.Points) {
		return &errExit{ExitStatus{Checkpointed: true}}
	}
	return nil
}

// errDeferred is save's answer to a checkpoint put off (deferBackground).
var errDeferred = errors.New("checkpoint put off")

// deferrable says whether the checkpoint save is asked to take may be put
// off until a background one is written: one asked for from outside at no
// particular point (SIGUSR1, time:DUR), not the guest's own
// emuckpt_checkpoint() or a syscall:N or device:N point, which must be
// taken where they are.
func (k *Kernel) deferrable(rax *uint64) bool {
	cc := &k.cfg.Checkpoint
	return rax == nil && cc.inBackground() && !cc.syscallDue(k.syscalls) && !k.deviceCheckpointDue()
}

// inBackground says whether a checkpoint asked for from outside the
// guest is written while the guest runs on. Incremental images are not:
// the next delta may name an image only once it is complete, and a delta
// is written in a few milliseconds anyway.
func (cc *CheckpointConfig) inBackground() bool {
	return cc.LeaveRunning && cc.Background && !cc.Incremental
}

// sysCheckpoint is emuckpt_checkpoint(): the guest checkpoints itself. A
// failure is the guest's to handle: the call returns EIO (and the log
// says why), and CheckpointStats does not count it.
func (k *Kernel) sysCheckpoint(t *Task, _ *args) (uint64, unix.Errno) {
	if k.cfg.Checkpoint.Save == nil {
		return 0, unix.EDESTADDRREQ
	}
	restored := uint64(CheckpointRestored)
	if err := k.save(&restored); err != nil {
		if _, ok := err.(*errExit); ok {
			k.pendingExit = err
			return CheckpointWritten, 0
		}
		fmt.Fprintf(k.log, "emuckpt: emuckpt_checkpoint() failed, the call returns EIO: %v\n", err)
		return 0, unix.EIO
	}
	return CheckpointWritten, 0
}
