package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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

// TestTreeCheckpoint checkpoints a process tree (two children blocked
// reading a pipe, a thread blocked on a condition variable, a shared
// anonymous page, copy-on-write heap pages) at every fourth system call,
// restores each image in a new VM, and requires the interrupted output
// followed by the restored output to equal an uninterrupted run, under
// --deterministic, and to have the same lines in some order on the host
// clock (the children run in parallel there).
func TestTreeCheckpoint(t *testing.T) {
	kvmtest.Require(t)
	image := filepath.Join(t.TempDir(), "tree.img")
	for _, mode := range [][]string{nil, {"--deterministic"}} {
		full := emuckpt(t, append(append([]string{"run"}, mode...), img("treeckpt"))...)
		require.Equal(t, 0, full.status, full.stderr)
		trace := emuckpt(t, append(append([]string{"run", "--trace"}, mode...), img("treeckpt"))...)
		calls := strings.Count(trace.stderr, "emuckpt: trace: ")
		require.Greater(t, calls, 50)
		for k := 1; k < calls; k += 4 {
			os.Remove(image)
			args := append(append([]string{"run", "--checkpoint-to", image, "--checkpoint-at", "syscall:" + itoa(k)}, mode...), img("treeckpt"))
			first := emuckpt(t, args...)
			if mode == nil && first.status == 125 && strings.Contains(first.stderr, "never fired") {
				// On the host clock the number of system calls varies a
				// little (futex waits): a point near the end may not come.
				require.ElementsMatch(t, strings.SplitAfter(full.stdout, "\n"), strings.SplitAfter(first.stdout, "\n"), "k=%d", k)
				continue
			}
			require.Equal(t, 0, first.status, "k=%d %v: %s", k, mode, first.stderr)
			rest := emuckpt(t, "restore", image)
			require.Equal(t, 0, rest.status, "k=%d %v: %s", k, mode, rest.stderr)
			if mode == nil {
				// On the host clock the two children run in parallel on
				// two vCPUs: their lines may come in either order.
				require.ElementsMatch(t, strings.SplitAfter(full.stdout, "\n"), strings.SplitAfter(first.stdout+rest.stdout, "\n"), "k=%d %v", k, mode)
				continue
			}
			require.Equal(t, full.stdout, first.stdout+rest.stdout, "k=%d %v", k, mode)
		}
	}
}

// TestTreeInspect shows a tree in inspect: processes with their parent,
// threads and command line, pipe ends naming their pipe, descriptions
// shared after fork.
func TestTreeInspect(t *testing.T) {
	kvmtest.Require(t)
	image := filepath.Join(t.TempDir(), "tree.img")
	r := emuckpt(t, "run", "--deterministic", "--checkpoint-to", image, "--checkpoint-at", "syscall:40", img("treeckpt"))
	require.Equal(t, 0, r.status, r.stderr)
	in := emuckpt(t, "inspect", image)
	require.Equal(t, 0, in.status, in.stderr)
	assert.Contains(t, in.stdout, "process 2 (ppid 1, pgid 2, sid 1): live, 2 threads")
	assert.Regexp(t, `process \d+ \(ppid 2, pgid 2, sid 1\): live, 1 threads`, in.stdout)
	assert.Regexp(t, `fd \d+: pipe .*\(pipe \d+\)`, in.stdout)
	assert.Contains(t, in.stdout, "waiting in a system call")
}

// TestRestoreOpenProcFile restores a process holding /proc/PID/maps open
// (bsr_barrier reads its own maps): the process must exist when its
// descriptors are re-opened.
func TestRestoreOpenProcFile(t *testing.T) {
	kvmtest.Require(t)
	image := filepath.Join(t.TempDir(), "maps.img")
	full := emuckpt(t, "run", "--deterministic", img("bsr_barrier"))
	require.Equal(t, 0, full.status, full.stderr)
	first := emuckpt(t, "run", "--deterministic", "--checkpoint-to", image, "--checkpoint-at", "syscall:62", img("bsr_barrier"))
	require.Equal(t, 0, first.status, first.stderr)
	in := emuckpt(t, "inspect", image)
	require.Contains(t, in.stdout, "generated /proc/2/maps", "the image holds the open maps file")
	rest := emuckpt(t, "restore", "--device-state=preserve", image)
	require.Equal(t, 0, rest.status, rest.stderr)
	assert.Equal(t, full.stdout, first.stdout+rest.stdout)
}
