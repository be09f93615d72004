/*
 * sysmisc: process attributes and file-system information, printed so
 * that a run under emuckpt can be compared with a native one.
 *
 * Usage: sysmisc FILE    FILE is a regular file that holds "hello, world\n"
 *                        (under emuckpt, in the --root)
 *        sysmisc ckpt    set attributes, emuckpt_checkpoint(), print them:
 *                        the restored run must print the same
 *
 * The comparable output assumes that the native run and emuckpt's guest
 * have the same privilege (both root, or both not): setgroups,
 * setpriority to a lower nice value and large mlocks then agree.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <sys/utsname.h>
#include <unistd.h>
#include "emuckpt.h"

#ifndef MLOCK_ONFAULT
#define MLOCK_ONFAULT 1
#endif

/* musl 1.2.3 has no statx(): the Linux structure and flags. */
struct statx_ts {
	long long tv_sec;
	unsigned tv_nsec;
	int pad;
};
struct lx_statx {
	unsigned stx_mask, stx_blksize;
	unsigned long long stx_attributes;
	unsigned stx_nlink, stx_uid, stx_gid;
	unsigned short stx_mode, pad1;
	unsigned long long stx_ino, stx_size, stx_blocks, stx_attributes_mask;
	struct statx_ts stx_atime, stx_btime, stx_ctime, stx_mtime;
	unsigned stx_rdev_major, stx_rdev_minor, stx_dev_major, stx_dev_minor;
	unsigned long long spare[14];
};
#define STATX_SIZE 0x200U
#define STATX_BASIC_STATS 0x7ffU
#define AT_STATX_FORCE_SYNC 0x2000
#define AT_STATX_DONT_SYNC 0x4000

static long statx_(int dirfd, const char *path, int flags, unsigned mask, struct lx_statx *sx)
{
	return syscall(SYS_statx, dirfd, path, flags, mask, sx);
}

/* errname is the symbolic name of the errno values this program meets. */
static const char *errname(int e)
{
	switch (e) {
	case 0: return "0";
	case EPERM: return "EPERM";
	case ENOENT: return "ENOENT";
	case ESRCH: return "ESRCH";
	case EBADF: return "EBADF";
	case EAGAIN: return "EAGAIN";
	case ENOMEM: return "ENOMEM";
	case EACCES: return "EACCES";
	case EFAULT: return "EFAULT";
	case EXDEV: return "EXDEV";
	case EISDIR: return "EISDIR";
	case EINVAL: return "EINVAL";
	case ESPIPE: return "ESPIPE";
	case ENOSYS: return "ENOSYS";
	case EOVERFLOW: return "EOVERFLOW";
	}
	static char buf[32];
	snprintf(buf, sizeof buf, "errno %d", e);
	return buf;
}

static void res(const char *what, long r)
{
	if (r < 0)
		printf("%s: -1 %s\n", what, errname(errno));
	else
		printf("%s: %ld\n", what, r);
}

static void attributes(void)
{
	char name[16] = {0};
	int sig = -1;
	prctl(PR_GET_NAME, name);
	prctl(PR_GET_PDEATHSIG, &sig);
	mode_t m = umask(0);
	umask(m);
	errno = 0;
	int prio = getpriority(PRIO_PROCESS, 0);
	printf("name=%s pdeathsig=%d dumpable=%d umask=%03o nice=%d\n",
	       name, sig, prctl(PR_GET_DUMPABLE), m, prio);
}

static void identity(void)
{
	struct utsname u;
	uname(&u);
	printf("uname: %s %s version-prefix=%.22s domain=%s\n", u.sysname, u.machine, u.version, u.domainname);

	struct sysinfo si;
	res("sysinfo", sysinfo(&si));
	printf("sysinfo: mem_unit=%u totalram>0=%d freeram<=totalram=%d\n", si.mem_unit, si.totalram > 0, si.freeram <= si.totalram);

	int n = getgroups(0, NULL);
	gid_t g[256];
	res("getgroups(0)>=0", n >= 0 ? 0 : -1);
	if (n > 0)
		res("getgroups(n-1)", getgroups(n - 1, g));
	res("getgroups(-1)", getgroups(-1, g));
	gid_t set[2] = {7, 9};
	long r = setgroups(2, set);
	res("setgroups", r);
	if (r == 0) {
		int k = getgroups(256, g);
		printf("groups: %d %u %u\n", k, g[0], g[1]);
	}
	res("setgroups(huge)", setgroups(70000, set));

	char name[16];
	res("PR_SET_NAME", prctl(PR_SET_NAME, "a-name-longer-than-16"));
	prctl(PR_GET_NAME, name);
	printf("name: %s\n", name);
	res("PR_SET_PDEATHSIG", prctl(PR_SET_PDEATHSIG, 9));
	res("PR_SET_PDEATHSIG(65)", prctl(PR_SET_PDEATHSIG, 65));
	res("PR_GET_DUMPABLE", prctl(PR_GET_DUMPABLE));
	res("PR_SET_DUMPABLE(2)", prctl(PR_SET_DUMPABLE, 2));
	res("PR_SET_DUMPABLE(0)", prctl(PR_SET_DUMPABLE, 0));
	res("PR_GET_DUMPABLE", prctl(PR_GET_DUMPABLE));
	res("prctl(9999)", prctl(9999, 0, 0, 0, 0));

	umask(022);
	res("umask(07777)", umask(07777));
	res("umask(022)", umask(022));

	res("setpriority(5)", setpriority(PRIO_PROCESS, 0, 5));
	res("getpriority", getpriority(PRIO_PROCESS, 0));
	res("setpriority(3)", setpriority(PRIO_PROCESS, 0, 3));
	res("getpriority", getpriority(PRIO_PROCESS, 0));
	res("setpriority(bad which)", setpriority(7, 0, 1));
	res("getpriority(no such pid)", getpriority(PRIO_PROCESS, 999999));
}

static void locks(void)
{
	size_t page = 4096;
	char *p = mmap(NULL, 3 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	res("mlock", mlock(p + 10, page));
	res("munlock", munlock(p, 3 * page));
	res("mlock2(ONFAULT)", syscall(SYS_mlock2, p, page, MLOCK_ONFAULT));
	res("mlock2(bad flag)", syscall(SYS_mlock2, p, page, 2));
	munmap(p + page, page);
	res("mlock(hole)", mlock(p, 3 * page));
	res("munlock(hole)", munlock(p, 3 * page));
	res("mlock(0 bytes)", mlock(p, 0));
	res("mlock(length wraps when aligned)", mlock(p, (size_t)-11));
	res("mlock(end wraps)", mlock(p, (size_t)-16384));
	res("munlock(end wraps)", munlock(p, (size_t)-16384));
	res("mlockall(0)", mlockall(0));
	res("mlockall(ONFAULT alone)", mlockall(MCL_ONFAULT));
	res("munlockall", munlockall());
	munmap(p, 3 * page);
}

static void files(const char *file)
{
	struct statfs sf;
	res("statfs(/proc)", statfs("/proc", &sf));
	printf("  f_type=%#lx\n", (long)sf.f_type);
	res("statfs(/dev/null)", statfs("/dev/null", &sf));
	printf("  f_type=%#lx\n", (long)sf.f_type);
	res("statfs(/nonexistent)", statfs("/nonexistent", &sf));
	struct statfs host;
	res("statfs(FILE)", statfs(file, &host));
	int pfd[2];
	pipe(pfd);
	res("fstatfs(pipe)", fstatfs(pfd[0], &sf));
	printf("  f_type=%#lx\n", (long)sf.f_type);
	res("fstatfs(99)", fstatfs(99, &sf));
	int fd = open(file, O_RDONLY);
	res("fstatfs(FILE)", fstatfs(fd, &sf));
	printf("  same f_type as statfs: %d\n", sf.f_type == host.f_type);

	struct lx_statx sx;
	res("statx(/dev/null)", statx_(AT_FDCWD, "/dev/null", 0, STATX_BASIC_STATS, &sx));
	printf("  basic=%d chr=%d rdev=%u:%u\n", (sx.stx_mask & STATX_BASIC_STATS) == STATX_BASIC_STATS,
	       S_ISCHR(sx.stx_mode), sx.stx_rdev_major, sx.stx_rdev_minor);
	res("statx(FILE)", statx_(AT_FDCWD, file, 0, STATX_SIZE, &sx));
	printf("  size=%llu\n", (unsigned long long)sx.stx_size);
	res("statx(fd, \"\", AT_EMPTY_PATH)", statx_(fd, "", AT_EMPTY_PATH, STATX_SIZE, &sx));
	res("statx(both sync flags)", statx_(AT_FDCWD, file, AT_STATX_FORCE_SYNC | AT_STATX_DONT_SYNC, 0, &sx));
	res("statx(reserved mask)", statx_(AT_FDCWD, file, 0, 0x80000000u, &sx));

	char buf[64];
	off_t off = 7;
	res("sendfile(FILE->pipe)", sendfile(pfd[1], fd, NULL, 100));
	res("lseek", lseek(fd, 0, SEEK_CUR));
	res("sendfile(offset 7)", sendfile(pfd[1], fd, &off, 5));
	printf("  off=%ld\n", (long)off);
	long n = read(pfd[0], buf, sizeof buf);
	printf("  piped: %.*s|\n", (int)n, buf);
	res("sendfile(pipe in)", sendfile(pfd[1], pfd[0], NULL, 5));
	res("sendfile(to read end)", sendfile(pfd[0], fd, NULL, 5));
	res("sendfile(bad fd)", sendfile(pfd[1], 99, NULL, 5));
	int dir = open("/proc", O_RDONLY | O_DIRECTORY);
	res("sendfile(directory)", sendfile(pfd[1], dir, NULL, 5));
	off = -1;
	res("sendfile(negative offset)", sendfile(pfd[1], fd, &off, 5));

	int fd2 = open(file, O_RDONLY);
	res("copy_file_range(flags)", copy_file_range(fd, NULL, fd2, NULL, 5, 1));
	res("copy_file_range(bad fd)", copy_file_range(99, NULL, fd2, NULL, 5, 0));
	res("copy_file_range(to pipe)", copy_file_range(fd, NULL, pfd[1], NULL, 5, 0));
	res("copy_file_range(dir)", copy_file_range(dir, NULL, fd2, NULL, 5, 0));
	res("copy_file_range(read-only out)", copy_file_range(fd, NULL, fd2, NULL, 5, 0));

	printf("posix_fadvise: willneed=%s bad advice=%s pipe=%s badfd=%s neg len=%s\n",
	       errname(posix_fadvise(fd, 0, 0, POSIX_FADV_WILLNEED)), errname(posix_fadvise(fd, 0, 0, 99)), errname(posix_fadvise(pfd[0], 0, 0, 0)),
	       errname(posix_fadvise(99, 0, 0, 0)), errname(posix_fadvise(fd, 0, -1, 0)));
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	if (argc > 1 && strcmp(argv[1], "ckpt") == 0) {
		umask(027);
		prctl(PR_SET_NAME, "renamed");
		prctl(PR_SET_PDEATHSIG, 15);
		prctl(PR_SET_DUMPABLE, 0);
		setpriority(PRIO_PROCESS, 0, 7);
		char *p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		mlock(p, 4096);
		long r = emuckpt_checkpoint();
		printf("checkpoint: %ld\n", r);
		attributes();
		/* The lock survived: unlocking a locked page and then a hole. */
		res("munlock", munlock(p, 4096));
		return 0;
	}
	if (argc < 2) {
		fprintf(stderr, "usage: sysmisc FILE | ckpt\n");
		return 2;
	}
	attributes();
	identity();
	locks();
	files(argv[1]);
	return 0;
}
