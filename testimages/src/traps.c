/*
 * traps - what the CPU and the kernel do with instructions and returns
 * that user code should not get away with, compared line by line with
 * Linux.  Each case runs with handlers for SIGSEGV, SIGILL, SIGFPE and
 * SIGTRAP that print the signal and si_code (and si_addr where it is
 * meaningful) and siglongjmp back:
 *   int_0x80, int_0x21   `int n` from 64-bit user mode (no IA32 calls run)
 *   int_3                `int 3` (CD 03), as int3
 *   foreign_hypercall    the other vendor's hypervisor call (vmmcall on
 *                        Intel, vmcall on AMD): #UD on a real CPU; KVM
 *                        rewrites it in guest memory unless its hypercall
 *                        quirk is off (PVM ignores that setting)
 *   sse_divzero          SSE divide by zero with the exception unmasked
 *   x87_divzero          x87 divide by zero with the exception unmasked
 *   x87_invalid          x87 invalid operation (0/0) unmasked
 *   sigreturn_kernel     rt_sigreturn to a kernel-half RIP
 *   sigreturn_noncanon   rt_sigreturn to a non-canonical RIP
 *   sigreturn_top        rt_sigreturn to the last user page (TASK_SIZE)
 *   handler_kernel       a signal handler at a kernel-half address
 * Output: "NAME: SIGNAL CODE [addr=ADDR]" per case, then "done".
 * The vendor's own hypervisor call is left out on purpose: KVM completes
 * it from user mode itself (RAX = -1), and no VMM can turn that into
 * SIGILL.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <ucontext.h>
#include <unistd.h>

static sigjmp_buf env;
static const char *current;
static int show_addr;
static uintptr_t new_rip;

static const char *signame(int sig)
{
	switch (sig) {
	case SIGSEGV: return "SIGSEGV";
	case SIGILL: return "SIGILL";
	case SIGFPE: return "SIGFPE";
	case SIGTRAP: return "SIGTRAP";
	}
	return "other";
}

static void on_fault(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	if (show_addr)
		printf("%s: %s %d addr=%#lx\n", current, signame(sig), si->si_code, (unsigned long)(uintptr_t)si->si_addr);
	else
		printf("%s: %s %d\n", current, signame(sig), si->si_code);
	siglongjmp(env, 1);
}

/* on_usr1 returns to new_rip through rt_sigreturn. */
static void on_usr1(int sig, siginfo_t *si, void *ucv)
{
	(void)sig;
	(void)si;
	ucontext_t *uc = ucv;
	uc->uc_mcontext.gregs[REG_RIP] = (greg_t)new_rip;
}

static void run(const char *name, int addr, void (*fn)(void))
{
	current = name;
	show_addr = addr;
	if (sigsetjmp(env, 1) == 0) {
		fn();
		printf("%s: no signal\n", name);
	}
}

static void int80(void) { __asm__ volatile("int $0x80" ::"a"(20) : "memory"); }
static void int21(void) { __asm__ volatile("int $0x21" ::: "memory"); }
static void int3cd(void) { __asm__ volatile(".byte 0xcd, 0x03" ::: "memory"); }
static int amd(void)
{
	unsigned a, b, c, d;
	__asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0));
	return b == 0x68747541; /* "Auth"enticAMD */
}

static void foreign_hypercall(void)
{
	if (amd())
		__asm__ volatile("vmcall" ::"a"(0) : "memory");
	else
		__asm__ volatile("vmmcall" ::"a"(0) : "memory");
}

static void sse_divzero(void)
{
	unsigned mxcsr;
	__asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
	mxcsr &= ~(1u << 9); /* unmask ZM */
	__asm__ volatile("ldmxcsr %0" ::"m"(mxcsr));
	volatile double one = 1.0, zero = 0.0, r;
	r = one / zero;
	(void)r;
}

static void x87(unsigned short unmask, double a, double b)
{
	unsigned short cw;
	__asm__ volatile("fnstcw %0" : "=m"(cw));
	cw &= ~unmask;
	__asm__ volatile("fldcw %0" ::"m"(cw));
	volatile long double x = a, y = b, r;
	r = x / y;
	__asm__ volatile("fwait");
	(void)r;
}

static void x87_divzero(void) { x87(1 << 2, 1.0, 0.0); }
static void x87_invalid(void) { x87(1 << 0, 0.0, 0.0); }

static void sigreturn_to(void) { raise(SIGUSR1); }

static void handler_kernel(void)
{
	struct sigaction sa = {0};
	sa.sa_handler = (void (*)(int))(uintptr_t)0xffffffff81000000ul;
	sigaction(SIGUSR2, &sa, NULL);
	raise(SIGUSR2);
}

int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	struct sigaction sa = {0};
	sa.sa_sigaction = on_fault;
	sa.sa_flags = SA_SIGINFO | SA_NODEFER;
	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGILL, &sa, NULL);
	sigaction(SIGFPE, &sa, NULL);
	sigaction(SIGTRAP, &sa, NULL);
	sa.sa_sigaction = on_usr1;
	sa.sa_flags = SA_SIGINFO;
	sigaction(SIGUSR1, &sa, NULL);

	run("int_0x80", 0, int80);
	run("int_0x21", 0, int21);
	run("int_3", 0, int3cd);
	run("foreign_hypercall", 0, foreign_hypercall);
	run("sse_divzero", 0, sse_divzero);
	run("x87_divzero", 0, x87_divzero);
	run("x87_invalid", 0, x87_invalid);
	new_rip = 0xffff800000001000ul;
	run("sigreturn_kernel", 1, sigreturn_to);
	new_rip = 0x0000800000000000ul;
	run("sigreturn_noncanon", 1, sigreturn_to);
	new_rip = 0x00007ffffffff000ul;
	run("sigreturn_top", 1, sigreturn_to);
	run("handler_kernel", 1, handler_kernel);
	printf("done\n");
	return 0;
}
