package ckpt

import (
	"context"
	"os"
	"testing"

	"github.com/emuckpt/emuckpt/internal/kvmtest"
	"github.com/emuckpt/emuckpt/kernel"
	"github.com/emuckpt/emuckpt/testimages"
	"github.com/stretchr/testify/require"
)

// TestInMemoryDeltas writes the two checkpoints of dirtypct as in-memory
// images, the second a delta against the first, and also as full ones:
// the delta read through its parent is the full image, and it is refused
// without its parent or with another.
func TestInMemoryDeltas(t *testing.T) {
	kvmtest.Require(t)
	prog, err := testimages.FS.ReadFile("bin/dirtypct")
	require.NoError(t, err)
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	require.NoError(t, err)
	defer null.Close()
	var deltas, fulls [][]byte
	var last *Image
	cfg := kernel.Config{
		Program: prog, Name: "dirtypct", Path: testimages.Path("dirtypct"),
		Args: []string{"dirtypct", "4", "50"}, Stdout: null, Stderr: null,
	}
	cfg.Checkpoint.LeaveRunning, cfg.Checkpoint.Incremental = true, true
	cfg.Checkpoint.Save = func(s *kernel.Snapshot) error {
		b, err := WriteBufferDelta(s, last, 4)
		if err != nil {
			return err
		}
		if last, err = ParseDelta(b, last); err != nil {
			return err
		}
		full, err := WriteBuffer(s)
		deltas, fulls = append(deltas, b), append(fulls, full)
		return err
	}
	k, err := kernel.New(cfg)
	require.NoError(t, err)
	st, err := k.Run(context.Background())
	k.Close()
	require.NoError(t, err)
	require.Equal(t, 0, st.ShellStatus())
	require.Len(t, deltas, 2)
	require.Equal(t, fulls[0], deltas[0], "the first image is full")
	require.Less(t, len(deltas[1])*4, len(fulls[1]), "the second a delta")

	first, err := Parse(fulls[0])
	require.NoError(t, err)
	delta, err := ParseDelta(deltas[1], first)
	require.NoError(t, err)
	full, err := Parse(fulls[1])
	require.NoError(t, err)
	require.Equal(t, full.State, delta.State)
	a := make([]byte, full.State.PageCount*4096)
	b := make([]byte, full.State.PageCount*4096)
	require.NoError(t, full.ReadPages(a, 0))
	require.NoError(t, delta.ReadPages(b, 0))
	require.Equal(t, a, b)
	flat, err := delta.Bytes()
	require.NoError(t, err)
	require.Equal(t, fulls[1], flat, "flattened, the delta is the full image")

	_, err = Parse(deltas[1])
	require.ErrorIs(t, err, ErrImage)
	_, err = ParseDelta(deltas[1], nil)
	require.ErrorContains(t, err, "no parent was given")
	_, err = ParseDelta(deltas[1], full)
	require.ErrorContains(t, err, "is not the image this one was written against")
}
