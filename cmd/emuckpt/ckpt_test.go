package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/emuckpt/emuckpt/devices/bsr"
	"github.com/emuckpt/emuckpt/devices/hpet"
	"github.com/emuckpt/emuckpt/internal/kvmtest"
	"github.com/emuckpt/emuckpt/kernel"
	"github.com/emuckpt/emuckpt/verify"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// countSyscalls runs a program with --trace and counts its system calls.
func countSyscalls(t *testing.T, args ...string) int {
	r := emuckpt(t, append([]string{"run", "--trace"}, args...)...)
	return strings.Count(r.stderr, "emuckpt: trace: ")
}

// TestCheckpointEverywhere is the sampled restart sweep: verify (the
// package behind `emuckpt verify`) checkpoints each program at a few
// points spread over its run, restores each image under both
// device-state policies and requires the output before the point plus
// the output of the restored run, and the exit status, to equal an
// uninterrupted run's. `.ci/run` runs the exhaustive sweep (every point
// up to 200) with `emuckpt verify`; EMUCKPT_SWEEP_POINTS sets the number
// of points here (default 6; 2 for malloc, each of whose restores makes
// thousands of system calls).
func TestCheckpointEverywhere(t *testing.T) {
	kvmtest.Require(t)
	points, fixed := 6, false
	if s := os.Getenv("EMUCKPT_SWEEP_POINTS"); s != "" {
		n, err := strconv.Atoi(s)
		require.NoError(t, err, "EMUCKPT_SWEEP_POINTS")
		points, fixed = n, true
	}
	root := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(root, "f.txt"), []byte("inside the root\n"), 0o644))
	for _, c := range []struct {
		root string
		args []string
	}{
		{"", []string{"hello"}}, {"", []string{"args", "a", "b c"}}, {"", []string{"malloc"}},
		{"", []string{"mmap"}}, {"", []string{"efault"}}, {"", []string{"sigs"}},
		{"", []string{"cpubound", "2"}}, {"", []string{"exitcode", "3"}}, {"", []string{"fdops"}},
		{"", []string{"sighandler"}}, {root, []string{"readfile", "/f.txt"}},
		{"", []string{"restart_bug", "fixed"}}, {"", []string{"bsr_barrier"}},
		{"", []string{"dettime"}}, {"", []string{"rdtsc"}}, {"", []string{"treeckpt"}},
		{"", []string{"procs"}}, {"", []string{"threads"}}, {"", []string{"pollfd"}},
	} {
		t.Run(c.args[0], func(t *testing.T) {
			prog, err := os.ReadFile(img(c.args[0]))
			require.NoError(t, err)
			cfg := verify.Config{Points: points, Kernel: kernel.Config{
				Program: prog, Name: c.args[0], Path: img(c.args[0]), Args: c.args, Env: defaultEnv, Root: c.root,
				Devices: deviceFactories(hpet.DefaultConfig(), bsr.DefaultSpecs()),
			}}
			if c.args[0] == "malloc" && !fixed {
				cfg.Points = 2
			}
			if c.args[0] == "bsr_barrier" {
				// Its participants' bytes live in the BSR only: under
				// fresh they are lost, by design (docs/VERIFY.md).
				cfg.Policies = []string{verify.Preserve}
			}
			rep, err := verify.Run(context.Background(), cfg)
			require.NoError(t, err)
			require.NotEmpty(t, rep.Results)
			for _, r := range rep.Results {
				assert.Equal(t, verify.Pass, r.Outcome, "%s %s: %s\n%s", r.Point, r.Policy, r.Message, r.Diff)
			}
			ev := rep.Reference.Events
			t.Logf("%d system calls, %d device accesses: %d points, %d restores", ev.Syscalls, ev.Devices, len(rep.Selected), len(rep.Results))
		})
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestDemo(t *testing.T) {
	kvmtest.Require(t)
	r := emuckpt(t, "demo")
	require.Equal(t, 0, r.status, r.stderr)
	for _, want := range []string{
		"DEVICE(bsr)         0 bytes  /dev/bsr8_0",
		"DEVICE(hpet)        0 bytes  /dev/hpet",
		"SCRATCH             0 bytes",
		"--device-state=fresh:\n   | side: restored (emuckpt_checkpoint returned 2)",
	} {
		assert.Contains(t, r.stdout, want)
	}
	fresh, preserve, ok := strings.Cut(r.stdout[strings.Index(r.stdout, "--device-state=fresh"):], "--device-state=preserve")
	require.True(t, ok)
	assert.Contains(t, fresh, "| bsr: 0000000000000000")
	assert.Contains(t, fresh, "| hpet_counter: started-over")
	assert.Contains(t, preserve, "| bsr: 0000000101010101")
	assert.Contains(t, preserve, "| hpet_counter: continued")
	for _, part := range []string{fresh, preserve} {
		assert.Contains(t, part, "| anon: intact")
		assert.Contains(t, part, "| scratch: zero")
		assert.Contains(t, part, "| mappings: hpet=0x7ffff7ffc000 bsr=0x7ffff7ffb000")
	}
}

// TestSelfCheckpoint covers emuckpt_checkpoint()'s three results and
// --leave-running.
func TestSelfCheckpoint(t *testing.T) {
	kvmtest.Require(t)
	image := filepath.Join(t.TempDir(), "self.img")
	r := emuckpt(t, "run", img("devckpt"))
	assert.Equal(t, 0, r.status, r.stderr)
	assert.Contains(t, r.stdout, "side: native (emuckpt_checkpoint returned -89)", "EDESTADDRREQ without --checkpoint-to")

	r = emuckpt(t, "run", "--checkpoint-to", image, "--leave-running", img("devckpt"))
	assert.Equal(t, 0, r.status, r.stderr)
	assert.Contains(t, r.stdout, "side: after-checkpoint (emuckpt_checkpoint returned 1)")
	assert.Contains(t, r.stdout, "scratch: kept", "the running process keeps its scratch memory")

	for i := 0; i < 2; i++ {
		r = emuckpt(t, "restore", image)
		assert.Equal(t, 0, r.status, r.stderr)
		assert.Contains(t, r.stdout, "side: restored (emuckpt_checkpoint returned 2)", "restore %d", i)
	}
}

func TestCheckpointTriggers(t *testing.T) {
	kvmtest.Require(t)
	dir := t.TempDir()
	// device:N stops after the Nth device access: bsr_barrier's output
	// then continues after restore.
	want := emuckpt(t, "run", img("bsr_barrier"))
	require.Equal(t, 0, want.status)
	for _, n := range []string{"1", "5", "9"} {
		image := filepath.Join(dir, "dev"+n+".img")
		first := emuckpt(t, "run", "--checkpoint-to", image, "--checkpoint-at", "device:"+n, img("bsr_barrier"))
		require.Equal(t, 0, first.status, first.stderr)
		second := emuckpt(t, "restore", "--device-state=preserve", image)
		assert.Equal(t, 0, second.status, second.stderr)
		assert.Equal(t, want.stdout, first.stdout+second.stdout, "device:%s", n)
	}
	// time:DUR interrupts a program that makes no system calls. A request
	// that comes before the guest runs waits for its first exit, so this
	// holds on a machine of any speed.
	image := filepath.Join(dir, "time.img")
	first := emuckpt(t, "run", "--checkpoint-to", image, "--checkpoint-at", "time:100ms", img("spin"))
	require.Equal(t, 0, first.status, first.stderr)
	assert.Contains(t, first.stderr, "checkpoint written to "+image)
	second := emuckpt(t, "restore", "--timeout", "200ms", image)
	assert.Equal(t, 124, second.status, "the restored program spins on")

	// A checkpoint while the guest waits in nanosleep: the call is
	// interrupted, the image written, and the call made again. SIGUSR1
	// goes out when the guest has printed "start"; should the sleep end
	// before the signal arrives (a slow machine), a longer one is tried.
	image = filepath.Join(dir, "sleep.img")
	for _, ms := range []string{"500", "5000", "50000"} {
		r := startEmuckpt(t, "run", "--timeout", "5m", "--checkpoint-to", image, img("sleeper"), ms)
		r.waitFor(t, &r.stdout, "start\n")
		r.signal(t, syscall.SIGUSR1)
		first = r.finish(t)
		require.Equal(t, 0, first.status, first.stderr)
		if first.stdout == "start\nend\n" {
			t.Logf("the %s ms sleep ended before SIGUSR1 arrived: trying a longer one", ms)
			continue
		}
		assert.Equal(t, "start\n", first.stdout)
		second = emuckpt(t, "restore", image)
		assert.Equal(t, 0, second.status, second.stderr)
		assert.Equal(t, "end\n", second.stdout)
		break
	}

	for _, bad := range []string{"syscall", "syscall:0", "device:x", "time:-1s", "when:3"} {
		r := emuckpt(t, "run", "--checkpoint-to", image, "--checkpoint-at", bad, img("hello"))
		assert.Equal(t, 125, r.status, bad)
		assert.Contains(t, r.stderr, "--checkpoint-at", bad)
	}
	r := emuckpt(t, "run", "--checkpoint-at", "syscall:1", img("hello"))
	assert.Equal(t, 125, r.status)
	assert.Contains(t, r.stderr, "needs --checkpoint-to")
}

// TestRestoreRefusesBadImages: truncated, corrupted (single bit flips),
// or not an image at all: status 125, a clear message, no panic.
func TestRestoreRefusesBadImages(t *testing.T) {
	kvmtest.Require(t)
	dir := t.TempDir()
	image := filepath.Join(dir, "good.img")
	r := emuckpt(t, "run", "--checkpoint-to", image, "--checkpoint-at", "syscall:3", img("hello"))
	require.Equal(t, 0, r.status, r.stderr)
	good, err := os.ReadFile(image)
	require.NoError(t, err)
	bad := filepath.Join(dir, "bad.img")
	cases := map[string][]byte{
		"empty":     nil,
		"truncated": good[:len(good)/2],
		"text":      []byte("this is not a checkpoint image\n"),
	}
	for _, off := range []int{0, 9, 20, 40, 4096 + 3, len(good) - 100} {
		b := append([]byte(nil), good...)
		b[off] ^= 0x10
		cases["flip@"+strconv.Itoa(off)] = b
	}
	for name, b := range cases {
		require.NoError(t, os.WriteFile(bad, b, 0o644))
		r := emuckpt(t, "restore", bad)
		assert.Equal(t, 125, r.status, "%s: %s", name, r.stderr)
		assert.Contains(t, r.stderr, "bad checkpoint image", name)
		assert.NotContains(t, r.stderr, "panic", name)
		r = emuckpt(t, "inspect", bad)
		assert.Equal(t, 125, r.status, name)
	}
}

func TestRestoreNeedsSameDevices(t *testing.T) {
	kvmtest.Require(t)
	image := filepath.Join(t.TempDir(), "dev.img")
	r := emuckpt(t, "run", "--checkpoint-to", image, img("devckpt"))
	require.Equal(t, 0, r.status, r.stderr)
	r = emuckpt(t, "restore", "--bsr", "16", image)
	assert.Equal(t, 125, r.status)
	assert.Contains(t, r.stderr, "/dev/bsr8_0")
	assert.Contains(t, r.stderr, "not available")
	r = emuckpt(t, "restore", "--bsr", "8:8:8192", image)
	assert.Equal(t, 125, r.status)
	assert.Contains(t, r.stderr, "bsr8_0 is --bsr 8:8:8192 here, the image was taken with --bsr 8:8:4096")
	r = emuckpt(t, "restore", "--hpet", "timers=4", image)
	assert.Equal(t, 125, r.status)
	assert.Contains(t, r.stderr, "the HPET is --hpet")
	r = emuckpt(t, "restore", "--bsr", "8", "--bsr", "16", image)
	assert.Equal(t, 0, r.status, "the same register, other registers added: %s", r.stderr)
}

func TestInspectJSON(t *testing.T) {
	kvmtest.Require(t)
	image := filepath.Join(t.TempDir(), "dev.img")
	r := emuckpt(t, "run", "--checkpoint-to", image, img("devckpt"))
	require.Equal(t, 0, r.status, r.stderr)
	r = emuckpt(t, "inspect", "--json", image)
	require.Equal(t, 0, r.status, r.stderr)
	var in inspection
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &in))
	require.Len(t, in.Tasks, 1)
	types := map[string]uint64{}
	for _, v := range in.Tasks[0].VMAs {
		types[v.Type+v.Device] += v.StoredBytes
	}
	assert.Equal(t, uint64(0), types["DEVICEhpet"])
	assert.Equal(t, uint64(0), types["DEVICEbsr"])
	assert.Equal(t, uint64(0), types["SCRATCH"])
	assert.Equal(t, uint64(64*4096), types["ANON"])
	assert.Equal(t, in.Totals.StoredBytes, in.Totals.StoredPages*4096)
	r = emuckpt(t, "inspect", image)
	assert.Contains(t, r.stdout, "DEVICE(hpet)")
}

// TestRestoreDetectsChangedFile: a private file mapping is restored from
// the file, so a file that changed since the checkpoint is refused.
func TestRestoreDetectsChangedFile(t *testing.T) {
	kvmtest.Require(t)
	root := t.TempDir()
	file := filepath.Join(root, "data.txt")
	require.NoError(t, os.WriteFile(file, []byte("first line\nsecond line\n"), 0o644))
	image := filepath.Join(t.TempDir(), "map.img")
	r := emuckpt(t, "run", "--root", root, "--checkpoint-to", image, img("mapfile"), "/data.txt")
	require.Equal(t, 0, r.status, r.stderr)
	assert.Equal(t, "before: first line\n", r.stdout)
	r = emuckpt(t, "restore", "--root", root, image)
	assert.Equal(t, 0, r.status, r.stderr)
	assert.Equal(t, "restored: *irst line\n", r.stdout, "the written page comes from the image")

	// A copy of the root (another machine, a backup restored): new inode,
	// mtime and ctime, the same bytes. The image still restores.
	copyRoot := t.TempDir()
	content, err := os.ReadFile(file)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(copyRoot, "data.txt"), content, 0o644))
	r = emuckpt(t, "restore", "--root", copyRoot, image)
	assert.Equal(t, 0, r.status, r.stderr)
	assert.Equal(t, "restored: *irst line\n", r.stdout)

	// Edited in place with the same size, mtime set back (cp -p,
	// rsync -t, touch -d): refused all the same.
	st, err := os.Stat(file)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(file, []byte("FIRST LINE\nsecond line\n"), 0o644))
	require.NoError(t, os.Chtimes(file, st.ModTime(), st.ModTime()))
	r = emuckpt(t, "restore", "--root", root, image)
	assert.Equal(t, 125, r.status)
	assert.Contains(t, r.stderr, "/data.txt has changed since the checkpoint")

	require.NoError(t, os.WriteFile(file, []byte("FIRST LINE\nsecond line, longer\n"), 0o644))
	r = emuckpt(t, "restore", "--root", root, image)
	assert.Equal(t, 125, r.status)
	assert.Contains(t, r.stderr, "/data.txt has changed since the checkpoint")
	r = emuckpt(t, "inspect", "--json", image)
	assert.Contains(t, r.stdout, "data.txt")
}

// TestHPETDescriptorAcrossRestore: under preserve a /dev/hpet descriptor
// re-attaches to its timer with its frequency and interrupts on; under
// fresh it is a new open of a fresh device, whose reads fail with EIO
// until the program sets the frequency again.
func TestHPETDescriptorAcrossRestore(t *testing.T) {
	kvmtest.Require(t)
	image := filepath.Join(t.TempDir(), "irq.img")
	first := emuckpt(t, "run", "--checkpoint-to", image, "--checkpoint-at", "syscall:14", img("hpet_irq"))
	require.Equal(t, 0, first.status, first.stderr)
	preserve := emuckpt(t, "restore", "--device-state=preserve", image)
	for i := 1; i <= 5; i++ {
		assert.Contains(t, preserve.stdout, "read "+strconv.Itoa(i)+": ret=8 count=", "preserve")
	}
	fresh := emuckpt(t, "restore", "--timeout", "5s", image)
	assert.Contains(t, fresh.stdout, "read 5: ret=-1 errno=EIO", "fresh")
}

// TestSIGUSR1Checkpoint: SIGUSR1 sent to emuckpt checkpoints the guest at
// its next exit, even one that makes no system calls.
func TestSIGUSR1Checkpoint(t *testing.T) {
	kvmtest.Require(t)
	image := filepath.Join(t.TempDir(), "usr1.img")
	// "spinning" comes when emuckpt has long been listening for SIGUSR1.
	// (--timeout only ends a run that the signal failed to stop.)
	r := startEmuckpt(t, "run", "--timeout", "5m", "--checkpoint-to", image, img("spin"))
	r.waitFor(t, &r.stdout, "spinning\n")
	r.signal(t, syscall.SIGUSR1)
	first := r.finish(t)
	require.Equal(t, 0, first.status, first.stderr)
	assert.Contains(t, first.stderr, "checkpoint written to "+image)
	second := emuckpt(t, "restore", "--timeout", "200ms", image)
	assert.Equal(t, 124, second.status, "the restored guest spins on: %s", second.stderr)
}

// TestHugePageCheckpointIsPageExact: memory mapped with 2 MiB pages is
// saved page by page: of four 2 MiB regions with one byte written each,
// the image stores the four 4 KiB pages written and counts the other
// 2044 as zero pages; the restored program finds its bytes and zeros.
func TestHugePageCheckpointIsPageExact(t *testing.T) {
	kvmtest.Require(t)
	image := filepath.Join(t.TempDir(), "huge.img")
	r := emuckpt(t, "run", "--checkpoint-to", image, img("hugeckpt"))
	require.Equal(t, 0, r.status, r.stderr)
	r = emuckpt(t, "inspect", "--json", image)
	require.Equal(t, 0, r.status, r.stderr)
	var in inspection
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &in))
	require.Len(t, in.Tasks, 1)
	var found bool
	for _, v := range in.Tasks[0].VMAs {
		if v.Type == "ANON" && v.End-v.Start == 8<<20 {
			found = true
			assert.Zero(t, v.Start%(2<<20), "2 MiB aligned")
			assert.Equal(t, uint64(4*4096), v.StoredBytes)
			assert.Equal(t, uint64(2044), v.ZeroPages)
		}
	}
	require.True(t, found, "the 8 MiB mapping: %s", r.stdout)
	r = emuckpt(t, "restore", image)
	assert.Equal(t, 0, r.status, r.stderr)
	assert.Equal(t, "hugeckpt: ok (checkpoint returned 2)\n", r.stdout)
}
