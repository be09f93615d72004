/*
 * timer_ckpt: timers that run across a checkpoint. An ITIMER_REAL
 * interval timer (30 ms) and a POSIX timer on CLOCK_MONOTONIC (50 ms,
 * SIGRTMIN, si_value 7) are armed; the program then waits in pause() and
 * prints a line per wake-up until it has seen 8 SIGALRMs. With the
 * argument "time" each line also shows CLOCK_MONOTONIC in microseconds,
 * which under --deterministic is the same in every run, so a run cut by a
 * checkpoint and restored prints the same bytes as a run straight through.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static volatile int alrm, rt, rt_value;

static void on_alrm(int sig) { (void)sig; alrm++; }

static void on_rt(int sig, siginfo_t *si, void *uc)
{
	(void)sig, (void)uc;
	rt++;
	rt_value = si->si_value.sival_int;
}

int main(int argc, char **argv)
{
	int show_time = argc > 1 && strcmp(argv[1], "time") == 0;
	setvbuf(stdout, NULL, _IONBF, 0);
	signal(SIGALRM, on_alrm);
	struct sigaction sa = {.sa_sigaction = on_rt, .sa_flags = SA_SIGINFO};
	sigaction(SIGRTMIN, &sa, NULL);
	struct itimerval it = {{0, 30000}, {0, 30000}};
	setitimer(ITIMER_REAL, &it, NULL);
	timer_t id;
	struct sigevent sev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGRTMIN};
	sev.sigev_value.sival_int = 7;
	timer_create(CLOCK_MONOTONIC, &sev, &id);
	struct itimerspec its = {{0, 50000000}, {0, 50000000}};
	timer_settime(id, 0, &its, NULL);
	puts("armed");
	while (alrm < 8) {
		pause();
		if (show_time) {
			struct timespec ts;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			printf("t=%lld ", ts.tv_sec * 1000000LL + ts.tv_nsec / 1000);
		}
		printf("alrm=%d rt=%d value=%d\n", alrm, rt, rt_value);
	}
	puts("done");
	return 0;
}
