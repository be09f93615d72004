/*
 * devls [DIR...] - the device nodes and device mappings emuckpt gives a
 * guest.
 *
 * Runs only inside emuckpt (natively it would map the host's devices).
 *
 * 1. Lists each DIR (default: /dev and /sys/class/bsr) with raw
 *    getdents64, sorted by name, one line per entry:
 *      DIR: N entries
 *      dirent NAME type=TYPE [rdev=MAJOR:MINOR]
 *    TYPE is from d_type (chr, dir, reg, ...); rdev, from fstatat, is
 *    printed for character devices.
 * 2. Maps /dev/hpet (one page, PROT_READ, MAP_SHARED) and every /dev/bsr*
 *    found in /dev (one page, PROT_READ|PROT_WRITE, MAP_SHARED), the first
 *    BSR twice, in two adjacent pages, then prints every /proc/self/maps
 *    line whose path starts with "/dev/", in address order, with the
 *    mapping's length instead of its addresses:
 *      maps: length=N perms=P offset=O dev=D inode=I path=PATH
 *    and "maps: N device mappings".
 * Then "ok", exit 0.  A failed system call prints "NAME: errno=E" and
 * exits 2.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "errname.h"

#define PG 4096ul

struct linux_dirent64 {
	unsigned long long d_ino;
	long long d_off;
	unsigned short d_reclen;
	unsigned char d_type;
	char d_name[];
};

static const char *dtype(unsigned char t)
{
	switch (t) {
	case 0: return "unknown";
	case 1: return "fifo";
	case 2: return "chr";
	case 4: return "dir";
	case 6: return "blk";
	case 8: return "reg";
	case 10: return "lnk";
	case 12: return "sock";
	}
	return "other";
}

static void die(const char *what)
{
	printf("%s: errno=%s\n", what, errname(errno));
	exit(2);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Lists dir; returns the sorted names (entries "name\0type"). */
static char **list(const char *dir, size_t *count)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY);
	if (fd < 0)
		die(dir);
	size_t n = 0, cap = 16;
	char **names = malloc(cap * sizeof *names);
	static char buf[256] __attribute__((aligned(8)));
	for (;;) {
		long r = syscall(SYS_getdents64, fd, buf, sizeof buf);
		if (r < 0)
			die("getdents64");
		if (r == 0)
			break;
		for (long off = 0; off < r;) {
			struct linux_dirent64 *d = (void *)(buf + off);
			if (n == cap)
				names = realloc(names, (cap *= 2) * sizeof *names);
			size_t len = strlen(d->d_name);
			char *e = malloc(len + 2);
			memcpy(e, d->d_name, len + 1);
			e[len + 1] = (char)d->d_type;
			names[n++] = e;
			off += d->d_reclen;
		}
	}
	qsort(names, n, sizeof *names, cmp_str);
	printf("%s: %zu entries\n", dir, n);
	for (size_t i = 0; i < n; i++) {
		unsigned char t = (unsigned char)names[i][strlen(names[i]) + 1];
		printf("dirent %s type=%s", names[i], dtype(t));
		struct stat st;
		if (t == 2 && fstatat(fd, names[i], &st, 0) == 0)
			printf(" rdev=%u:%u", major(st.st_rdev), minor(st.st_rdev));
		printf("\n");
	}
	close(fd);
	*count = n;
	return names;
}

static void *map(const char *path, int oflags, int prot, void *at)
{
	int fd = open(path, oflags);
	if (fd < 0)
		die(path);
	void *p = mmap(at, PG, prot, MAP_SHARED | (at ? MAP_FIXED : 0), fd, 0);
	if (p == MAP_FAILED)
		die(path);
	close(fd);
	return p;
}

int main(int argc, char **argv)
{
	const char *defaults[] = {"/dev", "/sys/class/bsr"};
	const char **dirs = argc > 1 ? (const char **)argv + 1 : defaults;
	int ndirs = argc > 1 ? argc - 1 : 2;
	char **dev = NULL;
	size_t ndev = 0;
	for (int i = 0; i < ndirs; i++) {
		size_t n;
		char **names = list(dirs[i], &n);
		if (strcmp(dirs[i], "/dev") == 0)
			dev = names, ndev = n;
	}
	if (!dev)
		dev = list("/dev", &ndev);

	char path[300];
	int bsrs = 0;
	for (size_t i = 0; i < ndev; i++) {
		if (strcmp(dev[i], "hpet") == 0) {
			map("/dev/hpet", O_RDONLY, PROT_READ, NULL);
		} else if (strncmp(dev[i], "bsr", 3) == 0) {
			snprintf(path, sizeof path, "/dev/%s", dev[i]);
			int prot = PROT_READ | PROT_WRITE;
			if (bsrs++ == 0) {
				/* Two adjacent pages: reserve, then map over. */
				char *two = mmap(NULL, 2 * PG, PROT_NONE,
						 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
				if (two == MAP_FAILED)
					die("mmap reserve");
				map(path, O_RDWR, prot, two);
				map(path, O_RDWR, prot, two + PG);
			} else {
				map(path, O_RDWR, prot, NULL);
			}
		}
	}

	FILE *f = fopen("/proc/self/maps", "r");
	if (!f)
		die("/proc/self/maps");
	char line[512];
	int found = 0;
	while (fgets(line, sizeof line, f)) {
		unsigned long lo, hi, off, ino;
		char perms[8], devno[16], name[256];
		if (sscanf(line, "%lx-%lx %7s %lx %15s %lu %255s", &lo, &hi,
			   perms, &off, devno, &ino, name) != 7)
			continue;
		if (strncmp(name, "/dev/", 5) != 0)
			continue;
		printf("maps: length=%lu perms=%s offset=%08lx dev=%s inode=%lu path=%s\n",
		       hi - lo, perms, off, devno, ino, name);
		found++;
	}
	fclose(f);
	printf("maps: %d device mappings\n", found);
	printf("ok\n");
	return 0;
}
