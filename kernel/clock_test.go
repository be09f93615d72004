package kernel

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/emuckpt/emuckpt/internal/kvmtest"
	"github.com/emuckpt/emuckpt/testimages"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestOffsetClock(t *testing.T) {
	c := offsetClock{Clock: HostClock{}, off: int64(time.Hour)}
	for _, id := range []int32{unix.CLOCK_REALTIME, unix.CLOCK_MONOTONIC, unix.CLOCK_BOOTTIME} {
		host, _ := HostClock{}.Now(id)
		got, ok := c.Now(id)
		require.True(t, ok)
		assert.InDelta(t, float64(host+int64(time.Hour)), float64(got), float64(time.Second), "clock %d", id)
	}
	host, _ := HostClock{}.Now(unix.CLOCK_PROCESS_CPUTIME_ID)
	got, _ := c.Now(unix.CLOCK_PROCESS_CPUTIME_ID)
	assert.InDelta(t, float64(host), float64(got), float64(time.Second), "CPU time does not jump")
}

// TestAdvanceClock: the virtual clock's realtime and monotonic move on
// together.
func TestAdvanceClock(t *testing.T) {
	kvmtest.Require(t)
	prog, err := testimages.FS.ReadFile("bin/dettime")
	require.NoError(t, err)
	out := tempFile(t)
	k, err := New(Config{Program: prog, Name: "dettime", Args: []string{"dettime"}, Stdout: out, Stderr: out,
		Log: io.Discard, MemSize: 64 << 20, Deterministic: true})
	require.NoError(t, err)
	defer k.Close()
	k.AdvanceClock(time.Hour)
	st, err := k.Run(context.Background())
	require.NoError(t, err)
	assert.Equal(t, 0, st.ShellStatus())
	b, err := readAllFrom(out)
	require.NoError(t, err)
	assert.Contains(t, b, "monotonic: 3600.0000")
	assert.Contains(t, b, "realtime: 946688400.0000")
	assert.True(t, strings.HasSuffix(b, "ok\n"), b)
}

func readAllFrom(f interface {
	io.Seeker
	io.Reader
}) (string, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	b, err := io.ReadAll(f)
	return string(b), err
}
