/*
 * erofs: every system call that would modify a file system, made on a
 * read-only mount, as raw system calls (so each number is the one
 * tested). Run as `erofs DIR` where DIR is on a read-only mount and holds
 * a file `f`, an empty directory `d` and a symbolic link `l` -> f.
 * Prints `NAME: ret=R errno=E` per call, in Linux's order of checks:
 * a missing parent is ENOENT and an existing name EEXIST before EROFS;
 * unlink, rmdir and rename give EROFS before looking the name up.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "errname.h"

static void report(const char *name, long ret)
{
	printf("%s: ret=%ld errno=%s\n", name, ret, errname(ret < 0 ? errno : 0));
	errno = 0;
}

#define T(name, ...) report(name, syscall(__VA_ARGS__))

int main(int argc, char **argv)
{
	if (argc != 2 || chdir(argv[1]) != 0) {
		fprintf(stderr, "usage: erofs DIR (on a read-only mount)\n");
		return 2;
	}
	int fd = open("f", O_RDONLY);
	int pfd = open("f", O_PATH);
	int dfd = open("d", O_RDONLY | O_DIRECTORY);
	if (fd < 0 || pfd < 0 || dfd < 0) {
		fprintf(stderr, "erofs: DIR lacks f or d\n");
		return 2;
	}
	struct timespec ts[2] = {{1, 0}, {2, 0}};
	struct timespec omit[2] = {{0, UTIME_OMIT}, {0, UTIME_OMIT}};
	struct timespec bad[2] = {{0, 1000000000}, {0, 0}};

	T("mkdir", SYS_mkdir, "new", 0755);
	T("mkdir_existing", SYS_mkdir, "d", 0755);
	T("mkdir_existing_file", SYS_mkdir, "f", 0755);
	T("mkdir_missing_parent", SYS_mkdir, "missing/new", 0755);
	T("mkdir_parent_not_dir", SYS_mkdir, "f/new", 0755);
	T("mkdir_dot", SYS_mkdir, ".", 0755);
	T("mkdir_trailing_slash", SYS_mkdir, "new/", 0755);
	T("mkdirat", SYS_mkdirat, dfd, "new", 0755);
	T("mkdirat_bad_fd", SYS_mkdirat, 99, "new", 0755);

	T("rmdir", SYS_rmdir, "d");
	T("rmdir_missing", SYS_rmdir, "missing");
	T("rmdir_missing_parent", SYS_rmdir, "missing/x");
	T("rmdir_dot", SYS_rmdir, ".");
	T("rmdir_dotdot", SYS_rmdir, "..");
	T("rmdir_root", SYS_rmdir, "/");

	T("unlink", SYS_unlink, "f");
	T("unlink_missing", SYS_unlink, "missing");
	T("unlink_missing_parent", SYS_unlink, "missing/x");
	T("unlink_dir", SYS_unlink, "d");
	T("unlinkat", SYS_unlinkat, AT_FDCWD, "f", 0);
	T("unlinkat_removedir", SYS_unlinkat, AT_FDCWD, "d", AT_REMOVEDIR);
	T("unlinkat_bad_flags", SYS_unlinkat, AT_FDCWD, "f", 1);

	T("link", SYS_link, "f", "new");
	T("link_missing", SYS_link, "missing", "new");
	T("link_existing", SYS_link, "f", "d");
	T("link_missing_parent", SYS_link, "f", "missing/new");
	T("linkat", SYS_linkat, AT_FDCWD, "f", dfd, "new", 0);
	T("linkat_bad_flags", SYS_linkat, AT_FDCWD, "f", AT_FDCWD, "new", 1);

	T("symlink", SYS_symlink, "f", "new");
	T("symlink_existing", SYS_symlink, "f", "l");
	T("symlink_empty_target", SYS_symlink, "", "new");
	T("symlink_missing_parent", SYS_symlink, "f", "missing/new");
	T("symlinkat", SYS_symlinkat, "f", dfd, "new");

	T("rename", SYS_rename, "f", "g");
	T("rename_missing", SYS_rename, "missing", "g");
	T("rename_missing_parent", SYS_rename, "missing/x", "g");
	T("rename_dot", SYS_rename, ".", "g");
	T("renameat", SYS_renameat, AT_FDCWD, "f", dfd, "g");
	T("renameat2", SYS_renameat2, AT_FDCWD, "f", AT_FDCWD, "g", 0);
	T("renameat2_noreplace", SYS_renameat2, AT_FDCWD, "f", AT_FDCWD, "l", 1);
	T("renameat2_bad_flags", SYS_renameat2, AT_FDCWD, "f", AT_FDCWD, "g", 8);
	T("renameat2_exchange_noreplace", SYS_renameat2, AT_FDCWD, "f", AT_FDCWD, "g", 3);

	T("chmod", SYS_chmod, "f", 0600);
	T("chmod_missing", SYS_chmod, "missing", 0600);
	T("chmod_dir", SYS_chmod, "d", 0700);
	T("fchmod", SYS_fchmod, fd, 0600);
	T("fchmod_o_path", SYS_fchmod, pfd, 0600);
	T("fchmod_bad_fd", SYS_fchmod, 99, 0600);
	T("fchmodat", SYS_fchmodat, AT_FDCWD, "f", 0600);
	T("fchmodat_missing", SYS_fchmodat, AT_FDCWD, "missing", 0600);

	T("chown", SYS_chown, "f", 0, 0);
	T("chown_missing", SYS_chown, "missing", 0, 0);
	T("lchown", SYS_lchown, "l", 0, 0);
	T("fchown", SYS_fchown, fd, 0, 0);
	T("fchown_o_path", SYS_fchown, pfd, 0, 0);
	T("fchownat", SYS_fchownat, AT_FDCWD, "l", 0, 0, AT_SYMLINK_NOFOLLOW);
	T("fchownat_empty_path", SYS_fchownat, fd, "", 0, 0, AT_EMPTY_PATH);
	T("fchownat_bad_flags", SYS_fchownat, AT_FDCWD, "f", 0, 0, 1);

	T("utime", SYS_utime, "f", NULL);
	T("utime_missing", SYS_utime, "missing", NULL);
	T("utimes", SYS_utimes, "f", NULL);
	T("futimesat", SYS_futimesat, AT_FDCWD, "f", NULL);
	T("utimensat", SYS_utimensat, AT_FDCWD, "f", ts, 0);
	T("utimensat_now", SYS_utimensat, AT_FDCWD, "f", NULL, 0);
	T("utimensat_omit", SYS_utimensat, AT_FDCWD, "f", omit, 0);
	T("utimensat_bad_nsec", SYS_utimensat, AT_FDCWD, "f", bad, 0);
	T("utimensat_bad_flags", SYS_utimensat, AT_FDCWD, "f", ts, 1);
	T("utimensat_missing", SYS_utimensat, AT_FDCWD, "missing", ts, 0);
	T("utimensat_nofollow", SYS_utimensat, AT_FDCWD, "l", ts, AT_SYMLINK_NOFOLLOW);
	T("futimens", SYS_utimensat, fd, NULL, ts, 0);

	T("truncate", SYS_truncate, "f", 0);
	T("truncate_dir", SYS_truncate, "d", 0);
	T("truncate_missing", SYS_truncate, "missing", 0);
	T("truncate_negative", SYS_truncate, "f", -1);
	T("ftruncate_rdonly", SYS_ftruncate, fd, 0);
	T("ftruncate_o_path", SYS_ftruncate, pfd, 0);
	T("ftruncate_negative", SYS_ftruncate, fd, -1);
	T("ftruncate_dir", SYS_ftruncate, dfd, 0);

	T("mknod_fifo", SYS_mknod, "new", S_IFIFO | 0644, 0);
	T("mknod_reg", SYS_mknod, "new", S_IFREG | 0644, 0);
	T("mknod_existing", SYS_mknod, "f", S_IFIFO | 0644, 0);
	T("mknod_dir", SYS_mknod, "new", S_IFDIR | 0755, 0);
	T("mknod_bad_type", SYS_mknod, "new", 0170000, 0);
	T("mknodat", SYS_mknodat, dfd, "new", S_IFIFO | 0644, 0);

	T("open_creat_new", SYS_open, "new", O_WRONLY | O_CREAT, 0644);
	T("open_creat_existing", SYS_open, "f", O_RDONLY | O_CREAT, 0644);
	T("open_creat_excl_existing", SYS_open, "f", O_WRONLY | O_CREAT | O_EXCL, 0644);
	T("open_wronly", SYS_open, "f", O_WRONLY);
	T("open_rdwr", SYS_open, "f", O_RDWR);
	T("open_trunc", SYS_open, "f", O_RDONLY | O_TRUNC);
	T("open_dir_wronly", SYS_open, "d", O_WRONLY);

	T("setxattr", SYS_setxattr, "f", "user.x", "v", 1, 0);
	T("setxattr_missing", SYS_setxattr, "missing", "user.x", "v", 1, 0);
	T("lsetxattr", SYS_lsetxattr, "l", "user.x", "v", 1, 0);
	T("fsetxattr", SYS_fsetxattr, fd, "user.x", "v", 1, 0);
	T("setxattr_bad_flags", SYS_setxattr, "f", "user.x", "v", 1, 4);
	T("removexattr", SYS_removexattr, "f", "user.x");
	T("lremovexattr", SYS_lremovexattr, "l", "user.x");
	T("fremovexattr", SYS_fremovexattr, fd, "user.x");
	return 0;
}
