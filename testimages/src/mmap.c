/*
 * mmap - edge cases of mmap, munmap, mprotect, mremap and madvise.
 *
 * All calls go through syscall(2) so the libc wrappers add no checks of
 * their own: the results are the kernel's.  Each call prints
 *     NAME: ret=R errno=E
 * where R is 0 for success (any non-error return) or -1, and E is the
 * errno name, or 0 on success.  Checks of memory contents print
 *     NAME: ok            (or NAME: FAIL)
 * Every line has an expected result baked in (matching Linux); a mismatch
 * additionally prints "FAIL NAME: want ..." and the program exits 1.  The
 * last line is "ok" when everything matched.
 *
 * Signals are not used: whether a range is mapped is probed with
 * mprotect(), which fails with ENOMEM on unmapped pages.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "errname.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef MAP_SHARED_VALIDATE
#define MAP_SHARED_VALIDATE 0x03
#endif

#define PG 4096ul
#define RW (PROT_READ | PROT_WRITE)
#define ANON (MAP_PRIVATE | MAP_ANONYMOUS)

static int failures;

/* Raw wrappers: return the syscall result, -1 with errno on failure. */
static long sys_mmap(void *a, size_t l, long prot, long fl, long fd, long off)
{
	return syscall(SYS_mmap, a, l, prot, fl, fd, off);
}
static long sys_munmap(void *a, size_t l) { return syscall(SYS_munmap, a, l); }
static long sys_mprotect(void *a, size_t l, long p) { return syscall(SYS_mprotect, a, l, p); }
static long sys_madvise(void *a, size_t l, long adv) { return syscall(SYS_madvise, a, l, adv); }
static long sys_mremap(void *a, size_t ol, size_t nl, long fl, void *na)
{
	return syscall(SYS_mremap, a, ol, nl, fl, na);
}

/*
 * Print one call result and compare with the expectation
 * (want == 0: success expected, otherwise the expected errno).
 */
static long report(const char *name, long r, int want)
{
	int e = r == -1 ? errno : 0;
	printf("%s: ret=%d errno=%s\n", name, r == -1 ? -1 : 0, errname(e));
	if (e != want) {
		printf("FAIL %s: want errno=%s\n", name, errname(want));
		failures++;
	}
	return r;
}

/* Evaluate a call with errno cleared, then report it. */
#define CALL(name, want, expr) (errno = 0, report((name), (long)(expr), (want)))

static void check(const char *name, int cond)
{
	printf("%s: %s\n", name, cond ? "ok" : "FAIL");
	if (!cond)
		failures++;
}

/* Map n fresh private anonymous RW pages; abort on failure. */
static uint8_t *map_pages(size_t n)
{
	long r = sys_mmap(NULL, n * PG, RW, ANON, -1, 0);
	if (r == -1) {
		printf("FAIL setup mmap of %zu pages: %s\n", n, errname(errno));
		_exit(1);
	}
	return (uint8_t *)r;
}

static void fill(uint8_t *p, size_t n, uint8_t seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(seed + i * 13 + (i >> 12));
}

static int same(const uint8_t *p, size_t n, uint8_t seed)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != (uint8_t)(seed + i * 13 + (i >> 12)))
			return 0;
	return 1;
}

static int zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

/* A page-aligned address with nothing mapped there right now. */
static uint8_t *free_hole(size_t n)
{
	uint8_t *p = map_pages(n);
	sys_munmap(p, n * PG);
	return p;
}

static void test_mmap(void)
{
	uint8_t *base = map_pages(4);

	CALL("mmap_len0", EINVAL, sys_mmap(NULL, 0, RW, ANON, -1, 0));
	CALL("mmap_neither_shared_nor_private", EINVAL,
	     sys_mmap(NULL, PG, RW, MAP_ANONYMOUS, -1, 0));
	/* MAP_SHARED|MAP_PRIVATE == MAP_SHARED_VALIDATE, which an
	 * anonymous mapping does not accept. */
	CALL("mmap_shared_and_private", EINVAL,
	     sys_mmap(NULL, PG, RW, MAP_SHARED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
	CALL("mmap_fixed_unaligned", EINVAL,
	     sys_mmap(base + 1, PG, RW, ANON | MAP_FIXED, -1, 0));
	CALL("mmap_offset_unaligned", EINVAL, sys_mmap(NULL, PG, RW, ANON, -1, 1));
	CALL("mmap_file_bad_fd", EBADF, sys_mmap(NULL, PG, PROT_READ, MAP_PRIVATE, -1, 0));
	CALL("mmap_len_huge", ENOMEM, sys_mmap(NULL, (size_t)1 << 60, RW, ANON, -1, 0));

	/* MAP_FIXED_NOREPLACE: refuse to clobber, succeed on free space. */
	CALL("mmap_fixed_noreplace_existing", EEXIST,
	     sys_mmap(base, PG, RW, ANON | MAP_FIXED_NOREPLACE, -1, 0));
	uint8_t *hole = free_hole(2);
	long r = CALL("mmap_fixed_noreplace_free", 0,
		      sys_mmap(hole, 2 * PG, RW, ANON | MAP_FIXED_NOREPLACE, -1, 0));
	check("mmap_fixed_noreplace_free_addr", r == (long)hole);
	if (r != -1)
		sys_munmap(hole, 2 * PG);

	/* MAP_FIXED replaces existing pages with fresh zero pages. */
	fill(base, 2 * PG, 1);
	r = CALL("mmap_fixed_replace", 0, sys_mmap(base, PG, RW, ANON | MAP_FIXED, -1, 0));
	check("mmap_fixed_replace_addr", r == (long)base);
	check("mmap_fixed_replace_zeroed", zero(base, PG));
	check("mmap_fixed_replace_neighbour_intact", base[PG] == (uint8_t)(1 + PG * 13 + 1));

	/* Fresh anonymous memory reads as zero. */
	uint8_t *z = map_pages(3);
	check("mmap_anon_zero", zero(z, 3 * PG));
	sys_munmap(z, 3 * PG);

	/* PROT_NONE mapping made accessible later. */
	r = CALL("mmap_prot_none", 0, sys_mmap(NULL, PG, PROT_NONE, ANON, -1, 0));
	if (r != -1) {
		uint8_t *p = (uint8_t *)r;
		CALL("mprotect_none_to_rw", 0, sys_mprotect(p, PG, RW));
		p[0] = 42;
		p[PG - 1] = 43;
		check("mprotect_none_to_rw_usable", p[0] == 42 && p[PG - 1] == 43);
		sys_munmap(p, PG);
	}
	sys_munmap(base, 4 * PG);
}

static void test_munmap_mprotect(void)
{
	uint8_t *p = map_pages(3);

	CALL("munmap_unaligned", EINVAL, sys_munmap(p + 1, PG));
	CALL("munmap_len0", EINVAL, sys_munmap(p, 0));
	uint8_t *hole = free_hole(2);
	CALL("munmap_unmapped_range", 0, sys_munmap(hole, 2 * PG));

	/* Punch a hole in the middle of a 3-page mapping. */
	fill(p, 3 * PG, 7);
	CALL("munmap_middle", 0, sys_munmap(p + PG, PG));
	CALL("mprotect_hole", ENOMEM, sys_mprotect(p + PG, PG, PROT_READ));
	CALL("mprotect_before_hole", 0, sys_mprotect(p, PG, RW));
	CALL("mprotect_after_hole", 0, sys_mprotect(p + 2 * PG, PG, RW));
	CALL("mprotect_across_hole", ENOMEM, sys_mprotect(p, 3 * PG, RW));
	check("munmap_middle_neighbours_intact",
	      same(p, PG, 7) && p[2 * PG] == (uint8_t)(7 + 2 * PG * 13 + 2));

	CALL("mprotect_unaligned", EINVAL, sys_mprotect(p + 1, PG, PROT_READ));
	CALL("mprotect_len0", 0, sys_mprotect(p, 0, PROT_READ));
	CALL("mprotect_bad_prot", EINVAL, sys_mprotect(p, PG, 0x10));
	CALL("mprotect_unmapped", ENOMEM, sys_mprotect(hole, PG, PROT_READ));
	/* Read-only then back to RW keeps the data. */
	CALL("mprotect_ro", 0, sys_mprotect(p, PG, PROT_READ));
	CALL("mprotect_rw", 0, sys_mprotect(p, PG, RW));
	check("mprotect_keeps_data", same(p, PG, 7));

	sys_munmap(p, 3 * PG);
}

static void test_mremap(void)
{
	/* Two pages of data followed by a guard page, so growing in place
	 * is impossible. */
	uint8_t *a = map_pages(3);
	fill(a, 2 * PG, 3);

	CALL("mremap_grow_blocked_nomove", ENOMEM, sys_mremap(a, 2 * PG, 8 * PG, 0, NULL));
	long r = CALL("mremap_grow_maymove", 0,
		      sys_mremap(a, 2 * PG, 8 * PG, MREMAP_MAYMOVE, NULL));
	if (r != -1) {
		uint8_t *b = (uint8_t *)r;
		check("mremap_grow_moved", b != a);
		check("mremap_grow_keeps_contents", same(b, 2 * PG, 3));
		check("mremap_grow_tail_zero", zero(b + 2 * PG, 6 * PG));
		CALL("mremap_grow_old_gone", ENOMEM, sys_mprotect(a, 2 * PG, PROT_READ));
		CALL("mremap_grow_guard_kept", 0, sys_mprotect(a + 2 * PG, PG, RW));

		/* Shrink 8 -> 2 pages: same address, tail unmapped. */
		r = CALL("mremap_shrink", 0, sys_mremap(b, 8 * PG, 2 * PG, 0, NULL));
		check("mremap_shrink_same_addr", r == (long)b);
		check("mremap_shrink_keeps_contents", same(b, 2 * PG, 3));
		CALL("mremap_shrink_tail_gone", ENOMEM, sys_mprotect(b + 2 * PG, PG, PROT_READ));

		/* Grow in place into free space right after the mapping. */
		r = CALL("mremap_grow_in_place", 0, sys_mremap(b, 2 * PG, 6 * PG, 0, NULL));
		check("mremap_grow_in_place_same_addr", r == (long)b);
		check("mremap_grow_in_place_keeps_contents", same(b, 2 * PG, 3));
		sys_munmap(b, 6 * PG);
	}
	sys_munmap(a, 3 * PG);

	uint8_t *c = map_pages(2);
	fill(c, 2 * PG, 9);
	uint8_t *target = free_hole(4);
	CALL("mremap_fixed_without_maymove", EINVAL,
	     sys_mremap(c, 2 * PG, 2 * PG, MREMAP_FIXED, target));
	r = CALL("mremap_fixed_maymove", 0,
		 sys_mremap(c, 2 * PG, 2 * PG, MREMAP_FIXED | MREMAP_MAYMOVE, target));
	check("mremap_fixed_maymove_addr", r == (long)target);
	if (r != -1) {
		check("mremap_fixed_maymove_keeps_contents", same(target, 2 * PG, 9));
		CALL("mremap_fixed_old_gone", ENOMEM, sys_mprotect(c, PG, PROT_READ));
		c = target;
	}
	CALL("mremap_unaligned", EINVAL, sys_mremap(c + 1, PG, PG, 0, NULL));
	CALL("mremap_bad_flags", EINVAL, sys_mremap(c, PG, PG, 0x80, NULL));
	CALL("mremap_new_len0", EINVAL, sys_mremap(c, PG, 0, MREMAP_MAYMOVE, NULL));
	uint8_t *hole = free_hole(1);
	CALL("mremap_unmapped", EFAULT, sys_mremap(hole, PG, PG, 0, NULL));
	sys_munmap(c, 2 * PG);
}

static void test_madvise(void)
{
	uint8_t *p = map_pages(4);
	fill(p, 4 * PG, 5);

	/* MADV_DONTNEED on private anonymous memory: reads back as zero. */
	CALL("madvise_dontneed", 0, sys_madvise(p, 2 * PG, MADV_DONTNEED));
	check("madvise_dontneed_zeroed", zero(p, 2 * PG));
	check("madvise_dontneed_rest_intact", p[2 * PG] == (uint8_t)(5 + 2 * PG * 13 + 2));
	/* Pages are still mapped and usable. */
	p[0] = 1;
	check("madvise_dontneed_still_mapped", p[0] == 1);

	CALL("madvise_dontdump", 0, sys_madvise(p, 4 * PG, MADV_DONTDUMP));
	CALL("madvise_dodump", 0, sys_madvise(p, 4 * PG, MADV_DODUMP));
	CALL("madvise_normal", 0, sys_madvise(p, 4 * PG, MADV_NORMAL));
	CALL("madvise_willneed", 0, sys_madvise(p, 4 * PG, MADV_WILLNEED));
	CALL("madvise_len0", 0, sys_madvise(p, 0, MADV_DONTNEED));
	CALL("madvise_unaligned", EINVAL, sys_madvise(p + 1, PG, MADV_DONTNEED));
	CALL("madvise_bad_advice", EINVAL, sys_madvise(p, PG, 999));
	uint8_t *hole = free_hole(1);
	CALL("madvise_unmapped", ENOMEM, sys_madvise(hole, PG, MADV_DONTNEED));
	sys_munmap(p, 4 * PG);
}

int main(void)
{
	test_mmap();
	test_munmap_mprotect();
	test_mremap();
	test_madvise();
	if (failures) {
		printf("FAIL %d\n", failures);
		return 1;
	}
	printf("ok\n");
	return 0;
}
