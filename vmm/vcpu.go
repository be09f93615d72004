package vmm

import (
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/bobuhiro11/gokvm/kvm"
	"github.com/emuckpt/emuckpt/guestmm"
	"golang.org/x/sys/unix"
)

// Regs is the user-visible general-purpose register file of a task, in
// KVM's struct kvm_regs layout.
type Regs kvm.Regs

// ExitKind says why Run returned.
type ExitKind int

const (
	// ExitSyscall: the task executed `syscall`. Regs().RIP is the address
	// after the instruction; RCX and R11 hold what the CPU put there.
	ExitSyscall ExitKind = iota
	// ExitException: a CPU exception (Vector, ErrorCode, CR2 for #PF).
	ExitException
	// ExitMMIOFault: a device refused an MMIO access (MMIOAddr, Fault).
	ExitMMIOFault
	// ExitPortIO: user code ran an I/O instruction outside the trampoline.
	ExitPortIO
	// ExitKicked: Kick was called (timeout, checkpoint request, ...).
	ExitKicked
	// ExitMMIOLimit: the vCPU completed the MMIO access StopAfterMMIO
	// asked for.
	ExitMMIOLimit
)

func (k ExitKind) String() string {
	return [...]string{"syscall", "exception", "mmio-fault", "port-io", "kicked", "mmio-limit"}[k]
}

// Exit describes one return of Run to the kernel layer.
type Exit struct {
	Kind      ExitKind
	Vector    int    // ExitException
	ErrorCode uint64 // ExitException, if the vector has one
	CR2       uint64 // ExitException with vector 14
	MMIOAddr  uint64 // ExitMMIOFault
	MMIOWrite bool   // ExitMMIOFault: the refused access was a store
	Fault     *AccessFault
}

// x86 exception vectors.
const (
	VecDE = 0  // divide error
	VecDB = 1  // debug
	VecBP = 3  // int3
	VecOF = 4  // into
	VecBR = 5  // bound
	VecUD = 6  // invalid opcode
	VecNM = 7  // device not available
	VecDF = 8  // double fault
	VecTS = 10 // invalid TSS
	VecNP = 11 // segment not present
	VecSS = 12 // stack fault
	VecGP = 13 // general protection
	VecPF = 14 // page fault
	VecMF = 16 // x87 error
	VecAC = 17 // alignment check
	VecMC = 18 // machine check
	VecXM = 19 // SIMD error
)

// hasErrorCode reports whether the CPU pushes an error code for vector v.
func hasErrorCode(v int) bool {
	switch v {
	case 8, 10, 11, 12, 13, 14, 17, 21, 29, 30:
		return true
	}
	return false
}

// The user segments, as the CPU holds them in user mode.
var (
	userCodeSegment = kvm.Segment{Limit: 0xffffffff, Selector: UserCS, Typ: 11, Present: 1, DPL: 3, S: 1, L: 1, G: 1}
	userDataSegment = kvm.Segment{Limit: 0xffffffff, Selector: UserSS, Typ: 3, Present: 1, DPL: 3, DB: 1, S: 1, G: 1}
)

// Flags a user task may hold in RFLAGS; IF and bit 1 are always set.
const userFlagsMask = 0x1 | 0x4 | 0x10 | 0x40 | 0x80 | 0x100 | 0x400 | 0x800 | 0x40000 | 0x200000

// stopPlace says where KVM's own copy of the vCPU state stands relative to
// the user context the kernel layer sees (VCPU.cur), which decides how the
// next Run returns to user mode.
type stopPlace int

const (
	stoppedNew   stopPlace = iota // never run; registers set with ioctls
	stoppedUser                   // at CPL3: the sync registers are the user state
	stoppedRing0                  // in a ring-0 stub: return by loading the user segments
)

// VCPU is one virtual CPU that runs user tasks.
//
// Between two calls of Run the user state (registers, FS/GS base, CR3) is
// owned by the kernel layer and always complete: Run returns only where
// the CPU is stopped at a user instruction boundary, with no MMIO or port
// access and no event delivery half done, so that the state can be
// edited, saved in a checkpoint or handed to a signal handler. Where KVM's
// copy stands is the VCPU's business alone (place, refresh*); Run brings
// it back in line with the user state before it enters the guest.
type VCPU struct {
	m  *Machine
	fd uintptr
	// xcr0 is the state components user mode may use (XCR0).
	xcr0 uint64
	// id is the vCPU's index; its own pages (IDT, TSS, stubs, ring-0
	// stack, refresh list) are off bytes above vCPU 0's.
	id, off uint64
	run     []byte
	sync    *kvm.Regs
	sregs   *kvm.Sregs
	// dirty is kvm_run.kvm_dirty_regs: the sync-area parts KVM must load
	// at the next KVM_RUN. Bits are only ever added here; KVM clears
	// each one as it loads it, so an entry that did not happen yet
	// cannot lose one.
	dirty *uint64

	// cur is the user context loaded in the vCPU: the state the kernel
	// layer sees and edits (see Switch). Its FPU field is stale while it
	// is loaded; the vCPU holds the live FPU state.
	cur      *Context
	place    stopPlace
	setBases bool // FS or GS base or CR3 changed
	flush    bool
	// initFPU is the FPU state of a fresh vCPU: what a new context with
	// no FPU state of its own starts from (execve's reset state).
	initFPU []byte
	refresh []guestmm.PageRange // user pages whose PTEs the guest must rewrite
	// refreshArmed means the vCPU was sent through refreshStub with the
	// list at listPA (+off); the stub empties the list as its last act before
	// returning to user mode, so a non-zero count there means it has not
	// finished. refreshUser is the user state it returns to.
	refreshArmed bool
	refreshUser  Regs

	kickMu  sync.Mutex // guards run against Kick racing close
	kicked  atomic.Bool
	tid     atomic.Int64
	started bool
	exits   uint64
	// mmioLeft counts down device accesses for StopAfterMMIO.
	mmioLeft uint64
}

// NewVCPU creates a vCPU in 64-bit mode, ready for Start.
func (m *Machine) NewVCPU() (*VCPU, error) {
	id := uint64(len(m.vcpus))
	if id >= MaxCPUs {
		return nil, fmt.Errorf("vcpu: at most %d vCPUs", MaxCPUs)
	}
	fd, err := retryValue(func() (uintptr, error) { return kvm.CreateVCPU(m.vmFd, int(id)) })
	if err != nil {
		return nil, fmt.Errorf("KVM_CREATE_VCPU: %w", err)
	}
	run, err := unix.Mmap(int(fd), 0, m.runSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(int(fd))
		return nil, fmt.Errorf("mapping kvm_run: %w", err)
	}
	c := &VCPU{m: m, fd: fd, run: run, id: id, off: id * cpuStride}
	c.sync = (*kvm.Regs)(unsafe.Pointer(&run[runSyncRegs]))
	c.sregs = (*kvm.Sregs)(unsafe.Pointer(&run[runSyncSregs]))
	c.dirty = (*uint64)(unsafe.Pointer(&run[runDirtyRegs]))
	// Every exit stores the registers and segments into the sync area.
	*(*uint64)(unsafe.Pointer(&run[runValidRegs])) = syncRegsBit | syncSregsBit
	m.vcpus = append(m.vcpus, c)
	if err := c.setupCPU(); err != nil {
		return nil, err
	}
	xs, err := getXSave(c.fd)
	if err != nil {
		return nil, err
	}
	c.initFPU = xs
	return c, nil
}

func (c *VCPU) close() {
	c.kickMu.Lock()
	defer c.kickMu.Unlock()
	if c.run != nil {
		unix.Munmap(c.run)
		c.run = nil
	}
	unix.Close(int(c.fd))
}

func (c *VCPU) setupCPU() error {
	t := *c.m.cpuid
	xsave := false
	var xcr0 uint64 = 3 // x87 | SSE
	for i := 0; i < int(t.Nent) && i < maxCPUIDEntries; i++ {
		e := &t.Entries[i]
		switch {
		case e.Function == 1:
			xsave = e.Ecx&(1<<26) != 0
			e.Ecx |= 1 << 27 // OSXSAVE follows CR4 below
		case e.Function == 0xd && e.Index == 0:
			xcr0 |= uint64(e.Eax) & 0x4 // AVX state if supported
		}
	}
	if err := setCPUID(c.fd, &t); err != nil {
		return err
	}
	// CR4: PAE, PGE, OSFXSR, OSXMMEXCPT (+OSXSAVE, +TSD).
	cr4 := uint64(0x20 | 0x80 | 0x200 | 0x400)
	if xsave {
		cr4 |= 0x40000
	}
	if c.m.cfg.TrapTSC {
		cr4 |= 0x4
	}
	sregs, err := getSregs(c.fd)
	if err != nil {
		return err
	}
	userData := userDataSegment
	sregs.CS = userCodeSegment
	sregs.SS, sregs.DS, sregs.ES = userData, userData, userData
	sregs.FS, sregs.GS = userData, userData
	sregs.FS.Selector, sregs.GS.Selector = 0, 0
	sregs.TR = kvm.Segment{Base: KernelBase + tssPA + c.off, Limit: tssLimit, Selector: uint16(tssSel + 16*c.id), Typ: 11, Present: 1}
	sregs.LDT = kvm.Segment{Unusable: 1}
	sregs.GDT = kvm.Descriptor{Base: KernelBase + gdtPA, Limit: tssSel + 16*MaxCPUs - 1}
	sregs.IDT = kvm.Descriptor{Base: KernelBase + idtPA + c.off, Limit: numVectors*16 - 1}
	sregs.CR0 = 0x80050033 // PG WP NE ET MP PE
	sregs.CR4 = cr4
	sregs.EFER = 0xd01 // NXE LMA LME SCE
	if err := setSregs(c.fd, sregs); err != nil {
		return err
	}
	c.xcr0 = 3
	if xsave {
		c.xcr0 = xcr0
		if err := setXCR0(c.fd, xcr0); err != nil {
			return err
		}
	}
	return setMSRs(c.fd, map[uint32]uint64{
		msrSTAR:   uint64(kernelCS)<<32 | uint64(userCS32&^3)<<48,
		msrLSTAR:  TrampolineVA,
		msrCSTAR:  TrampolineVA,
		msrSFMASK: 0x47700, // TF DF IF IOPL AC NT, as Linux
		// MTRRs enabled with write-back as the default type; with them off
		// (the reset state) the architecture makes all memory uncached.
		msrMTRRDefType: 0xC06,
		msrPAT:         0x0007040600070406,
	})
}

// Context is the user state of one task: what a vCPU needs to run it.
// The kernel layer owns it; a vCPU borrows it from Switch (or Start) on,
// until another context is switched in.
type Context struct {
	Regs   Regs
	FSBase uint64
	GSBase uint64
	CR3    uint64
	// FPU is the task's x87/SSE/AVX state (struct kvm_xsave) while the
	// context is not loaded; nil means a fresh state.
	FPU []byte
}

// Start sets the initial user state: registers, address space (CR3) and
// FS base. The next Run enters user mode there. It is StartContext with a
// context of the vCPU's own.
func (c *VCPU) Start(regs Regs, cr3, fsBase uint64) error {
	return c.StartContext(&Context{Regs: regs, CR3: cr3, FSBase: fsBase})
}

// StartContext makes ctx the vCPU's first user context; the next Run
// enters user mode there.
func (c *VCPU) StartContext(ctx *Context) error {
	sregs, err := getSregs(c.fd)
	if err != nil {
		return err
	}
	sregs.CR3 = ctx.CR3
	sregs.FS.Base = ctx.FSBase
	sregs.GS.Base = ctx.GSBase
	if err := setSregs(c.fd, sregs); err != nil {
		return err
	}
	ctx.Regs.RFLAGS = ctx.Regs.RFLAGS&userFlagsMask | 0x202
	kr := kvm.Regs(ctx.Regs)
	if err := retry(func() error { return kvm.SetRegs(c.fd, &kr) }); err != nil {
		return fmt.Errorf("KVM_SET_REGS: %w", err)
	}
	if err := c.loadFPU(ctx); err != nil {
		return err
	}
	c.cur = ctx
	c.place = stoppedNew
	c.started = true
	return nil
}

// Switch makes ctx the user context of the next Run: the vCPU keeps the
// FPU state of the context it had in that context's FPU field and loads
// ctx's. It must be called between two Runs (or before the first, where
// it is StartContext). Switching to the loaded context does nothing.
func (c *VCPU) Switch(ctx *Context) error {
	if !c.started {
		return c.StartContext(ctx)
	}
	if ctx == c.cur {
		return nil
	}
	if c.cur == nil { // released
		if err := c.loadFPU(ctx); err != nil {
			return err
		}
		c.cur, c.setBases = ctx, true
		return nil
	}
	if len(c.refresh) > 0 && ctx.CR3 != c.cur.CR3 {
		// A refresh lists entries of the old address space, reached
		// through the recursive mapping of the loaded CR3: it cannot
		// run in another one (the old context stopped before it ran,
		// e.g. killed by a fault, or another vCPU changed its tables).
		// Drop every translation instead. A context of the same address
		// space (a thread) runs it.
		c.dropRefresh()
		c.flush = true
	}
	xs, err := getXSave(c.fd)
	if err != nil {
		return err
	}
	if err := c.loadFPU(ctx); err != nil {
		return err
	}
	c.cur.FPU = xs
	c.cur = ctx
	c.setBases = true
	return nil
}

func (c *VCPU) loadFPU(ctx *Context) error {
	xs := ctx.FPU
	if xs == nil {
		xs = c.initFPU
	}
	return setXSave(c.fd, xs)
}

// InitialFPU is the FPU state of a fresh vCPU (execve's reset state).
func (c *VCPU) InitialFPU() []byte { return c.initFPU }

// ContextFPU is the FPU state of ctx: the vCPU's when ctx is loaded,
// else ctx's own (a fresh state if it has none).
func (c *VCPU) ContextFPU(ctx *Context) ([]byte, error) {
	switch {
	case ctx == c.cur:
		return getXSave(c.fd)
	case ctx.FPU == nil:
		return c.initFPU, nil
	}
	return ctx.FPU, nil
}

// Regs is the user state at the last exit. The kernel layer edits it in
// place; the changes take effect at the next Run.
func (c *VCPU) Regs() *Regs { return &c.cur.Regs }

// FSBase is the task's FS segment base (its TLS pointer).
func (c *VCPU) FSBase() uint64 { return c.cur.FSBase }

// SetFSBase changes the FS base from the next Run on.
func (c *VCPU) SetFSBase(v uint64) { c.cur.FSBase, c.setBases = v, true }

// GSBase is the task's GS segment base.
func (c *VCPU) GSBase() uint64 { return c.cur.GSBase }

// SetGSBase changes the GS base from the next Run on.
func (c *VCPU) SetGSBase(v uint64) { c.cur.GSBase, c.setBases = v, true }

// SetCR3 switches address space at the next Run.
// A pending refresh of the old address space becomes a flush (see Switch).
func (c *VCPU) SetCR3(cr3 uint64) {
	if len(c.refresh) > 0 && cr3 != c.cur.CR3 {
		c.dropRefresh()
		c.flush = true
	}
	c.cur.CR3, c.setBases = cr3, true
}

// FlushTLB makes the next Run discard every cached translation, after the
// kernel layer changed or removed many present PTEs.
//
// Neither a guest CR3 reload nor invlpg is enough: KVM's shadow MMU (PVM
// here, and hardware without EPT) write-protects guest page tables against
// the guest, not against the VMM writing them through its own mapping, so
// its shadow entries stay stale. Deleting a memory slot (zapSlot, a page
// in the MMIO hole) makes KVM drop every shadow page (on EPT: every EPT entry and, with them, the guest's
// combined TLB entries), and the guest then re-walks the tables. That is
// expensive; RefreshPages is the cheap way for a few pages.
//
// The flush is machine-wide and done at the next Run; with several vCPUs
// the others must not go on with their cached translations, so the kernel
// layer flushes by itself, with them stopped (Machine.FlushTranslations),
// when FlushPending says one is due.
func (c *VCPU) FlushTLB() { c.flush = true }

// FlushPending reports that the next Run would flush every translation
// (FlushTLB, or a refresh too big for the list).
func (c *VCPU) FlushPending() bool { return c.flush }

// FlushTranslations makes KVM forget every translation it derived from
// the guest page tables, for every vCPU, at once, and drops the pending
// refreshes and flushes that it covers. No vCPU may be in Run.
func (m *Machine) FlushTranslations() error {
	if err := m.zapTranslations(); err != nil {
		return err
	}
	for _, c := range m.vcpus {
		c.flush = false
		c.dropRefresh()
	}
	return nil
}

// XCR0 is the set of state components user mode may use, as XGETBV
// reads it (x87 and SSE without XSAVE).
func (c *VCPU) XCR0() uint64 { return c.xcr0 }

// ID is the vCPU's index in its machine, from 0.
func (c *VCPU) ID() int { return int(c.id) }

// Release takes the vCPU's user context off it, keeping its FPU state in
// the context, so that another vCPU can run it (Switch). It must not be
// called while the vCPU is in Run. A vCPU without a context does nothing.
func (c *VCPU) Release() error {
	if c.cur == nil {
		return nil
	}
	xs, err := getXSave(c.fd)
	if err != nil {
		return err
	}
	if len(c.refresh) > 0 {
		c.dropRefresh() // as in Switch
		c.flush = true
	}
	c.cur.FPU = xs
	c.cur = nil
	return nil
}

// Holds reports whether ctx is the vCPU's user context.
func (c *VCPU) Holds(ctx *Context) bool { return c.cur == ctx }

func (m *Machine) le64(pa uint64) uint64 { return binary.LittleEndian.Uint64(m.mem[pa:]) }

// FPUState returns the vCPU's x87/SSE/AVX state (struct kvm_xsave) for a
// checkpoint.
func (c *VCPU) FPUState() ([]byte, error) { return getXSave(c.fd) }

// SetFPUState restores state saved by FPUState. The XSAVE header of a
// hostile image is checked by KVM, which refuses invalid state.
func (c *VCPU) SetFPUState(b []byte) error { return setXSave(c.fd, b) }
