/*
 * sighandler: signal handlers as programs use them, compared line by line
 * with Linux: a SA_SIGINFO handler for raise(SIGUSR1) (si_code SI_TKILL),
 * a handler run on the alternate stack, SA_RESETHAND, a blocked signal
 * delivered when it is unblocked, nested signals, FPU registers preserved
 * across a handler, and recovery from SIGSEGV and SIGFPE with siglongjmp.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile int got, got_code, on_alt, nested;
static char altstack[65536];
static sigjmp_buf env;
static volatile uintptr_t fault_addr;

static void info_handler(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	got = sig;
	got_code = si->si_code;
}

static volatile int alt_flags, alt_change;

static void alt_handler(int sig)
{
	char probe;
	(void)sig;
	on_alt = (uintptr_t)&probe >= (uintptr_t)altstack && (uintptr_t)&probe < (uintptr_t)altstack + sizeof altstack;
	stack_t cur, again = {.ss_sp = altstack, .ss_size = sizeof altstack};
	sigaltstack(NULL, &cur);
	alt_flags = cur.ss_flags;
	alt_change = sigaltstack(&again, NULL) == 0 ? 0 : errno;
}

static void inner(int sig) { (void)sig; nested = nested * 10 + 2; }

static void outer(int sig)
{
	(void)sig;
	nested = nested * 10 + 1;
	raise(SIGUSR2); /* SIGUSR2 is not blocked here: it nests */
	nested = nested * 10 + 3;
}

static void fpu_handler(int sig)
{
	(void)sig;
	volatile double x = 1e300;
	x = x * 3.0; /* clobber the FPU/SSE registers */
	(void)x;
}

static void jump_handler(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	fault_addr = (uintptr_t)si->si_addr;
	siglongjmp(env, sig);
}

int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	struct sigaction sa;

	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = info_handler;
	sa.sa_flags = SA_SIGINFO;
	sigaction(SIGUSR1, &sa, NULL);
	raise(SIGUSR1);
	printf("siginfo: sig=%d code=%s\n", got, got_code == SI_TKILL ? "SI_TKILL" : got_code == SI_USER ? "SI_USER" : "other");
	got = 0;
	kill(getpid(), SIGUSR1);
	printf("kill: sig=%d code=%s\n", got, got_code == SI_USER ? "SI_USER" : "other");

	stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack};
	sigaltstack(&ss, NULL);
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = alt_handler;
	sa.sa_flags = SA_ONSTACK;
	sigaction(SIGUSR2, &sa, NULL);
	raise(SIGUSR2);
	printf("altstack: %s\n", on_alt ? "handler ran on it" : "NOT on it");
	printf("altstack in handler: ss_flags=%s change=%s\n", alt_flags == SS_ONSTACK ? "SS_ONSTACK" : "other",
	       alt_change == EPERM ? "EPERM" : "allowed");

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = alt_handler;
	sa.sa_flags = SA_RESETHAND;
	sigaction(SIGWINCH, &sa, NULL);
	raise(SIGWINCH);
	struct sigaction old;
	sigaction(SIGWINCH, NULL, &old);
	printf("resethand: %s\n", old.sa_handler == SIG_DFL ? "back to SIG_DFL" : "still set");

	got = 0;
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigprocmask(SIG_BLOCK, &set, NULL);
	raise(SIGUSR1);
	printf("blocked: delivered=%d\n", got);
	sigpending(&set);
	printf("pending: %d\n", sigismember(&set, SIGUSR1));
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	printf("unblocked: delivered=%d\n", got);

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = outer;
	sigaction(SIGUSR1, &sa, NULL);
	sa.sa_handler = inner;
	sigaction(SIGUSR2, &sa, NULL);
	raise(SIGUSR1);
	printf("nested: %d\n", nested);

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = fpu_handler;
	sigaction(SIGUSR1, &sa, NULL);
	volatile double a = 1.5, b = 2.25;
	double before = a * b;
	raise(SIGUSR1);
	printf("fpu: %s\n", a * b == before ? "preserved" : "CLOBBERED");

	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = jump_handler;
	sa.sa_flags = SA_SIGINFO | SA_NODEFER;
	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGFPE, &sa, NULL);
	volatile uintptr_t bad = 0x10;
	int sig = sigsetjmp(env, 1);
	if (sig == 0)
		*(volatile int *)bad = 1;
	printf("recovered: sig=%d addr=%#lx\n", sig, (unsigned long)fault_addr);
	sig = sigsetjmp(env, 1);
	if (sig == 0) {
		volatile int zero = 0, hundred = 100;
		printf("%d\n", hundred / zero);
	}
	printf("recovered: sig=%d\n", sig);
	printf("ok\n");
	return 0;
}
