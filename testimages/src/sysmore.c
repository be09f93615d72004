/*
 * sysmore: write-back, residency, positioned vector I/O, close_range,
 * fchdir, ids and scheduling policies, printed so that a run under emuckpt
 * can be compared with a native one (each call's result and errno).
 *
 * Usage: sysmore FILE    FILE is a regular file that holds "hello, world\n"
 *                        (under emuckpt, in the --root); /tmp must be a
 *                        writable directory.
 *
 * The sched_* calls are made with syscall(): musl answers them with
 * ENOSYS itself. Only calls whose answer does not depend on privilege are made, so the
 * output is the same as root and as another user.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>
#include "errname.h"

/* musl 1.2.3 has neither preadv2/pwritev2 nor the RWF_ flags. */
#ifndef RWF_HIPRI
#define RWF_HIPRI 1
#define RWF_DSYNC 2
#endif
static long preadv2(int fd, const struct iovec *v, int n, off_t off, int flags)
{
	return syscall(SYS_preadv2, fd, v, n, off, 0, flags);
}
static long pwritev2(int fd, const struct iovec *v, int n, off_t off, int flags)
{
	return syscall(SYS_pwritev2, fd, v, n, off, 0, flags);
}
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC 4
#endif

static void show(const char *what, long ret)
{
	if (ret < 0)
		printf("%s: -1 %s\n", what, errname(errno));
	else
		printf("%s: %ld\n", what, ret);
}

#define T(what, call) do { errno = 0; show(what, (long)(call)); } while (0)

int main(int argc, char **argv)
{
	if (argc != 2)
		return 2;
	int file = open(argv[1], O_RDONLY);
	int tmp = open("/tmp/sysmore.tmp", O_RDWR | O_CREAT | O_TRUNC, 0600);
	int wr = open("/tmp/sysmore.tmp", O_WRONLY);
	int null = open("/dev/null", O_RDWR);
	int p[2];
	if (file < 0 || tmp < 0 || wr < 0 || null < 0 || pipe(p))
		return 1;

	/* write-back */
	T("fsync file", fsync(file));
	T("fsync tmpfs", fsync(tmp));
	T("fdatasync tmpfs", fdatasync(tmp));
	T("fsync dir", syscall(SYS_fsync, open("/tmp", O_RDONLY | O_DIRECTORY)));
	T("fsync pipe", fsync(p[0]));
	T("fsync /dev/null", fsync(null));
	T("fsync bad", fsync(999));
	T("fdatasync pipe", fdatasync(p[1]));
	T("syncfs pipe", syscall(SYS_syncfs, p[0]));
	T("syncfs bad", syscall(SYS_syncfs, 999));
	sync();
	T("sync_file_range", syscall(SYS_sync_file_range, tmp, 0L, 0L, 2));
	T("sync_file_range flags", syscall(SYS_sync_file_range, tmp, 0L, 0L, 8));
	T("sync_file_range neg", syscall(SYS_sync_file_range, tmp, -1L, 0L, 2));
	T("sync_file_range pipe", syscall(SYS_sync_file_range, p[0], 0L, 0L, 2));
	T("readahead file", syscall(SYS_readahead, file, 0L, 4096L));
	T("readahead pipe", syscall(SYS_readahead, p[0], 0L, 4096L));
	T("readahead wronly", syscall(SYS_readahead, wr, 0L, 4096L));

	/* msync and mincore */
	long pg = sysconf(_SC_PAGESIZE);
	/* Four pages, then a hole of one page (before any other mapping can
	 * fill it), then a page. */
	char *m = mmap(0, 6 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED || munmap(m + 4 * pg, pg))
		return 1;
	unsigned char v1;
	T("mincore unmapped", mincore(m + 4 * pg, pg, &v1));
	T("msync unmapped", msync(m + 4 * pg, pg, MS_SYNC));
	T("msync over the hole", msync(m, 6 * pg, MS_SYNC));
	m[0] = 1;
	m[2 * pg] = 1;
	unsigned char vec[8] = {9, 9, 9, 9, 9, 9, 9, 9};
	T("mincore anon", mincore(m, 4 * pg, vec));
	printf("vec %d%d%d%d, byte past the vector: %d\n", vec[0], vec[1], vec[2], vec[3], vec[4]);
	char *fresh = mmap(0, 64 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	unsigned char fv[64];
	T("mincore fresh", mincore(fresh, 64 * pg, fv));
	int sum = 0;
	for (int i = 0; i < 64; i++)
		sum += fv[i];
	printf("fresh pages resident: %d\n", sum);
	T("mincore partial page", mincore(m, 1, vec));
	T("mincore unaligned", mincore(m + 1, pg, vec));
	T("mincore bad vec", mincore(m, pg, (unsigned char *)8));
	T("mincore zero", mincore(m, 0, vec));
	char *f = mmap(0, pg, PROT_READ, MAP_PRIVATE, file, 0);
	if (f == MAP_FAILED)
		return 1;
	T("read file page", f[0]);
	T("mincore file", mincore(f, pg, vec));
	printf("vec %d\n", vec[0]);
	T("msync", msync(m, 4 * pg, MS_SYNC));
	T("msync async", msync(m, pg, MS_ASYNC | MS_INVALIDATE));
	T("msync both", msync(m, pg, MS_ASYNC | MS_SYNC));
	T("msync flag", msync(m, pg, 8));
	T("msync unaligned", msync(m + 1, pg, MS_SYNC));
	T("msync zero", msync(m, 0, MS_SYNC));

	/* positioned vector I/O */
	char a[6] = "hello ", b[6] = "world\n";
	struct iovec w[2] = {{a, 6}, {b, 6}};
	T("pwritev", pwritev(tmp, w, 2, 4));
	T("offset after pwritev", lseek(tmp, 0, SEEK_CUR));
	char r1[8] = {0}, r2[16] = {0};
	struct iovec r[2] = {{r1, 7}, {r2, 15}};
	T("preadv", preadv(tmp, r, 2, 4));
	printf("got %s|%s", r1, r2);
	T("preadv at end", preadv(tmp, r, 2, 100));
	T("preadv neg", preadv(tmp, r, 2, -5));
	T("preadv pipe", preadv(p[0], r, 2, 0));
	T("preadv bad fd", preadv(999, r, 2, 0));
	T("pwritev rdonly", pwritev(file, w, 2, 0));
	T("preadv2 cur", preadv2(tmp, r, 1, -1, 0));
	T("offset after preadv2 cur", lseek(tmp, 0, SEEK_CUR));
	T("preadv2 hipri", preadv2(tmp, r, 1, 0, RWF_HIPRI));
	T("preadv2 unknown flag", preadv2(tmp, r, 1, 0, 0x10000));
	T("pwritev2 dsync", pwritev2(tmp, w, 1, 20, RWF_DSYNC));
	T("preadv2 neg", preadv2(tmp, r, 1, -2, 0));

	/* close_range and fchdir */
	int d1 = dup(null), d2 = dup(null), d3 = dup(null);
	T("close_range cloexec", syscall(SYS_close_range, d2, d3, CLOSE_RANGE_CLOEXEC));
	T("flags of d3", fcntl(d3, F_GETFD));
	T("close_range", syscall(SYS_close_range, d1, ~0U, 0));
	T("d1 closed", fcntl(d1, F_GETFD));
	T("d3 closed", fcntl(d3, F_GETFD));
	T("close_range bad flags", syscall(SYS_close_range, 50, 60, 1 << 8));
	T("close_range first > last", syscall(SYS_close_range, 60, 50, 0));
	int dir = open("/tmp", O_RDONLY | O_DIRECTORY);
	T("fchdir", fchdir(dir));
	char cwd[64];
	printf("cwd %s\n", getcwd(cwd, sizeof cwd));
	T("fchdir file", fchdir(file));
	T("fchdir bad", fchdir(999));
	T("open relative", open("sysmore.tmp", O_RDONLY) >= 0);

	/* ids */
	uid_t ru, eu, su;
	gid_t rg, eg, sg;
	T("getresuid", getresuid(&ru, &eu, &su));
	printf("uids same as getuid/geteuid: %d\n", ru == getuid() && eu == geteuid() && su == geteuid());
	T("getresgid", getresgid(&rg, &eg, &sg));
	printf("gids same as getgid/getegid: %d\n", rg == getgid() && eg == getegid() && sg == getegid());
	T("getresuid fault", syscall(SYS_getresuid, 8, &eu, &su));
	T("setuid self", setuid(getuid()));
	T("setgid self", setgid(getgid()));
	T("setuid -1", syscall(SYS_setuid, -1));
	T("setreuid keep", setreuid(-1, -1));
	T("setresuid keep", setresuid(-1, -1, -1));
	T("setresgid self", setresgid(rg, eg, sg));
	T("setregid self", setregid(rg, eg));

	/* scheduling */
	T("sched_getscheduler", syscall(SYS_sched_getscheduler, 0));
	T("sched_getscheduler neg", syscall(SYS_sched_getscheduler, -1));
	T("sched_getscheduler none", syscall(SYS_sched_getscheduler, 99999));
	struct sched_param sp = {.sched_priority = 7};
	T("sched_getparam", syscall(SYS_sched_getparam, 0, &sp));
	printf("priority %d\n", sp.sched_priority);
	T("sched_getparam null", syscall(SYS_sched_getparam, 0, 0));
	T("max fifo", syscall(SYS_sched_get_priority_max, SCHED_FIFO));
	T("min rr", syscall(SYS_sched_get_priority_min, SCHED_RR));
	T("max other", syscall(SYS_sched_get_priority_max, SCHED_OTHER));
	T("max bad", syscall(SYS_sched_get_priority_max, 42));
	sp.sched_priority = 0;
	T("setscheduler other", syscall(SYS_sched_setscheduler, 0, SCHED_OTHER, &sp));
	T("setparam 0", syscall(SYS_sched_setparam, 0, &sp));
	sp.sched_priority = 5;
	T("setscheduler other prio 5", syscall(SYS_sched_setscheduler, 0, SCHED_OTHER, &sp));
	T("setparam 5", syscall(SYS_sched_setparam, 0, &sp));
	sp.sched_priority = 0;
	T("setscheduler fifo prio 0", syscall(SYS_sched_setscheduler, 0, SCHED_FIFO, &sp));
	T("setscheduler bad policy", syscall(SYS_sched_setscheduler, 0, 42, &sp));
	T("setscheduler null", syscall(SYS_sched_setscheduler, 0, SCHED_OTHER, 0));
	unlink("/tmp/sysmore.tmp");
	return 0;
}
