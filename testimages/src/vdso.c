/*
 * The vDSO, seen from the guest.
 *
 *   vdso maps     print AT_SYSINFO_EHDR (0 or not) and the [vvar] and
 *                 [vdso] lines of /proc/self/maps
 *   vdso check N  interleave N reads of each served clock through the
 *                 vDSO (found in the image by its own symbol table, as
 *                 libc does) and through the system call; every vDSO
 *                 read must lie between the system calls around it and
 *                 the other way round. Then gettimeofday, time, getcpu,
 *                 clock_getres, a CPU-time clock and a bad clock id
 *                 through the vDSO, and mprotect of the vvar (EACCES). Prints "ok" and the largest gap
 *                 between a vDSO read and the system call after it.
 *   vdso bench N  N clock_gettime(CLOCK_MONOTONIC) through the vDSO, then
 *                 N through the system call; prints the times in ns.
 *   vdso spin S   read CLOCK_MONOTONIC through the vDSO for S seconds of
 *                 it, checking that it never goes back; prints "spun".
 */
#include <elf.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <sys/time.h>
#include <unistd.h>

typedef int (*cgt_fn)(clockid_t, struct timespec *);
typedef int (*gtod_fn)(struct timeval *, void *);
typedef time_t (*time_fn)(time_t *);
typedef long (*getcpu_fn)(unsigned *, unsigned *, void *);

/* vdsosym finds a LINUX_2.6 symbol in the vDSO through DT_HASH and the
 * version tables, as musl's __vdsosym does. */
static void *vdsosym(const char *name)
{
	uintptr_t base = getauxval(AT_SYSINFO_EHDR);
	if (!base)
		return NULL;
	Elf64_Ehdr *eh = (Elf64_Ehdr *)base;
	Elf64_Phdr *ph = (Elf64_Phdr *)(base + eh->e_phoff);
	Elf64_Dyn *dyn = NULL;
	uintptr_t bias = 0;
	for (int i = 0; i < eh->e_phnum; i++) {
		if (ph[i].p_type == PT_LOAD)
			bias = base + ph[i].p_offset - ph[i].p_vaddr;
		else if (ph[i].p_type == PT_DYNAMIC)
			dyn = (Elf64_Dyn *)(base + ph[i].p_offset);
	}
	if (!dyn)
		return NULL;
	char *strings = NULL;
	Elf64_Sym *syms = NULL;
	Elf64_Word *hash = NULL;
	Elf64_Half *versym = NULL;
	Elf64_Verdef *verdef = NULL;
	for (; dyn->d_tag != DT_NULL; dyn++) {
		uintptr_t p = bias + dyn->d_un.d_ptr;
		switch (dyn->d_tag) {
		case DT_STRTAB: strings = (char *)p; break;
		case DT_SYMTAB: syms = (Elf64_Sym *)p; break;
		case DT_HASH: hash = (Elf64_Word *)p; break;
		case DT_VERSYM: versym = (Elf64_Half *)p; break;
		case DT_VERDEF: verdef = (Elf64_Verdef *)p; break;
		}
	}
	if (!strings || !syms || !hash || !versym || !verdef)
		return NULL;
	for (Elf64_Word i = 0; i < hash[1]; i++) {
		if (ELF64_ST_TYPE(syms[i].st_info) != STT_FUNC || syms[i].st_shndx == SHN_UNDEF)
			continue;
		if (strcmp(name, strings + syms[i].st_name))
			continue;
		Elf64_Half v = versym[i] & 0x7fff;
		for (Elf64_Verdef *d = verdef;; d = (Elf64_Verdef *)((char *)d + d->vd_next)) {
			if (!(d->vd_flags & VER_FLG_BASE) && d->vd_ndx == v) {
				Elf64_Verdaux *aux = (Elf64_Verdaux *)((char *)d + d->vd_aux);
				if (!strcmp(strings + aux->vda_name, "LINUX_2.6"))
					return (void *)(bias + syms[i].st_value);
				break;
			}
			if (!d->vd_next)
				break;
		}
	}
	return NULL;
}

static int64_t ns_of(struct timespec ts) { return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec; }

static int64_t sys_ns(clockid_t c)
{
	struct timespec ts;
	if (syscall(SYS_clock_gettime, c, &ts)) {
		perror("clock_gettime");
		exit(1);
	}
	return ns_of(ts);
}

static int64_t vdso_ns(cgt_fn f, clockid_t c)
{
	struct timespec ts;
	int r = f(c, &ts);
	if (r) {
		fprintf(stderr, "vdso clock_gettime(%d) = %d\n", (int)c, r);
		exit(1);
	}
	return ns_of(ts);
}

static cgt_fn need_cgt(void)
{
	cgt_fn f = (cgt_fn)vdsosym("__vdso_clock_gettime");
	if (!f) {
		fprintf(stderr, "no __vdso_clock_gettime\n");
		exit(1);
	}
	return f;
}

static int maps(void)
{
	printf("AT_SYSINFO_EHDR %s\n", getauxval(AT_SYSINFO_EHDR) ? "set" : "absent");
	FILE *f = fopen("/proc/self/maps", "r");
	if (!f) {
		perror("maps");
		return 1;
	}
	char line[512];
	while (fgets(line, sizeof line, f))
		if (strstr(line, "[vdso]") || strstr(line, "[vvar]"))
			fputs(line, stdout);
	fclose(f);
	return 0;
}

static int check(long n)
{
	static const clockid_t clocks[] = {CLOCK_MONOTONIC, CLOCK_REALTIME, CLOCK_BOOTTIME, CLOCK_MONOTONIC_RAW,
					   CLOCK_TAI, CLOCK_MONOTONIC_COARSE, CLOCK_REALTIME_COARSE};
	cgt_fn cgt = need_cgt();
	int64_t maxgap = 0;
	for (size_t c = 0; c < sizeof clocks / sizeof clocks[0]; c++) {
		clockid_t id = clocks[c];
		int64_t prev = sys_ns(id);
		for (long i = 0; i < n; i++) {
			int64_t v = vdso_ns(cgt, id);
			int64_t s = sys_ns(id);
			if (v < prev || s < v) {
				printf("clock %d went back: syscall %lld, vdso %lld, syscall %lld\n", (int)id,
				       (long long)prev, (long long)v, (long long)s);
				return 1;
			}
			if (s - v > maxgap)
				maxgap = s - v;
			prev = s;
		}
	}

	/* gettimeofday and time, against the system calls around them. */
	gtod_fn gtod = (gtod_fn)vdsosym("__vdso_gettimeofday");
	time_fn tm = (time_fn)vdsosym("__vdso_time");
	if (!gtod || !tm || vdsosym("gettimeofday") != (void *)gtod || vdsosym("time") != (void *)tm) {
		printf("gettimeofday or time missing\n");
		return 1;
	}
	for (long i = 0; i < n; i++) {
		int64_t a = sys_ns(CLOCK_REALTIME);
		struct timeval tv;
		struct { int a, b; } tz = {-1, -1};
		if (gtod(&tv, &tz) || tz.a || tz.b) {
			printf("gettimeofday failed\n");
			return 1;
		}
		time_t t2, t1 = tm(&t2);
		int64_t b = sys_ns(CLOCK_REALTIME);
		int64_t us = (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
		if (us < a / 1000 || us > b / 1000 || t1 != t2 || t1 < a / 1000000000 || t1 > b / 1000000000) {
			printf("gettimeofday %lld us or time %lld out of [%lld, %lld] ns\n", (long long)us, (long long)t1,
			       (long long)a, (long long)b);
			return 1;
		}
	}

	/* Fallbacks: a CPU-time clock and a bad id go to the kernel. */
	struct timespec ts;
	if (cgt(CLOCK_PROCESS_CPUTIME_ID, &ts) || ns_of(ts) <= 0) {
		printf("CLOCK_PROCESS_CPUTIME_ID failed\n");
		return 1;
	}
	if (cgt(12345, &ts) != -EINVAL) {
		printf("bad clock id not EINVAL\n");
		return 1;
	}
	errno = 0;
	if (clock_gettime(12345, &ts) != -1 || errno != EINVAL) {
		printf("libc's clock_gettime(12345) not EINVAL\n");
		return 1;
	}
	cgt_fn getres = (cgt_fn)vdsosym("__vdso_clock_getres");
	if (!getres || getres(CLOCK_MONOTONIC, &ts) || ts.tv_sec != 0 || ts.tv_nsec != 1) {
		printf("clock_getres\n");
		return 1;
	}
	getcpu_fn gc = (getcpu_fn)vdsosym("__vdso_getcpu");
	unsigned cpu = 99, node = 99, scpu = 98, snode = 98;
	if (!gc || gc(&cpu, &node, NULL) || syscall(SYS_getcpu, &scpu, &snode, NULL) || node != snode) {
		printf("getcpu: %u %u, system call: %u %u\n", cpu, node, scpu, snode);
		return 1;
	}
	/* The vvar stays read-only. */
	void *vvar = (void *)(getauxval(AT_SYSINFO_EHDR) - 4096);
	if (mprotect(vvar, 4096, PROT_READ | PROT_WRITE) != -1 || errno != EACCES) {
		printf("mprotect of the vvar: not EACCES\n");
		return 1;
	}
	printf("ok maxgap %lld ns\n", (long long)maxgap);
	return 0;
}

static int bench(long n)
{
	cgt_fn cgt = need_cgt();
	int64_t t0 = sys_ns(CLOCK_MONOTONIC);
	for (long i = 0; i < n; i++)
		vdso_ns(cgt, CLOCK_MONOTONIC);
	int64_t t1 = sys_ns(CLOCK_MONOTONIC);
	for (long i = 0; i < n; i++)
		sys_ns(CLOCK_MONOTONIC);
	int64_t t2 = sys_ns(CLOCK_MONOTONIC);
	printf("vdso %lld ns syscall %lld ns\n", (long long)(t1 - t0), (long long)(t2 - t1));
	return 0;
}

static int spin(long secs)
{
	cgt_fn cgt = need_cgt();
	int64_t start = vdso_ns(cgt, CLOCK_MONOTONIC), prev = start, reads = 0;
	while (prev - start < secs * 1000000000LL) {
		int64_t v = vdso_ns(cgt, CLOCK_MONOTONIC);
		if (v < prev) {
			printf("went back %lld -> %lld\n", (long long)prev, (long long)v);
			return 1;
		}
		prev = v;
		reads++;
	}
	printf("spun %lld reads\n", (long long)reads);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "maps"))
		return maps();
	long n = argc >= 3 ? atol(argv[2]) : 1000;
	if (argc >= 2 && !strcmp(argv[1], "check"))
		return check(n);
	if (argc >= 2 && !strcmp(argv[1], "bench"))
		return bench(n);
	if (argc >= 2 && !strcmp(argv[1], "spin"))
		return spin(n);
	fprintf(stderr, "usage: vdso maps|check N|bench N|spin S\n");
	return 2;
}
