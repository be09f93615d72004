/*
 * hpet_irq - interrupts from /dev/hpet, as Linux's samples/timers do it.
 *
 * Asks for 64 Hz (HPET_IRQFREQ), periodic mode (HPET_EPI), turns the
 * interrupt on (HPET_IE_ON) and read()s the interrupt count five times,
 * then does the same in one-shot mode (HPET_DPI: the driver re-arms the
 * timer after each interrupt) for three reads.  Each read blocks until the
 * next interrupt and returns an unsigned long: the interrupts since the
 * last read.  The elapsed CLOCK_MONOTONIC time must match the interrupts
 * counted at 64 Hz within 10%.
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

/* reads n times; returns the interrupts counted */
static unsigned long reads(const char *prefix, int fd, int n)
{
	unsigned long total = 0;
	for (int i = 1; i <= n; i++) {
		unsigned long count = 0;
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

static void rate(const char *name, unsigned long irqs, int64_t elapsed, unsigned long hz)
{
	/* the n-th interrupt comes n periods after IE_ON */
	double want = (double)irqs * 1e9 / hz;
	if (irqs > 0 && elapsed >= want * 0.9 && elapsed <= want * 1.1) {
		printf("%s: ok\n", name);
	} else {
		printf("%s: FAIL %lu interrupts in %lld ns, want %.0f ns\n", name, irqs, (long long)elapsed, want);
		failures++;
	}
}

int main(void)
{
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
	int64_t t0 = mono();
	xioctl("ie_on", fd, HPET_IE_ON, 0);
	unsigned long irqs = reads("", fd, 5);
	rate("periodic_rate", irqs, mono() - t0, 64);
	xioctl("ie_off", fd, HPET_IE_OFF, 0);

	xioctl("dpi", fd, HPET_DPI, 0);
	t0 = mono();
	xioctl("ie_on_oneshot", fd, HPET_IE_ON, 0);
	irqs = reads("oneshot ", fd, 3);
	rate("oneshot_rate", irqs, mono() - t0, 64);
	xioctl("ie_off", fd, HPET_IE_OFF, 0);

	close(fd);
	if (failures) {
		printf("FAIL %d\n", failures);
		return 1;
	}
	printf("ok\n");
	return 0;
}
