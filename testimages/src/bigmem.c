/*
 * bigmem: touch MIB mebibytes of anonymous memory with non-zero data, then
 * checkpoint with emuckpt_checkpoint() and check the data on whichever
 * side of the checkpoint it is. For the checkpoint/restore benchmarks.
 *
 * Usage: bigmem [MIB]   (default 16)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include "emuckpt.h"

int main(int argc, char **argv)
{
	size_t mib = argc > 1 ? strtoul(argv[1], 0, 10) : 16;
	size_t len = mib << 20;
	uint64_t *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	size_t words = len / 8;
	for (size_t i = 0; i < words; i += 512)
		p[i] = i + 1;
	long r = emuckpt_checkpoint();
	for (size_t i = 0; i < words; i += 512)
		if (p[i] != i + 1) {
			printf("corrupt at word %zu\n", i);
			return 1;
		}
	printf("bigmem %zu MiB: ok (checkpoint returned %ld)\n", mib, r);
	return 0;
}
