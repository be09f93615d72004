package kernel

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"testing"

	"github.com/emuckpt/emuckpt/devices/hpet"
	"github.com/emuckpt/emuckpt/internal/kvmtest"
	"github.com/emuckpt/emuckpt/kernel/vfs"
	"github.com/emuckpt/emuckpt/testimages"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestFailedCheckpointGoesOn: a checkpoint that cannot be saved never
// ends the run, with or without LeaveRunning. A requested one is reported
// on the log and counted; the guest's own emuckpt_checkpoint() gets EIO
// and is not counted.
func TestFailedCheckpointGoesOn(t *testing.T) {
	kvmtest.Require(t)
	enospc := fmt.Errorf("x.img: writing page data: %w", unix.ENOSPC)
	tests := []struct {
		name    string
		args    []string
		cc      CheckpointConfig
		save    []error // what successive Saves return
		stdout  string
		status  ExitStatus
		stats   CheckpointStats
		logHas  []string
		logLack string
	}{
		{
			name: "syscall trigger fails", args: []string{"hello"},
			cc: CheckpointConfig{AtSyscall: 1}, save: []error{enospc},
			stdout: "hello, world\n", stats: CheckpointStats{Requested: 1, Failed: 1},
			logHas: []string{"emuckpt: checkpoint failed, the program goes on: x.img: writing page data: no space left on device"},
		},
		{
			name: "syscall trigger fails, leave running", args: []string{"hello"},
			cc: CheckpointConfig{AtSyscall: 1, LeaveRunning: true}, save: []error{enospc},
			stdout: "hello, world\n", stats: CheckpointStats{Requested: 1, Failed: 1},
			logHas: []string{"no space left on device"},
		},
		{
			name: "trigger succeeds", args: []string{"hello"},
			cc: CheckpointConfig{AtSyscall: 1}, save: []error{nil},
			status: ExitStatus{Checkpointed: true}, stats: CheckpointStats{Requested: 1},
			logLack: "failed",
		},
		{
			name: "guest's own call fails", args: []string{"ckptwait", "self"},
			cc: CheckpointConfig{}, save: []error{enospc},
			stdout: "start\ncheckpoint: ret=-5\nend\n",
			logHas: []string{"emuckpt_checkpoint() failed, the call returns EIO: x.img: writing page data: no space left on device"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prog, err := testimages.FS.ReadFile("bin/" + tt.args[0])
			require.NoError(t, err)
			out := tempFile(t)
			var log bytes.Buffer
			saves := tt.save
			cfg := Config{Program: prog, Name: tt.args[0], Args: tt.args, Stdout: out, Stderr: out, Log: &log, MemSize: 64 << 20}
			cfg.Checkpoint = tt.cc
			cfg.Checkpoint.Save = func(*Snapshot) error {
				require.NotEmpty(t, saves, "more checkpoints than expected")
				err := saves[0]
				saves = saves[1:]
				return err
			}
			k, err := New(cfg)
			require.NoError(t, err)
			defer k.Close()
			st, err := k.Run(context.Background())
			require.NoError(t, err)
			assert.Equal(t, tt.status, st)
			assert.Equal(t, tt.stats, k.CheckpointStats())
			assert.Empty(t, saves, "checkpoints not taken")
			_, err = out.Seek(0, io.SeekStart)
			require.NoError(t, err)
			stdout, err := io.ReadAll(out)
			require.NoError(t, err)
			assert.Equal(t, tt.stdout, string(stdout))
			for _, s := range tt.logHas {
				assert.Contains(t, log.String(), s)
			}
			if tt.logLack != "" {
				assert.NotContains(t, log.String(), tt.logLack)
			}
		})
	}
}

func tempFile(t *testing.T) *os.File {
	f, err := os.CreateTemp(t.TempDir(), "out")
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	return f
}

func TestTriggerLists(t *testing.T) {
	cc := CheckpointConfig{AtSyscall: 4, AtSyscalls: []uint64{2, 7, 9}, AtDevice: 6, AtDevices: []uint64{3, 10}}
	var due []uint64
	for n := uint64(1); n <= 10; n++ {
		if cc.syscallDue(n) {
			due = append(due, n)
		}
	}
	assert.Equal(t, []uint64{2, 4, 7, 9}, due)
	for _, c := range []struct{ done, want uint64 }{{0, 3}, {2, 1}, {3, 3}, {5, 1}, {6, 4}, {9, 1}, {10, 0}, {20, 0}} {
		assert.Equal(t, c.want, cc.devicesToNext(c.done), "after %d accesses", c.done)
	}
	assert.Zero(t, (&CheckpointConfig{}).devicesToNext(0))
	assert.False(t, (&CheckpointConfig{}).syscallDue(0), "0 is never a trigger")
}

// TestManyTriggersOneRun: one run with LeaveRunning takes a checkpoint at
// every listed system call and device access, in order, and says which
// snapshots the guest asked for itself.
func TestManyTriggersOneRun(t *testing.T) {
	kvmtest.Require(t)
	prog, err := testimages.FS.ReadFile("bin/ckptwait")
	require.NoError(t, err)
	out := tempFile(t)
	type taken struct {
		syscalls, devices uint64
		self              bool
	}
	var got []taken
	var k *Kernel
	cfg := Config{Program: prog, Name: "ckptwait", Args: []string{"ckptwait", "hpet", "self"}, Stdout: out, Stderr: out, MemSize: 64 << 20,
		Devices: []DeviceFactory{hpetDevice}}
	cfg.Checkpoint = CheckpointConfig{AtSyscalls: []uint64{1, 3}, AtDevices: []uint64{1, 3}, LeaveRunning: true,
		Save: func(s *Snapshot) error {
			got = append(got, taken{s.State.Syscalls, k.Machine().Bus.TotalAccesses(), s.Self})
			return nil
		}}
	k, err = New(cfg)
	require.NoError(t, err)
	defer k.Close()
	st, err := k.Run(context.Background())
	require.NoError(t, err)
	assert.Equal(t, ExitStatus{}, st)
	require.Len(t, got, 5, "%+v", got)
	assert.Equal(t, taken{1, 0, false}, got[0])
	assert.Equal(t, taken{3, 0, false}, got[1])
	var devs []uint64
	selfs := 0
	for _, g := range got[2:] {
		if g.self {
			selfs++
		} else {
			devs = append(devs, g.devices)
		}
	}
	assert.Equal(t, []uint64{1, 3}, devs)
	assert.Equal(t, 1, selfs)
	for i := 1; i < len(got); i++ {
		assert.LessOrEqual(t, got[i-1].syscalls, got[i].syscalls, "in order")
	}
	assert.Greater(t, k.Syscalls(), got[len(got)-1].syscalls)
}

// hpetDevice is the HPET as cmd/emuckpt wires it, without its saved
// state and VMA checks.
func hpetDevice(env DeviceEnv) (Device, error) {
	h, err := hpet.New(hpet.DefaultConfig(), hpet.ClockFunc(env.Now))
	if err != nil {
		return Device{}, err
	}
	return Device{
		MMIO: []MMIORegion{{Base: hpet.MMIOBase, Size: hpet.MMIOSize, Dev: h}},
		Files: []DeviceFile{{Path: hpet.DevicePath, Info: hpet.DeviceInfo(),
			Open: func(fl int) (vfs.File, unix.Errno) { return h.Open(fl, nil) }}},
		Start: h.Enable, VMATypes: []VMAType{{Name: hpet.VMAType}},
	}, nil
}
