package main

import (
	"context"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emuckpt/emuckpt/ckpt"
	"github.com/emuckpt/emuckpt/devices/bsr"
	"github.com/emuckpt/emuckpt/devices/hpet"
	"github.com/emuckpt/emuckpt/internal/kvmtest"
	"github.com/emuckpt/emuckpt/kernel"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// envInt reads a test size from the environment, so that .ci/run can ask
// for a longer storm than a developer's `go test ./...` runs.
func envInt(t *testing.T, name string, def int) int {
	if s := os.Getenv(name); s != "" {
		n, err := strconv.Atoi(s)
		require.NoError(t, err, name)
		return n
	}
	return def
}

// stormConfig is a kernel.Config for testimages/bin/storm with the default
// devices, writing the guest's stdout to out.
func stormConfig(t *testing.T, out *os.File, args ...string) kernel.Config {
	prog, err := os.ReadFile(img("storm"))
	require.NoError(t, err)
	return kernel.Config{
		Program: prog, Name: "storm", Path: img("storm"), Args: append([]string{"storm"}, args...),
		Env: defaultEnv, Stdin: nil, Stdout: out, Stderr: out, Log: io.Discard,
		Devices: deviceFactories(hpet.DefaultConfig(), bsr.DefaultSpecs()),
	}
}

func tempOutput(t *testing.T) *os.File {
	f, err := os.CreateTemp(t.TempDir(), "stdout")
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	return f
}

func contents(t *testing.T, f *os.File) string {
	b, err := os.ReadFile(f.Name())
	require.NoError(t, err)
	return string(b)
}

// savedImage is a checkpoint kept by TestCheckpointStorm with how much the
// guest had printed when it was taken.
type savedImage struct {
	image   []byte
	printed int64
	index   int
}

// TestCheckpointStorm asks for checkpoints at random moments, thousands
// of times, while testimages/bin/storm faults, uses the BSR and HPET,
// makes system calls and takes signals, with --leave-running: the live
// run must print what an uninterrupted run prints (the guest checks that
// it never runs at CPL0 and that no round is replayed), and a random
// sample of the checkpoints, each restored in a new VM under
// --device-state=preserve, must print the rest of it.
func TestCheckpointStorm(t *testing.T) {
	kvmtest.Require(t)
	rounds := strconv.Itoa(envInt(t, "EMUCKPT_STORM_ROUNDS", 1500))
	sample := envInt(t, "EMUCKPT_STORM_RESTORES", 12)
	want := emuckpt(t, "run", img("storm"), rounds)
	require.Equal(t, 0, want.status, want.stderr)
	require.Contains(t, want.stdout, "done ")

	out := tempOutput(t)
	cfg := stormConfig(t, out, rounds)
	requests := make(chan struct{})
	var kept []savedImage
	taken := 0
	cfg.Checkpoint = kernel.CheckpointConfig{
		Requests: requests, LeaveRunning: true,
		Save: func(s *kernel.Snapshot) error {
			taken++
			// Reservoir sampling: each checkpoint is kept with the same
			// probability, without holding thousands of images.
			slot := len(kept)
			if slot >= sample {
				if slot = rand.IntN(taken); slot >= sample {
					return nil
				}
			}
			b, err := ckpt.WriteBuffer(s)
			if err != nil {
				return err
			}
			st, err := out.Stat()
			if err != nil {
				return err
			}
			saved := savedImage{image: b, printed: st.Size(), index: taken}
			if slot == len(kept) {
				kept = append(kept, saved)
			} else {
				kept[slot] = saved
			}
			return nil
		},
	}
	k, err := kernel.New(cfg)
	require.NoError(t, err)
	defer k.Close()
	var sent atomic.Int64
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(rand.IntN(400)) * time.Microsecond):
			}
			select {
			case requests <- struct{}{}:
				sent.Add(1)
			case <-stop:
				return
			}
		}
	}()
	st, err := k.Run(context.Background())
	close(stop)
	require.NoError(t, err)
	require.Equal(t, 0, st.ShellStatus())
	require.Equal(t, want.stdout, contents(t, out), "the live run under a checkpoint storm")
	t.Logf("%d checkpoint requests sent (each a kick), %d checkpoints taken, %d of them restored", sent.Load(), taken, len(kept))
	require.Greater(t, taken, 100, "the storm should take many checkpoints")

	for _, s := range kept {
		printed := contents(t, out)[:s.printed]
		img, err := ckpt.Parse(s.image)
		require.NoError(t, err)
		rout := tempOutput(t)
		rcfg := stormConfig(t, rout, rounds)
		rcfg.PreserveDevices = true
		rk, err := img.Restore(rcfg)
		require.NoError(t, err)
		rst, err := rk.Run(context.Background())
		rk.Close()
		require.NoError(t, err)
		assert.Equal(t, 0, rst.ShellStatus(), "checkpoint %d", s.index)
		assert.Equal(t, want.stdout, printed+contents(t, rout), "checkpoint %d restored", s.index)
	}
}

// TestSIGUSR1Storm sends SIGUSR1 to a running `emuckpt run --leave-running`
// again and again: every signal checkpoints the guest, which must still
// print what an uninterrupted run prints, and the last image restores to
// the rest of that output.
func TestSIGUSR1Storm(t *testing.T) {
	kvmtest.Require(t)
	rounds := strconv.Itoa(envInt(t, "EMUCKPT_STORM_ROUNDS", 1500) / 2)
	want := emuckpt(t, "run", img("storm"), rounds)
	require.Equal(t, 0, want.status, want.stderr)

	image := filepath.Join(t.TempDir(), "storm.img")
	c := startEmuckpt(t, "run", "--timeout", "5m", "--checkpoint-to", image, "--leave-running", img("storm"), rounds)
	// The storm starts once the guest has printed its first line: before
	// emuckpt has set up its handler, SIGUSR1 would kill it.
	c.waitFor(t, &c.stdout, "round 500:")
	signals := 0
storm:
	for {
		select {
		case <-c.exited:
			break storm
		case <-time.After(time.Duration(500+rand.IntN(1500)) * time.Microsecond):
			if c.cmd.Process.Signal(syscall.SIGUSR1) == nil {
				signals++
			}
		}
	}
	live := c.finish(t)
	require.Equal(t, 0, live.status, live.stderr)
	stderr, stdout := live.stderr, live.stdout
	written := strings.Count(stderr, "checkpoint written to ")
	t.Logf("%d SIGUSR1 sent, %d checkpoints written", signals, written)
	require.Equal(t, want.stdout, stdout, "the live run under SIGUSR1")
	require.Greater(t, written, 0)
	r := emuckpt(t, "restore", "--device-state=preserve", image)
	require.Equal(t, 0, r.status, r.stderr)
	// The last image may even be from after the last line was printed.
	assert.True(t, strings.HasSuffix(want.stdout, r.stdout), "the last image restores to the end of the output:\n%s", r.stdout)
}
