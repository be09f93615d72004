package vmm

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"
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

// where a vCPU stopped, which decides how it returns to user mode.
type stopPlace int

const (
	stoppedNew   stopPlace = iota // never run; registers set with ioctls
	stoppedUser                   // at CPL3 (PVM syscall, MMIO, kick while in user mode)
	stoppedRing0                  // in a ring-0 stub: return by loading the user segments
)

// VCPU is one virtual CPU that runs user tasks.
type VCPU struct {
	m     *Machine
	fd    uintptr
	run   []byte
	sync  *kvm.Regs
	sregs *kvm.Sregs

	user     Regs // the user state the kernel layer sees and edits
	place    stopPlace
	fsBase   uint64
	gsBase   uint64
	setBases bool // FS or GS base changed
	flush    bool
	refresh  []guestmm.PageRange // user pages whose PTEs the guest must rewrite
	// inRefresh means the vCPU was sent through refreshStub and has not
	// come out yet; refreshUser is the user state it returns to.
	inRefresh   bool
	refreshUser Regs
	cr3         uint64
	kicked      atomic.Bool
	tid         atomic.Int64
	started     bool
	exits       uint64
	// mmioLeft counts down device accesses for StopAfterMMIO.
	mmioLeft uint64
}

// NewVCPU creates a vCPU in 64-bit mode, ready for Start.
func (m *Machine) NewVCPU() (*VCPU, error) {
	fd, err := kvm.CreateVCPU(m.vmFd, len(m.vcpus))
	if err != nil {
		return nil, fmt.Errorf("KVM_CREATE_VCPU: %w", err)
	}
	run, err := unix.Mmap(int(fd), 0, m.runSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(int(fd))
		return nil, fmt.Errorf("mapping kvm_run: %w", err)
	}
	c := &VCPU{m: m, fd: fd, run: run}
	c.sync = (*kvm.Regs)(unsafe.Pointer(&run[runSyncRegs]))
	c.sregs = (*kvm.Sregs)(unsafe.Pointer(&run[runSyncSregs]))
	m.vcpus = append(m.vcpus, c)
	if err := c.setupCPU(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *VCPU) close() {
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
	sregs, err := kvm.GetSregs(c.fd)
	if err != nil {
		return fmt.Errorf("KVM_GET_SREGS: %w", err)
	}
	userData := userDataSegment
	sregs.CS = userCodeSegment
	sregs.SS, sregs.DS, sregs.ES = userData, userData, userData
	sregs.FS, sregs.GS = userData, userData
	sregs.FS.Selector, sregs.GS.Selector = 0, 0
	sregs.TR = kvm.Segment{Base: tssBase, Limit: tssLimit, Selector: tssSel, Typ: 11, Present: 1}
	sregs.LDT = kvm.Segment{Unusable: 1}
	sregs.GDT = kvm.Descriptor{Base: KernelBase + gdtPA, Limit: 0x3f + 16}
	sregs.IDT = kvm.Descriptor{Base: KernelBase + idtPA, Limit: numVectors*16 - 1}
	sregs.CR0 = 0x80050033 // PG WP NE ET MP PE
	sregs.CR4 = cr4
	sregs.EFER = 0xd01 // NXE LMA LME SCE
	if err := kvm.SetSregs(c.fd, sregs); err != nil {
		return fmt.Errorf("KVM_SET_SREGS: %w", err)
	}
	if xsave {
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

// Start sets the initial user state: registers, address space (CR3) and
// FS base. The next Run enters user mode there.
func (c *VCPU) Start(regs Regs, cr3, fsBase uint64) error {
	sregs, err := kvm.GetSregs(c.fd)
	if err != nil {
		return fmt.Errorf("KVM_GET_SREGS: %w", err)
	}
	sregs.CR3 = cr3
	sregs.FS.Base = fsBase
	if err := kvm.SetSregs(c.fd, sregs); err != nil {
		return fmt.Errorf("KVM_SET_SREGS: %w", err)
	}
	c.cr3, c.fsBase = cr3, fsBase
	c.user = regs
	c.user.RFLAGS = regs.RFLAGS&userFlagsMask | 0x202
	kr := kvm.Regs(c.user)
	if err := kvm.SetRegs(c.fd, &kr); err != nil {
		return fmt.Errorf("KVM_SET_REGS: %w", err)
	}
	c.place = stoppedNew
	c.started = true
	return nil
}

// Regs is the user state at the last exit. The kernel layer edits it in
// place; the changes take effect at the next Run.
func (c *VCPU) Regs() *Regs { return &c.user }

// FSBase is the task's FS segment base (its TLS pointer).
func (c *VCPU) FSBase() uint64 { return c.fsBase }

// SetFSBase changes the FS base from the next Run on.
func (c *VCPU) SetFSBase(v uint64) { c.fsBase, c.setBases = v, true }

// GSBase is the task's GS segment base.
func (c *VCPU) GSBase() uint64 { return c.gsBase }

// SetGSBase changes the GS base from the next Run on.
func (c *VCPU) SetGSBase(v uint64) { c.gsBase, c.setBases = v, true }

// SetCR3 switches address space at the next Run.
func (c *VCPU) SetCR3(cr3 uint64) { c.cr3 = cr3 }

// FlushTLB makes the next Run discard every cached translation, after the
// kernel layer changed or removed many present PTEs.
//
// Neither a guest CR3 reload nor invlpg is enough: KVM's shadow MMU (PVM
// here, and hardware without EPT) write-protects guest page tables against
// the guest, not against the VMM writing them through its own mapping, so
// its shadow entries stay stale. Re-adding the memory slot makes KVM drop
// every shadow page (on EPT: every EPT entry and, with them, the guest's
// combined TLB entries), and the guest then re-walks the tables. That is
// expensive; RefreshPages is the cheap way for a few pages.
func (c *VCPU) FlushTLB() { c.flush = true }

// RefreshPages makes the next Run bring the guest's view of the PTEs of
// the pages in runs up to date, after the kernel layer changed them. The
// return to user mode goes through refreshStub, which rewrites each entry
// from ring 0 (through the recursive mapping): a guest write to a page
// table is what KVM's shadow MMU watches. More runs than one list holds
// fall back to FlushTLB.
func (c *VCPU) RefreshPages(runs []guestmm.PageRange) {
	if len(c.refresh)+len(runs) > listCap {
		c.flush = true
		return
	}
	c.refresh = append(c.refresh, runs...)
}

// Exits counts the VM exits this vCPU has taken.
func (c *VCPU) Exits() uint64 { return c.exits }

// Kick makes a running or about-to-run Run return ExitKicked. It is safe
// to call from any goroutine.
func (c *VCPU) Kick() {
	c.kicked.Store(true)
	if c.run != nil {
		c.run[runImmediateExt] = 1
	}
	if tid := c.tid.Load(); tid != 0 {
		unix.Tgkill(unix.Getpid(), int(tid), unix.SIGURG)
	}
}

// Run enters the guest and returns at the next event the kernel layer
// must handle. Errors are failures of the machine itself (KVM refused to
// run, the guest triple-faulted, a stub stopped where it must not).
func (c *VCPU) Run() (Exit, error) {
	if !c.started {
		return Exit{}, fmt.Errorf("vcpu: Run before Start")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	c.tid.Store(int64(unix.Gettid()))
	defer c.tid.Store(0)
	if err := c.resume(); err != nil {
		return Exit{}, err
	}
	for {
		if c.kicked.Swap(false) {
			c.run[runImmediateExt] = 0
			return Exit{Kind: ExitKicked}, nil
		}
		*(*uint64)(unsafe.Pointer(&c.run[runValidRegs])) = syncRegsBit | syncSregsBit
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, c.fd, kvmRunIoctl, 0)
		c.exits++
		*(*uint64)(unsafe.Pointer(&c.run[runDirtyRegs])) = 0
		if errno != 0 && errno != unix.EINTR && errno != unix.EAGAIN {
			return Exit{}, fmt.Errorf("KVM_RUN: %w", errno)
		}
		reason := binary.LittleEndian.Uint32(c.run[runExitReason:])
		if errno != 0 {
			reason = uint32(kvm.EXITINTR)
		}
		if kvm.ExitType(reason) != kvm.EXITINTR && c.inRefresh {
			// Any other exit comes after the refresh stub returned.
			c.inRefresh, c.refresh = false, c.refresh[:0]
		}
		switch kvm.ExitType(reason) {
		case kvm.EXITINTR:
			c.run[runImmediateExt] = 0
			if c.kicked.Swap(false) {
				if c.stopAfterKick() {
					return Exit{Kind: ExitKicked}, nil
				}
			}
			continue
		case kvm.EXITIO:
			return c.portExit()
		case kvm.EXITMMIO:
			if ex, stop := c.mmioExit(); stop {
				return ex, nil
			}
			continue
		case kvm.EXITINTERNALERROR:
			if c.sregs.CS.DPL == 3 {
				// KVM could not emulate a user instruction on device
				// memory (an AVX or fxsave access, a jump into a device
				// page): the task gets SIGBUS, not the VMM an error.
				c.noteUserStop()
				sub := binary.LittleEndian.Uint32(c.run[runExitData:])
				return Exit{Kind: ExitMMIOFault, Fault: &AccessFault{Signal: 7, Code: 2,
					Reason: fmt.Sprintf("KVM cannot emulate this instruction on device memory (internal error, suberror %d)", sub)}}, nil
			}
			return Exit{}, c.fatal(reason)
		default:
			return Exit{}, c.fatal(reason)
		}
	}
}

var kvmRunIoctl = kvm.IIO(0x80)

// noteUserStop records a stop at an arbitrary point: if the CPU is in user
// mode, its registers are the user state.
func (c *VCPU) noteUserStop() {
	if c.sregs.CS.DPL == 3 {
		c.user = Regs(*c.sync)
		c.place = stoppedUser
	}
}

// stopAfterKick decides whether a kick can stop the vCPU where it is. In
// user code it can. Inside the refresh stub (ring 0) it cannot: the vCPU
// runs on and is kicked again a moment later, once the stub has returned.
// Kicked before it reached the stub, the vCPU stops at the user state the
// stub would have returned to, and the refresh stays pending.
func (c *VCPU) stopAfterKick() bool {
	switch {
	case c.sregs.CS.DPL != 3:
		time.AfterFunc(100*time.Microsecond, c.Kick)
		return false
	case c.inRefresh && c.sync.RIP == TrampolineVA+refreshOffset:
		c.user, c.place, c.inRefresh = c.refreshUser, stoppedUser, false
		return true
	}
	if c.inRefresh {
		c.inRefresh, c.refresh = false, c.refresh[:0]
	}
	c.noteUserStop()
	return true
}

func (c *VCPU) portExit() (Exit, error) {
	dir, size, port := c.run[runExitData], c.run[runExitData+1], binary.LittleEndian.Uint16(c.run[runExitData+2:])
	rip := c.sync.RIP
	switch {
	case port == SyscallPort && dir == 1 && size == 1 && rip >= TrampolineVA && rip <= TrampolineVA+2:
		// A system call, from CPL3 (PVM) or CPL0 (hardware KVM). Either
		// way the CPU left the user RIP in RCX and RFLAGS in R11.
		c.user = Regs(*c.sync)
		c.user.RIP = c.sync.RCX
		c.user.RFLAGS = c.sync.R11
		if c.sregs.CS.DPL == 0 {
			c.place = stoppedRing0
		} else {
			c.place = stoppedUser
		}
		return Exit{Kind: ExitSyscall}, nil
	case port == exceptionPort && c.sregs.CS.DPL == 0:
		return c.exceptionExit()
	case c.sregs.CS.DPL == 3:
		// User code reached an I/O instruction the bitmap allows, but not
		// in the trampoline. Linux would raise #GP: SIGSEGV.
		c.user = Regs(*c.sync)
		c.place = stoppedUser
		return Exit{Kind: ExitPortIO}, nil
	}
	return Exit{}, fmt.Errorf("vcpu: unexpected port I/O %#x at %#x in ring 0", port, rip)
}

func (c *VCPU) exceptionExit() (Exit, error) {
	rip := c.sync.RIP - KernelBase - stubPA
	vec := int(rip / stubStride)
	if c.sync.RIP >= KernelBase+udDispatch && c.sync.RIP < KernelBase+udDispatch+32 {
		vec = VecUD
	} else if c.sync.RIP < KernelBase+stubPA || vec >= numVectors {
		return Exit{}, fmt.Errorf("vcpu: exception port from unknown RIP %#x", c.sync.RIP)
	}
	if c.sync.RSP < KernelBase+kstack || c.sync.RSP > KernelBase+kstackTop-40 {
		return Exit{}, fmt.Errorf("vcpu: exception frame at %#x is outside the ring-0 stack", c.sync.RSP)
	}
	frame := c.sync.RSP - KernelBase
	ex := Exit{Kind: ExitException, Vector: vec}
	if hasErrorCode(vec) {
		ex.ErrorCode = c.m.le64(frame)
		frame += 8
		if frame+40 > kstackTop {
			return Exit{}, fmt.Errorf("vcpu: exception %d frame at %#x is outside the ring-0 stack", vec, c.sync.RSP)
		}
	}
	if vec == VecPF {
		ex.CR2 = c.sregs.CR2
	}
	cs := c.m.le64(frame + 8)
	if cs&3 != 3 {
		// An exception in ring 0 is a bug in the stubs or the tables.
		return Exit{}, fmt.Errorf("vcpu: exception %d in ring 0 at %#x (error code %#x, cr2 %#x)", vec, c.m.le64(frame), ex.ErrorCode, c.sregs.CR2)
	}
	c.user = Regs(*c.sync)
	c.user.RIP = c.m.le64(frame)
	c.user.RFLAGS = c.m.le64(frame + 16)
	c.user.RSP = c.m.le64(frame + 24)
	c.place = stoppedRing0
	return ex, nil
}

// StopAfterMMIO makes Run return ExitMMIOLimit once n more device accesses
// have completed (0 cancels).
func (c *VCPU) StopAfterMMIO(n uint64) { c.mmioLeft = n }

// completePending re-enters the guest with immediate_exit set, so that KVM
// finishes an instruction it exited for (an MMIO load writes its
// register) and returns at once: afterwards the registers are complete.
func (c *VCPU) completePending() error {
	c.run[runImmediateExt] = 1
	*(*uint64)(unsafe.Pointer(&c.run[runValidRegs])) = syncRegsBit | syncSregsBit
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, c.fd, kvmRunIoctl, 0)
	c.run[runImmediateExt] = 0
	if errno != 0 && errno != unix.EINTR {
		return fmt.Errorf("KVM_RUN (immediate exit): %w", errno)
	}
	c.user = Regs(*c.sync)
	c.place = stoppedUser
	return nil
}

func (c *VCPU) mmioExit() (Exit, bool) {
	addr := binary.LittleEndian.Uint64(c.run[runExitData:])
	n := binary.LittleEndian.Uint32(c.run[runExitData+16:])
	write := c.run[runExitData+20] != 0
	if n > 8 {
		n = 8
	}
	data := c.run[runExitData+8 : runExitData+8+int(n)]
	err := c.m.Bus.Access(addr, data, write)
	if err == nil {
		if c.mmioLeft > 0 {
			if c.mmioLeft--; c.mmioLeft == 0 {
				if err := c.completePending(); err != nil {
					return Exit{}, false
				}
				return Exit{Kind: ExitMMIOLimit}, true
			}
		}
		return Exit{}, false
	}
	c.noteUserStop()
	f, ok := err.(*AccessFault)
	if !ok {
		f = &AccessFault{Signal: 7, Code: 2, Reason: err.Error()}
	}
	// KVM has already completed a store (RIP is past it); a load is
	// still pending and RIP is at it.
	return Exit{Kind: ExitMMIOFault, MMIOAddr: addr, MMIOWrite: write, Fault: f}, true
}

func (c *VCPU) fatal(reason uint32) error {
	desc := kvm.ExitType(reason).String()
	switch kvm.ExitType(reason) {
	case kvm.EXITSHUTDOWN:
		desc = "triple fault (shutdown)"
	case kvm.EXITFAILENTRY:
		desc = fmt.Sprintf("VM entry failed, hardware reason %#x", binary.LittleEndian.Uint64(c.run[runExitData:]))
	case kvm.EXITINTERNALERROR:
		desc = fmt.Sprintf("KVM internal error, suberror %d", binary.LittleEndian.Uint32(c.run[runExitData:]))
	}
	return fmt.Errorf("vcpu: %s at RIP %#x (CS %#x)", desc, c.sync.RIP, c.sregs.CS.Selector)
}

// resume writes the kernel layer's edits of the user state back into the
// vCPU, choosing the return path that fits where the vCPU stopped.
func (c *VCPU) resume() error {
	u := c.user
	u.RFLAGS = u.RFLAGS&userFlagsMask | 0x202
	dirty := uint64(0)
	switch c.place {
	case stoppedNew:
		// Registers were set by Start; only pending changes below.
		*c.sync = kvm.Regs(u)
		s, err := kvm.GetSregs(c.fd)
		if err != nil {
			return err
		}
		*c.sregs = *s
		dirty |= syncRegsBit
	case stoppedUser:
		*c.sync = kvm.Regs(u)
		dirty |= syncRegsBit
	case stoppedRing0:
		if len(c.refresh) > 0 {
			break // routeThroughRefresh below returns through its stub
		}
		// Drop to user mode by loading the user segments and registers
		// directly: on PVM that is cheaper than letting an iretq in the
		// stub do it (a fault round trip is about 5% faster).
		*c.sync = kvm.Regs(u)
		c.sregs.CS = userCodeSegment
		c.sregs.SS = userDataSegment
		c.place = stoppedUser
		dirty |= syncRegsBit | syncSregsBit
	}
	if c.flush {
		if err := c.m.zapTranslations(); err != nil {
			return err
		}
		c.flush, c.refresh, c.inRefresh = false, c.refresh[:0], false
	}
	if len(c.refresh) > 0 {
		c.routeThroughRefresh(u)
		dirty |= syncRegsBit
	}
	if c.setBases || c.sregs.CR3 != c.cr3 {
		c.sregs.FS.Base = c.fsBase
		c.sregs.GS.Base = c.gsBase
		c.sregs.CR3 = c.cr3
		dirty |= syncSregsBit
		c.setBases = false
	}
	*(*uint64)(unsafe.Pointer(&c.run[runDirtyRegs])) = dirty
	return nil
}

// routeThroughRefresh makes the vCPU return to user state u by way of
// refreshStub: it writes the list of entries to rewrite and the iretq
// frame, and points the vCPU at the stub (from ring 0) or at the
// ud2 at TrampolineVA+refreshOffset (from user mode).
func (c *VCPU) routeThroughRefresh(u Regs) {
	m := c.m
	m.put64(listPA, uint64(len(c.refresh)))
	for i, r := range c.refresh {
		m.put64(listPA+8+uint64(i)*16, recursiveBase+(r.Start>>9)&0x7ffffffff8)
		m.put64(listPA+16+uint64(i)*16, r.Pages)
	}
	// c.refresh stays until the vCPU is seen past the stub (see Run).
	c.inRefresh, c.refreshUser = true, u
	f := uint64(refreshFrame)
	m.put64(f, u.RIP)
	m.put64(f+8, UserCS)
	m.put64(f+16, u.RFLAGS)
	m.put64(f+24, u.RSP)
	m.put64(f+32, UserSS)
	*c.sync = kvm.Regs(u)
	if c.place == stoppedRing0 {
		c.sync.RSP = KernelBase + kstackTop - 64
		c.sync.RFLAGS = 2
		c.sync.RIP = KernelBase + refreshStub
	} else {
		c.sync.RIP = TrampolineVA + refreshOffset
	}
}

func (m *Machine) le64(pa uint64) uint64 { return binary.LittleEndian.Uint64(m.mem[pa:]) }

// FPUState returns the vCPU's x87/SSE/AVX state (struct kvm_xsave) for a
// checkpoint.
func (c *VCPU) FPUState() ([]byte, error) { return getXSave(c.fd) }

// SetFPUState restores state saved by FPUState. The XSAVE header of a
// hostile image is checked by KVM, which refuses invalid state.
func (c *VCPU) SetFPUState(b []byte) error { return setXSave(c.fd, b) }
