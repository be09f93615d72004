/*
 * lacking: sub-commands emuckpt does not carry out must fail, never
 * succeed without doing anything. Emuckpt only (natively most succeed;
 * kill(-1) would reach the host's processes). Prints `NAME: ret=R
 * errno=E`; with -v emuckpt names each once on stderr.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "errname.h"

static void report(const char *name, long ret)
{
	printf("%s: ret=%ld errno=%s\n", name, ret, errname(ret < 0 ? errno : 0));
	errno = 0;
}

#define T(name, ...) report(name, syscall(__VA_ARGS__))

int main(void)
{
	struct rlimit rl = {1 << 20, RLIM_INFINITY};
	struct rlimit nofile = {512, 4096};
	struct flock lk = {.l_type = F_RDLCK, .l_whence = SEEK_SET};
	int p[2];
	if (pipe(p) != 0)
		return 2;

	T("prlimit_stack_change", SYS_prlimit64, 0, RLIMIT_STACK, &rl, NULL);
	T("prlimit_stack_change_again", SYS_prlimit64, 0, RLIMIT_STACK, &rl, NULL);
	T("prlimit_nofile", SYS_prlimit64, 0, RLIMIT_NOFILE, &nofile, NULL);
	T("fcntl_setlk", SYS_fcntl, 0, F_SETLK, &lk);
	T("fcntl_getown", SYS_fcntl, 0, F_GETOWN);
	T("fcntl_unknown", SYS_fcntl, 0, 12345);
	T("arch_prctl_set_cpuid", SYS_arch_prctl, 0x1012, 0);
	T("arch_prctl_shstk_status", SYS_arch_prctl, 0x5005, 0);
	T("arch_prctl_unknown", SYS_arch_prctl, 0x9999, 0);
	T("ioctl_unknown", SYS_ioctl, p[0], 0x1234, 0);
	T("kill_minus_one", SYS_kill, -1, 0);
	T("fchmod_pipe", SYS_fchmod, p[0], 0600);
	return 0;
}
