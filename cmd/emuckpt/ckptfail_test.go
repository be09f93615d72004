package main

import (
	"flag"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emuckpt/emuckpt/ckpt"
	"github.com/emuckpt/emuckpt/internal/kvmtest"
	"github.com/emuckpt/emuckpt/internal/testfs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Tests of checkpoints that fail: they are reported and the program goes
// on, the exit status tells (125 with "instead of N"), --checkpoint-to is
// checked before the guest runs, and a killed writer leaves no file.

// lastLine is the last line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	return lines[len(lines)-1]
}

// syscallIndex is the number of the first system call named name that
// the program makes (1 for the first call), from --trace.
func syscallIndex(t *testing.T, name string, args ...string) int {
	r := emuckpt(t, append([]string{"run", "--trace"}, args...)...)
	n := 0
	for _, l := range strings.Split(r.stderr, "\n") {
		if rest, ok := strings.CutPrefix(l, "emuckpt: trace: "); ok {
			n++
			if strings.HasPrefix(rest, "[pid ") {
				_, rest, _ = strings.Cut(rest, "] ")
			}
			if strings.HasPrefix(rest, name+"(") {
				return n
			}
		}
	}
	t.Fatalf("%v makes no %s call", args, name)
	return 0
}

// TestFailedCheckpointGoesOn: a checkpoint asked for by every outside
// means (syscall:, device:, time:, SIGUSR1), which fails because the
// guest holds a socket, is reported on stderr; the guest goes on to its
// normal output, with or without --leave-running, and emuckpt exits with
// 125, giving the guest's own status on the last line.
func TestFailedCheckpointGoesOn(t *testing.T) {
	kvmtest.Require(t)
	prog := []string{img("ckptwait"), "socket", "hpet", "wait"}
	normal := emuckpt(t, append([]string{"run"}, prog...)...)
	require.Equal(t, 0, normal.status, normal.stderr)
	require.Equal(t, "start\nhpet: ok\nstdin: eof\nsocket: ok\nend\n", normal.stdout)
	afterSocket := syscallIndex(t, "socketpair", prog...) + 1

	tests := []struct {
		name string
		at   string                   // --checkpoint-at
		ask  func(*testing.T, *child) // how the test asks, if it does
	}{
		{name: "syscall", at: "syscall:" + itoa(afterSocket)},
		{name: "device", at: "device:2"},
		{name: "time", at: "time:300ms"},
		{name: "SIGUSR1", ask: func(t *testing.T, c *child) {
			c.waitFor(t, &c.stdout, "start\n")
			c.signal(t, syscall.SIGUSR1)
		}},
	}
	for _, tt := range tests {
		for _, leave := range []bool{false, true} {
			name := tt.name
			if leave {
				name += "/leave-running"
			}
			t.Run(name, func(t *testing.T) {
				image := filepath.Join(t.TempDir(), "x.img")
				args := []string{"run", "--checkpoint-to", image}
				if tt.at != "" {
					args = append(args, "--checkpoint-at", tt.at)
				}
				if leave {
					args = append(args, "--leave-running")
				}
				c := startEmuckpt(t, append(args, prog...)...)
				if tt.ask != nil {
					tt.ask(t, c)
				}
				c.waitFor(t, &c.stderr, "checkpoint failed")
				r := c.finish(t)
				assert.Equal(t, normal.stdout, r.stdout)
				assert.Contains(t, r.stderr, "emuckpt: checkpoint failed, the program goes on: cannot checkpoint: descriptor 3 of process 2 is a socket, which images do not hold yet\n")
				assert.Equal(t, "emuckpt: "+prog[0]+": 1 of 1 requested checkpoints failed; exit status 125 instead of 0", lastLine(r.stderr))
				assert.Equal(t, 125, r.status)
				assert.NoFileExists(t, image)
			})
		}
	}

	t.Run("emuckpt_checkpoint", func(t *testing.T) {
		// The guest's own call gets EIO, and the status is the guest's.
		image := filepath.Join(t.TempDir(), "x.img")
		r := emuckpt(t, "run", "--checkpoint-to", image, img("ckptwait"), "socket", "self")
		assert.Equal(t, "start\ncheckpoint: ret=-5\nsocket: ok\nend\n", r.stdout)
		assert.Contains(t, r.stderr, "emuckpt_checkpoint() failed, the call returns EIO: cannot checkpoint: descriptor 3 of process 2 is a socket")
		assert.Equal(t, 0, r.status)
	})
}

// TestFailedCheckpointWrite: checkpoints that fail while the image is
// written (a full disk, a directory made read-only or removed after
// start-up) are reported with the reason; the program goes on; the
// status is 125; a later checkpoint that succeeds still writes the image.
func TestFailedCheckpointWrite(t *testing.T) {
	kvmtest.Require(t)
	t.Run("ENOSPC", func(t *testing.T) {
		dir := testfs.Tmpfs(t, "16k") // hello's image is about 21 KiB
		image := filepath.Join(dir, "x.img")
		for _, leave := range []string{"--leave-running=false", "--leave-running"} {
			r := emuckpt(t, "run", "--checkpoint-to", image, "--checkpoint-at", "syscall:3", leave, img("hello"))
			assert.Equal(t, "hello, world\n", r.stdout, leave)
			assert.Contains(t, r.stderr, "emuckpt: checkpoint failed, the program goes on: "+image+": writing ", leave)
			assert.Contains(t, r.stderr, "no space left on device", leave)
			assert.Equal(t, 125, r.status, leave)
			assert.Equal(t, []string{}, dirNames(t, dir), "no file left behind (%s)", leave)
		}
	})

	t.Run("read-only, then writable again", func(t *testing.T) {
		dir := testfs.Tmpfs(t, "16m")
		image := filepath.Join(dir, "x.img")
		c := startEmuckpt(t, "run", "--checkpoint-to", image, "--leave-running", img("ckptwait"), "wait")
		c.waitFor(t, &c.stdout, "start\n")
		testfs.SetReadOnly(t, dir, true)
		c.signal(t, syscall.SIGUSR1)
		c.waitFor(t, &c.stderr, "checkpoint failed")
		testfs.SetReadOnly(t, dir, false)
		c.signal(t, syscall.SIGUSR1)
		c.waitFor(t, &c.stderr, "checkpoint written to "+image)
		r := c.finish(t)
		assert.Equal(t, "start\nstdin: eof\nend\n", r.stdout)
		assert.Contains(t, r.stderr, "emuckpt: checkpoint failed, the program goes on: "+image+": cannot create the image in "+dir+": read-only file system\n")
		assert.Equal(t, "emuckpt: "+img("ckptwait")+": 1 of 2 requested checkpoints failed; exit status 125 instead of 0", lastLine(r.stderr))
		assert.Equal(t, 125, r.status)
		assert.Equal(t, []string{"x.img"}, dirNames(t, dir))
		assert.Equal(t, 0, emuckpt(t, "restore", image).status, "the second checkpoint is a good image")
	})

	t.Run("directory removed", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "images")
		require.NoError(t, os.Mkdir(dir, 0o755))
		image := filepath.Join(dir, "x.img")
		c := startEmuckpt(t, "run", "--checkpoint-to", image, "--checkpoint-at", "time:1s", img("ckptwait"), "wait")
		c.waitFor(t, &c.stdout, "start\n")
		require.NoError(t, os.Remove(dir))
		c.waitFor(t, &c.stderr, "checkpoint failed")
		r := c.finish(t)
		assert.Equal(t, "start\nstdin: eof\nend\n", r.stdout)
		assert.Contains(t, r.stderr, "emuckpt: checkpoint failed, the program goes on: "+image+": cannot create the image in "+dir+": no such file or directory\n")
		assert.Equal(t, 125, r.status)
	})
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	names := []string{}
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// TestCheckpointToCheckedAtStartup: a --checkpoint-to that cannot work is
// status 125 before the guest runs (it prints nothing), for run and
// restore.
func TestCheckpointToCheckedAtStartup(t *testing.T) {
	kvmtest.Require(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	require.NoError(t, os.WriteFile(file, nil, 0o600))
	good := filepath.Join(dir, "good.img")
	r := emuckpt(t, "run", "--checkpoint-to", good, "--checkpoint-at", "syscall:1", img("hello"))
	require.Equal(t, 0, r.status, r.stderr)
	ro := testfs.ReadOnly(t)
	tests := []struct {
		name, to, err string
	}{
		{"missing directory", filepath.Join(dir, "nope", "x.img"), "directory " + filepath.Join(dir, "nope") + " does not exist"},
		{"directory as target", dir, "is a directory"},
		{"under a regular file", filepath.Join(file, "x.img"), file + " is not a directory"},
		{"unwritable directory", filepath.Join(ro, "x.img"), "cannot create files in " + ro},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, cmd := range [][]string{{"run", "--checkpoint-to", tt.to, img("hello")}, {"restore", "--checkpoint-to", tt.to, good}} {
				r := emuckpt(t, cmd...)
				assert.Equal(t, 125, r.status, cmd[0])
				assert.Empty(t, r.stdout, "%s: the guest did not run", cmd[0])
				assert.True(t, strings.HasPrefix(r.stderr, "emuckpt: "+cmd[0]+": --checkpoint-to "+tt.to+": "), r.stderr)
				assert.Contains(t, r.stderr, tt.err, cmd[0])
			}
		})
	}
}

var killTrials = flag.Int("kill-trials", 4, "how many checkpoints TestKilledCheckpointLeavesNoFile kills")

// TestKilledCheckpointLeavesNoFile kills emuckpt (SIGKILL) while it writes
// a 64 MiB checkpoint, at a random moment after the image file is
// created: nothing is left but the image from before, or the complete
// new one.
func TestKilledCheckpointLeavesNoFile(t *testing.T) {
	kvmtest.Require(t)
	dir := t.TempDir()
	image := filepath.Join(dir, "big.img")
	midWrite := 0
	for trial := range *killTrials {
		if trial%2 == 0 {
			os.Remove(image) // odd trials replace an image
		}
		before, _ := os.Stat(image)
		c := startEmuckpt(t, "run", "--mem", "256M", "--checkpoint-to", image, img("bigmem"), "64")
		fd := c.waitForFileIn(t, dir)
		time.Sleep(time.Duration(rand.IntN(40)) * time.Millisecond)
		if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			require.ErrorIs(t, err, os.ErrProcessDone) // it finished first
		}
		<-c.exited

		after, err := os.Stat(image)
		if err == nil && (before == nil || !os.SameFile(before, after)) {
			img, err := ckpt.Open(image)
			require.NoError(t, err, "trial %d: a new image must be complete", trial)
			require.NoError(t, img.Verify(), "trial %d", trial)
			img.Close()
		} else {
			midWrite++
		}
		names := dirNames(t, dir)
		assert.LessOrEqual(t, len(names), 1, "trial %d: %v (the killed process had %s open)", trial, names, fd)
		if len(names) == 1 {
			assert.Equal(t, "big.img", names[0], "trial %d", trial)
		}
	}
	t.Logf("%d kills, %d of them before the image was in place", *killTrials, midWrite)
}

// waitForFileIn waits until the child has a file in dir open (the image
// it writes) and returns what /proc says that file is.
func (c *child) waitForFileIn(t *testing.T, dir string) string {
	t.Helper()
	fds := "/proc/" + itoa(c.cmd.Process.Pid) + "/fd"
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Microsecond) {
		select {
		case <-c.exited:
			t.Fatalf("emuckpt ended (%v) before it opened a file in %s; stderr:\n%s", c.waitErr, dir, c.stderr.String())
		default:
		}
		ents, _ := os.ReadDir(fds)
		for _, e := range ents {
			if target, err := os.Readlink(filepath.Join(fds, e.Name())); err == nil && strings.HasPrefix(target, dir+"/") {
				return target
			}
		}
	}
	t.Fatalf("the child opened no file in %s; stderr:\n%s", dir, c.stderr.String())
	return ""
}

// TestHelpTellsFailedCheckpointStatus: --help documents the status rule.
func TestHelpTellsFailedCheckpointStatus(t *testing.T) {
	r := emuckpt(t, "help")
	assert.Contains(t, r.stdout, `"exit status 125 instead of N"`)
	r = emuckpt(t, "run", "--help")
	assert.Contains(t, r.stderr, "FILE is checked before the program runs")
	assert.Contains(t, r.stderr, `"exit status 125 instead of N"`)
}

// TestStaleTemporaryRemoved: a temporary file of the image left by an
// emuckpt that died is removed at start-up, and stderr says so.
func TestStaleTemporaryRemoved(t *testing.T) {
	kvmtest.Require(t)
	dead := exec.Command(os.Args[0], "-test.run=^$")
	require.NoError(t, dead.Run())
	dir := t.TempDir()
	stale := filepath.Join(dir, ".x.img.emuckpt-tmp."+itoa(dead.Process.Pid)+".123")
	require.NoError(t, os.WriteFile(stale, []byte("partial image"), 0o600))
	r := emuckpt(t, "run", "--checkpoint-to", filepath.Join(dir, "x.img"), img("hello"))
	assert.Equal(t, 0, r.status, r.stderr)
	assert.Contains(t, r.stderr, "emuckpt: removed "+stale+", a temporary file left by an emuckpt that died\n")
	assert.NoFileExists(t, stale)
}
