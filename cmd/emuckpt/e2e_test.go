package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emuckpt/emuckpt/internal/kvmtest"
	"github.com/emuckpt/emuckpt/testimages"
	"github.com/emuckpt/emuckpt/vmm"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The end-to-end tests run the real CLI: the test binary re-executes
// itself as emuckpt when EMUCKPT_E2E_MAIN is set.
func TestMain(m *testing.M) {
	if os.Getenv("EMUCKPT_E2E_MAIN") == "1" {
		os.Exit(Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

type result struct {
	stdout, stderr string
	status         int
}

// emuckpt runs the CLI with args.
func emuckpt(t testing.TB, args ...string) result {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "EMUCKPT_E2E_MAIN=1")
	return runCmd(t, cmd)
}

// native runs a test image directly on the host with emuckpt's default
// guest environment, as the reference for what Linux does.
func native(t *testing.T, args ...string) result {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = defaultEnv
	return runCmd(t, cmd)
}

func runCmd(t testing.TB, cmd *exec.Cmd) result {
	t.Helper()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	status := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		require.True(t, ok, "running %v: %v", cmd.Args, err)
		status = ee.ExitCode()
	}
	return result{out.String(), errb.String(), status}
}

func img(name string) string { return testimages.Path(name) }

func TestHello(t *testing.T) {
	kvmtest.Require(t)
	for _, name := range []string{"hello", "hello-pie"} {
		r := emuckpt(t, "run", img(name))
		assert.Equal(t, "hello, world\n", r.stdout, name)
		assert.Equal(t, 0, r.status, name)
		assert.Empty(t, r.stderr, name)
	}
}

// TestMatchesNative runs programs whose whole output is defined by Linux
// semantics and requires emuckpt to print exactly what the host kernel
// makes them print.
func TestMatchesNative(t *testing.T) {
	kvmtest.Require(t)
	for _, args := range [][]string{
		{"mmap"}, {"fdops"}, {"efault"}, {"sigs"}, {"malloc"},
		{"args", "one", "two words", ""}, {"cpubound", "3"}, {"exitcode", "42"},
		{"sighandler"}, {"bigio"}, {"bigread"}, {"procself"}, {"hugepages"},
	} {
		t.Run(args[0], func(t *testing.T) {
			argv := append([]string{img(args[0])}, args[1:]...)
			want := native(t, argv...)
			got := emuckpt(t, append([]string{"run"}, argv...)...)
			assert.Equal(t, want.stdout, got.stdout)
			assert.Equal(t, want.status, got.status)
			assert.Empty(t, got.stderr)
		})
	}
}

func TestExitStatus(t *testing.T) {
	kvmtest.Require(t)
	dir := t.TempDir()
	text := filepath.Join(dir, "script.sh")
	require.NoError(t, os.WriteFile(text, []byte("#!/bin/sh\necho hi\n"), 0o755))
	bigEndian := filepath.Join(dir, "big-endian")
	hello, err := os.ReadFile(img("hello"))
	require.NoError(t, err)
	hello[5] = 2 // EI_DATA = ELFDATA2MSB
	require.NoError(t, os.WriteFile(bigEndian, hello, 0o755))
	tests := []struct {
		name   string
		args   []string
		status int
		stderr []string
	}{
		{"exit code", []string{"run", img("exitcode"), "7"}, 7, nil},
		{"killed by SIGTERM", []string{"run", img("exitcode"), "kill", "15"}, 128 + 15, nil},
		{"killed by SIGABRT", []string{"run", img("exitcode"), "kill", "6"}, 128 + 6, nil},
		{"segv maperr", []string{"run", img("segv")}, 128 + 11,
			[]string{"killed by SIGSEGV (SEGV_MAPERR) at address 0x10", "instruction at rip", "mov", "rsp", "memory map:", "[stack]"}},
		{"segv accerr", []string{"run", img("segv"), "write-ro"}, 128 + 11,
			[]string{"killed by SIGSEGV (SEGV_ACCERR)"}},
		{"out of guest memory", []string{"run", "--mem", "8M", img("bigmem"), "64"}, 128 + 9,
			[]string{"killed by SIGKILL (SI_KERNEL): out of guest memory"}},
		{"timeout", []string{"run", "--timeout", "200ms", img("spin")}, 124, []string{"timed out after 200ms"}},
		{"not found", []string{"run", filepath.Join(dir, "nope")}, 127, []string{"No such file or directory"}},
		{"not in PATH", []string{"run", "emuckpt-no-such-program"}, 127, []string{"not found in $PATH"}},
		{"not an ELF", []string{"run", text}, 126, []string{"not an ELF file", "script"}},
		{"directory", []string{"run", dir}, 126, []string{"cannot execute: Is a directory"}},
		{"big-endian ELF", []string{"run", bigEndian}, 126, []string{"big-endian 64-bit ELF for unknown machine 15872 (0x3e00), need little-endian 64-bit x86-64"}},
		{"bad flag", []string{"run", "--no-such-flag", img("hello")}, 125, []string{"flag provided but not defined"}},
		{"bad mem", []string{"run", "--mem", "lots", img("hello")}, 125, []string{"512M"}},
		{"missing program", []string{"run"}, 125, []string{"missing PROGRAM"}},
		{"unknown command", []string{"frobnicate"}, 125, []string{"unknown command"}},
	}
	if _, err := os.Stat("/bin/ls"); err == nil {
		tests = append(tests, struct {
			name   string
			args   []string
			status int
			stderr []string
		}{"dynamic", []string{"run", "/bin/ls"}, 126, []string{"dynamically linked", "-static"}})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := emuckpt(t, tt.args...)
			assert.Equal(t, tt.status, r.status, "stderr: %s", r.stderr)
			for _, s := range tt.stderr {
				assert.Contains(t, r.stderr, s)
			}
		})
	}
}

func TestEnv(t *testing.T) {
	kvmtest.Require(t)
	r := emuckpt(t, "run", "--env", "FOO=bar", "--env", "HOME=/tmp", img("args"), "x")
	require.Equal(t, 0, r.status)
	assert.Contains(t, r.stdout, "argv[1]=x\n")
	assert.Contains(t, r.stdout, "env=FOO=bar\n")
	assert.Contains(t, r.stdout, "env=HOME=/tmp\n")
	assert.NotContains(t, r.stdout, "env=HOME=/\n")
	assert.Contains(t, r.stdout, "env=PATH=")
	r = emuckpt(t, "run", "--env", "novalue", img("args"))
	assert.Equal(t, 125, r.status)
}

func TestReadFileThroughRoot(t *testing.T) {
	kvmtest.Require(t)
	root := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(root, "data"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "data", "f.txt"), []byte("inside the root\n"), 0o644))
	outside := filepath.Join(t.TempDir(), "secret")
	require.NoError(t, os.WriteFile(outside, []byte("secret"), 0o644))
	require.NoError(t, os.Symlink(outside, filepath.Join(root, "data", "abs")))
	require.NoError(t, os.Symlink("../../../../../../"+outside, filepath.Join(root, "data", "rel")))

	r := emuckpt(t, "run", "--root", root, img("readfile"), "/data/f.txt")
	require.Equal(t, 0, r.status, r.stdout+r.stderr)
	assert.Contains(t, r.stdout, "inside the root\n")
	assert.Contains(t, r.stdout, "open_wronly: ret=-1 errno=EROFS")
	assert.Contains(t, r.stdout, "dirent f.txt")

	r = emuckpt(t, "run", "--root", root, "--cwd", "/data", img("readfile"), "f.txt")
	assert.Equal(t, 0, r.status, "relative to --cwd")

	for _, escape := range []string{"/data/abs", "/data/rel", "/../../../../" + outside, "/data/../../" + outside} {
		r := emuckpt(t, "run", "--root", root, img("readfile"), escape)
		assert.Equal(t, 2, r.status, escape)
		assert.Contains(t, r.stdout, "open: errno=ENOENT", escape)
		assert.NotContains(t, r.stdout, "secret", escape)
	}
}

func TestDeterministic(t *testing.T) {
	kvmtest.Require(t)
	a := emuckpt(t, "run", "--deterministic", "--seed", "42", img("dettime"))
	b := emuckpt(t, "run", "--deterministic", "--seed", "42", img("dettime"))
	c := emuckpt(t, "run", "--deterministic", "--seed", "43", img("dettime"))
	require.Equal(t, 0, a.status, a.stdout+a.stderr)
	assert.Equal(t, a.stdout, b.stdout)
	assert.Equal(t, a.stderr, b.stderr)
	assert.NotEqual(t, a.stdout, c.stdout, "another seed gives other random bytes")
	assert.Contains(t, a.stdout, "realtime: 946684800.")
	assert.Contains(t, a.stdout, "nanosleep_10ms: ret=0 elapsed_ns=10")
}

// TestRdtscTrapped: each trapped rdtsc advances the virtual clock by
// 1 µs, so two in a row differ by 1000 (the virtual TSC counts
// nanoseconds), on hardware KVM through CR4.TSD and on PVM through the
// patched instructions.
func TestRdtscTrapped(t *testing.T) {
	kvmtest.Require(t)
	r := emuckpt(t, "run", "--deterministic", img("dettime"))
	assert.Contains(t, r.stdout, "rdtsc_delta: 1000\n")
	assert.Empty(t, r.stderr)
}

// rdtscWant is what testimages/bin/rdtsc prints under --deterministic,
// whatever the seed, on any KVM: every rdtsc and rdtscp trapped (1000
// apart), every immediate holding their byte sequences intact.
const rdtscWant = `rdtsc: 3000 delta 1000
rdtscp: 7000 delta 1000 aux 0
site_delta: 1000
imm_rdtsc: 0x90310f90
imm_rdtscp: 0xf9010f90
jit_imm: 0x90310f90
jit_rdtsc: 13000 delta 1000
jit_straddle: 15000 delta 1000
smc_rdtsc: 19000 delta 1000
smc_imm: 0x90310f90
smc_rdtsc_again: 21000 delta 1000
`

// TestRdtscDeterministic runs testimages/bin/rdtsc twice with one seed:
// the same bytes, with rdtsc and rdtscp in the program's text, in code it
// generated (mprotect, self-modifying RWX, an rdtsc straddling two pages)
// all trapped, and rdtsc byte sequences inside immediates untouched.
func TestRdtscDeterministic(t *testing.T) {
	kvmtest.Require(t)
	a := emuckpt(t, "run", "--deterministic", "--seed", "11", img("rdtsc"))
	b := emuckpt(t, "run", "--deterministic", "--seed", "11", img("rdtsc"))
	require.Equal(t, 0, a.status, a.stdout+a.stderr)
	assert.Equal(t, rdtscWant+"ok\n", a.stdout)
	assert.Equal(t, a.stdout, b.stdout)
	assert.Empty(t, a.stderr, "no rdtsc-like bytes left undecided")

	// Without --deterministic nothing is patched: the program still runs.
	n := emuckpt(t, "run", img("rdtsc"))
	require.Equal(t, 0, n.status, n.stdout+n.stderr)
	assert.Contains(t, n.stdout, "imm_rdtsc: 0x90310f90\n")
}

// TestRdtscSelfRead: a program reading its own rdtsc through a system
// call sees its own bytes; a direct load sees the patch on PVM only.
func TestRdtscSelfRead(t *testing.T) {
	kvmtest.Require(t)
	r := emuckpt(t, "run", "--deterministic", img("rdtsc"), "selfread")
	require.Equal(t, 0, r.status, r.stdout+r.stderr)
	assert.Contains(t, r.stdout, "write: 0f\n")
	assert.Contains(t, r.stdout, "rdtsc: ")
	direct := "direct: 0f\n"
	if ok, err := vmm.TSCTrapWorks(); err != nil || !ok {
		direct = "direct: f4\n" // hlt, the byte that makes it trap
	}
	assert.Contains(t, r.stdout, direct)
}

// TestRdtscCheckpoint checkpoints testimages/bin/rdtsc with patched
// generated code in memory: the image holds the program's own bytes (no
// patch), and the restored run traps its rdtscs again and goes on with
// the same clock, so both halves print what one run prints.
func TestRdtscCheckpoint(t *testing.T) {
	kvmtest.Require(t)
	image := filepath.Join(t.TempDir(), "rdtsc.img")
	whole := emuckpt(t, "run", "--deterministic", "--seed", "1", "--checkpoint-to", image, "--leave-running", img("rdtsc"), "checkpoint")
	require.Equal(t, 0, whole.status, whole.stdout+whole.stderr)
	first := emuckpt(t, "run", "--deterministic", "--seed", "1", "--checkpoint-to", image, img("rdtsc"), "checkpoint")
	require.Equal(t, 0, first.status, first.stderr)
	data, err := os.ReadFile(image)
	require.NoError(t, err)
	code := []byte{0x0f, 0x31, 0x48, 0xc1, 0xe2, 0x20} // the RWX page's rdtsc, last run before the checkpoint
	assert.Equal(t, 1, bytes.Count(data, code), "the image holds the original rdtsc")
	assert.Zero(t, bytes.Count(data, append([]byte{0xf4}, code[1:]...)), "and no patched one")
	second := emuckpt(t, "restore", image)
	require.Equal(t, 0, second.status, second.stderr)
	assert.Equal(t, rdtscWant, first.stdout)
	assert.Equal(t, strings.Replace(whole.stdout, "checkpoint: after", "checkpoint: restored", 1), first.stdout+second.stdout)
	assert.Contains(t, second.stdout, "after_checkpoint: 25000 delta 1000\n")
}

func TestUnknownSyscallReportedOnce(t *testing.T) {
	kvmtest.Require(t)
	r := emuckpt(t, "run", "-v", img("unknown"))
	assert.Equal(t, 0, r.status)
	assert.Equal(t, "mbind: ret=-1 errno=ENOSYS\nmbind: ret=-1 errno=ENOSYS\n", r.stdout)
	assert.Equal(t, 1, strings.Count(r.stderr, "unknown system call mbind (237)"), r.stderr)
	quiet := emuckpt(t, "run", img("unknown"))
	assert.Empty(t, quiet.stderr)
}

func TestTrace(t *testing.T) {
	kvmtest.Require(t)
	r := emuckpt(t, "run", "--trace", img("hello"))
	assert.Equal(t, 0, r.status)
	assert.Contains(t, r.stderr, "trace: writev(1, ")
	assert.Contains(t, r.stderr, "trace: exit_group(0) = ?")
}

func TestHelp(t *testing.T) {
	r := emuckpt(t, "help")
	assert.Equal(t, 0, r.status)
	assert.Contains(t, r.stdout, "run [flags] PROGRAM")
	r = emuckpt(t, "run", "--help")
	assert.Equal(t, 0, r.status)
	for _, f := range []string{"-root", "-env", "-mem", "-timeout", "-deterministic", "-seed", "-trace"} {
		assert.Contains(t, r.stderr, f)
	}
}

// TestHostileGuest lets a guest call every system call with hostile
// arguments (kernel addresses, the trampoline page, huge lengths, bad fds)
// and requires emuckpt to answer them all without crashing.
func TestHostileGuest(t *testing.T) {
	kvmtest.Require(t)
	for _, seed := range []string{"1", "2", "3", "4"} {
		r := emuckpt(t, "run", "--timeout", "60s", img("hostile"), "30", seed)
		require.Equal(t, 0, r.status, "seed %s: %s", seed, r.stderr)
		assert.Equal(t, "survived 14970 calls\n", r.stdout, "seed %s", seed)
	}
}

// TestBlockedOnStdin: a guest waiting for input that never comes still
// ends at --timeout, and a checkpoint requested meanwhile interrupts the
// read, which the restored guest makes again.
func TestBlockedOnStdin(t *testing.T) {
	kvmtest.Require(t)
	run := func(args ...string) (result, *os.File) {
		r, w, err := os.Pipe()
		require.NoError(t, err)
		cmd := exec.Command(os.Args[0], args...)
		cmd.Env = append(os.Environ(), "EMUCKPT_E2E_MAIN=1")
		cmd.Stdin = r
		res := runCmd(t, cmd)
		r.Close()
		return res, w
	}
	res, w := run("run", "--timeout", "300ms", img("readstdin"))
	w.Close()
	assert.Equal(t, 124, res.status, res.stderr)

	image := filepath.Join(t.TempDir(), "stdin.img")
	res, w = run("run", "--checkpoint-to", image, "--checkpoint-at", "time:200ms", img("readstdin"))
	w.Close()
	require.Equal(t, 0, res.status, res.stderr)
	require.Contains(t, res.stderr, "checkpoint written")
	cmd := exec.Command(os.Args[0], "restore", image)
	cmd.Env = append(os.Environ(), "EMUCKPT_E2E_MAIN=1")
	cmd.Stdin = strings.NewReader("hello\n")
	res = runCmd(t, cmd)
	assert.Equal(t, 0, res.status, res.stderr)
	assert.Equal(t, "read 6\n", res.stdout)
}

// TestTraps compares testimages/bin/traps with Linux: `int n`, x87 and
// SIMD exceptions, and returns to RIPs user code cannot reach (from
// rt_sigreturn or a handler address). Two lines differ on purpose:
// emuckpt runs no 32-bit system calls, so `int 0x80` is SIGSEGV; and the
// other vendor's hypercall instruction is what KVM makes of it, not what
// a bare CPU does (#UD): on Intel, `vmmcall` is SIGILL (KVM's hypercall
// quirk is off); on AMD, KVM's emulator treats `vmcall` as privileged and
// raises #GP (SIGSEGV, SI_KERNEL); PVM ignores the quirk setting and
// patches the instruction (this test machine's own kernel runs under such
// a hypervisor, so its native answer is no reference either).
func TestTraps(t *testing.T) {
	kvmtest.Require(t)
	want := native(t, img("traps"))
	got := emuckpt(t, "run", img("traps"))
	require.Equal(t, 0, got.status, got.stderr)
	hardware, err := vmm.TSCTrapWorks()
	require.NoError(t, err)
	wantLines, gotLines := strings.Split(want.stdout, "\n"), strings.Split(got.stdout, "\n")
	require.Equal(t, len(wantLines), len(gotLines), got.stdout)
	for i, line := range gotLines {
		name, _, _ := strings.Cut(line, ":")
		switch name {
		case "int_0x80":
			assert.Equal(t, "int_0x80: SIGSEGV 128", line)
		case "foreign_hypercall":
			switch {
			case !hardware:
				t.Logf("on PVM: %s", line)
			case hostIsAMD(t):
				assert.Equal(t, "foreign_hypercall: SIGSEGV 128", line)
			default:
				assert.Equal(t, "foreign_hypercall: SIGILL 2", line)
			}
		default:
			assert.Equal(t, wantLines[i], line)
		}
	}
}

// hostIsAMD reports whether the CPU is AMD's (the guest sees the host's
// vendor).
func hostIsAMD(t *testing.T) bool {
	b, err := os.ReadFile("/proc/cpuinfo")
	require.NoError(t, err)
	return strings.Contains(string(b), "AuthenticAMD")
}

// TestProcSelfExe checks readlink("/proc/self/exe") however the program is
// named: always the absolute guest path of its file (symbolic links
// resolved), while argv[0] and AT_EXECFN stay as typed.
func TestProcSelfExe(t *testing.T) {
	kvmtest.Require(t)
	root, err := filepath.EvalSymlinks(t.TempDir())
	require.NoError(t, err)
	prog, err := os.ReadFile(img("procself"))
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(filepath.Join(root, "usr/bin"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "usr/bin/procself"), prog, 0o755))
	require.NoError(t, os.Symlink("usr/bin", filepath.Join(root, "bin")))

	tests := []struct {
		name  string
		dir   string // the host working directory
		path  string // $PATH for emuckpt's own lookup
		args  []string
		exe   string
		typed string
	}{
		{"relative, through a link", root, "", []string{"--root", ".", "bin/procself"}, "/usr/bin/procself", "bin/procself"},
		{"dot slash", filepath.Join(root, "usr/bin"), "", []string{"--root", root, "./procself"}, "/usr/bin/procself", "./procself"},
		{"found in $PATH", "", filepath.Join(root, "bin"), []string{"--root", root, "procself"}, "/usr/bin/procself", "procself"},
		{"outside the root", "", "", []string{"--root", root, img("procself")}, "/procself", img("procself")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], append([]string{"run"}, tt.args...)...)
			cmd.Dir = tt.dir
			cmd.Env = append(os.Environ(), "EMUCKPT_E2E_MAIN=1")
			if tt.path != "" {
				cmd.Env = append(cmd.Env, "PATH="+tt.path)
			}
			r := runCmd(t, cmd)
			require.Equal(t, 0, r.status, r.stdout+r.stderr)
			assert.Contains(t, r.stdout, "exe: "+tt.exe+"\n")
			assert.Contains(t, r.stdout, "argv[0]: "+tt.typed+"\n")
			assert.Contains(t, r.stdout, "AT_EXECFN: "+tt.typed+"\n")
			assert.Contains(t, r.stdout, "maps after mmap, same fd: 1\nmaps after munmap, same fd: 0\n")
		})
	}
}

// TestLackingCalls checks the rule that a call emuckpt does not carry out
// fails (with Linux's errno for an unknown sub-command, or ENOSYS) and is
// named once by -v, never a success that did nothing.
func TestLackingCalls(t *testing.T) {
	kvmtest.Require(t)
	r := emuckpt(t, "run", "-v", img("lacking"))
	require.Equal(t, 0, r.status, r.stderr)
	assert.Equal(t, `prlimit_stack_change: ret=-1 errno=ENOSYS
prlimit_stack_change_again: ret=-1 errno=ENOSYS
prlimit_nofile: ret=0 errno=0
fcntl_setlk: ret=-1 errno=EINVAL
fcntl_getpipe_sz: ret=-1 errno=EINVAL
fcntl_unknown: ret=-1 errno=EINVAL
arch_prctl_set_cpuid: ret=-1 errno=ENODEV
arch_prctl_shstk_status: ret=-1 errno=EINVAL
arch_prctl_unknown: ret=-1 errno=EINVAL
ioctl_unknown: ret=-1 errno=ENOTTY
kill_minus_one: ret=-1 errno=ESRCH
fchmod_pipe: ret=-1 errno=ENOSYS
`, r.stdout)
	notes := []string{
		"prlimit64/setrlimit of a limit other than RLIMIT_NOFILE is not implemented: returning ENOSYS",
		"fcntl F_SETLK is not implemented: returning EINVAL",
		"fcntl F_GETPIPE_SZ is not implemented: returning EINVAL",
		"arch_prctl ARCH_SET_CPUID: no CPUID faulting, returning ENODEV",
		"arch_prctl ARCH_SHSTK_STATUS is not implemented: returning EINVAL",
		"ioctl 0x1234 on a pipe is not implemented: returning ENOTTY",
		"changing the mode, owner, times or extended attributes of a pipe: returning ENOSYS",
	}
	for _, n := range notes {
		assert.Equal(t, 1, strings.Count(r.stderr, "emuckpt: "+n+"\n"), n)
	}
	assert.Equal(t, len(notes), strings.Count(r.stderr, "\n"), "no other notes:\n%s", r.stderr)

	quiet := emuckpt(t, "run", img("lacking"))
	assert.Equal(t, r.stdout, quiet.stdout)
	assert.Empty(t, quiet.stderr, "notes only with -v")
}
