/*
 * procself: what a program learns about itself from /proc/self.
 *
 *   exe:    readlink("/proc/self/exe") (glibc's static start-up asserts
 *           that it is absolute), argv[0] and AT_EXECFN as typed.
 *   maps:   /proc/self/maps read, a page mapped, lseek(0) and read again:
 *           the second read must show the new mapping, as Linux's
 *           seq_file generates the text at each read from offset 0.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <unistd.h>

static char maps[1 << 16];

static int has_mapping(int fd, unsigned long addr)
{
	char want[32];
	ssize_t n, total = 0;
	if (lseek(fd, 0, SEEK_SET) != 0)
		return -1;
	while ((n = read(fd, maps + total, sizeof maps - 1 - total)) > 0)
		total += n;
	maps[total] = 0;
	snprintf(want, sizeof want, "\n%lx-", addr);
	return strstr(maps, want) != NULL;
}

int main(int argc, char **argv)
{
	(void)argc;
	char buf[4096];
	ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
	if (n < 0) {
		printf("exe: readlink failed\n");
		return 1;
	}
	buf[n] = 0;
	printf("exe: %s\n", buf);
	printf("exe absolute: %s\n", buf[0] == '/' ? "yes" : "NO");
	printf("argv[0]: %s\n", argv[0]);
	printf("AT_EXECFN: %s\n", (char *)getauxval(AT_EXECFN));

	int fd = open("/proc/self/maps", O_RDONLY);
	/* A mapping well away from anything else, so it is a line of its own. */
	unsigned long addr = 0x7e0000000000UL;
	printf("maps before mmap: %d\n", has_mapping(fd, addr));
	void *p = mmap((void *)addr, 8192, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	if (p == MAP_FAILED)
		return 2;
	printf("maps after mmap, same fd: %d\n", has_mapping(fd, addr));
	munmap(p, 8192);
	printf("maps after munmap, same fd: %d\n", has_mapping(fd, addr));
	return 0;
}
