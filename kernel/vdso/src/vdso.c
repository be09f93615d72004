/*
 * The vDSO of emuckpt's guest kernel: clock_gettime, gettimeofday, time,
 * clock_getres and getcpu without a system call, as Linux's x86-64 vDSO
 * offers them (same symbols, same version LINUX_2.6).
 *
 * The time comes from the vvar page, which the VMM maps one page below
 * this image and rewrites under a sequence counter (odd while it writes):
 *
 *	ns(clock) = mono_base + ((tsc - tsc_base) * mult >> shift) + off[clock]
 *
 * where tsc is the guest's rdtsc. The guest kernel computes its own
 * clock_gettime with the same formula and parameters, so the two never
 * disagree. A clock whose bit is clear in clock_mask, and every clock
 * while flags has no VVAR_VALID, is the system call. The layout of
 * struct vvar is kernel/vdso.go's vvarLayout; change both together.
 *
 * Built by the Makefile in this directory into vdso.so, which is
 * committed and embedded (go:embed). No libc: freestanding code only.
 */

typedef unsigned int u32;
typedef unsigned long u64;
typedef long s64;

#define VVAR_VALID 1u
#define NCLOCKS 16

struct vvar {
	volatile u32 seq;
	volatile u32 flags;
	volatile u32 clock_mask;
	volatile u32 shift;
	volatile u64 tsc_base;
	volatile u64 mult;
	volatile s64 mono_base;
	volatile s64 off[NCLOCKS];
};

struct timespec {
	s64 tv_sec;
	s64 tv_nsec;
};

struct timeval {
	s64 tv_sec;
	s64 tv_usec;
};

struct timezone {
	int tz_minuteswest;
	int tz_dsttime;
};

/* Defined by the linker script: the page before the image. */
extern const struct vvar vvar_page __attribute__((visibility("hidden")));

#define barrier() __asm__ __volatile__("" ::: "memory")

enum { SYS_gettimeofday = 96, SYS_time = 201, SYS_clock_gettime = 228, SYS_clock_getres = 229, SYS_getcpu = 309 };

static inline long syscall3(long n, long a, long b, long c)
{
	long r;
	__asm__ __volatile__("syscall"
			     : "=a"(r)
			     : "0"(n), "D"(a), "S"(b), "d"(c)
			     : "rcx", "r11", "memory");
	return r;
}

static inline u64 rdtsc_ordered(void)
{
	u32 lo, hi;
	__asm__ __volatile__("lfence; rdtsc" : "=a"(lo), "=d"(hi) :: "memory");
	return (u64)hi << 32 | lo;
}

/* vvar_ns reads clock clk in nanoseconds; 0 if the vvar does not serve it. */
static inline int vvar_ns(int clk, s64 *ns)
{
	const struct vvar *v = &vvar_page;
	u32 seq, shift;
	u64 tsc, base, mult, delta;
	s64 mono, off;

	if ((u32)clk >= NCLOCKS)
		return 0;
	for (;;) {
		seq = v->seq;
		barrier();
		if (seq & 1)
			continue;
		if (!(v->flags & VVAR_VALID) || !(v->clock_mask & (1u << clk)))
			return 0;
		base = v->tsc_base;
		mult = v->mult;
		shift = v->shift;
		mono = v->mono_base;
		off = v->off[clk];
		tsc = rdtsc_ordered();
		barrier();
		if (v->seq == seq)
			break;
	}
	/* Another vCPU's TSC may be a hair behind the one that set the base. */
	delta = tsc > base ? tsc - base : 0;
	*ns = mono + (s64)(u64)(((unsigned __int128)delta * mult) >> shift) + off;
	return 1;
}

int __vdso_clock_gettime(int clk, struct timespec *ts)
{
	s64 ns;

	if (!vvar_ns(clk, &ns))
		return syscall3(SYS_clock_gettime, clk, (long)ts, 0);
	ts->tv_sec = ns / 1000000000;
	ts->tv_nsec = ns % 1000000000;
	return 0;
}

int __vdso_gettimeofday(struct timeval *tv, struct timezone *tz)
{
	s64 ns;

	if (tv) {
		if (!vvar_ns(0, &ns))
			return syscall3(SYS_gettimeofday, (long)tv, (long)tz, 0);
		tv->tv_sec = ns / 1000000000;
		tv->tv_usec = ns % 1000000000 / 1000;
	}
	if (tz) {
		tz->tz_minuteswest = 0;
		tz->tz_dsttime = 0;
	}
	return 0;
}

s64 __vdso_time(s64 *t)
{
	s64 ns;

	if (!vvar_ns(0, &ns))
		return syscall3(SYS_time, (long)t, 0, 0);
	ns /= 1000000000;
	if (t)
		*t = ns;
	return ns;
}

int __vdso_clock_getres(int clk, struct timespec *res)
{
	s64 ns;

	/* Every clock the guest kernel serves ticks in nanoseconds. */
	if (!vvar_ns(clk, &ns))
		return syscall3(SYS_clock_getres, clk, (long)res, 0);
	if (res) {
		res->tv_sec = 0;
		res->tv_nsec = 1;
	}
	return 0;
}

long __vdso_getcpu(unsigned *cpu, unsigned *node, void *unused)
{
	return syscall3(SYS_getcpu, (long)cpu, (long)node, (long)unused);
}

int clock_gettime(int, struct timespec *) __attribute__((weak, alias("__vdso_clock_gettime")));
int gettimeofday(struct timeval *, struct timezone *) __attribute__((weak, alias("__vdso_gettimeofday")));
s64 time(s64 *) __attribute__((weak, alias("__vdso_time")));
int clock_getres(int, struct timespec *) __attribute__((weak, alias("__vdso_clock_getres")));
long getcpu(unsigned *, unsigned *, void *) __attribute__((weak, alias("__vdso_getcpu")));
