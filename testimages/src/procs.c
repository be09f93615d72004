/*
 * procs: processes. fork, wait4/waitpid/waitid with their statuses, pipes
 * between processes, SIGCHLD, getppid, process groups and sessions,
 * kill to a child, orphans, vfork and exec (with "exec" in argv[1] when
 * run with --root testimages/bin: the exec half needs a file system).
 * Prints only what is the same on Linux and under emuckpt.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t chld;
static void on_chld(int sig) { (void)sig; chld++; }

static void check(const char *what, int ok)
{
	if (!ok) {
		printf("FAIL %s (errno %d)\n", what, errno);
		exit(1);
	}
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	if (argc > 1 && strcmp(argv[1], "child-exec") == 0) {
		printf("exec'd: argc=%d argv1=%s fd9=%s\n", argc, argv[1], fcntl(9, F_GETFD) < 0 ? "closed" : "open");
		return 7;
	}
	pid_t me = getpid();

	/* fork and exit statuses */
	for (int code = 0; code < 3; code++) {
		pid_t c = fork();
		check("fork", c >= 0);
		if (c == 0) {
			check("getppid", getppid() == me);
			_exit(code * 10);
		}
		int st;
		check("waitpid", waitpid(c, &st, 0) == c);
		printf("child exit: exited=%d status=%d\n", WIFEXITED(st), WEXITSTATUS(st));
	}

	/* killed by a signal */
	pid_t c = fork();
	if (c == 0) {
		for (;;)
			pause();
	}
	check("kill", kill(c, SIGTERM) == 0);
	int st;
	check("waitpid killed", waitpid(c, &st, 0) == c);
	printf("child killed: signaled=%d sig=%d\n", WIFSIGNALED(st), WTERMSIG(st));

	/* a pipe between processes, in both directions */
	int p[2], q[2];
	check("pipe", pipe(p) == 0 && pipe(q) == 0);
	c = fork();
	if (c == 0) {
		close(p[1]);
		close(q[0]);
		char buf[64];
		long total = 0;
		ssize_t n;
		while ((n = read(p[0], buf, sizeof buf)) > 0)
			total += n;
		char out[32];
		int len = snprintf(out, sizeof out, "%ld", total);
		write(q[1], out, len);
		_exit(0);
	}
	close(p[0]);
	close(q[1]);
	char big[100000];
	memset(big, 'x', sizeof big);
	size_t done = 0;
	while (done < sizeof big) {
		ssize_t n = write(p[1], big + done, sizeof big - done);
		check("write pipe", n > 0);
		done += n;
	}
	close(p[1]);
	char reply[32] = {0};
	check("read reply", read(q[0], reply, sizeof reply - 1) > 0);
	printf("child read %s bytes through the pipe\n", reply);
	check("reap pipe child", waitpid(c, &st, 0) == c && WIFEXITED(st));
	close(q[0]);

	/* WNOHANG, ECHILD, SIGCHLD */
	struct sigaction sa = {.sa_handler = on_chld};
	sigaction(SIGCHLD, &sa, NULL);
	int r[2];
	pipe(r);
	c = fork();
	if (c == 0) {
		char b;
		read(r[0], &b, 1);
		_exit(3);
	}
	printf("WNOHANG before exit: %d\n", waitpid(c, &st, WNOHANG));
	write(r[1], "g", 1);
	siginfo_t si;
	memset(&si, 0, sizeof si);
	check("waitid", waitid(P_PID, c, &si, WEXITED) == 0);
	printf("waitid: signo=%d code=%d pid_ok=%d status=%d\n", si.si_signo, si.si_code, si.si_pid == c, si.si_status);
	printf("SIGCHLD seen: %d\n", chld > 0);
	errno = 0;
	int w = wait(&st);
	printf("wait with no children: %d %s\n", w, errno == ECHILD ? "ECHILD" : "?");
	signal(SIGCHLD, SIG_DFL);

	/* process groups */
	c = fork();
	if (c == 0) {
		check("setpgid child", setpgid(0, 0) == 0);
		printf("child pgid is own pid: %d\n", getpgrp() == getpid());
		errno = 0;
		int s = setsid();
		printf("setsid as group leader: %d %s\n", s, errno == EPERM ? "EPERM" : "?");
		_exit(0);
	}
	waitpid(c, &st, 0);
	c = fork();
	if (c == 0) {
		pid_t s = setsid();
		printf("setsid: ok=%d sid==pid=%d pgid==pid=%d\n", s == getpid(), getsid(0) == getpid(), getpgid(0) == getpid());
		_exit(0);
	}
	waitpid(c, &st, 0);
	errno = 0;
	int k = kill(99999, 0);
	printf("kill nonexistent: %d %s\n", k, errno == ESRCH ? "ESRCH" : "?");

	/* an orphan: the grandchild outlives its parent and is reparented */
	int d[2];
	pipe(r);
	pipe(d);
	c = fork();
	if (c == 0) {
		pid_t g = fork();
		if (g == 0) {
			char b;
			read(r[0], &b, 1); /* until the parent has exited */
			printf("orphan's parent is not the old one: %d\n", getppid() != c);
			write(d[1], "d", 1);
			_exit(0);
		}
		_exit(0);
	}
	waitpid(c, &st, 0);
	write(r[1], "g", 1);
	char b;
	read(d[0], &b, 1);

	/* vfork shares memory until exec or exit */
	volatile int shared = 0;
	c = vfork();
	if (c == 0) {
		shared = 42;
		_exit(5);
	}
	waitpid(c, &st, 0);
	printf("vfork: shared=%d status=%d\n", shared, WEXITSTATUS(st));

	if (argc > 1 && strcmp(argv[1], "exec") == 0) {
		int fd = open("/procs", O_RDONLY | O_CLOEXEC);
		check("open", fd >= 0);
		dup2(fd, 9); /* without close-on-exec */
		fcntl(9, F_SETFD, FD_CLOEXEC);
		c = fork();
		if (c == 0) {
			execl("/procs", "procs", "child-exec", (char *)NULL);
			_exit(99);
		}
		waitpid(c, &st, 0);
		printf("exec child status: %d\n", WEXITSTATUS(st));
		errno = 0;
		execl("/nonexistent", "x", (char *)NULL);
		printf("exec missing: %s\n", errno == ENOENT ? "ENOENT" : "?");
	}
	printf("done\n");
	return 0;
}
