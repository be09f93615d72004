/*
 * getpid_loop [N] - system call round-trip benchmark.
 *
 * Calls syscall(SYS_getpid) N times (default 100000; raw syscall, so no
 * libc caching) and prints "done".  Exits 1 if the pid ever changes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	unsigned long n = 100000;
	if (argc > 1)
		n = strtoul(argv[1], NULL, 0);

	long first = syscall(SYS_getpid);
	for (unsigned long i = 0; i < n; i++) {
		if (syscall(SYS_getpid) != first) {
			printf("FAIL pid changed at iteration %lu\n", i);
			return 1;
		}
	}
	printf("done\n");
	return 0;
}
