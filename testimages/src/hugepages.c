/*
 * hugepages - anonymous memory in 2 MiB aligned regions, changed in part.
 *
 * Fills 2 MiB aligned regions of private anonymous memory (which emuckpt
 * maps with 2 MiB pages, as Linux may with transparent huge pages), then
 * changes part of them and checks that exactly that part changed:
 * munmap, mprotect and madvise(MADV_DONTNEED) of one page, a fork whose
 * child writes, munmap and mmap again of a whole 2 MiB region, mremap
 * moving part of one, and MADV_NOHUGEPAGE. Prints one line per check;
 * the output is the same natively. Exits 1 on the first failure.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define PG 4096ul
#define HUGE (2ul << 20)

static sigjmp_buf jb;
static void onsegv(int sig)
{
	(void)sig;
	siglongjmp(jb, 1);
}

/* faults reports whether an access to p (a write when write is set) is
 * SIGSEGV. */
static int faults(volatile uint8_t *p, int write)
{
	if (sigsetjmp(jb, 1))
		return 1;
	if (write)
		*p = 1;
	else
		(void)*p;
	return 0;
}

static uint8_t val(size_t off, int salt) { return (uint8_t)((off / PG) * 13 + salt + 1); }

static void fill(uint8_t *p, size_t len, int salt)
{
	for (size_t o = 0; o < len; o += PG)
		memset(p + o, val(o, salt), PG);
}

/* check_from returns the first page offset in [from, len) that does not
 * hold the fill pattern, skipping [skip, skip+PG), or -1. */
static long check_from(const uint8_t *p, size_t from, size_t len, int salt, long skip)
{
	for (size_t o = from; o < len; o += PG) {
		if ((long)o == skip)
			continue;
		for (size_t i = 0; i < PG; i += 511)
			if (p[o + i] != val(o, salt))
				return (long)o;
	}
	return -1;
}

static long check(const uint8_t *p, size_t len, int salt, long skip)
{
	return check_from(p, 0, len, salt, skip);
}

static uint8_t *region(size_t n)
{
	uint8_t *raw = mmap(NULL, (n + 1) * HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (raw == MAP_FAILED) {
		printf("FAIL mmap\n");
		exit(1);
	}
	uint8_t *p = (uint8_t *)(((uintptr_t)raw + HUGE - 1) & ~(HUGE - 1));
	fill(p, n * HUGE, 0);
	return p;
}

static void report(const char *what, int ok)
{
	printf("%s: %s\n", what, ok ? "ok" : "FAIL");
	if (!ok)
		exit(1);
}

int main(void)
{
	signal(SIGSEGV, onsegv);

	uint8_t *p = region(1);
	munmap(p + 5 * PG, PG);
	report("munmap one page: it faults", faults(p + 5 * PG, 0));
	report("munmap one page: the rest kept", check(p, HUGE, 0, 5 * PG) < 0);

	p = region(1);
	mprotect(p + 7 * PG, PG, PROT_READ);
	report("mprotect one page: write faults", faults(p + 7 * PG, 1));
	report("mprotect one page: read works", !faults(p + 7 * PG, 0) && p[7 * PG] == val(7 * PG, 0));
	report("mprotect one page: neighbour writable", !faults(p + 8 * PG, 1));
	p[8 * PG] = val(8 * PG, 0);
	report("mprotect one page: the rest kept", check(p, HUGE, 0, -1) < 0);

	p = region(1);
	madvise(p + HUGE - PG, PG, MADV_DONTNEED);
	report("MADV_DONTNEED one page: zero", p[HUGE - PG] == 0 && p[HUGE - 1] == 0);
	report("MADV_DONTNEED one page: the rest kept", check(p, HUGE, 0, HUGE - PG) < 0);

	p = region(2);
	pid_t pid = fork();
	if (pid == 0) {
		int ok = check(p, 2 * HUGE, 0, -1) < 0;
		fill(p, 2 * HUGE, 1);
		ok = ok && check(p, 2 * HUGE, 1, -1) < 0;
		_exit(ok ? 0 : 1);
	}
	int st;
	waitpid(pid, &st, 0);
	report("fork: the child saw the parent's data and wrote its own", WIFEXITED(st) && WEXITSTATUS(st) == 0);
	report("fork: the parent's data unchanged", check(p, 2 * HUGE, 0, -1) < 0);
	p[9 * PG] = 0x77;
	report("fork: the parent writes after the child is gone", p[9 * PG] == 0x77 && check(p, 2 * HUGE, 0, 9 * PG) < 0);

	p = region(1);
	munmap(p, HUGE);
	report("munmap 2 MiB: it faults", faults(p + 3 * PG, 0));
	uint8_t *q = mmap(p, HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	int zero = q == p;
	for (size_t o = 0; zero && o < HUGE; o += PG / 2)
		zero = q[o] == 0;
	report("mmap again over it: zero", zero);

	p = region(1);
	q = mremap(p + PG, 2 * PG, 2 * PG, MREMAP_MAYMOVE | MREMAP_FIXED, p + 8 * HUGE);
	report("mremap two pages out: moved with their data", q == p + 8 * HUGE && q[0] == val(PG, 0) && q[PG] == val(2 * PG, 0));
	report("mremap two pages out: the old place faults", faults(p + PG, 0) && faults(p + 2 * PG, 0));
	report("mremap two pages out: the rest kept", p[0] == val(0, 0) && check_from(p, 3 * PG, HUGE, 0, -1) < 0);

	uint8_t *raw = mmap(NULL, 3 * HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	p = (uint8_t *)(((uintptr_t)raw + HUGE - 1) & ~(HUGE - 1));
	report("MADV_NOHUGEPAGE accepted", madvise(p, HUGE, MADV_NOHUGEPAGE) == 0);
	fill(p, HUGE, 2);
	report("MADV_NOHUGEPAGE region holds its data", check(p, HUGE, 2, -1) < 0);
	report("MADV_HUGEPAGE accepted", madvise(p, HUGE, MADV_HUGEPAGE) == 0);
	return 0;
}
