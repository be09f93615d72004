package kernel

import (
	"context"
	"encoding/binary"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emuckpt/emuckpt/guestmm"
	"github.com/emuckpt/emuckpt/internal/kvmtest"
	"github.com/emuckpt/emuckpt/kernel/vdso"
	"github.com/emuckpt/emuckpt/testimages"
	"github.com/emuckpt/emuckpt/vmm"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// runVDSO runs testimages/bin/vdso with args and returns its status and
// output, and the kernel (closed when the test ends).
func runVDSO(t *testing.T, cfg Config, args ...string) (ExitStatus, string, *Kernel) {
	t.Helper()
	prog, err := testimages.FS.ReadFile("bin/vdso")
	require.NoError(t, err)
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	cfg.Program, cfg.Name, cfg.Args, cfg.Stdout = prog, "vdso", append([]string{"vdso"}, args...), w
	if cfg.MemSize == 0 {
		cfg.MemSize = 64 << 20
	}
	k, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { k.Close() })
	st, err := k.Run(context.Background())
	require.NoError(t, err)
	w.Close()
	out, err := io.ReadAll(r)
	require.NoError(t, err)
	return st, string(out), k
}

// TestVDSOMapped: outside --deterministic the process has AT_SYSINFO_EHDR
// and the [vvar] and [vdso] VMAs at the top of the mmap area, read-only;
// under --deterministic it has neither.
func TestVDSOMapped(t *testing.T) {
	kvmtest.Require(t)
	st, out, k := runVDSO(t, Config{}, "maps")
	require.NoError(t, k.vdso.why)
	require.Equal(t, ExitStatus{}, st)
	assert.Equal(t, "AT_SYSINFO_EHDR set\n"+
		"7ffff7ffd000-7ffff7ffe000 r--p 00000000 00:00 0                          [vvar]\n"+
		"7ffff7ffe000-7ffff7fff000 r-xp 00000000 00:00 0                          [vdso]\n", out)

	st, out, _ = runVDSO(t, Config{Deterministic: true}, "maps")
	require.Equal(t, ExitStatus{}, st)
	assert.Equal(t, "AT_SYSINFO_EHDR absent\n", out)
}

// TestVDSOClocks interleaves the vDSO's clocks with the system call's in
// the guest: neither ever goes back against the other (the program
// checks), and gettimeofday, time, getres, getcpu and the fallbacks work.
func TestVDSOClocks(t *testing.T) {
	kvmtest.Require(t)
	st, out, _ := runVDSO(t, Config{}, "check", "300")
	require.Equal(t, ExitStatus{}, st, out)
	require.Regexp(t, `^ok maxgap \d+ ns\n$`, out)
	t.Log(strings.TrimSpace(out))
}

// TestVDSOFallback: with a vvar page that is not valid (a restore where
// the TSC clock could not start) every vDSO function makes the system
// call, and the clock check still holds.
func TestVDSOFallback(t *testing.T) {
	kvmtest.Require(t)
	prog, err := testimages.FS.ReadFile("bin/vdso")
	require.NoError(t, err)
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	k, err := New(Config{Program: prog, Name: "vdso", Args: []string{"vdso", "check", "50"}, Stdout: w, MemSize: 64 << 20})
	require.NoError(t, err)
	defer k.Close()
	require.NotNil(t, k.vdso.clock)
	k.clock, k.vdso.clock = k.vdso.clock.inner, nil
	clear(k.m.Mem()[k.vdso.vvarPA : k.vdso.vvarPA+guestmm.PageSize])
	calls := k.Syscalls()
	st, err := k.Run(context.Background())
	require.NoError(t, err)
	w.Close()
	out, err := io.ReadAll(r)
	require.NoError(t, err)
	require.Equal(t, ExitStatus{}, st, string(out))
	require.Regexp(t, `^ok maxgap \d+ ns\n$`, string(out))
	// 7 clocks, gettimeofday and time: each read is a system call now.
	assert.Greater(t, k.Syscalls()-calls, uint64(7*50*2+50*4))
}

// TestVDSOSpin reads the vDSO's clock for two seconds without a system
// call, across re-anchorings by the (idle) kernel: it never goes back.
func TestVDSOSpin(t *testing.T) {
	kvmtest.Require(t)
	st, out, _ := runVDSO(t, Config{}, "spin", "2")
	require.Equal(t, ExitStatus{}, st, out)
	require.True(t, strings.HasPrefix(out, "spun "), out)
}

// TestVDSOCheckpoint checkpoints the clock check half way and restores
// it: the restored program's clocks go on from where they were (the
// check compares with the reading before the checkpoint), the vDSO comes
// back from the image byte for byte (a byte changed in the image shows
// up), and the vvar is the restoring kernel's.
func TestVDSOCheckpoint(t *testing.T) {
	kvmtest.Require(t)
	prog, err := testimages.FS.ReadFile("bin/vdso")
	require.NoError(t, err)
	var snap *State
	var pages []byte
	cfg := Config{Checkpoint: CheckpointConfig{AtSyscall: 400, Save: func(s *Snapshot) error {
		snap = s.State
		for _, pa := range s.Pages {
			pages = append(pages, s.Mem[pa:pa+guestmm.PageSize]...)
		}
		return nil
	}}}
	st, out, _ := runVDSO(t, cfg, "check", "100")
	require.Equal(t, ExitStatus{Checkpointed: true}, st, out)
	require.NotNil(t, snap)

	var vdsoVA uint64
	var vvar, code *VMAState
	for i, v := range snap.Processes[0].VMAs {
		switch v.Type {
		case VMAVVar:
			vvar = &snap.Processes[0].VMAs[i]
		case VMAVDSO:
			code = &snap.Processes[0].VMAs[i]
			vdsoVA = v.Start
		}
	}
	require.NotNil(t, vvar)
	require.NotNil(t, code)
	assert.Equal(t, "[vvar]", vvar.Name)
	assert.Empty(t, vvar.Pages, "the vvar is not stored")
	require.Len(t, code.Pages, 1)
	stored := pages[code.Pages[0].Index*guestmm.PageSize:][:guestmm.PageSize]
	require.Equal(t, vdso.Image, stored[:len(vdso.Image)])
	// A later build's vDSO would differ; the restored process keeps its own.
	stored[guestmm.PageSize-1] = 0xAB

	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	k, err := Restore(Config{Program: prog, Stdout: w}, snap, PageBytes(pages))
	require.NoError(t, err)
	defer k.Close()
	var last [1]byte
	require.NoError(t, k.first.as.CopyIn(vdsoVA+guestmm.PageSize-1, last[:]))
	assert.Equal(t, byte(0xAB), last[0])
	st, err = k.Run(context.Background())
	require.NoError(t, err)
	w.Close()
	rest, err := io.ReadAll(r)
	require.NoError(t, err)
	require.Equal(t, ExitStatus{}, st, string(rest))
	require.Regexp(t, `ok maxgap \d+ ns\n$`, string(rest))
}

// TestVDSOImageValidation: an image's vvar VMA must be the read-only
// page the kernel maps; a writable one is refused.
func TestVDSOImageValidation(t *testing.T) {
	kvmtest.Require(t)
	good, _, _ := snapshotHello(t)
	var n int
	for i := range good.Processes[0].VMAs {
		v := &good.Processes[0].VMAs[i]
		if v.Type == VMAVVar {
			n++
			v.Prot = unix.PROT_READ | unix.PROT_WRITE
			v.MaxProt = v.Prot
		}
	}
	require.Equal(t, 1, n)
	require.ErrorContains(t, good.Validate(), "vvar")
}

// TestTSCClockFollowsHost runs the TSC clock over the host's with a rate
// 300 ppm off: re-anchoring slews it back, so that after a second it is
// within 20 µs of the host's CLOCK_MONOTONIC and it never went back, and
// the vvar holds what Now computes.
func TestTSCClockFollowsHost(t *testing.T) {
	if cs, err := os.ReadFile("/sys/devices/system/clocksource/clocksource0/current_clocksource"); err != nil || strings.TrimSpace(string(cs)) != "tsc" {
		t.Skip("the host's clock does not run on the TSC")
	}
	khz := measureTSCKHz(t)
	vvar := make([]byte, guestmm.PageSize)
	c := newTSCClock(HostClock{}, vvar, 0, uint64(float64(khz)*(1+300e-6)))
	var prev int64
	var worst time.Duration
	samples := 0
	deadline := time.Now().Add(2500 * time.Millisecond)
	start := time.Now()
	for time.Now().Before(deadline) {
		c.Tick()
		h0, _ := HostClock{}.Now(unix.CLOCK_MONOTONIC)
		now, ok := c.Now(unix.CLOCK_MONOTONIC)
		require.True(t, ok)
		h1, _ := HostClock{}.Now(unix.CLOCK_MONOTONIC)
		require.GreaterOrEqual(t, now, prev, "went back")
		prev = now
		// Samples where this thread lost the CPU in between say nothing.
		if time.Since(start) > 1500*time.Millisecond && h1-h0 < 20_000 {
			worst = max(worst, time.Duration(max(h0-now, now-h1, 0)))
			samples++
		}
		time.Sleep(time.Millisecond)
	}
	t.Logf("worst distance to the host clock after 1.5 s: %v over %d samples, %d re-anchorings", worst, samples, c.updates.Load())
	require.Greater(t, samples, 100)
	assert.Less(t, worst, 20*time.Microsecond)

	// The vvar's parameters are the clock's.
	p := c.p.Load()
	le := func(off int) uint64 { return binary.LittleEndian.Uint64(vvar[off:]) }
	assert.Equal(t, p.tscBase, le(vvarTSCBase))
	assert.Equal(t, p.mult, le(vvarMult))
	assert.Equal(t, uint64(p.monoBase), le(vvarMonoBase))
	assert.Equal(t, uint64(p.off[unix.CLOCK_REALTIME]), le(vvarOff+8*unix.CLOCK_REALTIME))
	assert.Equal(t, byte(vvarValid), vvar[vvarFlags])
	assert.Zero(t, vvar[vvarSeq]&1)
	_, ok := c.Now(unix.CLOCK_PROCESS_CPUTIME_ID)
	assert.True(t, ok, "CPU-time clocks are the inner clock's")
	_, ok = c.Now(12345)
	assert.False(t, ok)
}

// measureTSCKHz is the host TSC's rate against CLOCK_MONOTONIC over 200 ms.
func measureTSCKHz(t *testing.T) uint64 {
	t0, n0 := vmm.RDTSC(), time.Now()
	time.Sleep(200 * time.Millisecond)
	t1, n1 := vmm.RDTSC(), time.Now()
	return uint64(float64(t1-t0) / float64(n1.Sub(n0).Nanoseconds()) * 1e6)
}

// BenchmarkVDSOClock is clock_gettime(CLOCK_MONOTONIC) through the vDSO
// and through the system call, in a guest, as ratios to a raw exit
// measured in the same run.
func BenchmarkVDSOClock(b *testing.B) {
	kvmtest.Require(b)
	const n = 20000
	var raw, vd, sc time.Duration
	re := regexp.MustCompile(`^vdso (\d+) ns syscall (\d+) ns\n$`)
	for b.Loop() {
		raw += rawExitLoop(b, n)
		out := runImageOutput(b, "vdso", "bench", strconv.Itoa(n))
		m := re.FindStringSubmatch(out)
		require.NotNil(b, m, out)
		v, _ := strconv.ParseInt(m[1], 10, 64)
		s, _ := strconv.ParseInt(m[2], 10, 64)
		vd += time.Duration(v)
		sc += time.Duration(s)
	}
	per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(b.N*n) }
	b.ReportMetric(per(raw), "raw-ns/exit")
	b.ReportMetric(per(vd), "vdso-ns/call")
	b.ReportMetric(per(sc), "syscall-ns/call")
	b.ReportMetric(per(vd)/per(raw), "vdso/raw")
	b.ReportMetric(per(sc)/per(raw), "syscall/raw")
}
