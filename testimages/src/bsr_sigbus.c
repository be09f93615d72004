/*
 * bsr_sigbus [MODE [NAME]] - dies from SIGBUS on an access a Barrier
 * Synchronization Register refuses (/dev/NAME, default bsr8_0).
 *
 * Runs only inside emuckpt.  Maps one page of the register, prints
 * "before" (flushed) and makes one access with an instruction of exactly
 * the width asked for (inline assembly, so the compiler cannot split or
 * widen it).  "after" is never printed.
 * MODE:
 *   (none), store16  2-byte store at offset 0   -> SIGBUS, BUS_ADRERR
 *   store32          4-byte store at offset 0   -> SIGBUS, BUS_ADRERR
 *   store64          8-byte store at offset 0   -> SIGBUS, BUS_ADRERR
 *   unaligned        4-byte load at offset 1    -> SIGBUS, BUS_ADRALN
 *   unaligned8       8-byte load at offset 4    -> SIGBUS, BUS_ADRALN
 * emuckpt exits 135 (128 + SIGBUS).  If the access does not kill the
 * process it prints "after" and exits 3; a bad MODE or a setup failure
 * exits 2.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "errname.h"

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "store16";
	const char *name = argc > 2 ? argv[2] : "bsr8_0";
	char path[128];
	snprintf(path, sizeof path, "/dev/%s", name);

	int fd = open(path, O_RDWR);
	if (fd < 0) {
		printf("open %s: errno=%s\n", path, errname(errno));
		return 2;
	}
	uint8_t *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		printf("mmap %s: errno=%s\n", path, errname(errno));
		return 2;
	}

	printf("before\n");
	fflush(stdout);

	uint64_t v = 0;
	if (strcmp(mode, "store16") == 0) {
		__asm__ volatile("movw %1, (%0)" : : "r"(p), "r"((uint16_t)1) : "memory");
	} else if (strcmp(mode, "store32") == 0) {
		__asm__ volatile("movl %1, (%0)" : : "r"(p), "r"((uint32_t)1) : "memory");
	} else if (strcmp(mode, "store64") == 0) {
		__asm__ volatile("movq %1, (%0)" : : "r"(p), "r"((uint64_t)1) : "memory");
	} else if (strcmp(mode, "unaligned") == 0) {
		uint32_t w;
		__asm__ volatile("movl (%1), %0" : "=r"(w) : "r"(p + 1) : "memory");
		v = w;
	} else if (strcmp(mode, "unaligned8") == 0) {
		__asm__ volatile("movq (%1), %0" : "=r"(v) : "r"(p + 4) : "memory");
	} else {
		printf("unknown mode %s\n", mode);
		return 2;
	}

	printf("after 0x%llx\n", (unsigned long long)v);
	return 3;
}
