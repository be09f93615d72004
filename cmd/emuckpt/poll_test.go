package main

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/emuckpt/emuckpt/internal/kvmtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pollGenericOut is what pollfd prints without arguments, natively and in
// emuckpt (see testimages/src/pollfd.c).
const pollGenericOut = `poll_devnull: ret=1 revents=0x5
poll_devzero: ret=1 revents=0x5
poll_pipe_empty: ret=0 revents=0x0
poll_pipe_write_end: ret=1 revents=0x4
poll_pipe_data: ret=1 revents=0x1
poll_negative_fd: ret=1 revents=0x0
poll_bad_fd: ret=1 revents=0x20
poll_timeout: ret=0 waited=1
poll_hup: ret=1 revents=0x10
select_pipe: ret=2 r=1 w_in_read=0 w=1
select_timeout: ret=0 tv=0.000000
select_ebadf: ret=-1 errno=EBADF
select_einval: ret=-1 errno=EINVAL
ppoll_sigmask: ret=-1 errno=EINTR handled=1 still_blocked=1
ppoll_bad_sigsetsize: ret=-1 errno=EINVAL
ppoll_timespec: ret=0 ts=0.000000000
pselect_sigmask: ret=-1 errno=EINTR handled=1 still_blocked=1
fioasync: on=1 off=1
`

// pollHPETOut is what pollfd's /dev/hpet checks print.
const pollHPETOut = `hpet_poll_before_irqfreq: ret=0 revents=0x0
hpet_poll_ie_off: ret=0 revents=0x0
hpet_poll_wait: ret=1 revents=0x1
hpet_read: ret=8 count_ge_1=1
hpet_poll_after_read: ret=0 revents=0x0
hpet_setown: ret=0 getown_is_pid=1
hpet_setown_esrch: ret=-1 errno=ESRCH
hpet_setsig_einval: ret=-1 errno=EINVAL
hpet_setsig: ret=0 getsig=12
hpet_fasync_setsig: signo=12 code=1 fd_ok=1 band=0x41
hpet_fasync_sigio: signo=29 code=128
`

// TestPollFamily runs pollfd: poll, ppoll, select and pselect6 on
// /dev/null, /dev/zero and pipes (the same output as on Linux, which the
// native run checks), and poll and O_ASYNC signals of /dev/hpet, on the
// host clock and the virtual one. "spin" also needs the SIGIO to
// interrupt a loop without system calls: the vCPU kick; under the virtual
// clock such a loop sees no time pass, so it runs on the host clock only.
func TestPollFamily(t *testing.T) {
	kvmtest.Require(t)
	nat := native(t, img("pollfd"))
	require.Equal(t, 0, nat.status, "native: %s", nat.stdout)
	require.Equal(t, pollGenericOut+"ok\n", nat.stdout, "the reference run on Linux")
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"generic", []string{img("pollfd")}, pollGenericOut},
		{"generic deterministic", []string{"--deterministic", img("pollfd")}, pollGenericOut},
		{"hpet spin", []string{img("pollfd"), "hpet", "spin"}, pollGenericOut + strings.Replace(pollHPETOut, "hpet_fasync_sigio: signo=29 code=128\n",
			"hpet_fasync_sigio: signo=29 code=128\nhpet_sigio_while_spinning: handled=1\n", 1)},
		{"hpet deterministic", []string{"--deterministic", img("pollfd"), "hpet"}, pollGenericOut + pollHPETOut},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := emuckpt(t, append([]string{"run"}, tt.args...)...)
			requireOK(t, r, tt.want+tailFor(tt.name))
		})
	}
}

// tailFor is the end of pollfd's output: the /dev/hpet checks end with
// the ppoll that blocks SIGIO.
func tailFor(name string) string {
	if strings.HasPrefix(name, "hpet") {
		return "hpet_ppoll_blocks_sigio: ret=1 revents=0x1\nok\n"
	}
	return "ok\n"
}

// TestHPETExample runs Linux's Documentation/timers/hpet_example.c,
// unchanged, in its four modes, on both clocks. Its messages go to
// stderr; the measured times vary, so they are matched by pattern. The
// example is Linux's code (GPL-2.0) and is not committed here: set
// EMUCKPT_HPET_EXAMPLE_SRC to its path (Documentation/timers/ or, since
// Linux 5.x, samples/timers/ of a Linux source tree; .ci/run takes it from
// Debian's linux-source package) and the test builds it with musl-gcc
// against testimages/include/hpet_abi.h.
func TestHPETExample(t *testing.T) {
	kvmtest.Require(t)
	example := buildHPETExample(t)
	for _, clock := range []string{"host", "deterministic"} {
		for _, tt := range []struct {
			args []string
			want string // a regexp of the whole stderr
		}{
			{[]string{"open-close", "/dev/hpet"}, `-hpet: executing open-close\n`},
			// Older copies of the example leave info's body empty; 6.1 prints
			// the HPET_INFO fields.
			{[]string{"info", "/dev/hpet"}, `-hpet: executing info\n(hpet_info: hi_irqfreq 0x[0-9a-f]+ hi_flags 0x10 hi_hpet \d+ hi_timer \d+\n)?`},
			{[]string{"poll", "/dev/hpet", "32", "3"}, `-hpet: executing poll\nhpet_poll: info.hi_flags 0x10\n` +
				strings.Repeat(`hpet_poll: expired time = 0x[0-9a-f]+\nhpet_poll: revents = 0x1\nhpet_poll: data 0x1\n`, 3)},
			{[]string{"fasync", "/dev/hpet", "32", "3"}, `-hpet: executing fasync\nhpet_fasync: info.hi_flags 0x10\n` +
				`hpet_sigio: called\nhpet_fasync: count = 1\nhpet_sigio: called\nhpet_fasync: count = 2\nhpet_sigio: called\nhpet_fasync: count = 3\n`},
		} {
			t.Run(clock+" "+tt.args[0], func(t *testing.T) {
				args := []string{"run"}
				if clock == "deterministic" {
					args = append(args, "--deterministic")
				}
				r := emuckpt(t, append(append(args, example), tt.args...)...)
				assert.Equal(t, 0, r.status, r.stderr)
				assert.Empty(t, r.stdout)
				assert.Regexp(t, regexp.MustCompile(`\A`+tt.want+`\z`), r.stderr)
			})
		}
	}
}

// buildHPETExample compiles the example named by EMUCKPT_HPET_EXAMPLE_SRC
// (skipping the test, saying why, when it is not set), with a
// <linux/hpet.h> that is the project's own hpet_abi.h.
func buildHPETExample(t *testing.T) string {
	src := os.Getenv("EMUCKPT_HPET_EXAMPLE_SRC")
	if src == "" {
		t.Skip("skipping: set EMUCKPT_HPET_EXAMPLE_SRC to Linux's Documentation/timers/hpet_example.c to run it")
	}
	dir := t.TempDir()
	abi, err := filepath.Abs(filepath.Join("..", "..", "testimages", "include", "hpet_abi.h"))
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "linux"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "linux", "hpet.h"), []byte("#include \""+abi+"\"\n"), 0o644))
	bin := filepath.Join(dir, "hpet_example")
	out, err := exec.Command("musl-gcc", "-static", "-O2", "-w", "-I", dir, "-o", bin, src).CombinedOutput()
	require.NoError(t, err, "building %s: %s", src, out)
	return bin
}

// TestHPETFasyncCheckpoint: O_ASYNC on /dev/hpet survives a checkpoint.
// Under --device-state=preserve the interrupts, and with them the SIGIOs,
// go on with no further ioctl; under fresh the descriptor is a fresh open
// (no frequency, no interrupts, no SIGIO) whose owner and O_ASYNC flag,
// the kernel's, came back.
func TestHPETFasyncCheckpoint(t *testing.T) {
	kvmtest.Require(t)
	for _, clock := range [][]string{nil, {"--deterministic"}} {
		image := filepath.Join(t.TempDir(), "fasync.img")
		r := emuckpt(t, append(append([]string{"run"}, clock...), "--checkpoint-to", image, img("hpet_fasync_ckpt"))...)
		require.Equal(t, 0, r.status, r.stderr)
		require.Equal(t, "before: sigio=1\n", r.stdout)
		const head = "checkpoint: restored\nowner: getown_is_pid=1 async=1\n"
		for _, tt := range []struct{ state, want string }{
			{"preserve", head + "device: preserved freq=64\nafter: sigio+2\nok\n"},
			{"fresh", head + "device: fresh freq=0\nfresh: poll=0 no_sigio=1\nafter: sigio+2\nok\n"},
		} {
			t.Run(strings.Join(append(clock, tt.state), " "), func(t *testing.T) {
				r := emuckpt(t, "restore", "--device-state="+tt.state, image)
				requireOK(t, r, tt.want)
			})
		}
	}
}

// busybox is Debian's busybox-static, or the test is skipped.
func busybox(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("busybox is not installed (apt-get install busybox-static)")
	}
	out, err := exec.Command("file", "-L", p).Output()
	if err == nil && !strings.Contains(string(out), "statically linked") {
		t.Skipf("%s is not static (apt-get install busybox-static)", p)
	}
	return p
}

// TestBusyboxReadLine: busybox's read builtin polls its input before
// reading it (issue 9 found it printing "got=" without poll).
func TestBusyboxReadLine(t *testing.T) {
	kvmtest.Require(t)
	bb := busybox(t)
	in := filepath.Join(t.TempDir(), "in.txt")
	require.NoError(t, os.WriteFile(in, []byte("first line\nsecond\n"), 0o644))
	for _, args := range [][]string{nil, {"--deterministic"}} {
		cmd := exec.Command(os.Args[0], append(append([]string{"run"}, args...), bb, "sh", "-c", "read l; echo got=$l")...)
		cmd.Env = append(os.Environ(), "EMUCKPT_E2E_MAIN=1")
		f, err := os.Open(in)
		require.NoError(t, err)
		cmd.Stdin = f
		r := runCmd(t, cmd)
		f.Close()
		requireOK(t, r, "got=first line\n")
	}
}

// TestPollRestartsAfterCheckpoint: a checkpoint request (SIGUSR1) that
// interrupts a poll waiting on standard input makes the poll again after
// the checkpoint; the guest sees nothing of it.
func TestPollRestartsAfterCheckpoint(t *testing.T) {
	kvmtest.Require(t)
	bb := busybox(t)
	image := filepath.Join(t.TempDir(), "read.img")
	c := startEmuckpt(t, "run", "--checkpoint-to", image, "--leave-running", bb, "sh", "-c", "echo ready; read l; echo got=$l")
	c.waitFor(t, &c.stdout, "ready\n")
	c.signal(t, syscall.SIGUSR1)
	c.waitFor(t, &c.stderr, "checkpoint written")
	_, err := io.WriteString(c.stdin, "after the checkpoint\n")
	require.NoError(t, err)
	r := c.finish(t)
	assert.Equal(t, 0, r.status, r.stderr)
	assert.Equal(t, "ready\ngot=after the checkpoint\n", r.stdout)
	_, err = os.Stat(image)
	assert.NoError(t, err)
}
