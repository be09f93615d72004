/*
 * bgwrite MIB ROUNDS - memory that changes while a checkpoint is written.
 *
 * Each round writes the round number into one word of every page of MIB
 * MiB (a different word each round), then makes a system call. Before it
 * writes, it checks that every page still holds the previous round's
 * number where that round wrote it: a page that came back from an image
 * older or newer than the rest (a checkpoint written while the program
 * ran on, torn) fails the check. Prints "bgwrite: ok R rounds, sum S";
 * on a failed check "FAIL round R page P: X", exit 1. The output depends
 * only on the arguments.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	size_t mib = argc > 1 ? strtoul(argv[1], NULL, 0) : 16;
	long rounds = argc > 2 ? atol(argv[2]) : 200;
	size_t pages = mib << 8, words = 4096 / sizeof(long);
	long *m = mmap(NULL, mib << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED) {
		perror("mmap");
		return 2;
	}
	unsigned long sum = 0;
	for (long r = 1; r <= rounds; r++) {
		for (size_t p = 0; p < pages; p++) {
			long *page = m + p * words;
			if (r > 1 && page[(r - 1) % words] != r - 1) {
				printf("FAIL round %ld page %zu: %ld\n", r, p, page[(r - 1) % words]);
				return 1;
			}
			page[r % words] = r;
		}
		sum += (unsigned long)getpid() * r;
	}
	printf("bgwrite: ok %ld rounds, sum %lu\n", rounds, sum);
	return 0;
}
