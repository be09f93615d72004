/*
 * efault - bad user pointers passed straight to the kernel.
 *
 * Every call goes through syscall(2) (no libc wrapper, no vDSO) with an
 * unmapped address such as (void *)1.  Each prints
 *     NAME: ret=R errno=E
 * (R is the raw return value, E the errno name or 0) and is compared with
 * the Linux result; a mismatch prints "FAIL NAME: want ..." too.  Exits 0
 * with a final "ok" when all matched, else 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "errname.h"

#define BAD ((void *)1)

static int failures;

static void report(const char *name, long r, long want_ret, int want_errno)
{
	int e = r == -1 ? errno : 0;
	printf("%s: ret=%ld errno=%s\n", name, r, errname(e));
	if (r != want_ret || e != want_errno) {
		printf("FAIL %s: want ret=%ld errno=%s\n", name, want_ret, errname(want_errno));
		failures++;
	}
}

/* Expect -1/EFAULT. */
#define EF(name, ...) (errno = 0, report((name), syscall(__VA_ARGS__), -1, EFAULT))

int main(void)
{
	/* Make sure nothing is pending in stdio before writing to fd 1. */
	fflush(stdout);

	EF("write", SYS_write, 1, BAD, 10);

	int zfd = (int)syscall(SYS_open, "/dev/zero", O_RDONLY);
	if (zfd < 0) {
		printf("FAIL open /dev/zero: %s\n", errname(errno));
		return 1;
	}
	EF("read", SYS_read, zfd, BAD, 10);
	EF("pread64", SYS_pread64, zfd, BAD, 10, 0);
	EF("open", SYS_open, BAD, O_RDONLY);
	EF("openat", SYS_openat, AT_FDCWD, BAD, O_RDONLY);
	EF("stat", SYS_stat, BAD, BAD);
	EF("stat_buf", SYS_stat, "/", BAD);
	EF("fstat", SYS_fstat, zfd, BAD);
	EF("clock_gettime", SYS_clock_gettime, CLOCK_MONOTONIC, BAD);
	EF("gettimeofday", SYS_gettimeofday, BAD, NULL);
	EF("nanosleep", SYS_nanosleep, BAD, NULL);
	EF("uname", SYS_uname, BAD);
	EF("getcwd", SYS_getcwd, BAD, 100);
	EF("getrandom", SYS_getrandom, BAD, 16, 0);
	EF("pipe", SYS_pipe, BAD);
	EF("rt_sigaction", SYS_rt_sigaction, SIGUSR1, BAD, NULL, 8);
	EF("rt_sigprocmask", SYS_rt_sigprocmask, SIG_BLOCK, BAD, NULL, 8);
	EF("writev_iov", SYS_writev, 1, BAD, 1);
	{
		struct iovec iov = { .iov_base = BAD, .iov_len = 10 };
		EF("writev_base", SYS_writev, 1, &iov, 1);
	}

	/* A zero length never touches the buffer: success, not EFAULT. */
	errno = 0;
	report("write_len0", syscall(SYS_write, 1, BAD, 0), 0, 0);
	errno = 0;
	report("read_len0", syscall(SYS_read, zfd, BAD, 0), 0, 0);

	close(zfd);
	if (failures) {
		printf("FAIL %d\n", failures);
		return 1;
	}
	printf("ok\n");
	return 0;
}
