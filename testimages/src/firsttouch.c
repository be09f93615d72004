/*
 * firsttouch MIB [nohuge] - first touch of fresh anonymous memory.
 *
 * Maps MIB mebibytes (2 MiB aligned) of private anonymous memory twice,
 * with MADV_NOHUGEPAGE when asked. In the first mapping it writes one
 * byte to every 4 KiB page once and reads the bytes back; in the second
 * it writes only the first byte of every 2 MiB region (one demand fault
 * each, whatever the page size). It prints
 *
 *   ns_per_page=N   the first pass, per 4 KiB page
 *   fault2m_ns=N    the second pass, per 2 MiB region
 *
 * Exits 1 if mmap fails or a page lost its byte.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define PG 4096ul
#define HUGE (2ul << 20)

static uint64_t now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static volatile uint8_t *map(size_t len, int nohuge)
{
	uint8_t *raw = mmap(NULL, len + HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (raw == MAP_FAILED) {
		printf("FAIL mmap\n");
		exit(1);
	}
	volatile uint8_t *p = (uint8_t *)(((uintptr_t)raw + HUGE - 1) & ~(HUGE - 1));
	if (nohuge && madvise((void *)p, len, MADV_NOHUGEPAGE) != 0) {
		printf("FAIL madvise\n");
		exit(1);
	}
	return p;
}

int main(int argc, char **argv)
{
	unsigned long mib = argc > 1 ? strtoul(argv[1], NULL, 0) : 64;
	int nohuge = argc > 2 && strcmp(argv[2], "nohuge") == 0;
	size_t len = (mib << 20) & ~(HUGE - 1);
	if (len == 0) {
		printf("FAIL size\n");
		return 1;
	}
	size_t pages = len / PG, regions = len / HUGE;

	volatile uint8_t *p = map(len, nohuge);
	uint64_t t0 = now();
	for (size_t i = 0; i < pages; i++)
		p[i * PG + (i % PG)] = (uint8_t)(i | 1);
	uint64_t all = now() - t0;
	for (size_t i = 0; i < pages; i++)
		if (p[i * PG + (i % PG)] != (uint8_t)(i | 1)) {
			printf("FAIL page %zu\n", i);
			return 1;
		}

	volatile uint8_t *q = map(len, nohuge);
	t0 = now();
	for (size_t r = 0; r < regions; r++)
		q[r * HUGE] = (uint8_t)(r | 1);
	uint64_t first = now() - t0;
	for (size_t r = 0; r < regions; r++)
		if (q[r * HUGE] != (uint8_t)(r | 1)) {
			printf("FAIL region %zu\n", r);
			return 1;
		}
	printf("ns_per_page=%llu fault2m_ns=%llu\n", (unsigned long long)(all / pages),
	       (unsigned long long)(first / regions));
	return 0;
}
