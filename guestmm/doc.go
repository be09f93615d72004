// Package guestmm is the memory manager of emuckpt's guest kernel.
//
// emuckpt runs static Linux x86-64 programs at CPL3 inside a KVM virtual
// machine and plays their kernel itself. guestmm does what Linux's mm does
// for such a process, in plain Go and without KVM, so that all of it can be
// unit tested:
//
//   - Frames hands out 4 KiB frames of guest physical RAM. Guest RAM is a
//     byte slice whose index is the guest-physical address. Frames are
//     reference counted (for copy on write after fork) and the allocator
//     remembers which frames are known to be zero, so pages the guest never
//     touched are never written by the host either. NewFramesAround
//     leaves out a hole (the MMIO hole between guest RAM's two slots): no
//     frame, run or 2 MiB block handed out reaches into it.
//   - PageTables builds x86-64 4-level page tables inside guest RAM, from
//     frames of the same allocator. Its Root is the guest's CR3. munmap
//     and mremap free the tables they leave empty, as Linux does.
//   - AddressSpace keeps a Linux-style set of VMAs (virtual memory areas)
//     and implements mmap, munmap, mprotect, mremap, brk, madvise, demand
//     paging, stack growth and copying between host and guest memory.
//
// # How a page gets mapped
//
// mmap only records a VMA. The guest's first access raises #PF; the VMM
// passes the address and error code to HandleFault, which finds the VMA,
// checks the access against its protection and installs a leaf PTE:
//
//   - anonymous memory (including heap and stack) gets a fresh zero frame;
//   - private and shared file mappings get a frame filled from
//     Backing.ReadAt, mapped read-only even in a writable VMA. The first
//     write faults again; the page then becomes the process's own and its
//     PTE gets the software bit Copied, which tells a checkpoint that the
//     page must be saved rather than re-read from the file;
//   - with Layout.FaultAround, the empty slots of the aligned block around
//     the fault are filled too: zero pages in anonymous memory, and after
//     a read fault the file's pages in a file mapping (not past the page
//     holding the end of the file, not in shared PageCache mappings);
//   - device mappings (DeviceBacking) map straight to the device's MMIO
//     window with caching disabled and the software bit Special; they use
//     no RAM frame and are never copied.
//
// With Layout.HugePages, a fault in private anonymous memory whose 2 MiB
// aligned neighbourhood lies wholly inside its VMA maps all of it at once
// with one 2 MiB page (PS in the page-directory entry) of HugeFrames
// fresh zero frames at a 2 MiB aligned physical address, as Linux's
// transparent huge pages do in mode "always" (MADV_NOHUGEPAGE opts out).
// The frames stay separately reference counted 4 KiB frames. Everything
// that reads page tables by page (PresentPages, Lookup, and so a
// checkpoint) sees the 512 4 KiB entries the page stands for; anything
// that changes part of it (munmap, mprotect, madvise, mremap of part, a
// write fault after fork) first splits it into a page table, using a
// table set aside when the page was mapped, so a split never fails; a
// change to all of it (munmap, mprotect, fork's write protection)
// removes or changes the 2 MiB entry itself, and Fork gives the child a
// read-only 2 MiB entry of the same frames. A changed 2 MiB entry is
// logged for TakeChanged as the page at the address the recursive slot
// shows its PD entry as a leaf (see PageTables.logPDE). See fault.go
// (faultHuge) and pagetables.go (split, visitWholeHuge).
//
// A frame mapped by more than one address space (after Fork) is mapped
// read-only; a write fault on a private mapping copies it. PROT_NONE pages
// keep their frame but lose the User bit, so every user access faults.
//
// With rdtsc patching on (Frames.EnableTSCPatch, for deterministic runs
// on a KVM that ignores CR4.TSD), a page of an executable mapping is
// executable in its PTE only once its frame has been scanned and its
// rdtsc/rdtscp instructions patched to trap, and never writable at the
// same time; see TSCPatch and docs/KERNEL.md.
//
// Leaf PTEs always carry User (except for PROT_NONE), Writable only when
// the VMA is writable and the page is the process's own, and NX unless the
// VMA is executable. Intermediate entries are Present|Writable|User so the
// leaf alone decides. Whenever a present leaf entry changes or goes away,
// PageTables.NeedFlush turns true and the VMM must reload CR3 before it
// resumes the guest; PageTables.TakeChanged tells which pages changed, or
// that every translation is stale (after a table page was freed).
//
// # Linux semantics
//
// Argument checking, error numbers and placement follow Linux x86-64:
// mappings without an address are placed top-down below Layout.MmapBase
// (a free hint address is honoured), MAP_FIXED replaces what was there,
// MAP_FIXED_NOREPLACE fails with EEXIST, adjacent compatible VMAs merge,
// partial munmap/mprotect/madvise split VMAs, mremap shrinks, grows in
// place or moves the page table entries, brk grows a "[heap]" VMA, and
// stacks grow down on faults up to Layout.StackMax. Every method that takes
// guest-controlled addresses returns a syscall.Errno (unix.EINVAL,
// unix.ENOMEM, unix.EFAULT, ...) and never panics on bad input.
//
// Known differences from Linux:
//
//   - There is no page cache for files of the root: each mapping of such
//     a file has its own copy of the pages (the root is read-only, so a
//     MAP_SHARED mapping of it is never writable). Files whose pages are
//     already guest frames (PageCache: tmpfs, memfd) are mapped shared
//     with their own frames, so writes through a MAP_SHARED mapping are
//     the file's contents.
//   - mprotect checks the whole range before changing anything instead of
//     possibly applying the change to a prefix.
//   - mremap with old_size 0 only works for shared file mappings.
//   - Reading past the end of a file gives zero pages, not SIGBUS.
//   - Shared anonymous memory is one set of frames, not a memory object, so
//     Fork faults all of it in first, and MADV_DONTNEED leaves shared pages
//     in place (Linux would drop the PTEs and find the same data again).
//   - CopyIn/CopyOut on device mappings fail with EFAULT (MMIO is not RAM).
//   - No hugetlbfs (anonymous MAP_HUGETLB gives ENOMEM) and no RLIMIT_DATA
//     or RLIMIT_AS accounting.
//   - 2 MiB pages: a page of them is split on any change to part of it
//     and never collapsed again (no khugepaged); no huge zero page (a
//     read fault takes real frames); they are not used for executable,
//     shared or grows-down memory, nor where a page table is already in
//     place (a 2 MiB slot that held 4 KiB pages), nor when fewer than
//     hugeReserve frames would be left; a restore maps them with
//     InstallHugePage where the kernel put a 2 MiB block of page data
//     (Layout.HugeEligible tells where). A fork copies on write by 4 KiB page, as Linux does since
//     it splits the huge PMD on a copy-on-write fault. As on Linux,
//     private anonymous mmaps of a multiple of 2 MiB are placed 2 MiB
//     aligned and MAP_STACK implies MADV_NOHUGEPAGE.
//
// # State for checkpoint and fork
//
// All state is plain data: VMAs returns the VMAs (exported fields),
// PresentPages enumerates the present pages with their PTEs (the frame is
// PTE.Addr, its bytes Frames.Bytes), BrkRange and Layout give the rest.
// A checkpoint saves anonymous pages and file pages marked Copied; clean
// file pages can be read from the file again. RestoreVMA, RestoreBrk,
// InstallPage and InstallHugePage (or WriteForce) rebuild an address
// space from such a checkpoint. Fork builds a copy-on-write child. For
// incremental checkpoints Frames records every frame the VMM writes
// (Frames.TakeWritten, written.go): frames it hands out, copies to user
// memory, page tables, rdtsc patches, and file data written through
// WritableBytes; the guest's own writes come from KVM's dirty log
// (vmm.Machine.HarvestDirty). Every copy into guest memory calls
// PrepareWrite first (prepare.go).
//
// # Files
//
//   - frames.go: the frame allocator
//   - pte.go, pagetables.go: page-table entries and the 4-level tables
//   - vma.go: VMAs, protections, backings and the sorted VMA list (with
//     the kinds of the vDSO's VMAs, KindVDSO and KindVVar, which the
//     kernel makes and which never merge)
//   - mm.go: Layout, AddressSpace, mmap, munmap, mprotect, mremap, brk
//   - madvise.go: madvise
//   - fault.go: page faults, stack growth, populate
//   - copy.go: CopyIn, CopyOut, ReadString, WriteForce
//   - maps.go: /proc/self/maps text
//   - fork.go, restore.go: fork and checkpoint restore support (4 KiB
//     and 2 MiB pages)
//   - tscpatch.go: making rdtsc and rdtscp trap on PVM
//   - written.go: the frames the VMM wrote, for incremental checkpoints
//
// # Concurrency
//
// Frames may be shared by several address spaces and is safe for
// concurrent use. An AddressSpace and its PageTables are not: the caller
// serializes calls and keeps the vCPUs that use the tables stopped.
package guestmm
