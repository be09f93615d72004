/*
 * hostile: a guest that attacks its kernel. It calls every system call
 * number with arguments drawn from a hostile set -- NULL, tiny and huge
 * pointers, the VMM's own kernel addresses, the syscall trampoline page,
 * pointers just below the end of user space, negative lengths -- and
 * checks that it survives. emuckpt must answer each call with a result or
 * an errno and never crash.
 *
 * Usage: hostile [ROUNDS [SEED]]. Prints "survived N calls" on the saved
 * stdout. Calls that would end or stop the program (exit, kill, pause,
 * execve, ...) and memory calls aimed outside a scratch area are skipped,
 * so that the program itself keeps running. Pointers into the program's
 * own memory point only into a separately mapped buffer, so an over-long
 * length runs into unmapped memory (EFAULT) instead of the program's data.
 *
 * Never run it natively: it makes random system calls as whoever runs it
 * (as root: settimeofday, sethostname, mount, ...).
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/syscall.h>

static uint64_t state;

static uint64_t next(void)
{
	state = state * 6364136223846793005ull + 1442695040888963407ull;
	return state >> 17;
}

#define BUFSIZE 8192
static char *buf;

static long pick(void)
{
	static const long fixed[] = {
		0, 1, 2, 3, -1, -4096, 0x10, 4096, 0x7fffffff,
		(long)0xffffff8000001000ull,	/* the VMM's GDT */
		(long)0xffffff8000005000ull,	/* the VMM's stubs */
		(long)0x7ffffffff000ull,	/* syscall trampoline */
		(long)0x7fffffffeff8ull,	/* last bytes of user space */
		(long)0x800000000000ull,	/* first non-canonical */
		(long)0xdeadbeef000ull,
	};
	switch (next() % 4) {
	case 0:
		return fixed[next() % (sizeof fixed / sizeof fixed[0])];
	case 1:
		return (long)(buf + next() % BUFSIZE);
	case 2:
		return (long)(next() % 64);
	default:
		return (long)(next() << 20 ^ next());
	}
}

/* Calls skipped: they end, stop or replace the program, or block. */
static int skipped(long nr)
{
	switch (nr) {
	case SYS_exit: case SYS_exit_group: case SYS_kill: case SYS_tkill:
	case SYS_tgkill: case SYS_rt_sigreturn: case SYS_pause:
	case SYS_rt_sigsuspend: case SYS_execve: case SYS_execveat:
	case SYS_fork: case SYS_vfork: case SYS_clone: case SYS_clone3:
	case SYS_nanosleep: case SYS_clock_nanosleep: case SYS_select:
	case SYS_pselect6: case SYS_poll: case SYS_ppoll: case SYS_epoll_wait:
	case SYS_epoll_pwait: case SYS_futex: case SYS_wait4: case SYS_waitid:
	case SYS_rt_sigtimedwait: case SYS_reboot: case SYS_vhangup:
	case SYS_munmap: case SYS_mprotect: case SYS_mremap: case SYS_mmap:
	case SYS_madvise: case SYS_brk: case SYS_arch_prctl: case SYS_prctl:
	case SYS_rt_sigaction: case SYS_rt_sigprocmask: case SYS_sigaltstack:
	case SYS_close: case SYS_dup2: case SYS_dup3: case SYS_close_range:
	case SYS_read: case SYS_readv: case SYS_pread64: case SYS_preadv:
	case SYS_preadv2: case SYS_set_tid_address: case SYS_seccomp:
	case SYS_setrlimit: case SYS_prlimit64: case SYS_alarm: case SYS_setitimer:
	case SYS_timer_create: case SYS_msgrcv: case SYS_semop: case SYS_semtimedop:
	case SYS_mq_timedreceive: case SYS_shmat: case SYS_io_uring_enter:
		return 1;
	}
	return 0;
}

/* Memory calls, aimed only at a scratch area well away from the program. */
static void memory_calls(void)
{
	const long scratch = 0x200000000000;
	long addr = scratch + (long)(next() % 64) * 4096;
	long len = (long)(next() % 8) * 4096 + (long)(next() % 2);
	long prot = (long)(next() % 8), flags = (long)(next() % 0x40);
	switch (next() % 6) {
	case 0: syscall(SYS_mmap, addr, len, prot, flags | MAP_FIXED, pick(), 0); break;
	case 1: syscall(SYS_munmap, addr, len); break;
	case 2: syscall(SYS_mprotect, addr, len, prot); break;
	case 3: syscall(SYS_mremap, addr, len, len * 2, MREMAP_MAYMOVE | MREMAP_FIXED, addr + 0x100000); break;
	case 4: syscall(SYS_madvise, addr, len, (long)(next() % 20)); break;
	case 5: syscall(SYS_read, 3, pick(), pick()); break;
	}
}

int main(int argc, char **argv)
{
	long rounds = argc > 1 ? atol(argv[1]) : 10;
	state = argc > 2 ? strtoull(argv[2], 0, 0) : 1;
	buf = mmap((void *)0x300000000000, BUFSIZE, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (buf == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	int out = fcntl(1, F_DUPFD, 1000);
	int null = open("/dev/null", O_RDWR);
	dup2(null, 0);
	dup2(null, 1);
	dup2(null, 2);
	/* fd 3 reads zeros: the only fd hostile reads come from. */
	int zero = open("/dev/zero", O_RDONLY);
	dup2(zero, 3);
	long calls = 0;
	for (long r = 0; r < rounds; r++) {
		for (long nr = 0; nr < 460; nr++) {
			if (skipped(nr))
				continue;
			syscall(nr, pick(), pick(), pick(), pick(), pick(), pick());
			calls++;
		}
		for (int i = 0; i < 100; i++, calls++)
			memory_calls();
		/* Put the descriptors back in case a call moved them. */
		dup2(null, 0);
		dup2(null, 1);
		dup2(null, 2);
		dup2(zero, 3);
	}
	dprintf(out, "survived %ld calls\n", calls);
	return 0;
}
