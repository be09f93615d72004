/*
 * dirtypct: touch MIB mebibytes of anonymous memory with non-zero data,
 * checkpoint itself (emuckpt_checkpoint), rewrite PERMILLE per mille of
 * its pages, distinct ones picked at random, checkpoint again, then
 * check every page. For the incremental checkpoint benchmark: under
 * `emuckpt run --leave-running` with a series of images, the second is a
 * delta of the rewritten pages.
 *
 * Usage: dirtypct [MIB [PERMILLE [SEED]]]   (default 16 10 1)
 * Output: "dirtypct: N pages rewritten: ok" (exit 0), or what is wrong.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include "emuckpt.h"

static uint64_t rng;
static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

int main(int argc, char **argv)
{
	size_t mib = argc > 1 ? strtoul(argv[1], 0, 10) : 16;
	size_t permille = argc > 2 ? strtoul(argv[2], 0, 10) : 10;
	rng = (argc > 3 ? strtoull(argv[3], 0, 10) : 1) * 0x9E3779B97F4A7C15ull + 1;
	size_t pages = mib << 8, words = 512;
	uint64_t *p = mmap(NULL, mib << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	/* a bitmap: the rewritten pages should be all the second image holds */
	uint64_t *gen = calloc(pages / 64 + 1, 8);
	if (p == MAP_FAILED || !gen) {
		perror("mmap");
		return 1;
	}
	for (size_t i = 0; i < pages * words; i++)
		p[i] = i + 1;
	if (emuckpt_checkpoint() < 0)
		return 2;
	size_t want = pages * permille / 1000, done = 0;
	while (done < want) {
		size_t pg = next() % pages;
		if (gen[pg / 64] >> (pg % 64) & 1)
			continue;
		gen[pg / 64] |= 1ull << (pg % 64);
		done++;
		for (size_t w = 0; w < words; w++)
			p[pg * words + w] = ~(pg * words + w);
	}
	if (emuckpt_checkpoint() < 0)
		return 3;
	for (size_t i = 0; i < pages * words; i++) {
		size_t pg = i / words;
		uint64_t v = gen[pg / 64] >> (pg % 64) & 1 ? ~i : i + 1;
		if (p[i] != v) {
			printf("dirtypct: corrupt at word %zu\n", i);
			return 1;
		}
	}
	printf("dirtypct: %zu pages rewritten: ok\n", done);
	return 0;
}
