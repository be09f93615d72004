package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emuckpt/emuckpt/ckpt"
	"github.com/emuckpt/emuckpt/ckpt/image"
	"github.com/emuckpt/emuckpt/internal/kvmtest"
	"github.com/emuckpt/emuckpt/kernel"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// emuckptWithin is emuckpt with a deadline: the tests below check that
// emuckpt does not hang on a FIFO or read /dev/zero forever, and must
// fail rather than hang themselves if it does.
func emuckptWithin(t *testing.T, d time.Duration, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), "EMUCKPT_E2E_MAIN=1")
	r := runCmd(t, cmd)
	require.NoError(t, ctx.Err(), "emuckpt %v did not finish within %v", args, d)
	return r
}

// rewriteImage writes to dst the image src with its state changed by
// mutate, with valid checksums: an image that passes every integrity
// check and says what the test wants.
func rewriteImage(t *testing.T, src, dst string, mutate func(*kernel.State)) {
	t.Helper()
	img, err := ckpt.Open(src)
	require.NoError(t, err)
	defer img.Close()
	pages := make([]byte, img.State.PageCount*image.PageSize)
	require.NoError(t, img.ReadPages(pages, 0))
	mutate(img.State)
	state, err := json.Marshal(img.State)
	require.NoError(t, err)
	w, err := image.Create(dst)
	require.NoError(t, err)
	defer w.Abort()
	require.NoError(t, w.Record(ckpt.RecState, state))
	if len(pages) > 0 {
		_, err = w.Pages(pages)
		require.NoError(t, err)
	}
	require.NoError(t, w.Commit())
}

// TestHostileFiles: every file emuckpt reads itself (the program, the
// image, the image's program, --program) must be a regular file: /dev/zero
// would be read until the host runs out of memory, and a FIFO would block
// the open forever, before --timeout is armed. run refuses with 126, like
// env(1); restore and inspect with 125.
func TestHostileFiles(t *testing.T) {
	kvmtest.Require(t)
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	require.NoError(t, unix.Mkfifo(fifo, 0o755))
	noExec := filepath.Join(dir, "hello-noexec")
	hello, err := os.ReadFile(img("hello"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(noExec, hello, 0o644))
	good := filepath.Join(dir, "good.img")
	r := emuckpt(t, "run", "--checkpoint-to", good, "--checkpoint-at", "syscall:3", img("hello"))
	require.Equal(t, 0, r.status, r.stderr)
	zeroProgram := filepath.Join(dir, "zero-program.img")
	rewriteImage(t, good, zeroProgram, func(s *kernel.State) { s.Program.Path = "/dev/zero" })
	fifoProgram := filepath.Join(dir, "fifo-program.img")
	rewriteImage(t, good, fifoProgram, func(s *kernel.State) { s.Program.Path = fifo })

	tests := []struct {
		name   string
		args   []string
		status int
		stderr string
	}{
		{"run /dev/zero", []string{"run", "/dev/zero"}, 126, "/dev/zero: cannot execute: a character device, not a regular file"},
		{"run a FIFO", []string{"run", "--timeout", "1s", fifo}, 126, "cannot execute: a FIFO, not a regular file"},
		{"run a directory", []string{"run", dir}, 126, dir + ": cannot execute: Is a directory"},
		{"run without execute permission", []string{"run", noExec}, 126, "cannot execute: Permission denied"},
		{"restore an image whose program is /dev/zero", []string{"restore", zeroProgram}, 125,
			"the image's program /dev/zero cannot be read: a character device, not a regular file"},
		{"restore an image whose program is a FIFO", []string{"restore", fifoProgram}, 125, "a FIFO, not a regular file"},
		{"restore --program /dev/zero", []string{"restore", "--program", "/dev/zero", good}, 125, "a character device, not a regular file"},
		{"restore --program FIFO", []string{"restore", "--program", fifo, good}, 125, "a FIFO, not a regular file"},
		{"restore /dev/zero", []string{"restore", "/dev/zero"}, 125, "not an emuckpt image: a character device, not a regular file"},
		{"restore a FIFO", []string{"restore", fifo}, 125, "not an emuckpt image: a FIFO, not a regular file"},
		{"inspect a FIFO", []string{"inspect", fifo}, 125, "a FIFO, not a regular file"},
		{"restore a directory", []string{"restore", dir}, 125, "a directory, not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := emuckptWithin(t, 30*time.Second, tt.args...)
			assert.Equal(t, tt.status, r.status, r.stderr)
			assert.Contains(t, r.stderr, tt.stderr)
		})
	}
}

// TestImageChangedUnderRestoredRun: once restore has started the guest,
// the image is no longer used. Truncating it, overwriting it in place with
// another image, or deleting it while the restored program runs changes
// nothing: the program finishes as it would have, and emuckpt does not
// die of a SIGBUS.
func TestImageChangedUnderRestoredRun(t *testing.T) {
	kvmtest.Require(t)
	dir := t.TempDir()
	image := filepath.Join(dir, "sleep.img")
	r := emuckpt(t, "run", "--checkpoint-to", image, "--checkpoint-at", "time:100ms", img("sleeper"), "700")
	require.Equal(t, 0, r.status, r.stderr)
	other := filepath.Join(dir, "other.img")
	r = emuckpt(t, "run", "--checkpoint-to", other, "--checkpoint-at", "syscall:3", img("bigmem"), "1")
	require.Equal(t, 0, r.status, r.stderr)
	otherBytes, err := os.ReadFile(other)
	require.NoError(t, err)

	// --trace shows when the restored guest makes its first system call:
	// restore has then read all it needs.
	cmd := exec.Command(os.Args[0], "restore", "--trace", "--timeout", "30s", image)
	cmd.Env = append(os.Environ(), "EMUCKPT_E2E_MAIN=1")
	var stdout strings.Builder
	cmd.Stdout = &stdout
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	lines := bufio.NewScanner(stderr)
	var log strings.Builder
	for lines.Scan() {
		log.WriteString(lines.Text() + "\n")
		if strings.Contains(lines.Text(), "trace: nanosleep(") {
			break
		}
	}
	require.Contains(t, log.String(), "trace: nanosleep(", "the restored guest never slept")
	require.NoError(t, os.Truncate(image, 4096))
	f, err := os.OpenFile(image, os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteAt(otherBytes, 0)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	require.NoError(t, os.Remove(image))
	rest, _ := io.ReadAll(stderr)
	log.Write(rest)
	err = cmd.Wait()
	assert.NoError(t, err, log.String())
	assert.Equal(t, "end\n", stdout.String())
	assert.NotContains(t, log.String(), "SIGBUS")
	assert.NotContains(t, log.String(), "bad address")
}

// TestInconsistentImageRefused: an image with valid checksums whose state
// contradicts itself is refused by restore and inspect with 125, naming
// the record, before anything runs.
func TestInconsistentImageRefused(t *testing.T) {
	kvmtest.Require(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.img")
	r := emuckpt(t, "run", "--checkpoint-to", good, img("devckpt"))
	require.Equal(t, 0, r.status, r.stderr)
	anon := func(s *kernel.State) *kernel.VMAState {
		for i := range s.Processes[0].VMAs {
			if s.Processes[0].VMAs[i].Type == kernel.VMAAnon && len(s.Processes[0].VMAs[i].Pages) > 0 {
				return &s.Processes[0].VMAs[i]
			}
		}
		t.Fatal("no ANON VMA with pages")
		return nil
	}
	for _, tt := range []struct {
		name   string
		mutate func(*kernel.State)
		msg    string
	}{
		{"DEVICE type on an anonymous VMA", func(s *kernel.State) { v := anon(s); v.Type, v.Device = kernel.VMADevice, "hpet" }, `type "DEVICE" does not match kind anon`},
		{"unknown VMA type", func(s *kernel.State) { anon(s).Type = "FROB" }, `type "FROB" does not match`},
		{"overlapping page runs", func(s *kernel.State) { v := anon(s); v.Pages = append(v.Pages, v.Pages[0]) }, "overlaps or precedes the run before it"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			bad := filepath.Join(dir, "bad.img")
			rewriteImage(t, good, bad, tt.mutate)
			for _, cmd := range []string{"restore", "inspect"} {
				r := emuckpt(t, cmd, bad)
				assert.Equal(t, 125, r.status, "%s: %s", cmd, r.stderr)
				assert.Contains(t, r.stderr, "bad checkpoint image: state record: processes[0].vmas[", cmd)
				assert.Contains(t, r.stderr, tt.msg, cmd)
				assert.Empty(t, r.stdout, cmd)
			}
		})
	}
}
