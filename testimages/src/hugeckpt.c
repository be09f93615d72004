/*
 * hugeckpt: touches one byte in each 2 MiB region of an 8 MiB anonymous
 * mapping (2 MiB aligned, so emuckpt maps each region with a 2 MiB page),
 * checkpoints itself with emuckpt_checkpoint(), and checks the bytes and
 * a zero page next to each. The image must store the four touched 4 KiB
 * pages, not the zero ones around them.
 */
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include "emuckpt.h"

#define HUGE (2ul << 20)

int main(void)
{
	volatile uint8_t *p = mmap(NULL, 4 * HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		printf("FAIL mmap\n");
		return 1;
	}
	for (int r = 0; r < 4; r++)
		p[r * HUGE] = (uint8_t)(r + 1);
	long c = emuckpt_checkpoint();
	int ok = 1;
	for (int r = 0; r < 4; r++)
		ok &= p[r * HUGE] == r + 1 && p[r * HUGE + 4096] == 0 && p[r * HUGE + HUGE - 1] == 0;
	printf("hugeckpt: %s (checkpoint returned %ld)\n", ok ? "ok" : "BAD", c);
	return !ok;
}
