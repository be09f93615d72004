package ckpt

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/emuckpt/emuckpt/internal/kvmtest"
	"github.com/emuckpt/emuckpt/kernel"
	"github.com/emuckpt/emuckpt/testimages"
	"github.com/stretchr/testify/require"
)

var updateGolden = flag.Bool("update-golden", false, "rewrite testdata/*.img from the current code")

// goldenImages pin compatibility: images written by an earlier emuckpt
// must keep restoring. Each is a test program checkpointed after a few
// system calls; restoring it must finish the program's output.
var goldenImages = []struct {
	file, program string
	args          []string
	at            uint64
	rest          string
}{
	{"hello-v2.img", "hello", []string{"hello"}, 3, "hello, world\n"},
	{"args-v2.img", "args", []string{"args", "golden"}, 4, ""},
}

// TestOldImagesRefused: version 1 images (one process, from before process
// trees) are refused with a message that says what to do.
func TestOldImagesRefused(t *testing.T) {
	for _, name := range []string{"hello-v1.img", "args-v1.img"} {
		_, err := Open(filepath.Join("testdata", name))
		require.ErrorIs(t, err, ErrImage, name)
		require.ErrorContains(t, err, "format version 1 was written by an emuckpt from before process trees; this one restores version 2 and later: checkpoint the program again", name)
	}
}

func TestGoldenImages(t *testing.T) {
	kvmtest.Require(t)
	for _, g := range goldenImages {
		t.Run(g.file, func(t *testing.T) {
			path := filepath.Join("testdata", g.file)
			prog, err := testimages.FS.ReadFile("bin/" + g.program)
			require.NoError(t, err)
			if *updateGolden {
				writeGolden(t, path, prog, g.program, g.args, g.at)
			}
			img, err := Open(path)
			require.NoError(t, err, "a golden image no longer opens: the format changed incompatibly")
			defer img.Close()
			require.NoError(t, img.Verify())
			require.Equal(t, "testimages/bin/"+g.program, img.State.Program.Path)
			r, w, err := os.Pipe()
			require.NoError(t, err)
			k, err := img.Restore(kernel.Config{Program: prog, Stdout: w, Stderr: w})
			require.NoError(t, err, "a golden image no longer restores")
			defer k.Close()
			st, err := k.Run(context.Background())
			require.NoError(t, err)
			w.Close()
			out := make([]byte, 4096)
			n, _ := r.Read(out)
			require.Equal(t, 0, st.ShellStatus())
			if g.rest != "" {
				require.Equal(t, g.rest, string(out[:n]))
			} else {
				require.Contains(t, string(out[:n]), "argv[1]=golden\n")
			}
		})
	}
}

// writeGolden checkpoints a program after `at` system calls. The image
// records a repository-relative program path, never a path of the machine
// that wrote it.
func writeGolden(t *testing.T, path string, prog []byte, name string, args []string, at uint64) {
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	require.NoError(t, err)
	defer null.Close()
	cfg := kernel.Config{Program: prog, Name: name, Path: "testimages/bin/" + name, Args: args,
		Env: []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/"}, Stdout: null, Stderr: null, MemSize: 64 << 20}
	cfg.Checkpoint = kernel.CheckpointConfig{AtSyscall: at, Save: func(s *kernel.Snapshot) error { return Write(path, s) }}
	k, err := kernel.New(cfg)
	require.NoError(t, err)
	defer k.Close()
	st, err := k.Run(context.Background())
	require.NoError(t, err)
	require.True(t, st.Checkpointed)
}
