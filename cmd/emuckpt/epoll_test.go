package main

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"

	"github.com/emuckpt/emuckpt/internal/kvmtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestEpollMatchesNative runs testimages' epoll program natively and
// under emuckpt, on the host clock and the virtual one: epoll's errors,
// level- and edge-triggered and oneshot items, nesting, blocking waits
// ended by another thread, eventfd, epoll_pwait's mask, rt_sigsuspend,
// rt_sigtimedwait, the affinity calls and getcpu.
func TestEpollMatchesNative(t *testing.T) {
	kvmtest.Require(t)
	want := native(t, img("epoll"))
	require.Equal(t, 0, want.status, "native: %s", want.stdout+want.stderr)
	for _, mode := range [][]string{nil, {"--deterministic"}} {
		got := emuckpt(t, append(append([]string{"run", "-v"}, mode...), img("epoll"))...)
		assert.Equal(t, want.stdout, got.stdout, "%v", mode)
		assert.Equal(t, want.status, got.status, "%v: %s", mode, got.stderr)
		assert.Empty(t, got.stderr, "%v", mode)
	}
}

// TestEpollCheckpointRefused: images do not hold epolls and eventfds yet,
// so a checkpoint of a process that has one fails cleanly, naming it.
func TestEpollCheckpointRefused(t *testing.T) {
	kvmtest.Require(t)
	for _, kind := range []string{"epoll", "eventfd"} {
		image := filepath.Join(t.TempDir(), "x.img")
		r := emuckpt(t, "run", "--checkpoint-to", image, img("epoll"), "ckpt", kind)
		assert.Equal(t, "fd: 3\ncheckpoint: ret=-5\n", r.stdout, kind)
		assert.Contains(t, r.stderr, "cannot checkpoint: descriptor 3 of process 2 is an "+kind+", which images do not hold yet", kind)
		assert.Equal(t, 0, r.status, kind)
		assert.NoFileExists(t, image, kind)
	}
}

// buildGoProgram builds testdata/goprog with CGO_ENABLED=0 (a static
// executable) into a temporary directory.
func buildGoProgram(t *testing.T) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out := filepath.Join(t.TempDir(), "goprog")
	cmd := exec.Command(gobin, "build", "-o", out, "main.go")
	cmd.Dir = filepath.Join("testdata", "goprog")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build: %s", b)
	return out
}

// TestGoProgram builds an ordinary Go program (goroutines on several
// threads, channels, sync, timers, os/signal, a pipe in the netpoller,
// os.Exit) and runs it natively and under emuckpt: the same output and
// status, on the host clock and under --deterministic, and no system call
// that emuckpt does not know (-v would report it).
func TestGoProgram(t *testing.T) {
	kvmtest.Require(t)
	prog := buildGoProgram(t)
	want := native(t, prog)
	require.Equal(t, 3, want.status, "native: %s", want.stdout+want.stderr)
	require.Contains(t, want.stdout, "read deadline: true\n")
	for _, mode := range [][]string{nil, {"--deterministic"}} {
		got := emuckpt(t, append(append([]string{"run", "-v"}, mode...), prog)...)
		assert.Equal(t, want, got, "%v", mode)
	}
	a := emuckpt(t, "run", "--deterministic", "--seed", "5", prog)
	b := emuckpt(t, "run", "--deterministic", "--seed", "5", prog)
	assert.Equal(t, a, b)

	t.Run("spinning goroutine", func(t *testing.T) {
		// Host clock only: a kick ends the spinning thread's turn, so
		// that the sleeping one wakes and the runtime preempts the
		// spinner. (Under --deterministic a task that spins without
		// exits is never preempted: see kernel/sched.go.)
		want := native(t, prog, "spin")
		require.Equal(t, 4, want.status)
		got := emuckpt(t, "run", "-v", prog, "spin")
		assert.Equal(t, want, got)
	})
	t.Run("checkpoint before the first thread", func(t *testing.T) {
		// 20 system calls in, the runtime has not cloned a thread yet:
		// the image is written and restores into the whole run.
		image := filepath.Join(t.TempDir(), "go.img")
		r := emuckpt(t, "run", "--checkpoint-to", image, "--checkpoint-at", "syscall:20", prog)
		require.Equal(t, 0, r.status, r.stderr)
		assert.Empty(t, r.stdout)
		got := emuckpt(t, "restore", image)
		assert.Equal(t, want.stdout, got.stdout)
		assert.Equal(t, want.status, got.status, got.stderr)
	})
	t.Run("checkpoint with threads", func(t *testing.T) {
		// Later (after about 190 system calls, of some 300: the runtime
		// reads the clock through the vDSO) the runtime holds an epoll and
		// an eventfd (its netpoller), which images do not hold yet: the
		// checkpoint is refused, and the program goes on to its end. (One
		// vCPU: with more, the runtime starts more threads and its
		// netpoller later.)
		for _, leave := range []bool{false, true} {
			image := filepath.Join(t.TempDir(), "go.img")
			args := []string{"run", "--cpus", "1", "--checkpoint-to", image, "--checkpoint-at", "syscall:250"}
			if leave {
				args = append(args, "--leave-running")
			}
			r := emuckpt(t, append(args, prog)...)
			assert.Equal(t, want.stdout, r.stdout)
			assert.Regexp(t, `emuckpt: checkpoint failed, the program goes on: cannot checkpoint: descriptor \d+ of process 2 is an (epoll|eventfd), which images do not hold yet`, r.stderr)
			assert.Equal(t, "emuckpt: "+prog+": 1 of 1 requested checkpoints failed; exit status 125 instead of 3", lastLine(r.stderr))
			assert.Equal(t, 125, r.status)
			assert.NoFileExists(t, image)
		}
	})
	t.Run("checkpoint on SIGUSR1 with a thread in read", func(t *testing.T) {
		// Asked for while a thread blocks reading standard input: the
		// same refusal, and the program goes on with what it reads.
		image := filepath.Join(t.TempDir(), "go.img")
		c := startEmuckpt(t, "run", "--checkpoint-to", image, prog, "stdin")
		c.waitFor(t, &c.stdout, "reading stdin\n")
		c.signal(t, syscall.SIGUSR1)
		c.waitFor(t, &c.stderr, "checkpoint failed")
		_, err := io.WriteString(c.stdin, "hi\n")
		require.NoError(t, err)
		r := c.finish(t)
		assert.Equal(t, want.stdout+"reading stdin\nstdin: \"hi\\n\" <nil>\n", r.stdout)
		assert.Regexp(t, `cannot checkpoint: descriptor \d+ of process 2 is an (epoll|eventfd), which images do not hold yet`, r.stderr)
		assert.Equal(t, 125, r.status)
		assert.NoFileExists(t, image)
	})
}
