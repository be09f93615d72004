package kernel

import (
	"fmt"
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
	// checkpoints: emuckpt_checkpoint then fails with EDESTADDRREQ.
	Save func(*Snapshot) error
	// AtSyscall checkpoints after the Nth system call (0: never).
	AtSyscall uint64
	// AtDevice checkpoints after the Nth device MMIO access (0: never).
	AtDevice uint64
	// Requests asks for a checkpoint at the next exit, once per receive
	// (SIGUSR1, a time:DUR timer).
	Requests <-chan struct{}
	// LeaveRunning goes on after a checkpoint instead of ending the run.
	LeaveRunning bool
}

// checkpointer is the kernel's checkpoint state during Run.
type checkpointer struct {
	requested atomic.Bool
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
				k.ckpt.requested.Store(true)
				k.vcpu.Kick()
				select {
				case k.wake <- struct{}{}:
				default:
				}
			}
		}
	}()
}

// checkpoint takes a checkpoint now. It returns errExit when the run ends
// after it.
func (k *Kernel) checkpoint(rax *uint64) error {
	cc := &k.cfg.Checkpoint
	if cc.Save == nil {
		return nil
	}
	// A wake-up meant for this request must not interrupt a later wait.
	select {
	case <-k.wake:
	default:
	}
	snap, err := k.Snapshot(rax)
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if err := cc.Save(snap); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if !cc.LeaveRunning {
		return &errExit{ExitStatus{Checkpointed: true}}
	}
	return nil
}

// sysCheckpoint is emuckpt_checkpoint(): the guest checkpoints itself.
func (k *Kernel) sysCheckpoint(t *Task, _ *args) (uint64, unix.Errno) {
	if k.cfg.Checkpoint.Save == nil {
		return 0, unix.EDESTADDRREQ
	}
	restored := uint64(CheckpointRestored)
	if err := k.checkpoint(&restored); err != nil {
		if _, ok := err.(*errExit); ok {
			k.pendingExit = err
			return CheckpointWritten, 0
		}
		fmt.Fprintf(k.log, "emuckpt: %v\n", err)
		return 0, unix.EIO
	}
	return CheckpointWritten, 0
}
