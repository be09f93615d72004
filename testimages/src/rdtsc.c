/*
 * rdtsc - reads the TSC every way a program can, for --deterministic on
 * a KVM that ignores CR4.TSD (PVM), where emuckpt patches rdtsc and
 * rdtscp in executable pages so that they trap.
 *
 *   rdtsc            the default: prints TSC values and differences;
 *                    under --deterministic two runs with one seed print
 *                    the same bytes, and two reads in a row differ by 1000
 *   rdtsc checkpoint the same around emuckpt_checkpoint(), after the
 *                    generated code has run once (its patched page goes
 *                    into the image)
 *   rdtsc selfread   prints the first byte of a real rdtsc instruction of
 *                    the program read directly and read through write(2)
 *
 * What it covers, in that order:
 *   - rdtsc and rdtscp in the program's own (file-backed) text;
 *   - the byte sequences of rdtsc (0F 31) and rdtscp (0F 01 F9) inside the
 *     immediates of mov instructions, which must stay intact;
 *   - generated code in an anonymous mapping made executable by mprotect,
 *     with an rdtsc, an rdtsc pattern inside an immediate, and an rdtsc
 *     whose two bytes straddle a page boundary;
 *   - self-modifying code in a PROT_READ|PROT_WRITE|PROT_EXEC mapping:
 *     rdtsc code run, overwritten by other code, run, restored, run.
 * Lines: "NAME: VALUE", then "ok" (or FAIL lines and exit status 1).
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "emuckpt.h"

static int failures;

static void check(int cond, const char *what)
{
	if (!cond) {
		printf("FAIL %s\n", what);
		failures++;
	}
}

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return (uint64_t)hi << 32 | lo;
}

static inline uint64_t rdtscp(uint32_t *aux)
{
	uint32_t lo, hi, c;
	__asm__ volatile("rdtscp" : "=a"(lo), "=d"(hi), "=c"(c));
	*aux = c;
	return (uint64_t)hi << 32 | lo;
}

/* An rdtsc whose address the program knows (selfread). */
extern const unsigned char tsc_site[];
__attribute__((noinline)) static uint64_t rdtsc_at_site(void)
{
	uint32_t lo, hi;
	__asm__ volatile(".globl tsc_site\ntsc_site: rdtsc" : "=a"(lo), "=d"(hi));
	return (uint64_t)hi << 32 | lo;
}

/* mov $0x90310f90, %r: the rdtsc bytes 0F 31 inside an immediate. */
__attribute__((noinline)) static uint32_t imm_rdtsc(void)
{
	uint32_t x;
	__asm__ volatile("movl $0x90310f90, %0" : "=r"(x));
	return x;
}

/* mov $0xf9010f90, %r: the rdtscp bytes 0F 01 F9 inside an immediate. */
__attribute__((noinline)) static uint32_t imm_rdtscp(void)
{
	uint32_t x;
	__asm__ volatile("movl $0xf9010f90, %0" : "=r"(x));
	return x;
}

/* rdtsc; shl $32, %rdx; or %rdx, %rax; ret */
static const unsigned char code_rdtsc[] = {0x0f, 0x31, 0x48, 0xc1, 0xe2, 0x20, 0x48, 0x09, 0xd0, 0xc3};
/* mov $0x90310f90, %eax; ret */
static const unsigned char code_imm[] = {0xb8, 0x90, 0x0f, 0x31, 0x90, 0xc3};

typedef uint64_t (*fn)(void);

static void jit_mprotect(void)
{
	long pg = sysconf(_SC_PAGESIZE);
	unsigned char *p = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		check(0, "mmap");
		return;
	}
	memset(p, 0x90, 2 * pg); /* nops */
	memcpy(p, code_imm, sizeof code_imm);
	memcpy(p + 16, code_rdtsc, sizeof code_rdtsc);
	/* rdtsc at the last byte of the first page: 0F | 31 */
	memcpy(p + pg - 1, code_rdtsc, sizeof code_rdtsc);
	check(mprotect(p, 2 * pg, PROT_READ | PROT_EXEC) == 0, "mprotect");
	uint64_t imm = ((fn)p)() & 0xffffffff;
	uint64_t a = ((fn)(p + 16))(), b = ((fn)(p + 16))();
	uint64_t c = ((fn)(p + pg - 1))(), d = ((fn)(p + pg - 1))();
	printf("jit_imm: %#llx\n", (unsigned long long)imm);
	printf("jit_rdtsc: %llu delta %llu\n", (unsigned long long)a, (unsigned long long)(b - a));
	printf("jit_straddle: %llu delta %llu\n", (unsigned long long)c, (unsigned long long)(d - c));
	check(imm == 0x90310f90, "jit_imm intact");
	munmap(p, 2 * pg);
}

static void jit_rwx(unsigned char *p)
{
	memcpy(p, code_rdtsc, sizeof code_rdtsc);
	uint64_t a = ((fn)p)(), b = ((fn)p)();
	memcpy(p, code_imm, sizeof code_imm);
	uint64_t imm = ((fn)p)() & 0xffffffff;
	memcpy(p, code_rdtsc, sizeof code_rdtsc);
	uint64_t c = ((fn)p)(), d = ((fn)p)();
	printf("smc_rdtsc: %llu delta %llu\n", (unsigned long long)a, (unsigned long long)(b - a));
	printf("smc_imm: %#llx\n", (unsigned long long)imm);
	printf("smc_rdtsc_again: %llu delta %llu\n", (unsigned long long)c, (unsigned long long)(d - c));
	check(imm == 0x90310f90, "smc_imm intact");
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "selfread") == 0) {
		int fds[2];
		unsigned char via_write = 0;
		if (pipe(fds) != 0 || write(fds[1], tsc_site, 1) != 1 || read(fds[0], &via_write, 1) != 1)
			check(0, "pipe");
		printf("direct: %02x\n", tsc_site[0]);
		printf("write: %02x\n", via_write);
		printf("rdtsc: %llu\n", (unsigned long long)rdtsc_at_site());
		return failures != 0;
	}

	uint64_t t0 = rdtsc(), t1 = rdtsc();
	printf("rdtsc: %llu delta %llu\n", (unsigned long long)t0, (unsigned long long)(t1 - t0));
	uint32_t aux0, aux1;
	uint64_t p0 = rdtscp(&aux0), p1 = rdtscp(&aux1);
	printf("rdtscp: %llu delta %llu aux %u\n", (unsigned long long)p0, (unsigned long long)(p1 - p0), aux1);
	uint64_t s0 = rdtsc_at_site(), s1 = rdtsc_at_site();
	printf("site_delta: %llu\n", (unsigned long long)(s1 - s0));
	printf("imm_rdtsc: %#x\n", imm_rdtsc());
	printf("imm_rdtscp: %#x\n", imm_rdtscp());
	check(imm_rdtsc() == 0x90310f90, "imm_rdtsc intact");
	check(imm_rdtscp() == 0xf9010f90, "imm_rdtscp intact");
	jit_mprotect();

	long pg = sysconf(_SC_PAGESIZE);
	unsigned char *rwx = mmap(NULL, pg, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	check(rwx != MAP_FAILED, "mmap rwx");
	if (rwx != MAP_FAILED)
		jit_rwx(rwx);

	if (argc > 1 && strcmp(argv[1], "checkpoint") == 0) {
		fflush(stdout);
		long r = emuckpt_checkpoint();
		printf("checkpoint: %s\n", r == 2 ? "restored" : r == 1 ? "after" : r < 0 ? "none" : "?");
		/* The RWX page was last executed, so it is patched in the image's memory. */
		uint64_t a = ((fn)rwx)(), b = ((fn)rwx)();
		printf("after_checkpoint: %llu delta %llu\n", (unsigned long long)a, (unsigned long long)(b - a));
		jit_mprotect();
	}
	if (failures == 0)
		printf("ok\n");
	return failures != 0;
}
