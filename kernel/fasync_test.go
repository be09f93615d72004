package kernel

import (
	"testing"

	"github.com/emuckpt/emuckpt/kernel/vfs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// newTestTask is a task of a process with a descriptor table and no
// machine: enough for the handlers that touch neither memory nor vCPU.
func newBareTask(t *testing.T) *Task {
	t.Helper()
	p := newProcess(nil, vfs.NewFDTable(), "/", "/prog")
	return p.tasks[0]
}

func TestFcntlOwner(t *testing.T) {
	k := &Kernel{}
	task := newBareTask(t)
	r, _ := vfs.NewPipe(0)
	fd, errno := task.proc.fds.Install(r, false)
	require.Zero(t, errno)
	const bad = 99
	neg := func(n int64) uint64 { return uint64(n) }
	for _, tt := range []struct {
		name     string
		fd       int
		cmd, arg uint64
		ret      uint64
		errno    unix.Errno
	}{
		{"no owner yet", fd, unix.F_GETOWN, 0, 0, 0},
		{"F_SETOWN the process", fd, unix.F_SETOWN, firstPID, 0, 0},
		{"F_GETOWN", fd, unix.F_GETOWN, 0, firstPID, 0},
		{"F_SETOWN its process group", fd, unix.F_SETOWN, neg(-firstPID), 0, 0},
		{"F_GETOWN of a group is negative", fd, unix.F_GETOWN, 0, neg(-firstPID), 0},
		{"F_SETOWN another process", fd, unix.F_SETOWN, 3, 0, unix.ESRCH},
		{"F_SETOWN another group", fd, unix.F_SETOWN, neg(-1), 0, unix.ESRCH},
		{"the owner stays after ESRCH", fd, unix.F_GETOWN, 0, neg(-firstPID), 0},
		{"F_SETOWN on a bad fd", bad, unix.F_SETOWN, firstPID, 0, unix.EBADF},
		{"F_SETOWN on a bad fd with a bad pid", bad, unix.F_SETOWN, 3, 0, unix.EBADF},
		{"F_SETOWN 0", fd, unix.F_SETOWN, 0, 0, 0},
		{"no owner again", fd, unix.F_GETOWN, 0, 0, 0},
		{"F_GETSIG default", fd, unix.F_GETSIG, 0, 0, 0},
		{"F_SETSIG 64", fd, unix.F_SETSIG, 64, 0, 0},
		{"F_GETSIG", fd, unix.F_GETSIG, 0, 64, 0},
		{"F_SETSIG 65", fd, unix.F_SETSIG, 65, 0, unix.EINVAL},
		{"F_SETSIG 65 on a bad fd", bad, unix.F_SETSIG, 65, 0, unix.EBADF},
		{"F_GETSIG on a bad fd", bad, unix.F_GETSIG, 0, 0, unix.EBADF},
		{"F_SETSIG 0: SIGIO", fd, unix.F_SETSIG, 0, 0, 0},
	} {
		ret, errno, ok := k.fcntlOwner(task, tt.fd, tt.cmd, tt.arg)
		require.True(t, ok, tt.name)
		assert.Equal(t, tt.errno, errno, tt.name)
		assert.Equal(t, tt.ret, ret, tt.name)
	}
	_, _, ok := k.fcntlOwner(task, fd, unix.F_GETFL, 0)
	assert.False(t, ok, "other commands are not fcntlOwner's")
}

func TestSignalWaiting(t *testing.T) {
	k := &Kernel{}
	usr1, chld, term := int(unix.SIGUSR1), int(unix.SIGCHLD), int(unix.SIGTERM)
	for _, tt := range []struct {
		name    string
		pending int
		blocked bool
		handler uint64
		want    bool
	}{
		{"nothing pending", 0, false, 0, false},
		{"handled", usr1, false, 0x401000, true},
		{"handled but blocked", usr1, true, 0x401000, false},
		{"ignored", usr1, false, sigIgn, false},
		{"ignored by default", chld, false, sigDfl, false},
		{"fatal by default", term, false, sigDfl, true},
	} {
		task := newBareTask(t)
		if tt.pending != 0 {
			k.sendSignal(task, tt.pending, siUser)
			task.proc.actions[tt.pending].Handler = tt.handler
			if tt.blocked {
				task.sigmask = sigBit(tt.pending)
			}
		}
		assert.Equal(t, tt.want, interruptingSignal(task), tt.name)
	}
}
