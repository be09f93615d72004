/*
 * bsr_errno [NAME] - the system-call ABI of /dev/NAME (default bsr8_0), a
 * Barrier Synchronization Register: Linux's bsr driver has only open, mmap
 * and noop_llseek.
 *
 * Runs only inside emuckpt.  All calls go through syscall(2).  Each prints
 *     NAME: ret=R errno=E
 * where R is 0 for success (any non-error return) or -1, and E is the errno
 * name, or 0 on success.  Every line has its expected result baked in; a
 * mismatch also prints "FAIL NAME: want ..." and the program exits 1.  The
 * last line is "ok" when everything matched.  A setup failure exits 2.
 *
 * The mmap lengths follow the register's bsr_length (read from sysfs): a
 * register shorter than a page may be mapped only as one page, a longer
 * one up to bsr_length.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <termios.h>
#include <unistd.h>

#include "errname.h"

#define PG 4096ul

static int failures;

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

#define CALL(name, want, expr) (errno = 0, report((name), (long)(expr), (want)))

static long sys_mmap(size_t l, long prot, long fl, long fd, long off)
{
	return syscall(SYS_mmap, 0, l, prot, fl, fd, off);
}

static long sysfs_attr(const char *name, const char *attr)
{
	char path[256], buf[64];
	snprintf(path, sizeof path, "/sys/class/bsr/%s/%s", name, attr);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	return strtol(buf, NULL, 10);
}

/* Maps len bytes and unmaps them again, reporting the mmap. */
static void try_map(const char *name, int want, size_t len, long prot, long flags, int fd, long off)
{
	long r = CALL(name, want, sys_mmap(len, prot, flags, fd, off));
	if (r != -1)
		syscall(SYS_munmap, r, len);
}

int main(int argc, char **argv)
{
	const char *name = argc > 1 ? argv[1] : "bsr8_0";
	char path[128];
	snprintf(path, sizeof path, "/dev/%s", name);
	long length = sysfs_attr(name, "bsr_length");
	if (length <= 0) {
		printf("%s: no /sys/class/bsr/%s/bsr_length\n", path, name);
		return 2;
	}
	/* The largest mapping allowed, and one page more. */
	size_t maxlen = length < (long)PG ? PG : ((size_t)length & ~(PG - 1));

	int fd = CALL("open_rdwr", 0, syscall(SYS_open, path, O_RDWR));
	if (fd < 0)
		return 2;

	struct stat st;
	CALL("fstat", 0, syscall(SYS_fstat, fd, &st));
	printf("fstat: type=%s major=%u\n", S_ISCHR(st.st_mode) ? "chr" : "other",
	       major(st.st_rdev));
	if (!S_ISCHR(st.st_mode) || major(st.st_rdev) != 241) {
		printf("FAIL fstat: want type=chr major=241\n");
		failures++;
	}

	char buf[16];
	CALL("read", EINVAL, syscall(SYS_read, fd, buf, sizeof buf));
	CALL("read_len0", EINVAL, syscall(SYS_read, fd, buf, 0));
	CALL("write", EINVAL, syscall(SYS_write, fd, buf, sizeof buf));
	CALL("write_len0", EINVAL, syscall(SYS_write, fd, buf, 0));
	CALL("pread", EINVAL, syscall(SYS_pread64, fd, buf, sizeof buf, 0));
	CALL("pwrite", EINVAL, syscall(SYS_pwrite64, fd, buf, sizeof buf, 0));
	CALL("lseek_set", 0, syscall(SYS_lseek, fd, 100, SEEK_SET));
	CALL("lseek_end_negative", 0, syscall(SYS_lseek, fd, -100, SEEK_END));
	CALL("lseek_bad_whence", EINVAL, syscall(SYS_lseek, fd, 0, 42));
	struct termios tio;
	CALL("ioctl_tcgets", ENOTTY, syscall(SYS_ioctl, fd, TCGETS, &tio));

	try_map("mmap_one_page", 0, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	try_map("mmap_len_8", 0, 8, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	try_map("mmap_max_length", 0, maxlen, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	try_map("mmap_beyond_length", EINVAL, maxlen + PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	try_map("mmap_offset_page", EINVAL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, PG);
	try_map("mmap_private", 0, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	try_map("mmap_read_only", 0, PG, PROT_READ, MAP_SHARED, fd, 0);

	int ro = CALL("open_rdonly", 0, syscall(SYS_open, path, O_RDONLY));
	try_map("mmap_rdonly_shared_write", EACCES, PG, PROT_READ | PROT_WRITE, MAP_SHARED, ro, 0);
	/* Linux would give a private copy of the page; emuckpt never copies
	 * device memory, so it refuses write access through a read-only fd. */
	try_map("mmap_rdonly_private_write", EACCES, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, ro, 0);
	long m = CALL("mmap_rdonly_shared_read", 0, sys_mmap(PG, PROT_READ, MAP_SHARED, ro, 0));
	if (m != -1) {
		CALL("mprotect_rdonly_shared_to_write", EACCES,
		     syscall(SYS_mprotect, m, PG, PROT_READ | PROT_WRITE));
		CALL("munmap", 0, syscall(SYS_munmap, m, PG));
	}
	CALL("read_rdonly", EINVAL, syscall(SYS_read, ro, buf, sizeof buf));
	CALL("write_rdonly", EBADF, syscall(SYS_write, ro, buf, sizeof buf));

	int wo = CALL("open_wronly", 0, syscall(SYS_open, path, O_WRONLY));
	try_map("mmap_wronly", EACCES, PG, PROT_WRITE, MAP_SHARED, wo, 0);
	CALL("read_wronly", EBADF, syscall(SYS_read, wo, buf, sizeof buf));

	CALL("open_missing", ENOENT, syscall(SYS_open, "/dev/bsr8_99", O_RDWR));

	CALL("close", 0, syscall(SYS_close, fd));
	if (failures) {
		printf("FAIL %d\n", failures);
		return 1;
	}
	printf("ok\n");
	return 0;
}
