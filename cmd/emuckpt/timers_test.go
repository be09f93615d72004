package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emuckpt/emuckpt/internal/kvmtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTimersMatchNative runs the timers image (alarm, setitimer,
// getitimer, timer_*, CPU-time clocks, getrusage, times) natively and
// under emuckpt, in host mode and under --deterministic, and compares the
// output line by line. The image prints only facts that hold at any
// machine speed; its spins wait in user code for a timer's handler, so a
// timer that did not kick the vCPU hangs the run (and --timeout fails it).
func TestTimersMatchNative(t *testing.T) {
	kvmtest.Require(t)
	for _, image := range []string{"timers", "timerfd"} {
		want := native(t, img(image))
		require.Equal(t, 0, want.status, want.stderr)
		for _, tc := range []struct {
			name string
			args []string
		}{
			{"host", []string{"run", "--timeout", "2m", img(image)}},
			{"deterministic", []string{"run", "--deterministic", "--timeout", "2m", img(image), "det"}},
		} {
			t.Run(image+"/"+tc.name, func(t *testing.T) {
				got := emuckpt(t, tc.args...)
				assert.Equal(t, 0, got.status, got.stderr)
				assert.Equal(t, strings.Split(want.stdout, "\n"), strings.Split(got.stdout, "\n"))
			})
		}
	}
}

// TestTimersDeterministic: timers fire at the same virtual times in every
// run, so two runs print the same bytes, times included.
func TestTimersDeterministic(t *testing.T) {
	kvmtest.Require(t)
	a := emuckpt(t, "run", "--deterministic", img("timer_ckpt"), "time")
	b := emuckpt(t, "run", "--deterministic", img("timer_ckpt"), "time")
	require.Equal(t, 0, a.status, a.stderr)
	assert.Equal(t, a.stdout, b.stdout)
	// The first SIGALRM of a 30 ms itimer armed at about 5 µs.
	assert.Contains(t, a.stdout, "t=30008 alrm=1 rt=0 value=0\n")
	assert.True(t, strings.HasSuffix(a.stdout, "alrm=8 rt=4 value=7\ndone\n"), a.stdout)
}

// TestTimerfdAcrossCheckpoint: a blocking read of a periodic timerfd
// goes on after restore, at the same virtual times as a run straight
// through.
func TestTimerfdAcrossCheckpoint(t *testing.T) {
	kvmtest.Require(t)
	dir := t.TempDir()
	full := emuckpt(t, "run", "--deterministic", img("timerfd"), "loop", "time")
	require.Equal(t, 0, full.status, full.stderr)
	assert.Contains(t, full.stdout, "t=30005 read 0: n>=1=1\n")
	for _, n := range []string{"6", "9", "13"} {
		image := filepath.Join(dir, "tfd"+n+".img")
		first := emuckpt(t, "run", "--deterministic", "--checkpoint-to", image, "--checkpoint-at", "syscall:"+n, img("timerfd"), "loop", "time")
		require.Equal(t, 0, first.status, first.stderr)
		insp := emuckpt(t, "inspect", image)
		assert.Contains(t, insp.stdout, "timer timerfd 0: ", "syscall:%s", n)
		second := emuckpt(t, "restore", image)
		assert.Equal(t, 0, second.status, second.stderr)
		assert.Equal(t, full.stdout, first.stdout+second.stdout, "syscall:%s", n)
	}
	image := filepath.Join(dir, "host.img")
	first := emuckpt(t, "run", "--checkpoint-to", image, "--checkpoint-at", "syscall:9", img("timerfd"), "loop")
	require.Equal(t, 0, first.status, first.stderr)
	second := emuckpt(t, "restore", "--timeout", "2m", image)
	assert.Equal(t, 0, second.status, second.stderr)
	want := "armed\n"
	for i := 0; i < 8; i++ {
		want += fmt.Sprintf("read %d: n>=1=1\n", i)
	}
	assert.Equal(t, want+"done\n", first.stdout+second.stdout)
}

// TestTimersAcrossCheckpoint: an interval timer and a POSIX timer armed
// before a checkpoint go on in the restored program. Under
// --deterministic a run cut at any system call and restored prints
// exactly what a run straight through prints; in host mode the restored
// program gets its remaining signals and finishes.
func TestTimersAcrossCheckpoint(t *testing.T) {
	kvmtest.Require(t)
	dir := t.TempDir()
	full := emuckpt(t, "run", "--deterministic", img("timer_ckpt"), "time")
	require.Equal(t, 0, full.status, full.stderr)
	for _, n := range []string{"9", "12", "20", "33", "50"} {
		image := filepath.Join(dir, "det"+n+".img")
		first := emuckpt(t, "run", "--deterministic", "--checkpoint-to", image, "--checkpoint-at", "syscall:"+n, img("timer_ckpt"), "time")
		require.Equal(t, 0, first.status, first.stderr)
		insp := emuckpt(t, "inspect", image)
		assert.Contains(t, insp.stdout, "timer real 0: SIGALRM fires in ", "syscall:%s", n)
		second := emuckpt(t, "restore", image)
		assert.Equal(t, 0, second.status, second.stderr)
		assert.Equal(t, full.stdout, first.stdout+second.stdout, "syscall:%s", n)
	}

	image := filepath.Join(dir, "host.img")
	first := emuckpt(t, "run", "--checkpoint-to", image, "--checkpoint-at", "syscall:20", img("timer_ckpt"))
	require.Equal(t, 0, first.status, first.stderr)
	require.NotContains(t, first.stdout, "done")
	second := emuckpt(t, "restore", "--timeout", "2m", image)
	assert.Equal(t, 0, second.status, second.stderr)
	// How many POSIX timer signals come by the 8th SIGALRM depends on the
	// host's timing (a late expiry is one signal with an overrun).
	assert.Regexp(t, `alrm=8 rt=\d+ value=7\ndone\n$`, second.stdout)
	assert.NotContains(t, second.stdout, "armed", "the restored program goes on, it does not start again")
}
