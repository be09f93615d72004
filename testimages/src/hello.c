/*
 * hello - the smallest useful guest: one line of stdio output, exit 0.
 *
 * Also built as bin/hello-pie (static PIE) to exercise loading an ET_DYN
 * image that relocates itself.
 */
#include <stdio.h>

int main(void)
{
	printf("hello, world\n");
	return 0;
}
