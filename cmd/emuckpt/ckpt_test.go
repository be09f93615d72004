package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/emuckpt/emuckpt/internal/kvmtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// countSyscalls runs a program with --trace and counts its system calls.
func countSyscalls(t *testing.T, args ...string) int {
	r := emuckpt(t, append([]string{"run", "--trace"}, args...)...)
	return strings.Count(r.stderr, "emuckpt: trace: ")
}

// TestCheckpointEverywhere checkpoints programs after every k-th system
// call, restores each image in a fresh VM, and requires the output of the
// interrupted run followed by the restored run to equal the output of an
// uninterrupted run, with the same exit status.
func TestCheckpointEverywhere(t *testing.T) {
	kvmtest.Require(t)
	dir := t.TempDir()
	for _, args := range [][]string{
		{"hello"}, {"args", "a", "b c"}, {"malloc"}, {"mmap"}, {"efault"},
		{"sigs"}, {"cpubound", "2"}, {"exitcode", "3"}, {"fdops"},
	} {
		t.Run(args[0], func(t *testing.T) {
			argv := append([]string{img(args[0])}, args[1:]...)
			want := emuckpt(t, append([]string{"run"}, argv...)...)
			n := countSyscalls(t, argv...)
			require.Greater(t, n, 0)
			step := max(1, n/12)
			image := filepath.Join(dir, args[0]+".img")
			checked := 0
			for k := 1; k < n; k += step { // the last call is exit_group
				os.Remove(image)
				first := emuckpt(t, append([]string{"run", "--checkpoint-to", image, "--checkpoint-at", "syscall:" + itoa(k)}, argv...)...)
				require.Equal(t, 0, first.status, "k=%d: %s", k, first.stderr)
				require.Contains(t, first.stderr, "checkpoint written to "+image)
				second := emuckpt(t, "restore", image)
				assert.Equal(t, want.stdout, first.stdout+second.stdout, "k=%d", k)
				assert.Equal(t, want.status, second.status, "k=%d: %s", k, second.stderr)
				checked++
			}
			t.Logf("%d system calls, %d checkpoints restored", n, checked)
		})
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
