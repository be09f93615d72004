/*
 * timers: alarm, setitimer/getitimer, POSIX timers (timer_create and
 * friends), CPU-time clocks, getrusage and times, compared line by line
 * with Linux. Only facts that hold on any machine are printed (errno
 * values, si_code, si_timerid, si_value, "overrun > 0"), never times.
 *
 * Timers must interrupt user code that makes no system calls: the "spin"
 * checks spin in pure user code until a flag set by the handler changes,
 * so the program hangs if expiry does not kick the guest. Run with the
 * argument "det" (for --deterministic, where time moves only at system
 * calls) they spin calling getppid instead.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/times.h>
#include <time.h>
#include <unistd.h>

static volatile int alrm, alrm_code, rt, rt_code, rt_id, rt_overrun, rt_value, vt, prof;
static int det;

static void on_alrm(int sig, siginfo_t *si, void *uc)
{
	(void)sig, (void)uc;
	alrm++;
	alrm_code = si->si_code;
}

static void on_rt(int sig, siginfo_t *si, void *uc)
{
	(void)sig, (void)uc;
	rt++;
	rt_code = si->si_code;
	rt_id = si->si_timerid;
	rt_overrun = si->si_overrun;
	rt_value = si->si_value.sival_int;
}

static void on_vt(int sig) { (void)sig; vt++; }
static void on_prof(int sig) { (void)sig; prof++; }

/* spin until *flag reaches n, in user code only unless det. */
static void spin(volatile int *flag, int n)
{
	while (*flag < n)
		if (det)
			syscall(SYS_getppid);
}

static void handle(int sig, void (*fn)(int, siginfo_t *, void *))
{
	struct sigaction sa = {.sa_sigaction = fn, .sa_flags = SA_SIGINFO};
	sigaction(sig, &sa, NULL);
}

static const char *err(int r) { return r == 0 ? "ok" : strerror(errno); }

static long long ns(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	det = argc > 1 && strcmp(argv[1], "det") == 0;
	setvbuf(stdout, NULL, _IONBF, 0);
	handle(SIGALRM, on_alrm);
	handle(SIGRTMIN, on_rt);
	signal(SIGVTALRM, on_vt);
	signal(SIGPROF, on_prof);

	/* alarm */
	printf("alarm(5): %u\n", alarm(5));
	printf("alarm(0) left: %u\n", alarm(0));
	alarm(1);
	pause();
	printf("alarm: signals=%d si_code=%d\n", alrm, alrm_code);

	/* ITIMER_REAL, periodic, interrupting a spin */
	struct itimerval it = {{0, 20000}, {0, 20000}}, old;
	printf("setitimer(REAL): %s\n", err(setitimer(ITIMER_REAL, &it, NULL)));
	getitimer(ITIMER_REAL, &old);
	printf("getitimer: interval=%ld value_ok=%d\n", (long)old.it_interval.tv_usec,
	       old.it_value.tv_sec == 0 && old.it_value.tv_usec > 0 && old.it_value.tv_usec <= 20000);
	alrm = 0;
	spin(&alrm, 3);
	printf("itimer real: at least 3 while spinning\n");
	struct itimerval zero = {0};
	setitimer(ITIMER_REAL, &zero, &old);
	printf("setitimer old interval=%ld\n", (long)old.it_interval.tv_usec);
	getitimer(ITIMER_REAL, &old);
	printf("disarmed: %ld %ld\n", (long)old.it_value.tv_sec, (long)old.it_value.tv_usec);
	printf("setitimer(7): %s\n", err(setitimer(7, &it, NULL)));
	struct itimerval badtv = {{0, 1000000}, {0, 1}};
	printf("setitimer(usec=1e6): %s\n", err(setitimer(ITIMER_REAL, &badtv, NULL)));
	printf("getitimer(-1): %s\n", err(getitimer(-1, &old)));

	/* ITIMER_VIRTUAL and ITIMER_PROF count CPU time */
	struct itimerval cpu = {{0, 10000}, {0, 10000}};
	setitimer(ITIMER_VIRTUAL, &cpu, NULL);
	spin(&vt, 2);
	setitimer(ITIMER_VIRTUAL, &zero, NULL);
	setitimer(ITIMER_PROF, &cpu, NULL);
	spin(&prof, 2);
	setitimer(ITIMER_PROF, &zero, NULL);
	printf("itimer virtual and prof: fired\n");

	/* nanosleep interrupted by a timer signal: EINTR and the time left */
	it = (struct itimerval){{0, 0}, {0, 10000}};
	setitimer(ITIMER_REAL, &it, NULL);
	struct timespec req = {5, 0}, rem = {0, 0};
	int r = nanosleep(&req, &rem);
	printf("nanosleep: %s rem_ok=%d\n", err(r), rem.tv_sec >= 4 && rem.tv_sec < 5);

	/* POSIX timers */
	timer_t id, id2;
	struct sigevent sev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGRTMIN};
	sev.sigev_value.sival_int = 77;
	printf("timer_create: %s\n", err(timer_create(CLOCK_MONOTONIC, &sev, &id)));
	struct itimerspec its = {{0, 5000000}, {0, 5000000}}, cur;
	sigset_t rtset;
	sigemptyset(&rtset);
	sigaddset(&rtset, SIGRTMIN);
	sigprocmask(SIG_BLOCK, &rtset, NULL);
	timer_settime(id, 0, &its, NULL);
	struct timespec wait = {0, 40000000};
	nanosleep(&wait, NULL); /* blocked: the expiries become overruns */
	/* The queued signal is delivered as the unblock returns; blocking
	 * again at once keeps the next expiry (5 ms on) out of the counts,
	 * however late this process runs on a loaded machine. */
	sigprocmask(SIG_UNBLOCK, &rtset, NULL);
	sigprocmask(SIG_BLOCK, &rtset, NULL);
	int rt_seen = rt, overran = rt_overrun > 0, overrun_ok = timer_getoverrun(id) == rt_overrun;
	sigprocmask(SIG_UNBLOCK, &rtset, NULL);
	printf("timer signal: count=%d si_code=%d timerid_ok=%d value=%d overrun>0=%d getoverrun_ok=%d\n",
	       rt_seen, rt_code, rt_id == (int)(long)id, rt_value, overran, overrun_ok);
	timer_gettime(id, &cur);
	printf("timer_gettime: interval=%ld armed=%d\n", cur.it_interval.tv_nsec, cur.it_value.tv_nsec > 0 || cur.it_value.tv_sec > 0);
	rt = 0;
	spin(&rt, 2);
	printf("timer: interrupts a spin\n");
	printf("timer_delete: %s\n", err(timer_delete(id)));
	printf("timer_delete again: %d\n", timer_delete(id));
	printf("timer_gettime deleted: %s\n", err(timer_gettime(id, &cur)));

	/* SIGEV_NONE: nothing is sent, the time still runs down */
	struct sigevent none = {.sigev_notify = SIGEV_NONE};
	timer_create(CLOCK_MONOTONIC, &none, &id2);
	its = (struct itimerspec){{0, 0}, {100, 0}};
	timer_settime(id2, 0, &its, NULL);
	timer_gettime(id2, &cur);
	printf("SIGEV_NONE: running=%d\n", cur.it_value.tv_sec >= 99 && cur.it_value.tv_sec < 100);
	its.it_value = (struct timespec){0, 1000000};
	timer_settime(id2, 0, &its, NULL);
	nanosleep(&wait, NULL);
	timer_gettime(id2, &cur);
	printf("SIGEV_NONE: expired=%d\n", cur.it_value.tv_sec == 0 && cur.it_value.tv_nsec == 0);
	timer_delete(id2);

	/* SIGEV_THREAD_ID to this task, TIMER_ABSTIME on CLOCK_REALTIME */
	struct sigevent tid = {.sigev_notify = SIGEV_THREAD_ID, .sigev_signo = SIGRTMIN};
	tid.sigev_value.sival_int = 5;
	tid.sigev_notify_thread_id = gettid();
	printf("SIGEV_THREAD_ID: %s\n", err(timer_create(CLOCK_REALTIME, &tid, &id)));
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	its = (struct itimerspec){{0, 0}, {now.tv_sec, now.tv_nsec}};
	its.it_value.tv_nsec += 10000000;
	if (its.it_value.tv_nsec >= 1000000000) {
		its.it_value.tv_sec++;
		its.it_value.tv_nsec -= 1000000000;
	}
	rt = 0;
	printf("TIMER_ABSTIME: %s\n", err(timer_settime(id, TIMER_ABSTIME, &its, NULL)));
	spin(&rt, 1);
	printf("abstime signal: value=%d si_code=%d\n", rt_value, rt_code);
	timer_delete(id);
	tid.sigev_notify_thread_id = gettid() + 1000;
	printf("SIGEV_THREAD_ID other: %s\n", err(timer_create(CLOCK_REALTIME, &tid, &id)));
	printf("timer_create(bad clock): %s\n", err(timer_create(CLOCK_MONOTONIC_RAW, &sev, &id)));
	sev.sigev_signo = 65;
	printf("timer_create(signal 65): %s\n", err(timer_create(CLOCK_MONOTONIC, &sev, &id)));
	sev.sigev_notify = 99;
	printf("timer_create(notify 99): %s\n", err(timer_create(CLOCK_MONOTONIC, &sev, &id)));
	printf("timer_create(NULL sevp): %s\n", err(timer_create(CLOCK_BOOTTIME, NULL, &id)));
	its = (struct itimerspec){{0, 0}, {0, 1000000000}};
	printf("timer_settime(nsec=1e9): %s\n", err(timer_settime(id, 0, &its, NULL)));
	timer_delete(id);

	/* CPU-time clocks */
	long long p0 = ns(CLOCK_PROCESS_CPUTIME_ID), t0 = ns(CLOCK_THREAD_CPUTIME_ID);
	clockid_t pc, tc;
	printf("clock_getcpuclockid(0): %d\n", clock_getcpuclockid(0, &pc));
	printf("clock_getcpuclockid(self): %d\n", clock_getcpuclockid(getpid(), &pc));
	printf("pthread_getcpuclockid: %d\n", pthread_getcpuclockid(pthread_self(), &tc));
	printf("clock_getcpuclockid(other): %s\n", strerror(clock_getcpuclockid(4194303, &pc)));
	clock_getcpuclockid(0, &pc);
	for (volatile long i = 0; i < 20000000; i++)
		if (det && i % 1000 == 0)
			syscall(SYS_getppid);
	printf("cpu clocks advance: %d %d %d %d\n", ns(CLOCK_PROCESS_CPUTIME_ID) > p0, ns(CLOCK_THREAD_CPUTIME_ID) > t0,
	       ns(pc) > p0, ns(tc) > t0);
	struct timespec res;
	printf("clock_getres(cpu): %s\n", err(clock_getres(CLOCK_PROCESS_CPUTIME_ID, &res)));
	printf("clock_nanosleep(thread cpu): %d\n", clock_nanosleep(CLOCK_THREAD_CPUTIME_ID, 0, &wait, NULL));

	/* getrusage and times */
	struct rusage ru;
	printf("getrusage(SELF): %s\n", err(getrusage(RUSAGE_SELF, &ru)));
	printf("rusage: cpu>0=%d maxrss>0=%d minflt>0=%d\n",
	       ru.ru_utime.tv_sec + ru.ru_utime.tv_usec + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec > 0,
	       ru.ru_maxrss > 0, ru.ru_minflt > 0);
	printf("getrusage(THREAD): %s\n", err(getrusage(RUSAGE_THREAD, &ru)));
	getrusage(RUSAGE_CHILDREN, &ru);
	printf("rusage children: %ld %ld %ld\n", (long)ru.ru_utime.tv_sec, (long)ru.ru_utime.tv_usec, ru.ru_maxrss);
	printf("getrusage(5): %s\n", err(getrusage(5, &ru)));
	struct tms tm;
	clock_t c = times(&tm);
	printf("times: ret>0=%d children=%ld %ld\n", c > 0, (long)tm.tms_cutime, (long)tm.tms_cstime);
	return 0;
}
