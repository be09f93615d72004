/*
 * cpus: the CPUs a task may run on. Prints how many CPUs
 * sched_getaffinity reports, then pins itself to each in turn and checks
 * that getcpu names it, and that a child (fork) and a thread inherit the
 * mask. Prints "cpus=N" and "ok"; the same natively on a host with N
 * CPUs.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static unsigned cpu_now(void)
{
	unsigned c = ~0u;
	syscall(SYS_getcpu, &c, NULL, NULL);
	return c;
}

static void *thread_cpu(void *arg)
{
	*(unsigned *)arg = cpu_now();
	return NULL;
}

int main(void)
{
	cpu_set_t all, one;
	if (sched_getaffinity(0, sizeof all, &all) != 0) {
		perror("sched_getaffinity");
		return 1;
	}
	int n = CPU_COUNT(&all);
	printf("cpus=%d\n", n);
	for (int c = 0; c < CPU_SETSIZE && n > 0; c++) {
		if (!CPU_ISSET(c, &all))
			continue;
		CPU_ZERO(&one);
		CPU_SET(c, &one);
		if (sched_setaffinity(0, sizeof one, &one) != 0) {
			perror("sched_setaffinity");
			return 1;
		}
		if (cpu_now() != (unsigned)c) {
			printf("pinned to %d, runs on %u\n", c, cpu_now());
			return 1;
		}
		unsigned in_thread = ~0u;
		pthread_t t;
		pthread_create(&t, NULL, thread_cpu, &in_thread);
		pthread_join(t, NULL);
		if (in_thread != (unsigned)c) {
			printf("thread of a task pinned to %d runs on %u\n", c, in_thread);
			return 1;
		}
		pid_t p = fork();
		if (p == 0)
			_exit(cpu_now() == (unsigned)c ? 0 : 1);
		int st;
		waitpid(p, &st, 0);
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			printf("child of a task pinned to %d runs elsewhere\n", c);
			return 1;
		}
	}
	CPU_ZERO(&one);
	if (sched_setaffinity(0, sizeof one, &one) == 0) {
		printf("an empty mask was accepted\n");
		return 1;
	}
	printf("ok\n");
	return 0;
}
