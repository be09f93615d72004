package main

import (
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/emuckpt/emuckpt/internal/kvmtest"
	"github.com/emuckpt/emuckpt/verify"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// emuckptEnv runs the CLI with args and env added to the environment.
func emuckptEnv(t *testing.T, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(append(os.Environ(), "EMUCKPT_E2E_MAIN=1"), env...)
	return runCmd(t, cmd)
}

// junitDoc is what a CI server reads of a JUnit report.
type junitDoc struct {
	Tests    int `xml:"tests,attr"`
	Failures int `xml:"failures,attr"`
	Errors   int `xml:"errors,attr"`
	Suites   []struct {
		Name  string `xml:"name,attr"`
		Cases []struct {
			Name    string `xml:"name,attr"`
			Failure *struct {
				Message string `xml:"message,attr"`
				Text    string `xml:",chardata"`
			} `xml:"failure"`
			Error *struct{} `xml:"error"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

func readJUnit(t *testing.T, path string) junitDoc {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var doc junitDoc
	require.NoError(t, xml.Unmarshal(b, &doc), string(b))
	return doc
}

// TestVerifyRestartBug: restart_bug caches a BSR value and an HPET
// reading across its system calls. verify must catch it under fresh
// (the register reads zero, the counter started over) at the points
// between the store and the checks, and pass it under preserve; the
// fixed program passes under both.
func TestVerifyRestartBug(t *testing.T) {
	kvmtest.Require(t)
	dir := t.TempDir()
	junit, js := filepath.Join(dir, "r.xml"), filepath.Join(dir, "r.json")
	r := emuckpt(t, "verify", "--junit", junit, "--json", js, img("restart_bug"))
	require.Equal(t, 1, r.status, r.stdout+r.stderr)
	assert.Regexp(t, `reference: exit status 0, \d+ system calls, \d+ device accesses, 0 emuckpt_checkpoint\(\) calls`, r.stdout)
	assert.Contains(t, r.stdout, "FAIL "+img("restart_bug")+" syscall:")
	assert.Regexp(t, `device:\d+ \(read bsr8_0\+0x0, 8 bytes\) fresh: exit status 1, the reference's 0; stdout differs`, r.stdout)
	assert.Contains(t, r.stdout, "> ")
	assert.Contains(t, r.stdout, "bsr: lost")
	assert.Contains(t, r.stdout, "bsr: kept", "the reference's line, shown beside the restored one")
	assert.NotContains(t, r.stdout, " preserve: ", "no failure under preserve")

	doc := readJUnit(t, junit)
	recs, err := verify.ReadJSON(js)
	require.NoError(t, err)
	require.Len(t, doc.Suites, 1)
	assert.Equal(t, len(recs), doc.Tests, "one testcase per point and policy")
	assert.Zero(t, doc.Errors)
	require.Positive(t, doc.Failures)
	failures := 0
	for _, c := range doc.Suites[0].Cases {
		if strings.HasSuffix(c.Name, " preserve") {
			assert.Nil(t, c.Failure, c.Name)
		}
		if c.Failure != nil {
			failures++
			assert.True(t, strings.HasSuffix(c.Name, " fresh"), c.Name)
			assert.Contains(t, c.Failure.Text, "first difference at byte")
		}
	}
	assert.Equal(t, doc.Failures, failures)
	for _, rec := range recs {
		assert.Equal(t, len(recs), rec.Total)
		if rec.Policy == verify.Preserve {
			assert.Equal(t, verify.Pass, rec.Outcome, rec.TestName())
		}
	}

	r = emuckpt(t, "verify", "--device-state", "preserve", img("restart_bug"))
	assert.Equal(t, 0, r.status, r.stdout+r.stderr)
	assert.Regexp(t, `verify: \d+ points, \d+ restores: \d+ passed, 0 diverged, 0 errors in `, r.stdout)

	r = emuckpt(t, "verify", "--perturb", "none", "--perturb", "hpet-jump=10s,clock-jump=1h", img("restart_bug"), "fixed")
	assert.Equal(t, 0, r.status, "the fixed program passes everywhere: %s", r.stdout+r.stderr)
}

// TestVerifyPerturbations: bsr-clear breaks restart_bug under preserve
// as fresh does; hpet-jump and clock-jump leave it correct (its counter
// only moves forward).
func TestVerifyPerturbations(t *testing.T) {
	kvmtest.Require(t)
	r := emuckpt(t, "verify", "--at", "device", "--device-state", "preserve", "--perturb", "bsr-clear", "--perturb", "hpet-jump=1s", img("restart_bug"))
	require.Equal(t, 1, r.status, r.stdout+r.stderr)
	assert.Contains(t, r.stdout, "preserve bsr-clear: exit status 1")
	assert.NotContains(t, r.stdout, "hpet-jump=1s:")
}

// TestVerifyKeep: --keep writes the image of a diverging point and
// prints the restore command that reproduces the divergence.
func TestVerifyKeep(t *testing.T) {
	kvmtest.Require(t)
	keep := t.TempDir()
	r := emuckpt(t, "verify", "--at", "syscall", "--device-state", "fresh", "--keep", keep, img("restart_bug"))
	require.Equal(t, 1, r.status, r.stdout+r.stderr)
	m := regexp.MustCompile(`reproduce: emuckpt (restore --device-state=fresh \S+)`).FindStringSubmatch(r.stdout)
	require.NotNil(t, m, r.stdout)
	args := strings.Fields(m[1])
	assert.FileExists(t, args[len(args)-1])
	assert.True(t, strings.HasPrefix(args[len(args)-1], keep))
	again := emuckpt(t, args...)
	assert.Equal(t, 1, again.status, again.stderr)
	assert.Contains(t, again.stdout, "bsr: lost")

	// With a perturbation, the command carries it.
	r = emuckpt(t, "verify", "--at", "syscall", "--device-state", "preserve", "--perturb", "bsr-clear", "--keep", keep, img("restart_bug"))
	require.Equal(t, 1, r.status)
	m = regexp.MustCompile(`reproduce: emuckpt (restore --device-state=preserve --perturb=bsr-clear \S+)`).FindStringSubmatch(r.stdout)
	require.NotNil(t, m, r.stdout)
	again = emuckpt(t, strings.Fields(m[1])...)
	assert.Contains(t, again.stdout, "bsr: lost")
	preserved := emuckpt(t, "restore", "--device-state=preserve", strings.Fields(m[1])[3])
	assert.Contains(t, preserved.stdout, "bsr: kept", "the same image without the perturbation")

	// The machine flags of the verify are in the command, or the
	// restore would refuse the image.
	root := t.TempDir()
	r = emuckpt(t, "verify", "--root", root, "--bsr", "8", "--hpet", "timers=4", "--tmpfs", "/scratch:1M", "--at", "syscall",
		"--device-state", "fresh", "--keep", keep, img("restart_bug"))
	require.Equal(t, 1, r.status, r.stderr)
	m = regexp.MustCompile(`reproduce: emuckpt (restore .*)`).FindStringSubmatch(r.stdout)
	require.NotNil(t, m, r.stdout)
	assert.Contains(t, m[1], "--root "+root)
	assert.Contains(t, m[1], "--bsr 8:8:4096")
	assert.Contains(t, m[1], "--hpet timers=4,period=69841279")
	assert.Contains(t, m[1], "--tmpfs /scratch:1048576")
	again = emuckpt(t, strings.Fields(m[1])...)
	assert.Contains(t, again.stdout, "bsr: lost", again.stderr)
}

// TestVerifySharding: shards given by --shard, by Bazel's variables and
// by a Kubernetes indexed Job cover every result exactly once, and
// --merge joins them into the unsharded report.
func TestVerifySharding(t *testing.T) {
	kvmtest.Require(t)
	dir := t.TempDir()
	whole := filepath.Join(dir, "whole.json")
	r := emuckpt(t, "verify", "--json", whole, img("restart_bug"))
	require.Equal(t, 1, r.status, r.stderr)
	want, err := verify.ReadJSON(whole)
	require.NoError(t, err)

	for _, c := range []struct {
		name string
		env  func(i int) []string
		args func(i int) []string
	}{
		{"flag", func(int) []string { return nil }, func(i int) []string { return []string{"--shard", itoa(i) + "/3"} }},
		{"bazel", func(i int) []string {
			return []string{"TEST_SHARD_INDEX=" + itoa(i), "TEST_TOTAL_SHARDS=3", "TEST_SHARD_STATUS_FILE=" + filepath.Join(dir, "bazel-status-"+itoa(i))}
		}, func(int) []string { return nil }},
		{"kubernetes", func(i int) []string { return []string{"JOB_COMPLETION_INDEX=" + itoa(i), "EMUCKPT_VERIFY_SHARDS=3"} },
			func(int) []string { return nil }},
	} {
		t.Run(c.name, func(t *testing.T) {
			var files []string
			seen := map[string]int{}
			for i := 0; i < 3; i++ {
				f := filepath.Join(dir, c.name+itoa(i)+".json")
				files = append(files, f)
				args := append(append([]string{"verify", "--json", f}, c.args(i)...), img("restart_bug"))
				r := emuckptEnv(t, c.env(i), args...)
				require.Contains(t, []int{0, 1}, r.status, r.stderr)
				assert.Contains(t, r.stdout, "verify: shard "+itoa(i)+"/3:")
				recs, err := verify.ReadJSON(f)
				require.NoError(t, err)
				for _, rec := range recs {
					assert.Equal(t, itoa(i)+"/3", rec.Shard)
					seen[rec.TestName()]++
				}
				if c.name == "bazel" {
					assert.FileExists(t, filepath.Join(dir, "bazel-status-"+itoa(i)))
				}
			}
			require.Len(t, seen, len(want))
			for _, rec := range want {
				assert.Equal(t, 1, seen[rec.TestName()], rec.TestName())
			}
			junit := filepath.Join(dir, c.name+".xml")
			m := emuckpt(t, append([]string{"verify", "--merge", "--junit", junit}, files...)...)
			assert.Equal(t, 1, m.status, "restart_bug diverges: %s", m.stderr)
			assert.Contains(t, m.stdout, "verify: ")
			assert.Equal(t, len(want), readJUnit(t, junit).Tests)

			m = emuckpt(t, append([]string{"verify", "--merge"}, files[:2]...)...)
			assert.Equal(t, 125, m.status, "a shard is missing")
			assert.Contains(t, m.stderr, "a shard is missing")
		})
	}
	r = emuckptEnv(t, []string{"JOB_COMPLETION_INDEX=1"}, "verify", img("hello"))
	assert.Equal(t, 125, r.status)
	assert.Contains(t, r.stderr, "EMUCKPT_VERIFY_SHARDS")
}

func TestVerifyFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"verify"}, "missing PROGRAM"},
		{[]string{"verify", "--at", "page", img("hello")}, "--at"},
		{[]string{"verify", "--every", "2", "--points", "3", img("hello")}, "exclude each other"},
		{[]string{"verify", "--device-state", "fresh,hot", img("hello")}, "--device-state"},
		{[]string{"verify", "--perturb", "reboot", img("hello")}, "unknown perturbation"},
		{[]string{"verify", "--shard", "3/3", img("hello")}, "--shard"},
		{[]string{"verify", "--trace", img("hello")}, "--trace is for run and restore"},
		{[]string{"verify", "--merge"}, "--json files"},
		{[]string{"restore", "--perturb", "hpet-jump=soon", "x.img"}, "--perturb"},
	} {
		r := emuckpt(t, c.args...)
		assert.Equal(t, 125, r.status, "%v", c.args)
		assert.Contains(t, r.stderr, c.want, "%v", c.args)
	}
	r := emuckpt(t, "verify", "--help")
	assert.Equal(t, 0, r.status)
	for _, want := range []string{"hpet-jump=DUR", "clock-jump=DUR", "bsr-clear", "TEST_SHARD_INDEX", "JOB_COMPLETION_INDEX", "EMUCKPT_VERIFY_SHARDS", "--merge"} {
		assert.Contains(t, r.stderr, want)
	}
	r = emuckpt(t, "verify", filepath.Join(t.TempDir(), "missing"))
	assert.Equal(t, 127, r.status)
}
