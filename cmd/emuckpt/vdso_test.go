package main

import (
	"regexp"
	"testing"

	"github.com/emuckpt/emuckpt/internal/kvmtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// clockCalls matches the trace lines of the system calls that read the
// clock.
var clockCalls = regexp.MustCompile(`(?m)^emuckpt: trace: (\[pid \d+\] )?(clock_gettime|gettimeofday|time)\(`)

// TestRealProgramsUseVDSO: a Go program and glibc's busybox `date` read
// the clock through the vDSO, so outside --deterministic they make no
// clock system call; under --deterministic (no vDSO) they do.
func TestRealProgramsUseVDSO(t *testing.T) {
	kvmtest.Require(t)
	t.Run("go", func(t *testing.T) {
		prog := buildGoProgram(t)
		want := native(t, prog)
		host := emuckpt(t, "run", "--trace", prog)
		assert.Equal(t, want.stdout, host.stdout)
		assert.Empty(t, clockCalls.FindAllString(host.stderr, -1))
		det := emuckpt(t, "run", "--trace", "--deterministic", prog)
		assert.Equal(t, want.stdout, det.stdout)
		assert.NotEmpty(t, clockCalls.FindAllString(det.stderr, -1))
	})
	t.Run("busybox date", func(t *testing.T) {
		root := realRoot(t)
		host := runReal(t, root, true, []string{"--trace"}, "busybox", "date", "+%Y")
		require.Equal(t, 0, host.status, host.stderr)
		assert.Regexp(t, `^20\d\d\n$`, host.stdout)
		assert.Empty(t, clockCalls.FindAllString(host.stderr, -1))
		det := runReal(t, root, true, []string{"--trace", "--deterministic"}, "busybox", "date", "+%Y")
		require.Equal(t, 0, det.status, det.stderr)
		assert.Equal(t, "2000\n", det.stdout)
		assert.NotEmpty(t, clockCalls.FindAllString(det.stderr, -1))
	})
}
