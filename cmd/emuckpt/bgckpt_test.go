package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emuckpt/emuckpt/internal/kvmtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pausedRE finds the pause of a checkpoint written while the program ran
// on (kernel/bgsave.go).
var pausedRE = regexp.MustCompile(`written while the program ran on: it paused ([0-9.]+[µm]?s)\)`)

// TestBackgroundCheckpoint checkpoints bgwrite, which rewrites every page
// of 64 MiB each round, with --leave-running: the page data is written
// while it goes on (as root, where a userfaultfd can protect guest RAM).
// The image must be the same bytes as a stop-mode checkpoint at the same
// point of the same deterministic run, and restore to the same end.
func TestBackgroundCheckpoint(t *testing.T) {
	kvmtest.Require(t)
	dir := t.TempDir()
	prog := []string{img("bgwrite"), "64", "40"}
	want := emuckpt(t, append([]string{"run", "--deterministic"}, prog...)...)
	require.Equal(t, 0, want.status, want.stderr)
	for _, at := range []string{"syscall:3", "syscall:20", "syscall:39"} {
		live, stopped := filepath.Join(dir, "live.img"), filepath.Join(dir, "stopped.img")
		os.Remove(live)
		os.Remove(stopped)
		r := emuckpt(t, append([]string{"run", "--deterministic", "--checkpoint-to", live, "--checkpoint-at", at, "--leave-running"}, prog...)...)
		require.Equal(t, 0, r.status, r.stderr)
		assert.Equal(t, want.stdout, r.stdout, "the live run goes on unchanged")
		if os.Geteuid() == 0 {
			assert.Regexp(t, pausedRE, r.stderr, "%s: written in the background", at)
		}
		s := emuckpt(t, append([]string{"run", "--deterministic", "--checkpoint-to", stopped, "--checkpoint-at", at}, prog...)...)
		require.Equal(t, 0, s.status, s.stderr)
		a, err := os.ReadFile(live)
		require.NoError(t, err)
		b, err := os.ReadFile(stopped)
		require.NoError(t, err)
		assert.True(t, string(a) == string(b), "%s: the image written while the program ran on differs from the stop-mode one", at)
		rest := emuckpt(t, "restore", live)
		require.Equal(t, 0, rest.status, rest.stderr)
		assert.Equal(t, want.stdout, rest.stdout, at)
	}
}

// TestBackgroundCheckpointMatchesStopMode: dirtywork forks (frames that
// two processes share), writes tmpfs files, maps them privately, drops
// pages with MADV_DONTNEED and touches fresh memory right after each
// point; each image written in the background must still be the bytes
// of the stop-mode image of the same point (the page lists are made
// after the program goes on again, from the pages as they were).
func TestBackgroundCheckpointMatchesStopMode(t *testing.T) {
	kvmtest.Require(t)
	if os.Geteuid() != 0 {
		t.Skip("background checkpoints need a userfaultfd that handles KVM's faults: root")
	}
	points := []string{"150", "190", "230"}
	for _, seed := range []string{"1", "2", "3"} {
		dir := t.TempDir()
		prog := []string{img("dirtywork"), "300", seed}
		live := filepath.Join(dir, "live-%d.img")
		r := emuckpt(t, append([]string{"run", "--deterministic", "--checkpoint-at=syscall:" + strings.Join(points, ","), "--leave-running", "--full", "--checkpoint-to", live}, prog...)...)
		require.Equal(t, 0, r.status, r.stderr)
		assert.Len(t, pausedRE.FindAllString(r.stderr, -1), len(points), "seed %s: written in the background", seed)
		for n, at := range points {
			stopped := filepath.Join(dir, "stopped.img")
			os.Remove(stopped)
			s := emuckpt(t, append([]string{"run", "--deterministic", "--checkpoint-at", "syscall:" + at, "--checkpoint-to", stopped}, prog...)...)
			require.Equal(t, 0, s.status, s.stderr)
			a, err := os.ReadFile(strings.ReplaceAll(live, "%d", fmt.Sprint(n)))
			require.NoError(t, err)
			b, err := os.ReadFile(stopped)
			require.NoError(t, err)
			assert.True(t, string(a) == string(b), "seed %s, syscall:%s: the image written while the program ran on differs from the stop-mode one", seed, at)
		}
	}
}

// TestBackgroundCheckpointBigGuest: with RAM above 4 GiB, each RAM range
// is write-protected on its own, never the MMIO hole between them: the
// checkpoint is still written in the background, and equals the
// stop-mode one.
func TestBackgroundCheckpointBigGuest(t *testing.T) {
	kvmtest.Require(t)
	if os.Geteuid() != 0 {
		t.Skip("background checkpoints need a userfaultfd that handles KVM's faults: root")
	}
	dir := t.TempDir()
	live, stopped := filepath.Join(dir, "live.img"), filepath.Join(dir, "stopped.img")
	prog := []string{img("bgwrite"), "32", "10"}
	r := emuckpt(t, append([]string{"run", "--mem", "5G", "--deterministic", "--checkpoint-to", live, "--checkpoint-at", "syscall:5", "--leave-running"}, prog...)...)
	require.Equal(t, 0, r.status, r.stderr)
	assert.Regexp(t, pausedRE, r.stderr, "written in the background")
	s := emuckpt(t, append([]string{"run", "--mem", "5G", "--deterministic", "--checkpoint-to", stopped, "--checkpoint-at", "syscall:5"}, prog...)...)
	require.Equal(t, 0, s.status, s.stderr)
	a, err := os.ReadFile(live)
	require.NoError(t, err)
	b, err := os.ReadFile(stopped)
	require.NoError(t, err)
	assert.True(t, string(a) == string(b), "the image written while the program ran on differs from the stop-mode one")
	rest := emuckpt(t, "restore", live)
	require.Equal(t, 0, rest.status, rest.stderr)
	assert.Equal(t, r.stdout, rest.stdout)
}

// BenchmarkBackgroundCheckpoint is the figure "--leave-running checkpoint
// of 256 MiB touched: guest pause": bgwrite over 256 MiB checkpointed
// with --leave-running (pause-ms, the longest pause-max-ms, and total-ms
// until the image is written), against a stop-mode checkpoint of the same
// point (stop-ms, the time the guest is stopped there).
func BenchmarkBackgroundCheckpoint(b *testing.B) {
	kvmtest.Require(b)
	if os.Geteuid() != 0 {
		b.Skip("background checkpoints need a userfaultfd that handles KVM's faults: root")
	}
	image := filepath.Join(b.TempDir(), "bg.img")
	took := regexp.MustCompile(`in ([0-9.]+[µm]?s)[,)]`)
	ms := func(s string) float64 {
		d, err := time.ParseDuration(s)
		require.NoError(b, err)
		return float64(d) / 1e6
	}
	var pause, pauseMax, total, stop float64
	n := 0
	for b.Loop() {
		for _, leave := range []bool{true, false} {
			os.Remove(image)
			args := []string{"run", "--mem", "1G", "--checkpoint-to", image, "--checkpoint-at", "syscall:10"}
			if leave {
				args = append(args, "--leave-running")
			}
			r := emuckpt(b, append(args, img("bgwrite"), "256", "20")...)
			require.Equal(b, 0, r.status, r.stderr)
			if leave {
				m := pausedRE.FindStringSubmatch(r.stderr)
				require.NotNil(b, m, r.stderr)
				pause += ms(m[1])
				pauseMax = max(pauseMax, ms(m[1]))
				total += ms(took.FindStringSubmatch(r.stderr)[1])
			} else {
				stop += ms(took.FindStringSubmatch(r.stderr)[1])
			}
		}
		n++
	}
	b.ReportMetric(pause/float64(n), "pause-ms")
	b.ReportMetric(pauseMax, "pause-max-ms")
	b.ReportMetric(total/float64(n), "total-ms")
	b.ReportMetric(stop/float64(n), "stop-ms")
	b.ReportMetric(pause/stop, "pause/stop")
}
