package main

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/emuckpt/emuckpt/internal/kvmtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// End-to-end tests of the HPET and BSR devices (docs/DEVICES.md): the CLI
// runs the device test programs of testimages/ and the tests check what
// they print, their exit status and emuckpt's reports.

// The programs' output with the default devices (docs/DEVICES.md).
const (
	hpetMmapOut = `hpet_gcap: 0x0429b17f8086a201
hpet_rev: 1
hpet_vendor: 0x8086
hpet_timers: 3
hpet_counter_64bit: 1
hpet_legacy_route: 1
hpet_period_fs: 69841279
hpet_freq_hz: 14318180
hpet_enabled: 1
hpet_gcap_halves: ok
hpet_counter_monotonic: ok
busy_loop_10ms: advanced
busy_loop_vs_monotonic: ok
nanosleep_20ms: advanced
hpet_vs_monotonic: ok
ok
`
	hpetIrqOut = `irqfreq_64: ret=0 errno=0
info: ireqfreq=64 flags=0x10 hpet=0 timer=0
epi: ret=0 errno=0
ie_on: ret=0 errno=0
read 1: ret=8 count=1
read 2: ret=8 count=1
read 3: ret=8 count=1
read 4: ret=8 count=1
read 5: ret=8 count=1
periodic_rate: ok
ie_off: ret=0 errno=0
dpi: ret=0 errno=0
ie_on_oneshot: ret=0 errno=0
oneshot read 1: ret=8 count=1
oneshot read 2: ret=8 count=1
oneshot read 3: ret=8 count=1
oneshot_rate: ok
ie_off: ret=0 errno=0
ok
`
	hpetErrnoOut = `open_rdwr: ret=-1 errno=EINVAL
open_wronly: ret=-1 errno=EINVAL
open_rdonly: ret=0 errno=0
timers: 3
open_timer_1: ret=0 errno=0
open_timer_2: ret=0 errno=0
open_all_timers_busy: ret=-1 errno=EBUSY
close_timer_1: ret=0 errno=0
reopen_after_close: ret=0 errno=0
read_before_irqfreq: ret=-1 errno=EIO
ie_on_before_irqfreq: ret=-1 errno=EIO
irqfreq_0: ret=-1 errno=EINVAL
irqfreq_65: ret=-1 errno=EACCES
irqfreq_64: ret=0 errno=0
read_n4: ret=-1 errno=EINVAL
read_nonblock_ie_off: ret=-1 errno=EAGAIN
ioctl_unknown: ret=-1 errno=EINVAL
info_efault: ret=-1 errno=EFAULT
ie_on: ret=0 errno=0
read_nonblock_ie_on: ret=-1 errno=EAGAIN
ie_on_twice: ret=-1 errno=EBUSY
ie_off: ret=0 errno=0
ie_off_twice: ret=0 errno=0
info_oneshot_timer: timer=2 flags=0x0
epi_oneshot_timer: ret=-1 errno=ENXIO
dpi_oneshot_timer: ret=-1 errno=ENXIO
epi: ret=0 errno=0
dpi: ret=0 errno=0
mmap_one_page: ret=0 errno=0
mmap_two_pages: ret=-1 errno=EINVAL
mmap_offset_4096: ret=-1 errno=EINVAL
mmap_prot_write_shared: ret=-1 errno=EACCES
mmap_prot_write_private: ret=-1 errno=EACCES
write: ret=-1 errno=EBADF
lseek: ret=-1 errno=ESPIPE
ok
`
	bsrBarrierOut = `/dev/bsr8_0: mapped one page
initial: 0x0000000000000000 arrived=0/8
participant 0: 0x0000000000000001 arrived=1/8
participant 1: 0x0000000000000101 arrived=2/8
participant 2: 0x0000000000010101 arrived=3/8
participant 3: 0x0000000001010101 arrived=4/8
participant 4: 0x0000000101010101 arrived=5/8
participant 5: 0x0000010101010101 arrived=6/8
participant 6: 0x0001010101010101 arrived=7/8
participant 7: 0x0101010101010101 arrived=8/8
barrier complete
load2 at 2: 0x0101
load4 at 4: 0x01010101
repeat at 0xff8: 0x0101010101010101
stride: stored 0x5a at 11, read 0x5a at 3
reset: 0x0000000000000000
sysfs: 4 registers
sysfs bsr128_0: size=128 stride=128 length=4096
sysfs bsr16_0: size=16 stride=16 length=4096
sysfs bsr64_0: size=64 stride=64 length=4096
sysfs bsr8_0: size=8 stride=8 length=4096
maps: length=4096 perms=rw-s offset=00000000 path=/dev/bsr8_0
ok
`
	bsrErrnoOut = `open_rdwr: ret=0 errno=0
fstat: ret=0 errno=0
fstat: type=chr major=241
read: ret=-1 errno=EINVAL
read_len0: ret=-1 errno=EINVAL
write: ret=-1 errno=EINVAL
write_len0: ret=-1 errno=EINVAL
pread: ret=-1 errno=EINVAL
pwrite: ret=-1 errno=EINVAL
lseek_set: ret=0 errno=0
lseek_end_negative: ret=0 errno=0
lseek_bad_whence: ret=-1 errno=EINVAL
ioctl_tcgets: ret=-1 errno=ENOTTY
mmap_one_page: ret=0 errno=0
mmap_len_8: ret=0 errno=0
mmap_max_length: ret=0 errno=0
mmap_beyond_length: ret=-1 errno=EINVAL
mmap_offset_page: ret=-1 errno=EINVAL
mmap_private: ret=0 errno=0
mmap_read_only: ret=0 errno=0
open_rdonly: ret=0 errno=0
mmap_rdonly_shared_write: ret=-1 errno=EACCES
mmap_rdonly_private_write: ret=-1 errno=EACCES
mmap_rdonly_shared_read: ret=0 errno=0
mprotect_rdonly_shared_to_write: ret=-1 errno=EACCES
munmap: ret=0 errno=0
read_rdonly: ret=-1 errno=EINVAL
write_rdonly: ret=-1 errno=EBADF
open_wronly: ret=0 errno=0
mmap_wronly: ret=-1 errno=EACCES
read_wronly: ret=-1 errno=EBADF
open_missing: ret=-1 errno=ENOENT
close: ret=0 errno=0
ok
`
)

// requireOK requires a run to have exited 0 with nothing but want on
// stdout and nothing on stderr.
func requireOK(t *testing.T, r result, want string) {
	t.Helper()
	assert.Equal(t, 0, r.status, "stderr: %s", r.stderr)
	assert.Equal(t, want, r.stdout)
	assert.Empty(t, r.stderr)
}

// replaceLines returns out with each line old[i] replaced by new[i]
// (several lines, joined with "\n", for one entry of new).
func replaceLines(t *testing.T, out string, pairs ...string) string {
	t.Helper()
	for i := 0; i < len(pairs); i += 2 {
		old := pairs[i] + "\n"
		require.Contains(t, out, old)
		repl := pairs[i+1]
		if repl != "" {
			repl += "\n"
		}
		out = strings.Replace(out, old, repl, 1)
	}
	return out
}

// TestDevicePrograms runs each device program with the default devices
// and requires exactly the output docs/DEVICES.md gives.
func TestDevicePrograms(t *testing.T) {
	kvmtest.Require(t)
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"hpet_mmap raw", nil, hpetMmapOut},
		{"hpet_errno", nil, hpetErrnoOut},
		{"hpet_errno deterministic", []string{"--deterministic"}, hpetErrnoOut},
		{"hpet_irq deterministic", []string{"--deterministic"}, hpetIrqOut},
		{"bsr_barrier", nil, bsrBarrierOut},
		{"bsr_errno", nil, bsrErrnoOut},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// The name is the program and, if "raw", its argument.
			words := strings.Fields(tt.name)
			args := append(append([]string{"run"}, tt.args...), img(words[0]))
			if len(words) > 1 && words[1] == "raw" {
				args = append(args, "raw")
			}
			requireOK(t, withoutRaw(t, emuckpt(t, args...)), tt.want)
		})
	}
}

// rawLine matches the measurement lines that hpet_mmap and hpet_irq print
// with their argument "raw".
var rawLine = regexp.MustCompile(`(?m)^\w+_raw: .*\n`)

// withoutRaw logs the measurement lines of r's output, so that the margins
// a slow machine left show in the test log, and drops them from it.
func withoutRaw(t *testing.T, r result) result {
	t.Helper()
	for _, l := range rawLine.FindAllString(r.stdout, -1) {
		t.Logf("measured: %s", strings.TrimSpace(l))
	}
	r.stdout = rawLine.ReplaceAllString(r.stdout, "")
	return r
}

// TestHPETInterruptsHostClock runs hpet_irq on the host clock, where the
// interrupts come from real time: a reader that falls behind on a loaded
// host sees every interrupt it missed at its next read (count=2, or more
// after a long stall; 62 has been seen when the host stalled the guest for
// a second), never 0. hpet_irq's own checks hold on a machine of any speed
// (see testimages/src/hpet_irq.c); the measurements are logged.
func TestHPETInterruptsHostClock(t *testing.T) {
	kvmtest.Require(t)
	r := withoutRaw(t, emuckpt(t, "run", img("hpet_irq"), "raw"))
	require.Equal(t, 0, r.status, "stdout: %s\nstderr: %s", r.stdout, r.stderr)
	assert.Empty(t, r.stderr)
	got := regexp.MustCompile(`(?m)^(read \d|oneshot read \d): ret=8 count=[1-9]\d*$`).ReplaceAllString(r.stdout, "$1: ret=8 count=1")
	assert.Equal(t, hpetIrqOut, got)
}

// TestHPETDeterministic runs hpet_mmap twice under --deterministic (with
// different seeds: the HPET does not use randomness) and requires
// byte-identical output, raw counter lines included, with the counter
// following the virtual clock.
func TestHPETDeterministic(t *testing.T) {
	kvmtest.Require(t)
	a := emuckpt(t, "run", "--deterministic", img("hpet_mmap"))
	b := emuckpt(t, "run", "--deterministic", "--seed", "7", img("hpet_mmap"))
	require.Equal(t, 0, a.status, "stdout: %s\nstderr: %s", a.stdout, a.stderr)
	require.Equal(t, 0, b.status, "stdout: %s\nstderr: %s", b.stdout, b.stderr)
	assert.Equal(t, a.stdout, b.stdout, "two --deterministic runs differ")
	assert.Equal(t, a.stderr, b.stderr)
	assert.Empty(t, a.stderr)

	raw := regexp.MustCompile(`(?m)^(busy_loop_10ms|nanosleep_20ms)_raw: c0=(\d+) c1=(\d+) mono0=(\d+) mono1=(\d+) w0=\d+ w1=\d+ ratio=[\d.]+\n`)
	m := raw.FindAllStringSubmatch(a.stdout, -1)
	require.Len(t, m, 2, "want two _raw lines in:\n%s", a.stdout)
	assert.Equal(t, hpetMmapOut, raw.ReplaceAllString(a.stdout, ""), "the output but for the _raw lines is the host-clock one")
	const periodFS = 69841279
	for _, l := range m {
		for _, pair := range [][2]string{{l[2], l[4]}, {l[3], l[5]}} {
			c, _ := strconv.ParseFloat(pair[0], 64)
			mono, _ := strconv.ParseFloat(pair[1], 64)
			// The counter started at 0 at virtual time 0; mono is the
			// middle of a clock_gettime bracket 2 µs wide (each call and
			// each MMIO access advances the virtual clock 1 µs).
			assert.InDelta(t, mono*1e6/periodFS, c, 2e3*1e6/periodFS, "%s: counter %v at %v ns", l[1], c, mono)
		}
	}
	sleep := m[1]
	mono0, _ := strconv.ParseInt(sleep[4], 10, 64)
	mono1, _ := strconv.ParseInt(sleep[5], 10, 64)
	assert.InDelta(t, 20e6, float64(mono1-mono0), 20e3, "nanosleep(20 ms) advances the virtual clock by 20 ms")
}

// TestHPETConfig: --hpet changes what the guest sees in the capabilities
// register and through the driver.
func TestHPETConfig(t *testing.T) {
	kvmtest.Require(t)
	r := withoutRaw(t, emuckpt(t, "run", "--hpet", "timers=5,period=100000000", img("hpet_mmap"), "raw"))
	requireOK(t, r, replaceLines(t, hpetMmapOut,
		"hpet_gcap: 0x0429b17f8086a201", "hpet_gcap: 0x05f5e1008086a401",
		"hpet_timers: 3", "hpet_timers: 5",
		"hpet_period_fs: 69841279", "hpet_period_fs: 100000000",
		"hpet_freq_hz: 14318180", "hpet_freq_hz: 10000000"))

	r = emuckpt(t, "run", "--hpet", "timers=5,period=100000000", img("hpet_errno"))
	requireOK(t, r, replaceLines(t, hpetErrnoOut,
		"timers: 3", "timers: 5",
		"open_timer_2: ret=0 errno=0", "open_timer_2: ret=0 errno=0\nopen_timer_3: ret=0 errno=0\nopen_timer_4: ret=0 errno=0"))

	// One timer: it is periodic-capable, so HPET_INFO finds no one-shot
	// timer, and a second open is EBUSY.
	r = emuckpt(t, "run", "--hpet", "timers=5", "--hpet", "period=100000000", img("hpet_mmap"))
	assert.Contains(t, r.stdout, "hpet_gcap: 0x05f5e1008086a401", "repeated --hpet flags add up")
	r = emuckpt(t, "run", "--hpet", "timers=1", img("hpet_errno"))
	requireOK(t, r, replaceLines(t, hpetErrnoOut,
		"timers: 3", "timers: 1",
		"open_timer_1: ret=0 errno=0", "",
		"open_timer_2: ret=0 errno=0", "",
		"close_timer_1: ret=0 errno=0", "",
		"reopen_after_close: ret=0 errno=0", "",
		"info_oneshot_timer: timer=2 flags=0x0", "info_oneshot_timer: none (every timer is periodic-capable)",
		"epi_oneshot_timer: ret=-1 errno=ENXIO", "",
		"dpi_oneshot_timer: ret=-1 errno=ENXIO", ""))

	// The interrupt rate is in Hz whatever the tick period: the driver
	// converts it to ticks and HPET_INFO converts it back.
	r = emuckpt(t, "run", "--deterministic", "--hpet", "period=100000000", img("hpet_irq"))
	requireOK(t, r, hpetIrqOut)
}

// TestBSRConfig: --bsr replaces the default registers; the device nodes,
// sysfs and the programs follow.
func TestBSRConfig(t *testing.T) {
	kvmtest.Require(t)
	r := emuckpt(t, "run", "--bsr", "16:64", img("bsr_barrier"), "bsr16_0")
	requireOK(t, r, replaceLines(t, bsrBarrierOut,
		"/dev/bsr8_0: mapped one page", "/dev/bsr16_0: mapped one page",
		// The last stride of the page, and a byte of the second stride.
		"repeat at 0xff8: 0x0101010101010101", "repeat at 0xfc0: 0x0101010101010101",
		"stride: stored 0x5a at 11, read 0x5a at 3", "stride: stored 0x5a at 67, read 0x5a at 3",
		"sysfs: 4 registers", "sysfs: 1 registers",
		"sysfs bsr128_0: size=128 stride=128 length=4096", "",
		"sysfs bsr16_0: size=16 stride=16 length=4096", "sysfs bsr16_0: size=16 stride=64 length=4096",
		"sysfs bsr64_0: size=64 stride=64 length=4096", "",
		"sysfs bsr8_0: size=8 stride=8 length=4096", "",
		"maps: length=4096 perms=rw-s offset=00000000 path=/dev/bsr8_0", "maps: length=4096 perms=rw-s offset=00000000 path=/dev/bsr16_0"))

	// The default register is gone: bsr_barrier finds no sysfs attributes
	// for bsr8_0 and gives up (exit 2).
	r = emuckpt(t, "run", "--bsr", "16:64", img("bsr_barrier"))
	assert.Equal(t, 2, r.status)
	assert.Equal(t, "bsr8_0: bsr_size=-1 bsr_stride=-1: need at least 8 bytes\n", r.stdout)

	// bsr_errno's output is the same for any register: its mmap limits
	// follow bsr_length (8 bytes: only one page may be mapped).
	args := []string{"run", "--bsr", "8", "--bsr", "8", "--bsr", "16", "--bsr", "8::8"}
	for _, name := range []string{"bsr16_0", "bsr8_1", "bsr8_2"} {
		requireOK(t, emuckpt(t, append(args, img("bsr_errno"), name)...), bsrErrnoOut)
	}
	r = emuckpt(t, "run", "--bsr", "8", "--bsr", "8", "--bsr", "16", "--bsr", "8::8", img("bsr_barrier"), "bsr8_1")
	assert.Equal(t, 0, r.status, r.stderr)
	assert.Contains(t, r.stdout, `sysfs: 4 registers
sysfs bsr16_0: size=16 stride=16 length=4096
sysfs bsr8_0: size=8 stride=8 length=4096
sysfs bsr8_1: size=8 stride=8 length=4096
sysfs bsr8_2: size=8 stride=8 length=8
maps: length=4096 perms=rw-s offset=00000000 path=/dev/bsr8_1
ok
`)
}

// TestBSRSigbus: a store wider than a byte or a misaligned load kills the
// program with SIGBUS (status 135), and the report gives the si_code, the
// user virtual address of the access (not the register's guest-physical
// 0xe00... address) and the register's reason.
func TestBSRSigbus(t *testing.T) {
	kvmtest.Require(t)
	for _, tt := range []struct {
		args   []string
		code   string
		offset uint64
		reason string
	}{
		{nil, "BUS_ADRERR", 0, "bsr8_0: 2-byte store at offset 0x0: BSR stores must be single bytes"},
		{[]string{"store32"}, "BUS_ADRERR", 0, "bsr8_0: 4-byte store at offset 0x0: BSR stores must be single bytes"},
		{[]string{"store64"}, "BUS_ADRERR", 0, "bsr8_0: 8-byte store at offset 0x0: BSR stores must be single bytes"},
		{[]string{"unaligned"}, "BUS_ADRALN", 1, "bsr8_0: 4-byte load at offset 0x1: BSR loads must be aligned to their width"},
		{[]string{"unaligned8"}, "BUS_ADRALN", 4, "bsr8_0: 8-byte load at offset 0x4: BSR loads must be aligned to their width"},
		{[]string{"store16", "bsr128_0"}, "BUS_ADRERR", 0, "bsr128_0: 2-byte store at offset 0x0"},
	} {
		name := strings.Join(append([]string{"bsr_sigbus"}, tt.args...), " ")
		t.Run(name, func(t *testing.T) {
			r := emuckpt(t, append([]string{"run", img("bsr_sigbus")}, tt.args...)...)
			assert.Equal(t, 128+7, r.status, "stderr: %s", r.stderr)
			assert.Equal(t, "before\n", r.stdout)
			assert.Contains(t, r.stderr, "killed by SIGBUS ("+tt.code+") at address 0x")
			assert.Contains(t, r.stderr, tt.reason)
			assert.Contains(t, r.stderr, "memory map:")

			reg := "bsr8_0"
			if len(tt.args) > 1 {
				reg = tt.args[1]
			}
			addr := regexp.MustCompile(`killed by SIGBUS \(BUS_\w+\) at address 0x([0-9a-f]+)`).FindStringSubmatch(r.stderr)
			vma := regexp.MustCompile(`(?m)^\s+([0-9a-f]+)-([0-9a-f]+) rw-s 00000000 \S+ \d+\s+/dev/` + reg + `$`).FindStringSubmatch(r.stderr)
			require.NotNil(t, addr, r.stderr)
			require.NotNil(t, vma, "no memory-map line for /dev/%s in\n%s", reg, r.stderr)
			a, _ := strconv.ParseUint(addr[1], 16, 64)
			lo, _ := strconv.ParseUint(vma[1], 16, 64)
			hi, _ := strconv.ParseUint(vma[2], 16, 64)
			assert.Equal(t, lo+tt.offset, a, "si_addr is the user address of the access, in the device VMA %#x-%#x", lo, hi)
			assert.False(t, a >= 0xe0000000 && a < 0x100000000, "si_addr %#x is a guest-physical address", a)
		})
	}
}

// TestDeviceNodesAndMaps lists /dev and /sys/class/bsr with getdents64
// and maps every device (devls): the nodes are character devices with
// Linux's numbers, and /proc/self/maps shows each mapping, shared, with
// the device's path, one line per mapping (device VMAs never merge).
func TestDeviceNodesAndMaps(t *testing.T) {
	kvmtest.Require(t)
	r := emuckpt(t, "run", img("devls"))
	requireOK(t, r, `/dev: 15 entries
dirent . type=dir
dirent .. type=dir
dirent bsr128_0 type=chr rdev=241:3
dirent bsr16_0 type=chr rdev=241:1
dirent bsr64_0 type=chr rdev=241:2
dirent bsr8_0 type=chr rdev=241:0
dirent fd type=lnk
dirent hpet type=chr rdev=10:228
dirent null type=chr rdev=1:3
dirent random type=chr rdev=1:8
dirent stderr type=lnk
dirent stdin type=lnk
dirent stdout type=lnk
dirent urandom type=chr rdev=1:9
dirent zero type=chr rdev=1:5
/sys/class/bsr: 6 entries
dirent . type=dir
dirent .. type=dir
dirent bsr128_0 type=dir
dirent bsr16_0 type=dir
dirent bsr64_0 type=dir
dirent bsr8_0 type=dir
maps: length=4096 perms=r--s offset=00000000 dev=00:00 inode=0 path=/dev/hpet
maps: length=4096 perms=rw-s offset=00000000 dev=00:00 inode=0 path=/dev/bsr8_0
maps: length=4096 perms=rw-s offset=00000000 dev=00:00 inode=0 path=/dev/bsr64_0
maps: length=4096 perms=rw-s offset=00000000 dev=00:00 inode=0 path=/dev/bsr16_0
maps: length=4096 perms=rw-s offset=00000000 dev=00:00 inode=0 path=/dev/bsr128_0
maps: length=4096 perms=rw-s offset=00000000 dev=00:00 inode=0 path=/dev/bsr128_0
maps: 6 device mappings
ok
`)

	// Minors follow the order of the --bsr flags; names count per size.
	r = emuckpt(t, "run", "--bsr", "16:64", "--bsr", "8", "--bsr", "16", img("devls"), "/dev")
	assert.Equal(t, 0, r.status, r.stderr)
	assert.Contains(t, r.stdout, `/dev: 14 entries
dirent . type=dir
dirent .. type=dir
dirent bsr16_0 type=chr rdev=241:0
dirent bsr16_1 type=chr rdev=241:2
dirent bsr8_0 type=chr rdev=241:1
dirent fd type=lnk
dirent hpet type=chr rdev=10:228
`)
	assert.Contains(t, r.stdout, "maps: 5 device mappings\nok\n")
}

// TestDeviceFlagErrors: a bad --hpet or --bsr value is emuckpt's own
// failure (125), before the program runs, with a message that names the
// value and says what is allowed. Only the last case, found when the
// machine is built, needs KVM.
func TestDeviceFlagErrors(t *testing.T) {
	var many []string
	for range 33 {
		many = append(many, "--bsr", "8")
	}
	for _, tt := range []struct {
		args []string
		want []string
	}{
		{[]string{"--hpet", "timers=0"}, []string{`invalid value "timers=0" for flag -hpet`, "from 1 to 32"}},
		{[]string{"--hpet", "timers=33"}, []string{"timers=33", "from 1 to 32"}},
		{[]string{"--hpet", "period=0"}, []string{"period=0", "1 to 100000000"}},
		{[]string{"--hpet", "period=100000001"}, []string{"period=100000001", "1 to 100000000"}},
		{[]string{"--hpet", "bogus=1"}, []string{`unknown key "bogus"`, "timers and period"}},
		{[]string{"--hpet", "timers=3,timers=4"}, []string{"timers given twice"}},
		{[]string{"--hpet", "timers"}, []string{"want KEY=VALUE"}},
		{[]string{"--hpet", "timers=x"}, []string{"timers=x"}},
		{[]string{"--bsr", "7"}, []string{`invalid value "7" for flag -bsr`, "8, 16, 64, 128 or 4096"}},
		{[]string{"--bsr", "x"}, []string{"not a number"}},
		{[]string{"--bsr", "8:4"}, []string{"stride 4 is less than"}},
		{[]string{"--bsr", "8:12"}, []string{"stride 12 is not a power of two"}},
		{[]string{"--bsr", "8:8:2M"}, []string{"length 2097152", "1048576"}},
		{[]string{"--bsr", "8:8:8:8"}, []string{"too many fields", "BYTES[:STRIDE[:LENGTH]]"}},
		{many, []string{"33 registers", "at most 32"}},
	} {
		name := strings.Join(tt.args, " ")
		if len(tt.args) > 2 {
			name = fmt.Sprintf("%d --bsr flags", len(tt.args)/2)
			kvmtest.Require(t)
		}
		t.Run(name, func(t *testing.T) {
			r := emuckpt(t, append(append([]string{"run"}, tt.args...), img("hello"))...)
			assert.Equal(t, exitFailure, r.status, "stderr: %s", r.stderr)
			assert.Empty(t, r.stdout, "the program must not run")
			for _, w := range tt.want {
				assert.Contains(t, r.stderr, w)
			}
		})
	}
}

// TestDeviceFlagsAccepted: the forms docs/DEVICES.md gives are accepted.
func TestDeviceFlagsAccepted(t *testing.T) {
	kvmtest.Require(t)
	for _, args := range [][]string{
		{"--hpet", ""}, {"--hpet", "timers=0x20,period=0x05F5E100"}, {"--hpet", "period=1"},
		{"--bsr", "8"}, {"--bsr", "8::8"}, {"--bsr", "4096"}, {"--bsr", "128:256:1M"}, {"--bsr", "64:64:8K"},
	} {
		r := emuckpt(t, append(append([]string{"run"}, args...), img("hello"))...)
		assert.Equal(t, 0, r.status, "%v: %s", args, r.stderr)
		assert.Equal(t, "hello, world\n", r.stdout, fmt.Sprint(args))
	}
}

// TestDevicesAcrossTasks runs devtasks: one BSR mapping used as a barrier
// by threads and by processes after fork (stores seen in order by the
// others' 8-byte loads, and the children's last stores seen by the
// parent), and a /dev/hpet description shared over fork. Under
// --deterministic the spinning barrier relies on device accesses ending
// turns; two runs with the same seed print the same bytes.
func TestDevicesAcrossTasks(t *testing.T) {
	kvmtest.Require(t)
	const want = "threads: 20 rounds, register 0x1414141414\n" +
		"processes: 20 rounds, register 0xc1c0141414141414\n" +
		"hpet shared over fork: timer 0\n" +
		"ok\n"
	requireOK(t, emuckpt(t, "run", img("devtasks")), want)
	a := emuckpt(t, "run", "--deterministic", "--seed", "5", img("devtasks"))
	requireOK(t, a, want)
	assert.Equal(t, a, emuckpt(t, "run", "--deterministic", "--seed", "5", img("devtasks")))
}

// TestSpinningTask runs spinwait: a thread that spins in user mode until
// a sleeping thread wakes and sets a flag. On the host clock the kick at
// the sleeper's deadline wakes it; a spin on a BSR register is device
// accesses, which end turns under --deterministic too. A memory spin
// under --deterministic never gives the vCPU up (the documented cost of
// the deterministic rule): --timeout ends it.
func TestSpinningTask(t *testing.T) {
	kvmtest.Require(t)
	for _, args := range [][]string{
		{"run", img("spinwait")},
		{"run", img("spinwait"), "bsr"},
		{"run", "--deterministic", img("spinwait"), "bsr"},
	} {
		requireOK(t, emuckpt(t, args...), "done\n")
	}
	got := emuckpt(t, "run", "--deterministic", "--timeout", "1s", img("spinwait"))
	assert.Equal(t, 124, got.status, got.stderr)
	assert.Empty(t, got.stdout)
}
