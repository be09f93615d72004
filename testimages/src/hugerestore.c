/*
 * hugerestore: 2 MiB regions of anonymous memory across a checkpoint.
 *
 * Maps 8 regions of 2 MiB (2 MiB aligned) of private anonymous memory
 * and fills them with data that depends on the address, except:
 *   region 1: pages 0, 100 and 511 stay zero (read, never written);
 *   region 2: page 7 is unmapped (the VMA is split around it);
 *   region 3: 64 KiB from page 16 on are made read-only (split too);
 *   region 4: madvise(MADV_NOHUGEPAGE);
 *   region 5: only page 300 is written;
 *   region 6: not touched at all.
 * Then checkpoints itself (emuckpt_checkpoint) and, on either side of
 * it, checks every page (data or zero), forks a child that writes to
 * regions 0, 1 and 5 and checks them, and checks after the child exited
 * that the parent's pages did not change (copy on write), then writes
 * to them itself and checks again. Prints its address (the "region"
 * line) before the checkpoint and one result line after it.
 *
 * Usage: hugerestore
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include "emuckpt.h"

#define PG 4096ul
#define HUGE (2ul << 20)
#define REGIONS 8

static uint8_t *base;

static uint64_t word(uint64_t off, uint64_t salt)
{
	return off * 0x9e3779b97f4a7c15ull + salt + 1;
}

/* zero reports whether page pg of region r was never written. */
static int zero(int r, size_t pg)
{
	switch (r) {
	case 1:
		return pg == 0 || pg == 100 || pg == 511;
	case 5:
		return pg != 300;
	case 6:
		return 1;
	}
	return 0;
}

static int mapped(int r, size_t pg)
{
	return !(r == 2 && pg == 7);
}

static void fill(int r, size_t pg, uint64_t salt)
{
	uint64_t *w = (uint64_t *)(base + r * HUGE + pg * PG);
	for (size_t i = 0; i < PG / 8; i++)
		w[i] = word(r * HUGE + pg * PG + i * 8, salt);
}

/* check checks every mapped page of regions [from, to); salt for data
 * pages of regions in salted. */
static int check(const char *who, int from, int to, uint64_t salt, unsigned salted)
{
	for (int r = from; r < to; r++)
		for (size_t pg = 0; pg < HUGE / PG; pg++) {
			if (!mapped(r, pg))
				continue;
			const uint64_t *w = (const uint64_t *)(base + r * HUGE + pg * PG);
			uint64_t s = salted & (1u << r) ? salt : 0;
			for (size_t i = 0; i < PG / 8; i++) {
				uint64_t want = zero(r, pg) ? 0 : word(r * HUGE + pg * PG + i * 8, s);
				if (w[i] != want) {
					printf("%s: region %d page %zu word %zu: %#llx, want %#llx\n", who, r, pg, i,
					       (unsigned long long)w[i], (unsigned long long)want);
					return 1;
				}
			}
		}
	return 0;
}

int main(void)
{
	uint8_t *p = mmap(NULL, (REGIONS + 1) * HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	base = (uint8_t *)(((uintptr_t)p + HUGE - 1) & ~(HUGE - 1));
	if (base > p)
		munmap(p, base - p);
	if (p + HUGE > base)
		munmap(base + REGIONS * HUGE, p + HUGE - base);
	if (madvise(base + 4 * HUGE, HUGE, MADV_NOHUGEPAGE) != 0) {
		perror("madvise");
		return 1;
	}
	volatile uint8_t sink = 0;
	for (int r = 0; r < REGIONS; r++)
		for (size_t pg = 0; pg < HUGE / PG; pg++) {
			if (zero(r, pg)) {
				if (r == 1)
					sink += base[r * HUGE + pg * PG]; /* present, zero */
				continue;
			}
			fill(r, pg, 0);
		}
	(void)sink;
	if (munmap(base + 2 * HUGE + 7 * PG, PG) != 0 || mprotect(base + 3 * HUGE + 16 * PG, 16 * PG, PROT_READ) != 0) {
		perror("munmap/mprotect");
		return 1;
	}
	printf("region %#lx\n", (unsigned long)base);
	fflush(stdout);
	long c = emuckpt_checkpoint();
	if (check("after the checkpoint", 0, REGIONS, 0, 0))
		return 1;
	pid_t pid = fork();
	if (pid < 0) {
		perror("fork");
		return 1;
	}
	unsigned cow = 1u << 0 | 1u << 1 | 1u << 5;
	if (pid == 0) {
		for (int r = 0; r < REGIONS; r++)
			if (cow & (1u << r))
				for (size_t pg = 0; pg < HUGE / PG; pg++)
					if (!zero(r, pg))
						fill(r, pg, 7);
		_exit(check("child", 0, REGIONS, 7, cow) ? 1 : 0);
	}
	int status;
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		printf("child failed: %#x\n", status);
		return 1;
	}
	if (check("parent after the child", 0, REGIONS, 0, 0))
		return 1;
	for (size_t pg = 0; pg < HUGE / PG; pg++)
		if (!zero(0, pg))
			fill(0, pg, 9);
	if (check("parent after writing", 0, REGIONS, 9, 1u << 0))
		return 1;
	printf("hugerestore: ok (checkpoint returned %ld)\n", c);
	return 0;
}
