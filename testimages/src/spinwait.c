/*
 * spinwait [bsr] - a thread spins in user mode, without system calls,
 * until another thread that sleeps 10 ms in nanosleep sets a flag: a word
 * of memory, or with "bsr" participant 1's byte of /dev/bsr8_0 (read
 * with 1-byte loads, so every check is a device access). Prints "done".
 *
 * On the host clock a kick at the sleeper's deadline ends the spinner's
 * turn; with "bsr", device accesses end turns under either clock. Under
 * --deterministic the memory spin never gives the vCPU up: no exit, no
 * time (docs/KERNEL.md, "Scheduling").
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static volatile int flag;
static volatile uint8_t *bsr;

static void *sleeper(void *arg)
{
	struct timespec ts = {0, 10000000};
	nanosleep(&ts, NULL);
	if (bsr)
		bsr[1] = 1;
	else
		flag = 1;
	return arg;
}

int main(int argc, char **argv)
{
	(void)argv;
	if (argc > 1) {
		int fd = open("/dev/bsr8_0", O_RDWR);
		if (fd < 0)
			return 2;
		bsr = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (bsr == MAP_FAILED)
			return 2;
		bsr[1] = 0;
	}
	pthread_t t;
	pthread_create(&t, NULL, sleeper, NULL);
	if (bsr)
		while (bsr[1] == 0)
			;
	else
		while (!flag)
			;
	pthread_join(t, NULL);
	printf("done\n");
	return 0;
}
