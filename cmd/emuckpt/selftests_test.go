package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/emuckpt/emuckpt/internal/kvmtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Linux's own selftests (tools/testing/selftests of the kernel source
// .ci/run unpacks) are programs nobody here wrote: each is built with musl,
// run natively and under `emuckpt run --root`, and must end with the same
// status and the same kselftest totals line, or be a documented
// difference that ends with its own status. Tests that change the host
// when run natively as root (the clock, the clocksource, mounts) are left
// out, and so are those that take minutes.

// selftest is one program of the stage.
type selftest struct {
	src   string // relative to tools/testing/selftests
	extra string // another source file to link, in the same directory
	// diff is a known, documented difference; status is then emuckpt's.
	diff   string
	status int
}

var selftests = []selftest{
	{src: "vm/mremap_test.c"},
	{src: "vm/mremap_dontunmap.c"},
	{src: "vm/map_fixed_noreplace.c"},
	{src: "vm/map_populate.c"},
	{src: "vm/map_hugetlb.c"},
	{src: "vm/mlock2-tests.c"},
	{src: "vm/mrelease_test.c"},
	{src: "timers/nanosleep.c"},
	{src: "timers/posix_timers.c"},
	{src: "proc/fd-002-posix-eq.c"},
	{src: "proc/proc-self-map-files-001.c"},
	{src: "proc/proc-self-map-files-002.c"},
	{src: "proc/proc-uptime-001.c"},
	{src: "proc/self.c"},
	{src: "exec/execveat.c"},
	{src: "exec/null-argv.c"},
	{src: "x86/check_initial_reg_state.c"},
	{src: "x86/corrupt_xstate_header.c"},
	{src: "x86/sigaltstack.c"},
	{src: "x86/test_FCMOV.c"},
	{src: "x86/test_FCOMI.c"},
	{src: "x86/test_FISTTP.c"},
	{src: "x86/test_mremap_vdso.c"},
	{src: "x86/test_syscall_vdso.c"},
	{src: "x86/iopl.c"},
	{src: "x86/ioperm.c"},
	{src: "vDSO/vdso_test_abi.c", extra: "parse_vdso.c"},
	{src: "vDSO/vdso_test_clock_getres.c"},
	{src: "vDSO/vdso_test_correctness.c"},
	{src: "vDSO/vdso_test_getcpu.c", extra: "parse_vdso.c"},
	{src: "vDSO/vdso_test_gettimeofday.c", extra: "parse_vdso.c"},
	{src: "x86/sysret_rip.c", status: 139, diff: "no address-space randomization: the stack ends at the top of user space, where the test maps pages (natively under `setarch -R` it crashes alike)"},
	{src: "proc/fd-003-kthread.c", status: 1, diff: "pid 2 is the guest's first process, not kthreadd"},
	{src: "proc/proc-multiple-procfs.c", status: 134, diff: "mount(2) is not implemented"},
	{src: "proc/proc-self-syscall.c", status: 4, diff: "no /proc/PID/syscall: the test skips"},
	{src: "proc/proc-self-wchan.c", status: 4, diff: "no /proc/PID/wchan: the test skips"},
}

// totalsLine is kselftest's summary line.
var totalsLine = regexp.MustCompile(`(?m)^# Totals: .*$`)

func TestLinuxSelftests(t *testing.T) {
	kvmtest.Require(t)
	dir := os.Getenv("EMUCKPT_LINUX_SELFTESTS")
	if dir == "" {
		t.Skip("skipping: set EMUCKPT_LINUX_SELFTESTS to Linux's tools/testing/selftests (.ci/run unpacks it from linux-source) to run them")
	}
	cc, err := exec.LookPath("musl-gcc")
	require.NoError(t, err, "musl-gcc builds the selftests: install musl-tools")
	root := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(root, "bin"), 0o755))
	var match, documented int
	for _, st := range selftests {
		name := strings.TrimSuffix(filepath.Base(st.src), ".c")
		t.Run(name, func(t *testing.T) {
			src := filepath.Join(dir, st.src)
			args := []string{"-static", "-O2", "-w", "-I" + filepath.Dir(src), "-I" + dir, "-o", filepath.Join(root, "bin", name), src}
			if st.extra != "" {
				args = append(args, filepath.Join(filepath.Dir(src), st.extra))
			}
			out, err := exec.Command(cc, append(args, "-lpthread", "-lrt")...).CombinedOutput()
			require.NoError(t, err, "building %s: %s", st.src, out)

			cmd := exec.Command(filepath.Join(root, "bin", name))
			cmd.Args[0], cmd.Dir, cmd.Env = "bin/"+name, root, defaultEnv
			want := runCmd(t, cmd)
			cmd = exec.Command(os.Args[0], "run", "--root", root, "--cwd", "/", "bin/"+name)
			cmd.Dir, cmd.Env = root, append(os.Environ(), "EMUCKPT_E2E_MAIN=1")
			got := runCmd(t, cmd)
			if st.diff != "" {
				documented++
				t.Logf("documented difference (%s): status %d natively, %d under emuckpt", st.diff, want.status, got.status)
				assert.Equal(t, st.status, got.status, "status; stdout:\n%s\nstderr:\n%s", got.stdout, got.stderr)
				return
			}
			ok := assert.Equal(t, want.status, got.status, "status; stdout:\n%s\nstderr:\n%s", got.stdout, got.stderr)
			ok = assert.Equal(t, totalsLine.FindString(want.stdout+want.stderr), totalsLine.FindString(got.stdout+got.stderr), "kselftest totals") && ok
			if ok {
				match++
			}
		})
	}
	t.Logf("Linux selftests: %d programs: %d match, %d documented differences, %d fail",
		len(selftests), match, documented, len(selftests)-match-documented)
}
