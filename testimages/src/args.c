/*
 * args - prints what the kernel handed the program at execve time:
 * argc/argv, the environment and selected auxiliary vector entries.
 *
 * Output (one item per line):
 *   argc=N
 *   argv[i]=...
 *   env=...                      (every environ entry, in order)
 *   auxv AT_PAGESZ=4096          (and AT_CLKTCK, AT_UID, ...)
 *   auxv AT_RANDOM=nonnull       (the 16 random bytes are not printed)
 *   auxv AT_EXECFN=...           (the path string passed to execve)
 *   ok
 * A missing auxv entry prints as "missing" and makes the program exit 1.
 */
#include <errno.h>
#include <stdio.h>
#include <sys/auxv.h>

extern char **environ;

static int failures;

/* Print a numeric auxv entry, or "missing" if the kernel did not supply it. */
static void print_aux(const char *name, unsigned long type)
{
	errno = 0;
	unsigned long v = getauxval(type);
	if (v == 0 && errno == ENOENT) {
		printf("auxv %s=missing\n", name);
		failures++;
		return;
	}
	printf("auxv %s=%lu\n", name, v);
}

int main(int argc, char **argv)
{
	printf("argc=%d\n", argc);
	for (int i = 0; i < argc; i++)
		printf("argv[%d]=%s\n", i, argv[i]);
	/* argv must be NULL-terminated. */
	if (argv[argc] != NULL) {
		printf("FAIL argv[argc] not NULL\n");
		failures++;
	}

	for (char **e = environ; *e; e++)
		printf("env=%s\n", *e);

	print_aux("AT_PAGESZ", AT_PAGESZ);
	print_aux("AT_CLKTCK", AT_CLKTCK);
	print_aux("AT_UID", AT_UID);
	print_aux("AT_EUID", AT_EUID);
	print_aux("AT_GID", AT_GID);
	print_aux("AT_EGID", AT_EGID);
	print_aux("AT_SECURE", AT_SECURE);
	print_aux("AT_PHENT", AT_PHENT);

	/* AT_RANDOM points at 16 random bytes; only its presence is stable. */
	errno = 0;
	unsigned long rnd = getauxval(AT_RANDOM);
	printf("auxv AT_RANDOM=%s\n", rnd ? "nonnull" : "null");
	if (!rnd)
		failures++;

	errno = 0;
	const char *execfn = (const char *)getauxval(AT_EXECFN);
	if (execfn) {
		printf("auxv AT_EXECFN=%s\n", execfn);
	} else {
		printf("auxv AT_EXECFN=missing\n");
		failures++;
	}

	if (failures) {
		printf("FAIL %d\n", failures);
		return 1;
	}
	printf("ok\n");
	return 0;
}
