/*
 * bigmem: touch MIB mebibytes of anonymous memory with non-zero data, then
 * checkpoint with emuckpt_checkpoint() and check the data on whichever
 * side of the checkpoint it is. For the checkpoint/restore benchmarks.
 * With PROCS > 1 there are PROCS processes (the first and its forked
 * children), each touching MIB mebibytes of its own; the children wait on
 * a pipe while the first one checkpoints, then check theirs.
 *
 * Usage: bigmem [MIB [PROCS]]   (default 16 1)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include "emuckpt.h"

static uint64_t *touch(size_t len, uint64_t salt)
{
	uint64_t *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	for (size_t i = 0; i < len / 8; i += 512)
		p[i] = i + salt;
	return p;
}

static int check(const uint64_t *p, size_t len, uint64_t salt)
{
	for (size_t i = 0; i < len / 8; i += 512)
		if (p[i] != i + salt) {
			printf("corrupt at word %zu\n", i);
			return 1;
		}
	return 0;
}

int main(int argc, char **argv)
{
	size_t mib = argc > 1 ? strtoul(argv[1], 0, 10) : 16;
	int procs = argc > 2 ? atoi(argv[2]) : 1;
	size_t len = mib << 20;
	int ready[2], go[2];
	if (pipe(ready) || pipe(go))
		return 1;
	for (int c = 1; c < procs; c++) {
		if (fork() == 0) {
			uint64_t *p = touch(len, c + 1);
			char b = 'r';
			write(ready[1], &b, 1);
			read(go[0], &b, 1);
			_exit(check(p, len, c + 1));
		}
	}
	uint64_t *p = touch(len, 1);
	for (int c = 1; c < procs; c++) {
		char b;
		read(ready[0], &b, 1);
	}
	long r = emuckpt_checkpoint();
	int bad = check(p, len, 1);
	for (int c = 1; c < procs; c++)
		write(go[1], "g", 1);
	for (int c = 1; c < procs; c++) {
		int st;
		wait(&st);
		bad |= !WIFEXITED(st) || WEXITSTATUS(st) != 0;
	}
	if (bad)
		return 1;
	if (procs > 1)
		printf("bigmem %d x %zu MiB: ok (checkpoint returned %ld)\n", procs, mib, r);
	else
		printf("bigmem %zu MiB: ok (checkpoint returned %ld)\n", mib, r);
	return 0;
}
