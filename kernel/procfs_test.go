package kernel

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// statFields splits a /proc stat line: pid, (comm), then the rest.
func statFields(t *testing.T, line string) []string {
	t.Helper()
	open, close := strings.IndexByte(line, '('), strings.LastIndexByte(line, ')')
	require.True(t, open > 0 && close > open, line)
	return append([]string{strings.TrimSpace(line[:open]), line[open : close+1]}, strings.Fields(line[close+1:])...)
}

// statusLine is the value of a "Key:\t..." line.
func statusLine(status, key string) string {
	for _, l := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(l, key+":\t"); ok {
			return v
		}
	}
	return "<missing>"
}

func TestProcView(t *testing.T) {
	k, leader := newTestTask(t, false)
	p := leader.proc
	v := procView{k}
	k.sched.cur = leader

	// A second thread, blocked in a call, with a signal blocked.
	th := k.newTask(p)
	th.state, th.sigmask, th.comm = taskBlocked, sigBit(int(unix.SIGUSR2)), "worker"
	p.actions[unix.SIGUSR1] = sigAction{Handler: 0x401000}
	p.actions[unix.SIGPIPE] = sigAction{Handler: sigIgn}

	// A child that exited and was not reaped.
	zombie := &Process{pid: 9, pgid: p.pgid, sid: p.sid, parent: p, exe: "/bin/child",
		exited: true, status: ExitStatus{Code: 3}, exitSignal: int(unix.SIGCHLD), umask: 0o022}
	zombie.tasks = []*Task{{tid: 9, proc: zombie, state: taskExited, comm: "child"}}
	k.procs[9] = zombie

	pid, tid := v.Self()
	assert.Equal(t, [2]int{p.pid, leader.tid}, [2]int{pid, tid})
	assert.Equal(t, []int{p.pid, 9}, v.PIDs())
	tids, ok := v.Threads(p.pid)
	assert.True(t, ok)
	assert.Equal(t, []int{leader.tid, th.tid}, tids)
	_, ok = v.Threads(8)
	assert.False(t, ok)
	exe, ok := v.Exe(p.pid)
	assert.Equal(t, "/usr/bin/a-rather-long-program-name", exe)
	assert.True(t, ok)
	_, ok = v.Exe(9)
	assert.False(t, ok, "a zombie has no exe")

	tests := []struct {
		name                 string
		pid, tid             int
		id, comm, state      string
		threads, exitCode    string
		statusState, sigBlk  string
		statusPid, statusCgt string
	}{
		{"process", p.pid, 0, "2", "(a-rather-long-p)", "R", "2", "0", "R (running)", "0000000000000000", "2", "0000000000000200"},
		{"leader thread", p.pid, leader.tid, "2", "(a-rather-long-p)", "R", "2", "0", "R (running)", "0000000000000000", "2", "0000000000000200"},
		{"blocked thread", p.pid, th.tid, "3", "(worker)", "S", "2", "0", "S (sleeping)", "0000000000000800", "3", "0000000000000200"},
		{"zombie", 9, 0, "9", "(child)", "Z", "1", "768", "Z (zombie)", "0000000000000000", "9", "0000000000000000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, ok := v.File(tt.pid, tt.tid, "stat")
			require.True(t, ok)
			f := statFields(t, string(b))
			require.Len(t, f, 52)
			assert.Equal(t, []string{tt.id, tt.comm, tt.state}, f[:3])
			ppid := "1" // the run's first process
			if tt.pid == 9 {
				ppid = "2"
			}
			assert.Equal(t, ppid, f[3], "ppid")
			assert.Equal(t, tt.threads, f[19], "num_threads")
			assert.Equal(t, "17", f[37], "exit_signal")
			assert.Equal(t, tt.exitCode, f[51], "exit_code")

			b, ok = v.File(tt.pid, tt.tid, "status")
			require.True(t, ok)
			s := string(b)
			assert.Equal(t, tt.statusState, statusLine(s, "State"))
			assert.Equal(t, tt.sigBlk, statusLine(s, "SigBlk"))
			assert.Equal(t, tt.statusPid, statusLine(s, "Pid"))
			assert.Equal(t, tt.statusCgt, statusLine(s, "SigCgt"))
			assert.Equal(t, "0022", statusLine(s, "Umask"))
			assert.True(t, strings.HasPrefix(s, "Name:\t"+strings.Trim(tt.comm, "()")+"\n"), s)
		})
	}

	b, _ := v.File(p.pid, 0, "status")
	assert.Equal(t, "0000000000001000", statusLine(string(b), "SigIgn"))
	assert.Contains(t, statusLine(string(b), "VmRSS"), " kB")
	b, _ = v.File(9, 0, "status")
	assert.Equal(t, "<missing>", statusLine(string(b), "VmRSS"), "a zombie has no memory")
	b, _ = v.File(p.pid, 0, "maps")
	assert.Contains(t, string(b), "rw-p")
	b, _ = v.File(9, 0, "maps")
	assert.Empty(t, b)
	p.args = []string{"prog", "-x", ""}
	b, _ = v.File(p.pid, 0, "cmdline")
	assert.Equal(t, "prog\x00-x\x00\x00", string(b))
	b, _ = v.File(p.pid, th.tid, "comm")
	assert.Equal(t, "worker\n", string(b))
	_, ok = v.File(p.pid, 99, "stat")
	assert.False(t, ok, "no such thread")
}

// TestProcSystemFiles: the files of /proc itself, in Linux's formats,
// with the guest's figures.
func TestProcSystemFiles(t *testing.T) {
	k, leader := newTestTask(t, false)
	v := procView{k}
	k.sched.cur = leader
	assert.Same(t, leader.proc.fds, v.Files(leader.proc.pid))
	assert.Nil(t, v.Files(4242))

	meminfo := string(v.System("meminfo"))
	assert.Regexp(t, `^MemTotal: +\d+ kB\nMemFree: +\d+ kB\nMemAvailable: +\d+ kB\n`, meminfo)
	assert.Contains(t, meminfo, "\nSwapTotal:             0 kB\n", "Linux's columns: 16 for the name, 8 for the figure")
	assert.Equal(t, uint64(k.frames.Capacity())*4, func() uint64 {
		var n uint64
		_, err := fmt.Sscanf(meminfo, "MemTotal: %d kB", &n)
		require.NoError(t, err)
		return n
	}(), "MemTotal is the guest's RAM, as sysinfo's totalram")
	assert.Regexp(t, `^0\.00 0\.00 0\.00 1/1 \d+\n$`, string(v.System("loadavg")))
	assert.Regexp(t, `^\d+\.\d\d 0\.00\n$`, string(v.System("uptime")))
	assert.Equal(t, "Linux version 6.1.0-emuckpt (emuckpt@emuckpt) (go) "+utsVersion+"\n", string(v.System("version")))
	assert.Regexp(t, `^cpu  \d+ 0 \d+ \d+ 0 0 0 0 0 0\ncpu0 `, string(v.System("stat")))
	assert.Contains(t, string(v.System("stat")), "\nprocs_running 1\n")
	assert.Nil(t, v.System("nothing"))
}
