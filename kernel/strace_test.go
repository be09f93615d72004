package kernel

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/emuckpt/emuckpt/guestmm"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// traceLine runs the --trace decoder on one call of task: entry (with
// memory as before), then before() (the handler's effects), then exit.
func traceLine(k *Kernel, task *Task, nr uint64, a args, before func(), ret uint64, e unix.Errno) string {
	var log bytes.Buffer
	k.log, k.cfg.Trace = &log, true
	c := k.traceEnter(task, nr, &a, false)
	if before != nil {
		before()
	}
	k.traceExit(task, c, ret, e)
	return strings.TrimSuffix(log.String(), "\n")
}

func TestStraceDecode(t *testing.T) {
	const (
		buf  = scratch + 0x100
		st   = scratch + 0x400
		path = scratch + 0x800
	)
	putU64 := func(task *Task, va uint64, vs ...uint64) {
		b := make([]byte, 8*len(vs))
		for i, v := range vs {
			binary.LittleEndian.PutUint64(b[8*i:], v)
		}
		require.NoError(t, task.proc.as.CopyOut(va, b))
	}
	neg := func(n int64) uint64 { return uint64(n) }
	tests := []struct {
		name   string
		nr     uint64
		a      args
		setup  func(task *Task) // memory at entry
		effect func(task *Task) // what the call writes
		ret    uint64
		e      unix.Errno
		want   string
	}{
		{name: "openat path and flags", nr: 257, a: args{neg(unix.AT_FDCWD), path, unix.O_WRONLY | unix.O_CREAT | unix.O_TRUNC | unix.O_CLOEXEC, 0o644},
			setup: func(task *Task) { putString(t, task, path, "/tmp/out.txt") }, ret: 3,
			want: `openat(AT_FDCWD, "/tmp/out.txt", O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC, 0644) = 3`},
		{name: "open failure has errno name and text", nr: 2, a: args{path, unix.O_RDONLY, 0},
			setup: func(task *Task) { putString(t, task, path, "/nope") }, e: unix.ENOENT,
			want: `open("/nope", O_RDONLY, 0) = -1 ENOENT (No such file or directory)`},
		{name: "write buffer escaped and cut at 32 bytes", nr: 1, a: args{1, buf, 40},
			setup: func(task *Task) {
				require.NoError(t, task.proc.as.CopyOut(buf, []byte("a\"b\\c\n\t\x00\x01\x7f1234567890123456789012345678")))
			}, ret: 40,
			want: `write(1, "a\"b\\c\n\t\0\1\1771234567890123456789012"..., 40) = 40`},
		{name: "octal escape before a digit is three digits", nr: 1, a: args{2, buf, 3},
			setup: func(task *Task) { require.NoError(t, task.proc.as.CopyOut(buf, []byte("\x017x"))) }, ret: 3,
			want: `write(2, "\0017x", 3) = 3`},
		{name: "read buffer decoded at exit up to the result", nr: 0, a: args{0, buf, 100},
			effect: func(task *Task) { require.NoError(t, task.proc.as.CopyOut(buf, []byte("hi\n"))) }, ret: 3,
			want: `read(0, "hi\n", 100) = 3`},
		{name: "failed read shows the pointer", nr: 0, a: args{5, buf, 100}, e: unix.EBADF,
			want: `read(5, 0x10000100, 100) = -1 EBADF (Bad file descriptor)`},
		{name: "unreadable buffer is shown as its address", nr: 1, a: args{1, 0x20000000, 4}, e: unix.EFAULT,
			want: `write(1, 0x20000000, 4) = -1 EFAULT (Bad address)`},
		{name: "mmap prot and flags, hex result", nr: 9, a: args{0, 8192, unix.PROT_READ | unix.PROT_WRITE, unix.MAP_PRIVATE | unix.MAP_ANONYMOUS, neg(-1), 0}, ret: 0x7ffff7ff9000,
			want: `mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7ffff7ff9000`},
		{name: "mprotect none", nr: 10, a: args{0x1000, 4096, 0},
			want: `mprotect(0x1000, 4096, PROT_NONE) = 0`},
		{name: "clone flags and exit signal", nr: 56, a: args{unix.CLONE_VM | unix.CLONE_VFORK | uint64(unix.SIGCHLD), 0x7000, 0, 0, 0}, ret: 7,
			want: `clone(CLONE_VM|CLONE_VFORK|SIGCHLD, 0x7000, NULL, NULL, 0x0) = 7`},
		{name: "kill signal name", nr: 62, a: args{7, uint64(unix.SIGTERM)},
			want: `kill(7, SIGTERM) = 0`},
		{name: "real-time signal", nr: 62, a: args{7, 35},
			want: `kill(7, SIGRT_3) = 0`},
		{name: "fcntl command", nr: 72, a: args{3, unix.F_SETFD, unix.FD_CLOEXEC},
			want: `fcntl(3, F_SETFD, 0x1) = 0`},
		{name: "ioctl command", nr: 16, a: args{1, unix.TIOCGWINSZ, buf}, e: unix.ENOTTY,
			want: `ioctl(1, TIOCGWINSZ, 0x10000100) = -1 ENOTTY (Inappropriate ioctl for device)`},
		{name: "unknown ioctl command in decimal", nr: 16, a: args{1, 0x1234, 0}, e: unix.ENOTTY,
			want: `ioctl(1, 4660, 0x0) = -1 ENOTTY (Inappropriate ioctl for device)`},
		{name: "wait4 status and options", nr: 61, a: args{neg(-1), buf, unix.WNOHANG, 0},
			effect: func(task *Task) { putU64(task, buf, 3<<8) }, ret: 9,
			want: `wait4(-1, [{WIFEXITED(s) && WEXITSTATUS(s) == 3}], WNOHANG, NULL) = 9`},
		{name: "nanosleep timespec", nr: 35, a: args{buf, 0},
			setup: func(task *Task) { putU64(task, buf, 1, 500) },
			want:  `nanosleep({tv_sec=1, tv_nsec=500}, NULL) = 0`},
		{name: "clock_gettime output", nr: 228, a: args{unix.CLOCK_MONOTONIC, buf},
			effect: func(task *Task) { putU64(task, buf, 12, 34) },
			want:   `clock_gettime(CLOCK_MONOTONIC, {tv_sec=12, tv_nsec=34}) = 0`},
		{name: "sigaction handler and flags", nr: 13, a: args{uint64(unix.SIGUSR1), buf, 0, 8},
			setup: func(task *Task) { putU64(task, buf, 0x401000, 0x04000004, 0x401100, sigBit(int(unix.SIGINT))) },
			want:  `rt_sigaction(SIGUSR1, {sa_handler=0x401000, sa_mask=[INT], sa_flags=SA_SIGINFO|SA_RESTORER}, NULL, 8) = 0`},
		{name: "sigaction ignore", nr: 13, a: args{uint64(unix.SIGPIPE), buf, 0, 8},
			setup: func(task *Task) { putU64(task, buf, sigIgn, 0, 0, 0) },
			want:  `rt_sigaction(SIGPIPE, {sa_handler=SIG_IGN, sa_mask=[], sa_flags=0}, NULL, 8) = 0`},
		{name: "sigprocmask complement set", nr: 14, a: args{unix.SIG_BLOCK, buf, buf + 8, 8},
			setup:  func(task *Task) { putU64(task, buf, ^uint64(0), 0) },
			effect: func(task *Task) { putU64(task, buf+8, sigBit(int(unix.SIGCHLD))) },
			want:   `rt_sigprocmask(SIG_BLOCK, ~[], [CHLD], 8) = 0`},
		{name: "fstat summary", nr: 5, a: args{3, st},
			effect: func(task *Task) {
				b := make([]byte, 144)
				binary.LittleEndian.PutUint32(b[24:], unix.S_IFREG|0o640)
				binary.LittleEndian.PutUint64(b[48:], 1234)
				require.NoError(t, task.proc.as.CopyOut(st, b))
			},
			want: `fstat(3, {st_mode=S_IFREG|0640, st_size=1234, ...}) = 0`},
		{name: "pipe2 fds", nr: 293, a: args{buf, unix.O_CLOEXEC},
			effect: func(task *Task) { putU64(task, buf, 4<<32|3) },
			want:   `pipe2([3, 4], O_CLOEXEC) = 0`},
		{name: "execve argv and envp", nr: 59, a: args{path, buf, buf + 0x40},
			setup: func(task *Task) {
				putString(t, task, path, "/bin/echo")
				putString(t, task, path+0x20, "echo")
				putString(t, task, path+0x30, "hi")
				putU64(task, buf, path+0x20, path+0x30, 0)
				putU64(task, buf+0x40, path+0x30, path+0x30, path+0x30, 0)
			},
			// The image is replaced before the line is printed.
			effect: func(task *Task) { require.NoError(t, task.proc.as.CopyOut(path, make([]byte, 0x40))) },
			want:   `execve("/bin/echo", ["echo", "hi"], 0x10000140 /* 3 vars */) = 0`},
		{name: "futex private op", nr: 202, a: args{buf, futexWait | futexPrivateFlag, 2, 0, 0, 0}, e: unix.EAGAIN,
			want: `futex(0x10000100, FUTEX_WAIT_PRIVATE, 2, NULL, NULL, 0) = -1 EAGAIN (Resource temporarily unavailable)`},
		{name: "lseek whence", nr: 8, a: args{3, neg(-10), unix.SEEK_END}, ret: 90,
			want: `lseek(3, -10, SEEK_END) = 90`},
		{name: "exit_group does not return", nr: 231, a: args{1},
			want: `exit_group(1) = ?`},
		{name: "unknown call in hex", nr: 237, a: args{1, 2, 3, 4, 5, 6}, e: unix.ENOSYS,
			want: `mbind(0x1, 0x2, 0x3, 0x4, 0x5, 0x6) = -1 ENOSYS (Function not implemented)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, task := newTestTask(t, false)
			if tt.setup != nil {
				tt.setup(task)
			}
			var effect func()
			if tt.effect != nil {
				effect = func() { tt.effect(task) }
			}
			assert.Equal(t, "emuckpt: trace: "+tt.want, traceLine(k, task, tt.nr, tt.a, effect, tt.ret, tt.e))
		})
	}
}

// TestStraceDoesNotFault: decoding reads memory without faulting pages
// in: an untouched anonymous page reads as zeros and stays absent.
func TestStraceDoesNotFault(t *testing.T) {
	k, task := newTestTask(t, false)
	const fresh = 0x30000000
	as := task.proc.as
	_, err := as.Mmap(fresh, 2*guestmm.PageSize, guestmm.ProtRead|guestmm.ProtWrite,
		guestmm.MapPrivate|guestmm.MapAnonymous|guestmm.MapFixed, nil, 0)
	require.NoError(t, err)
	present := func() int {
		n := 0
		for range as.PresentPages(fresh, fresh+2*guestmm.PageSize) {
			n++
		}
		return n
	}
	line := traceLine(k, task, 1, args{1, fresh, 4}, nil, 4, 0)
	assert.Equal(t, `emuckpt: trace: write(1, "\0\0\0\0", 4) = 4`, line)
	line = traceLine(k, task, 2, args{fresh + guestmm.PageSize, 0, 0}, nil, 0, unix.ENOENT)
	assert.Equal(t, `emuckpt: trace: open("", O_RDONLY, 0) = -1 ENOENT (No such file or directory)`, line)
	assert.Zero(t, present(), "tracing faulted pages in")
}

// TestStraceBlockedCall: a call that blocks is printed once, when it
// completes, with the arguments of its first invocation.
func TestStraceBlockedCall(t *testing.T) {
	k, task := newTestTask(t, false)
	var log bytes.Buffer
	k.log, k.cfg.Trace = &log, true
	a := args{0, scratch, 10}
	c := k.traceEnter(task, 0, &a, false)
	assert.Empty(t, log.String(), "printed before completion")
	// The wait ends and the handler is called again.
	c2 := k.traceEnter(task, 0, &a, true)
	assert.Same(t, c, c2)
	require.NoError(t, task.proc.as.CopyOut(scratch, []byte("ok")))
	k.traceExit(task, c2, 2, 0)
	assert.Equal(t, "emuckpt: trace: read(0, \"ok\", 10) = 2\n", log.String())
	assert.Empty(t, k.trace.pending)
}

// TestStraceOff: without --trace or --trace-json nothing is decoded.
func TestStraceOff(t *testing.T) {
	k, task := newTestTask(t, false)
	a := args{1, scratch, 1}
	assert.Nil(t, k.traceEnter(task, 1, &a, false))
	k.traceExit(task, nil, 1, 0) // a no-op
}

func TestQuote(t *testing.T) {
	for in, want := range map[string]string{
		"":             `""`,
		"plain text":   `"plain text"`,
		"\r\v\f":       `"\r\v\f"`,
		"\xff\x00":     `"\377\0"`,
		"\x0012":       `"\00012"`,
		"tab\there\"q": `"tab\there\"q"`,
	} {
		assert.Equal(t, want, quote([]byte(in)), "%q", in)
	}
}

func TestSigsetString(t *testing.T) {
	assert.Equal(t, "[]", sigsetString(0))
	assert.Equal(t, "[HUP TERM RTMIN RT_1]", sigsetString(sigBit(1)|sigBit(15)|sigBit(32)|sigBit(33)))
	assert.Equal(t, "~[KILL STOP]", sigsetString(^(sigBit(9) | sigBit(19))))
}
