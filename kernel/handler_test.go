package kernel

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"testing"

	"github.com/emuckpt/emuckpt/guestmm"
	"github.com/emuckpt/emuckpt/kernel/vfs"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// System-call handlers that need only a task, its memory and its files
// are tested here without KVM: on an address space over a byte slice.

// scratch is where newTestTask maps a page of read-write memory for the
// handlers' arguments and results.
const scratch = 0x10000000

// newTestTask returns a kernel and a task with no machine, an FS without a
// root and one page of memory mapped at scratch. privileged fixes
// Kernel.privileged.
func newTestTask(t *testing.T, privileged bool) (*Kernel, *Task) {
	t.Helper()
	const ram = 12 << 20
	mem := make([]byte, ram)
	frames := guestmm.NewFrames(mem, 1<<20, ram)
	as, err := guestmm.NewAddressSpace(mem, frames, guestmm.Layout{})
	require.NoError(t, err)
	_, err = as.Mmap(scratch, guestmm.PageSize, guestmm.ProtRead|guestmm.ProtWrite,
		guestmm.MapPrivate|guestmm.MapAnonymous|guestmm.MapFixed, nil, 0)
	require.NoError(t, err)
	fs, err := vfs.New(vfs.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { fs.Close() })
	k := &Kernel{fs: fs, frames: frames, clock: HostClock{}, privilege: &privileged}
	p := newProcess(as, fs.NewFDTable(), "/", "/usr/bin/a-rather-long-program-name")
	k.adopt(p)
	return k, p.tasks[0]
}

// call runs handler h with the arguments.
func call(k *Kernel, t *Task, h handler, a ...uint64) (uint64, unix.Errno) {
	var args args
	copy(args[:], a)
	return h(k, t, &args)
}

func putString(t *testing.T, task *Task, va uint64, s string) {
	require.NoError(t, task.proc.as.CopyOut(va, append([]byte(s), 0)))
}

func getBytes(t *testing.T, task *Task, va uint64, n int) []byte {
	b := make([]byte, n)
	require.NoError(t, task.proc.as.CopyIn(va, b))
	return b
}

func TestPrctl(t *testing.T) {
	k, task := newTestTask(t, false)
	cases := []struct {
		name  string
		args  []uint64
		ret   uint64
		errno unix.Errno
	}{
		{"get dumpable", []uint64{prGetDumpable}, 1, 0},
		{"set dumpable 0", []uint64{prSetDumpable, 0}, 0, 0},
		{"get dumpable after", []uint64{prGetDumpable}, 0, 0},
		{"set dumpable 2", []uint64{prSetDumpable, 2}, 0, unix.EINVAL},
		{"set pdeathsig", []uint64{prSetPdeathsig, uint64(unix.SIGTERM)}, 0, 0},
		{"set pdeathsig 65", []uint64{prSetPdeathsig, 65}, 0, unix.EINVAL},
		{"get pdeathsig", []uint64{prGetPdeathsig, scratch}, 0, 0},
		{"get pdeathsig EFAULT", []uint64{prGetPdeathsig, 8}, 0, unix.EFAULT},
		{"get name", []uint64{prGetName, scratch + 64}, 0, 0},
		{"set name EFAULT", []uint64{prSetName, 8}, 0, unix.EFAULT},
		{"unknown option", []uint64{9999}, 0, unix.EINVAL},
		{"PR_SET_PTRACER unsupported", []uint64{0x59616d61}, 0, unix.EINVAL},
	}
	for _, c := range cases {
		ret, errno := call(k, task, (*Kernel).sysPrctl, c.args...)
		require.Equal(t, c.errno, errno, c.name)
		require.Equal(t, c.ret, ret, c.name)
	}
	require.Equal(t, uint32(unix.SIGTERM), binary.LittleEndian.Uint32(getBytes(t, task, scratch, 4)))
	// The initial name is the program's file name, cut to 15 bytes.
	require.Equal(t, "a-rather-long-p\x00", string(getBytes(t, task, scratch+64, 16)))
	putString(t, task, scratch+128, "a-name-longer-than-sixteen")
	_, errno := call(k, task, (*Kernel).sysPrctl, prSetName, scratch+128)
	require.Zero(t, errno)
	require.Equal(t, "a-name-longer-t", task.comm)
}

func TestPriority(t *testing.T) {
	uid := uint64(unix.Getuid())
	cases := []struct {
		name       string
		privileged bool
		set        []uint64 // which, who, nice
		setErrno   unix.Errno
		get        []uint64
		ret        uint64
		getErrno   unix.Errno
	}{
		{name: "raise nice", set: []uint64{prioProcess, 0, 5}, get: []uint64{prioProcess, 0}, ret: 15},
		{name: "clamped", set: []uint64{prioProcess, 0, 100}, get: []uint64{prioProcess, firstPID}, ret: 1},
		{name: "lower nice unprivileged", set: []uint64{prioProcess, 0, ^uint64(4)}, setErrno: unix.EACCES, get: []uint64{prioPgrp, 0}, ret: 20},
		{name: "lower nice privileged", privileged: true, set: []uint64{prioUser, uid, ^uint64(99)}, get: []uint64{prioUser, 0}, ret: 40},
		{name: "other process", set: []uint64{prioProcess, 77, 1}, setErrno: unix.ESRCH, get: []uint64{prioProcess, 77}, getErrno: unix.ESRCH},
		{name: "other user", set: []uint64{prioUser, uid + 1, 1}, setErrno: unix.ESRCH, get: []uint64{prioUser, uid + 1}, getErrno: unix.ESRCH},
		{name: "bad which", set: []uint64{3, 0, 1}, setErrno: unix.EINVAL, get: []uint64{3, 0}, getErrno: unix.EINVAL},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			k, task := newTestTask(t, c.privileged)
			_, errno := call(k, task, (*Kernel).sysSetpriority, c.set...)
			require.Equal(t, c.setErrno, errno)
			ret, errno := call(k, task, (*Kernel).sysGetpriority, c.get...)
			require.Equal(t, c.getErrno, errno)
			require.Equal(t, c.ret, ret)
		})
	}
}

func TestGroups(t *testing.T) {
	host, err := unix.Getgroups()
	require.NoError(t, err)
	k, task := newTestTask(t, false)
	n, errno := call(k, task, (*Kernel).sysGetgroups, 0, 0)
	require.Zero(t, errno)
	require.Equal(t, uint64(len(host)), n)
	if len(host) > 0 {
		_, errno = call(k, task, (*Kernel).sysGetgroups, uint64(len(host)-1), scratch)
		require.Equal(t, unix.EINVAL, errno)
	}
	_, errno = call(k, task, (*Kernel).sysGetgroups, ^uint64(0), scratch)
	require.Equal(t, unix.EINVAL, errno)

	cases := []struct {
		name       string
		privileged bool
		size, va   uint64
		errno      unix.Errno
	}{
		{"unprivileged", false, 2, scratch, unix.EPERM},
		{"unprivileged, bad size too", false, 1 << 20, scratch, unix.EPERM},
		{"too many", true, ngroupsMax + 1, scratch, unix.EINVAL},
		{"bad pointer", true, 2, 8, unix.EFAULT},
		{"two groups", true, 2, scratch, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			k, task := newTestTask(t, c.privileged)
			b := binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, 7), 9)
			require.NoError(t, task.proc.as.CopyOut(scratch, b))
			_, errno := call(k, task, (*Kernel).sysSetgroups, c.size, c.va)
			require.Equal(t, c.errno, errno)
			if errno == 0 {
				n, errno := call(k, task, (*Kernel).sysGetgroups, 10, scratch+64)
				require.Zero(t, errno)
				require.Equal(t, uint64(2), n)
				require.Equal(t, b, getBytes(t, task, scratch+64, 8))
			}
		})
	}
}

// TestGroupsInState: a privileged setgroups(0, NULL) empties the list,
// which a checkpoint must keep apart from "the host's list".
func TestGroupsInState(t *testing.T) {
	for _, g := range [][]uint32{nil, {}, {7, 9}} {
		b, err := json.Marshal(ProcessState{Groups: g})
		require.NoError(t, err)
		var ps ProcessState
		require.NoError(t, json.Unmarshal(b, &ps))
		require.Equal(t, g == nil, ps.Groups == nil, "%s", b)
		require.Equal(t, len(g), len(ps.Groups))
	}
}

func TestUmaskUnameSysinfo(t *testing.T) {
	k, task := newTestTask(t, false)
	old, _ := call(k, task, (*Kernel).sysUmask, 0o7777)
	require.Equal(t, uint64(0o022), old)
	old, _ = call(k, task, (*Kernel).sysUmask, 0)
	require.Equal(t, uint64(0o777), old)

	_, errno := call(k, task, (*Kernel).sysUname, scratch)
	require.Zero(t, errno)
	u := getBytes(t, task, scratch, 6*65)
	field := func(i int) string { b := u[i*65 : (i+1)*65]; return string(b[:bytes.IndexByte(b, 0)]) }
	require.Equal(t, "Linux", field(0))
	require.Regexp(t, `^#1 SMP PREEMPT_DYNAMIC `, field(3))
	require.Equal(t, "(none)", field(5))
	_, errno = call(k, task, (*Kernel).sysUname, 8)
	require.Equal(t, unix.EFAULT, errno)

	_, errno = call(k, task, (*Kernel).sysSysinfo, scratch)
	require.Zero(t, errno)
	si := getBytes(t, task, scratch, 112)
	require.Equal(t, uint64(11<<20), binary.LittleEndian.Uint64(si[32:]), "totalram")
	require.NotZero(t, binary.LittleEndian.Uint64(si[40:]), "freeram")
	require.Equal(t, uint16(1), binary.LittleEndian.Uint16(si[80:]), "procs")
	require.Equal(t, uint32(1), binary.LittleEndian.Uint32(si[104:]), "mem_unit")
	_, errno = call(k, task, (*Kernel).sysSysinfo, 8)
	require.Equal(t, unix.EFAULT, errno)
}

func TestMlock(t *testing.T) {
	const limit = 8 << 20 // RLIMIT_MEMLOCK
	// Setups run before the call.
	lockScratch := func(t *testing.T, k *Kernel, task *Task) {
		_, errno := call(k, task, (*Kernel).sysMlock, scratch, 4096)
		require.Zero(t, errno)
	}
	mapAt := func(size uint64, prot guestmm.Prot) func(*testing.T, *Kernel, *Task) {
		return func(t *testing.T, _ *Kernel, task *Task) {
			_, err := task.proc.as.Mmap(0x20000000, size, prot, guestmm.MapPrivate|guestmm.MapAnonymous|guestmm.MapFixed, nil, 0)
			require.NoError(t, err)
		}
	}
	cases := []struct {
		name       string
		privileged bool
		setup      func(*testing.T, *Kernel, *Task)
		h          handler
		args       []uint64
		errno      unix.Errno
		locked     uint64 // bytes locked afterwards
		populated  bool   // the scratch page is present afterwards
	}{
		{name: "one page", h: (*Kernel).sysMlock, args: []uint64{scratch, 1}, locked: 4096, populated: true},
		{name: "unaligned start", h: (*Kernel).sysMlock, args: []uint64{scratch + 100, 10}, locked: 4096, populated: true},
		{name: "zero length", h: (*Kernel).sysMlock, args: []uint64{scratch, 0}},
		{name: "unmapped", h: (*Kernel).sysMlock, args: []uint64{scratch + 4096, 4096}, errno: unix.ENOMEM},
		{name: "runs into a hole", h: (*Kernel).sysMlock, args: []uint64{scratch, 8192}, errno: unix.ENOMEM},
		{name: "length wraps to 0 when page aligned", h: (*Kernel).sysMlock, args: []uint64{scratch, ^uint64(0) - 10}},
		{name: "end wraps", h: (*Kernel).sysMlock, args: []uint64{scratch, ^uint64(16383)}, errno: unix.ENOMEM},
		{name: "end wraps, privileged", privileged: true, h: (*Kernel).sysMlock, args: []uint64{scratch, ^uint64(16383)}, errno: unix.EINVAL},
		{name: "munlock end wraps", h: (*Kernel).sysMunlock, args: []uint64{scratch, ^uint64(16383)}, errno: unix.EINVAL},
		{name: "over the limit", setup: mapAt(limit+4096, guestmm.ProtRead), h: (*Kernel).sysMlock, args: []uint64{0x20000000, limit + 4096}, errno: unix.ENOMEM},
		{name: "over the limit, privileged", privileged: true, setup: mapAt(limit+4096, guestmm.ProtRead), h: (*Kernel).sysMlock, args: []uint64{0x20000000, limit + 4096}, locked: limit + 4096},
		{name: "mlock2 on fault", h: (*Kernel).sysMlock2, args: []uint64{scratch, 4096, mlockOnfault}, locked: 4096},
		{name: "mlock2 bad flag", h: (*Kernel).sysMlock2, args: []uint64{scratch, 4096, 2}, errno: unix.EINVAL},
		{name: "munlock", setup: lockScratch, h: (*Kernel).sysMunlock, args: []uint64{scratch, 4096}, populated: true},
		{name: "munlock unmapped", h: (*Kernel).sysMunlock, args: []uint64{0x30000000, 4096}, errno: unix.ENOMEM},
		{name: "mlockall current", h: (*Kernel).sysMlockall, args: []uint64{mclCurrent}, locked: 4096, populated: true},
		{name: "mlockall current, too much", setup: mapAt(limit, guestmm.ProtNone), h: (*Kernel).sysMlockall, args: []uint64{mclCurrent | mclFuture}, errno: unix.ENOMEM},
		{name: "mlockall onfault alone", h: (*Kernel).sysMlockall, args: []uint64{mclOnfault}, errno: unix.EINVAL},
		{name: "mlockall 0", h: (*Kernel).sysMlockall, args: []uint64{0}, errno: unix.EINVAL},
		{name: "mlockall bad flag", h: (*Kernel).sysMlockall, args: []uint64{8 | mclCurrent}, errno: unix.EINVAL},
		{name: "munlockall", setup: lockScratch, h: (*Kernel).sysMunlockall, populated: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			k, task := newTestTask(t, c.privileged)
			if c.setup != nil {
				c.setup(t, k, task)
			}
			_, errno := call(k, task, c.h, c.args...)
			require.Equal(t, c.errno, errno)
			require.Equal(t, c.locked, task.proc.as.LockedBytes(0, 0))
			_, present := task.proc.as.PageTables().Lookup(scratch)
			require.Equal(t, c.populated, present)
		})
	}
}

func TestMlockallFuture(t *testing.T) {
	k, task := newTestTask(t, false)
	_, errno := call(k, task, (*Kernel).sysMlockall, mclFuture)
	require.Zero(t, errno)
	require.Zero(t, task.proc.as.LockedBytes(0, 0), "MCL_FUTURE alone locks nothing yet")
	va, errno := call(k, task, (*Kernel).sysMmap, 0, 8192, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, ^uint64(0), 0)
	require.Zero(t, errno)
	require.Equal(t, uint64(8192), task.proc.as.LockedBytes(0, 0))
	_, present := task.proc.as.PageTables().Lookup(va + 4096)
	require.True(t, present)
	_, errno = call(k, task, (*Kernel).sysMmap, 0, 16<<20, unix.PROT_READ, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, ^uint64(0), 0)
	require.Equal(t, unix.EAGAIN, errno, "a future lock beyond RLIMIT_MEMLOCK")
	_, errno = call(k, task, (*Kernel).sysMunlockall)
	require.Zero(t, errno)
	require.False(t, task.proc.lockFuture)
	require.Zero(t, task.proc.as.LockedBytes(0, 0))
}
