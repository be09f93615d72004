/*
 * bsr_barrier [NAME] - a Barrier Synchronization Register barrier in one
 * process, on /dev/NAME (default bsr8_0, which must have at least 8 bytes).
 *
 * Runs only inside emuckpt (no x86 machine has a BSR).  Maps one page of
 * the register MAP_SHARED, then eight participants arrive in turn: each
 * stores 1 to its own byte with a single-byte store, and after each store
 * one 8-byte load reads every participant at once.  Prints
 *     initial: 0x<8-byte load> arrived=N/8
 *     participant I: 0x<8-byte load> arrived=N/8
 *     barrier complete                  (when the load is 0x0101010101010101)
 * then 2- and 4-byte loads, the register repeated in the last stride of the
 * page, a store in the second stride seen in the first, a reset, every
 * register of /sys/class/bsr with its bsr_size/bsr_stride/bsr_length, the
 * mapping's /proc/self/maps line without its addresses, and "ok".
 * A mismatch prints "FAIL ..." and the program exits 1; a setup failure
 * exits 2.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "errname.h"

#define PG 4096ul
#define PARTICIPANTS 8

static int failures;

static void expect(const char *what, int cond)
{
	if (!cond) {
		printf("FAIL %s\n", what);
		failures++;
	}
}

/* Reads /sys/class/bsr/NAME/ATTR as a number; -1 if it cannot. */
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

static int arrived(uint64_t v)
{
	int n = 0;
	for (int i = 0; i < 8; i++)
		n += ((v >> (8 * i)) & 0xff) == 1;
	return n;
}

static int cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void list_sysfs(void)
{
	DIR *d = opendir("/sys/class/bsr");
	if (!d) {
		printf("FAIL opendir /sys/class/bsr: errno=%s\n", errname(errno));
		failures++;
		return;
	}
	char *names[64];
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL && n < 64) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		names[n++] = strdup(e->d_name);
	}
	closedir(d);
	qsort(names, n, sizeof names[0], cmp);
	printf("sysfs: %d registers\n", n);
	for (int i = 0; i < n; i++) {
		printf("sysfs %s: size=%ld stride=%ld length=%ld\n", names[i],
		       sysfs_attr(names[i], "bsr_size"),
		       sysfs_attr(names[i], "bsr_stride"),
		       sysfs_attr(names[i], "bsr_length"));
		free(names[i]);
	}
}

/* Prints the /proc/self/maps line of path, with its size instead of its
 * addresses. */
static void maps_line(const char *path)
{
	FILE *f = fopen("/proc/self/maps", "r");
	if (!f) {
		printf("FAIL open /proc/self/maps: errno=%s\n", errname(errno));
		failures++;
		return;
	}
	char line[512];
	int found = 0;
	while (fgets(line, sizeof line, f)) {
		unsigned long lo, hi, off;
		char perms[8], dev[16], name[256];
		unsigned long ino;
		if (sscanf(line, "%lx-%lx %7s %lx %15s %lu %255s", &lo, &hi,
			   perms, &off, dev, &ino, name) != 7)
			continue;
		if (strcmp(name, path) != 0)
			continue;
		printf("maps: length=%lu perms=%s offset=%08lx path=%s\n",
		       hi - lo, perms, off, name);
		found = 1;
	}
	fclose(f);
	expect("maps: no line for the device", found);
}

int main(int argc, char **argv)
{
	const char *name = argc > 1 ? argv[1] : "bsr8_0";
	char path[128];
	snprintf(path, sizeof path, "/dev/%s", name);

	long size = sysfs_attr(name, "bsr_size");
	long stride = sysfs_attr(name, "bsr_stride");
	if (size < PARTICIPANTS || stride < size) {
		printf("%s: bsr_size=%ld bsr_stride=%ld: need at least 8 bytes\n",
		       name, size, stride);
		return 2;
	}

	int fd = open(path, O_RDWR);
	if (fd < 0) {
		printf("open %s: errno=%s\n", path, errname(errno));
		return 2;
	}
	volatile uint8_t *p = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		printf("mmap %s: errno=%s\n", path, errname(errno));
		return 2;
	}
	printf("%s: mapped one page\n", path);

	volatile uint64_t *all = (volatile uint64_t *)p;
	uint64_t v = *all;
	printf("initial: 0x%016llx arrived=%d/%d\n", (unsigned long long)v,
	       arrived(v), PARTICIPANTS);

	for (int i = 0; i < PARTICIPANTS; i++) {
		p[i] = 1;  /* one single-byte store */
		v = *all;  /* one 8-byte load */
		printf("participant %d: 0x%016llx arrived=%d/%d\n", i,
		       (unsigned long long)v, arrived(v), PARTICIPANTS);
		expect("participant's byte not visible", ((v >> (8 * i)) & 0xff) == 1);
	}
	if (v == 0x0101010101010101ull)
		printf("barrier complete\n");
	else
		expect("barrier not complete", 0);

	/* Narrower aligned loads see several participants too. */
	uint16_t v2 = *(volatile uint16_t *)(p + 2);
	uint32_t v4 = *(volatile uint32_t *)(p + 4);
	printf("load2 at 2: 0x%04x\n", v2);
	printf("load4 at 4: 0x%08x\n", v4);
	expect("load2", v2 == 0x0101);
	expect("load4", v4 == 0x01010101);

	/* The register repeats every stride throughout the page. */
	unsigned long last = (PG / stride - 1) * stride;
	v = *(volatile uint64_t *)(p + last);
	printf("repeat at 0x%lx: 0x%016llx\n", last, (unsigned long long)v);
	expect("repeat", v == 0x0101010101010101ull);

	if ((unsigned long)stride + 3 < PG) {
		p[stride + 3] = 0x5a;
		uint8_t b = p[3];
		printf("stride: stored 0x5a at %ld, read 0x%02x at 3\n", stride + 3, b);
		expect("stride", b == 0x5a);
	} else {
		printf("stride: %ld, no second stride in the page\n", stride);
	}

	for (int i = 0; i < PARTICIPANTS; i++)
		p[i] = 0;
	v = *all;
	printf("reset: 0x%016llx\n", (unsigned long long)v);
	expect("reset", v == 0);

	list_sysfs();
	maps_line(path);

	if (failures) {
		printf("FAIL %d\n", failures);
		return 1;
	}
	printf("ok\n");
	return 0;
}
