/*
 * hpet_errno - every error of emuckpt's /dev/hpet (Linux's hpet.c ABI).
 *
 * All calls go through syscall(2), so the results are the kernel's.  Each
 * prints
 *     NAME: ret=R errno=E
 * (R is 0 for success, -1 for failure; E the errno name or 0) and is
 * compared with the expected result; a mismatch also prints
 * "FAIL NAME: want E".  The number of timers comes from the GCAP_ID
 * register through a mapping.  The last line is "ok" (exit 0) or
 * "FAIL <count>" (exit 1); without /dev/hpet: "open: errno=NAME", exit 2.
 *
 * Expected output with the default HPET (3 timers):
 *   open_rdwr: ret=-1 errno=EINVAL
 *   open_wronly: ret=-1 errno=EINVAL
 *   open_rdonly: ret=0 errno=0
 *   timers: 3
 *   open_timer_1: ret=0 errno=0
 *   open_timer_2: ret=0 errno=0
 *   open_all_timers_busy: ret=-1 errno=EBUSY
 *   close_timer_1: ret=0 errno=0
 *   reopen_after_close: ret=0 errno=0
 *   read_before_irqfreq: ret=-1 errno=EIO
 *   ie_on_before_irqfreq: ret=-1 errno=EIO
 *   irqfreq_0: ret=-1 errno=EINVAL
 *   irqfreq_65: ret=-1 errno=EACCES
 *   irqfreq_64: ret=0 errno=0
 *   read_n4: ret=-1 errno=EINVAL
 *   read_nonblock_ie_off: ret=-1 errno=EAGAIN
 *   ioctl_unknown: ret=-1 errno=EINVAL
 *   info_efault: ret=-1 errno=EFAULT
 *   ie_on: ret=0 errno=0
 *   read_nonblock_ie_on: ret=-1 errno=EAGAIN
 *   ie_on_twice: ret=-1 errno=EBUSY
 *   ie_off: ret=0 errno=0
 *   ie_off_twice: ret=0 errno=0
 *   info_oneshot_timer: timer=2 flags=0x0
 *   epi_oneshot_timer: ret=-1 errno=ENXIO
 *   dpi_oneshot_timer: ret=-1 errno=ENXIO
 *   epi: ret=0 errno=0
 *   dpi: ret=0 errno=0
 *   mmap_one_page: ret=0 errno=0
 *   mmap_two_pages: ret=-1 errno=EINVAL
 *   mmap_offset_4096: ret=-1 errno=EINVAL
 *   mmap_prot_write_shared: ret=-1 errno=EACCES
 *   mmap_prot_write_private: ret=-1 errno=EACCES
 *   write: ret=-1 errno=EBADF
 *   lseek: ret=-1 errno=ESPIPE
 *   ok
 *
 * Two lines differ from Linux run as root: irqfreq_65 succeeds there
 * (CAP_SYS_RESOURCE lifts the 64 Hz limit; emuckpt's guests never have
 * it), and Linux lets a MAP_PRIVATE mapping be PROT_WRITE (a private
 * copy-on-write view of registers, which emuckpt refuses).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "errname.h"

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

#define PG 4096ul
#define MAXFD 64

static int failures;

/* Prints a result and compares it with want (0: success, else an errno). */
static long report(const char *name, long r, int want)
{
	int e = r == -1 ? errno : 0;
	printf("%s: ret=%ld errno=%s\n", name, r == -1 ? -1L : 0L, errname(e));
	if (e != want) {
		printf("FAIL %s: want %s\n", name, errname(want));
		failures++;
	}
	return r;
}

static long sys_open(int flags) { return syscall(SYS_open, "/dev/hpet", flags); }
static long sys_ioctl(long fd, unsigned long req, unsigned long arg) { return syscall(SYS_ioctl, fd, req, arg); }
static long sys_mmap(size_t len, long prot, long flags, long fd, long off)
{
	return syscall(SYS_mmap, 0, len, prot, flags, fd, off);
}

int main(void)
{
	report("open_rdwr", sys_open(O_RDWR), EINVAL);
	report("open_wronly", sys_open(O_WRONLY), EINVAL);
	long fd = sys_open(O_RDONLY);
	if (fd < 0) {
		printf("open: errno=%s\n", errname(errno));
		return 2;
	}
	report("open_rdonly", 0, 0);

	long m = sys_mmap(PG, PROT_READ, MAP_SHARED, fd, 0);
	if (m == -1) {
		report("mmap_gcap", m, 0);
		printf("FAIL %d\n", failures);
		return 1;
	}
	uint64_t gcap = *(volatile uint64_t *)m;
	syscall(SYS_munmap, m, PG);
	int timers = (int)(gcap >> 8 & 0x1f) + 1;
	printf("timers: %d\n", timers);

	/* Each open holds a timer; one more than there are is EBUSY. */
	long fds[MAXFD] = {fd};
	int nfds = 1;
	char name[64];
	for (int i = 1; i < timers && nfds < MAXFD; i++) {
		snprintf(name, sizeof name, "open_timer_%d", i);
		long r = report(name, sys_open(O_RDONLY), 0);
		if (r >= 0)
			fds[nfds++] = r;
	}
	long r = report("open_all_timers_busy", sys_open(O_RDONLY), EBUSY);
	if (r >= 0)
		fds[nfds++] = r;
	if (nfds > 1) {
		report("close_timer_1", syscall(SYS_close, fds[1]), 0);
		fds[1] = report("reopen_after_close", sys_open(O_RDONLY), 0);
	}

	unsigned long buf[2];
	report("read_before_irqfreq", syscall(SYS_read, fd, buf, sizeof buf[0]), EIO);
	report("ie_on_before_irqfreq", sys_ioctl(fd, HPET_IE_ON, 0), EIO);
	report("irqfreq_0", sys_ioctl(fd, HPET_IRQFREQ, 0), EINVAL);
	report("irqfreq_65", sys_ioctl(fd, HPET_IRQFREQ, 65), EACCES);
	report("irqfreq_64", sys_ioctl(fd, HPET_IRQFREQ, 64), 0);
	report("read_n4", syscall(SYS_read, fd, buf, 4), EINVAL);
	long fl = syscall(SYS_fcntl, fd, F_GETFL);
	syscall(SYS_fcntl, fd, F_SETFL, fl | O_NONBLOCK);
	report("read_nonblock_ie_off", syscall(SYS_read, fd, buf, sizeof buf[0]), EAGAIN);
	report("ioctl_unknown", sys_ioctl(fd, _IO('h', 0x07), 0), EINVAL);
	report("info_efault", sys_ioctl(fd, HPET_INFO, 1), EFAULT);
	report("ie_on", sys_ioctl(fd, HPET_IE_ON, 0), 0);
	report("read_nonblock_ie_on", syscall(SYS_read, fd, buf, sizeof buf[0]), EAGAIN);
	syscall(SYS_fcntl, fd, F_SETFL, fl);
	report("ie_on_twice", sys_ioctl(fd, HPET_IE_ON, 0), EBUSY);
	report("ie_off", sys_ioctl(fd, HPET_IE_OFF, 0), 0);
	report("ie_off_twice", sys_ioctl(fd, HPET_IE_OFF, 0), 0);

	/* A timer without periodic capability: EPI and DPI are ENXIO. */
	int found = 0;
	for (int i = 0; i < nfds && !found; i++) {
		struct hpet_info info = {0};
		if (fds[i] < 0 || sys_ioctl(fds[i], HPET_INFO, (unsigned long)&info) == -1)
			continue;
		if (info.hi_flags & 0x10)
			continue;
		found = 1;
		printf("info_oneshot_timer: timer=%u flags=0x%lx\n", info.hi_timer, info.hi_flags);
		report("epi_oneshot_timer", sys_ioctl(fds[i], HPET_EPI, 0), ENXIO);
		report("dpi_oneshot_timer", sys_ioctl(fds[i], HPET_DPI, 0), ENXIO);
	}
	if (!found)
		printf("info_oneshot_timer: none (every timer is periodic-capable)\n");
	report("epi", sys_ioctl(fd, HPET_EPI, 0), 0);
	report("dpi", sys_ioctl(fd, HPET_DPI, 0), 0);

	m = report("mmap_one_page", sys_mmap(PG, PROT_READ, MAP_SHARED, fd, 0), 0);
	if (m != -1)
		syscall(SYS_munmap, m, PG);
	report("mmap_two_pages", sys_mmap(2 * PG, PROT_READ, MAP_SHARED, fd, 0), EINVAL);
	report("mmap_offset_4096", sys_mmap(PG, PROT_READ, MAP_SHARED, fd, PG), EINVAL);
	report("mmap_prot_write_shared", sys_mmap(PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), EACCES);
	report("mmap_prot_write_private", sys_mmap(PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0), EACCES);

	report("write", syscall(SYS_write, fd, buf, sizeof buf[0]), EBADF);
	report("lseek", syscall(SYS_lseek, fd, 0, SEEK_SET), ESPIPE);

	for (int i = 0; i < nfds; i++)
		if (fds[i] >= 0)
			syscall(SYS_close, fds[i]);
	if (failures) {
		printf("FAIL %d\n", failures);
		return 1;
	}
	printf("ok\n");
	return 0;
}
