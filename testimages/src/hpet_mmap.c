/*
 * hpet_mmap - read the HPET through a read-only mapping of /dev/hpet.
 *
 * Opens /dev/hpet read-only, maps its register page (one page, PROT_READ,
 * MAP_SHARED), decodes the General Capabilities and ID register and reads
 * the main counter around a 10 ms busy loop (spinning on CLOCK_MONOTONIC)
 * and around nanosleep(20 ms), checking that the counter advanced as much
 * as CLOCK_MONOTONIC did, within 1%.  Each counter read is bracketed by two
 * clock_gettime calls and compared with their midpoint; the narrowest of
 * three brackets is kept.  The read happened somewhere inside its
 * bracket, so half of each bracket's width (and one counter tick) is
 * allowed on top of the 1%: however slow the machine, a correct HPET
 * passes, and a fast one measures to well within 1%.
 *
 * Output (default emuckpt HPET):
 *   hpet_gcap: 0x0429b17f8086a201
 *   hpet_rev: 1
 *   hpet_vendor: 0x8086
 *   hpet_timers: 3
 *   hpet_counter_64bit: 1
 *   hpet_legacy_route: 1
 *   hpet_period_fs: 69841279
 *   hpet_freq_hz: 14318180
 *   hpet_enabled: 1
 *   hpet_gcap_halves: ok
 *   hpet_counter_monotonic: ok
 *   busy_loop_10ms: advanced
 *   busy_loop_vs_monotonic: ok
 *   nanosleep_20ms: advanced
 *   hpet_vs_monotonic: ok
 *   ok
 * A failed check prints "NAME: FAIL ..." (with the ratio) and the program
 * ends with "FAIL <count>" and exit status 1.  With the argument "raw", or
 * when CLOCK_REALTIME is in the year 2000 (emuckpt --deterministic), it also
 * prints the raw counter and clock values of each measurement and the
 * widths of its two brackets (ns) as
 *   NAME_raw: c0=N c1=N mono0=N mono1=N w0=N w1=N ratio=R
 * (R: HPET time over CLOCK_MONOTONIC time), which under --deterministic
 * are the same in every run.  Without
 * /dev/hpet: "open: errno=NAME", exit 2.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "errname.h"

#define PG 4096ul

static volatile const uint64_t *regs;
static int failures;
static int raw;

static int64_t mono(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static uint64_t counter(void) { return regs[0xf0 / 8]; }

/* A counter reading and the CLOCK_MONOTONIC time it was taken at. */
struct sample {
	uint64_t c;
	int64_t mono;  /* midpoint of the bracket */
	int64_t width; /* bracket width */
};

static struct sample take(void)
{
	struct sample best = {0, 0, INT64_MAX};
	for (int i = 0; i < 3; i++) {
		int64_t a = mono();
		uint64_t c = counter();
		int64_t b = mono();
		if (b - a < best.width) {
			best.c = c;
			best.mono = a + (b - a) / 2;
			best.width = b - a;
		}
	}
	return best;
}

static uint64_t period_fs;

static void check(const char *name, const char *ratio_name, void (*action)(void))
{
	struct sample s0 = take();
	action();
	struct sample s1 = take();
	if (s1.c > s0.c) {
		printf("%s: advanced\n", name);
	} else {
		printf("%s: FAIL counter did not advance\n", name);
		failures++;
	}
	long double hpet_ns = (long double)(s1.c - s0.c) * period_fs / 1e6L;
	long double mono_ns = (long double)(s1.mono - s0.mono);
	long double ratio = mono_ns > 0 ? hpet_ns / mono_ns : 0;
	/* 1% of the interval, plus where in their brackets the reads fell,
	 * plus one tick of the counter. */
	long double slack = mono_ns / 100 + (s0.width + s1.width) / 2.0L + period_fs / 1e6L;
	long double diff = hpet_ns > mono_ns ? hpet_ns - mono_ns : mono_ns - hpet_ns;
	if (mono_ns > 0 && diff <= slack) {
		printf("%s: ok\n", ratio_name);
	} else {
		printf("%s: FAIL ratio=%.6Lf hpet_ns=%.0Lf mono_ns=%.0Lf allowed_ns=%.0Lf\n",
		       ratio_name, ratio, hpet_ns, mono_ns, slack);
		failures++;
	}
	if (raw)
		printf("%s_raw: c0=%llu c1=%llu mono0=%lld mono1=%lld w0=%lld w1=%lld ratio=%.6Lf\n", name,
		       (unsigned long long)s0.c, (unsigned long long)s1.c,
		       (long long)s0.mono, (long long)s1.mono,
		       (long long)s0.width, (long long)s1.width, ratio);
}

static void busy_10ms(void)
{
	int64_t end = mono() + 10000000;
	while (mono() < end)
		;
}

static void sleep_20ms(void)
{
	struct timespec d = {0, 20000000};
	while (nanosleep(&d, &d) == -1 && errno == EINTR)
		;
}

int main(int argc, char **argv)
{
	struct timespec rt;
	clock_gettime(CLOCK_REALTIME, &rt);
	raw = (argc > 1 && strcmp(argv[1], "raw") == 0) ||
	      (rt.tv_sec >= 946684800 && rt.tv_sec < 978307200);

	int fd = open("/dev/hpet", O_RDONLY);
	if (fd < 0) {
		printf("open: errno=%s\n", errname(errno));
		return 2;
	}
	void *p = mmap(NULL, PG, PROT_READ, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		printf("mmap: errno=%s\n", errname(errno));
		return 2;
	}
	regs = p;

	uint64_t gcap = regs[0];
	period_fs = gcap >> 32;
	printf("hpet_gcap: 0x%016llx\n", (unsigned long long)gcap);
	printf("hpet_rev: %u\n", (unsigned)(gcap & 0xff));
	printf("hpet_vendor: 0x%04x\n", (unsigned)(gcap >> 16 & 0xffff));
	printf("hpet_timers: %u\n", (unsigned)((gcap >> 8 & 0x1f) + 1));
	printf("hpet_counter_64bit: %u\n", (unsigned)(gcap >> 13 & 1));
	printf("hpet_legacy_route: %u\n", (unsigned)(gcap >> 15 & 1));
	printf("hpet_period_fs: %llu\n", (unsigned long long)period_fs);
	if (period_fs == 0 || period_fs > 100000000) {
		printf("FAIL hpet_period_fs out of range\n");
		return 1;
	}
	printf("hpet_freq_hz: %llu\n",
	       (unsigned long long)((1000000000000000ull + period_fs / 2) / period_fs));
	printf("hpet_enabled: %u\n", (unsigned)(regs[0x10 / 8] & 1));

	volatile const uint32_t *r32 = (volatile const uint32_t *)regs;
	uint32_t lo = r32[0], hi = r32[1];
	if (lo == (uint32_t)gcap && hi == (uint32_t)(gcap >> 32)) {
		printf("hpet_gcap_halves: ok\n");
	} else {
		printf("hpet_gcap_halves: FAIL lo=0x%08x hi=0x%08x\n", lo, hi);
		failures++;
	}

	uint64_t prev = counter();
	int backwards = 0;
	for (int i = 0; i < 100; i++) {
		uint64_t c = counter();
		if (c < prev)
			backwards++;
		prev = c;
	}
	if (backwards == 0) {
		printf("hpet_counter_monotonic: ok\n");
	} else {
		printf("hpet_counter_monotonic: FAIL %d backward steps\n", backwards);
		failures++;
	}

	check("busy_loop_10ms", "busy_loop_vs_monotonic", busy_10ms);
	check("nanosleep_20ms", "hpet_vs_monotonic", sleep_20ms);

	munmap(p, PG);
	close(fd);
	if (failures) {
		printf("FAIL %d\n", failures);
		return 1;
	}
	printf("ok\n");
	return 0;
}
