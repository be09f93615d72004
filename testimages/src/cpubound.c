/*
 * cpubound [ITERS] - pure computation, no system calls in the hot loop.
 *
 * Runs ITERS rounds (default 100, about half a second natively on a
 * current x86-64 core) of a kernel mixing three workloads:
 *   - a sieve of Eratosthenes over 1<<20 numbers (memory + branches),
 *   - a 64x64 integer matrix multiply (multiply/add throughput),
 *   - 1<<20 steps of a splitmix64 hash chain (dependent multiplies).
 * Prints "iters=N checksum=0x..." and "ok".  The checksum depends only on
 * ITERS, so it is the same natively and in the emulator.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SIEVE_N (1u << 20)
#define MAT 64
#define CHAIN (1u << 20)

static uint8_t composite[SIEVE_N];
static uint32_t ma[MAT][MAT], mb[MAT][MAT], mc[MAT][MAT];

static uint64_t sieve(uint32_t round)
{
	memset(composite, 0, sizeof composite);
	uint64_t count = 0, sum = 0;
	for (uint32_t i = 2; i < SIEVE_N; i++) {
		if (composite[i])
			continue;
		count++;
		sum += i ^ round;
		for (uint64_t j = (uint64_t)i * i; j < SIEVE_N; j += i)
			composite[j] = 1;
	}
	return count * 1000003u + sum;
}

static uint64_t matmul(uint32_t round)
{
	for (int i = 0; i < MAT; i++)
		for (int j = 0; j < MAT; j++) {
			ma[i][j] = (uint32_t)(i * 31 + j * 17 + round);
			mb[i][j] = (uint32_t)(i * 7 + j * 13 + round * 3);
		}
	for (int i = 0; i < MAT; i++)
		for (int j = 0; j < MAT; j++) {
			uint32_t s = 0;
			for (int k = 0; k < MAT; k++)
				s += ma[i][k] * mb[k][j];
			mc[i][j] = s;
		}
	uint64_t h = 0;
	for (int i = 0; i < MAT; i++)
		for (int j = 0; j < MAT; j++)
			h = h * 31 + mc[i][j];
	return h;
}

static uint64_t chain(uint64_t x)
{
	for (uint32_t i = 0; i < CHAIN; i++) {
		x += 0x9e3779b97f4a7c15ull;
		uint64_t z = x;
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
		x = z ^ (z >> 31);
	}
	return x;
}

int main(int argc, char **argv)
{
	unsigned long iters = 100;
	if (argc > 1) {
		char *end;
		iters = strtoul(argv[1], &end, 0);
		if (*argv[1] == 0 || *end != 0) {
			fprintf(stderr, "usage: cpubound [ITERS]\n");
			return 2;
		}
	}

	uint64_t sum = 0;
	for (unsigned long r = 0; r < iters; r++) {
		sum = sum * 0x100000001b3ull ^ sieve((uint32_t)r);
		sum = sum * 0x100000001b3ull ^ matmul((uint32_t)r);
		sum = sum * 0x100000001b3ull ^ chain(sum);
	}
	printf("iters=%lu checksum=0x%016llx\n", iters, (unsigned long long)sum);
	printf("ok\n");
	return 0;
}
