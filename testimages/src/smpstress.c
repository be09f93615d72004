/*
 * smpstress [ROUNDS] - threads on several CPUs must never use a mapping
 * after the call that removed it returned.
 *
 * The main thread maps a page, writes the round number into it and
 * publishes the round; a reader thread spins on the page without system
 * calls (on another CPU when there is one). Then the main thread takes the
 * page away (replaced by a PROT_NONE mapping in even rounds, which unmaps
 * it, mprotect(PROT_NONE) in odd ones) and
 * publishes that it did. From then on every read of the reader must fault:
 * a read that succeeds after the reader saw "gone" used a stale
 * translation. The reader's SIGSEGV handler reports the fault and jumps
 * back. A third thread does mmap/munmap of its own pages meanwhile, so
 * that shoot-downs and refreshes of other pages race with the rounds.
 * Prints "rounds=N faults=N stale=0" and "ok"; the same natively.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static volatile char *volatile page;
static volatile long mapped_round, gone_round, seen_round, faulted_round;
static volatile long stale, done;
static sigjmp_buf env;

static void on_segv(int sig)
{
	(void)sig;
	siglongjmp(env, 1);
}

static void *reader(void *arg)
{
	(void)arg;
	struct sigaction sa = {.sa_handler = on_segv};
	sigaction(SIGSEGV, &sa, NULL);
	while (!done) {
		if (sigsetjmp(env, 1)) {
			/* The page is gone (or going): report the round that took it. */
			faulted_round = gone_round;
			continue;
		}
		for (;;) {
			if (done)
				return NULL;
			long r = mapped_round;
			if (r == 0 || faulted_round >= r)
				continue; /* wait for the next round */
			long gone = gone_round;
			char v = *page;
			if (gone == r) {
				/* Gone before this read, and the read worked. */
				stale++;
				faulted_round = r;
				continue;
			}
			if (v == (char)r)
				seen_round = r;
		}
	}
	return NULL;
}

static void *churn(void *arg)
{
	(void)arg;
	while (!done) {
		char *p = mmap(NULL, 16 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			continue;
		for (int i = 0; i < 16; i++)
			p[i * 4096] = i;
		mprotect(p, 8 * 4096, PROT_READ);
		munmap(p, 16 * 4096);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	long rounds = argc > 1 ? atol(argv[1]) : 300;
	pthread_t r, c;
	pthread_create(&r, NULL, reader, NULL);
	pthread_create(&c, NULL, churn, NULL);
	long faults = 0;
	/* The page's address stays reserved (PROT_NONE between rounds), so
	 * that churn cannot map something else there. */
	char *base = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	for (long i = 1; i <= rounds; i++) {
		char *p = mmap(base, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
		if (p == MAP_FAILED) {
			perror("mmap");
			return 1;
		}
		*p = (char)i;
		page = p;
		mapped_round = i;
		while (seen_round < i)
			sched_yield();
		if (i % 2 == 0)
			mmap(base, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
		else
			mprotect(p, 4096, PROT_NONE);
		gone_round = i;
		while (faulted_round < i)
			sched_yield();
		faults++;
	}
	done = 1;
	pthread_join(r, NULL);
	pthread_join(c, NULL);
	printf("rounds=%ld faults=%ld stale=%ld\n", rounds, faults, stale);
	if (stale) {
		printf("stale translations used\n");
		return 1;
	}
	printf("ok\n");
	return 0;
}
