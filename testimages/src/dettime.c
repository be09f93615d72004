/*
 * dettime - every source of time and randomness a program commonly uses.
 *
 * Natively the values differ on every run.  Under the emulator with
 * `--deterministic --seed N` two runs must produce byte-identical output,
 * which is what the end-to-end test compares.  Sanity checks (which hold
 * in both worlds) make the program exit 1 with a FAIL line:
 *   - CLOCK_MONOTONIC never goes backwards,
 *   - nanosleep(10 ms) lasts at least 10 ms of CLOCK_MONOTONIC time,
 *   - time() agrees with CLOCK_REALTIME to within a second,
 *   - getrandom and /dev/urandom deliver 16 bytes,
 *   - AT_RANDOM is present.
 * Output lines:
 *   clock_getres_monotonic: S.NNNNNNNNN
 *   monotonic: S.NNNNNNNNN      realtime: S.NNNNNNNNN
 *   gettimeofday: S.UUUUUU      time: S
 *   monotonic2: S.NNNNNNNNN
 *   nanosleep_10ms: ret=0 elapsed_ns=N
 *   getrandom: <32 hex>   urandom: <32 hex>   at_random: <32 hex>
 *   rdtsc_delta: N
 *   ok
 * Time goes through libc (clock_gettime may use the vDSO natively); the
 * emulator is expected to provide either a vDSO or the syscalls.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/auxv.h>
#include <sys/random.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "errname.h"

static int failures;

static void fail(const char *what)
{
	printf("FAIL %s\n", what);
	failures++;
}

static int64_t ts_ns(const struct timespec *t)
{
	return (int64_t)t->tv_sec * 1000000000 + t->tv_nsec;
}

static void print_ts(const char *name, const struct timespec *t)
{
	printf("%s: %lld.%09ld\n", name, (long long)t->tv_sec, (long)t->tv_nsec);
}

static void print_hex(const char *name, const unsigned char *p, size_t n)
{
	printf("%s: ", name);
	for (size_t i = 0; i < n; i++)
		printf("%02x", p[i]);
	putchar('\n');
}

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return (uint64_t)hi << 32 | lo;
}

int main(void)
{
	struct timespec res, mono, real, mono2, t0, t1;

	if (clock_getres(CLOCK_MONOTONIC, &res) != 0)
		fail("clock_getres");
	print_ts("clock_getres_monotonic", &res);

	if (clock_gettime(CLOCK_MONOTONIC, &mono) != 0)
		fail("clock_gettime(CLOCK_MONOTONIC)");
	if (clock_gettime(CLOCK_REALTIME, &real) != 0)
		fail("clock_gettime(CLOCK_REALTIME)");
	struct timeval tv;
	if (gettimeofday(&tv, NULL) != 0)
		fail("gettimeofday");
	time_t now = time(NULL);
	if (clock_gettime(CLOCK_MONOTONIC, &mono2) != 0)
		fail("clock_gettime(CLOCK_MONOTONIC) 2");

	print_ts("monotonic", &mono);
	print_ts("realtime", &real);
	printf("gettimeofday: %lld.%06ld\n", (long long)tv.tv_sec, (long)tv.tv_usec);
	printf("time: %lld\n", (long long)now);
	print_ts("monotonic2", &mono2);
	if (ts_ns(&mono2) < ts_ns(&mono))
		fail("monotonic went backwards");
	if (now < real.tv_sec || now > real.tv_sec + 1)
		fail("time() disagrees with CLOCK_REALTIME");
	if (tv.tv_sec < real.tv_sec || tv.tv_sec > real.tv_sec + 1)
		fail("gettimeofday disagrees with CLOCK_REALTIME");

	/* Sleep 10 ms and measure it on the monotonic clock. */
	struct timespec req = { .tv_sec = 0, .tv_nsec = 10 * 1000 * 1000 };
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int r = nanosleep(&req, NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	int64_t elapsed = ts_ns(&t1) - ts_ns(&t0);
	printf("nanosleep_10ms: ret=%d elapsed_ns=%lld\n", r, (long long)elapsed);
	if (r != 0)
		fail("nanosleep");
	if (elapsed < 10 * 1000 * 1000)
		fail("nanosleep returned early");

	/* Randomness. */
	unsigned char buf[16] = { 0 };
	ssize_t n = getrandom(buf, sizeof buf, 0);
	if (n != (ssize_t)sizeof buf) {
		printf("getrandom: ret=%zd errno=%s\n", n, errname(n < 0 ? errno : 0));
		fail("getrandom");
	} else {
		print_hex("getrandom", buf, sizeof buf);
	}

	unsigned char ubuf[16] = { 0 };
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		printf("urandom: open errno=%s\n", errname(errno));
		fail("open /dev/urandom");
	} else {
		n = read(fd, ubuf, sizeof ubuf);
		close(fd);
		if (n != (ssize_t)sizeof ubuf)
			fail("read /dev/urandom");
		print_hex("urandom", ubuf, sizeof ubuf);
	}

	const unsigned char *atr = (const unsigned char *)getauxval(AT_RANDOM);
	if (!atr) {
		printf("at_random: missing\n");
		fail("AT_RANDOM");
	} else {
		print_hex("at_random", atr, 16);
	}

	/* Two back-to-back TSC reads. */
	uint64_t a = rdtsc();
	uint64_t b = rdtsc();
	printf("rdtsc_delta: %llu\n", (unsigned long long)(b - a));
	if (b < a)
		fail("rdtsc went backwards");

	if (failures) {
		printf("FAIL %d\n", failures);
		return 1;
	}
	printf("ok\n");
	return 0;
}
