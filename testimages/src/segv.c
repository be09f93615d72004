/*
 * segv [MODE] - dies from a deliberate SIGSEGV.
 *
 * Prints "before" (flushed) and then faults; "after" is never printed.
 * MODE:
 *   (none)     write to address 0x10      -> SIGSEGV, si_code SEGV_MAPERR
 *   read       read from address 0x10     -> SIGSEGV, si_code SEGV_MAPERR
 *   write-ro   write to a PROT_READ page  -> SIGSEGV, si_code SEGV_ACCERR
 * If the fault somehow does not kill the process it prints "after" and
 * exits 3.  An unknown MODE exits 2.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "write";

	printf("before\n");
	fflush(stdout);

	/* A volatile pointer object hides the constant address from the
	 * compiler, which would otherwise warn or emit a trap instruction. */
	volatile int *volatile bad = (volatile int *)(uintptr_t)0x10;

	if (strcmp(mode, "write") == 0) {
		*bad = 1;
	} else if (strcmp(mode, "read") == 0) {
		int v = *bad;
		printf("read %d\n", v);
	} else if (strcmp(mode, "write-ro") == 0) {
		volatile int *p = mmap(NULL, 4096, PROT_READ,
				       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED) {
			printf("mmap failed\n");
			return 2;
		}
		p[0] = 1;
	} else {
		printf("unknown mode %s\n", mode);
		return 2;
	}

	printf("after\n");
	return 3;
}
