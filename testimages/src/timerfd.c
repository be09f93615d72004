/*
 * timerfd: timerfd_create, timerfd_settime, timerfd_gettime and read,
 * compared line by line with Linux (errno values, flags, expiry counts
 * that hold on any machine). With the argument "loop" it instead reads a
 * 30 ms periodic timerfd eight times, printing each count and, with a
 * second argument "time", CLOCK_MONOTONIC in microseconds: under
 * --deterministic the same bytes in every run, checkpointed or not.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

static const char *err(long r) { return r >= 0 ? "ok" : strerror(errno); }

static int loop(int show_time)
{
	int fd = timerfd_create(CLOCK_MONOTONIC, 0);
	struct itimerspec its = {{0, 30000000}, {0, 30000000}};
	timerfd_settime(fd, 0, &its, NULL);
	puts("armed");
	for (int i = 0; i < 8; i++) {
		uint64_t n = 0;
		if (read(fd, &n, sizeof n) != sizeof n) {
			printf("read: %s\n", strerror(errno));
			return 1;
		}
		if (show_time) {
			struct timespec ts;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			printf("t=%lld ", ts.tv_sec * 1000000LL + ts.tv_nsec / 1000);
		}
		printf("read %d: n>=1=%d\n", i, n >= 1);
	}
	puts("done");
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	if (argc > 1 && strcmp(argv[1], "loop") == 0)
		return loop(argc > 2 && strcmp(argv[2], "time") == 0);

	int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	printf("timerfd_create: %s\n", err(fd));
	printf("F_GETFD: %d F_GETFL: %#x\n", fcntl(fd, F_GETFD), fcntl(fd, F_GETFL) & ~0x8000);
	uint64_t n = 0;
	printf("read unarmed: %s\n", err(read(fd, &n, sizeof n)));
	struct itimerspec its = {{0, 10000000}, {0, 10000000}}, cur;
	printf("settime: %s\n", err(timerfd_settime(fd, 0, &its, NULL)));
	timerfd_gettime(fd, &cur);
	printf("gettime: interval=%ld armed=%d\n", cur.it_interval.tv_nsec, cur.it_value.tv_nsec > 0 && cur.it_value.tv_nsec <= 10000000);
	struct timespec wait = {0, 55000000};
	nanosleep(&wait, NULL);
	printf("read: %s ", err(read(fd, &n, sizeof n)));
	printf("count>=5=%d\n", n >= 5);
	printf("read again: %s\n", err(read(fd, &n, sizeof n)));
	nanosleep(&wait, NULL);
	char small[4];
	printf("read 4 bytes: %s\n", err(read(fd, small, sizeof small)));
	printf("write: %s\n", err(write(fd, &n, sizeof n)));
	printf("lseek: %s\n", err(lseek(fd, 0, SEEK_SET)));
	struct stat st;
	printf("fstat: %s\n", err(fstat(fd, &st)));
	struct itimerspec old;
	struct itimerspec zero = {0};
	timerfd_settime(fd, 0, &zero, &old);
	printf("disarm: old interval=%ld\n", old.it_interval.tv_nsec);
	timerfd_gettime(fd, &cur);
	printf("disarmed: %ld %ld\n", (long)cur.it_value.tv_sec, cur.it_value.tv_nsec);
	close(fd);

	/* blocking reads: a one-shot, then TFD_TIMER_ABSTIME on CLOCK_REALTIME */
	fd = timerfd_create(CLOCK_MONOTONIC, 0);
	its = (struct itimerspec){{0, 0}, {0, 20000000}};
	timerfd_settime(fd, 0, &its, NULL);
	n = 0;
	printf("blocking read: %s ", err(read(fd, &n, sizeof n)));
	printf("n=%llu\n", (unsigned long long)n);
	timerfd_gettime(fd, &cur);
	printf("one-shot after read: %ld %ld\n", (long)cur.it_value.tv_sec, cur.it_value.tv_nsec);
	close(fd);
	fd = timerfd_create(CLOCK_REALTIME, 0);
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	its = (struct itimerspec){{0, 0}, {now.tv_sec, now.tv_nsec}};
	its.it_value.tv_nsec += 10000000;
	if (its.it_value.tv_nsec >= 1000000000) {
		its.it_value.tv_sec++;
		its.it_value.tv_nsec -= 1000000000;
	}
	printf("abstime settime: %s\n", err(timerfd_settime(fd, TFD_TIMER_ABSTIME, &its, NULL)));
	n = 0;
	printf("abstime read: %s ", err(read(fd, &n, sizeof n)));
	printf("n=%llu\n", (unsigned long long)n);
	printf("settime(flags 4): %s\n", err(timerfd_settime(fd, 4, &its, NULL)));
	its.it_value.tv_nsec = 1000000000;
	printf("settime(nsec=1e9): %s\n", err(timerfd_settime(fd, 0, &its, NULL)));
	close(fd);

	printf("create(MONOTONIC_RAW): %s\n", err(timerfd_create(CLOCK_MONOTONIC_RAW, 0)));
	printf("create(PROCESS_CPUTIME): %s\n", err(timerfd_create(CLOCK_PROCESS_CPUTIME_ID, 0)));
	printf("create(flags 1): %s\n", err(timerfd_create(CLOCK_MONOTONIC, 1)));
	printf("settime(stdout): %s\n", err(timerfd_settime(1, 0, &its, NULL)));
	printf("gettime(99): %s\n", err(timerfd_gettime(99, &cur)));
	return 0;
}
