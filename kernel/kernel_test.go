package kernel

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/emuckpt/emuckpt/internal/kvmtest"
	"github.com/emuckpt/emuckpt/testimages"
	"github.com/stretchr/testify/require"
)

// runImage runs a test image in a fresh kernel with stdout and stderr to
// /dev/null and returns its status.
func runImage(tb testing.TB, name string, args ...string) ExitStatus {
	tb.Helper()
	prog, err := testimages.FS.ReadFile("bin/" + name)
	require.NoError(tb, err)
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	require.NoError(tb, err)
	defer null.Close()
	k, err := New(Config{Program: prog, Name: name, Args: append([]string{name}, args...),
		Stdin: null, Stdout: null, Stderr: null, MemSize: 64 << 20})
	require.NoError(tb, err)
	defer k.Close()
	st, err := k.Run(context.Background())
	require.NoError(tb, err)
	return st
}

func TestRunHello(t *testing.T) {
	kvmtest.Require(t)
	require.Equal(t, ExitStatus{}, runImage(t, "hello"))
}

func TestLoadErrors(t *testing.T) {
	kvmtest.Require(t)
	for _, prog := range [][]byte{nil, []byte("#!/bin/sh\n"), []byte("\x7fELF garbage")} {
		_, err := New(Config{Program: prog, Name: "bad"})
		require.ErrorIs(t, err, ErrLoad)
	}
}

// BenchmarkHello is the figure "create VM, load hello, run it to exit".
func BenchmarkHello(b *testing.B) {
	kvmtest.Require(b)
	for b.Loop() {
		if st := runImage(b, "hello"); st.Code != 0 {
			b.Fatal(st)
		}
	}
}

// BenchmarkCPUBound runs the CPU-bound test image in the VM and natively,
// alternating, and reports the ratio.
func BenchmarkCPUBound(b *testing.B) {
	kvmtest.Require(b)
	var vm, host time.Duration
	for b.Loop() {
		start := time.Now()
		runImage(b, "cpubound")
		vm += time.Since(start)
		start = time.Now()
		require.NoError(b, exec.Command(testimages.Path("cpubound")).Run())
		host += time.Since(start)
	}
	b.ReportMetric(float64(vm.Milliseconds())/float64(b.N), "vm-ms/op")
	b.ReportMetric(float64(host.Milliseconds())/float64(b.N), "native-ms/op")
	b.ReportMetric(float64(vm)/float64(host), "vm/native")
}
