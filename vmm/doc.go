// Package vmm is the KVM machine underneath emuckpt's guest kernel.
//
// A Machine is one KVM virtual machine: guest RAM that the host allocates
// lazily, in one slot below the MMIO hole at 3 GiB and, for more RAM, a
// second one from 4 GiB on (RAMRanges; Mem spans both, and the hole's part
// of it is PROT_NONE), the x86-64 structures a CPU needs to take traps
// (GDT, IDT, TSS) and a few bytes of ring-0 entry code. A VCPU runs user code
// at CPL3 and returns to its caller with an Exit each time the guest needs
// the kernel: a system call, an exception, or an MMIO access that no device
// on the Bus could complete.
//
// The package hides the two ways a system call reaches the VMM:
//
//   - On hardware KVM (VMX/SVM) `syscall` switches to CPL0 and jumps to
//     LSTAR. LSTAR points at the trampoline page, whose first instruction is
//     `out` to the syscall port, so the call exits to the VMM at once.
//   - On PVM (software KVM, as on the CI machines) `syscall` jumps to LSTAR
//     but stays at CPL3. The trampoline page is user-executable and the TSS
//     I/O bitmap allows the syscall port, so the same `out` exits directly.
//
// Either way the VMM sees a port exit with RIP inside the trampoline and
// reads the user's registers from the KVM_CAP_SYNC_REGS area. Exceptions go
// through IDT gates to one `out` per vector on the exception port; the VMM
// reads the CPU's interrupt frame from the ring-0 stack. It returns to user
// mode by writing the user registers back, and, when the vCPU stopped in
// ring 0, the user code and stack segments too.
//
// Run returns only at a clean stop: the CPU at a user instruction boundary
// with no device access half done and no exception being delivered, so
// that the user state the kernel layer sees is exact and can be edited or
// saved at any return. A Kick from another goroutine (a checkpoint
// request, a timeout) waits for the next such point; runloop.go has the
// rules and the reasons.
//
// Page tables are edited by the VMM, which a shadow MMU does not see: after
// present entries change, the return to user mode goes through a ring-0
// stub that rewrites them from inside the guest (see VCPU.RefreshPages).
//
// A vCPU runs one user context (Context: registers, FS/GS base, CR3, FPU
// state) at a time; Switch changes it between two Runs, keeping the FPU
// state of the context it leaves, and Release hands it to another vCPU.
//
// A machine has up to MaxCPUs vCPUs. Each has its own IDT, TSS, exception
// stubs, ring-0 stack and refresh list (cpuStride apart); the GDT and the
// trampoline are shared. A translation flush deletes and re-adds a
// one-page slot in the MMIO hole (zapSlot: deleting any slot makes KVM
// forget every translation); with several vCPUs the kernel layer stops
// the others first (Machine.FlushTranslations), so that none goes on with
// a translation cached before.
//
// The guest's TSC (tsc.go): RDTSC reads the host's, GuestTSCMode finds
// how a guest's relates to it (unchanged on PVM, KVM's offset on hardware
// KVM) by running one rdtsc in a throwaway machine, GuestTSCOffset and
// TSCKHz give the rest that the kernel's vDSO clock needs.
//
// Nothing here knows about processes, files or VMAs: that is the kernel
// layer's job (package kernel). Page tables are built by package guestmm in
// guest RAM; the machine only installs its own kernel pages into them with
// MapKernel.
package vmm
