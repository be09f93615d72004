package vmm

// Guest-physical layout of the machine's own pages. Everything below
// ramStart belongs to the VMM; guest page tables and user frames come from
// guestmm.Frames over [ramStart, memory size).
const (
	pageSize = 4096

	gdtPA   = 0x1000 // GDT (one page)
	idtPA   = 0x2000 // IDT: 256 gates of 16 bytes
	tssPA   = 0x3000 // TSS and its I/O permission bitmap
	stubPA  = 0x5000 // ring-0 exception stubs, the #UD dispatcher and the refresh stub
	kstack  = 0x6000 // ring-0 stack, two pages; top is kstackTop
	tramPA  = 0x9000 // syscall trampoline (user-executable)
	listPA  = 0xA000 // the page-refresh list (see refreshStub)
	ramBase = 0x100000

	kstackTop = 0x8000

	// Each vCPU has its own IDT, TSS, stubs, ring-0 stack and refresh
	// list: vCPU i's copy of the pages above (from idtPA to listPA, not
	// the GDT and the trampoline, which all share) is cpuStride*i bytes
	// higher. MaxCPUs of them fit below ramBase.
	cpuStride = 0x10000
	MaxCPUs   = 16

	// KernelBase is where the VMM's pages appear in every address space:
	// guest-virtual KernelBase+pa maps guest-physical pa, supervisor only.
	KernelBase = 0xffffff8000000000

	// TrampolineVA is LSTAR: the page just above Linux's TASK_SIZE, so no
	// user mapping can ever cover it.
	TrampolineVA = 0x7ffffffff000

	// Ports. The TSS I/O bitmap lets CPL3 reach SyscallPort only.
	SyscallPort   = 0xE0
	exceptionPort = 0xE1

	// Selectors (GDT index*8 | RPL).
	kernelCS = 0x08
	kernelSS = 0x10
	userCS32 = 0x18 | 3 // STAR user base; sysret uses base+16 for CS and base+8 for SS
	UserSS   = 0x20 | 3
	UserCS   = 0x28 | 3
	tssSel   = 0x30 // vCPU i's TSS descriptor is at tssSel+16*i

	// Vectors 0-31 each have a stubStride-byte stub.
	numVectors = 32
	stubStride = 16

	// refreshStub rewrites the page-table entries listed at listPA
	// through the recursive mapping and invalidates their pages, then
	// returns to user mode through the frame at refreshFrame. User mode
	// reaches it through the ud2 at TrampolineVA+refreshOffset: #UD goes
	// to udDispatch, which sends that one address to refreshStub and every
	// other #UD to the VMM. (PVM raises #UD for `int n` from user mode, so
	// a software-interrupt gate cannot be used.)
	refreshStub   = stubPA + 0x240
	udDispatch    = stubPA + 0x300
	refreshFrame  = kstack + 0x100
	refreshOffset = 8
	// listCap is how many runs of pages one refresh can list.
	listCap = (pageSize - 8) / 16

	// RecursiveSlot is the PML4 slot that maps the PML4 itself, and
	// recursiveBase the address where the leaf entries then appear.
	RecursiveSlot = 510
	recursiveBase = 0xffffff0000000000
)

// RAMBase is the first guest-physical address that the machine leaves to
// the frame allocator.
const RAMBase = ramBase
