/*
 * unknown: makes a system call emuckpt does not implement (mbind, 237)
 * twice and prints the errno, so tests can check ENOSYS and that -v
 * reports the call once by name.
 */
#include <errno.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/syscall.h>
#include "errname.h"

int main(void)
{
	for (int i = 0; i < 2; i++) {
		long r = syscall(SYS_mbind, 0, 0, 0, 0, 0, 0);
		printf("mbind: ret=%ld errno=%s\n", r, r < 0 ? errname(errno) : "0");
	}
	return 0;
}
