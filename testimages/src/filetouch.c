/*
 * filetouch PATH - read fault per page of a file mapping.
 *
 * Maps PATH private and read-only, reads one byte of every 4 KiB page
 * once (a read fault each, or fewer with fault-around), and prints
 *
 *   ns_per_page=N sum=S
 *
 * S is the sum of the bytes read, to compare runs. Exits 1 on errors.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PG 4096ul

static uint64_t now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: filetouch PATH\n");
		return 1;
	}
	int fd = open(argv[1], O_RDONLY);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0 || st.st_size < (off_t)PG) {
		printf("FAIL open\n");
		return 1;
	}
	size_t pages = (size_t)st.st_size / PG;
	volatile uint8_t *p = mmap(NULL, pages * PG, PROT_READ, MAP_PRIVATE, fd, 0);
	if (p == MAP_FAILED) {
		printf("FAIL mmap\n");
		return 1;
	}
	uint64_t sum = 0;
	uint64_t t0 = now();
	for (size_t i = 0; i < pages; i++)
		sum += p[i * PG + (i * 64) % PG];
	uint64_t t = now() - t0;
	printf("ns_per_page=%llu sum=%llu\n", (unsigned long long)(t / pages), (unsigned long long)sum);
	return 0;
}
