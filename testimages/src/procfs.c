/*
 * procfs - /proc for several tasks, checked against what the program
 * knows of itself, so that its output is the same natively and under
 * emuckpt: /proc/self and /proc/thread-self as links, /proc/PID/stat's 52
 * fields (pid, comm, state, ppid, pgrp, session, num_threads), status's
 * Name/State/Tgid/Pid/PPid/Threads/SigBlk/SigCgt lines, comm, cmdline,
 * exe, maps, task/ with two threads, a child's directory seen from the
 * parent (running, then a zombie in state Z), and the pids in /proc.
 * Prints "ok" lines; a mismatch prints "FAIL ..." and exits 1.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int failures;

static void expect(const char *what, int cond)
{
	if (!cond) {
		printf("FAIL %s\n", what);
		failures++;
	}
}

static ssize_t slurp(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	size_t n = 0;
	for (;;) {
		ssize_t r = read(fd, buf + n, size - 1 - n);
		if (r <= 0)
			break;
		n += r;
	}
	close(fd);
	buf[n] = 0;
	return n;
}

/* field returns field i (1-based) of a stat line, after "(comm)". */
static int stat_fields(const char *line, char fields[64][64])
{
	const char *open = strchr(line, '('), *close = strrchr(line, ')');
	if (!open || !close)
		return 0;
	int n = 0;
	snprintf(fields[n++], 64, "%.*s", (int)(open - line - 1), line);
	snprintf(fields[n++], 64, "%.*s", (int)(close - open + 1), open);
	for (const char *p = close + 1; *p && n < 64;) {
		while (*p == ' ' || *p == '\n')
			p++;
		if (!*p)
			break;
		int len = strcspn(p, " \n");
		snprintf(fields[n++], 64, "%.*s", len, p);
		p += len;
	}
	return n;
}

/* status_line finds "Key:\t..." in a status file. */
static const char *status_line(const char *status, const char *key, char *out, size_t size)
{
	char k[64];
	snprintf(k, sizeof k, "\n%s:\t", key);
	const char *p = strncmp(status, k + 1, strlen(k + 1)) == 0 ? status - 1 : strstr(status, k);
	if (!p)
		return "";
	p += strlen(k);
	snprintf(out, size, "%.*s", (int)strcspn(p, "\n"), p);
	return out;
}

static int wake[2];

/* worker sleeps in read until main writes. */
static void *worker(void *arg)
{
	char x;
	(void)arg;
	read(wake[0], &x, 1);
	return NULL;
}

static int has_pid(int pid)
{
	DIR *d = opendir("/proc");
	if (!d)
		return 0;
	struct dirent *e;
	int found = 0;
	while ((e = readdir(d)))
		if (atoi(e->d_name) == pid && e->d_type == DT_DIR)
			found = 1;
	closedir(d);
	return found;
}

static int count_tasks(int pid)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/task", pid);
	DIR *d = opendir(path);
	if (!d)
		return -1;
	struct dirent *e;
	int n = 0;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

static void handler(int sig) { (void)sig; }

int main(int argc, char **argv)
{
	(void)argc;
	char buf[16384], path[128], want[128], line[256];
	char f[64][64];
	int pid = getpid();

	/* /proc/self and /proc/thread-self. */
	ssize_t n = readlink("/proc/self", buf, sizeof buf);
	snprintf(want, sizeof want, "%d", pid);
	expect("readlink /proc/self", n > 0 && (buf[n] = 0, strcmp(buf, want) == 0));
	n = readlink("/proc/thread-self", buf, sizeof buf);
	snprintf(want, sizeof want, "%d/task/%d", pid, pid);
	expect("readlink /proc/thread-self", n > 0 && (buf[n] = 0, strcmp(buf, want) == 0));
	printf("self links ok\n");

	/* exe, comm, cmdline. */
	char exe[256];
	n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	expect("readlink /proc/self/exe", n > 0);
	exe[n > 0 ? n : 0] = 0;
	snprintf(path, sizeof path, "/proc/%d/exe", pid);
	n = readlink(path, buf, sizeof buf);
	expect("readlink /proc/PID/exe", n > 0 && (buf[n] = 0, strcmp(buf, exe) == 0));
	const char *base = strrchr(exe, '/') ? strrchr(exe, '/') + 1 : exe;
	slurp("/proc/self/comm", buf, sizeof buf);
	snprintf(want, sizeof want, "%.15s\n", base);
	expect("comm", strcmp(buf, want) == 0);
	n = slurp("/proc/self/cmdline", buf, sizeof buf);
	expect("cmdline", n == (ssize_t)strlen(argv[0]) + 1 && strcmp(buf, argv[0]) == 0);
	printf("exe comm cmdline ok\n");

	/* maps: the program's text is there. */
	slurp("/proc/self/maps", buf, sizeof buf);
	expect("maps names the program", strstr(buf, "r-xp") && strstr(buf, "[stack]"));
	printf("maps ok\n");

	/* stat and status with a second thread and a caught signal. */
	signal(SIGUSR1, handler);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR2);
	sigprocmask(SIG_BLOCK, &set, NULL);
	pthread_t th;
	if (pipe(wake) < 0)
		return 2;
	pthread_create(&th, NULL, worker, NULL);

	slurp("/proc/self/stat", buf, sizeof buf);
	int nf = stat_fields(buf, f);
	expect("stat has 52 fields", nf == 52);
	snprintf(want, sizeof want, "(%.15s)", base);
	expect("stat pid", atoi(f[0]) == pid);
	expect("stat comm", strcmp(f[1], want) == 0);
	expect("stat state R", strcmp(f[2], "R") == 0);
	expect("stat ppid", atoi(f[3]) == getppid());
	expect("stat pgrp", atoi(f[4]) == getpgrp());
	expect("stat session", atoi(f[5]) == getsid(0));
	expect("stat num_threads", atoi(f[19]) == 2);
	expect("stat exit_signal", atoi(f[37]) == SIGCHLD);
	printf("stat ok\n");

	slurp("/proc/self/status", buf, sizeof buf);
	snprintf(want, sizeof want, "%.15s", base);
	expect("status Name", strcmp(status_line(buf, "Name", line, sizeof line), want) == 0);
	expect("status Umask", strcmp(status_line(buf, "Umask", line, sizeof line), "0022") == 0);
	expect("status State", strcmp(status_line(buf, "State", line, sizeof line), "R (running)") == 0);
	expect("status Tgid", atoi(status_line(buf, "Tgid", line, sizeof line)) == pid);
	expect("status Pid", atoi(status_line(buf, "Pid", line, sizeof line)) == pid);
	expect("status PPid", atoi(status_line(buf, "PPid", line, sizeof line)) == getppid());
	expect("status Threads", atoi(status_line(buf, "Threads", line, sizeof line)) == 2);
	expect("status SigBlk", strtoull(status_line(buf, "SigBlk", line, sizeof line), NULL, 16) & (1ull << (SIGUSR2 - 1)));
	expect("status SigCgt", strtoull(status_line(buf, "SigCgt", line, sizeof line), NULL, 16) & (1ull << (SIGUSR1 - 1)));
	expect("status VmRSS", atoi(status_line(buf, "VmRSS", line, sizeof line)) > 0);
	printf("status ok\n");

	/* task/: both threads, each with its own stat. */
	expect("two tasks", count_tasks(pid) == 2);
	int tid = 0;
	{
		snprintf(path, sizeof path, "/proc/%d/task", pid);
		DIR *d = opendir(path);
		struct dirent *e;
		while (d && (e = readdir(d)))
			if (atoi(e->d_name) != pid && e->d_name[0] != '.')
				tid = atoi(e->d_name);
		if (d)
			closedir(d);
	}
	snprintf(path, sizeof path, "/proc/%d/task/%d/stat", pid, tid);
	for (int i = 0; i < 1000; i++) { /* until it blocks in read */
		expect("thread stat", slurp(path, buf, sizeof buf) > 0 && stat_fields(buf, f) == 52 && atoi(f[0]) == tid);
		if (strcmp(f[2], "S") == 0)
			break;
		usleep(1000);
	}
	expect("thread sleeps", strcmp(f[2], "S") == 0);
	snprintf(path, sizeof path, "/proc/%d/task/%d/status", pid, tid);
	slurp(path, buf, sizeof buf);
	expect("thread status Tgid", atoi(status_line(buf, "Tgid", line, sizeof line)) == pid);
	expect("thread status Pid", atoi(status_line(buf, "Pid", line, sizeof line)) == tid);
	write(wake[1], "x", 1);
	pthread_join(th, NULL);
	expect("one task after join", count_tasks(pid) == 1);
	printf("task ok\n");

	/* A child: seen in /proc, sleeping, then a zombie. */
	int fds[2];
	if (pipe(fds) < 0)
		return 2;
	pid_t c = fork();
	if (c == 0) {
		char x;
		close(fds[1]);
		read(fds[0], &x, 1);
		_exit(3);
	}
	close(fds[0]);
	expect("child in /proc", has_pid(c) && has_pid(pid));
	snprintf(path, sizeof path, "/proc/%d/stat", c);
	for (int i = 0; i < 1000; i++) { /* until it blocks in read */
		slurp(path, buf, sizeof buf);
		stat_fields(buf, f);
		if (strcmp(f[2], "S") == 0)
			break;
		usleep(1000);
	}
	expect("child sleeps", strcmp(f[2], "S") == 0);
	expect("child ppid", atoi(f[3]) == pid);
	close(fds[1]);
	siginfo_t si;
	waitid(P_PID, c, &si, WEXITED | WNOWAIT);
	slurp(path, buf, sizeof buf);
	stat_fields(buf, f);
	expect("zombie state Z", strcmp(f[2], "Z") == 0);
	snprintf(path, sizeof path, "/proc/%d/status", c);
	slurp(path, buf, sizeof buf);
	expect("zombie status", strcmp(status_line(buf, "State", line, sizeof line), "Z (zombie)") == 0);
	snprintf(path, sizeof path, "/proc/%d/exe", c);
	expect("zombie exe", readlink(path, buf, sizeof buf) < 0);
	int st;
	waitpid(c, &st, 0);
	expect("reaped child gone", !has_pid(c) && access(path, F_OK) < 0);
	printf("child ok\n");

	if (failures)
		return 1;
	printf("ok\n");
	return 0;
}
