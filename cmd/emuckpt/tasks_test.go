package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/emuckpt/emuckpt/internal/kvmtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTasksMatchNative runs the process and thread programs natively and
// under emuckpt, on the host clock and the virtual one: fork, wait4,
// waitid, pipes between processes, SIGCHLD, process groups, orphans,
// vfork; pthreads with mutexes, condition variables, thread-directed
// signals and pthread_exit.
func TestTasksMatchNative(t *testing.T) {
	kvmtest.Require(t)
	for _, name := range []string{"procs", "threads", "procfs"} {
		want := native(t, img(name))
		require.Equal(t, 0, want.status, "native %s: %s", name, want.stdout+want.stderr)
		for _, mode := range [][]string{nil, {"--deterministic"}} {
			args := append(append([]string{"run"}, mode...), img(name))
			got := emuckpt(t, args...)
			assert.Equal(t, want.stdout, got.stdout, "%s %v", name, mode)
			assert.Equal(t, want.status, got.status, "%s %v: %s", name, mode, got.stderr)
			assert.Empty(t, got.stderr, "%s %v", name, mode)
		}
	}
}

// TestExec runs procs' exec part, with the test images as the guest's
// root: a forked child execs a program from the root with close-on-exec
// honoured, and a missing program is ENOENT. As root the native run is
// chrooted into the same directory.
func TestExec(t *testing.T) {
	kvmtest.Require(t)
	root := filepath.Dir(img("procs"))
	got := emuckpt(t, "run", "--root", root, img("procs"), "exec")
	require.Equal(t, 0, got.status, got.stderr)
	assert.Contains(t, got.stdout, "exec'd: argc=2 argv1=child-exec fd9=closed\nexec child status: 7\nexec missing: ENOENT\ndone\n")
	if os.Geteuid() != 0 {
		return
	}
	cmd := exec.Command("/procs", "exec")
	cmd.Env = defaultEnv
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
	cmd.Dir = "/"
	want := runCmd(t, cmd)
	assert.Equal(t, want, got)
}

// TestDeterministicTasks runs the multi-task programs twice under the
// same seed: the scheduling and so the output are the same bytes.
func TestDeterministicTasks(t *testing.T) {
	kvmtest.Require(t)
	for _, name := range []string{"procs", "threads", "procfs"} {
		a := emuckpt(t, "run", "--deterministic", "--seed", "3", img(name))
		b := emuckpt(t, "run", "--deterministic", "--seed", "3", img(name))
		assert.Equal(t, a, b, name)
	}
}
