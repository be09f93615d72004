/*
 * restart_bug [fixed] - a program with a restart bug, for emuckpt verify.
 *
 * It stores its participant byte in /dev/bsr8_0 and caches the register's
 * value, reads the HPET main counter, makes some system calls, then checks
 * that the register still holds what it cached and that the counter has
 * not gone backwards:
 *
 *   bsr: kept | lost
 *   hpet: forward | went backwards
 *
 * exiting 1 if either check fails. That holds on one machine, and after a
 * restore with --device-state=preserve; after a restore with fresh devices
 * the register reads zero and the counter has started over, so `emuckpt
 * verify` reports a divergence under fresh at the points between the
 * store and the checks, and none under preserve.
 *
 * With "fixed" it does what a restartable program must: it reads the
 * register until it holds its byte, storing the byte again when it was
 * lost, and it takes a counter that went backwards for a restart (its
 * measurement starts over). It passes everywhere.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "errname.h"

#define CALLS 8

int main(int argc, char **argv)
{
	int fixed = argc > 1 && strcmp(argv[1], "fixed") == 0;
	int hfd = open("/dev/hpet", O_RDONLY);
	int bfd = open("/dev/bsr8_0", O_RDWR);
	if (hfd < 0 || bfd < 0) {
		printf("open: errno=%s (needs emuckpt's devices)\n", errname(errno));
		return 2;
	}
	volatile uint64_t *hpet = mmap(NULL, 4096, PROT_READ, MAP_SHARED, hfd, 0);
	volatile uint8_t *bsr = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, bfd, 0);
	if (hpet == MAP_FAILED || bsr == MAP_FAILED) {
		printf("mmap: errno=%s\n", errname(errno));
		return 2;
	}
	volatile uint64_t *reg = (volatile uint64_t *)bsr;
	bsr[0] = 1;
	uint64_t cached = *reg;
	if (fixed)
		while (((cached = *reg) & 0xff) != 1)
			bsr[0] = 1; /* restarted: the register lost our byte */
	uint64_t start = hpet[0xF0 / 8], prev = start;
	printf("stored, cached 0x%016llx\n", (unsigned long long)cached);
	for (int i = 0; i < CALLS; i++) {
		syscall(SYS_getpid);
		if (fixed) {
			uint64_t c = hpet[0xF0 / 8];
			if (c < prev)
				start = c; /* restarted: the counter started over */
			prev = c;
		}
	}
	uint64_t now = *reg;
	if (fixed)
		while ((now = *reg) != cached)
			bsr[0] = 1; /* restarted: the register lost our byte */
	uint64_t end = fixed ? prev : hpet[0xF0 / 8];
	int ok = now == cached && end >= start;
	printf("bsr: %s\n", now == cached ? "kept" : "lost");
	printf("hpet: %s\n", end >= start ? "forward" : "went backwards");
	return ok ? 0 : 1;
}
