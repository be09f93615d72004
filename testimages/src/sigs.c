/*
 * sigs [pending] - signal bookkeeping without signal delivery.
 *
 * Default mode:
 *   rt_sigaction   install a SIGUSR1 handler (SA_RESTART, mask {SIGUSR2})
 *                  and read it back; the old action must be SIG_DFL; set
 *                  SIG_IGN and read back; invalid signals give EINVAL.
 *   rt_sigprocmask block/unblock SIGUSR1 round trip; SIGKILL/SIGSTOP
 *                  cannot be blocked; bad "how" and bad sigsetsize give
 *                  EINVAL.
 *   sigaltstack    initially disabled; set, read back, disable; too small
 *                  gives ENOMEM, bad flags EINVAL.
 * `sigs pending` additionally blocks SIGUSR1, sends it to itself with
 * kill(), checks rt_sigpending reports it, then sets SIG_IGN (which
 * discards a pending signal) and checks it is gone, so still no handler
 * ever runs.
 *
 * Each line is "NAME: ret=R errno=E" or "NAME: ok|FAIL" with decoded
 * values; the last line is "ok" (exit 0) or a FAIL count (exit 1).
 * rt_sigaction goes through libc (musl supplies the sa_restorer); the
 * rest use syscall(2) directly.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "errname.h"

#define KSIGSET 8 /* the kernel's sigset_t is 64 bits */

static int failures;

static long report(const char *name, long r, int want)
{
	int e = r == -1 ? errno : 0;
	printf("%s: ret=%ld errno=%s\n", name, r, errname(e));
	if (e != want) {
		printf("FAIL %s: want errno=%s\n", name, errname(want));
		failures++;
	}
	return r;
}
#define CALL(name, want, expr) (errno = 0, report((name), (long)(expr), (want)))

static void check(const char *name, int cond)
{
	printf("%s: %s\n", name, cond ? "ok" : "FAIL");
	if (!cond)
		failures++;
}

static void handler(int sig)
{
	(void)sig;
}

static uint64_t bit(int sig)
{
	return 1ull << (sig - 1);
}

/* Raw rt_sigprocmask on a 64-bit kernel sigset. */
static long procmask(int how, const uint64_t *set, uint64_t *old)
{
	return syscall(SYS_rt_sigprocmask, how, set, old, KSIGSET);
}

static void test_sigaction(void)
{
	struct sigaction sa, old, cur;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = handler;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, SIGUSR2);

	memset(&old, 0xff, sizeof old);
	CALL("sigaction_install_usr1", 0, sigaction(SIGUSR1, &sa, &old));
	check("sigaction_old_is_dfl", old.sa_handler == SIG_DFL);

	memset(&cur, 0, sizeof cur);
	CALL("sigaction_query_usr1", 0, sigaction(SIGUSR1, NULL, &cur));
	check("sigaction_query_handler", cur.sa_handler == handler);
	check("sigaction_query_sa_restart", (cur.sa_flags & SA_RESTART) != 0);
	check("sigaction_query_no_siginfo", (cur.sa_flags & SA_SIGINFO) == 0);
	check("sigaction_query_mask_usr2", sigismember(&cur.sa_mask, SIGUSR2) == 1);
	check("sigaction_query_mask_not_usr1", sigismember(&cur.sa_mask, SIGUSR1) == 0);

	/* SIG_IGN round trip, then back to SIG_DFL. */
	struct sigaction ign;
	memset(&ign, 0, sizeof ign);
	ign.sa_handler = SIG_IGN;
	CALL("sigaction_set_ign", 0, sigaction(SIGUSR1, &ign, &old));
	check("sigaction_old_is_handler", old.sa_handler == handler);
	sigaction(SIGUSR1, NULL, &cur);
	check("sigaction_query_ign", cur.sa_handler == SIG_IGN);
	struct sigaction dfl;
	memset(&dfl, 0, sizeof dfl);
	dfl.sa_handler = SIG_DFL;
	CALL("sigaction_set_dfl", 0, sigaction(SIGUSR1, &dfl, NULL));

	/* Untouched signal reports SIG_DFL. */
	sigaction(SIGUSR2, NULL, &cur);
	check("sigaction_usr2_default", cur.sa_handler == SIG_DFL);

	/* Invalid requests, straight to the kernel (musl would pre-check). */
	struct {
		void *handler;
		unsigned long flags;
		void *restorer;
		uint64_t mask;
	} kact = { (void *)handler, 0x04000000 /* SA_RESTORER */, NULL, 0 }, kold;
	CALL("rt_sigaction_sigkill", EINVAL, syscall(SYS_rt_sigaction, SIGKILL, &kact, NULL, KSIGSET));
	CALL("rt_sigaction_sigstop", EINVAL, syscall(SYS_rt_sigaction, SIGSTOP, &kact, NULL, KSIGSET));
	CALL("rt_sigaction_query_sigkill", 0, syscall(SYS_rt_sigaction, SIGKILL, NULL, &kold, KSIGSET));
	CALL("rt_sigaction_sig0", EINVAL, syscall(SYS_rt_sigaction, 0, NULL, &kold, KSIGSET));
	CALL("rt_sigaction_sig65", EINVAL, syscall(SYS_rt_sigaction, 65, NULL, &kold, KSIGSET));
	CALL("rt_sigaction_bad_sigsetsize", EINVAL, syscall(SYS_rt_sigaction, SIGUSR1, NULL, &kold, 4));
}

static void test_sigprocmask(void)
{
	uint64_t set = bit(SIGUSR1), old = ~0ull, cur = ~0ull;

	CALL("sigprocmask_query", 0, procmask(SIG_BLOCK, NULL, &cur));
	check("sigprocmask_initially_usr1_unblocked", !(cur & bit(SIGUSR1)));

	CALL("sigprocmask_block_usr1", 0, procmask(SIG_BLOCK, &set, &old));
	check("sigprocmask_old_no_usr1", !(old & bit(SIGUSR1)));
	procmask(SIG_BLOCK, NULL, &cur);
	check("sigprocmask_usr1_blocked", (cur & bit(SIGUSR1)) != 0);

	CALL("sigprocmask_unblock_usr1", 0, procmask(SIG_UNBLOCK, &set, &old));
	check("sigprocmask_old_has_usr1", (old & bit(SIGUSR1)) != 0);
	procmask(SIG_BLOCK, NULL, &cur);
	check("sigprocmask_usr1_unblocked", !(cur & bit(SIGUSR1)));

	/* SIG_SETMASK with SIGKILL/SIGSTOP: silently dropped. */
	uint64_t want = bit(SIGUSR2) | bit(SIGKILL) | bit(SIGSTOP), saved;
	CALL("sigprocmask_setmask", 0, procmask(SIG_SETMASK, &want, &saved));
	procmask(SIG_BLOCK, NULL, &cur);
	check("sigprocmask_setmask_usr2", (cur & bit(SIGUSR2)) != 0);
	check("sigprocmask_kill_stop_not_blocked", !(cur & (bit(SIGKILL) | bit(SIGSTOP))));
	procmask(SIG_SETMASK, &saved, NULL);

	CALL("sigprocmask_bad_how", EINVAL, procmask(99, &set, NULL));
	CALL("sigprocmask_bad_sigsetsize", EINVAL,
	     syscall(SYS_rt_sigprocmask, SIG_BLOCK, &set, NULL, 4));

	uint64_t pend = ~0ull;
	CALL("sigpending", 0, syscall(SYS_rt_sigpending, &pend, KSIGSET));
	check("sigpending_empty", pend == 0);
}

static void test_sigaltstack(void)
{
	static char stack[64 * 1024];
	stack_t ss, old;

	memset(&old, 0xff, sizeof old);
	CALL("sigaltstack_query", 0, syscall(SYS_sigaltstack, NULL, &old));
	check("sigaltstack_initially_disabled", old.ss_flags == SS_DISABLE);

	ss.ss_sp = stack;
	ss.ss_size = sizeof stack;
	ss.ss_flags = 0;
	CALL("sigaltstack_set", 0, syscall(SYS_sigaltstack, &ss, NULL));
	memset(&old, 0, sizeof old);
	CALL("sigaltstack_get", 0, syscall(SYS_sigaltstack, NULL, &old));
	check("sigaltstack_get_sp", old.ss_sp == stack);
	check("sigaltstack_get_size", old.ss_size == sizeof stack);
	check("sigaltstack_get_flags", old.ss_flags == 0);

	stack_t small = { .ss_sp = stack, .ss_size = 1000, .ss_flags = 0 };
	CALL("sigaltstack_too_small", ENOMEM, syscall(SYS_sigaltstack, &small, NULL));
	stack_t badfl = { .ss_sp = stack, .ss_size = sizeof stack, .ss_flags = 0x1234 };
	CALL("sigaltstack_bad_flags", EINVAL, syscall(SYS_sigaltstack, &badfl, NULL));

	stack_t dis = { .ss_sp = NULL, .ss_size = 0, .ss_flags = SS_DISABLE };
	CALL("sigaltstack_disable", 0, syscall(SYS_sigaltstack, &dis, &old));
	check("sigaltstack_disable_old_sp", old.ss_sp == stack);
	syscall(SYS_sigaltstack, NULL, &old);
	check("sigaltstack_disabled", old.ss_flags == SS_DISABLE);
}

static void test_pending(void)
{
	uint64_t set = bit(SIGUSR1), pend = 0;
	procmask(SIG_BLOCK, &set, NULL);
	CALL("kill_self_usr1_blocked", 0, kill(getpid(), SIGUSR1));
	CALL("sigpending_after_kill", 0, syscall(SYS_rt_sigpending, &pend, KSIGSET));
	check("sigpending_has_usr1", (pend & bit(SIGUSR1)) != 0);

	/* Setting SIG_IGN discards the pending instance. */
	struct sigaction ign;
	memset(&ign, 0, sizeof ign);
	ign.sa_handler = SIG_IGN;
	CALL("sigaction_ign_discards", 0, sigaction(SIGUSR1, &ign, NULL));
	pend = ~0ull;
	syscall(SYS_rt_sigpending, &pend, KSIGSET);
	check("sigpending_usr1_discarded", !(pend & bit(SIGUSR1)));
	procmask(SIG_UNBLOCK, &set, NULL);
	/* Back to default only after it is gone. */
	struct sigaction dfl;
	memset(&dfl, 0, sizeof dfl);
	dfl.sa_handler = SIG_DFL;
	sigaction(SIGUSR1, &dfl, NULL);
}

int main(int argc, char **argv)
{
	int pending = argc > 1 && strcmp(argv[1], "pending") == 0;
	if (argc > 1 && !pending) {
		fprintf(stderr, "usage: sigs [pending]\n");
		return 2;
	}

	test_sigaction();
	test_sigprocmask();
	test_sigaltstack();
	if (pending)
		test_pending();

	if (failures) {
		printf("FAIL %d\n", failures);
		return 1;
	}
	printf("ok\n");
	return 0;
}
