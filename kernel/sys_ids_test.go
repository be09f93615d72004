package kernel

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"golang.org/x/sys/unix"
)

// TestSetIDs covers what the guest cannot see natively in one run: the
// same call with and without privilege. Ids that would change are ENOSYS
// with privilege (emuckpt cannot change them) and EPERM without.
func TestSetIDs(t *testing.T) {
	uid := uint64(unix.Getuid())
	other := uid + 4242
	keep := uint64(keepID)
	cases := []struct {
		name       string
		h          handler
		a          []uint64
		privileged bool
		errno      unix.Errno
	}{
		{"setuid self", (*Kernel).sysSetuid, []uint64{uid}, false, 0},
		{"setuid other", (*Kernel).sysSetuid, []uint64{other}, false, unix.EPERM},
		{"setuid other, privileged", (*Kernel).sysSetuid, []uint64{other}, true, unix.ENOSYS},
		{"setuid -1", (*Kernel).sysSetuid, []uint64{keep}, true, unix.EINVAL},
		{"setreuid keep", (*Kernel).sysSetreuid, []uint64{keep, keep}, false, 0},
		{"setreuid other euid", (*Kernel).sysSetreuid, []uint64{keep, other}, false, unix.EPERM},
		{"setreuid other ruid, privileged", (*Kernel).sysSetreuid, []uint64{other, keep}, true, unix.ENOSYS},
		{"setresuid self", (*Kernel).sysSetresuid, []uint64{uid, uid, keep}, false, 0},
		{"setresuid other saved", (*Kernel).sysSetresuid, []uint64{keep, keep, other}, false, unix.EPERM},
		{"setresgid other, privileged", (*Kernel).sysSetresgid, []uint64{other, other, other}, true, unix.ENOSYS},
		{"setgid other", (*Kernel).sysSetgid, []uint64{uint64(unix.Getgid()) + 4242}, false, unix.EPERM},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			k, task := newTestTask(t, c.privileged)
			_, errno := call(k, task, c.h, c.a...)
			assert.Equal(t, c.errno, errno)
		})
	}
}

// TestSchedPolicies: a real-time policy is EPERM without privilege and
// not implemented with it; SCHED_OTHER with priority 0 always succeeds.
func TestSchedPolicies(t *testing.T) {
	cases := []struct {
		name       string
		policy     uint64
		prio       uint32
		privileged bool
		errno      unix.Errno
	}{
		{"other", schedOther, 0, false, 0},
		{"other with reset-on-fork", schedOther | schedResetOnFork, 0, false, 0},
		{"fifo", schedFIFO, 10, false, unix.EPERM},
		{"fifo, privileged", schedFIFO, 10, true, unix.ENOSYS},
		{"rr priority 100", schedRR, 100, true, unix.EINVAL},
		{"batch", schedBatch, 0, false, unix.ENOSYS},
		{"deadline", schedDeadline, 0, true, unix.EINVAL},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			k, task := newTestTask(t, c.privileged)
			assert.NoError(t, task.proc.as.CopyOut(scratch, binary.LittleEndian.AppendUint32(nil, c.prio)))
			_, errno := call(k, task, (*Kernel).sysSchedSetscheduler, 0, c.policy, scratch)
			assert.Equal(t, c.errno, errno)
		})
	}
}
