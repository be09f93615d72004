/*
 * hpet_irq - interrupts from /dev/hpet, as Linux's samples/timers do it.
 *
 * Asks for 64 Hz (HPET_IRQFREQ), periodic mode (HPET_EPI), turns the
 * interrupt on (HPET_IE_ON) and read()s the interrupt count five times,
 * then does the same in one-shot mode (HPET_DPI: the driver re-arms the
 * timer after each interrupt) for three reads.  Each read blocks until the
 * next interrupt and returns an unsigned long: the interrupts since the
 * last read.  The interrupts counted must match CLOCK_MONOTONIC, as
 * precisely as the program can tell on any machine: interrupt k comes k
 * periods after HPET_IE_ON, so with n interrupts counted by the last read,
 *   n periods <= (end of last read) - (before IE_ON)          (not too fast)
 *   n+1 periods > (start of last read) - (after IE_ON)        (not too slow)
 * each within 1%.  A slow or loaded machine makes the reader fall behind,
 * which raises the counts, not the error.
 *
 * Usage: hpet_irq [raw]; with raw it also prints, per mode,
 *   NAME_raw: irqs=N period_ns=P elapsed_ns=E last_read_ns=L
 * (E and L are the two differences above).
 *
 * Output:
 *   irqfreq_64: ret=0 errno=0
 *   info: ireqfreq=64 flags=0x10 hpet=0 timer=0
 *   epi: ret=0 errno=0
 *   ie_on: ret=0 errno=0
 *   read 1: ret=8 count=1
 *   ...
 *   read 5: ret=8 count=1
 *   periodic_rate: ok
 *   ie_off: ret=0 errno=0
 *   dpi: ret=0 errno=0
 *   ie_on_oneshot: ret=0 errno=0
 *   oneshot read 1: ret=8 count=1
 *   oneshot read 2: ret=8 count=1
 *   oneshot read 3: ret=8 count=1
 *   oneshot_rate: ok
 *   ie_off: ret=0 errno=0
 *   ok
 * A count above 1 means the reader fell behind by a whole period (possible
 * on a loaded host, not under --deterministic).  Failures print FAIL lines
 * and exit 1; without /dev/hpet: "open: errno=NAME", exit 2.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "errname.h"

/* include/uapi/linux/hpet.h */
struct hpet_info {
	unsigned long hi_ireqfreq;
	unsigned long hi_flags;
	unsigned short hi_hpet;
	unsigned short hi_timer;
};
#define HPET_IE_ON _IO('h', 0x01)
#define HPET_IE_OFF _IO('h', 0x02)
#define HPET_INFO _IOR('h', 0x03, struct hpet_info)
#define HPET_EPI _IO('h', 0x04)
#define HPET_DPI _IO('h', 0x05)
#define HPET_IRQFREQ _IOW('h', 0x6, unsigned long)

static int failures;

static int64_t mono(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static long xioctl(const char *name, int fd, unsigned long req, unsigned long arg)
{
	long r = syscall(SYS_ioctl, fd, req, arg);
	int e = r == -1 ? errno : 0;
	printf("%s: ret=%ld errno=%s\n", name, r == -1 ? -1L : r, errname(e));
	if (r == -1)
		failures++;
	return r;
}

/* reads n times; returns the interrupts counted and, in *last, the time
 * the last read started */
static unsigned long reads(const char *prefix, int fd, int n, int64_t *last)
{
	unsigned long total = 0;
	for (int i = 1; i <= n; i++) {
		unsigned long count = 0;
		*last = mono();
		long r = syscall(SYS_read, fd, &count, sizeof count);
		if (r != (long)sizeof count) {
			printf("%sread %d: ret=%ld errno=%s\n", prefix, i, r, errname(r == -1 ? errno : 0));
			failures++;
			continue;
		}
		printf("%sread %d: ret=%ld count=%lu\n", prefix, i, r, count);
		total += count;
	}
	return total;
}

static int raw;

/* rate checks irqs interrupts at hz against the clock: IE_ON happened
 * between before and after, the last read started at last and ended at
 * end. */
static void rate(const char *name, unsigned long irqs, int64_t before, int64_t after,
		 int64_t last, int64_t end, unsigned long hz)
{
	double period = 1e9 / hz;
	int64_t elapsed = end - before, last_read = last - after;
	int fast = irqs * period * 0.99 > elapsed;
	int slow = (irqs + 1) * period * 1.01 <= last_read;
	if (irqs > 0 && !fast && !slow) {
		printf("%s: ok\n", name);
	} else {
		printf("%s: FAIL %lu interrupts: %lld ns from IE_ON to the end of the last read, "
		       "%lld ns to its start; a period is %.0f ns\n",
		       name, irqs, (long long)elapsed, (long long)last_read, period);
		failures++;
	}
	if (raw)
		printf("%s_raw: irqs=%lu period_ns=%.0f elapsed_ns=%lld last_read_ns=%lld\n",
		       name, irqs, period, (long long)elapsed, (long long)last_read);
}

int main(int argc, char **argv)
{
	raw = argc > 1 && strcmp(argv[1], "raw") == 0;
	int fd = open("/dev/hpet", O_RDONLY);
	if (fd < 0) {
		printf("open: errno=%s\n", errname(errno));
		return 2;
	}
	xioctl("irqfreq_64", fd, HPET_IRQFREQ, 64);

	struct hpet_info info = {0};
	if (syscall(SYS_ioctl, fd, HPET_INFO, &info) == -1) {
		printf("info: errno=%s\n", errname(errno));
		failures++;
	} else {
		printf("info: ireqfreq=%lu flags=0x%lx hpet=%u timer=%u\n", info.hi_ireqfreq,
		       info.hi_flags, info.hi_hpet, info.hi_timer);
	}

	xioctl("epi", fd, HPET_EPI, 0);
	int64_t before = mono();
	xioctl("ie_on", fd, HPET_IE_ON, 0);
	int64_t after = mono(), last;
	unsigned long irqs = reads("", fd, 5, &last);
	rate("periodic_rate", irqs, before, after, last, mono(), 64);
	xioctl("ie_off", fd, HPET_IE_OFF, 0);

	xioctl("dpi", fd, HPET_DPI, 0);
	before = mono();
	xioctl("ie_on_oneshot", fd, HPET_IE_ON, 0);
	after = mono();
	irqs = reads("oneshot ", fd, 3, &last);
	rate("oneshot_rate", irqs, before, after, last, mono(), 64);
	xioctl("ie_off", fd, HPET_IE_OFF, 0);

	close(fd);
	if (failures) {
		printf("FAIL %d\n", failures);
		return 1;
	}
	printf("ok\n");
	return 0;
}
