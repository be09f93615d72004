package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/emuckpt/emuckpt/internal/kvmtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// traceLines are the --trace lines of stderr, without the prefix.
func traceLines(stderr string) []string {
	var out []string
	for _, l := range strings.Split(stderr, "\n") {
		if rest, ok := strings.CutPrefix(l, "emuckpt: trace: "); ok {
			out = append(out, rest)
		}
	}
	return out
}

// TestTraceDecodedLines: --trace decodes calls as strace does. Only lines
// that do not depend on addresses or timing are compared.
func TestTraceDecodedLines(t *testing.T) {
	kvmtest.Require(t)
	tests := []struct {
		name string
		args []string
		want []string // lines that must appear, in this order
		once string   // a call that blocks, printed exactly once
	}{
		{"hello", []string{img("hello")}, []string{
			`writev(1, [{iov_base="hello, world", iov_len=12}, {iov_base="\n", iov_len=1}], 2) = 13`,
			`exit_group(0) = ?`,
		}, ""},
		{"readfile missing", []string{img("readfile"), "/nope"}, []string{
			`open("/nope", O_RDONLY|O_LARGEFILE, 0) = -1 ENOENT (No such file or directory)`,
			`writev(1, [{iov_base="open: errno=ENOENT", iov_len=18}, {iov_base="\n", iov_len=1}], 2) = 19`,
			`exit_group(2) = ?`,
		}, ""},
		{"procs", []string{img("procs")}, []string{
			`[pid 2] fork() = 3`,
			`[pid 3] exit_group(0) = ?`,
			`[pid 2] wait4(3, [{WIFEXITED(s) && WEXITSTATUS(s) == 0}], 0, NULL) = 3`,
			`[pid 2] wait4(4, [{WIFEXITED(s) && WEXITSTATUS(s) == 10}], 0, NULL) = 4`,
			`[pid 2] kill(6, SIGTERM) = 0`,
			`[pid 2] wait4(6, [{WIFSIGNALED(s) && WTERMSIG(s) == SIGTERM}], 0, NULL) = 6`,
			`[pid 2] pipe([3, 4]) = 0`,
		}, ""},
		{"sleeper", []string{img("sleeper")}, []string{
			`nanosleep({tv_sec=1, tv_nsec=0}, NULL) = 0`,
			`writev(1, [{iov_base="", iov_len=0}, {iov_base="end", iov_len=3}], 2) = 3`,
		}, "nanosleep("},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := native(t, tt.args...)
			r := emuckpt(t, append([]string{"run", "--trace"}, tt.args...)...)
			assert.Equal(t, want.status, r.status)
			assert.Equal(t, want.stdout, r.stdout, "tracing changed what the guest did")
			lines := traceLines(r.stderr)
			i := 0
			for _, l := range lines {
				if i < len(tt.want) && l == tt.want[i] {
					i++
				}
			}
			assert.Equal(t, len(tt.want), i, "missing (in order) %q in:\n%s", tt.want[min(i, len(tt.want)-1)], strings.Join(lines, "\n"))
			if tt.once != "" {
				n := 0
				for _, l := range lines {
					if strings.HasPrefix(l, tt.once) {
						n++
					}
				}
				assert.Equal(t, 1, n, "a blocking call is printed once, when it completes")
			}
		})
	}
}

// traceFile is what the tests read of a --trace-json file.
type traceFile struct {
	TraceEvents []struct {
		Name string         `json:"name"`
		Cat  string         `json:"cat"`
		Ph   string         `json:"ph"`
		Ts   *float64       `json:"ts"`
		Dur  *float64       `json:"dur"`
		Pid  *int           `json:"pid"`
		Tid  *int           `json:"tid"`
		S    string         `json:"s"`
		Args map[string]any `json:"args"`
	} `json:"traceEvents"`
}

func readTrace(t *testing.T, path string) traceFile {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var tf traceFile
	require.NoError(t, json.Unmarshal(b, &tf), "not JSON")
	require.NotEmpty(t, tf.TraceEvents)
	for _, e := range tf.TraceEvents {
		require.NotNil(t, e.Ts, "%+v", e)
		require.NotNil(t, e.Pid, "%+v", e)
		require.NotNil(t, e.Tid, "%+v", e)
		assert.GreaterOrEqual(t, *e.Ts, 0.0)
		switch e.Ph {
		case "X":
			require.NotNil(t, e.Dur, "%+v", e)
			assert.GreaterOrEqual(t, *e.Dur, 0.0)
			assert.Equal(t, "syscall", e.Cat)
			assert.Contains(t, e.Args, "ret")
		case "i":
			assert.Contains(t, []string{"t", "g"}, e.S)
		case "C", "M":
			assert.NotEmpty(t, e.Args)
		default:
			t.Errorf("unexpected phase %q in %+v", e.Ph, e)
		}
	}
	return tf
}

// TestTraceJSONProcs: a multi-process program's calls are complete events
// of each process and thread, named by metadata, with its children's ends
// and the signal that killed one.
func TestTraceJSONProcs(t *testing.T) {
	kvmtest.Require(t)
	path := filepath.Join(t.TempDir(), "procs.json")
	r := emuckpt(t, "run", "--trace-json", path, img("procs"))
	require.Equal(t, native(t, img("procs")).stdout, r.stdout)
	tf := readTrace(t, path)
	calls := map[int]map[string]int{} // pid -> call -> count
	names := map[int]string{}
	children := map[string]bool{} // what fork returned
	var ends []string
	faults := 0.0
	for _, e := range tf.TraceEvents {
		switch {
		case e.Ph == "X":
			assert.Equal(t, *e.Pid, *e.Tid, "procs has one thread per process")
			if calls[*e.Pid] == nil {
				calls[*e.Pid] = map[string]int{}
			}
			calls[*e.Pid][e.Name]++
			if e.Name == "fork" || e.Name == "vfork" || e.Name == "clone" {
				children[e.Args["ret"].(string)] = true
			}
		case e.Ph == "M" && e.Name == "process_name":
			names[*e.Pid] = e.Args["name"].(string)
		case e.Ph == "i" && e.Cat == "process":
			ends = append(ends, e.Name)
		case e.Ph == "C" && e.Name == "page faults":
			faults += e.Args["faults"].(float64)
		}
	}
	assert.Greater(t, len(calls), 3, "events of the parent and its children")
	for pid := range calls {
		assert.True(t, pid == 2 || children[strconv.Itoa(pid)], "pid %d was not made by a traced fork", pid)
	}
	assert.GreaterOrEqual(t, calls[2]["wait4"], 4)
	for pid := range calls {
		assert.Equal(t, "procs", names[pid], "pid %d has no process_name", pid)
	}
	assert.Contains(t, ends, "killed by SIGTERM")
	assert.Contains(t, ends, "exit")
	assert.Greater(t, faults, 0.0, "page faults are counted")
}

// TestTraceJSONDevice: device MMIO accesses appear as counters, per
// device, summing to the accesses the program made.
func TestTraceJSONDevice(t *testing.T) {
	kvmtest.Require(t)
	path := filepath.Join(t.TempDir(), "dev.json")
	r := emuckpt(t, "run", "--trace-json", path, img("bsr_barrier"))
	require.Equal(t, 0, r.status, r.stderr)
	tf := readTrace(t, path)
	sums := map[string]float64{}
	for _, e := range tf.TraceEvents {
		if e.Ph == "C" && e.Name == "device MMIO accesses" {
			for dev, n := range e.Args {
				sums[dev] += n.(float64)
			}
		}
	}
	assert.Greater(t, sums["bsr8_0"], 0.0, "%v", sums)
	assert.Zero(t, sums["hpet"], "%v", sums)
}

// TestTraceJSONCheckpointRestore: a checkpoint and a restore are marked,
// and the restored run's calls are traced.
func TestTraceJSONCheckpointRestore(t *testing.T) {
	kvmtest.Require(t)
	dir := t.TempDir()
	image := filepath.Join(dir, "hello.img")
	run := filepath.Join(dir, "run.json")
	r := emuckpt(t, "run", "--trace-json", run, "--checkpoint-to", image, "--checkpoint-at", "syscall:2", img("hello"))
	require.Equal(t, 0, r.status, r.stderr)
	marks := func(tf traceFile) (out []string) {
		for _, e := range tf.TraceEvents {
			if e.Ph == "i" && e.S == "g" {
				out = append(out, e.Name)
			}
		}
		return out
	}
	assert.Equal(t, []string{"checkpoint"}, marks(readTrace(t, run)))
	restored := filepath.Join(dir, "restore.json")
	r = emuckpt(t, "restore", "--trace-json", restored, image)
	require.Equal(t, 0, r.status, r.stderr)
	assert.Equal(t, "hello, world\n", r.stdout)
	tf := readTrace(t, restored)
	assert.Equal(t, []string{"restore"}, marks(tf))
	var calls []string
	for _, e := range tf.TraceEvents {
		if e.Ph == "X" {
			calls = append(calls, e.Name)
		}
	}
	assert.Contains(t, calls, "writev")
	assert.Equal(t, "exit_group", calls[len(calls)-1])
}

// TestTraceJSONBadFile: a file that cannot be created is a usage error.
func TestTraceJSONBadFile(t *testing.T) {
	r := emuckpt(t, "run", "--trace-json", filepath.Join(t.TempDir(), "no", "such", "dir.json"), img("hello"))
	assert.Equal(t, exitFailure, r.status)
	assert.Contains(t, r.stderr, "emuckpt: run: --trace-json: ")
}
