// Package loader turns a static Linux x86-64 ELF executable into a load
// plan, and builds the initial user stack the program expects at entry.
//
// It does no mapping itself and does not depend on the guest memory
// manager: the kernel calls Parse, applies the resulting Image (one mapping
// per Segment, shifted by Image.Bias), then calls BuildStack (or
// LayoutStack) and copies the returned bytes to the top of the guest stack.
//
// # Loading an executable
//
//	img, err := loader.Parse(data) // data: the whole file
//	if err != nil {
//		// err is a *loader.Error; errors.Is(err, loader.ErrDynamic) etc.
//	}
//	bias := img.Bias()
//	for _, s := range img.Segments {
//		// Map pages [PageDown(s.Vaddr+bias), PageUp(s.Vaddr+s.Memsz+bias))
//		// with s.Prot, copy s.Data to s.Vaddr+bias, leave the rest zero.
//	}
//	entry := img.Entry + bias
//	brk := img.InitialBrk()
//
// Two consecutive segments may share one page (typically text ends and data
// begins in the same page). Their byte ranges never overlap: Parse rejects
// that. Linux maps segments in order with MAP_FIXED, so a shared page ends
// up with the protection of the later segment; a kernel that copies each
// segment's Data rather than mapping whole file pages should give a shared
// page the union of both protections so neither segment faults.
//
// # Untrusted input
//
// Parse treats its input as hostile. Every offset and size is checked
// against the file length with overflow-safe arithmetic, the program header
// count is limited the way Linux limits it (one page of headers, at most 73
// entries), and Segment.Data aliases the input instead of copying it, so
// Parse allocates a few kilobytes at most whatever the headers claim. Any
// problem is reported as a *Error whose Kind is one of the sentinel errors
// (ErrNotELF, ErrWrongArch, ErrDynamic, ErrCorrupt), with a message saying
// what is wrong and, where there is one, what to do about it.
//
// # Address layout
//
// ET_EXEC images load at their link addresses (bias 0). ET_DYN images
// (static-pie) load at Linux's ELF_ET_DYN_BASE without randomization,
// 0x555555554000 for page-aligned images, as Linux does for PIE programs
// when address-space randomization is disabled.
//
// # Initial stack
//
// BuildStack reproduces the layout of Linux's create_elf_tables (see
// stack.go for the picture): argc, argv, envp and the auxiliary vector at
// the 16-byte aligned stack pointer, with the strings, AT_RANDOM bytes and
// AT_PLATFORM string above them. Argument size limits follow Linux's
// execve, reporting ErrArgListTooLong (E2BIG).
package loader
