/*
 * threads: POSIX threads (musl): create and join, a mutex and a condition
 * variable, thread ids, thread-directed signals, per-thread signal masks,
 * pthread_exit, and a thread calling exit_group for all.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define N 4
#define ROUNDS 2000

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static long counter;
static int turn;
static volatile sig_atomic_t got[N + 1];
static pid_t tids[N];

static void on_usr1(int sig)
{
	(void)sig;
	pid_t t = syscall(SYS_gettid);
	for (int i = 0; i < N; i++)
		if (tids[i] == t)
			got[i]++;
}

static void *worker(void *arg)
{
	long id = (long)arg;
	tids[id] = syscall(SYS_gettid);
	for (int i = 0; i < ROUNDS; i++) {
		pthread_mutex_lock(&mu);
		counter++;
		pthread_mutex_unlock(&mu);
	}
	/* take turns in order through the condition variable */
	pthread_mutex_lock(&mu);
	while (turn != id)
		pthread_cond_wait(&cv, &mu);
	printf("turn %ld\n", id);
	turn++;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
	return (void *)(id * 100);
}

static void *exiter(void *arg)
{
	(void)arg;
	pthread_exit((void *)7);
}

static void *waiter(void *arg)
{
	(void)arg;
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGUSR2);
	pthread_sigmask(SIG_UNBLOCK, &s, NULL);
	pause();
	return NULL;
}

static volatile sig_atomic_t usr2_in_waiter;
static pthread_t waiter_thread;
static void on_usr2(int sig)
{
	(void)sig;
	usr2_in_waiter = pthread_equal(pthread_self(), waiter_thread);
}

int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	pthread_t th[N];
	for (long i = 0; i < N; i++)
		if (pthread_create(&th[i], NULL, worker, (void *)i) != 0) {
			printf("FAIL create\n");
			return 1;
		}
	long sum = 0;
	for (int i = 0; i < N; i++) {
		void *ret;
		pthread_join(th[i], &ret);
		sum += (long)ret;
	}
	printf("counter=%ld sum=%ld\n", counter, sum);
	int distinct = 1;
	for (int i = 0; i < N; i++)
		for (int j = 0; j < i; j++)
			if (tids[i] == tids[j] || tids[i] == getpid())
				distinct = 0;
	printf("tids distinct from each other and the pid: %d\n", distinct);

	pthread_t e;
	void *ret;
	pthread_create(&e, NULL, exiter, NULL);
	pthread_join(e, &ret);
	printf("pthread_exit value: %ld\n", (long)ret);

	/* a signal for one thread */
	signal(SIGUSR1, on_usr1);
	signal(SIGUSR2, on_usr2);
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGUSR2);
	pthread_sigmask(SIG_BLOCK, &s, NULL); /* only the waiter takes SIGUSR2 */
	pthread_create(&waiter_thread, NULL, waiter, NULL);
	usleep(20000);
	kill(getpid(), SIGUSR2);
	pthread_join(waiter_thread, NULL);
	printf("process SIGUSR2 went to the thread that does not block it: %d\n", usr2_in_waiter);
	errno = 0;
	int r = syscall(SYS_tgkill, getpid(), 99999, 0);
	printf("tgkill to a gone thread: %d %s\n", r, errno == ESRCH ? "ESRCH" : "?");
	return 0;
}
