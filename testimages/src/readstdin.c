/*
 * readstdin: one read(2) of standard input, then prints how many bytes it
 * got. Used to check that --timeout and checkpoint requests interrupt a
 * guest blocked on its input.
 */
#include <stdio.h>
#include <unistd.h>

int main(void)
{
	char buf[256];
	ssize_t n = read(0, buf, sizeof buf);
	printf("read %zd\n", n);
	return 0;
}
