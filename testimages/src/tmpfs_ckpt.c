/*
 * tmpfs_ckpt - files in /tmp across a checkpoint.
 *
 * Makes a directory with a file and a hard link to it, a symbolic link, a
 * sparse file, a file unlinked while open (its descriptor at offset 2)
 * an O_TMPFILE file, a shared mapping of an open file and one of a file
 * unlinked and closed (only the mapping holds it), a private mapping of
 * the first by another name (a hard link) and a sealed, mapped
 * memfd, then calls emuckpt_checkpoint(). On both sides
 * of the checkpoint it checks that all of them are as they were, prints
 * "side: N" and one line per check, appends to the files (the restored
 * tmpfs must be writable), and prints "ok" (exit status 0) or the
 * failures (exit status 1).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "emuckpt.h"
#include "errname.h"

static int failures;

static void check(const char *name, int ok)
{
	printf("%s: %s\n", name, ok ? "ok" : "FAIL");
	if (!ok)
		failures++;
}

static int content_is(const char *path, const char *want)
{
	char buf[64] = {0};
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return 0;
	long n = read(fd, buf, sizeof buf - 1);
	close(fd);
	return n == (long)strlen(want) && memcmp(buf, want, n) == 0;
}

int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	if (mkdir("/tmp/dir", 0750) < 0 && errno != EEXIST) {
		printf("mkdir: errno=%s\n", errname(errno));
		return 1;
	}
	int fd = open("/tmp/dir/a", O_CREAT | O_WRONLY | O_TRUNC, 0640);
	write(fd, "alpha", 5);
	close(fd);
	link("/tmp/dir/a", "/tmp/hard");
	symlink("dir/a", "/tmp/sym");
	fd = open("/tmp/sparse", O_CREAT | O_WRONLY, 0600);
	pwrite(fd, "end", 3, 1 << 20);
	close(fd);
	int ghost = open("/tmp/ghost", O_CREAT | O_RDWR, 0600);
	write(ghost, "ghostly", 7);
	lseek(ghost, 2, SEEK_SET);
	unlink("/tmp/ghost");
	int anon = open("/tmp", O_TMPFILE | O_RDWR, 0600);
	write(anon, "nameless", 8);
	/* a shared mapping of a named file, open */
	int shfd = open("/tmp/shared", O_CREAT | O_RDWR, 0600);
	ftruncate(shfd, 4096);
	char *sh = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, shfd, 0);
	memcpy(sh, "mapped", 6);
	/* the same file mapped privately by another name: one saved file */
	link("/tmp/shared", "/tmp/shared2");
	int s2 = open("/tmp/shared2", O_RDONLY);
	char *pm = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, s2, 0);
	pm[0] = 'P';
	close(s2);
	/* a shared mapping of a file unlinked and closed: only the mapping holds it */
	int gfd = open("/tmp/gone", O_CREAT | O_RDWR, 0600);
	ftruncate(gfd, 4096);
	char *gm = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, gfd, 0);
	memcpy(gm, "held by the mapping", 19);
	unlink("/tmp/gone");
	close(gfd);
	/* a sealed memfd, mapped */
	int mfd = memfd_create("ckpt", MFD_ALLOW_SEALING);
	write(mfd, "memory", 6);
	char *mm = mmap(NULL, 4096, PROT_READ, MAP_SHARED, mfd, 0);
	fcntl(mfd, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK);

	long r = emuckpt_checkpoint();
	printf("side: %ld\n", r);

	struct stat st;
	check("file", content_is("/tmp/dir/a", "alpha"));
	check("hard_link", stat("/tmp/hard", &st) == 0 && st.st_nlink == 2 && content_is("/tmp/hard", "alpha"));
	check("symlink", content_is("/tmp/sym", "alpha"));
	check("dir_mode", stat("/tmp/dir", &st) == 0 && (st.st_mode & 07777) == 0750);
	check("sparse", stat("/tmp/sparse", &st) == 0 && st.st_size == (1 << 20) + 3 && st.st_blocks == 8);
	char buf[16] = {0};
	check("ghost_offset", read(ghost, buf, 5) == 5 && memcmp(buf, "ostly", 5) == 0);
	check("ghost_unlinked", fstat(ghost, &st) == 0 && st.st_nlink == 0 && access("/tmp/ghost", F_OK) < 0);
	check("tmpfile", pread(anon, buf, 8, 0) == 8 && memcmp(buf, "nameless", 8) == 0);
	check("write_after", write(ghost, "!", 1) == 1 && pread(ghost, buf, 8, 0) == 8 && memcmp(buf, "ghostly!", 8) == 0);
	check("shared_map", pread(shfd, buf, 6, 0) == 6 && memcmp(buf, "mapped", 6) == 0);
	check("shared_write", pwrite(shfd, "!", 1, 6) == 1 && sh[6] == '!');
	memcpy(sh + 7, "?", 1);
	check("shared_map_write", pread(shfd, buf, 1, 7) == 1 && buf[0] == '?');
	check("private_by_other_name", pm[0] == 'P' && memcmp(pm + 1, "apped", 5) == 0);
	check("mapped_only", memcmp(gm, "held by the mapping", 19) == 0);
	check("memfd", memcmp(mm, "memory", 6) == 0 && fcntl(mfd, F_GET_SEALS) == (F_SEAL_GROW | F_SEAL_SHRINK));
	check("memfd_sealed", ftruncate(mfd, 0) < 0 && errno == EPERM && pwrite(mfd, "M", 1, 0) == 1 && mm[0] == 'M');
	fd = open("/tmp/dir/new", O_CREAT | O_EXCL | O_WRONLY, 0600);
	check("create_after", fd >= 0 && write(fd, "n", 1) == 1);
	close(fd);
	printf(failures ? "failures: %d\n" : "ok\n", failures);
	return failures != 0;
}
