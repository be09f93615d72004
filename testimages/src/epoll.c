/*
 * epoll - epoll, eventfd, rt_sigsuspend, rt_sigtimedwait, the affinity
 * calls and getcpu, as Linux does them.
 *
 * Each check prints one line "NAME: ..." and, if it does not hold, also
 * "FAIL NAME". The last line is "ok" (exit 0) or "FAIL <count>" (exit 1).
 * Nothing printed depends on the machine (CPU numbers and masks are only
 * checked, not printed), so the tests compare the output with a native
 * run.
 *
 * "epoll ckpt KIND" (KIND eventfd or epoll) opens one such descriptor,
 * then calls emuckpt_checkpoint() and prints "checkpoint: ret=R": under
 * emuckpt -5 (EIO), as images do not hold them yet.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "emuckpt.h"
#include "errname.h"

static int failures;

static void check(const char *name, int ok)
{
	if (!ok) {
		printf("FAIL %s\n", name);
		failures++;
	}
}

/* call prints a call's result as "ret=R" or "ret=-1 errno=NAME" and
 * checks it against want (a return value, or -errno). */
static long call(const char *name, long r, long want)
{
	int e = errno;
	if (r < 0) {
		printf("%s: ret=-1 errno=%s\n", name, errname(e));
		check(name, want == -e);
		return -e;
	}
	printf("%s: ret=%ld\n", name, r);
	check(name, want == r);
	return r;
}

static long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

static void eventfds(void)
{
	uint64_t v = 0;
	int fd = eventfd(3, EFD_NONBLOCK);
	call("efd_read", read(fd, &v, 8), 8);
	printf("efd_value: %llu\n", (unsigned long long)v);
	check("efd_value", v == 3);
	call("efd_read_empty", read(fd, &v, 8), -EAGAIN);
	call("efd_read_short", read(fd, &v, 4), -EINVAL);
	v = UINT64_MAX;
	call("efd_write_max", write(fd, &v, 8), -EINVAL);
	v = UINT64_MAX - 1;
	call("efd_write_full", write(fd, &v, 8), 8);
	v = 1;
	call("efd_write_overflow", write(fd, &v, 8), -EAGAIN);
	struct pollfd p = {.fd = fd, .events = POLLIN | POLLOUT};
	poll(&p, 1, 0);
	printf("efd_poll_full: revents=0x%x\n", p.revents);
	check("efd_poll_full", p.revents == POLLIN);
	v = 0;
	call("efd_write_zero", write(fd, &v, 8), 8);
	close(fd);

	fd = eventfd(2, EFD_SEMAPHORE | EFD_NONBLOCK | EFD_CLOEXEC);
	call("efd_sem_read1", read(fd, &v, 8), 8);
	check("efd_sem_value1", v == 1);
	call("efd_sem_read2", read(fd, &v, 8), 8);
	check("efd_sem_value2", v == 1);
	call("efd_sem_empty", read(fd, &v, 8), -EAGAIN);
	p.fd = fd;
	poll(&p, 1, 0);
	printf("efd_poll_empty: revents=0x%x\n", p.revents);
	check("efd_poll_empty", p.revents == POLLOUT);
	call("efd_cloexec", fcntl(fd, F_GETFD), FD_CLOEXEC);
	call("efd_flags", fcntl(fd, F_GETFL) & (O_ACCMODE | O_NONBLOCK), O_RDWR | O_NONBLOCK);
	struct stat st;
	fstat(fd, &st);
	printf("efd_stat: mode=%o\n", st.st_mode);
	check("efd_stat", st.st_mode == 0600);
	close(fd);
	call("efd_bad_flags", syscall(SYS_eventfd2, 0, 0x100), -EINVAL);
	fd = syscall(SYS_eventfd, 5);
	call("efd_legacy", read(fd, &v, 8), 8);
	check("efd_legacy_value", v == 5);
	close(fd);
}

/* A thread that waits, then writes to an eventfd or a pipe. */
struct later {
	int fd;
	long delay_ms;
};

static void *write_later(void *arg)
{
	struct later *l = arg;
	struct timespec ts = {0, l->delay_ms * 1000000L};
	nanosleep(&ts, NULL);
	uint64_t v = 7;
	if (write(l->fd, &v, 8) != 8)
		printf("write_later: %s\n", errname(errno));
	return NULL;
}

static void eventfd_blocking(void)
{
	int fd = eventfd(0, 0);
	pthread_t th;
	struct later l = {fd, 20};
	pthread_create(&th, NULL, write_later, &l);
	uint64_t v = 0;
	long t0 = now_ns();
	call("efd_block_read", read(fd, &v, 8), 8);
	long waited = now_ns() - t0 >= 15000000L;
	printf("efd_block_value: %llu waited=%ld\n", (unsigned long long)v, waited);
	check("efd_block_value", v == 7 && waited);
	pthread_join(th, NULL);
	close(fd);
}

static int wait1(int ep, int timeout, struct epoll_event *ev)
{
	memset(ev, 0, sizeof *ev);
	return epoll_wait(ep, ev, 1, timeout);
}

static void epoll_errors(void)
{
	struct epoll_event ev = {.events = EPOLLIN};
	int p[2];
	pipe(p);
	/* (musl's epoll_create calls epoll_create1.) */
	call("create_zero", syscall(SYS_epoll_create, 0), -EINVAL);
	call("create_legacy", close(syscall(SYS_epoll_create, 1)), 0);
	call("create1_flags", epoll_create1(1), -EINVAL);
	int ep = epoll_create1(EPOLL_CLOEXEC);
	call("create1_cloexec", fcntl(ep, F_GETFD), FD_CLOEXEC);
	call("ctl_bad_epfd", epoll_ctl(99, EPOLL_CTL_ADD, p[0], &ev), -EBADF);
	call("ctl_bad_fd", epoll_ctl(ep, EPOLL_CTL_ADD, 99, &ev), -EBADF);
	call("ctl_not_epoll", epoll_ctl(p[1], EPOLL_CTL_ADD, p[0], &ev), -EINVAL);
	call("ctl_self", epoll_ctl(ep, EPOLL_CTL_ADD, ep, &ev), -EINVAL);
	int dir = open("/", O_RDONLY | O_DIRECTORY);
	call("ctl_directory", epoll_ctl(ep, EPOLL_CTL_ADD, dir, &ev), -EPERM);
	close(dir);
	char tmp[] = "/tmp/epoll-XXXXXX";
	int reg = mkstemp(tmp);
	unlink(tmp);
	call("ctl_regular_file", epoll_ctl(ep, EPOLL_CTL_ADD, reg, &ev), -EPERM);
	close(reg);
	int mfd = memfd_create("epoll", 0);
	call("ctl_memfd", epoll_ctl(ep, EPOLL_CTL_ADD, mfd, &ev), -EPERM);
	close(mfd);
	int null = open("/dev/null", O_RDWR);
	call("ctl_dev_null", epoll_ctl(ep, EPOLL_CTL_ADD, null, &ev), -EPERM);
	close(null);
	call("ctl_efault", epoll_ctl(ep, EPOLL_CTL_ADD, p[0], (void *)8), -EFAULT);
	call("ctl_mod_missing", epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &ev), -ENOENT);
	call("ctl_del_missing", epoll_ctl(ep, EPOLL_CTL_DEL, p[0], NULL), -ENOENT);
	call("ctl_add", epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev), 0);
	call("ctl_add_again", epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev), -EEXIST);
	call("ctl_bad_op", epoll_ctl(ep, 99, p[0], &ev), -EINVAL);
	ev.events = EPOLLIN | EPOLLEXCLUSIVE;
	call("ctl_mod_exclusive", epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &ev), -EINVAL);
	ev.events = EPOLLIN | EPOLLEXCLUSIVE | EPOLLONESHOT;
	call("ctl_exclusive_oneshot", epoll_ctl(ep, EPOLL_CTL_ADD, p[1], &ev), -EINVAL);
	ev.events = EPOLLOUT | EPOLLWRNORM | EPOLLEXCLUSIVE;
	call("ctl_exclusive_wrnorm", epoll_ctl(ep, EPOLL_CTL_ADD, p[1], &ev), -EINVAL);
	ev.events = EPOLLOUT | EPOLLEXCLUSIVE;
	call("ctl_exclusive", epoll_ctl(ep, EPOLL_CTL_ADD, p[1], &ev), 0);
	ev.events = EPOLLIN;
	call("ctl_mod_of_exclusive", epoll_ctl(ep, EPOLL_CTL_MOD, p[1], &ev), -EINVAL);
	call("ctl_del", epoll_ctl(ep, EPOLL_CTL_DEL, p[0], NULL), 0);

	struct epoll_event out[2];
	call("wait_maxevents_zero", epoll_wait(ep, out, 0, 0), -EINVAL);
	call("wait_bad_epfd", epoll_wait(99, out, 1, 0), -EBADF);
	call("wait_not_epoll", epoll_wait(p[0], out, 1, 0), -EINVAL);
	call("pwait_sigsetsize", syscall(SYS_epoll_pwait, ep, out, 1, 0, &(sigset_t){0}, 4), -EINVAL);
	call("pwait2_bad_timespec", syscall(441, ep, out, 1, &(struct timespec){0, 2000000000L}, NULL, 8), -EINVAL);

	/* Nesting: a cycle is ELOOP, an epoll in an epoll is fine. */
	int a = epoll_create1(0), b = epoll_create1(0);
	ev.events = EPOLLIN;
	call("nest_add", epoll_ctl(a, EPOLL_CTL_ADD, b, &ev), 0);
	call("nest_cycle", epoll_ctl(b, EPOLL_CTL_ADD, a, &ev), -ELOOP);
	ev.events = EPOLLIN | EPOLLEXCLUSIVE;
	call("nest_exclusive", epoll_ctl(ep, EPOLL_CTL_ADD, a, &ev), -EINVAL);
	close(a);
	close(b);
	close(ep);
	close(p[0]);
	close(p[1]);
}

static void epoll_triggers(void)
{
	int p[2];
	pipe(p);
	int ep = epoll_create1(0);
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0x1122334455667788ULL}, got;
	epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev);
	call("lt_empty", wait1(ep, 0, &got), 0);
	long t0 = now_ns();
	call("lt_timeout", wait1(ep, 20, &got), 0);
	check("lt_timeout_waited", now_ns() - t0 >= 15000000L);
	write(p[1], "ab", 2);
	call("lt_ready", wait1(ep, 0, &got), 1);
	printf("lt_event: events=0x%x data=%llx\n", got.events, (unsigned long long)got.data.u64);
	check("lt_event", got.events == EPOLLIN && got.data.u64 == 0x1122334455667788ULL);
	call("lt_again", wait1(ep, 0, &got), 1);
	call("wait_efault", epoll_wait(ep, (void *)8, 1, 0), -EFAULT);

	ev.events = EPOLLIN | EPOLLET;
	ev.data.u32 = 2;
	call("et_mod", epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &ev), 0);
	call("et_efault", epoll_wait(ep, (void *)8, 1, 0), -EFAULT);
	call("et_first", wait1(ep, 0, &got), 1);
	call("et_once", wait1(ep, 0, &got), 0);
	write(p[1], "c", 1);
	call("et_new_data", wait1(ep, 0, &got), 1);
	call("et_once_more", wait1(ep, 0, &got), 0);
	char buf[8];
	call("et_drain", read(p[0], buf, sizeof buf), 3);
	call("et_drained", wait1(ep, 0, &got), 0);

	ev.events = EPOLLIN | EPOLLONESHOT;
	ev.data.u32 = 3;
	epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &ev);
	write(p[1], "d", 1);
	call("oneshot_first", wait1(ep, 0, &got), 1);
	call("oneshot_disabled", wait1(ep, 0, &got), 0);
	call("oneshot_rearm", epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &ev), 0);
	call("oneshot_again", wait1(ep, 0, &got), 1);
	read(p[0], buf, sizeof buf);

	/* A pipe's write end closed: EPOLLHUP, which is always reported. */
	ev.events = EPOLLIN | EPOLLRDHUP;
	epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &ev);
	close(p[1]);
	call("hup", wait1(ep, 0, &got), 1);
	printf("hup_event: events=0x%x\n", got.events);
	check("hup_event", got.events == EPOLLHUP);
	/* Closing the descriptor takes it out of the set. */
	close(p[0]);
	call("closed_gone", wait1(ep, 0, &got), 0);
	close(ep);
}

static void epoll_many(void)
{
	int ep = epoll_create1(0);
	int fds[3];
	for (int i = 0; i < 3; i++) {
		fds[i] = eventfd(1, EFD_NONBLOCK);
		struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i + 1};
		epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
	}
	/* Level-triggered items go round: a second wait with room for two
	 * starts with the one the first left out. */
	struct epoll_event out[4];
	for (int round = 0; round < 2; round++) {
		int n = epoll_wait(ep, out, 2, 0);
		printf("round%d: n=%d", round, n);
		for (int i = 0; i < n; i++)
			printf(" %u", out[i].data.u32);
		printf("\n");
	}
	int n = epoll_wait(ep, out, 4, 0);
	call("all_three", n, 3);

	/* An epoll in an epoll polls readable while it has events. */
	int outer = epoll_create1(0);
	struct epoll_event ev = {.events = EPOLLIN, .data.u32 = 9}, got;
	epoll_ctl(outer, EPOLL_CTL_ADD, ep, &ev);
	call("nested_ready", wait1(outer, 0, &got), 1);
	printf("nested_event: events=0x%x data=%u\n", got.events, got.data.u32);
	uint64_t v;
	for (int i = 0; i < 3; i++)
		read(fds[i], &v, 8);
	call("nested_empty", wait1(outer, 0, &got), 0);
	struct pollfd p = {.fd = ep, .events = POLLIN};
	call("poll_epoll", poll(&p, 1, 0), 0);

	/* A blocking wait on the outer epoll, ended by a thread's write. */
	pthread_t th;
	struct later l = {fds[1], 20};
	pthread_create(&th, NULL, write_later, &l);
	call("nested_block", wait1(outer, -1, &got), 1);
	call("inner_after", epoll_wait(ep, out, 4, 0), 1);
	printf("inner_event: data=%u\n", out[0].data.u32);
	pthread_join(th, NULL);

	/* epoll_pwait2 with a timeout. */
	read(fds[1], &v, 8);
	long t0 = now_ns();
	struct timespec ts = {0, 20000000L};
	call("pwait2_timeout", syscall(441, ep, out, 4, &ts, NULL, 8), 0);
	check("pwait2_waited", now_ns() - t0 >= 15000000L);
	for (int i = 0; i < 3; i++)
		close(fds[i]);
	close(outer);
	close(ep);
}

static volatile sig_atomic_t handled;
static void on_usr1(int sig) { (void)sig; handled++; }

static int blocked(int sig)
{
	sigset_t cur;
	sigprocmask(SIG_SETMASK, NULL, &cur);
	return sigismember(&cur, sig);
}

static void signals(void)
{
	struct sigaction sa = {.sa_handler = on_usr1};
	sigaction(SIGUSR1, &sa, NULL);
	sigset_t usr1, empty;
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	sigemptyset(&empty);
	sigprocmask(SIG_BLOCK, &usr1, NULL);

	/* epoll_pwait with a mask that lets a pending signal in. */
	int ep = epoll_create1(0);
	struct epoll_event got;
	raise(SIGUSR1);
	call("pwait_sigmask", epoll_pwait(ep, &got, 1, -1, &empty), -EINTR);
	printf("pwait_handled: %d blocked=%d\n", handled, blocked(SIGUSR1));
	check("pwait_handled", handled == 1 && blocked(SIGUSR1));
	close(ep);

	raise(SIGUSR1);
	call("sigsuspend", sigsuspend(&empty), -EINTR);
	printf("sigsuspend_handled: %d blocked=%d\n", handled, blocked(SIGUSR1));
	check("sigsuspend_handled", handled == 2 && blocked(SIGUSR1));
	call("sigsuspend_sigsetsize", syscall(SYS_rt_sigsuspend, &empty, 4), -EINVAL);

	/* rt_sigtimedwait takes a blocked pending signal without its
	 * handler. */
	sigset_t usr2;
	sigemptyset(&usr2);
	sigaddset(&usr2, SIGUSR2);
	sigprocmask(SIG_BLOCK, &usr2, NULL);
	siginfo_t si;
	memset(&si, 0, sizeof si);
	struct timespec zero = {0, 0}, ms20 = {0, 20000000L}, bad = {0, -1};
	call("sigtimedwait_none", sigtimedwait(&usr2, &si, &zero), -EAGAIN);
	long t0 = now_ns();
	call("sigtimedwait_timeout", sigtimedwait(&usr2, &si, &ms20), -EAGAIN);
	check("sigtimedwait_waited", now_ns() - t0 >= 15000000L);
	call("sigtimedwait_einval", sigtimedwait(&usr2, &si, &bad), -EINVAL);
	call("sigtimedwait_sigsetsize", syscall(SYS_rt_sigtimedwait, &usr2, NULL, NULL, 4), -EINVAL);
	raise(SIGUSR2);
	call("sigtimedwait", sigtimedwait(&usr2, &si, NULL), SIGUSR2);
	printf("sigtimedwait_info: signo=%d code=%d pid_ok=%d\n", si.si_signo, si.si_code, si.si_pid == getpid());
	check("sigtimedwait_info", si.si_signo == SIGUSR2 && si.si_code == SI_TKILL && si.si_pid == getpid());
	sigset_t pend;
	sigpending(&pend);
	check("sigtimedwait_dequeued", !sigismember(&pend, SIGUSR2));
	/* Another signal, delivered, ends the wait with EINTR. */
	sigprocmask(SIG_UNBLOCK, &usr1, NULL);
	struct itimerspec it = {.it_value = {0, 20000000L}};
	timer_t tm;
	struct sigevent sev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR1};
	timer_create(CLOCK_MONOTONIC, &sev, &tm);
	timer_settime(tm, 0, &it, NULL);
	/* (musl's sigtimedwait makes the call again after EINTR.) */
	call("sigtimedwait_eintr", syscall(SYS_rt_sigtimedwait, &usr2, &si, NULL, 8), -EINTR);
	printf("sigtimedwait_eintr_handled: %d\n", handled);
	timer_delete(tm);
}

static void cpus(void)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	call("getaffinity", syscall(SYS_sched_getaffinity, 0, 8, &set), 8);
	check("getaffinity_cpu0", CPU_ISSET(0, &set));
	call("getaffinity_odd_len", syscall(SYS_sched_getaffinity, 0, 4, &set), -EINVAL);
	call("getaffinity_zero_len", syscall(SYS_sched_getaffinity, 0, 0, &set), -EINVAL);
	call("getaffinity_esrch", syscall(SYS_sched_getaffinity, 999999, 8, &set), -ESRCH);
	call("getaffinity_efault", syscall(SYS_sched_getaffinity, 0, 8, (void *)8), -EFAULT);
	call("getaffinity_self_tid", syscall(SYS_sched_getaffinity, gettid(), 8, &set), 8);
	CPU_ZERO(&set);
	CPU_SET(0, &set);
	call("setaffinity_cpu0", sched_setaffinity(0, sizeof set, &set), 0);
	call("setaffinity_cpu0_short", syscall(SYS_sched_setaffinity, 0, 1, &set), 0);
	CPU_ZERO(&set);
	call("setaffinity_empty", sched_setaffinity(0, sizeof set, &set), -EINVAL);
	CPU_SET(0, &set);
	call("setaffinity_esrch", sched_setaffinity(999999, sizeof set, &set), -ESRCH);
	unsigned cpu = 99, node = 99;
	call("getcpu", syscall(SYS_getcpu, &cpu, &node, NULL), 0);
	check("getcpu_values", cpu < 1024 && node < 1024);
	call("getcpu_nulls", syscall(SYS_getcpu, NULL, NULL, NULL), 0);
	call("getcpu_efault", syscall(SYS_getcpu, (void *)8, NULL, NULL), -EFAULT);
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	if (argc == 3 && strcmp(argv[1], "ckpt") == 0) {
		int fd = strcmp(argv[2], "epoll") == 0 ? epoll_create1(0) : eventfd(0, 0);
		printf("fd: %d\n", fd);
		printf("checkpoint: ret=%ld\n", emuckpt_checkpoint());
		return 0;
	}
	eventfds();
	eventfd_blocking();
	epoll_errors();
	epoll_triggers();
	epoll_many();
	signals();
	cpus();
	if (failures) {
		printf("FAIL %d\n", failures);
		return 1;
	}
	printf("ok\n");
	return 0;
}
