/*
 * fdops - file descriptor table operations.
 *
 * First closes every fd from 3 to 1023 (inherited extras would shift fd
 * numbers), so the output is stable whenever fds 0-2 are open.  Then
 * exercises dup/dup2/dup3, fcntl, close, read/write on /dev/null and
 * /dev/zero, readv/writev, pread/pwrite and ioctl(TCGETS).  Most calls go
 * through syscall(2) to reach the kernel as-is.  Each prints
 *     NAME: ret=R errno=E
 * R is the raw return value (an fd number, byte count, flag word or -1),
 * E the errno name or 0; some lines add decoded details.  Every line but
 * ioctl_stdout_tcgets (depends on whether stdout is a terminal) is checked
 * against the Linux result; mismatches print "FAIL ..." and make the exit
 * status 1.  The last line is "ok".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <termios.h>
#include <unistd.h>

#include "errname.h"

static int failures;

/*
 * Print a result and compare: want_errno != 0 expects -1/want_errno;
 * otherwise the call must succeed and, if want_ret >= 0, return want_ret.
 */
static long report(const char *name, long r, long want_ret, int want_errno)
{
	int e = r == -1 ? errno : 0;
	printf("%s: ret=%ld errno=%s\n", name, r, errname(e));
	int good = want_errno ? (r == -1 && e == want_errno) : (r != -1 && (want_ret < 0 || r == want_ret));
	if (!good) {
		if (want_errno)
			printf("FAIL %s: want ret=-1 errno=%s\n", name, errname(want_errno));
		else
			printf("FAIL %s: want ret=%ld\n", name, want_ret);
		failures++;
	}
	return r;
}
/* Expect success returning RET (or any value if RET < 0). */
#define OK(name, ret, ...) (errno = 0, report((name), syscall(__VA_ARGS__), (ret), 0))
/* Expect failure with ERR. */
#define ERR(name, err, ...) (errno = 0, report((name), syscall(__VA_ARGS__), -1, (err)))

static void check(const char *name, int cond)
{
	printf("%s: %s\n", name, cond ? "ok" : "FAIL");
	if (!cond)
		failures++;
}

/* Decode the F_GETFL bits a program cares about (O_LARGEFILE is ignored). */
static void show_fl(const char *name, long fl, int want_acc, int want_append, int want_nonblock)
{
	int acc = (int)(fl & O_ACCMODE);
	const char *accs = acc == O_RDONLY ? "O_RDONLY" : acc == O_WRONLY ? "O_WRONLY" : acc == O_RDWR ? "O_RDWR" : "?";
	int ap = !!(fl & O_APPEND), nb = !!(fl & O_NONBLOCK);
	printf("%s: accmode=%s append=%d nonblock=%d\n", name, accs, ap, nb);
	if (fl == -1 || acc != want_acc || ap != want_append || nb != want_nonblock) {
		printf("FAIL %s\n", name);
		failures++;
	}
}

int main(void)
{
	for (int fd = 3; fd < 1024; fd++)
		syscall(SYS_close, fd);
	/* Anything we printf must be out before raw writes to fd 1. */
	setvbuf(stdout, NULL, _IONBF, 0);

	/* --- dup family ------------------------------------------------- */
	OK("dup_stdout", 3, SYS_dup, 1);
	OK("dup2_to_10", 10, SYS_dup2, 1, 10);
	OK("dup2_same_fd", 10, SYS_dup2, 10, 10);
	ERR("dup2_same_bad_fd", EBADF, SYS_dup2, 50, 50);
	ERR("dup2_bad_oldfd", EBADF, SYS_dup2, 99, 11);
	ERR("dup_bad_fd", EBADF, SYS_dup, 99);
	OK("dup3_cloexec", 11, SYS_dup3, 1, 11, O_CLOEXEC);
	OK("fcntl_getfd_dup3", FD_CLOEXEC, SYS_fcntl, 11, F_GETFD);
	ERR("dup3_same_fd", EINVAL, SYS_dup3, 11, 11, 0);
	ERR("dup3_bad_flags", EINVAL, SYS_dup3, 1, 12, 0x1);
	OK("dup2_clears_cloexec", 11, SYS_dup2, 1, 11);
	OK("fcntl_getfd_after_dup2", 0, SYS_fcntl, 11, F_GETFD);

	/* --- fcntl -------------------------------------------------------- */
	OK("fcntl_getfd", 0, SYS_fcntl, 3, F_GETFD);
	OK("fcntl_setfd_cloexec", 0, SYS_fcntl, 3, F_SETFD, FD_CLOEXEC);
	OK("fcntl_getfd_cloexec", FD_CLOEXEC, SYS_fcntl, 3, F_GETFD);
	OK("fcntl_dupfd_min20", 20, SYS_fcntl, 1, F_DUPFD, 20);
	OK("fcntl_dupfd_cloexec_min20", 21, SYS_fcntl, 1, F_DUPFD_CLOEXEC, 20);
	OK("fcntl_getfd_dupfd_cloexec", FD_CLOEXEC, SYS_fcntl, 21, F_GETFD);
	OK("fcntl_getfd_dupfd", 0, SYS_fcntl, 20, F_GETFD);
	ERR("fcntl_bad_fd", EBADF, SYS_fcntl, 99, F_GETFD);
	ERR("fcntl_bad_cmd", EINVAL, SYS_fcntl, 1, 9999);
	ERR("fcntl_dupfd_negative", EINVAL, SYS_fcntl, 1, F_DUPFD, (long)-1);

	/* F_GETFL/F_SETFL on /dev/null opened read-write. */
	long nfd = OK("open_devnull_rdwr", 4, SYS_open, "/dev/null", O_RDWR);
	errno = 0;
	long fl = syscall(SYS_fcntl, nfd, F_GETFL);
	show_fl("fcntl_getfl", fl, O_RDWR, 0, 0);
	OK("fcntl_setfl_append_nonblock", 0, SYS_fcntl, nfd, F_SETFL, O_APPEND | O_NONBLOCK | O_WRONLY);
	fl = syscall(SYS_fcntl, nfd, F_GETFL);
	show_fl("fcntl_getfl_after_setfl", fl, O_RDWR, 1, 1); /* accmode cannot change */
	OK("fcntl_setfl_clear", 0, SYS_fcntl, nfd, F_SETFL, 0);
	fl = syscall(SYS_fcntl, nfd, F_GETFL);
	show_fl("fcntl_getfl_after_clear", fl, O_RDWR, 0, 0);

	/* --- close ------------------------------------------------------- */
	ERR("close_bad_fd", EBADF, SYS_close, 99);
	ERR("close_negative_fd", EBADF, SYS_close, (long)-1);
	OK("close_dup", 0, SYS_close, 3);
	char buf[64];
	ERR("read_closed_fd", EBADF, SYS_read, 3, buf, sizeof buf);
	ERR("write_closed_fd", EBADF, SYS_write, 3, "x", 1);
	ERR("close_twice", EBADF, SYS_close, 3);
	OK("open_reuses_lowest", 3, SYS_open, "/dev/null", O_RDONLY);
	ERR("write_rdonly_fd", EBADF, SYS_write, 3, "x", 1);
	syscall(SYS_close, 3);
	OK("open_devnull_wronly", 3, SYS_open, "/dev/null", O_WRONLY);
	ERR("read_wronly_fd", EBADF, SYS_read, 3, buf, sizeof buf);
	syscall(SYS_close, 3);

	/* --- /dev/null and /dev/zero ------------------------------------- */
	OK("read_devnull", 0, SYS_read, nfd, buf, sizeof buf);
	OK("write_devnull", 5, SYS_write, nfd, "hello", 5);
	long zfd = OK("open_devzero", 3, SYS_open, "/dev/zero", O_RDONLY);
	memset(buf, 0xff, sizeof buf);
	OK("read_devzero", 16, SYS_read, zfd, buf, 16);
	check("read_devzero_zeroed", buf[0] == 0 && buf[15] == 0 && buf[16] == (char)0xff);

	/* --- readv / writev ---------------------------------------------- */
	char a[5], b[7];
	memset(a, 1, sizeof a);
	memset(b, 1, sizeof b);
	struct iovec riov[2] = { { a, sizeof a }, { b, sizeof b } };
	OK("readv_devzero", 12, SYS_readv, zfd, riov, 2);
	check("readv_devzero_zeroed", !memchr(a, 1, sizeof a) && !memchr(b, 1, sizeof b));
	struct iovec wiov[3] = { { "writev: ", 8 }, { "", 0 }, { "three parts\n", 12 } };
	OK("writev_stdout", 20, SYS_writev, 1, wiov, 3);
	OK("writev_devnull", 20, SYS_writev, nfd, wiov, 3);
	ERR("writev_bad_iovcnt", EINVAL, SYS_writev, nfd, wiov, (long)-1);
	OK("writev_zero_iovcnt", 0, SYS_writev, nfd, wiov, 0);

	/* --- pread / pwrite ---------------------------------------------- */
	memset(buf, 0xff, sizeof buf);
	OK("pread_devzero", 32, SYS_pread64, zfd, buf, 32, 4096);
	check("pread_devzero_zeroed", !memchr(buf, 0xff, 32));
	OK("pwrite_devnull", 6, SYS_pwrite64, nfd, "abcdef", 6, 100);
	ERR("pread_negative_offset", EINVAL, SYS_pread64, zfd, buf, 8, (long)-1);

	/* --- ioctl ------------------------------------------------------- */
	struct termios t;
	ERR("ioctl_devnull_tcgets", ENOTTY, SYS_ioctl, nfd, TCGETS, &t);
	ERR("ioctl_bad_fd", EBADF, SYS_ioctl, 99, TCGETS, &t);
	/* Not checked: success when stdout is a terminal, ENOTTY otherwise. */
	errno = 0;
	long r = syscall(SYS_ioctl, 1, TCGETS, &t);
	printf("ioctl_stdout_tcgets: ret=%ld errno=%s\n", r, errname(r == -1 ? errno : 0));

	syscall(SYS_close, zfd);
	syscall(SYS_close, nfd);
	if (failures) {
		printf("FAIL %d\n", failures);
		return 1;
	}
	printf("ok\n");
	return 0;
}
