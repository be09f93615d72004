/*
 * bigio: readv and writev with buffers larger than emuckpt's internal
 * transfer size (1 MiB): readv must fill each buffer in turn exactly as
 * Linux does (stdio's fread uses this two-buffer pattern), and writev must
 * make progress (Linux may write less than asked, but never 0 bytes).
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

int main(void)
{
	size_t big = 3 << 20;
	char *a = malloc(big), *b = malloc(16);
	int fd = open("/dev/zero", O_RDONLY);
	memset(a, 0x55, big);
	memset(b, 0x55, 16);
	struct iovec iov[2] = {{a, big}, {b, 16}};
	ssize_t n = readv(fd, iov, 2);
	int zero = 1;
	for (size_t i = 0; i < big; i++)
		if (a[i])
			zero = 0;
	for (int i = 0; i < 16; i++)
		if (b[i])
			zero = 0;
	printf("readv: n=%zd filled=%s\n", n, zero ? "yes" : "NO");

	size_t huge = 20 << 20;
	char *c = calloc(1, huge);
	int null = open("/dev/null", O_WRONLY);
	struct iovec w[1] = {{c, huge}};
	ssize_t m = writev(null, w, 1);
	printf("writev: %s\n", m > 0 ? "progress" : "NONE");

	/* fread of more than 1 MiB through a FILE. */
	FILE *f = fopen("/dev/zero", "r");
	memset(a, 0x55, big);
	size_t got = fread(a, 1, big, f);
	zero = 1;
	for (size_t i = 0; i < big; i++)
		if (a[i])
			zero = 0;
	printf("fread: %zu zero=%s\n", got, zero ? "yes" : "NO");
	return 0;
}
