/*
 * storm - a guest that gives an asynchronous checkpoint request (or any
 * other kick of the vCPU) every kind of place to land.  Each round it
 *   - takes a page fault on a page that MADV_DONTNEED emptied (the VMM's
 *     fault path, and the page-table refresh path on the madvise),
 *   - stores a byte to the BSR and loads it back, and loads the HPET
 *     counter (MMIO loads and stores),
 *   - makes system calls, and every 8th round takes a signal handler,
 *   - reads its own %cs and fails unless it runs at CPL3.
 * A round that ran twice finds its page already written; a lost or
 * replayed device access or a register rewound against memory breaks one
 * of the checks.  The output depends only on ROUNDS, so a run that was
 * checkpointed and restored anywhere (under --device-state=preserve,
 * since the BSR byte is read back) prints what an uninterrupted run does.
 *
 * Usage: storm [ROUNDS]      (default 2000)
 * Output: "round N: sum S" every 500 rounds, then "done S".
 * On a failed check: "FAIL round N: what", exit 1.  Without the devices:
 * "open NAME: errno=E", exit 2.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "errname.h"

#define PG 4096ul
#define SLOTS 64

static volatile unsigned long handled;

static void on_usr2(int sig)
{
	(void)sig;
	handled++;
}

static void fail(unsigned long round, const char *what)
{
	printf("FAIL round %lu: %s\n", round, what);
	exit(1);
}

static void *map_device(const char *name, int prot)
{
	int fd = open(name, prot & PROT_WRITE ? O_RDWR : O_RDONLY);
	if (fd < 0) {
		printf("open %s: errno=%s\n", name, errname(errno));
		exit(2);
	}
	void *p = mmap(NULL, PG, prot, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		printf("mmap %s: errno=%s\n", name, errname(errno));
		exit(2);
	}
	close(fd);
	return p;
}

int main(int argc, char **argv)
{
	unsigned long rounds = argc > 1 ? strtoul(argv[1], NULL, 10) : 2000;
	volatile uint8_t *bsr = map_device("/dev/bsr8_0", PROT_READ | PROT_WRITE);
	volatile uint64_t *hpet = map_device("/dev/hpet", PROT_READ);
	uint8_t *slots = mmap(NULL, SLOTS * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (slots == MAP_FAILED)
		fail(0, "mmap");
	signal(SIGUSR2, on_usr2);
	setvbuf(stdout, NULL, _IONBF, 0);

	unsigned long sum = 0;
	for (unsigned long i = 1; i <= rounds; i++) {
		volatile uint64_t *page = (volatile uint64_t *)(slots + (i % SLOTS) * PG);
		if (page[0] != 0)
			fail(i, "page not empty: the round ran before");
		page[0] = i; /* page fault */
		page[1] = ~i;

		uint16_t cs;
		__asm__ volatile("mov %%cs, %0" : "=r"(cs));
		if ((cs & 3) != 3)
			fail(i, "running at CPL0");

		bsr[0] = (uint8_t)i;
		uint64_t v = *(volatile uint64_t *)bsr;
		if ((uint8_t)v != (uint8_t)i)
			fail(i, "BSR byte does not read back");
		uint64_t c1 = hpet[0xf0 / 8], c2 = hpet[0xf0 / 8];
		(void)c1;
		(void)c2;

		if (getppid() < 0)
			fail(i, "getppid");
		if (i % 8 == 0) {
			unsigned long before = handled;
			raise(SIGUSR2);
			if (handled != before + 1)
				fail(i, "signal handler did not run once");
		}

		double d = (double)i * 1.5;
		sum += (unsigned long)d + page[0] + (page[1] ^ ~i) + (v & 0xff);
		if (page[0] != i || page[1] != ~i)
			fail(i, "page lost its contents");
		if (madvise((void *)page, PG, MADV_DONTNEED) != 0)
			fail(i, "madvise");
		if (i % 500 == 0)
			printf("round %lu: sum %lu\n", i, sum);
	}
	printf("done %lu (signals %lu)\n", sum, handled);
	return 0;
}
