// Package kernel is the guest kernel of emuckpt: it gives a static Linux
// x86-64 program the system-call interface it expects while the program
// runs at CPL3 in a KVM virtual machine (package vmm).
//
// A Kernel owns one Machine and the processes in it. Each process has an
// address space (package guestmm), a file-descriptor table (package
// kernel/vfs) and tasks; a task is the register state that runs on a vCPU.
// Every piece of kernel-side state is a plain Go value so that a checkpoint
// can save it and a restore can build it again.
//
// Run schedules the tasks on the vCPUs in turns (sched.go), each vCPU
// driven by a host thread of its own under one big kernel lock (cpus.go):
// at each exit it dispatches a system call, resolves a page fault from the
// process's VMAs, emulates a trapped rdtsc under deterministic time, or
// turns an exception into the signal Linux would send. A call that must
// wait blocks its task, never a host thread, and is made again when the
// wait is over. A fatal signal ends its process; the run ends when the
// first process does, with its status (128+signo for a signal, and a
// report on the log writer).
//
// Outside deterministic time every process has a vDSO (vdso.go, the
// image in kernel/vdso): its clock functions read the guest's TSC and a
// page of parameters the kernel keeps, and the kernel's own clock
// computes the same formula, so neither can contradict the other.
//
// Guest pointers never reach Go slices directly: every read and write goes
// through the address space's CopyIn/CopyOut, so a bad pointer is EFAULT
// for the guest, never a panic in the VMM.
package kernel
