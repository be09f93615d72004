/*
 * dirtywork: random memory work for incremental checkpoints. Each round
 * does one operation picked by a seeded generator: write random pages of
 * anonymous regions (small and 2 MiB aligned ones), map or unmap a
 * region, move one with mremap, zero pages with MADV_DONTNEED, fork a
 * child that writes its copy and exits (copy on write), write a tmpfs
 * file and map it shared and privately, grow and shrink the heap. Every
 * round makes a getpid() so that checkpoints can land between rounds.
 * At the end it prints a checksum of all its memory: a run restored from
 * any checkpoint prints the same.
 *
 * Usage: dirtywork [ROUNDS [SEED]]   (default 400 1)
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define NREG 8
#define PG 4096

static uint64_t rng;
static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static struct {
	unsigned char *p;
	size_t len;
} reg[NREG];

static unsigned char *file;  /* shared mapping of the tmpfs file */
static unsigned char *fpriv; /* private mapping of it */
#define FILELEN (64 * PG)

static void map_region(int i)
{
	size_t len = (next() % 2) ? (size_t)(1 + next() % 64) * PG : (size_t)4 << 20;
	reg[i].p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (reg[i].p == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	reg[i].len = len;
}

static void scribble(unsigned char *p, size_t len, int pages)
{
	for (int k = 0; k < pages; k++) {
		size_t off = next() % len;
		p[off] = (unsigned char)next() | 1;
		if (next() % 4 == 0) /* a whole page now and then */
			memset(p + (off & ~(size_t)(PG - 1)), (int)(next() | 1), PG);
	}
}

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 400;
	rng = argc > 2 ? strtoull(argv[2], 0, 10) * 0x9E3779B97F4A7C15ull + 1 : 0x9E3779B97F4A7C16ull;
	for (int i = 0; i < NREG; i++)
		map_region(i);
	int fd = open("/tmp/dirtywork", O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, FILELEN)) {
		perror("tmpfs file");
		return 1;
	}
	file = mmap(NULL, FILELEN, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	fpriv = mmap(NULL, FILELEN, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	if (file == MAP_FAILED || fpriv == MAP_FAILED) {
		perror("mmap file");
		return 1;
	}
	char *heap0 = sbrk(0);
	for (int r = 0; r < rounds; r++) {
		int i = next() % NREG;
		switch (next() % 10) {
		case 0:
		case 1:
		case 2:
			scribble(reg[i].p, reg[i].len, 1 + next() % 16);
			break;
		case 3:
			munmap(reg[i].p, reg[i].len);
			map_region(i);
			break;
		case 4: {
			size_t nlen = reg[i].len + PG * (1 + next() % 8);
			void *q = mremap(reg[i].p, reg[i].len, nlen, MREMAP_MAYMOVE);
			if (q != MAP_FAILED) {
				reg[i].p = q;
				reg[i].len = nlen;
			}
			break;
		}
		case 5: {
			size_t pages = reg[i].len / PG;
			size_t first = next() % pages;
			size_t n = 1 + next() % (pages - first);
			madvise(reg[i].p + first * PG, n * PG, MADV_DONTNEED);
			break;
		}
		case 6: {
			pid_t c = fork();
			if (c == 0) {
				scribble(reg[i].p, reg[i].len, 8);
				_exit(0);
			}
			waitpid(c, NULL, 0);
			break;
		}
		case 7: {
			char buf[300];
			for (size_t k = 0; k < sizeof buf; k++)
				buf[k] = (char)next();
			pwrite(fd, buf, sizeof buf, next() % (FILELEN - sizeof buf));
			scribble(file, FILELEN, 2);
			break;
		}
		case 8:
			scribble(fpriv, FILELEN, 2);
			break;
		case 9: {
			char *top = sbrk(0);
			if (top - heap0 > (1 << 20))
				brk(heap0 + (next() % 4) * PG);
			else {
				size_t n = (1 + next() % 16) * PG;
				char *p = sbrk(n);
				if (p != (void *)-1)
					scribble((unsigned char *)p, n, 4);
			}
			break;
		}
		}
		getpid();
	}
	uint64_t sum = 0;
	for (int i = 0; i < NREG; i++)
		for (size_t k = 0; k < reg[i].len; k++)
			sum = sum * 31 + reg[i].p[k];
	for (size_t k = 0; k < FILELEN; k++)
		sum = sum * 31 + file[k] + fpriv[k];
	for (char *p = heap0; p < (char *)sbrk(0); p++)
		sum = sum * 31 + (unsigned char)*p;
	printf("sum %016llx\n", (unsigned long long)sum);
	return 0;
}
