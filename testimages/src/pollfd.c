/*
 * pollfd - poll, ppoll, select and pselect on the files emuckpt knows,
 * and /dev/hpet's poll and O_ASYNC signals (Linux's hpet_poll and
 * hpet_fasync).
 *
 * Each check prints one line "NAME: RESULT"; a check that does not hold
 * also prints "FAIL NAME". The last line is "ok" (exit 0) or "FAIL <count>"
 * (exit 1). Without arguments only the generic checks run, whose output is
 * the same on Linux (the tests compare it with a native run). With "hpet"
 * the /dev/hpet checks follow (emuckpt or a Linux with /dev/hpet; without
 * it: "open: errno=NAME", exit 2); with "hpet spin" also a busy loop that
 * makes no system call and must still be interrupted by SIGIO.
 *
 * Expected output of the generic checks:
 *   poll_devnull: ret=1 revents=0x5
 *   poll_devzero: ret=1 revents=0x5
 *   poll_pipe_empty: ret=0 revents=0x0
 *   poll_pipe_write_end: ret=1 revents=0x4
 *   poll_pipe_data: ret=1 revents=0x1
 *   poll_negative_fd: ret=1 revents=0x0
 *   poll_bad_fd: ret=1 revents=0x20
 *   poll_timeout: ret=0 waited=1
 *   poll_hup: ret=1 revents=0x10
 *   select_pipe: ret=2 r=1 w_in_read=0 w=1
 *   select_timeout: ret=0 tv=0.000000
 *   select_ebadf: ret=-1 errno=EBADF
 *   select_einval: ret=-1 errno=EINVAL
 *   ppoll_sigmask: ret=-1 errno=EINTR handled=1 still_blocked=1
 *   ppoll_bad_sigsetsize: ret=-1 errno=EINVAL
 *   ppoll_timespec: ret=0 ts=0.000000000
 *   pselect_sigmask: ret=-1 errno=EINTR handled=1 still_blocked=1
 *   fioasync: on=1 off=1
 *   ok
 *
 * and of the /dev/hpet checks (64 Hz):
 *   hpet_poll_before_irqfreq: ret=0 revents=0x0
 *   hpet_poll_ie_off: ret=0 revents=0x0
 *   hpet_poll_wait: ret=1 revents=0x1
 *   hpet_read: ret=8 count_ge_1=1
 *   hpet_poll_after_read: ret=0 revents=0x0
 *   hpet_setown: ret=0 getown_is_pid=1
 *   hpet_setown_esrch: ret=-1 errno=ESRCH
 *   hpet_setsig_einval: ret=-1 errno=EINVAL
 *   hpet_setsig: ret=0 getsig=12
 *   hpet_fasync_setsig: signo=12 code=1 fd_ok=1 band=0x41
 *   hpet_fasync_sigio: signo=29 code=128
 *   hpet_ppoll_blocks_sigio: ret=1 revents=0x1
 *   ok
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include "hpet_abi.h"

#include "errname.h"

static int failures;

static void check(const char *name, int ok)
{
	if (!ok) {
		printf("FAIL %s\n", name);
		failures++;
	}
}

static long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

static int poll1(const char *name, int fd, short events, int timeout, short want_rev, int want_ret)
{
	struct pollfd p = {.fd = fd, .events = events};
	int r = poll(&p, 1, timeout);
	printf("%s: ret=%d revents=0x%x\n", name, r, p.revents);
	check(name, r == want_ret && p.revents == want_rev);
	return r;
}

static volatile sig_atomic_t handled, got_signo, got_code, got_fd;
static volatile long got_band;

static void on_usr1(int sig) { (void)sig; handled++; }

static void on_info(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	got_signo = sig;
	got_code = si->si_code;
	got_fd = si->si_fd;
	got_band = si->si_band;
	handled++;
}

static int usr1_blocked(void)
{
	sigset_t cur;
	sigprocmask(SIG_SETMASK, NULL, &cur);
	return sigismember(&cur, SIGUSR1);
}

static void generic(void)
{
	int fd = open("/dev/null", O_RDWR);
	poll1("poll_devnull", fd, POLLIN | POLLOUT, 0, POLLIN | POLLOUT, 1);
	close(fd);
	fd = open("/dev/zero", O_RDONLY);
	poll1("poll_devzero", fd, POLLIN | POLLOUT, 0, POLLIN | POLLOUT, 1);
	close(fd);

	int p[2];
	pipe(p);
	poll1("poll_pipe_empty", p[0], POLLIN, 0, 0, 0);
	poll1("poll_pipe_write_end", p[1], POLLIN | POLLOUT, 0, POLLOUT, 1);
	write(p[1], "x", 1);
	poll1("poll_pipe_data", p[0], POLLIN, 0, POLLIN, 1);

	struct pollfd two[2] = {{.fd = -1, .events = POLLIN}, {.fd = p[0], .events = POLLIN}};
	int r = poll(two, 2, 0);
	printf("poll_negative_fd: ret=%d revents=0x%x\n", r, two[0].revents);
	check("poll_negative_fd", r == 1 && two[0].revents == 0 && two[1].revents == POLLIN);
	/*
	 * A descriptor that is surely closed, and below 64: Linux's select
	 * ignores bits past the size of the caller's descriptor table (64
	 * at least), so a fixed large number would depend on how many
	 * descriptors the parent once had open.
	 */
	int badfd = dup(0);
	close(badfd);
	poll1("poll_bad_fd", badfd, POLLIN, 0, POLLNVAL, 1);

	char c;
	read(p[0], &c, 1);
	long t0 = now_ns();
	struct pollfd e = {.fd = p[0], .events = POLLIN};
	r = poll(&e, 1, 30);
	int waited = now_ns() - t0 >= 30000000L;
	printf("poll_timeout: ret=%d waited=%d\n", r, waited);
	check("poll_timeout", r == 0 && waited);

	int q[2];
	pipe(q);
	close(q[1]);
	poll1("poll_hup", q[0], POLLIN, 0, POLLHUP, 1);
	close(q[0]);

	write(p[1], "y", 1);
	fd_set rs, ws;
	FD_ZERO(&rs);
	FD_ZERO(&ws);
	FD_SET(p[0], &rs);
	FD_SET(p[1], &rs);
	FD_SET(p[1], &ws);
	struct timeval tv = {0, 0};
	r = select(p[1] + 1, &rs, &ws, NULL, &tv);
	printf("select_pipe: ret=%d r=%d w_in_read=%d w=%d\n", r, FD_ISSET(p[0], &rs) != 0, FD_ISSET(p[1], &rs) != 0, FD_ISSET(p[1], &ws) != 0);
	check("select_pipe", r == 2 && FD_ISSET(p[0], &rs) && !FD_ISSET(p[1], &rs) && FD_ISSET(p[1], &ws));
	read(p[0], &c, 1);

	FD_ZERO(&rs);
	FD_SET(p[0], &rs);
	tv = (struct timeval){0, 20000};
	/* The kernel writes the time left back; musl's select passes a copy. */
	r = syscall(SYS_select, p[0] + 1, &rs, NULL, NULL, &tv);
	printf("select_timeout: ret=%d tv=%ld.%06ld\n", r, (long)tv.tv_sec, (long)tv.tv_usec);
	check("select_timeout", r == 0 && tv.tv_sec == 0 && tv.tv_usec == 0);

	FD_ZERO(&rs);
	FD_SET(badfd, &rs);
	tv = (struct timeval){0, 0};
	r = select(badfd + 1, &rs, NULL, NULL, &tv);
	printf("select_ebadf: ret=%d errno=%s\n", r, errname(r < 0 ? errno : 0));
	check("select_ebadf", r == -1 && errno == EBADF);
	r = syscall(SYS_select, -1, NULL, NULL, NULL, &tv);
	printf("select_einval: ret=%d errno=%s\n", r, errname(r < 0 ? errno : 0));
	check("select_einval", r == -1 && errno == EINVAL);

	/* ppoll with a mask that lets a pending, blocked SIGUSR1 in. */
	signal(SIGUSR1, on_usr1);
	sigset_t block, empty;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigemptyset(&empty);
	sigprocmask(SIG_BLOCK, &block, NULL);
	raise(SIGUSR1);
	handled = 0;
	e = (struct pollfd){.fd = p[0], .events = POLLIN};
	r = ppoll(&e, 1, NULL, &empty);
	int err = errno;
	printf("ppoll_sigmask: ret=%d errno=%s handled=%d still_blocked=%d\n", r, errname(r < 0 ? err : 0), (int)handled, usr1_blocked());
	check("ppoll_sigmask", r == -1 && err == EINTR && handled == 1 && usr1_blocked());

	struct timespec ts = {0, 0};
	r = syscall(SYS_ppoll, &e, 1, &ts, &empty, 4);
	printf("ppoll_bad_sigsetsize: ret=%d errno=%s\n", r, errname(r < 0 ? errno : 0));
	check("ppoll_bad_sigsetsize", r == -1 && errno == EINVAL);

	ts = (struct timespec){0, 20000000};
	r = syscall(SYS_ppoll, &e, 1, &ts, NULL, 8);
	printf("ppoll_timespec: ret=%d ts=%ld.%09ld\n", r, (long)ts.tv_sec, ts.tv_nsec);
	check("ppoll_timespec", r == 0 && ts.tv_sec == 0 && ts.tv_nsec == 0);

	raise(SIGUSR1);
	handled = 0;
	FD_ZERO(&rs);
	FD_SET(p[0], &rs);
	r = pselect(p[0] + 1, &rs, NULL, NULL, NULL, &empty);
	err = errno;
	printf("pselect_sigmask: ret=%d errno=%s handled=%d still_blocked=%d\n", r, errname(r < 0 ? err : 0), (int)handled, usr1_blocked());
	check("pselect_sigmask", r == -1 && err == EINTR && handled == 1 && usr1_blocked());
	sigprocmask(SIG_UNBLOCK, &block, NULL);

	int on = 1, off = 0;
	ioctl(p[0], FIOASYNC, &on);
	int was_on = (fcntl(p[0], F_GETFL) & O_ASYNC) != 0;
	ioctl(p[0], FIOASYNC, &off);
	int is_off = (fcntl(p[0], F_GETFL) & O_ASYNC) == 0;
	printf("fioasync: on=%d off=%d\n", was_on, is_off);
	check("fioasync", was_on && is_off);
	close(p[0]);
	close(p[1]);
}

/* Waits in pause() for the handler; each pause ends with EINTR. */
static void wait_signal(void)
{
	handled = 0;
	while (!handled)
		pause();
}

static int hpet(int spin)
{
	int fd = open("/dev/hpet", O_RDONLY);
	if (fd < 0) {
		printf("open: errno=%s\n", errname(errno));
		return 2;
	}
	poll1("hpet_poll_before_irqfreq", fd, POLLIN, 0, 0, 0);
	ioctl(fd, HPET_IRQFREQ, 64);
	poll1("hpet_poll_ie_off", fd, POLLIN, 0, 0, 0);
	ioctl(fd, HPET_IE_ON, 0);
	poll1("hpet_poll_wait", fd, POLLIN, -1, POLLIN, 1);
	unsigned long count = 0;
	long n = read(fd, &count, sizeof count);
	printf("hpet_read: ret=%ld count_ge_1=%d\n", n, count >= 1);
	check("hpet_read", n == 8 && count >= 1);
	poll1("hpet_poll_after_read", fd, POLLIN, 0, 0, 0);

	int r = fcntl(fd, F_SETOWN, getpid());
	printf("hpet_setown: ret=%d getown_is_pid=%d\n", r, fcntl(fd, F_GETOWN) == getpid());
	check("hpet_setown", r == 0 && fcntl(fd, F_GETOWN) == getpid());
	r = fcntl(fd, F_SETOWN, 99999);
	printf("hpet_setown_esrch: ret=%d errno=%s\n", r, errname(r < 0 ? errno : 0));
	check("hpet_setown_esrch", r == -1 && errno == ESRCH);
	r = fcntl(fd, F_SETSIG, 65);
	printf("hpet_setsig_einval: ret=%d errno=%s\n", r, errname(r < 0 ? errno : 0));
	check("hpet_setsig_einval", r == -1 && errno == EINVAL);
	r = fcntl(fd, F_SETSIG, SIGUSR2);
	printf("hpet_setsig: ret=%d getsig=%d\n", r, fcntl(fd, F_GETSIG));
	check("hpet_setsig", r == 0 && fcntl(fd, F_GETSIG) == SIGUSR2);

	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_info;
	sa.sa_flags = SA_SIGINFO;
	sigaction(SIGUSR2, &sa, NULL);
	sigaction(SIGIO, &sa, NULL);
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_ASYNC);
	wait_signal();
	printf("hpet_fasync_setsig: signo=%d code=%d fd_ok=%d band=0x%lx\n", (int)got_signo, (int)got_code, got_fd == fd, got_band);
	check("hpet_fasync_setsig", got_signo == SIGUSR2 && got_code == POLL_IN && got_fd == fd && got_band == (POLLIN | POLLRDNORM));

	/* SIGIO itself, with O_ASYNC turned off and on through FIOASYNC. */
	fcntl(fd, F_SETSIG, 0);
	int off = 0, on = 1;
	ioctl(fd, FIOASYNC, &off);
	ioctl(fd, FIOASYNC, &on);
	wait_signal();
	printf("hpet_fasync_sigio: signo=%d code=%d\n", (int)got_signo, (int)got_code);
	check("hpet_fasync_sigio", got_signo == SIGIO && got_code == SI_KERNEL);

	if (spin) {
		handled = 0;
		for (unsigned long i = 0; !handled && i < 20000000000ul; i++)
			__asm__ volatile("" ::: "memory");
		printf("hpet_sigio_while_spinning: handled=%d\n", handled != 0);
		check("hpet_sigio_while_spinning", handled != 0);
	}

	/* A ppoll whose mask blocks SIGIO reports the interrupt instead. */
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGIO);
	read(fd, &count, sizeof count);
	struct pollfd p = {.fd = fd, .events = POLLIN};
	r = ppoll(&p, 1, NULL, &mask);
	printf("hpet_ppoll_blocks_sigio: ret=%d revents=0x%x\n", r, p.revents);
	check("hpet_ppoll_blocks_sigio", r == 1 && p.revents == POLLIN);

	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_ASYNC);
	ioctl(fd, HPET_IE_OFF, 0);
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	generic();
	if (argc > 1 && strcmp(argv[1], "hpet") == 0) {
		int r = hpet(argc > 2 && strcmp(argv[2], "spin") == 0);
		if (r)
			return r;
	}
	if (failures) {
		printf("FAIL %d\n", failures);
		return 1;
	}
	printf("ok\n");
	return 0;
}
