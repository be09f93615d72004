/*
 * malloc - stress musl's allocator, and through it brk and mmap/munmap/
 * mremap in the kernel (musl's mallocng serves small sizes from brk/mmap'd
 * groups and sizes above ~128 KiB from individual mmaps).
 *
 * Everything is driven by a fixed-seed PRNG, so the sequence of requests
 * and the final checksum are identical on every run and every kernel.
 * Addresses are never printed.
 *
 * Phases:
 *   sweep    every size 2^k-1, 2^k, 2^k+1 for 1 B .. 4 MiB: alloc/fill/verify/free
 *   slots    4 rounds of 384 allocations, freed forward, backward, shuffled,
 *            and odd/even interleaved
 *   realloc  grow 1 B -> 4 MiB and shrink back, checking the kept prefix
 *   calloc   calloc after freeing dirtied memory must return zeroes
 *   churn    random mix of malloc/realloc/free over 256 live slots
 * Output: one line per phase "PHASE: ok", then "checksum=0x..." and "ok".
 * On a mismatch prints "FAIL ..." and exits 1.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIB (1024u * 1024u)

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

/* xorshift64*: tiny, fast, deterministic. */
static uint64_t rng(void)
{
	uint64_t x = rng_state;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	rng_state = x;
	return x * 0x2545f4914f6cdd1dull;
}

static uint64_t checksum = 0xcbf29ce484222325ull;

static void mix(uint64_t v)
{
	checksum ^= v;
	checksum *= 0x100000001b3ull;
}

/* Byte i of a block tagged t. */
static inline uint8_t pat(uint32_t t, size_t i)
{
	return (uint8_t)(t * 131u + i * 7u + (i >> 9));
}

static void fill(uint8_t *p, size_t n, uint32_t t)
{
	for (size_t i = 0; i < n; i++)
		p[i] = pat(t, i);
}

static void fail(const char *what, size_t a, size_t b)
{
	printf("FAIL %s (%zu, %zu)\n", what, a, b);
	exit(1);
}

/* Verify the first n bytes of p carry tag t; folds a summary into checksum. */
static void verify(const uint8_t *p, size_t n, uint32_t t)
{
	uint64_t s = 0;
	for (size_t i = 0; i < n; i++) {
		if (p[i] != pat(t, i))
			fail("verify: byte mismatch at offset/size", i, n);
		s += p[i];
	}
	mix(n);
	mix(s);
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n);
	if (!p)
		fail("malloc returned NULL for size", n, 0);
	if ((uintptr_t)p % 16 != 0)
		fail("malloc result not 16-byte aligned, size", n, 0);
	return p;
}

/* Random size: mostly small, some medium, a few large (mmap path). */
static size_t rand_size(void)
{
	uint64_t r = rng();
	unsigned k = r % 100;
	r >>= 8;
	if (k < 70)
		return 1 + r % 256;
	if (k < 95)
		return 257 + r % (64 * 1024);
	if (k < 99)
		return 128 * 1024 + r % (512 * 1024);
	return 1 * MIB + r % (3 * MIB + 1); /* up to 4 MiB */
}

static void phase_sweep(void)
{
	for (size_t sz = 1; sz <= 4 * MIB; sz <<= 1) {
		size_t cand[3] = { sz - 1, sz, sz + 1 };
		for (int j = 0; j < 3; j++) {
			size_t n = cand[j];
			if (n == 0 || n > 4 * MIB)
				continue;
			uint8_t *p = xmalloc(n);
			fill(p, n, (uint32_t)n);
			verify(p, n, (uint32_t)n);
			free(p);
		}
	}
	printf("sweep: ok\n");
}

#define NSLOTS 384

static void phase_slots(void)
{
	static uint8_t *ptr[NSLOTS];
	static size_t len[NSLOTS];
	static int order[NSLOTS];

	for (int round = 0; round < 4; round++) {
		for (int i = 0; i < NSLOTS; i++) {
			len[i] = rand_size();
			ptr[i] = xmalloc(len[i]);
			fill(ptr[i], len[i], (uint32_t)(round * NSLOTS + i));
		}
		/* Everything must still be intact after all the allocations. */
		for (int i = 0; i < NSLOTS; i++)
			verify(ptr[i], len[i], (uint32_t)(round * NSLOTS + i));

		/* Choose a free order. */
		for (int i = 0; i < NSLOTS; i++)
			order[i] = i;
		switch (round % 4) {
		case 0: /* forward */
			break;
		case 1: /* backward */
			for (int i = 0; i < NSLOTS; i++)
				order[i] = NSLOTS - 1 - i;
			break;
		case 2: /* Fisher-Yates shuffle */
			for (int i = NSLOTS - 1; i > 0; i--) {
				int j = (int)(rng() % (uint64_t)(i + 1));
				int t = order[i];
				order[i] = order[j];
				order[j] = t;
			}
			break;
		case 3: /* odd slots, then even slots */
			for (int i = 0, k = 0; i < NSLOTS; i++)
				if (i & 1)
					order[k++] = i;
			for (int i = 0, k = NSLOTS / 2; i < NSLOTS; i++)
				if (!(i & 1))
					order[k++] = i;
			break;
		}
		/* Free half, verify the survivors, free the rest. */
		for (int i = 0; i < NSLOTS / 2; i++) {
			free(ptr[order[i]]);
			ptr[order[i]] = NULL;
		}
		for (int i = 0; i < NSLOTS; i++)
			if (ptr[i])
				verify(ptr[i], len[i], (uint32_t)(round * NSLOTS + i));
		for (int i = NSLOTS / 2; i < NSLOTS; i++) {
			free(ptr[order[i]]);
			ptr[order[i]] = NULL;
		}
	}
	printf("slots: ok\n");
}

static void phase_realloc(void)
{
	const uint32_t tag = 77;
	size_t n = 1;
	uint8_t *p = xmalloc(n);
	fill(p, n, tag);
	/* Grow: mostly doubling, with odd sizes mixed in. */
	while (n < 4 * MIB) {
		size_t m = n * 2 + rng() % 97;
		if (m > 4 * MIB)
			m = 4 * MIB;
		p = realloc(p, m);
		if (!p)
			fail("realloc grow NULL", n, m);
		verify(p, n, tag); /* the old contents must be preserved */
		fill(p, m, tag);
		n = m;
	}
	/* Shrink back down. */
	while (n > 1) {
		size_t m = n / 3 + 1;
		if (m >= n)
			m = n - 1;
		p = realloc(p, m);
		if (!p)
			fail("realloc shrink NULL", n, m);
		verify(p, m, tag);
		n = m;
	}
	free(p);
	/* realloc(NULL, n) behaves like malloc. */
	p = realloc(NULL, 100);
	if (!p)
		fail("realloc(NULL) NULL", 100, 0);
	fill(p, 100, tag);
	verify(p, 100, tag);
	free(p);
	printf("realloc: ok\n");
}

static void phase_calloc(void)
{
	static const size_t sizes[] = { 1, 24, 4096, 100000, 200 * 1024, 4 * MIB };
	for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
		size_t n = sizes[k];
		/* Dirty some memory of the same size, free it, then calloc. */
		uint8_t *d = xmalloc(n);
		memset(d, 0xa5, n);
		/* Stop the compiler from eliding the memset before free(). */
		__asm__ volatile("" : : "r"(d) : "memory");
		free(d);
		uint8_t *p = calloc(n, 1);
		if (!p)
			fail("calloc NULL", n, 0);
		for (size_t i = 0; i < n; i++)
			if (p[i])
				fail("calloc not zeroed at offset/size", i, n);
		mix(n);
		free(p);
	}
	/* Overflowing calloc must fail rather than return a short block. */
	volatile size_t huge = (size_t)1 << 40; /* volatile: no compile-time warning */
	void *big = calloc(huge, huge);
	if (big)
		fail("calloc overflow returned non-NULL", 0, 0);
	printf("calloc: ok\n");
}

#define NCHURN 256

static void phase_churn(void)
{
	static uint8_t *ptr[NCHURN];
	static size_t len[NCHURN];
	static uint32_t tag[NCHURN];

	for (uint32_t op = 0; op < 20000; op++) {
		int i = (int)(rng() % NCHURN);
		unsigned what = (unsigned)(rng() % 4);
		if (!ptr[i]) {
			len[i] = rand_size();
			/* keep the mmap path mostly cheap in churn */
			if (len[i] > 256 * 1024)
				len[i] = 256 * 1024 + len[i] % 4096;
			ptr[i] = xmalloc(len[i]);
			tag[i] = op;
			fill(ptr[i], len[i], tag[i]);
		} else if (what == 0) {
			size_t m = rand_size() % (300 * 1024) + 1;
			uint8_t *q = realloc(ptr[i], m);
			if (!q)
				fail("churn realloc NULL", len[i], m);
			verify(q, len[i] < m ? len[i] : m, tag[i]);
			ptr[i] = q;
			len[i] = m;
			tag[i] = op;
			fill(ptr[i], len[i], tag[i]);
		} else {
			verify(ptr[i], len[i], tag[i]);
			free(ptr[i]);
			ptr[i] = NULL;
		}
	}
	for (int i = 0; i < NCHURN; i++) {
		if (ptr[i]) {
			verify(ptr[i], len[i], tag[i]);
			free(ptr[i]);
		}
	}
	printf("churn: ok\n");
}

int main(void)
{
	phase_sweep();
	phase_slots();
	phase_realloc();
	phase_calloc();
	phase_churn();
	printf("checksum=0x%016llx\n", (unsigned long long)checksum);
	printf("ok\n");
	return 0;
}
