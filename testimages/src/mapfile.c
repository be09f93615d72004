/*
 * mapfile: maps PATH privately, prints its first line, checkpoints itself
 * with emuckpt_checkpoint(), and prints the first line again from the
 * mapping. A restore maps the file again (FILE VMAs store only pages the
 * program wrote) and refuses a file that changed since the checkpoint.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include "emuckpt.h"
#include "errname.h"

static void line(const char *tag, const char *p, size_t n)
{
	size_t i = 0;
	while (i < n && p[i] != '\n')
		i++;
	printf("%s: %.*s\n", tag, (int)i, p);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: mapfile PATH\n");
		return 2;
	}
	int fd = open(argv[1], O_RDONLY);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0) {
		printf("open: errno=%s\n", errname(errno));
		return 2;
	}
	char *p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	if (p == MAP_FAILED) {
		printf("mmap: errno=%s\n", errname(errno));
		return 2;
	}
	close(fd);
	line("before", p, (size_t)st.st_size);
	p[0] = '*'; /* a page copied on write: stored in the image */
	long r = emuckpt_checkpoint();
	line(r == 2 ? "restored" : "after", p, (size_t)st.st_size);
	return 0;
}
