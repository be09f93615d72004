/*
 * hpet_fasync_ckpt - /dev/hpet's O_ASYNC signals across a checkpoint.
 *
 * Sets up Linux's hpet_fasync way of working (F_SETOWN, O_ASYNC, a SIGIO
 * handler, interrupts at 64 Hz), waits for one SIGIO, then checkpoints
 * itself (emuckpt_checkpoint). After the checkpoint, in the run that was
 * restored, it prints what came back:
 *
 *   before: sigio=1
 *   checkpoint: restored
 *   owner: getown_is_pid=1 async=1
 * and then with --device-state=preserve (the timer's interrupts go on)
 *   device: preserved freq=64
 * or with --device-state=fresh (a fresh open: no frequency, no
 * interrupts, so no SIGIO; the descriptor's owner and O_ASYNC are the
 * kernel's and stay)
 *   device: fresh freq=0
 *   fresh: poll=0 no_sigio=1
 * and in both cases, after two more SIGIOs (under preserve with no
 * further ioctl, under fresh once the program has set the frequency and
 * turned interrupts on again)
 *   after: sigio+2
 *   ok
 *
 * "checkpoint: written" instead of "restored" is a run with
 * --leave-running; without emuckpt (ENOSYS) or /dev/hpet it says so and
 * exits 2.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include "hpet_abi.h"

#include "emuckpt.h"
#include "errname.h"

static volatile sig_atomic_t sigio;

static void on_sigio(int sig) { (void)sig; sigio++; }

static void wait_for(int n)
{
	while (sigio < n)
		pause();
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGIO, on_sigio);
	int fd = open("/dev/hpet", O_RDONLY);
	if (fd < 0) {
		printf("open: errno=%s\n", errname(errno));
		return 2;
	}
	fcntl(fd, F_SETOWN, getpid());
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_ASYNC);
	ioctl(fd, HPET_IRQFREQ, 64);
	ioctl(fd, HPET_IE_ON, 0);
	wait_for(1);
	printf("before: sigio=1\n");
	sigio = 0;
	long r = emuckpt_checkpoint();
	if (r < 0) {
		printf("checkpoint: errno=%s\n", errname((int)-r));
		return 2;
	}
	printf("checkpoint: %s\n", r == 1 ? "written" : "restored");
	printf("owner: getown_is_pid=%d async=%d\n", fcntl(fd, F_GETOWN) == getpid(), (fcntl(fd, F_GETFL) & O_ASYNC) != 0);
	struct hpet_info info;
	ioctl(fd, HPET_INFO, &info);
	if (info.hi_ireqfreq == 0) {
		printf("device: fresh freq=0\n");
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int n = poll(&p, 1, 50);
		printf("fresh: poll=%d no_sigio=%d\n", n, sigio == 0);
		ioctl(fd, HPET_IRQFREQ, 64);
		ioctl(fd, HPET_IE_ON, 0);
		sigio = 0;
	} else {
		/* Interrupts are still on: HPET_IE_ON is not needed. */
		printf("device: preserved freq=%lu\n", info.hi_ireqfreq);
	}
	wait_for(2);
	printf("after: sigio+2\n");
	ioctl(fd, HPET_IE_OFF, 0);
	close(fd);
	printf("ok\n");
	return 0;
}
