package kernel

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"golang.org/x/sys/unix"
)

// TestClockNanosleepClocks: clock_nanosleep refuses the clocks Linux
// cannot sleep on, before looking at its other arguments (Linux's
// timers/nanosleep selftest skips them on that answer).
func TestClockNanosleepClocks(t *testing.T) {
	for _, c := range []struct {
		clock uint64
		errno unix.Errno
	}{
		{unix.CLOCK_MONOTONIC_RAW, unix.EOPNOTSUPP},
		{unix.CLOCK_REALTIME_COARSE, unix.EOPNOTSUPP},
		{unix.CLOCK_MONOTONIC_COARSE, unix.EOPNOTSUPP},
		{unix.CLOCK_THREAD_CPUTIME_ID, unix.EINVAL},
		{99, unix.EINVAL},
		{unix.CLOCK_MONOTONIC, unix.EFAULT}, // then the bad request pointer
	} {
		k, task := newTestTask(t, false)
		_, errno := call(k, task, (*Kernel).sysClockNanosleep, c.clock, 0, 8, 0)
		assert.Equal(t, c.errno, errno, "clock %d", c.clock)
	}
}
