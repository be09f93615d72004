package kernel

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/emuckpt/emuckpt/guestmm"
	"github.com/emuckpt/emuckpt/internal/kvmtest"
	"github.com/emuckpt/emuckpt/testimages"
	"github.com/emuckpt/emuckpt/vmm"
	"github.com/stretchr/testify/require"
)

// rawExitLoop times n ring-3 `out` exits through vmm.VCPU.Run, the
// baseline of BenchmarkGetpidLoop.
func rawExitLoop(tb testing.TB, n int) time.Duration {
	m, err := vmm.New(vmm.Config{MemSize: 16 << 20})
	require.NoError(tb, err)
	defer m.Close()
	frames := guestmm.NewFrames(m.Mem(), vmm.RAMBase, m.MemSize())
	pt, err := guestmm.NewPageTables(m.Mem(), frames)
	require.NoError(tb, err)
	require.NoError(tb, vmm.MapKernel(pt))
	pa, err := frames.Alloc()
	require.NoError(tb, err)
	copy(m.Mem()[pa:], []byte{0xE6, vmm.SyscallPort, 0xEB, 0xFC}) // out; jmp back
	require.NoError(tb, pt.Map(0x400000, pa, guestmm.Present|guestmm.User))
	c, err := m.NewVCPU()
	require.NoError(tb, err)
	require.NoError(tb, c.Start(vmm.Regs{RIP: 0x400000}, pt.Root(), 0))
	start := time.Now()
	for range n {
		ex, err := c.Run()
		require.NoError(tb, err)
		require.Equal(tb, vmm.ExitPortIO, ex.Kind)
		c.Regs().RIP = 0x400000
	}
	return time.Since(start)
}

// BenchmarkGetpidLoop is the figure "a syscall round trip (a getpid loop
// in a guest)": testimages/bin/getpid_loop through the whole kernel, as a
// ratio of a raw ring-3 exit measured in the same run.
func BenchmarkGetpidLoop(b *testing.B) {
	kvmtest.Require(b)
	const n = 20000
	var raw, getpid time.Duration
	for b.Loop() {
		raw += rawExitLoop(b, n)
		start := time.Now()
		st := runImage(b, "getpid_loop", "20000")
		getpid += time.Since(start)
		require.Equal(b, 0, st.ShellStatus())
	}
	per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(b.N*n) / 1e3 }
	b.ReportMetric(per(raw), "raw-µs/exit")
	b.ReportMetric(per(getpid), "getpid-µs/call")
	b.ReportMetric(per(getpid)/per(raw), "getpid/raw")
}

// runImageOutput runs a test image with 256 MiB of guest RAM on one vCPU
// and returns what it wrote to stdout.
func runImageOutput(tb testing.TB, name string, args ...string) string {
	tb.Helper()
	return runImageOutputCPUs(tb, 1, name, args...)
}

// runImageOutputCPUs is runImageOutput on cpus vCPUs.
func runImageOutputCPUs(tb testing.TB, cpus int, name string, args ...string) string {
	tb.Helper()
	prog, err := testimages.FS.ReadFile("bin/" + name)
	require.NoError(tb, err)
	out, err := os.CreateTemp(tb.TempDir(), "stdout")
	require.NoError(tb, err)
	defer out.Close()
	k, err := New(Config{Program: prog, Name: name, Args: append([]string{name}, args...),
		Stdout: out, MemSize: 256 << 20, CPUs: cpus})
	require.NoError(tb, err)
	defer k.Close()
	st, err := k.Run(context.Background())
	require.NoError(tb, err)
	b, err := os.ReadFile(out.Name())
	require.NoError(tb, err)
	require.Equal(tb, 0, st.ShellStatus(), "%s %v: %s", name, args, b)
	return string(b)
}

// outputField is the integer after "key=" in a taskbench output.
func outputField(tb testing.TB, out, key string) float64 {
	tb.Helper()
	m := regexp.MustCompile(`\b` + key + `=(\d+)`).FindStringSubmatch(out)
	require.NotNil(tb, m, "no %s in %q", key, out)
	v, err := strconv.ParseFloat(m[1], 64)
	require.NoError(tb, err)
	return v
}

// BenchmarkTaskOps is the figures of the multi-task kernel, each as a
// ratio of a raw ring-3 exit measured in the same run (interleaved
// rounds, so that a shared machine's noise cancels out): fork + exit +
// wait4 of a process with 64 MiB touched, pthread create + join, and a
// futex ping-pong round trip between two threads (on the one vCPU: every
// hand-over is a task switch). The times are testimages/bin/taskbench's
// own CLOCK_MONOTONIC measurements. fork-copied-KiB is the growth of the
// peak of guest RAM in use across the forks: copy on write keeps it to
// page tables, far below the 64 MiB a copy would take (the benchmark
// fails above 8 MiB).
func BenchmarkTaskOps(b *testing.B) {
	kvmtest.Require(b)
	const rawN = 2000
	var raw time.Duration
	var fork, thread, futex, copied float64
	rounds := 0
	for b.Loop() {
		raw += rawExitLoop(b, rawN)
		out := runImageOutput(b, "taskbench", "fork", "50", "64")
		fork += outputField(b, out, "ns_per_op")
		grew := outputField(b, out, "peak_kb_after") - outputField(b, out, "peak_kb_before")
		require.Less(b, grew, float64(8<<10), "the forks allocated %v KiB: memory was copied", grew)
		copied += grew
		thread += outputField(b, runImageOutput(b, "taskbench", "thread", "500"), "ns_per_op")
		futex += outputField(b, runImageOutput(b, "taskbench", "futex", "1000"), "ns_per_op")
		rounds++
	}
	n := float64(rounds)
	rawUS := float64(raw.Nanoseconds()) / float64(rounds*rawN) / 1e3
	b.ReportMetric(rawUS, "raw-µs/exit")
	for _, m := range []struct {
		name string
		ns   float64
	}{{"fork", fork}, {"thread", thread}, {"futex", futex}} {
		us := m.ns / n / 1e3
		b.ReportMetric(us, m.name+"-µs/op")
		b.ReportMetric(us/rawUS, m.name+"/raw")
	}
	b.ReportMetric(copied/n, "fork-copied-KiB")
}

// BenchmarkSMP is the figures of several vCPUs, each measured in the same
// run as its baseline:
//   - cpu2/cpu1: the wall time of a CPU-bound program whose work is split
//     between 2 threads on 2 vCPUs, as a ratio of the same work on 1
//     thread (taskbench cpu); native2/native1 is the same ratio for the
//     program run natively on the host, which tells what the machine
//     allows at the time (2 cores, shared);
//   - futex2/raw: a futex ping-pong round trip between two threads on two
//     vCPUs, and thread2/raw a pthread create + join there, as ratios of a
//     raw ring-3 exit.
func BenchmarkSMP(b *testing.B) {
	kvmtest.Require(b)
	const rawN, steps = 2000, "300"
	var raw time.Duration
	var cpu1, cpu2, nat1, nat2, futex, thread float64
	rounds := 0
	for b.Loop() {
		raw += rawExitLoop(b, rawN)
		cpu1 += outputField(b, runImageOutputCPUs(b, 2, "taskbench", "cpu", steps, "1"), "ns_per_op")
		cpu2 += outputField(b, runImageOutputCPUs(b, 2, "taskbench", "cpu", steps, "2"), "ns_per_op")
		nat1 += outputField(b, nativeOutput(b, "taskbench", "cpu", steps, "1"), "ns_per_op")
		nat2 += outputField(b, nativeOutput(b, "taskbench", "cpu", steps, "2"), "ns_per_op")
		futex += outputField(b, runImageOutputCPUs(b, 2, "taskbench", "futex", "1000"), "ns_per_op")
		thread += outputField(b, runImageOutputCPUs(b, 2, "taskbench", "thread", "500"), "ns_per_op")
		rounds++
	}
	n := float64(rounds)
	rawUS := float64(raw.Nanoseconds()) / float64(rounds*rawN) / 1e3
	b.ReportMetric(rawUS, "raw-µs/exit")
	b.ReportMetric(cpu2/cpu1, "cpu2/cpu1")
	b.ReportMetric(nat2/nat1, "native2/native1")
	b.ReportMetric(futex/n/1e3, "futex2-µs/op")
	b.ReportMetric(futex/n/1e3/rawUS, "futex2/raw")
	b.ReportMetric(thread/n/1e3, "thread2-µs/op")
	b.ReportMetric(thread/n/1e3/rawUS, "thread2/raw")
}

// nativeOutput runs a test image on the host and returns its stdout.
func nativeOutput(tb testing.TB, name string, args ...string) string {
	tb.Helper()
	prog, err := testimages.FS.ReadFile("bin/" + name)
	require.NoError(tb, err)
	path := filepath.Join(tb.TempDir(), name)
	require.NoError(tb, os.WriteFile(path, prog, 0o755))
	out, err := exec.Command(path, args...).Output()
	require.NoError(tb, err)
	return string(out)
}

// TestSeveralCPUs runs multi-task programs on two vCPUs through the
// kernel directly (go test -race watches the big kernel lock here).
func TestSeveralCPUs(t *testing.T) {
	kvmtest.Require(t)
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"smpstress", []string{"100"}, "rounds=100 faults=100 stale=0\nok\n"},
		{"threads", nil, "counter=8000 sum=600\n"},
		{"procs", nil, "done\n"},
		{"cpus", nil, "cpus=2\nok\n"},
		{"taskbench", []string{"futex", "300"}, "ns_per_op="},
	} {
		out := runImageOutputCPUs(t, 2, c.name, c.args...)
		require.Contains(t, out, c.want, c.name)
	}
}

// BenchmarkFirstTouch is the figure "first touch of fresh anonymous
// memory, per page, against native": testimages/bin/firsttouch (64 MiB)
// in the VM, with 2 MiB pages (the default) and with MADV_NOHUGEPAGE (4
// KiB pages, 64 KiB fault-around), and natively as a host process, in
// interleaved rounds. The times are the program's own CLOCK_MONOTONIC
// measurements; fault2m is one demand fault in a fresh 2 MiB region (the
// program touches one byte per region), which maps the whole region in
// the VM with 2 MiB pages.
func BenchmarkFirstTouch(b *testing.B) {
	kvmtest.Require(b)
	const mib = "64"
	var vm, vm4k, native, vmFault, vm4kFault, nativeFault float64
	rounds := 0
	for b.Loop() {
		out := runImageOutput(b, "firsttouch", mib)
		vm += outputField(b, out, "ns_per_page")
		vmFault += outputField(b, out, "fault2m_ns")
		out = runImageOutput(b, "firsttouch", mib, "nohuge")
		vm4k += outputField(b, out, "ns_per_page")
		vm4kFault += outputField(b, out, "fault2m_ns")
		host, err := exec.Command(testimages.Path("firsttouch"), mib).Output()
		require.NoError(b, err)
		native += outputField(b, string(host), "ns_per_page")
		nativeFault += outputField(b, string(host), "fault2m_ns")
		rounds++
	}
	us := func(ns float64) float64 { return ns / float64(rounds) / 1e3 }
	b.ReportMetric(us(vm), "vm-µs/page")
	b.ReportMetric(us(vm4k), "vm-4k-µs/page")
	b.ReportMetric(us(native), "native-µs/page")
	b.ReportMetric(vm/native, "vm/native")
	b.ReportMetric(vm4k/native, "vm-4k/native")
	b.ReportMetric(us(vmFault), "vm-fault2m-µs")
	b.ReportMetric(us(vm4kFault), "vm-4k-fault2m-µs")
	b.ReportMetric(us(nativeFault), "native-fault2m-µs")
}

// BenchmarkFileReadFault is the figure "a file read fault with
// fault-around": testimages/bin/filetouch reads one byte of every page of
// a private mapping of an 8 MiB file of the root, in the VM with the
// default 64 KiB fault-around, in the VM with fault-around off (a fault
// per page), and natively (the file in the host's page cache), in
// interleaved rounds.
func BenchmarkFileReadFault(b *testing.B) {
	kvmtest.Require(b)
	root := b.TempDir()
	data := make([]byte, 8<<20)
	for i := range data {
		data[i] = byte(i * 31)
	}
	require.NoError(b, os.WriteFile(filepath.Join(root, "data"), data, 0o644))
	prog, err := testimages.FS.ReadFile("bin/filetouch")
	require.NoError(b, err)
	run := func(faultAround uint64) float64 {
		saved := addressLayout
		defer func() { addressLayout = saved }()
		addressLayout.FaultAround = faultAround
		out, err := os.CreateTemp(b.TempDir(), "stdout")
		require.NoError(b, err)
		defer out.Close()
		k, err := New(Config{Program: prog, Name: "filetouch", Args: []string{"filetouch", "/data"},
			Stdout: out, MemSize: 64 << 20, Root: root})
		require.NoError(b, err)
		defer k.Close()
		st, err := k.Run(context.Background())
		require.NoError(b, err)
		text, err := os.ReadFile(out.Name())
		require.NoError(b, err)
		require.Equal(b, 0, st.ShellStatus(), "%s", text)
		return outputField(b, string(text), "ns_per_page")
	}
	var around, single, native float64
	rounds := 0
	for b.Loop() {
		around += run(addressLayout.FaultAround)
		single += run(1)
		host, err := exec.Command(testimages.Path("filetouch"), filepath.Join(root, "data")).Output()
		require.NoError(b, err)
		native += outputField(b, string(host), "ns_per_page")
		rounds++
	}
	us := func(ns float64) float64 { return ns / float64(rounds) / 1e3 }
	b.ReportMetric(us(around), "vm-µs/page")
	b.ReportMetric(us(single), "vm-no-around-µs/page")
	b.ReportMetric(us(native), "native-µs/page")
	b.ReportMetric(around/native, "vm/native")
	b.ReportMetric(single/around, "no-around/around")
}
