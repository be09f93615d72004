/*
 * devckpt: the checkpoint demo. It maps /dev/hpet and /dev/bsr8_0, keeps
 * anonymous memory with a pattern, marks a scratch range with
 * madvise(MADV_DONTDUMP), advances the BSR and waits for the HPET counter
 * to move, then checkpoints itself with emuckpt_checkpoint() and reports,
 * on each side of the checkpoint, what it sees:
 *
 *   side: after-checkpoint | restored | native
 *   anon: intact | corrupt
 *   scratch: zero | kept
 *   bsr: <8-byte load as hex>
 *   hpet_counter: started-over | continued   (restored runs only)
 *   hpet_enabled: 1
 *
 * Under --device-state=fresh the BSR reads zero and the HPET counter has
 * started over; under preserve both continue. The device mappings are at
 * the same addresses in every case.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include "emuckpt.h"
#include "errname.h"

#define ANON_PAGES 64
#define SCRATCH_PAGES 16

int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	int hfd = open("/dev/hpet", O_RDONLY);
	int bfd = open("/dev/bsr8_0", O_RDWR);
	if (hfd < 0 || bfd < 0) {
		printf("open: errno=%s (needs emuckpt's devices)\n", errname(errno));
		return 2;
	}
	volatile uint64_t *hpet = mmap(NULL, 4096, PROT_READ, MAP_SHARED, hfd, 0);
	volatile uint8_t *bsr = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, bfd, 0);
	size_t alen = ANON_PAGES * 4096, slen = SCRATCH_PAGES * 4096;
	uint8_t *anon = mmap(NULL, alen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t *scratch = mmap(NULL, slen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (hpet == MAP_FAILED || bsr == MAP_FAILED || anon == MAP_FAILED || scratch == MAP_FAILED) {
		printf("mmap: errno=%s\n", errname(errno));
		return 2;
	}
	for (size_t i = 0; i < alen; i++)
		anon[i] = (uint8_t)(i * 7 + 3);
	memset(scratch, 0xAB, slen);
	if (madvise(scratch, slen, MADV_DONTDUMP) != 0)
		printf("madvise: errno=%s\n", errname(errno));
	for (int p = 0; p < 5; p++)
		bsr[p] = 1;
	/* Let the counter run for about 0.1 s (at 14.318 MHz), far longer
	 * than a restore takes, so that a counter that started over reads
	 * less than it did here. */
	uint64_t c0 = hpet[0xF0 / 8];
	while (hpet[0xF0 / 8] - c0 < 1500000)
		;
	uint64_t before = hpet[0xF0 / 8];
	printf("before: bsr=%016llx hpet_counter_advancing=yes\n",
	       (unsigned long long)*(volatile uint64_t *)bsr);
	printf("mappings: hpet=%p bsr=%p\n", (void *)hpet, (void *)bsr);

	long r = emuckpt_checkpoint();
	const char *side = r == 1 ? "after-checkpoint" : r == 2 ? "restored" : "native";
	printf("side: %s (emuckpt_checkpoint returned %ld)\n", side, r);
	printf("mappings: hpet=%p bsr=%p\n", (void *)hpet, (void *)bsr);

	int ok = 1;
	for (size_t i = 0; i < alen; i++)
		if (anon[i] != (uint8_t)(i * 7 + 3))
			ok = 0;
	printf("anon: %s\n", ok ? "intact" : "corrupt");
	int zero = 1;
	for (size_t i = 0; i < slen; i++)
		if (scratch[i] != 0)
			zero = 0;
	printf("scratch: %s\n", zero ? "zero" : "kept");
	printf("bsr: %016llx\n", (unsigned long long)*(volatile uint64_t *)bsr);
	uint64_t after = hpet[0xF0 / 8];
	if (r == 2)
		printf("hpet_counter: %s\n", after >= before ? "continued" : "started-over");
	printf("hpet_enabled: %llu\n", (unsigned long long)(hpet[0x10 / 8] & 1));
	return 0;
}
