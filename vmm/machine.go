package vmm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"unsafe"

	"github.com/bobuhiro11/gokvm/kvm"
	"github.com/emuckpt/emuckpt/guestmm"
	"golang.org/x/sys/unix"
)

// ErrNoKVM is returned (wrapped) when /dev/kvm cannot be used.
var ErrNoKVM = errors.New("KVM is not available")

// DefaultMemSize is the guest RAM size when Config.MemSize is zero.
const DefaultMemSize = 512 << 20

// MinMemSize and MaxMemSize bound Config.MemSize.
const (
	MinMemSize = 4 << 20
	MaxMemSize = 64 << 30
)

// Guest RAM is at most LowMemEnd bytes from guest-physical 0 (KVM slot 0);
// the rest of it is in a second slot from HighMemBase on (slot 1), so that
// RAM never covers the MMIO hole [LowMemEnd, HighMemBase), where the
// devices live.
const (
	LowMemEnd   = 0xC0000000
	HighMemBase = 1 << 32
)

// PhysEnd returns the guest-physical address where guest RAM of memSize
// bytes ends: memSize when it fits below the hole, else HighMemBase plus
// what lies above it.
func PhysEnd(memSize uint64) uint64 {
	if memSize <= LowMemEnd {
		return memSize
	}
	return HighMemBase + memSize - LowMemEnd
}

// RAMRange is a range [Start, End) of guest-physical RAM.
type RAMRange struct{ Start, End uint64 }

// RAMRanges returns the guest-physical ranges of guest RAM of memSize
// bytes: one below the hole, and one above it when memSize exceeds
// LowMemEnd.
func RAMRanges(memSize uint64) []RAMRange {
	if memSize <= LowMemEnd {
		return []RAMRange{{0, memSize}}
	}
	return []RAMRange{{0, LowMemEnd}, {HighMemBase, PhysEnd(memSize)}}
}

// Config describes a machine.
type Config struct {
	// MemSize is the size of guest RAM in bytes (rounded up to a page).
	MemSize uint64
	// TrapTSC sets CR4.TSD so that rdtsc/rdtscp at CPL3 raise #GP and
	// reach the VMM (used for deterministic time).
	TrapTSC bool
	// KVMPath is the KVM device; empty means /dev/kvm.
	KVMPath string
}

// Machine is one KVM virtual machine with its guest RAM.
type Machine struct {
	cfg     Config
	kvm     *os.File // kept open while vmFd and the vCPU fds are used
	vmFd    uintptr
	mem     []byte
	runSize int
	cpuid   *cpuidTable
	Bus     *Bus
	vcpus   []*VCPU
	zaps    uint64
	zapPage []byte // host page behind zapSlot
	// dirtyLog: the RAM slots log dirty pages (dirtylog.go), into
	// dirtyBitmaps (one per RAM slot).
	dirtyLog     bool
	dirtyBitmaps [][]uint64
}

// New creates a VM with cfg.MemSize bytes of lazily allocated guest RAM and
// writes the machine's own pages (GDT, IDT, TSS, stubs, trampoline).
func New(cfg Config) (*Machine, error) {
	if cfg.MemSize == 0 {
		cfg.MemSize = DefaultMemSize
	}
	cfg.MemSize = (cfg.MemSize + pageSize - 1) &^ (pageSize - 1)
	if cfg.MemSize < MinMemSize {
		return nil, fmt.Errorf("guest memory %d bytes is too small: need at least 4 MiB", cfg.MemSize)
	}
	if cfg.MemSize > MaxMemSize {
		return nil, fmt.Errorf("guest memory %d bytes is too large: at most %d GiB", cfg.MemSize, MaxMemSize>>30)
	}
	path := cfg.KVMPath
	if path == "" {
		path = "/dev/kvm"
	}
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: %v (emuckpt needs read-write access to %s: check `ls -l %s` and your membership of its group, or run as root)", ErrNoKVM, err, path, path)
	}
	m := &Machine{cfg: cfg, kvm: f, Bus: NewBus()}
	if err := m.init(); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

func (m *Machine) init() error {
	kfd := m.kvm.Fd()
	if v, err := retryValue(func() (uintptr, error) { return kvm.GetAPIVersion(kfd) }); err != nil || v != 12 {
		return fmt.Errorf("%w: KVM API version %d (%v), need 12", ErrNoKVM, v, err)
	}
	for _, c := range []struct {
		cap  int
		name string
	}{{capSyncRegs, "KVM_CAP_SYNC_REGS"}, {capImmediateExit, "KVM_CAP_IMMEDIATE_EXIT"}} {
		if r, err := retryValue(func() (uintptr, error) { return kvm.CheckExtension(kfd, kvm.Capability(c.cap)) }); err != nil || r == 0 {
			return fmt.Errorf("%w: the host kernel lacks %s", ErrNoKVM, c.name)
		}
	}
	sz, err := retryValue(func() (uintptr, error) { return kvm.GetVCPUMMmapSize(kfd) })
	if err != nil {
		return fmt.Errorf("KVM_GET_VCPU_MMAP_SIZE: %w", err)
	}
	m.runSize = int(sz)
	if m.cpuid, err = supportedCPUID(kfd); err != nil {
		return err
	}
	m.vmFd, err = retryValue(func() (uintptr, error) { return kvm.CreateVM(kfd) })
	if err != nil {
		return fmt.Errorf("%w: KVM_CREATE_VM: %v", ErrNoKVM, err)
	}
	if err := m.disableQuirks(kfd); err != nil {
		return err
	}
	if err := m.checkPhysBits(); err != nil {
		return err
	}
	// One host reservation indexed by guest-physical address, across the
	// MMIO hole when RAM goes above it: the hole's part is PROT_NONE,
	// never touched and in no slot, so it costs no memory.
	end := PhysEnd(m.cfg.MemSize)
	m.mem, err = unix.Mmap(-1, 0, int(end), unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return fmt.Errorf("allocating %d bytes of guest memory: %w", m.cfg.MemSize, err)
	}
	if end > LowMemEnd {
		if err := unix.Mprotect(m.mem[LowMemEnd:HighMemBase], unix.PROT_NONE); err != nil {
			return fmt.Errorf("reserving the MMIO hole in the guest memory mapping: %w", err)
		}
	}
	// Host huge pages under the guest's 2 MiB pages let the shadow MMU
	// map 2 MiB at one fault instead of one fault per 4 KiB (guestmm's
	// Layout.HugePages). Only an optimization: a host without THP is fine.
	_ = unix.Madvise(m.mem, unix.MADV_HUGEPAGE)
	if err := m.setRAMSlots(true); err != nil {
		return err
	}
	if m.zapPage, err = unix.Mmap(-1, 0, pageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS); err != nil {
		return fmt.Errorf("allocating the zap slot's page: %w", err)
	}
	if err := m.setZapSlot(true); err != nil {
		return err
	}
	m.writeSystemPages()
	return nil
}

// disableQuirks turns off the KVM behaviours that a real CPU does not
// have and a guest could see: with the hypercall quirk, `vmmcall` on an
// Intel host (or `vmcall` on AMD) is patched into the other instruction
// in guest memory instead of raising #UD, which Linux turns into SIGILL.
// A KVM without KVM_CAP_DISABLE_QUIRKS2 or without this quirk leaves
// nothing to do.
func (m *Machine) disableQuirks(kfd uintptr) error {
	quirks, err := retryValue(func() (uintptr, error) { return kvm.CheckExtension(kfd, kvm.Capability(capDisableQuirks)) })
	if err != nil || quirks&quirkFixHypercall == 0 {
		return nil
	}
	if err := enableCap(m.vmFd, capDisableQuirks, quirkFixHypercall); err != nil {
		return fmt.Errorf("KVM_ENABLE_CAP(KVM_CAP_DISABLE_QUIRKS2): %w", err)
	}
	return nil
}

// CPUID returns what the guest's CPUID instruction gives for leaf and
// subleaf index (the same on every vCPU, see setupCPU); ok is false when
// the guest has no such leaf.
func (m *Machine) CPUID(leaf, index uint32) (eax, ebx, ecx, edx uint32, ok bool) {
	e, ok := m.cpuid.lookup(leaf, index)
	if leaf == 1 && e.Ecx&(1<<26) != 0 {
		e.Ecx |= 1 << 27 // OSXSAVE: the guest runs with CR4.OSXSAVE where there is XSAVE
	}
	return e.Eax, e.Ebx, e.Ecx, e.Edx, ok
}

// checkPhysBits makes sure that the physical address width the guest's
// CPUID reports (leaf 0x80000008, EAX[7:0]) covers guest RAM: the guest's
// page tables could not address frames above it.
func (m *Machine) checkPhysBits() error {
	bits := m.cpuid.physBits()
	if end := PhysEnd(m.cfg.MemSize); bits != 0 && bits < 64 && end > 1<<bits {
		return fmt.Errorf("guest memory %d bytes ends at guest-physical %#x, beyond the %d-bit physical addresses of this CPU", m.cfg.MemSize, end, bits)
	}
	return nil
}

// setRAMSlots adds (on) or deletes the RAM slots: slot 0 below the MMIO
// hole and, for RAM above it, slot 1 from HighMemBase.
func (m *Machine) setRAMSlots(on bool) error {
	for i, r := range RAMRanges(m.cfg.MemSize) {
		size := r.End - r.Start
		if !on {
			size = 0
		}
		region := &kvm.UserspaceMemoryRegion{
			Slot: uint32(i), GuestPhysAddr: r.Start, MemorySize: size,
			UserspaceAddr: uint64(uintptr(unsafe.Pointer(&m.mem[r.Start]))),
		}
		if on && m.dirtyLog {
			region.Flags = memLogDirtyPages
		}
		err := retry(func() error { return kvm.SetUserMemoryRegion(m.vmFd, region) })
		if err != nil {
			return fmt.Errorf("KVM_SET_USER_MEMORY_REGION (slot %d at %#x): %w", i, r.Start, err)
		}
	}
	return nil
}

// zapSlot is a one-page memory slot in the MMIO hole that no guest page
// table ever points at: deleting a slot makes KVM forget every
// translation it derived from the guest page tables, in every slot
// (kvm_mmu_zap_all_fast; KVM_X86_QUIRK_SLOT_ZAP_ALL, on by default, in
// kernels that can zap less), and deleting and re-adding this one costs
// the same at any size of guest RAM, where a RAM slot's cost grows with
// it (about 30 ms for 64 GiB, 0.5 ms for 512 MiB here).
const (
	zapSlot   = 2
	zapSlotPA = HighMemBase - pageSize
)

func (m *Machine) setZapSlot(on bool) error {
	size := uint64(pageSize)
	if !on {
		size = 0
	}
	region := &kvm.UserspaceMemoryRegion{
		Slot: zapSlot, GuestPhysAddr: zapSlotPA, MemorySize: size,
		UserspaceAddr: uint64(uintptr(unsafe.Pointer(&m.zapPage[0]))),
	}
	if err := retry(func() error { return kvm.SetUserMemoryRegion(m.vmFd, region) }); err != nil {
		return fmt.Errorf("KVM_SET_USER_MEMORY_REGION (slot %d at %#x): %w", zapSlot, uint64(zapSlotPA), err)
	}
	return nil
}

// zapTranslations deletes and re-adds zapSlot so that KVM forgets every
// translation it derived from the guest page tables (see VCPU.FlushTLB).
func (m *Machine) zapTranslations() error {
	m.zaps++
	if err := m.setZapSlot(false); err != nil {
		return err
	}
	return m.setZapSlot(true)
}

// Zaps counts the translation flushes the machine has done.
func (m *Machine) Zaps() uint64 { return m.zaps }

// Mem is guest RAM: index i is guest-physical address i. Above
// LowMemEnd it spans the MMIO hole, whose bytes must never be touched
// (they are PROT_NONE): only the RAMRanges are RAM.
func (m *Machine) Mem() []byte { return m.mem }

// MemSize is the size of guest RAM.
func (m *Machine) MemSize() uint64 { return m.cfg.MemSize }

// RAMRanges returns the guest-physical ranges of the machine's RAM.
func (m *Machine) RAMRanges() []RAMRange { return RAMRanges(m.cfg.MemSize) }

// NewFrames returns a frame allocator for the RAM the machine leaves to
// the guest: from RAMBase to the end of RAM, without the MMIO hole.
func (m *Machine) NewFrames() *guestmm.Frames {
	end := PhysEnd(m.cfg.MemSize)
	if end <= LowMemEnd {
		return guestmm.NewFrames(m.mem, RAMBase, end)
	}
	return guestmm.NewFramesAround(m.mem, RAMBase, end, LowMemEnd, HighMemBase)
}

// Close releases the VM, its vCPUs and guest RAM.
func (m *Machine) Close() error {
	for _, c := range m.vcpus {
		c.close()
	}
	m.vcpus = nil
	if m.vmFd != 0 {
		unix.Close(int(m.vmFd))
		m.vmFd = 0
	}
	if m.mem != nil {
		unix.Munmap(m.mem)
		m.mem = nil
	}
	if m.zapPage != nil {
		unix.Munmap(m.zapPage)
		m.zapPage = nil
	}
	if m.kvm != nil {
		m.kvm.Close()
		m.kvm = nil
	}
	return nil
}

func (m *Machine) put64(pa, v uint64) { binary.LittleEndian.PutUint64(m.mem[pa:], v) }

// writeSystemPages lays out the GDT and the syscall trampoline, which
// every vCPU shares, and the pages of each vCPU (writeCPUPages).
func (m *Machine) writeSystemPages() {
	// GDT: null, kernel code64, kernel data, user code32, user data,
	// user code64, then a 16-byte TSS descriptor per vCPU.
	gdt := []uint64{
		0,
		0x00af9b000000ffff, // 0x08 kernel CS: L=1, DPL0
		0x00cf93000000ffff, // 0x10 kernel SS
		0x00cffb000000ffff, // 0x18 user CS32 (sysret base)
		0x00cff3000000ffff, // 0x20 user SS: DPL3
		0x00affb000000ffff, // 0x28 user CS64: L=1, DPL3
	}
	for i, d := range gdt {
		m.put64(gdtPA+uint64(i)*8, d)
	}
	for i := range uint64(MaxCPUs) {
		m.writeCPUPages(i)
	}

	// Syscall trampoline: `out SyscallPort, al; ud2`, and at
	// refreshOffset the ud2 that leads to refreshStub.
	copy(m.mem[tramPA:], []byte{0xE6, SyscallPort, 0x0F, 0x0B})
	copy(m.mem[tramPA+refreshOffset:], []byte{0x0F, 0x0B})
}

// writeCPUPages writes vCPU i's TSS and its GDT descriptor, IDT and ring-0
// stubs, all cpuStride*i above vCPU 0's.
func (m *Machine) writeCPUPages(i uint64) {
	off := i * cpuStride
	tss := tssPA + off
	base, limit := KernelBase+tss, uint64(tssLimit)
	desc := gdtPA + tssSel + 16*i
	m.put64(desc, (limit&0xffff)|(base&0xffffff)<<16|uint64(0x89)<<40|((limit>>16)&0xf)<<48|((base>>24)&0xff)<<56)
	m.put64(desc+8, base>>32)

	// TSS: RSP0 for traps from CPL3 and an I/O bitmap that opens only the
	// syscall port to user mode.
	m.put64(tss+4, KernelBase+kstackTop+off)
	binary.LittleEndian.PutUint16(m.mem[tss+0x66:], 0x68)
	bitmap := m.mem[tss+0x68 : tss+0x68+33]
	for i := range bitmap {
		bitmap[i] = 0xff
	}
	bitmap[SyscallPort/8] &^= 1 << (SyscallPort % 8)

	// Exception stubs: `out exceptionPort, al; hlt`, one per vector. The
	// VMM tells the vector from RIP and never lets the hlt run.
	for v := uint64(0); v < numVectors; v++ {
		stub := stubPA + off + v*stubStride
		copy(m.mem[stub:], []byte{0xE6, exceptionPort, 0xF4, 0x0F, 0x0B})
		dpl := uint64(0)
		if v == 3 || v == 4 { // int3 and into are allowed from user mode
			dpl = 3
		}
		m.setGate(off, v, stub, dpl)
	}
	copy(m.mem[refreshStub+off:], refreshCode)
	m.put64(refreshStub+off+refreshListPtr, KernelBase+listPA+off)
	m.put64(refreshStub+off+refreshFramePtr, KernelBase+refreshFrame+off)
	copy(m.mem[udDispatch+off:], udDispatchCode)
	m.put64(udDispatch+off+32, TrampolineVA+refreshOffset)
	m.setGate(off, VecUD, udDispatch+off, 0)
}

// setGate points IDT vector v of the vCPU whose pages are off above vCPU
// 0's at the ring-0 code at guest-physical pa, as a 64-bit interrupt gate
// that CPL dpl may raise with int.
func (m *Machine) setGate(off, v, pa, dpl uint64) {
	h, gate := KernelBase+pa, idtPA+off+v*16
	m.put64(gate, (h&0xffff)|kernelCS<<16|(0x8e|dpl<<5)<<40|((h>>16)&0xffff)<<48)
	m.put64(gate+8, h>>32)
}

// udDispatchCode is the #UD handler: a #UD at TrampolineVA+refreshOffset
// is a request for refreshStub, any other goes to the VMM like every
// exception. The address to compare with is stored at offset 32.
var udDispatchCode = []byte{
	0x50,                         // push rax
	0x48, 0x8B, 0x44, 0x24, 0x08, // mov rax, [rsp+8]     faulting RIP
	0x48, 0x3B, 0x05, 0x13, 0x00, 0x00, 0x00, // cmp rax, [rip+0x13]  (offset 32)
	0x58,                               // pop rax
	0x0F, 0x84, 0x2C, 0xFF, 0xFF, 0xFF, // je refreshStub (rel32 -0xd4)
	0xE6, exceptionPort, // out exceptionPort, al
	0xF4,       // hlt
	0x0F, 0x0B, // ud2
}

// refreshCode is refreshStub. It saves the registers it uses and reads
// the list at listPA. An empty list means no refresh was asked for (user
// code jumped to the trampoline's ud2 by itself): it goes on as the #UD
// that it is. Otherwise, for each run of page-table entries (address of
// the first entry, number of entries) it rewrites every entry with its own
// value: a guest write to a page table is what makes a shadow MMU
// resynchronize the entry (KVM never sees the VMM's writes; after a few
// writes it stops shadowing the table altogether, so long runs stay
// cheap). The rewrite is one atomic `lock or [entry], 0`, not a load and
// a store: with several vCPUs the VMM may change the entry on another
// CPU in between, and a store of the value loaded before would undo that
// change (KVM emulates the locked instruction with a compare-and-swap). Then it reloads CR3 to drop stale TLB entries, empties the list
// (so that it cannot be replayed, and so that the VMM can tell that the
// refresh is complete) and returns to user mode through the frame the VMM
// prepared at refreshFrame. Rewriting an entry twice is harmless, so an
// interrupted refresh can simply run again.
var refreshCode = []byte{
	0x50, 0x51, 0x52, 0x56, 0x57, // push rax, rcx, rdx, rsi, rdi
	0x48, 0x8B, 0x35, 0x6C, 0x00, 0x00, 0x00, // mov rsi, [rip+0x6c]  list pointer (offset 120)
	0x48, 0x8B, 0x0E, // mov rcx, [rsi]       number of runs
	0x48, 0x85, 0xC9, // test rcx, rcx
	0x74, 0x4F, // jz notarmed
	0x48, 0x83, 0xC6, 0x08, // add rsi, 8
	0x48, 0x85, 0xC9, // run: test rcx, rcx
	0x74, 0x24, // jz flush
	0x48, 0x8B, 0x06, // mov rax, [rsi]       first entry
	0x48, 0x8B, 0x7E, 0x08, // mov rdi, [rsi+8]     entries
	0x48, 0x85, 0xFF, // entry: test rdi, rdi
	0x74, 0x0F, // jz next
	0xF0, 0x48, 0x83, 0x08, 0x00, // lock or qword [rax], 0
	0x90,                   // nop
	0x48, 0x83, 0xC0, 0x08, // add rax, 8
	0x48, 0xFF, 0xCF, // dec rdi
	0xEB, 0xEC, // jmp entry
	0x48, 0x83, 0xC6, 0x10, // next: add rsi, 16
	0x48, 0xFF, 0xC9, // dec rcx
	0xEB, 0xD7, // jmp run
	0x0F, 0x20, 0xD8, // flush: mov rax, cr3
	0x0F, 0x22, 0xD8, // mov cr3, rax
	0x48, 0x8B, 0x35, 0x2A, 0x00, 0x00, 0x00, // mov rsi, [rip+0x2a]  list pointer
	0x48, 0xC7, 0x06, 0x00, 0x00, 0x00, 0x00, // mov qword [rsi], 0    done: disarm
	0x5F, 0x5E, 0x5A, 0x59, 0x58, // pop rdi, rsi, rdx, rcx, rax
	0x48, 0x8B, 0x25, 0x1F, 0x00, 0x00, 0x00, // mov rsp, [rip+0x1f]  frame pointer (offset 128)
	0x48, 0xCF, // iretq
	0x5F, 0x5E, 0x5A, 0x59, 0x58, // notarmed: pop rdi, rsi, rdx, rcx, rax
	0xE9, 0x67, 0x00, 0x00, 0x00, // jmp udDispatch+20 (the #UD path to the VMM)
}

// Offsets of the two pointers refreshCode loads, after its code.
const (
	refreshListPtr  = 120
	refreshFramePtr = 128
)

const (
	tssLimit = 0x68 + 33 - 1
)

// KernelPage is one page the machine needs mapped in every address space.
type KernelPage struct {
	VA, PA     uint64
	Write      bool
	User, Exec bool
}

// KernelPages lists the machine's pages for the kernel layer to map into
// each address space (see guestmm.PageTables.Map): the shared ones and
// those of every vCPU the machine can have.
func KernelPages() []KernelPage {
	pages := []KernelPage{
		{VA: KernelBase + gdtPA, PA: gdtPA, Write: true},
		{VA: TrampolineVA, PA: tramPA, User: true, Exec: true},
	}
	for i := range uint64(MaxCPUs) {
		off := i * cpuStride
		for _, p := range []KernelPage{
			{PA: idtPA},
			{PA: tssPA, Write: true},
			{PA: tssPA + pageSize},
			{PA: stubPA, Exec: true},
			{PA: kstack, Write: true},
			{PA: kstack + pageSize, Write: true},
			{PA: listPA, Write: true},
		} {
			p.PA += off
			p.VA = KernelBase + p.PA
			pages = append(pages, p)
		}
	}
	return pages
}
