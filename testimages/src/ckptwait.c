/*
 * ckptwait: a program for checkpoints that fail. Each word on the command
 * line turns on one step; the steps run in this order:
 *
 *   pipe   make a pipe and write a byte into it, first of all (emuckpt
 *          cannot save pipes yet, so every later checkpoint fails)
 *          prints "start" (always; unbuffered)
 *   hpet   three loads of the HPET main counter through a mapping of
 *          /dev/hpet (three device MMIO accesses, for device:N)
 *   self   emuckpt_checkpoint(), printing "checkpoint: ret=R"
 *   wait   read standard input until end of file, printing "stdin: eof"
 *          (the test decides when the program ends)
 *          with pipe: reads the byte back, printing "pipe: ok"
 *          prints "end" (always)
 *
 * Exit status 0; 1 when a step fails ("NAME: errno=E").
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "emuckpt.h"
#include "errname.h"

static int fail(const char *what)
{
	printf("%s: errno=%s\n", what, errname(errno));
	return 1;
}

int main(int argc, char **argv)
{
	int want_pipe = 0, hpet = 0, self = 0, wait = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "pipe"))
			want_pipe = 1;
		else if (!strcmp(argv[i], "hpet"))
			hpet = 1;
		else if (!strcmp(argv[i], "self"))
			self = 1;
		else if (!strcmp(argv[i], "wait"))
			wait = 1;
		else {
			printf("usage: ckptwait [pipe] [hpet] [self] [wait]\n");
			return 2;
		}
	}
	setvbuf(stdout, NULL, _IONBF, 0);
	int p[2];
	if (want_pipe && (pipe(p) != 0 || write(p[1], "x", 1) != 1))
		return fail("pipe");
	puts("start");
	if (hpet) {
		int fd = open("/dev/hpet", O_RDONLY);
		if (fd < 0)
			return fail("open /dev/hpet");
		volatile const uint64_t *regs = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
		if (regs == MAP_FAILED)
			return fail("mmap /dev/hpet");
		uint64_t c0 = regs[0xf0 / 8], c1 = regs[0xf0 / 8], c2 = regs[0xf0 / 8];
		puts(c0 <= c1 && c1 <= c2 ? "hpet: ok" : "hpet: FAIL counter went back");
	}
	if (self)
		printf("checkpoint: ret=%ld\n", emuckpt_checkpoint());
	if (wait) {
		char buf[256];
		ssize_t n;
		while ((n = read(0, buf, sizeof buf)) > 0)
			;
		if (n < 0)
			return fail("read stdin");
		puts("stdin: eof");
	}
	if (want_pipe) {
		char c;
		if (read(p[0], &c, 1) != 1 || c != 'x')
			return fail("read pipe");
		puts("pipe: ok");
	}
	puts("end");
	return 0;
}
