/*
 * tmpfs - namespace and file calls on a tmpfs, compared with Linux.
 *
 *   tmpfs DIR [SMALLDIR]
 *
 * DIR is an empty tmpfs directory (/tmp under emuckpt, a fresh tmpfs
 * natively); SMALLDIR, if given, an empty tmpfs of exactly 64 KiB for the
 * ENOSPC check. Each call prints
 *     NAME: ret=R errno=E
 * with R the return value (a byte count, size, link count, or 0/-1) and
 * E the errno name; every line is checked against what Linux's tmpfs
 * does and a mismatch prints "FAIL ..." and makes the exit status 1. No
 * inode numbers or times are printed, so the output of a native run and
 * one under emuckpt are identical. The last line is "ok".
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "errname.h"

/* musl's headers lack some of the kernel's constants. */
#ifndef TMPFS_MAGIC
#define TMPFS_MAGIC 0x01021994
#endif
#ifndef FALLOC_FL_KEEP_SIZE
#define FALLOC_FL_KEEP_SIZE 0x01
#endif
#ifndef FALLOC_FL_PUNCH_HOLE
#define FALLOC_FL_PUNCH_HOLE 0x02
#endif
#ifndef FALLOC_FL_ZERO_RANGE
#define FALLOC_FL_ZERO_RANGE 0x10
#endif
#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE 1
#define RENAME_EXCHANGE 2
#endif

static int failures;
static char path_buf[4][512];

/* P(i, name) is DIR/name in one of four buffers. */
static const char *dir;
static const char *P(int i, const char *name)
{
	snprintf(path_buf[i], sizeof path_buf[i], "%s/%s", dir, name);
	return path_buf[i];
}

static long report(const char *name, long r, long want_ret, int want_errno)
{
	int e = r == -1 ? errno : 0;
	printf("%s: ret=%ld errno=%s\n", name, r, errname(e));
	int good = want_errno ? (r == -1 && e == want_errno) : (r != -1 && (want_ret < 0 || r == want_ret));
	if (!good) {
		printf("FAIL %s: want ret=%ld errno=%s\n", name, want_ret, errname(want_errno));
		failures++;
	}
	return r;
}

static void expect(const char *name, int cond)
{
	if (!cond) {
		printf("FAIL %s\n", name);
		failures++;
	}
}

static long renameat2_(const char *a, const char *b, unsigned flags)
{
	return syscall(SYS_renameat2, AT_FDCWD, a, AT_FDCWD, b, flags);
}

static int cmpstr(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* listing prints the sorted names in DIR/sub (Linux's order is not sorted). */
static void listing(const char *d)
{
	DIR *dp = opendir(d);
	if (!dp) {
		report("opendir", -1, 0, 0);
		return;
	}
	char *names[64];
	int n = 0;
	struct dirent *e;
	while ((e = readdir(dp)) && n < 64)
		names[n++] = strdup(e->d_name);
	closedir(dp);
	qsort(names, n, sizeof names[0], cmpstr);
	printf("listing:");
	for (int i = 0; i < n; i++) {
		printf(" %s", names[i]);
		free(names[i]);
	}
	printf("\n");
}

static long size_of(const char *p)
{
	struct stat st;
	if (stat(p, &st) < 0)
		return -1;
	return st.st_size;
}

static long nlink_of(const char *p)
{
	struct stat st;
	if (lstat(p, &st) < 0)
		return -1;
	return st.st_nlink;
}

static void readback(const char *name, const char *p, const char *want)
{
	char buf[64] = {0};
	int fd = open(p, O_RDONLY);
	long n = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
	if (fd >= 0)
		close(fd);
	report(name, n, strlen(want), 0);
	expect(name, n >= 0 && strcmp(buf, want) == 0);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: tmpfs DIR [SMALLDIR]\n");
		return 2;
	}
	dir = argv[1];
	struct stat st;
	char buf[64];

	/* create, O_EXCL, read and write */
	int fd = report("open_creat_excl", open(P(0, "a"), O_CREAT | O_EXCL | O_RDWR, 0600), -1, 0);
	report("open_excl_again", open(P(0, "a"), O_CREAT | O_EXCL | O_RDWR, 0600), 0, EEXIST);
	report("write", write(fd, "0123456789", 10), 10, 0);
	report("fstat_size", fstat(fd, &st) ? -1 : st.st_size, 10, 0);
	report("fstat_mode", fstat(fd, &st) ? -1 : (long)(st.st_mode & 07777), 0600, 0);
	report("fstat_isreg", fstat(fd, &st) ? -1 : S_ISREG(st.st_mode), 1, 0);
	report("pread", pread(fd, buf, 4, 3), 4, 0);
	expect("pread_data", memcmp(buf, "3456", 4) == 0);
	report("lseek_end", lseek(fd, 0, SEEK_END), 10, 0);
	report("ftruncate_grow", ftruncate(fd, 8192), 0, 0);
	report("size_after_grow", size_of(P(0, "a")), 8192, 0);
	report("pread_hole", pread(fd, buf, 8, 5000), 8, 0);
	expect("hole_zero", memcmp(buf, "\0\0\0\0\0\0\0\0", 8) == 0);
	report("ftruncate_shrink", ftruncate(fd, 5), 0, 0);
	report("truncate_path", truncate(P(0, "a"), 6), 0, 0);
	report("size_after_truncate", size_of(P(0, "a")), 6, 0);
	report("ftruncate_negative", ftruncate(fd, -1), 0, EINVAL);
	int ro = open(P(0, "a"), O_RDONLY);
	report("ftruncate_rdonly", ftruncate(ro, 0), 0, EINVAL);
	report("write_rdonly", write(ro, "x", 1), 0, EBADF);
	close(ro);
	close(fd);
	report("creat", fd = creat(P(0, "c"), 0644), -1, 0);
	report("creat_write", write(fd, "cc", 2), 2, 0);
	close(fd);
	report("append_open", fd = open(P(0, "c"), O_WRONLY | O_APPEND), -1, 0);
	report("append_write", write(fd, "dd", 2), 2, 0);
	close(fd);
	readback("append_read", P(0, "c"), "ccdd");
	report("open_trunc", fd = open(P(0, "c"), O_WRONLY | O_TRUNC), -1, 0);
	close(fd);
	report("size_after_o_trunc", size_of(P(0, "c")), 0, 0);

	/* directories */
	report("mkdir", mkdir(P(0, "d"), 0700), 0, 0);
	report("mkdir_again", mkdir(P(0, "d"), 0700), 0, EEXIST);
	report("mkdir_missing_parent", mkdir(P(0, "nope/x"), 0700), 0, ENOENT);
	report("mkdir_under_file", mkdir(P(0, "a/x"), 0700), 0, ENOTDIR);
	report("dir_nlink", nlink_of(P(0, "d")), 2, 0);
	report("mkdir_sub", mkdir(P(0, "d/sub"), 0755), 0, 0);
	report("dir_nlink_with_sub", nlink_of(P(0, "d")), 3, 0);
	report("rmdir_nonempty", rmdir(P(0, "d")), 0, ENOTEMPTY);
	report("unlink_dir", unlink(P(0, "d")), 0, EISDIR);
	report("rmdir_file", rmdir(P(0, "a")), 0, ENOTDIR);
	report("rmdir_dot", rmdir(P(0, "d/.")), 0, EINVAL);
	report("unlink_missing", unlink(P(0, "missing")), 0, ENOENT);
	report("rename_into_self", rename(P(0, "d"), P(1, "d/sub/x")), 0, EINVAL);
	report("rename_file_over_dir", rename(P(0, "a"), P(1, "d")), 0, EISDIR);
	report("rename_dir_over_file", rename(P(0, "d"), P(1, "a")), 0, ENOTDIR);
	report("rmdir_sub", rmdir(P(0, "d/sub")), 0, 0);

	/* rename and renameat2 */
	report("rename", rename(P(0, "c"), P(1, "d/c")), 0, 0);
	report("rename_gone", access(P(0, "c"), F_OK), 0, ENOENT);
	fd = open(P(0, "b"), O_CREAT | O_WRONLY, 0600);
	report("write_b", write(fd, "bee", 3), 3, 0);
	close(fd);
	report("noreplace_existing", renameat2_(P(0, "a"), P(1, "b"), RENAME_NOREPLACE), 0, EEXIST);
	report("exchange", renameat2_(P(0, "a"), P(1, "b"), RENAME_EXCHANGE), 0, 0);
	readback("exchanged_a", P(0, "a"), "bee");
	report("exchange_missing", renameat2_(P(0, "a"), P(1, "zz"), RENAME_EXCHANGE), 0, ENOENT);
	report("exchange_noreplace", renameat2_(P(0, "a"), P(1, "b"), RENAME_EXCHANGE | RENAME_NOREPLACE), 0, EINVAL);
	report("rename_replace", rename(P(0, "b"), P(1, "a")), 0, 0);
	report("size_replaced", size_of(P(0, "a")), 6, 0);

	/* hard and symbolic links */
	report("link", link(P(0, "a"), P(1, "h")), 0, 0);
	report("nlink_2", nlink_of(P(0, "a")), 2, 0);
	report("link_existing", link(P(0, "a"), P(1, "h")), 0, EEXIST);
	report("link_dir", link(P(0, "d"), P(1, "dl")), 0, EPERM);
	report("unlink_h", unlink(P(0, "h")), 0, 0);
	report("nlink_1", nlink_of(P(0, "a")), 1, 0);
	report("symlink", symlink("d/c", P(0, "s")), 0, 0);
	report("symlink_existing", symlink("x", P(0, "s")), 0, EEXIST);
	long n = readlink(P(0, "s"), buf, sizeof buf);
	report("readlink", n, 3, 0);
	expect("readlink_target", n == 3 && memcmp(buf, "d/c", 3) == 0);
	report("lstat_symlink_size", lstat(P(0, "s"), &st) ? -1 : st.st_size, 3, 0);
	report("open_nofollow", open(P(0, "s"), O_RDONLY | O_NOFOLLOW), 0, ELOOP);
	report("readlink_file", readlink(P(0, "a"), buf, sizeof buf), 0, EINVAL);

	/* unlinked while open */
	fd = open(P(0, "u"), O_CREAT | O_RDWR, 0600);
	report("write_u", write(fd, "unlinked", 8), 8, 0);
	report("unlink_open", unlink(P(0, "u")), 0, 0);
	report("stat_unlinked", stat(P(0, "u"), &st), 0, ENOENT);
	report("fstat_nlink_0", fstat(fd, &st) ? -1 : (long)st.st_nlink, 0, 0);
	report("pread_unlinked", pread(fd, buf, 8, 0), 8, 0);
	expect("unlinked_data", memcmp(buf, "unlinked", 8) == 0);
	close(fd);

	/* O_TMPFILE and linkat */
	fd = report("o_tmpfile", open(dir, O_TMPFILE | O_RDWR, 0600), -1, 0);
	report("tmpfile_write", write(fd, "tmp", 3), 3, 0);
	report("tmpfile_nlink", fstat(fd, &st) ? -1 : (long)st.st_nlink, 0, 0);
	report("linkat_empty_path", linkat(fd, "", AT_FDCWD, P(0, "t"), AT_EMPTY_PATH), 0, 0);
	close(fd);
	readback("tmpfile_named", P(0, "t"), "tmp");
	fd = open(dir, O_TMPFILE | O_RDWR | O_EXCL, 0600);
	report("linkat_excl", linkat(fd, "", AT_FDCWD, P(0, "t2"), AT_EMPTY_PATH), 0, ENOENT);
	close(fd);
	report("o_tmpfile_rdonly", open(dir, O_TMPFILE | O_RDONLY, 0600), 0, EINVAL);

	/* a private mapping sees the file; its writes stay private */
	fd = open(P(0, "a"), O_RDWR);
	char *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	report("mmap_private", m == MAP_FAILED ? -1 : 0, 0, 0);
	if (m != MAP_FAILED) {
		expect("mmap_private_data", memcmp(m, "012", 3) == 0);
		m[0] = 'X';
		report("pread_after_private_write", pread(fd, buf, 1, 0), 1, 0);
		expect("private_write_not_in_file", buf[0] == '0');
		munmap(m, 4096);
	}
	close(fd);

	/* a shared mapping is the file: writes go both ways */
	fd = open(P(0, "shm"), O_CREAT | O_RDWR, 0600);
	report("shm_ftruncate", ftruncate(fd, 8192), 0, 0);
	char *sm = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	report("mmap_shared", sm == MAP_FAILED ? -1 : 0, 0, 0);
	if (sm != MAP_FAILED) {
		memcpy(sm + 4096, "via-map", 7);
		report("pread_sees_map", pread(fd, buf, 7, 4096), 7, 0);
		expect("pread_sees_map_data", memcmp(buf, "via-map", 7) == 0);
		report("pwrite_shm", pwrite(fd, "via-write", 9, 10), 9, 0);
		expect("map_sees_write", memcmp(sm + 10, "via-write", 9) == 0);
		report("shm_blocks", fstat(fd, &st) ? -1 : st.st_blocks, 16, 0);
		munmap(sm, 8192);
	}
	int rofd = open(P(0, "shm"), O_RDONLY);
	sm = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, rofd, 0);
	report("mmap_shared_rw_rdonly_fd", sm == MAP_FAILED ? -1 : 0, 0, EACCES);
	sm = mmap(NULL, 4096, PROT_READ, MAP_SHARED, rofd, 0);
	report("mmap_shared_ro", sm == MAP_FAILED ? -1 : 0, 0, 0);
	report("mprotect_write_ro_fd", mprotect(sm, 4096, PROT_READ | PROT_WRITE), 0, EACCES);
	munmap(sm, 4096);
	close(rofd);
	close(fd);

	/* chmod, chown, utimensat */
	report("chmod", chmod(P(0, "a"), 0640), 0, 0);
	report("chmod_mode", stat(P(0, "a"), &st) ? -1 : (long)(st.st_mode & 07777), 0640, 0);
	fd = open(P(0, "a"), O_RDONLY);
	report("fchmod", fchmod(fd, 0604), 0, 0);
	report("fchmod_mode", fstat(fd, &st) ? -1 : (long)(st.st_mode & 07777), 0604, 0);
	report("fchown_same", fchown(fd, -1, getgid()), 0, 0);
	if (geteuid() == 0) {
		report("chown_root", chown(P(0, "a"), 1234, 5678), 0, 0);
		report("chown_uid", stat(P(0, "a"), &st) ? -1 : (long)st.st_uid, 1234, 0);
		report("lchown_symlink", lchown(P(0, "s"), 4321, -1), 0, 0);
		report("lchown_link_uid", lstat(P(0, "s"), &st) ? -1 : (long)st.st_uid, 4321, 0);
		report("lchown_target_kept", stat(P(0, "s"), &st) ? -1 : (long)st.st_uid, (long)getuid(), 0);
	}
	struct timespec ts[2] = {{1000, 5}, {2000, 6}};
	report("utimensat", utimensat(AT_FDCWD, P(0, "a"), ts, 0), 0, 0);
	report("utimensat_mtime", stat(P(0, "a"), &st) ? -1 : (long)st.st_mtim.tv_sec, 2000, 0);
	report("utimensat_atime_ns", (long)st.st_atim.tv_nsec, 5, 0);
	ts[0].tv_nsec = UTIME_OMIT;
	ts[1].tv_sec = 3000;
	report("utimensat_omit", utimensat(AT_FDCWD, P(0, "a"), ts, 0), 0, 0);
	report("omit_atime_kept", stat(P(0, "a"), &st) ? -1 : (long)st.st_atim.tv_sec, 1000, 0);
	report("omit_mtime_set", (long)st.st_mtim.tv_sec, 3000, 0);
	ts[1].tv_nsec = 1000000000;
	report("utimensat_bad_nsec", utimensat(AT_FDCWD, P(0, "a"), ts, 0), 0, EINVAL);
	report("futimens_now", futimens(fd, NULL), 0, 0);
	report("futimens_now_recent", fstat(fd, &st) ? -1 : (long)(st.st_mtim.tv_sec > 3000), 1, 0);
	report("utimensat_missing", utimensat(AT_FDCWD, P(0, "missing"), NULL, 0), 0, ENOENT);
	close(fd);

	/* fallocate: mode 0 and KEEP_SIZE allocate, PUNCH_HOLE frees */
	fd = open(P(0, "fa"), O_CREAT | O_RDWR, 0600);
	report("fallocate", fallocate(fd, 0, 0, 8192), 0, 0);
	report("fallocate_size", fstat(fd, &st) ? -1 : st.st_size, 8192, 0);
	report("fallocate_blocks", fstat(fd, &st) ? -1 : st.st_blocks, 16, 0);
	report("fallocate_keep_size", fallocate(fd, FALLOC_FL_KEEP_SIZE, 8192, 4096), 0, 0);
	report("keep_size_size", fstat(fd, &st) ? -1 : st.st_size, 8192, 0);
	report("keep_size_blocks", fstat(fd, &st) ? -1 : st.st_blocks, 24, 0);
	report("pwrite_fa", pwrite(fd, "abcdef", 6, 4094), 6, 0);
	report("punch_hole", fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 4096, 4096), 0, 0);
	report("punch_blocks", fstat(fd, &st) ? -1 : st.st_blocks, 16, 0);
	report("pread_punched", pread(fd, buf, 6, 4094), 6, 0);
	expect("punched_data", memcmp(buf, "ab\0\0\0\0", 6) == 0);
	report("punch_no_keep_size", fallocate(fd, FALLOC_FL_PUNCH_HOLE, 0, 4096), 0, EOPNOTSUPP);
	report("zero_range", fallocate(fd, FALLOC_FL_ZERO_RANGE, 0, 4096), 0, EOPNOTSUPP);
	report("fallocate_len_0", fallocate(fd, 0, 0, 0), 0, EINVAL);
	report("fallocate_neg_off", fallocate(fd, 0, -1, 10), 0, EINVAL);
	close(fd);
	fd = open(P(0, "fa"), O_RDONLY);
	report("fallocate_rdonly", fallocate(fd, 0, 0, 10), 0, EBADF);
	close(fd);

	/* statfs */
	struct statfs sf;
	report("statfs", statfs(dir, &sf), 0, 0);
	report("statfs_type", (long)sf.f_type, TMPFS_MAGIC, 0);
	report("statfs_bsize", (long)sf.f_bsize, 4096, 0);
	fd = open(P(0, "fa"), O_RDONLY);
	report("fstatfs_type", fstatfs(fd, &sf) ? -1 : (long)sf.f_type, TMPFS_MAGIC, 0);
	close(fd);

	/* memfd_create and seals */
	fd = report("memfd_create", memfd_create("test", MFD_CLOEXEC | MFD_ALLOW_SEALING), -1, 0);
	report("memfd_cloexec", fcntl(fd, F_GETFD), FD_CLOEXEC, 0);
	report("memfd_seals", fcntl(fd, F_GET_SEALS), 0, 0);
	report("memfd_write", write(fd, "memfd", 5), 5, 0);
	report("memfd_nlink", fstat(fd, &st) ? -1 : (long)st.st_nlink, 0, 0);
	report("memfd_ftruncate", ftruncate(fd, 4096), 0, 0);
	char *mm = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	report("memfd_mmap", mm == MAP_FAILED ? -1 : 0, 0, 0);
	report("seal_write_mapped", fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE), 0, EBUSY);
	if (mm != MAP_FAILED)
		munmap(mm, 4096);
	report("seal_shrink_grow", fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0, 0);
	report("sealed_shrink", ftruncate(fd, 100), 0, EPERM);
	report("sealed_grow", ftruncate(fd, 8192), 0, EPERM);
	report("sealed_write_past_end", pwrite(fd, "x", 1, 4096), 0, EPERM);
	report("sealed_write_inside", pwrite(fd, "x", 1, 10), 1, 0);
	report("seal_future_write", fcntl(fd, F_ADD_SEALS, F_SEAL_FUTURE_WRITE), 0, 0);
	report("future_write_write", write(fd, "x", 1), 0, EPERM);
	mm = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	report("future_write_mmap_rw", mm == MAP_FAILED ? -1 : 0, 0, EPERM);
	mm = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
	report("future_write_mmap_ro", mm == MAP_FAILED ? -1 : 0, 0, 0);
	report("future_write_mprotect", mprotect(mm, 4096, PROT_READ | PROT_WRITE), 0, EACCES);
	munmap(mm, 4096);
	report("seal_seal", fcntl(fd, F_ADD_SEALS, F_SEAL_SEAL), 0, 0);
	report("seals_now", fcntl(fd, F_GET_SEALS), F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE, 0);
	report("seal_after_seal", fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE), 0, EPERM);
	close(fd);
	fd = memfd_create("nosealing", 0);
	report("memfd_no_sealing", fcntl(fd, F_GET_SEALS), F_SEAL_SEAL, 0);
	report("memfd_add_seal_refused", fcntl(fd, F_ADD_SEALS, F_SEAL_GROW), 0, EPERM);
	close(fd);
	report("memfd_bad_flags", memfd_create("x", 0x100), 0, EINVAL);
	fd = open(P(0, "a"), O_RDWR);
	report("tmpfs_file_seals", fcntl(fd, F_GET_SEALS), F_SEAL_SEAL, 0);
	close(fd);

	listing(dir);

	/* ENOSPC at the size limit (64 KiB = 16 pages) */
	if (argc > 2) {
		dir = argv[2];
		static char big[128 << 10];
		fd = open(P(0, "fill"), O_CREAT | O_WRONLY, 0600);
		report("write_fill", write(fd, big, sizeof big), 64 << 10, 0);
		report("write_full", write(fd, "x", 1), 0, ENOSPC);
		report("ftruncate_sparse", ftruncate(fd, 1 << 20), 0, 0);
		report("pwrite_hole_full", pwrite(fd, "x", 1, 512 << 10), 0, ENOSPC);
		report("ftruncate_free", ftruncate(fd, 4096), 0, 0);
		report("write_after_free", pwrite(fd, "y", 1, 8192), 1, 0);
		close(fd);
	}

	printf(failures ? "failures: %d\n" : "ok\n", failures);
	return failures != 0;
}
