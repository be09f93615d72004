/*
 * stat PATH - file metadata and identity system calls.
 *
 * PATH should be a regular file created by the test (so its size and
 * permission bits are known).  All calls are raw syscall(2)s, so each one
 * really reaches the kernel under its own number (musl would otherwise
 * turn fstatat into stat/lstat/fstat where it can).
 *
 * Output (only fields that are stable between runs and machines):
 *   stat: type=reg perm=0644 size=N          (same for lstat, fstat,
 *                                             newfstatat_cwd, newfstatat_dirfd,
 *                                             newfstatat_empty_path)
 *   same_inode: ok                           (all of the above agree on dev/ino)
 *   stat_root: type=dir  stat_dir: type=dir  stat_devnull: type=chr rdev=1:3
 *   NAME: ret=R errno=E                      for the error cases
 *   getcwd: /abs/path
 *   uname: sysname=Linux machine=x86_64
 *   ids: uid=U euid=U gid=G egid=G
 *   ids_match_auxv: ok
 *   ok
 * A failed check prints "FAIL ..." and the program exits 1; bad usage 2.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "errname.h"

static int failures;

static const char *type_name(mode_t m)
{
	switch (m & S_IFMT) {
	case S_IFREG: return "reg";
	case S_IFDIR: return "dir";
	case S_IFCHR: return "chr";
	case S_IFBLK: return "blk";
	case S_IFIFO: return "fifo";
	case S_IFLNK: return "lnk";
	case S_IFSOCK: return "sock";
	}
	return "unknown";
}

/* Print "NAME: ret=R errno=E" and compare with the expected errno (0 = success). */
static void report(const char *name, long r, int want)
{
	int e = r == -1 ? errno : 0;
	printf("%s: ret=%ld errno=%s\n", name, r == -1 ? -1L : r, errname(e));
	if (e != want) {
		printf("FAIL %s: want errno=%s\n", name, errname(want));
		failures++;
	}
}
#define CALL(name, want, ...) (errno = 0, report((name), syscall(__VA_ARGS__), (want)))

/* Print a stat result; returns 0 if the call succeeded. */
static int show(const char *name, long r, const struct stat *st)
{
	if (r != 0) {
		printf("%s: ret=-1 errno=%s\n", name, errname(errno));
		printf("FAIL %s\n", name);
		failures++;
		return -1;
	}
	printf("%s: type=%s perm=%04o size=%lld\n", name, type_name(st->st_mode),
	       (unsigned)(st->st_mode & 07777), (long long)st->st_size);
	return 0;
}

static void expect_type(const char *name, const char *path, mode_t want)
{
	struct stat st;
	if (syscall(SYS_stat, path, &st) != 0) {
		printf("%s: ret=-1 errno=%s\nFAIL %s\n", name, errname(errno), name);
		failures++;
		return;
	}
	printf("%s: type=%s", name, type_name(st.st_mode));
	if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode))
		printf(" rdev=%u:%u", major(st.st_rdev), minor(st.st_rdev));
	putchar('\n');
	if ((st.st_mode & S_IFMT) != want) {
		printf("FAIL %s: unexpected type\n", name);
		failures++;
	}
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: stat PATH\n");
		return 2;
	}
	const char *path = argv[1];

	/* dirname / basename of PATH */
	char *dir = strdup(path), *base;
	char *slash = strrchr(dir, '/');
	if (!slash) {
		base = strdup(path);
		strcpy(dir, ".");
	} else {
		base = strdup(slash + 1);
		if (slash == dir)
			dir[1] = 0;
		else
			*slash = 0;
	}

	struct stat st[6];
	int ok[6];
	ok[0] = show("stat", syscall(SYS_stat, path, &st[0]), &st[0]) == 0;
	ok[1] = show("lstat", syscall(SYS_lstat, path, &st[1]), &st[1]) == 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		printf("open: errno=%s\n", errname(errno));
		return 1;
	}
	ok[2] = show("fstat", syscall(SYS_fstat, fd, &st[2]), &st[2]) == 0;
	ok[3] = show("newfstatat_cwd", syscall(SYS_newfstatat, AT_FDCWD, path, &st[3], 0), &st[3]) == 0;
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ok[4] = show("newfstatat_dirfd", syscall(SYS_newfstatat, dfd, base, &st[4], 0), &st[4]) == 0;
	ok[5] = show("newfstatat_empty_path",
		     syscall(SYS_newfstatat, fd, "", &st[5], AT_EMPTY_PATH), &st[5]) == 0;
	int same = 1;
	for (int i = 0; i < 6; i++)
		if (!ok[i] || (i != 1 && (st[i].st_dev != st[0].st_dev || st[i].st_ino != st[0].st_ino)))
			same = 0;
	/* lstat differs only if PATH is a symlink. */
	if (!S_ISLNK(st[1].st_mode) && (st[1].st_dev != st[0].st_dev || st[1].st_ino != st[0].st_ino))
		same = 0;
	printf("same_inode: %s\n", same ? "ok" : "FAIL");
	if (!same)
		failures++;

	expect_type("stat_root", "/", S_IFDIR);
	expect_type("stat_dir", dir, S_IFDIR);
	expect_type("stat_devnull", "/dev/null", S_IFCHR);

	/* Error cases. */
	struct stat tmp;
	char buf[4096];
	CALL("stat_missing", ENOENT, SYS_stat, "/nonexistent-emuckpt/x", &tmp);
	CALL("stat_empty", ENOENT, SYS_stat, "", &tmp);
	snprintf(buf, sizeof buf, "%s/x", path);
	CALL("stat_notdir", ENOTDIR, SYS_stat, buf, &tmp);
	CALL("fstat_badfd", EBADF, SYS_fstat, 999, &tmp);
	CALL("newfstatat_badfd", EBADF, SYS_newfstatat, 999, "x", &tmp, 0);
	CALL("newfstatat_bad_flags", EINVAL, SYS_newfstatat, AT_FDCWD, path, &tmp, 0x1);
	CALL("newfstatat_relative_on_file_fd", ENOTDIR, SYS_newfstatat, fd, "x", &tmp, 0);

	CALL("access_r", 0, SYS_access, path, R_OK);
	CALL("access_f", 0, SYS_access, path, F_OK);
	CALL("access_missing", ENOENT, SYS_access, "/nonexistent-emuckpt/x", F_OK);
	CALL("access_bad_mode", EINVAL, SYS_access, path, 0x100);
	CALL("faccessat_r", 0, SYS_faccessat, AT_FDCWD, path, R_OK);
	CALL("faccessat_dirfd", 0, SYS_faccessat, dfd, base, R_OK);
	CALL("faccessat_missing", ENOENT, SYS_faccessat, AT_FDCWD, "/nonexistent-emuckpt/x", F_OK);

	/* getcwd (raw: returns the length including the NUL). */
	long n = syscall(SYS_getcwd, buf, sizeof buf);
	if (n <= 0 || buf[0] != '/') {
		printf("FAIL getcwd: ret=%ld errno=%s\n", n, errname(errno));
		failures++;
	} else {
		printf("getcwd: %s\n", buf);
		if ((size_t)n != strlen(buf) + 1) {
			printf("FAIL getcwd length %ld\n", n);
			failures++;
		}
	}
	CALL("getcwd_small_buf", ERANGE, SYS_getcwd, buf, 1);

	struct utsname u;
	if (syscall(SYS_uname, &u) != 0) {
		printf("FAIL uname: %s\n", errname(errno));
		failures++;
	} else {
		printf("uname: sysname=%s machine=%s\n", u.sysname, u.machine);
	}

	long uid = syscall(SYS_getuid), euid = syscall(SYS_geteuid);
	long gid = syscall(SYS_getgid), egid = syscall(SYS_getegid);
	printf("ids: uid=%ld euid=%ld gid=%ld egid=%ld\n", uid, euid, gid, egid);
	int idok = (unsigned long)uid == getauxval(AT_UID) && (unsigned long)euid == getauxval(AT_EUID) &&
		   (unsigned long)gid == getauxval(AT_GID) && (unsigned long)egid == getauxval(AT_EGID);
	printf("ids_match_auxv: %s\n", idok ? "ok" : "FAIL");
	if (!idok)
		failures++;

	close(dfd);
	close(fd);
	free(dir);
	free(base);
	if (failures) {
		printf("FAIL %d\n", failures);
		return 1;
	}
	printf("ok\n");
	return 0;
}
