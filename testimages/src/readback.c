/*
 * readback: fill MIB mebibytes of anonymous memory with non-zero data
 * (every 64-bit word), checkpoint with emuckpt_checkpoint(), then read
 * every word back and check the sum, on whichever side of the checkpoint
 * it is. For the restore-and-read-back benchmark, whose floor is a host
 * process summing the same words from a mapping of the image file.
 *
 * Usage: readback [MIB]   (default 16)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include "emuckpt.h"

int main(int argc, char **argv)
{
	size_t mib = argc > 1 ? strtoul(argv[1], 0, 10) : 16;
	size_t n = (mib << 20) / 8;
	uint64_t *p = mmap(NULL, mib << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	uint64_t want = 0;
	for (size_t i = 0; i < n; i++) {
		p[i] = i * 0x9e3779b97f4a7c15ull + 1;
		want += p[i];
	}
	long r = emuckpt_checkpoint();
	uint64_t sum = 0;
	for (size_t i = 0; i < n; i++)
		sum += p[i];
	if (sum != want) {
		printf("readback %zu MiB: sum %#llx, want %#llx\n", mib, (unsigned long long)sum, (unsigned long long)want);
		return 1;
	}
	printf("readback %zu MiB: ok (checkpoint returned %ld)\n", mib, r);
	return 0;
}
