/*
 * fault_loop [N] - page fault benchmark.
 *
 * mmaps N private anonymous pages (default 10000) without MAP_POPULATE,
 * writes one byte to each page once (one demand-zero fault per page),
 * reads them back and prints "done".  Exits 1 if mmap fails or a page
 * lost its byte.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

#define PG 4096ul

int main(int argc, char **argv)
{
	unsigned long n = 10000;
	if (argc > 1)
		n = strtoul(argv[1], NULL, 0);
	if (n == 0) {
		printf("done\n");
		return 0;
	}

	volatile uint8_t *p = mmap(NULL, n * PG, PROT_READ | PROT_WRITE,
				   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		printf("FAIL mmap of %lu pages\n", n);
		return 1;
	}
	for (unsigned long i = 0; i < n; i++)
		p[i * PG + (i % PG)] = (uint8_t)(i | 1);
	for (unsigned long i = 0; i < n; i++) {
		if (p[i * PG + (i % PG)] != (uint8_t)(i | 1)) {
			printf("FAIL page %lu\n", i);
			return 1;
		}
	}
	munmap((void *)p, n * PG);
	printf("done\n");
	return 0;
}
