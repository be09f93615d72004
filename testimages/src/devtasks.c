/*
 * devtasks - the devices across tasks (runs only inside emuckpt).
 *
 * BSR: /dev/bsr8_0 is mapped MAP_SHARED once, before the tasks exist.
 * 1. threads: 4 threads and main (participants 0..4) run ROUNDS barrier
 *    rounds on the one mapping: in round r each stores r to its byte and
 *    loads the 8-byte register until every participant's byte is r. Any
 *    load that shows a byte behind a value it already saw, or ahead of
 *    r+1 (but for the final marks of part 3), is a FAIL: stores are seen
 *    in order.
 * 2. processes: the same with 2 forked children and the parent
 *    (participants 5..7), the children using the mapping they inherited;
 *    a byte stored by a child is seen by the parent's loads and the other
 *    way round.
 * 3. after the children exit, the parent's mapping still shows their last
 *    stores: one device, not a copy per process.
 * HPET: /dev/hpet is opened once (timer 0), IRQFREQ and IE_ON set, then
 *    the process forks. Parent and child read interrupts from the one
 *    description: HPET_INFO in the child names timer 0, a second open in
 *    the child gets timer 1 (timer 0 is held), the child's reads work after
 *    the parent closed its descriptor, and once both are closed a new open
 *    gets timer 0 again.
 * Prints one line per part and "ok"; a mismatch prints "FAIL ..." and the
 * program exits 1.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define ROUNDS 20
#define HPET_IE_ON 0x6801
#define HPET_IRQFREQ 0x40086806
#define HPET_INFO 0x80186803

struct hpet_info {
	unsigned long hi_ireqfreq, hi_flags;
	unsigned short hi_hpet, hi_timer;
};

static volatile uint8_t *bsr;
static int failures;

static void fail(const char *what, int who, int round, uint64_t v)
{
	printf("FAIL %s: participant %d round %d load %#llx\n", what, who, round, (unsigned long long)v);
	failures++;
}

/* barrier runs the rounds as participant me of the set [first, first+n). */
static void barrier(int me, int first, int n)
{
	uint8_t seen[8] = {0};
	for (int r = 1; r <= ROUNDS; r++) {
		bsr[me] = r;
		for (;;) {
			uint64_t v = *(volatile uint64_t *)bsr;
			int done = 1;
			for (int i = first; i < first + n; i++) {
				uint8_t b = v >> (8 * i);
				if (b < seen[i] || (b > r + 1 && b < 0xc0))
					fail("out of order", me, r, v);
				seen[i] = b;
				if (b < r)
					done = 0;
			}
			if (done)
				break;
		}
	}
}

static void *thread(void *arg)
{
	barrier((int)(intptr_t)arg, 0, 5);
	return NULL;
}

static void hpet(void)
{
	int fd = open("/dev/hpet", O_RDONLY);
	struct hpet_info info;
	unsigned long n;
	if (fd < 0 || ioctl(fd, HPET_IRQFREQ, 64) < 0 || ioctl(fd, HPET_IE_ON, 0) < 0) {
		printf("FAIL hpet setup\n");
		exit(2);
	}
	ioctl(fd, HPET_INFO, &info);
	int parentTimer = info.hi_timer;
	int go[2];
	if (pipe(go) < 0)
		exit(2);
	pid_t c = fork();
	if (c == 0) {
		int bad = 0;
		char x;
		ioctl(fd, HPET_INFO, &info);
		bad |= info.hi_timer != parentTimer || info.hi_ireqfreq != 64;
		int fd2 = open("/dev/hpet", O_RDONLY);
		ioctl(fd2, HPET_INFO, &info);
		bad |= fd2 < 0 || info.hi_timer == parentTimer;
		close(fd2);
		bad |= read(fd, &n, sizeof n) != sizeof n || n < 1;
		read(go[0], &x, 1); /* the parent closed its descriptor */
		bad |= read(fd, &n, sizeof n) != sizeof n || n < 1;
		close(fd);
		_exit(bad);
	}
	if (read(fd, &n, sizeof n) != sizeof n || n < 1)
		printf("FAIL parent read\n"), failures++;
	close(fd);
	write(go[1], "x", 1);
	int st;
	waitpid(c, &st, 0);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		printf("FAIL child hpet status %#x\n", st), failures++;
	fd = open("/dev/hpet", O_RDONLY);
	ioctl(fd, HPET_INFO, &info);
	if (fd < 0 || info.hi_timer != parentTimer)
		printf("FAIL timer %d not free after both closed\n", parentTimer), failures++;
	close(fd);
	printf("hpet shared over fork: timer %d\n", parentTimer);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	int fd = open("/dev/bsr8_0", O_RDWR);
	if (fd < 0)
		return 2;
	bsr = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (bsr == MAP_FAILED)
		return 2;
	close(fd);
	for (int i = 0; i < 8; i++)
		bsr[i] = 0;

	pthread_t th[4];
	for (int i = 0; i < 4; i++)
		pthread_create(&th[i], NULL, thread, (void *)(intptr_t)(i + 1));
	barrier(0, 0, 5);
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	printf("threads: %d rounds, register %#llx\n", ROUNDS, (unsigned long long)*(volatile uint64_t *)bsr);

	pid_t kids[2];
	for (int i = 0; i < 2; i++) {
		kids[i] = fork();
		if (kids[i] == 0) {
			barrier(6 + i, 5, 3);
			bsr[6 + i] = 0xc0 + i; /* a last store the parent must see */
			fflush(stdout);
			_exit(failures != 0);
		}
	}
	barrier(5, 5, 3);
	for (int i = 0; i < 2; i++) {
		int st;
		waitpid(kids[i], &st, 0);
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			printf("FAIL child %d status %#x\n", i, st), failures++;
	}
	uint64_t v = *(volatile uint64_t *)bsr;
	printf("processes: %d rounds, register %#llx\n", ROUNDS, (unsigned long long)v);
	if (v != 0xc1c0141414141414ull)
		printf("FAIL register after the children\n"), failures++;

	hpet();
	if (failures)
		return 1;
	printf("ok\n");
	return 0;
}
