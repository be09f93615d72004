/*
 * touchlater [MIB] - memory first touched right after a checkpoint.
 *
 * Maps MIB mebibytes (default 8, 2 MiB aligned) of private anonymous
 * memory and writes one byte at the start of each 2 MiB region, so that
 * emuckpt maps each with a 2 MiB page whose other 4 KiB pages the host
 * has not populated yet; then it makes a system call (getpid), where a
 * checkpoint sees one page of data and 511 zero pages per region. Right
 * after it, it writes every 4 KiB page, makes another system call and
 * prints a checksum of the memory. An image written while the program
 * runs on must still hold those pages as zero: they change without a
 * write-protect fault, there being no host page to protect.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define PG 4096ul
#define HUGE (2ul << 20)

int main(int argc, char **argv)
{
	size_t len = (argc > 1 ? strtoul(argv[1], NULL, 0) : 8) << 20;
	unsigned char *raw = mmap(NULL, len + HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (raw == MAP_FAILED) {
		perror("mmap");
		return 2;
	}
	volatile unsigned char *m = (unsigned char *)(((uintptr_t)raw + HUGE - 1) & ~(HUGE - 1));
	for (size_t off = 0; off < len; off += HUGE)
		m[off] = 1;
	getpid();
	for (size_t off = 0; off < len; off += PG)
		m[off + 8] = (unsigned char)((off / PG) | 1);
	getpid();
	unsigned long sum = 0;
	for (size_t off = 0; off < len; off += PG)
		sum = sum * 31 + m[off] + m[off + 8];
	printf("touchlater: sum %lu\n", sum);
	return 0;
}
