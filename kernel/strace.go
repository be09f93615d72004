package kernel

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"

	"github.com/emuckpt/emuckpt/guestmm"
	"golang.org/x/sys/unix"
)

// This file decodes system calls for --trace the way strace does: names
// of flags and constants, strings, a few structures, errno names. Each
// call has a row in straceTable listing the kind of each argument; a call
// without a row, or an argument of kind argHex, is shown in hex. To add a
// call, add its row (and, if needed, a kind with its case in formatArg).
//
// Input arguments (paths, write buffers, timespecs passed in) are decoded
// when the call is made, before the handler runs (execve replaces the
// memory they live in); output arguments (read buffers, stat results) when
// it completes, and only when it succeeded. The line is printed once, when
// the call completes: a call that blocks is printed when it returns, with
// the arguments it was made with. Guest memory is read with
// guestmm.AddressSpace.Peek, which never faults a page in: tracing does
// not change what the guest sees.

// argKind says how to show one system-call argument.
type argKind uint8

const (
	argHex          argKind = iota // 0x... (the default)
	argInt                         // signed decimal (int)
	argLong                        // signed decimal (long)
	argUint                        // unsigned decimal (size_t, ...)
	argOct                         // octal (mode_t)
	argFd                          // a descriptor: signed int
	argDirfd                       // a descriptor or AT_FDCWD
	argPath                        // a NUL-terminated string read at entry
	argBufIn                       // bytes the call reads: length is the next argument
	argBufOut                      // bytes the call writes: length is the return value
	argIovIn                       // struct iovec[next argument], read at entry
	argIovOut                      // struct iovec[next argument], filled up to the return value
	argArgv                        // NULL-terminated array of strings
	argEnvp                        // NULL-terminated array of strings, counted
	argPtr                         // a pointer: NULL or hex
	argOpenFlags                   // O_*
	argAtFlags                     // AT_*
	argAccessMode                  // F_OK, R_OK|W_OK|X_OK
	argProt                        // PROT_*
	argMapFlags                    // MAP_*
	argMremapFlags                 // MREMAP_*
	argMadvise                     // MADV_*
	argSignal                      // SIGxxx
	argSigHow                      // SIG_BLOCK, ...
	argSigsetIn                    // sigset_t read at entry
	argSigsetOut                   // sigset_t written by the call
	argSigactionIn                 // struct sigaction read at entry
	argSigactionOut                // struct sigaction written by the call
	argCloneFlags                  // CLONE_* | exit signal
	argWaitOpts                    // WNOHANG, ...
	argWstatusOut                  // int *wstatus written by wait4
	argFcntlCmd                    // F_*
	argIoctlCmd                    // TCGETS, FIONREAD, ...
	argWhence                      // SEEK_*
	argClockID                     // CLOCK_*
	argTimespecIn                  // struct timespec read at entry
	argTimespecOut                 // struct timespec written by the call
	argTimerFlags                  // TIMER_ABSTIME
	argStatOut                     // struct stat written by the call
	argFutexOp                     // FUTEX_*
	argPipeOut                     // int[2] written by pipe/pipe2
	argArchPrctl                   // ARCH_*
	argPrctl                       // PR_*
	argFdFlags                     // O_CLOEXEC|O_NONBLOCK of pipe2, dup3, ...
)

// isOutput says which kinds are decoded when the call has completed.
func (k argKind) isOutput() bool {
	switch k {
	case argBufOut, argIovOut, argSigsetOut, argSigactionOut, argWstatusOut,
		argTimespecOut, argStatOut, argPipeOut:
		return true
	}
	return false
}

// retKind says how to show the return value.
type retKind uint8

const (
	retDec   retKind = iota // signed decimal
	retHex                  // an address (mmap, brk)
	retNone                 // the call does not return (exit): "?"
	retOctal                // umask
)

// straceCall is one row of the table: the argument kinds (as many as the
// call has) and how its result is shown.
type straceCall struct {
	args []argKind
	ret  retKind
}

func sc(ret retKind, args ...argKind) straceCall { return straceCall{args: args, ret: ret} }

// straceTable is the decoding of the system calls, by number.
var straceTable = map[uint64]straceCall{
	0:                 sc(retDec, argFd, argBufOut, argUint),                             // read
	1:                 sc(retDec, argFd, argBufIn, argUint),                              // write
	2:                 sc(retDec, argPath, argOpenFlags, argOct),                         // open
	3:                 sc(retDec, argFd),                                                 // close
	4:                 sc(retDec, argPath, argStatOut),                                   // stat
	5:                 sc(retDec, argFd, argStatOut),                                     // fstat
	6:                 sc(retDec, argPath, argStatOut),                                   // lstat
	7:                 sc(retDec, argPtr, argUint, argInt),                               // poll
	8:                 sc(retDec, argFd, argLong, argWhence),                             // lseek
	9:                 sc(retHex, argPtr, argUint, argProt, argMapFlags, argFd, argLong), // mmap
	10:                sc(retDec, argPtr, argUint, argProt),                              // mprotect
	11:                sc(retDec, argPtr, argUint),                                       // munmap
	12:                sc(retHex, argPtr),                                                // brk
	13:                sc(retDec, argSignal, argSigactionIn, argSigactionOut, argUint),   // rt_sigaction
	14:                sc(retDec, argSigHow, argSigsetIn, argSigsetOut, argUint),         // rt_sigprocmask
	15:                sc(retDec),                                                        // rt_sigreturn
	16:                sc(retDec, argFd, argIoctlCmd, argHex),                            // ioctl
	17:                sc(retDec, argFd, argBufOut, argUint, argLong),                    // pread64
	18:                sc(retDec, argFd, argBufIn, argUint, argLong),                     // pwrite64
	19:                sc(retDec, argFd, argIovOut, argInt),                              // readv
	20:                sc(retDec, argFd, argIovIn, argInt),                               // writev
	21:                sc(retDec, argPath, argAccessMode),                                // access
	22:                sc(retDec, argPipeOut),                                            // pipe
	24:                sc(retDec),                                                        // sched_yield
	25:                sc(retHex, argPtr, argUint, argUint, argMremapFlags, argPtr),      // mremap
	28:                sc(retDec, argPtr, argUint, argMadvise),                           // madvise
	32:                sc(retDec, argFd),                                                 // dup
	33:                sc(retDec, argFd, argFd),                                          // dup2
	34:                sc(retDec),                                                        // pause
	35:                sc(retDec, argTimespecIn, argPtr),                                 // nanosleep
	37:                sc(retDec, argUint),                                               // alarm
	39:                sc(retDec),                                                        // getpid
	40:                sc(retDec, argFd, argFd, argPtr, argUint),                         // sendfile
	56:                sc(retDec, argCloneFlags, argPtr, argPtr, argPtr, argHex),         // clone
	57:                sc(retDec),                                                        // fork
	58:                sc(retDec),                                                        // vfork
	59:                sc(retDec, argPath, argArgv, argEnvp),                             // execve
	60:                sc(retNone, argInt),                                               // exit
	61:                sc(retDec, argInt, argWstatusOut, argWaitOpts, argPtr),            // wait4
	62:                sc(retDec, argInt, argSignal),                                     // kill
	63:                sc(retDec, argPtr),                                                // uname
	72:                sc(retDec, argFd, argFcntlCmd, argHex),                            // fcntl
	76:                sc(retDec, argPath, argLong),                                      // truncate
	77:                sc(retDec, argFd, argLong),                                        // ftruncate
	79:                sc(retDec, argBufOut, argUint),                                    // getcwd
	80:                sc(retDec, argPath),                                               // chdir
	82:                sc(retDec, argPath, argPath),                                      // rename
	83:                sc(retDec, argPath, argOct),                                       // mkdir
	84:                sc(retDec, argPath),                                               // rmdir
	85:                sc(retDec, argPath, argOct),                                       // creat
	86:                sc(retDec, argPath, argPath),                                      // link
	87:                sc(retDec, argPath),                                               // unlink
	88:                sc(retDec, argPath, argPath),                                      // symlink
	89:                sc(retDec, argPath, argBufOut, argUint),                           // readlink
	90:                sc(retDec, argPath, argOct),                                       // chmod
	95:                sc(retOctal, argOct),                                              // umask
	96:                sc(retDec, argPtr, argPtr),                                        // gettimeofday
	102:               sc(retDec),                                                        // getuid
	104:               sc(retDec),                                                        // getgid
	107:               sc(retDec),                                                        // geteuid
	108:               sc(retDec),                                                        // getegid
	110:               sc(retDec),                                                        // getppid
	131:               sc(retDec, argPtr, argPtr),                                        // sigaltstack
	157:               sc(retDec, argPrctl, argHex, argHex, argHex, argHex),              // prctl
	158:               sc(retDec, argArchPrctl, argHex),                                  // arch_prctl
	186:               sc(retDec),                                                        // gettid
	200:               sc(retDec, argInt, argSignal),                                     // tkill
	202:               sc(retDec, argPtr, argFutexOp, argInt, argPtr, argPtr, argInt),    // futex
	217:               sc(retDec, argFd, argPtr, argUint),                                // getdents64
	218:               sc(retDec, argPtr),                                                // set_tid_address
	228:               sc(retDec, argClockID, argTimespecOut),                            // clock_gettime
	229:               sc(retDec, argClockID, argTimespecOut),                            // clock_getres
	230:               sc(retDec, argClockID, argTimerFlags, argTimespecIn, argPtr),      // clock_nanosleep
	231:               sc(retNone, argInt),                                               // exit_group
	234:               sc(retDec, argInt, argInt, argSignal),                             // tgkill
	257:               sc(retDec, argDirfd, argPath, argOpenFlags, argOct),               // openat
	258:               sc(retDec, argDirfd, argPath, argOct),                             // mkdirat
	262:               sc(retDec, argDirfd, argPath, argStatOut, argAtFlags),             // newfstatat
	263:               sc(retDec, argDirfd, argPath, argAtFlags),                         // unlinkat
	264:               sc(retDec, argDirfd, argPath, argDirfd, argPath),                  // renameat
	267:               sc(retDec, argDirfd, argPath, argBufOut, argUint),                 // readlinkat
	269:               sc(retDec, argDirfd, argPath, argAccessMode),                      // faccessat
	271:               sc(retDec, argPtr, argUint, argTimespecIn, argSigsetIn, argUint),  // ppoll
	273:               sc(retDec, argPtr, argUint),                                       // set_robust_list
	283:               sc(retDec, argClockID, argFdFlags),                                // timerfd_create
	292:               sc(retDec, argFd, argFd, argFdFlags),                              // dup3
	293:               sc(retDec, argPipeOut, argFdFlags),                                // pipe2
	302:               sc(retDec, argInt, argUint, argPtr, argPtr),                       // prlimit64
	318:               sc(retDec, argBufOut, argUint, argHex),                            // getrandom
	319:               sc(retDec, argPath, argFdFlags),                                   // memfd_create
	322:               sc(retDec, argDirfd, argPath, argArgv, argEnvp, argAtFlags),       // execveat
	332:               sc(retDec, argDirfd, argPath, argAtFlags, argHex, argPtr),         // statx
	435:               sc(retDec, argPtr, argUint),                                       // clone3
	439:               sc(retDec, argDirfd, argPath, argAccessMode, argAtFlags),          // faccessat2
	CheckpointSyscall: sc(retDec),                                                        // emuckpt_checkpoint
}

// traceCall is a system call being traced: decoded at entry, printed (and
// recorded for --trace-json) when it completes.
type traceCall struct {
	nr    uint64
	a     args
	shown []string // decoded arguments; "" for output ones, done at exit
	start int64    // host monotonic ns at entry (--trace-json)
}

// tracer is the kernel's --trace and --trace-json state.
type tracer struct {
	// pending are the calls made but not completed, by task: a call
	// that blocks is completed by a later invocation of its handler.
	pending map[*Task]*traceCall
	// multi is set once the guest had more than one task: --trace
	// lines then start with the task's id.
	multi bool
	// counters is the --trace-json fault and device counter state.
	counters traceCounters
}

// traceEnter starts tracing the call task t makes (or makes again after a
// wait: the entry of its first invocation is kept). It returns nil when
// neither --trace nor --trace-json is on.
func (k *Kernel) traceEnter(t *Task, nr uint64, a *args, resumed bool) *traceCall {
	if !k.cfg.Trace && k.cfg.TraceEvents == nil {
		return nil
	}
	if k.trace.pending == nil {
		k.trace.pending = map[*Task]*traceCall{}
	}
	if c := k.trace.pending[t]; resumed && c != nil && c.nr == nr {
		return c
	}
	c := &traceCall{nr: nr, a: *a, start: k.cfg.TraceEvents.now()}
	row, ok := straceTable[nr]
	if ok {
		c.shown = make([]string, len(row.args))
		for i, kind := range row.args {
			if !kind.isOutput() {
				c.shown[i] = formatArg(t.proc.as, kind, a, i, 0)
			}
		}
	}
	k.trace.pending[t] = c
	return c
}

// traceExit ends the call c of task t with its result: the --trace line
// and the --trace-json event.
func (k *Kernel) traceExit(t *Task, c *traceCall, ret uint64, e unix.Errno) {
	if c == nil {
		return
	}
	delete(k.trace.pending, t)
	row, known := straceTable[c.nr]
	if known && e == 0 {
		for i, kind := range row.args {
			if kind.isOutput() {
				c.shown[i] = formatArg(t.proc.as, kind, &c.a, i, ret)
			}
		}
	}
	argText := formatArgs(row, known, &c.a, c.shown)
	retText := formatReturn(row.ret, ret, e)
	if k.cfg.Trace {
		// As strace -f: every line names its task once there has
		// been a second one.
		k.trace.multi = k.trace.multi || len(k.sched.all) > 1
		prefix := ""
		if k.trace.multi {
			prefix = fmt.Sprintf("[pid %d] ", t.tid)
		}
		fmt.Fprintf(k.log, "emuckpt: trace: %s%s(%s) = %s\n", prefix, SyscallName(c.nr), argText, retText)
	}
	if te := k.cfg.TraceEvents; te != nil {
		te.syscall(t.proc.pid, t.tid, t.comm, SyscallName(c.nr), argText, retText, c.start)
	}
}

// formatArgs joins the decoded arguments; output arguments of a failed
// call, and every argument of an unknown call, are shown in hex.
func formatArgs(row straceCall, known bool, a *args, shown []string) string {
	var b strings.Builder
	n := 6
	if known {
		n = len(row.args)
	}
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		if known && shown[i] != "" {
			b.WriteString(shown[i])
		} else if known && row.args[i] == argPtr || known && row.args[i].isOutput() {
			b.WriteString(fmtPtr(a[i]))
		} else {
			fmt.Fprintf(&b, "%#x", a[i])
		}
	}
	return b.String()
}

// formatReturn shows a result as strace does: the value, or -1 with the
// errno's name and text.
func formatReturn(kind retKind, ret uint64, e unix.Errno) string {
	if e != 0 {
		return fmt.Sprintf("-1 %s (%s)", errnoName(e), errnoText(e))
	}
	switch kind {
	case retHex:
		return fmt.Sprintf("%#x", ret)
	case retNone:
		return "?"
	case retOctal:
		return fmt.Sprintf("%#o", ret)
	}
	return strconv.FormatInt(int64(ret), 10)
}

// errnoText is strerror(e): Go's text with a capital first letter, as C
// libraries write it.
func errnoText(e unix.Errno) string {
	s := e.Error()
	if s == "" || strings.HasPrefix(s, "errno ") {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// Limits of what a trace line shows, as strace's defaults.
const (
	traceStrMax  = 32   // bytes of a buffer or string (strace -s 32)
	tracePathMax = 4096 // bytes of a path
	traceArrMax  = 8    // elements of argv or an iovec array
)

// formatArg shows argument i of kind kind; ret is the call's result for
// output arguments.
func formatArg(as *guestmm.AddressSpace, kind argKind, a *args, i int, ret uint64) string {
	v := a[i]
	next := func() uint64 {
		if i+1 < len(a) {
			return a[i+1]
		}
		return 0
	}
	switch kind {
	case argInt, argFd:
		return strconv.Itoa(int(int32(v)))
	case argLong:
		return strconv.FormatInt(int64(v), 10)
	case argUint:
		return strconv.FormatUint(v, 10)
	case argOct:
		return fmt.Sprintf("%#o", v)
	case argDirfd:
		if int32(v) == unix.AT_FDCWD {
			return "AT_FDCWD"
		}
		return strconv.Itoa(int(int32(v)))
	case argPtr:
		return fmtPtr(v)
	case argPath:
		return peekPath(as, v)
	case argBufIn:
		return peekBuf(as, v, next())
	case argBufOut:
		return peekBuf(as, v, ret)
	case argIovIn:
		return peekIovec(as, v, next(), ^uint64(0))
	case argIovOut:
		return peekIovec(as, v, next(), ret)
	case argArgv:
		return peekArgv(as, v, false)
	case argEnvp:
		return peekArgv(as, v, true)
	case argOpenFlags:
		return openFlags(v)
	case argFdFlags:
		return flagNames(v, fdFlagNames, "0")
	case argAtFlags:
		return flagNames(v, atFlagNames, "0")
	case argAccessMode:
		if v == 0 {
			return "F_OK"
		}
		return flagNames(v, accessNames, "0")
	case argProt:
		return flagNames(v, protNames, "PROT_NONE")
	case argMapFlags:
		return mapFlags(v)
	case argMremapFlags:
		return flagNames(v, mremapNames, "0")
	case argMadvise:
		return constName(v, madviseNames)
	case argSignal:
		if v == 0 {
			return "0"
		}
		return "SIG" + sigShortName(int(int32(v)))
	case argSigHow:
		return constName(v, sigHowNames)
	case argSigsetIn, argSigsetOut:
		return peekSigset(as, v)
	case argSigactionIn, argSigactionOut:
		return peekSigaction(as, v)
	case argCloneFlags:
		return cloneFlags(v)
	case argWaitOpts:
		return flagNames(v, waitNames, "0")
	case argWstatusOut:
		return peekWstatus(as, v)
	case argFcntlCmd:
		return constName(v, fcntlNames)
	case argIoctlCmd:
		return constName(v, ioctlNames)
	case argWhence:
		return constName(v, whenceNames)
	case argClockID:
		return constName(v, clockNames)
	case argTimerFlags:
		return flagNames(v, timerFlagNames, "0")
	case argTimespecIn, argTimespecOut:
		return peekTimespec(as, v)
	case argStatOut:
		return peekStat(as, v)
	case argFutexOp:
		return futexOp(v)
	case argPipeOut:
		return peekPipe(as, v)
	case argArchPrctl:
		return constName(v, archPrctlNames)
	case argPrctl:
		return constName(v, prctlNames)
	}
	return fmt.Sprintf("%#x", v)
}

func fmtPtr(v uint64) string {
	if v == 0 {
		return "NULL"
	}
	return fmt.Sprintf("%#x", v)
}

// quote is strace's string quoting: C escapes, octal for other bytes.
func quote(b []byte) string {
	var s strings.Builder
	s.WriteByte('"')
	for i, c := range b {
		switch c {
		case '"', '\\':
			s.WriteByte('\\')
			s.WriteByte(c)
		case '\n':
			s.WriteString(`\n`)
		case '\t':
			s.WriteString(`\t`)
		case '\r':
			s.WriteString(`\r`)
		case '\v':
			s.WriteString(`\v`)
		case '\f':
			s.WriteString(`\f`)
		default:
			if c >= 0x20 && c < 0x7f {
				s.WriteByte(c)
				continue
			}
			// The shortest octal escape, unless a digit follows.
			if i+1 < len(b) && b[i+1] >= '0' && b[i+1] <= '7' {
				fmt.Fprintf(&s, `\%03o`, c)
			} else {
				fmt.Fprintf(&s, `\%o`, c)
			}
		}
	}
	s.WriteByte('"')
	return s.String()
}

// peekBuf shows n bytes at va, the first traceStrMax of them.
func peekBuf(as *guestmm.AddressSpace, va, n uint64) string {
	if va == 0 {
		return "NULL"
	}
	show := min(n, traceStrMax)
	buf := make([]byte, show)
	if got := as.Peek(va, buf); uint64(got) < show {
		return fmtPtr(va)
	}
	s := quote(buf)
	if n > show {
		s += "..."
	}
	return s
}

func peekPath(as *guestmm.AddressSpace, va uint64) string {
	if va == 0 {
		return "NULL"
	}
	s, ok := as.PeekString(va, tracePathMax)
	if !ok {
		return fmtPtr(va)
	}
	return quote([]byte(s))
}

// peekStr is a string shown like a buffer: at most traceStrMax bytes.
func peekStr(as *guestmm.AddressSpace, va uint64) string {
	if va == 0 {
		return "NULL"
	}
	s, ok := as.PeekString(va, traceStrMax+1)
	if len(s) > traceStrMax {
		return quote([]byte(s[:traceStrMax])) + "..."
	}
	if !ok {
		return fmtPtr(va)
	}
	return quote([]byte(s))
}

func peekU64(as *guestmm.AddressSpace, va uint64) (uint64, bool) {
	var b [8]byte
	if va == 0 || as.Peek(va, b[:]) < 8 {
		return 0, false
	}
	return binary.LittleEndian.Uint64(b[:]), true
}

// peekArgv shows argv (["a", "b"]) or, counted, envp (0x... /* 3 vars */).
func peekArgv(as *guestmm.AddressSpace, va uint64, counted bool) string {
	if va == 0 {
		return "NULL"
	}
	var items []string
	n := 0
	for ; n < 4096; n++ {
		p, ok := peekU64(as, va+uint64(n)*8)
		if !ok {
			return fmtPtr(va)
		}
		if p == 0 {
			break
		}
		if !counted && n < traceArrMax {
			items = append(items, peekStr(as, p))
		}
	}
	if counted {
		return fmt.Sprintf("%#x /* %d vars */", va, n)
	}
	if n > traceArrMax {
		items = append(items, "...")
	}
	return "[" + strings.Join(items, ", ") + "]"
}

// peekIovec shows cnt iovecs at va, their bytes up to total in all.
func peekIovec(as *guestmm.AddressSpace, va, cnt, total uint64) string {
	if va == 0 {
		return "NULL"
	}
	if cnt > 1024 {
		return fmtPtr(va)
	}
	var items []string
	for j := uint64(0); j < cnt; j++ {
		if j == traceArrMax {
			items = append(items, "...")
			break
		}
		var b [16]byte
		if as.Peek(va+16*j, b[:]) < 16 {
			return fmtPtr(va)
		}
		base, n := binary.LittleEndian.Uint64(b[:8]), binary.LittleEndian.Uint64(b[8:])
		items = append(items, fmt.Sprintf("{iov_base=%s, iov_len=%d}", peekBuf(as, base, min(n, total)), n))
		total -= min(n, total)
	}
	return "[" + strings.Join(items, ", ") + "]"
}

func peekSigset(as *guestmm.AddressSpace, va uint64) string {
	set, ok := peekU64(as, va)
	if !ok {
		return fmtPtr(va)
	}
	return sigsetString(set)
}

// sigsetString is a signal mask as strace shows it: [INT TERM], or ~[...]
// for a set with more than half of the signals.
func sigsetString(set uint64) string {
	prefix := ""
	if popcount(set) > 32 {
		prefix, set = "~", ^set
	}
	var names []string
	for sig := 1; sig <= 64; sig++ {
		if set&sigBit(sig) != 0 {
			names = append(names, sigShortName(sig))
		}
	}
	return prefix + "[" + strings.Join(names, " ") + "]"
}

// sigShortName is strace's name of a signal without "SIG": the real-time
// ones are RTMIN (32) and RT_n (32+n).
func sigShortName(sig int) string {
	switch {
	case sig == 32:
		return "RTMIN"
	case sig > 32 && sig <= 64:
		return fmt.Sprintf("RT_%d", sig-32)
	case sig > 0 && sig < 32:
		return strings.TrimPrefix(SignalName(sig), "SIG")
	}
	return strconv.Itoa(sig)
}

func popcount(x uint64) int {
	n := 0
	for ; x != 0; x &= x - 1 {
		n++
	}
	return n
}

// peekSigaction shows the kernel's struct sigaction (handler, flags,
// restorer, mask).
func peekSigaction(as *guestmm.AddressSpace, va uint64) string {
	if va == 0 {
		return "NULL"
	}
	var b [32]byte
	if as.Peek(va, b[:]) < len(b) {
		return fmtPtr(va)
	}
	h := binary.LittleEndian.Uint64(b[0:])
	flags := binary.LittleEndian.Uint64(b[8:])
	mask := binary.LittleEndian.Uint64(b[24:])
	handler := fmtPtr(h)
	switch h {
	case sigDfl:
		handler = "SIG_DFL"
	case sigIgn:
		handler = "SIG_IGN"
	}
	return fmt.Sprintf("{sa_handler=%s, sa_mask=%s, sa_flags=%s}", handler, sigsetString(mask), flagNames(flags, saFlagNames, "0"))
}

func peekTimespec(as *guestmm.AddressSpace, va uint64) string {
	if va == 0 {
		return "NULL"
	}
	var b [16]byte
	if as.Peek(va, b[:]) < len(b) {
		return fmtPtr(va)
	}
	return fmt.Sprintf("{tv_sec=%d, tv_nsec=%d}", int64(binary.LittleEndian.Uint64(b[:8])), int64(binary.LittleEndian.Uint64(b[8:])))
}

// peekStat summarises a struct stat as strace does without -v.
func peekStat(as *guestmm.AddressSpace, va uint64) string {
	var st unix.Stat_t
	b := make([]byte, 144)
	if va == 0 || as.Peek(va, b) < len(b) {
		return fmtPtr(va)
	}
	st.Mode = binary.LittleEndian.Uint32(b[24:])
	st.Size = int64(binary.LittleEndian.Uint64(b[48:]))
	st.Rdev = binary.LittleEndian.Uint64(b[40:])
	mode := fmt.Sprintf("%s|%#o", fileTypeName(st.Mode), st.Mode&07777)
	if st.Mode&unix.S_IFMT == unix.S_IFCHR || st.Mode&unix.S_IFMT == unix.S_IFBLK {
		return fmt.Sprintf("{st_mode=%s, st_rdev=makedev(%#x, %#x), ...}", mode, unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
	return fmt.Sprintf("{st_mode=%s, st_size=%d, ...}", mode, st.Size)
}

func fileTypeName(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "S_IFREG"
	case unix.S_IFDIR:
		return "S_IFDIR"
	case unix.S_IFCHR:
		return "S_IFCHR"
	case unix.S_IFBLK:
		return "S_IFBLK"
	case unix.S_IFIFO:
		return "S_IFIFO"
	case unix.S_IFLNK:
		return "S_IFLNK"
	case unix.S_IFSOCK:
		return "S_IFSOCK"
	}
	return fmt.Sprintf("%#o", mode&unix.S_IFMT)
}

func peekWstatus(as *guestmm.AddressSpace, va uint64) string {
	var b [4]byte
	if va == 0 {
		return "NULL"
	}
	if as.Peek(va, b[:]) < 4 {
		return fmtPtr(va)
	}
	ws := unix.WaitStatus(binary.LittleEndian.Uint32(b[:]))
	switch {
	case ws.Exited():
		return fmt.Sprintf("[{WIFEXITED(s) && WEXITSTATUS(s) == %d}]", ws.ExitStatus())
	case ws.Signaled():
		core := ""
		if ws.CoreDump() {
			core = " && WCOREDUMP(s)"
		}
		return fmt.Sprintf("[{WIFSIGNALED(s) && WTERMSIG(s) == %s%s}]", SignalName(int(ws.Signal())), core)
	case ws.Stopped():
		return fmt.Sprintf("[{WIFSTOPPED(s) && WSTOPSIG(s) == %s}]", SignalName(int(ws.StopSignal())))
	}
	return fmt.Sprintf("[%#x]", uint32(ws))
}

func peekPipe(as *guestmm.AddressSpace, va uint64) string {
	var b [8]byte
	if va == 0 || as.Peek(va, b[:]) < 8 {
		return fmtPtr(va)
	}
	return fmt.Sprintf("[%d, %d]", int32(binary.LittleEndian.Uint32(b[:4])), int32(binary.LittleEndian.Uint32(b[4:])))
}

// flag is one named bit (or bit field value) of a flags argument.
type flag struct {
	v    uint64
	name string
}

// flagNames shows v as NAME|NAME|0x..., the rest in hex; zero is zero.
func flagNames(v uint64, names []flag, zero string) string {
	if v == 0 {
		return zero
	}
	var parts []string
	for _, f := range names {
		if f.v != 0 && v&f.v == f.v {
			parts = append(parts, f.name)
			v &^= f.v
		}
	}
	if v != 0 {
		parts = append(parts, fmt.Sprintf("%#x", v))
	}
	return strings.Join(parts, "|")
}

// constName shows v by its name, or in decimal when it has none.
func constName(v uint64, names map[uint64]string) string {
	if n, ok := names[v]; ok {
		return n
	}
	return strconv.FormatInt(int64(int32(v)), 10)
}

func openFlags(v uint64) string {
	acc := []string{"O_RDONLY", "O_WRONLY", "O_RDWR", "O_ACCMODE"}[v&unix.O_ACCMODE]
	if rest := v &^ unix.O_ACCMODE; rest != 0 {
		return acc + "|" + flagNames(rest, openFlagNames, "")
	}
	return acc
}

func mapFlags(v uint64) string {
	typ := constName(v&0xf, map[uint64]string{unix.MAP_SHARED: "MAP_SHARED", unix.MAP_PRIVATE: "MAP_PRIVATE", unix.MAP_SHARED_VALIDATE: "MAP_SHARED_VALIDATE"})
	if v&0xf == 0 {
		typ = "0"
	}
	if rest := v &^ 0xf; rest != 0 {
		return typ + "|" + flagNames(rest, mapFlagNames, "")
	}
	return typ
}

func cloneFlags(v uint64) string {
	s := flagNames(v&^0xff, cloneFlagNames, "")
	if sig := v & 0xff; sig != 0 {
		if s != "" {
			s += "|"
		}
		s += SignalName(int(sig))
	}
	if s == "" {
		return "0"
	}
	return s
}

func futexOp(v uint64) string {
	s := constName(v&^(futexPrivateFlag|futexClockRealtime), futexNames)
	if v&futexPrivateFlag != 0 {
		s += "_PRIVATE"
	}
	if v&futexClockRealtime != 0 {
		s += "|FUTEX_CLOCK_REALTIME"
	}
	return s
}

var openFlagNames = []flag{
	{unix.O_CREAT, "O_CREAT"}, {unix.O_EXCL, "O_EXCL"}, {unix.O_NOCTTY, "O_NOCTTY"},
	{unix.O_TRUNC, "O_TRUNC"}, {unix.O_APPEND, "O_APPEND"}, {unix.O_NONBLOCK, "O_NONBLOCK"},
	{unix.O_SYNC, "O_SYNC"}, {unix.O_DSYNC, "O_DSYNC"}, {unix.O_ASYNC, "O_ASYNC"},
	{unix.O_DIRECT, "O_DIRECT"}, {0o100000, "O_LARGEFILE"},
	{unix.O_DIRECTORY, "O_DIRECTORY"}, {unix.O_NOFOLLOW, "O_NOFOLLOW"},
	{unix.O_NOATIME, "O_NOATIME"}, {unix.O_CLOEXEC, "O_CLOEXEC"}, {unix.O_PATH, "O_PATH"},
	{unix.O_TMPFILE &^ unix.O_DIRECTORY, "O_TMPFILE"},
}

var fdFlagNames = []flag{{unix.O_CLOEXEC, "O_CLOEXEC"}, {unix.O_NONBLOCK, "O_NONBLOCK"}, {unix.O_DIRECT, "O_DIRECT"}}

var atFlagNames = []flag{
	{unix.AT_SYMLINK_NOFOLLOW, "AT_SYMLINK_NOFOLLOW"}, {unix.AT_REMOVEDIR, "AT_REMOVEDIR"},
	{unix.AT_SYMLINK_FOLLOW, "AT_SYMLINK_FOLLOW"}, {unix.AT_NO_AUTOMOUNT, "AT_NO_AUTOMOUNT"},
	{unix.AT_EMPTY_PATH, "AT_EMPTY_PATH"}, {unix.AT_EACCESS, "AT_EACCESS"},
}

var accessNames = []flag{{unix.R_OK, "R_OK"}, {unix.W_OK, "W_OK"}, {unix.X_OK, "X_OK"}}

var protNames = []flag{
	{unix.PROT_READ, "PROT_READ"}, {unix.PROT_WRITE, "PROT_WRITE"}, {unix.PROT_EXEC, "PROT_EXEC"},
	{unix.PROT_GROWSDOWN, "PROT_GROWSDOWN"}, {unix.PROT_GROWSUP, "PROT_GROWSUP"},
}

var mapFlagNames = []flag{
	{unix.MAP_FIXED, "MAP_FIXED"}, {unix.MAP_ANONYMOUS, "MAP_ANONYMOUS"},
	{unix.MAP_32BIT, "MAP_32BIT"}, {unix.MAP_GROWSDOWN, "MAP_GROWSDOWN"},
	{unix.MAP_DENYWRITE, "MAP_DENYWRITE"}, {unix.MAP_EXECUTABLE, "MAP_EXECUTABLE"},
	{unix.MAP_LOCKED, "MAP_LOCKED"}, {unix.MAP_NORESERVE, "MAP_NORESERVE"},
	{unix.MAP_POPULATE, "MAP_POPULATE"}, {unix.MAP_NONBLOCK, "MAP_NONBLOCK"},
	{unix.MAP_STACK, "MAP_STACK"}, {unix.MAP_HUGETLB, "MAP_HUGETLB"}, {unix.MAP_SYNC, "MAP_SYNC"},
	{unix.MAP_FIXED_NOREPLACE, "MAP_FIXED_NOREPLACE"},
}

var mremapNames = []flag{{unix.MREMAP_MAYMOVE, "MREMAP_MAYMOVE"}, {unix.MREMAP_FIXED, "MREMAP_FIXED"}, {unix.MREMAP_DONTUNMAP, "MREMAP_DONTUNMAP"}}

var madviseNames = map[uint64]string{
	unix.MADV_NORMAL: "MADV_NORMAL", unix.MADV_RANDOM: "MADV_RANDOM", unix.MADV_SEQUENTIAL: "MADV_SEQUENTIAL",
	unix.MADV_WILLNEED: "MADV_WILLNEED", unix.MADV_DONTNEED: "MADV_DONTNEED", unix.MADV_FREE: "MADV_FREE",
	unix.MADV_REMOVE: "MADV_REMOVE", unix.MADV_DONTFORK: "MADV_DONTFORK", unix.MADV_DOFORK: "MADV_DOFORK",
	unix.MADV_MERGEABLE: "MADV_MERGEABLE", unix.MADV_UNMERGEABLE: "MADV_UNMERGEABLE",
	unix.MADV_HUGEPAGE: "MADV_HUGEPAGE", unix.MADV_NOHUGEPAGE: "MADV_NOHUGEPAGE",
	unix.MADV_DONTDUMP: "MADV_DONTDUMP", unix.MADV_DODUMP: "MADV_DODUMP",
}

var sigHowNames = map[uint64]string{unix.SIG_BLOCK: "SIG_BLOCK", unix.SIG_UNBLOCK: "SIG_UNBLOCK", unix.SIG_SETMASK: "SIG_SETMASK"}

var saFlagNames = []flag{
	{0x1, "SA_NOCLDSTOP"}, {0x2, "SA_NOCLDWAIT"}, {0x4, "SA_SIGINFO"}, {0x04000000, "SA_RESTORER"},
	{0x08000000, "SA_ONSTACK"}, {saRestart, "SA_RESTART"}, {0x40000000, "SA_NODEFER"}, {0x80000000, "SA_RESETHAND"},
}

var cloneFlagNames = []flag{
	{unix.CLONE_VM, "CLONE_VM"}, {unix.CLONE_FS, "CLONE_FS"}, {unix.CLONE_FILES, "CLONE_FILES"},
	{unix.CLONE_SIGHAND, "CLONE_SIGHAND"}, {unix.CLONE_PIDFD, "CLONE_PIDFD"}, {unix.CLONE_PTRACE, "CLONE_PTRACE"},
	{unix.CLONE_VFORK, "CLONE_VFORK"}, {unix.CLONE_PARENT, "CLONE_PARENT"}, {unix.CLONE_THREAD, "CLONE_THREAD"},
	{unix.CLONE_NEWNS, "CLONE_NEWNS"}, {unix.CLONE_SYSVSEM, "CLONE_SYSVSEM"}, {unix.CLONE_SETTLS, "CLONE_SETTLS"},
	{unix.CLONE_PARENT_SETTID, "CLONE_PARENT_SETTID"}, {unix.CLONE_CHILD_CLEARTID, "CLONE_CHILD_CLEARTID"},
	{unix.CLONE_DETACHED, "CLONE_DETACHED"}, {unix.CLONE_UNTRACED, "CLONE_UNTRACED"},
	{unix.CLONE_CHILD_SETTID, "CLONE_CHILD_SETTID"}, {unix.CLONE_NEWCGROUP, "CLONE_NEWCGROUP"},
	{unix.CLONE_NEWUTS, "CLONE_NEWUTS"}, {unix.CLONE_NEWIPC, "CLONE_NEWIPC"}, {unix.CLONE_NEWUSER, "CLONE_NEWUSER"},
	{unix.CLONE_NEWPID, "CLONE_NEWPID"}, {unix.CLONE_NEWNET, "CLONE_NEWNET"}, {unix.CLONE_IO, "CLONE_IO"},
}

var waitNames = []flag{
	{unix.WNOHANG, "WNOHANG"}, {unix.WUNTRACED, "WUNTRACED"}, {unix.WEXITED, "WEXITED"},
	{unix.WCONTINUED, "WCONTINUED"}, {unix.WNOWAIT, "WNOWAIT"}, {0x20000000, "__WNOTHREAD"},
	{0x40000000, "__WALL"}, {0x80000000, "__WCLONE"},
}

var fcntlNames = map[uint64]string{
	unix.F_DUPFD: "F_DUPFD", unix.F_GETFD: "F_GETFD", unix.F_SETFD: "F_SETFD", unix.F_GETFL: "F_GETFL",
	unix.F_SETFL: "F_SETFL", unix.F_GETLK: "F_GETLK", unix.F_SETLK: "F_SETLK", unix.F_SETLKW: "F_SETLKW",
	unix.F_SETOWN: "F_SETOWN", unix.F_GETOWN: "F_GETOWN", unix.F_SETSIG: "F_SETSIG", unix.F_GETSIG: "F_GETSIG",
	unix.F_SETOWN_EX: "F_SETOWN_EX", unix.F_GETOWN_EX: "F_GETOWN_EX",
	unix.F_DUPFD_CLOEXEC: "F_DUPFD_CLOEXEC", unix.F_SETPIPE_SZ: "F_SETPIPE_SZ", unix.F_GETPIPE_SZ: "F_GETPIPE_SZ",
	unix.F_ADD_SEALS: "F_ADD_SEALS", unix.F_GET_SEALS: "F_GET_SEALS",
	unix.F_OFD_GETLK: "F_OFD_GETLK", unix.F_OFD_SETLK: "F_OFD_SETLK", unix.F_OFD_SETLKW: "F_OFD_SETLKW",
}

var ioctlNames = map[uint64]string{
	unix.TCGETS: "TCGETS", unix.TCSETS: "TCSETS", unix.TCSETSW: "TCSETSW", unix.TCSETSF: "TCSETSF",
	unix.TIOCGWINSZ: "TIOCGWINSZ", unix.TIOCSWINSZ: "TIOCSWINSZ", unix.TIOCGPGRP: "TIOCGPGRP",
	unix.TIOCSPGRP: "TIOCSPGRP", 0x541b: "FIONREAD", 0x5421: "FIONBIO",
	0x5451: "FIOCLEX", 0x5450: "FIONCLEX", 0x5452: "FIOASYNC",
}

var whenceNames = map[uint64]string{unix.SEEK_SET: "SEEK_SET", unix.SEEK_CUR: "SEEK_CUR", unix.SEEK_END: "SEEK_END", unix.SEEK_DATA: "SEEK_DATA", unix.SEEK_HOLE: "SEEK_HOLE"}

var clockNames = map[uint64]string{
	unix.CLOCK_REALTIME: "CLOCK_REALTIME", unix.CLOCK_MONOTONIC: "CLOCK_MONOTONIC",
	unix.CLOCK_PROCESS_CPUTIME_ID: "CLOCK_PROCESS_CPUTIME_ID", unix.CLOCK_THREAD_CPUTIME_ID: "CLOCK_THREAD_CPUTIME_ID",
	unix.CLOCK_MONOTONIC_RAW: "CLOCK_MONOTONIC_RAW", unix.CLOCK_REALTIME_COARSE: "CLOCK_REALTIME_COARSE",
	unix.CLOCK_MONOTONIC_COARSE: "CLOCK_MONOTONIC_COARSE", unix.CLOCK_BOOTTIME: "CLOCK_BOOTTIME",
	unix.CLOCK_REALTIME_ALARM: "CLOCK_REALTIME_ALARM", unix.CLOCK_BOOTTIME_ALARM: "CLOCK_BOOTTIME_ALARM",
	unix.CLOCK_TAI: "CLOCK_TAI",
}

var timerFlagNames = []flag{{unix.TIMER_ABSTIME, "TIMER_ABSTIME"}}

var futexNames = map[uint64]string{
	0: "FUTEX_WAIT", 1: "FUTEX_WAKE", 2: "FUTEX_FD", 3: "FUTEX_REQUEUE", 4: "FUTEX_CMP_REQUEUE",
	5: "FUTEX_WAKE_OP", 6: "FUTEX_LOCK_PI", 7: "FUTEX_UNLOCK_PI", 8: "FUTEX_TRYLOCK_PI",
	9: "FUTEX_WAIT_BITSET", 10: "FUTEX_WAKE_BITSET", 11: "FUTEX_WAIT_REQUEUE_PI",
	12: "FUTEX_CMP_REQUEUE_PI", 13: "FUTEX_LOCK_PI2",
}

var archPrctlNames = map[uint64]string{0x1001: "ARCH_SET_GS", 0x1002: "ARCH_SET_FS", 0x1003: "ARCH_GET_FS", 0x1004: "ARCH_GET_GS", 0x1011: "ARCH_GET_CPUID", 0x1012: "ARCH_SET_CPUID"}

var prctlNames = map[uint64]string{
	unix.PR_SET_PDEATHSIG: "PR_SET_PDEATHSIG", unix.PR_GET_PDEATHSIG: "PR_GET_PDEATHSIG",
	unix.PR_GET_DUMPABLE: "PR_GET_DUMPABLE", unix.PR_SET_DUMPABLE: "PR_SET_DUMPABLE",
	unix.PR_SET_NAME: "PR_SET_NAME", unix.PR_GET_NAME: "PR_GET_NAME",
	unix.PR_SET_SECCOMP: "PR_SET_SECCOMP", unix.PR_GET_SECCOMP: "PR_GET_SECCOMP",
	unix.PR_SET_NO_NEW_PRIVS: "PR_SET_NO_NEW_PRIVS", unix.PR_GET_NO_NEW_PRIVS: "PR_GET_NO_NEW_PRIVS",
	unix.PR_SET_CHILD_SUBREAPER: "PR_SET_CHILD_SUBREAPER", unix.PR_GET_CHILD_SUBREAPER: "PR_GET_CHILD_SUBREAPER",
	unix.PR_SET_TIMERSLACK: "PR_SET_TIMERSLACK", unix.PR_GET_TIMERSLACK: "PR_GET_TIMERSLACK",
}
