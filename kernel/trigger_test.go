package kernel

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"testing"

	"github.com/emuckpt/emuckpt/internal/kvmtest"
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
