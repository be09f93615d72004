/*
 * emuckpt.h - let a guest program checkpoint itself under emuckpt.
 *
 *   long r = emuckpt_checkpoint();
 *
 * returns
 *    1  in the run that goes on after the image was written
 *       (with `emuckpt run --leave-running`; without it the run stops
 *       right after writing the image, with exit status 0),
 *    2  in a run restored from that image (`emuckpt restore IMAGE`),
 *   <0  a negative errno on failure: -EDESTADDRREQ when emuckpt was given
 *       no --checkpoint-to FILE, -EIO when the checkpoint failed (the
 *       image could not be written, or the process holds something an
 *       image cannot hold yet, such as a socket; stderr says which), and
 *       -ENOSYS when the program runs on a real Linux kernel.
 *
 * Like DMTCP's checkpoint call, the two success values tell the program
 * which side of the checkpoint it is on.
 *
 * Mechanism: a system call with a number Linux does not have (0x454d55,
 * "EMU"). emuckpt's kernel handles it at the system-call exit boundary:
 * it snapshots the process with RAX set to 2 in the saved registers,
 * writes the image, and returns 1 to the running program. A restored run
 * therefore resumes right after the syscall instruction and sees 2. On
 * Linux the call fails with ENOSYS, so the same binary runs anywhere.
 */
#ifndef EMUCKPT_H
#define EMUCKPT_H

#define EMUCKPT_SYS_CHECKPOINT 0x454d55L

static inline long emuckpt_checkpoint(void)
{
	long ret;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(EMUCKPT_SYS_CHECKPOINT)
			 : "rcx", "r11", "memory");
	return ret;
}

#endif
