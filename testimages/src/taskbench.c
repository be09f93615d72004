/*
 * taskbench MODE N [MiB] - timings of task operations, for the kernel's
 * benchmarks (kernel/bench_test.go). Times with CLOCK_MONOTONIC and prints
 * "ns_per_op=X".
 *   fork N MiB  touches MiB MiB of private memory, then N times forks a
 *               child that calls getrusage and _exits, and wait4s it. Also
 *               prints "peak_kb_before=A peak_kb_after=B": ru_maxrss, which
 *               in emuckpt is the peak of guest RAM in use (the child's
 *               getrusage samples it while both processes exist), so B-A
 *               is what the forks allocated.
 *   thread N    N times pthread_create of a thread that returns at once,
 *               and pthread_join.
 *   futex N     N round trips between two threads handing a word back and
 *               forth with FUTEX_WAIT/FUTEX_WAKE (private).
 *   cpu N T     N million steps of a hash chain, split between T threads
 *               that make no system call while they compute; ns_per_op is
 *               the wall time per million steps. Also prints the combined
 *               "checksum=X", which depends only on N and T.
 */
#define _GNU_SOURCE
#define FUTEX_WAIT_PRIVATE 128
#define FUTEX_WAKE_PRIVATE 129
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

static long peak_kb(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

static void *nothing(void *arg) { return arg; }

static volatile int word;
static long rounds;

static void futex_wait(int val) { syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0); }
static void futex_wake(void) { syscall(SYS_futex, &word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0); }

/* pong waits for 1, answers 0. */
static void *pong(void *arg)
{
	for (long i = 0; i < rounds; i++) {
		while (word != 1)
			futex_wait(0);
		word = 0;
		futex_wake();
	}
	return arg;
}

struct chain {
	unsigned long long steps, seed, out;
};

/* work runs a splitmix64 chain: dependent multiplies, no memory traffic. */
static void *work(void *arg)
{
	struct chain *c = arg;
	unsigned long long x = c->seed;
	for (unsigned long long i = 0; i < c->steps; i++) {
		x += 0x9e3779b97f4a7c15ull;
		unsigned long long z = x;
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
		x ^= z ^ (z >> 31);
	}
	c->out = x;
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	long n = atol(argv[2]);
	long long start, end;
	if (strcmp(argv[1], "fork") == 0 && argc == 4) {
		size_t size = (size_t)atol(argv[3]) << 20;
		char *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			return 2;
		memset(p, 1, size);
		long before = peak_kb();
		start = now();
		for (long i = 0; i < n; i++) {
			pid_t c = fork();
			if (c == 0) {
				peak_kb();
				_exit(0);
			}
			int st;
			if (wait4(c, &st, 0, NULL) != c || st != 0)
				return 1;
		}
		end = now();
		printf("peak_kb_before=%ld peak_kb_after=%ld\n", before, peak_kb());
	} else if (strcmp(argv[1], "thread") == 0) {
		start = now();
		for (long i = 0; i < n; i++) {
			pthread_t t;
			if (pthread_create(&t, NULL, nothing, NULL) != 0 || pthread_join(t, NULL) != 0)
				return 1;
		}
		end = now();
	} else if (strcmp(argv[1], "futex") == 0) {
		pthread_t t;
		rounds = n;
		pthread_create(&t, NULL, pong, NULL);
		start = now();
		for (long i = 0; i < n; i++) {
			word = 1;
			futex_wake();
			while (word != 0)
				futex_wait(1);
		}
		end = now();
		pthread_join(t, NULL);
	} else if (strcmp(argv[1], "cpu") == 0 && argc == 4) {
		int threads = atoi(argv[3]);
		if (threads < 1 || threads > 64)
			return 2;
		struct chain c[64];
		pthread_t t[64];
		start = now();
		for (int i = 0; i < threads; i++) {
			c[i] = (struct chain){.steps = n * 1000000ull / threads, .seed = i};
			if (i > 0 && pthread_create(&t[i], NULL, work, &c[i]) != 0)
				return 1;
		}
		work(&c[0]);
		unsigned long long sum = c[0].out;
		for (int i = 1; i < threads; i++) {
			pthread_join(t[i], NULL);
			sum += c[i].out;
		}
		end = now();
		printf("checksum=%llx\n", sum);
	} else {
		return 2;
	}
	printf("ns_per_op=%lld\n", (end - start) / n);
	return 0;
}
