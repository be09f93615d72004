/*
 * readfile PATH - file system read path.
 *
 *   open(PATH, O_RDONLY)   on failure: "open: errno=NAME", exit 2
 *   fstat                  "fstat: type=reg size=N"
 *   read in 13-byte chunks "read: N bytes in K calls" then the content
 *                          between "--- content ---" / "--- end ---" lines
 *                          (a newline is added after the content if it
 *                          does not end with one)
 *   lseek                  SEEK_END/SEEK_CUR/SEEK_SET and a negative offset
 *   pread                  up to 8 bytes at offset 1, printed escaped
 *   getdents64             sorted names in dirname(PATH), one "dirent NAME"
 *                          line each (including "." and "..")
 *   open(PATH, O_WRONLY)   "open_wronly: ret=R errno=NAME" (not judged here:
 *                          EROFS/EACCES/success depend on the file system)
 * then "ok" and exit 0; any unexpected result prints FAIL and exits 1.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "errname.h"

#define CHUNK 13

static int failures;

static void fail(const char *what)
{
	printf("FAIL %s (errno=%s)\n", what, errname(errno));
	failures++;
}

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

/* Print bytes with C-style escapes for anything non-printable. */
static void print_escaped(const unsigned char *p, size_t n)
{
	putchar('"');
	for (size_t i = 0; i < n; i++) {
		unsigned c = p[i];
		if (c == '\n')
			fputs("\\n", stdout);
		else if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			printf("\\x%02x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* List the directory with raw getdents64, sorted. */
static void list_dir(const char *dir)
{
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		printf("opendir %s: errno=%s\n", dir, errname(errno));
		failures++;
		return;
	}
	size_t n = 0, cap = 64;
	char **names = malloc(cap * sizeof *names);
	/* Small buffer so several getdents64 calls are needed on most dirs. */
	static char buf[512] __attribute__((aligned(8)));
	for (;;) {
		long r = syscall(SYS_getdents64, dfd, buf, sizeof buf);
		if (r < 0) {
			fail("getdents64");
			break;
		}
		if (r == 0)
			break;
		for (long off = 0; off < r;) {
			struct dirent *d = (struct dirent *)(buf + off);
			if (n == cap)
				names = realloc(names, (cap *= 2) * sizeof *names);
			names[n++] = strdup(d->d_name);
			off += d->d_reclen;
		}
	}
	close(dfd);
	qsort(names, n, sizeof *names, cmp_str);
	printf("getdents64: %zu entries\n", n);
	for (size_t i = 0; i < n; i++) {
		printf("dirent %s\n", names[i]);
		free(names[i]);
	}
	free(names);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: readfile PATH\n");
		return 2;
	}
	const char *path = argv[1];

	int fd = open(path, O_RDONLY);
	if (fd < 0) {
		printf("open: errno=%s\n", errname(errno));
		return 2;
	}

	struct stat st;
	if (fstat(fd, &st) != 0) {
		fail("fstat");
		return 1;
	}
	printf("fstat: type=%s size=%lld\n", type_name(st.st_mode), (long long)st.st_size);

	/* Read the whole file in small chunks. */
	size_t cap = 4096, len = 0, calls = 0;
	unsigned char *data = malloc(cap);
	for (;;) {
		if (len + CHUNK > cap)
			data = realloc(data, cap *= 2);
		ssize_t r = read(fd, data + len, CHUNK);
		calls++;
		if (r < 0) {
			fail("read");
			return 1;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	printf("read: %zu bytes in %zu calls\n", len, calls);
	if ((off_t)len != st.st_size && S_ISREG(st.st_mode))
		fail("read length differs from st_size");
	printf("--- content ---\n");
	fflush(stdout);
	fwrite(data, 1, len, stdout);
	if (len == 0 || data[len - 1] != '\n')
		putchar('\n');
	printf("--- end ---\n");

	/* A further read at EOF returns 0. */
	char tmp[8];
	ssize_t r = read(fd, tmp, sizeof tmp);
	printf("read_at_eof: ret=%zd\n", r);
	if (r != 0)
		fail("read at EOF");

	/* lseek */
	off_t o = lseek(fd, 0, SEEK_END);
	printf("lseek_end: ret=%lld\n", (long long)o);
	if (o != (off_t)len)
		fail("lseek SEEK_END");
	o = lseek(fd, -1, SEEK_CUR);
	printf("lseek_cur_minus1: ret=%lld\n", (long long)o);
	o = lseek(fd, 0, SEEK_SET);
	printf("lseek_set0: ret=%lld\n", (long long)o);
	if (o != 0)
		fail("lseek SEEK_SET");
	errno = 0;
	o = lseek(fd, -5, SEEK_SET);
	printf("lseek_negative: ret=%lld errno=%s\n", (long long)o, errname(o < 0 ? errno : 0));
	if (o != -1 || errno != EINVAL)
		fail("lseek negative should be EINVAL");
	errno = 0;
	o = lseek(fd, 0, 12345);
	printf("lseek_bad_whence: ret=%lld errno=%s\n", (long long)o, errname(o < 0 ? errno : 0));
	if (o != -1 || errno != EINVAL)
		fail("lseek bad whence should be EINVAL");

	/* pread does not move the file offset. */
	lseek(fd, 0, SEEK_SET);
	unsigned char pb[8];
	r = pread(fd, pb, sizeof pb, 1);
	printf("pread(off=1,len=8): ret=%zd data=", r);
	print_escaped(pb, r > 0 ? (size_t)r : 0);
	putchar('\n');
	if (r > 0 && memcmp(pb, data + 1, (size_t)r) != 0)
		fail("pread data differs from read data");
	o = lseek(fd, 0, SEEK_CUR);
	printf("offset_after_pread: %lld\n", (long long)o);
	if (o != 0)
		fail("pread moved the offset");
	errno = 0;
	r = pread(fd, pb, sizeof pb, -1);
	printf("pread_negative: ret=%zd errno=%s\n", r, errname(r < 0 ? errno : 0));
	if (r != -1 || errno != EINVAL)
		fail("pread negative offset should be EINVAL");
	close(fd);

	/* Directory of PATH. */
	char *dir = strdup(path);
	char *slash = strrchr(dir, '/');
	if (!slash)
		strcpy(dir, ".");
	else if (slash == dir)
		dir[1] = 0;
	else
		*slash = 0;
	printf("dir: %s\n", dir);
	list_dir(dir);
	free(dir);

	/* Opening for writing: result depends on the file system. */
	errno = 0;
	fd = open(path, O_WRONLY);
	printf("open_wronly: ret=%d errno=%s\n", fd < 0 ? -1 : 0, errname(fd < 0 ? errno : 0));
	if (fd >= 0)
		close(fd);

	free(data);
	if (failures) {
		printf("FAIL %d\n", failures);
		return 1;
	}
	printf("ok\n");
	return 0;
}
