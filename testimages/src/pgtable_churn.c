/*
 * pgtable_churn - map one page at a new 1 GiB-aligned address, touch it,
 * unmap it, and again, N times (default 130044, the count of issue 7).
 *
 * Every cycle needs a new page table, page directory and, every 512
 * cycles, a new page-directory-pointer table.  A kernel that does not free
 * the tables munmap leaves empty (Linux frees them in free_pgtables) runs
 * out of memory after a few thousand cycles under `emuckpt run --mem 64M`.
 *
 * Every 16th cycle it also checks, with a SIGSEGV handler, that the page
 * just unmapped and the one unmapped 100 cycles before (whose tables may
 * have been freed and reused since) fault when read: a stale translation
 * would let the read through.
 *
 * Usage: pgtable_churn [N]
 * Output: "cycles: N" and "ok", exit 0.  A failed call prints
 * "FAIL cycle I at 0x...: CALL errno=NAME" and exits 1; a page that does
 * not read back what was written prints "FAIL cycle I: read ...", an
 * unmapped page that reads "FAIL cycle I: 0x... readable after munmap";
 * both exit 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "errname.h"

#define GIB (1ul << 30)

static sigjmp_buf fault;

static void on_segv(int sig)
{
	(void)sig;
	siglongjmp(fault, 1);
}

/* readable reports whether a read of va succeeds. */
static int readable(uintptr_t va)
{
	if (sigsetjmp(fault, 1))
		return 0;
	(void)*(volatile uint64_t *)va;
	return 1;
}

int main(int argc, char **argv)
{
	unsigned long n = argc > 1 ? strtoul(argv[1], NULL, 0) : 130044;
	struct sigaction sa = {.sa_handler = on_segv};
	sigaction(SIGSEGV, &sa, NULL);
	for (unsigned long i = 1; i <= n; i++) {
		uintptr_t va = i * GIB;
		volatile uint64_t *p = mmap((void *)va, 4096, PROT_READ | PROT_WRITE,
					    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
		if (p == MAP_FAILED) {
			printf("FAIL cycle %lu at %#lx: mmap errno=%s\n", i, (unsigned long)va, errname(errno));
			return 1;
		}
		p[7] = i;
		if (p[7] != i || p[0] != 0) {
			printf("FAIL cycle %lu: read %llu and %llu\n", i,
			       (unsigned long long)p[7], (unsigned long long)p[0]);
			return 1;
		}
		if (munmap((void *)p, 4096) != 0) {
			printf("FAIL cycle %lu at %#lx: munmap errno=%s\n", i, (unsigned long)va, errname(errno));
			return 1;
		}
		if (i % 16 != 0)
			continue;
		for (unsigned long back = 0; back <= 100 && back < i; back += 100) {
			uintptr_t old = (i - back) * GIB;
			if (readable(old)) {
				printf("FAIL cycle %lu: %#lx readable after munmap\n", i, (unsigned long)old);
				return 1;
			}
		}
	}
	printf("cycles: %lu\nok\n", n);
	return 0;
}
