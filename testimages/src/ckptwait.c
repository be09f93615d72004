/*
 * ckptwait: a program for checkpoints that fail. Each word on the command
 * line turns on one step; the steps run in this order:
 *
 *   socket make a socket pair and write a byte into it, first of all
 *          (emuckpt cannot save sockets yet, so every later checkpoint
 *          fails)
 *          prints "start" (always; unbuffered)
 *   hpet   three loads of the HPET main counter through a mapping of
 *          /dev/hpet (three device MMIO accesses, for device:N)
 *   self   emuckpt_checkpoint(), printing "checkpoint: ret=R"
 *   wait   read standard input until end of file, printing "stdin: eof"
 *          (the test decides when the program ends)
 *          with socket: reads the byte back, printing "socket: ok"
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
#include <sys/socket.h>
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
	int want_sock = 0, hpet = 0, self = 0, wait = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "socket"))
			want_sock = 1;
		else if (!strcmp(argv[i], "hpet"))
			hpet = 1;
		else if (!strcmp(argv[i], "self"))
			self = 1;
		else if (!strcmp(argv[i], "wait"))
			wait = 1;
		else {
			printf("usage: ckptwait [socket] [hpet] [self] [wait]\n");
			return 2;
		}
	}
	setvbuf(stdout, NULL, _IONBF, 0);
	int p[2];
	if (want_sock && (socketpair(AF_UNIX, SOCK_STREAM, 0, p) != 0 || write(p[1], "x", 1) != 1))
		return fail("socketpair");
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
	if (want_sock) {
		char c;
		if (read(p[0], &c, 1) != 1 || c != 'x')
			return fail("read socket");
		puts("socket: ok");
	}
	puts("end");
	return 0;
}
