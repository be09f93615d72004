/*
 * exitcode - process termination.
 *
 *   exitcode              exit(0)
 *   exitcode N            exit(N)  (status is N & 0xff)
 *   exitcode thread N     raw SYS_exit (not exit_group) with status N; as
 *                         the only thread this ends the process with N
 *   exitcode kill SIG     kill(getpid(), SIG); SIG is a number or one of
 *                         TERM KILL ABRT SEGV USR1 USR2 HUP INT QUIT ALRM
 *                         PIPE (the default action ends the process).
 *                         If it survives: prints "survived", exits 125.
 * Prints nothing on the normal paths.  Bad usage exits 126.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static const struct {
	const char *name;
	int sig;
} signames[] = {
	{ "TERM", SIGTERM }, { "KILL", SIGKILL }, { "ABRT", SIGABRT },
	{ "SEGV", SIGSEGV }, { "USR1", SIGUSR1 }, { "USR2", SIGUSR2 },
	{ "HUP", SIGHUP },   { "INT", SIGINT },   { "QUIT", SIGQUIT },
	{ "ALRM", SIGALRM }, { "PIPE", SIGPIPE },
};

static int parse_int(const char *s, int *out)
{
	char *end;
	long v = strtol(s, &end, 0);
	if (*s == 0 || *end != 0)
		return -1;
	*out = (int)v;
	return 0;
}

static int parse_sig(const char *s)
{
	int v;
	if (parse_int(s, &v) == 0)
		return v;
	if (strncmp(s, "SIG", 3) == 0)
		s += 3;
	for (size_t i = 0; i < sizeof signames / sizeof signames[0]; i++)
		if (strcmp(s, signames[i].name) == 0)
			return signames[i].sig;
	return -1;
}

int main(int argc, char **argv)
{
	int v;

	if (argc == 1)
		return 0;
	if (argc == 2 && parse_int(argv[1], &v) == 0)
		exit(v);
	if (argc == 3 && strcmp(argv[1], "thread") == 0 && parse_int(argv[2], &v) == 0) {
		syscall(SYS_exit, v);
		printf("survived SYS_exit\n");
		return 125;
	}
	if (argc == 3 && strcmp(argv[1], "kill") == 0) {
		int sig = parse_sig(argv[2]);
		if (sig <= 0) {
			fprintf(stderr, "bad signal %s\n", argv[2]);
			return 126;
		}
		kill(getpid(), sig);
		printf("survived\n");
		return 125;
	}
	fprintf(stderr, "usage: exitcode [N | thread N | kill SIG]\n");
	return 126;
}
