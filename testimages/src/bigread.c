/*
 * bigread: one read(2) of 64 MiB from /dev/zero and /dev/urandom, one
 * pread(2), and one getrandom(2) of 64 MiB. Linux returns the full count
 * for each (urandom and getrandom since 5.18, short only when a signal is
 * pending); `dd bs=64M count=1` depends on it.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>

#define BIG (64 << 20)

static int all(const unsigned char *p, size_t n, unsigned char c)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != c)
			return 0;
	return 1;
}

int main(void)
{
	unsigned char *buf = mmap(0, BIG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED)
		return 1;

	int zero = open("/dev/zero", O_RDONLY);
	memset(buf, 0xff, BIG);
	ssize_t n = read(zero, buf, BIG);
	printf("read /dev/zero: %zd zeroed=%s\n", n, all(buf, BIG, 0) ? "yes" : "NO");
	memset(buf, 0xff, BIG);
	n = pread(zero, buf, BIG, 12345);
	printf("pread /dev/zero: %zd zeroed=%s\n", n, all(buf, BIG, 0) ? "yes" : "NO");

	int urandom = open("/dev/urandom", O_RDONLY);
	memset(buf, 0, BIG);
	n = read(urandom, buf, BIG);
	/* The last MiB is all zero with probability 2^-8388608. */
	printf("read /dev/urandom: %zd tail-filled=%s\n", n, all(buf + BIG - (1 << 20), 1 << 20, 0) ? "NO" : "yes");

	memset(buf, 0, BIG);
	n = getrandom(buf, BIG, 0);
	printf("getrandom: %zd tail-filled=%s\n", n, all(buf + BIG - (1 << 20), 1 << 20, 0) ? "NO" : "yes");

	/* A buffer that ends in unmapped memory: the bytes before the hole. */
	munmap(buf + (1 << 20) + 4096, 4096);
	n = read(zero, buf, BIG);
	printf("read into a hole: %zd\n", n);
	return 0;
}
