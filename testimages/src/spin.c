/*
 * spin: a guest that never ends on its own, for --timeout.
 * Prints "spinning" and then loops without system calls.
 */
#include <stdio.h>

int main(void)
{
	puts("spinning");
	fflush(stdout);
	for (volatile unsigned long i = 0;; i++)
		;
}
