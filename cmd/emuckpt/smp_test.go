package main

import (
	"path/filepath"
	"regexp"
	"testing"

	"github.com/emuckpt/emuckpt/internal/kvmtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSeveralCPUs runs tasks on several vCPUs at once.
func TestSeveralCPUs(t *testing.T) {
	kvmtest.Require(t)
	checksum := regexp.MustCompile(`checksum=\w+`)
	t.Run("no translation outlives munmap or mprotect", func(t *testing.T) {
		// A thread spinning on a page on one vCPU must fault as soon as
		// the call that took the page away returned on the other.
		got := emuckpt(t, "run", "--cpus", "2", img("smpstress"), "200")
		require.Equal(t, 0, got.status, got.stdout+got.stderr)
		assert.Equal(t, "rounds=200 faults=200 stale=0\nok\n", got.stdout)
	})
	t.Run("affinity and getcpu", func(t *testing.T) {
		for _, n := range []string{"1", "2", "3"} {
			got := emuckpt(t, "run", "--cpus", n, img("cpus"))
			require.Equal(t, 0, got.status, got.stdout+got.stderr)
			assert.Equal(t, "cpus="+n+"\nok\n", got.stdout)
		}
		want := native(t, img("cpus"))
		got := emuckpt(t, "run", img("cpus")) // as many vCPUs as the host has CPUs
		assert.Equal(t, want, got)
	})
	t.Run("threads compute in parallel", func(t *testing.T) {
		want := native(t, img("taskbench"), "cpu", "100", "2")
		require.Equal(t, 0, want.status)
		got := emuckpt(t, "run", "--cpus", "2", img("taskbench"), "cpu", "100", "2")
		require.Equal(t, 0, got.status, got.stderr)
		assert.Equal(t, checksum.FindString(want.stdout), checksum.FindString(got.stdout))
	})
	t.Run("checkpoint while threads run on both vCPUs", func(t *testing.T) {
		// The image is taken with the two threads in user mode on two
		// vCPUs; it restores on two vCPUs and on one.
		want := native(t, img("taskbench"), "cpu", "300", "2")
		require.Equal(t, 0, want.status)
		for _, cpus := range []string{"2", "1"} {
			image := filepath.Join(t.TempDir(), "smp.img")
			first := emuckpt(t, "run", "--cpus", "2", "--checkpoint-to", image, "--checkpoint-at", "time:150ms", img("taskbench"), "cpu", "300", "2")
			require.Equal(t, 0, first.status, first.stderr)
			require.Empty(t, first.stdout, "the checkpoint came after the end")
			rest := emuckpt(t, "restore", "--cpus", cpus, image)
			require.Equal(t, 0, rest.status, rest.stderr)
			assert.Equal(t, checksum.FindString(want.stdout), checksum.FindString(rest.stdout), "restored on %s vCPUs", cpus)
		}
	})
	t.Run("usage", func(t *testing.T) {
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"--cpus", "2", "--deterministic"}, "emuckpt: run: --cpus 2: a deterministic run has one vCPU\n"},
			{[]string{"--cpus", "0"}, `emuckpt: run: invalid value "0" for flag -cpus: want a number of vCPUs from 1 to 16` + "\nRun 'emuckpt run --help' for usage.\n"},
			{[]string{"--cpus", "17"}, `emuckpt: run: invalid value "17" for flag -cpus: want a number of vCPUs from 1 to 16` + "\nRun 'emuckpt run --help' for usage.\n"},
		} {
			got := emuckpt(t, append(append([]string{"run"}, c.args...), img("hello"))...)
			assert.Equal(t, 125, got.status, "%v", c.args)
			assert.Equal(t, c.want, got.stderr, "%v", c.args)
		}
	})
}
