/*
 * sleeper: prints "start", sleeps in nanosleep for MS milliseconds
 * (default 1000), prints "end". For checkpoints taken while a system call
 * waits: emuckpt interrupts the call, checkpoints, and makes the call
 * again, so the program never sees EINTR.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int main(int argc, char **argv)
{
	long ms = argc > 1 ? atol(argv[1]) : 1000;
	setvbuf(stdout, NULL, _IONBF, 0);
	puts("start");
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	if (nanosleep(&ts, NULL) != 0) {
		printf("nanosleep: errno=%d\n", errno);
		return 1;
	}
	puts("end");
	return 0;
}
