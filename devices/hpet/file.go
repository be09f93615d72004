package hpet

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"

	"github.com/emuckpt/emuckpt/guestmm"
	"github.com/emuckpt/emuckpt/kernel/vfs"
	"golang.org/x/sys/unix"
)

// Sleeper lets a blocking read of /dev/hpet wait on the guest clock.
type Sleeper interface {
	// SleepUntil returns true when CLOCK_MONOTONIC has reached ns (at once
	// under the virtual clock, which jumps there), or false if the wait
	// was interrupted (the read fails with EINTR). SleepUntil(Forever)
	// waits until interrupted and must not move a virtual clock.
	SleepUntil(ns int64) bool
}

// Forever is the deadline of a read that no interrupt can end (interrupts
// off, or the counter halted): as on Linux it waits until a signal.
const Forever = math.MaxInt64

// The driver's per-timer flags, with the values of drivers/char/hpet.c.
const (
	drvOpen     = 0x1 // HPET_OPEN: a /dev/hpet file holds the timer
	drvIE       = 0x2 // HPET_IE: interrupts on (HPET_IE_ON)
	drvPeriodic = 0x4 // HPET_PERIODIC: HPET_EPI given
	drvShared   = 0x8 // HPET_SHARED_IRQ: level-triggered; the handler checks and clears the status bit
)

// driver is Linux's struct hpet_dev: the /dev/hpet driver's state for one
// timer. It belongs to the timer, not to a file, as in Linux.
type driver struct {
	flags    uint32 // drvOpen | drvIE | drvPeriodic | drvShared
	freq     uint64 // hd_ireqfreq: the interrupt period in ticks; 0 until HPET_IRQFREQ
	readBase uint64 // the timer's irqs at the open or the last read: hd_irqdata = irqs - readBase
	irq      bool   // hd_hdwirq: an IRQ was routed to the timer at its first open
	bound    bool   // a *File refers to the timer (not saved: files are re-bound after a restore)
}

// rearms reports whether Linux's handler re-arms the comparator after each
// interrupt: interrupts on, not periodic ("treating non-periodic like
// periodic").
func (d *driver) rearms() bool { return d.flags&(drvIE|drvPeriodic) == drvIE && d.freq != 0 }

// acks reports whether Linux's handler clears the timer's status bit.
func (d *driver) acks() bool { return d.flags&(drvIE|drvShared) == drvIE|drvShared }

// SetMaxUserFreq sets the sysctl dev.hpet.max-user-freq: the highest
// HPET_IRQFREQ a task without CAP_SYS_RESOURCE may ask for (default 64).
// emuckpt's guests never have CAP_SYS_RESOURCE (see docs/DEVICES.md).
func (h *HPET) SetMaxUserFreq(hz uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.maxUserFreq = hz
}

// MaxUserFreq returns the sysctl dev.hpet.max-user-freq.
func (h *HPET) MaxUserFreq() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.maxUserFreq
}

// DeviceInfo is /dev/hpet's device number and permissions for
// vfs.FS.AddDevice.
func DeviceInfo() vfs.DeviceInfo {
	return vfs.DeviceInfo{Major: DeviceMajor, Minor: DeviceMinor, Perm: DevicePerm}
}

// File is an open /dev/hpet: Linux's drivers/char/hpet.c ABI over the
// model. Each open file holds one timer. The FS supplies Stat and
// Describe.
type File struct {
	vfs.DeviceBase
	h       *HPET
	n       int
	sleeper Sleeper
	closed  bool // guarded by h.mu
	// asyncBase is the timer's irqs when AsyncEvents last counted them
	// (guarded by h.mu).
	asyncBase uint64
}

var (
	_ vfs.File              = (*File)(nil)
	_ vfs.Mappable          = (*File)(nil)
	_ vfs.Poller            = (*File)(nil)
	_ vfs.ReadyTimer        = (*File)(nil)
	_ vfs.AsyncSource       = (*File)(nil)
	_ guestmm.DeviceBacking = (*Backing)(nil)
	_ guestmm.BackingAccess = (*Backing)(nil)
)

// Open is open(2) of /dev/hpet, as hpet_open: the file must be opened
// read-only (O_WRONLY or O_RDWR: EINVAL), and it claims the lowest
// free timer (EBUSY when every timer is held). All timers are available:
// the guest kernel reserves none for itself. sleeper is how a blocking
// read waits; with a nil sleeper such a read returns vfs.EBLOCK, and the
// caller waits for the file to poll readable (the guest kernel does).
func (h *HPET) Open(flags int, sleeper Sleeper) (vfs.File, unix.Errno) {
	if acc := flags & unix.O_ACCMODE; acc == unix.O_WRONLY || acc == unix.O_RDWR {
		return nil, unix.EINVAL
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	h.settle(now)
	for n := range h.timers {
		t := &h.timers[n]
		if t.drv.flags&drvOpen != 0 {
			continue
		}
		t.drv.flags |= drvOpen
		t.drv.readBase = t.irqs
		t.drv.bound = true
		h.setIRQ(n)
		f := &File{h: h, n: n, sleeper: sleeper, asyncBase: t.irqs}
		f.SetFlags(flags)
		return f, 0
	}
	return nil, unix.EBUSY
}

// ReopenFile binds a new File to timer n, which a restored State says is
// held open: the way to re-create a /dev/hpet descriptor after
// RestoreState. It fails with EBADF if the timer is not held open in the
// state, EBUSY if a File already refers to it.
func (h *HPET) ReopenFile(n int, flags int, sleeper Sleeper) (vfs.File, unix.Errno) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if n < 0 || n >= len(h.timers) || h.timers[n].drv.flags&drvOpen == 0 {
		return nil, unix.EBADF
	}
	if h.timers[n].drv.bound {
		return nil, unix.EBUSY
	}
	h.settle(h.now())
	h.timers[n].drv.bound = true
	f := &File{h: h, n: n, sleeper: sleeper, asyncBase: h.timers[n].irqs}
	f.SetFlags(flags)
	return f, 0
}

// setIRQ is hpet_timer_set_irq: at a timer's first open the driver makes
// it level-triggered and routes it to the first non-legacy input of
// INT_ROUTE_CAP. The caller holds mu and has settled.
func (h *HPET) setIRQ(n int) {
	t := &h.timers[n]
	if t.drv.irq {
		return
	}
	if t.conf&TnIntTypeLevel == 0 {
		h.writeTimerConf(n, h.timerConfReg(n)|TnIntTypeLevel)
	}
	caps := uint64(RouteCap) &^ 0xffff // the I/O APIC's legacy inputs are skipped
	for irq := uint64(16); irq < 32; irq++ {
		if caps&(1<<irq) != 0 {
			h.writeTimerConf(n, h.timerConfReg(n)|irq<<TnRouteShift)
			t.drv.irq = true
			return
		}
	}
}

// timerConfReg is timer n's configuration register as a load reads it.
func (h *HPET) timerConfReg(n int) uint64 { return h.timers[n].conf | h.timerCaps(n) }

// Timer is the index of the timer the file holds.
func (f *File) Timer() int { return f.n }

// lock takes the model's lock, settled at now, or fails with EBADF for a
// closed file. On success the caller unlocks.
func (f *File) lock() (now int64, errno unix.Errno) {
	f.h.mu.Lock()
	if f.closed {
		f.h.mu.Unlock()
		return 0, unix.EBADF
	}
	now = f.h.now()
	f.h.settle(now)
	return now, 0
}

// DescribeDevice is the timer the file holds, so that a restore that
// preserves device state re-attaches the descriptor to it (ReopenFile).
func (f *File) DescribeDevice() []byte { return []byte(strconv.Itoa(f.n)) }

// Read is hpet_read: with no HPET_IRQFREQ set it fails with EIO; a buffer
// shorter than an unsigned long is EINVAL. Otherwise it waits for the
// timer's next interrupt (EAGAIN instead with O_NONBLOCK; EINTR if the
// Sleeper is interrupted) and returns 8 bytes: the number of interrupts
// since the open or the last read. With interrupts off it waits until
// interrupted, as Linux does.
func (f *File) Read(p []byte) (int, unix.Errno) {
	h := f.h
	var waitedForever bool
	for {
		now, errno := f.lock()
		if errno != 0 {
			return 0, errno
		}
		t := &h.timers[f.n]
		if t.drv.freq == 0 {
			h.mu.Unlock()
			return 0, unix.EIO
		}
		if len(p) < 8 {
			h.mu.Unlock()
			return 0, unix.EINVAL
		}
		if data := t.irqs - t.drv.readBase; data != 0 {
			t.drv.readBase = t.irqs
			h.mu.Unlock()
			binary.LittleEndian.PutUint64(p, data)
			return 8, 0
		}
		if f.Flags()&unix.O_NONBLOCK != 0 {
			h.mu.Unlock()
			return 0, unix.EAGAIN
		}
		next, ok := h.nextFire(f.n, now)
		h.mu.Unlock()
		if !ok {
			// Nothing will ever fire. A Sleeper that returns from
			// Forever without an interrupt cannot wait forever: give up
			// rather than spin.
			if f.sleeper == nil {
				return 0, vfs.EBLOCK
			}
			if waitedForever || !f.sleeper.SleepUntil(Forever) {
				return 0, unix.EINTR
			}
			waitedForever = true
			continue
		}
		if f.sleeper == nil {
			return 0, vfs.EBLOCK
		}
		if !f.sleeper.SleepUntil(next) {
			return 0, unix.EINTR
		}
	}
}

// Poll is hpet_poll: readable (POLLIN | POLLRDNORM) when the timer has
// interrupted since the open or the last read, which is when a read would
// not wait; nothing before HPET_IRQFREQ. A closed file is POLLNVAL.
func (f *File) Poll() uint32 {
	if _, errno := f.lock(); errno != 0 {
		return vfs.PollNval
	}
	defer f.h.mu.Unlock()
	t := &f.h.timers[f.n]
	if t.drv.freq != 0 && t.irqs != t.drv.readBase {
		return vfs.PollIn | vfs.PollRdnorm
	}
	return 0
}

// NextReady is when the timer next interrupts (NextFire), which is when a
// poll that waits for it must look again; false when it never will.
func (f *File) NextReady() (int64, bool) {
	now, errno := f.lock()
	if errno != 0 {
		return 0, false
	}
	defer f.h.mu.Unlock()
	if f.h.timers[f.n].drv.freq == 0 {
		return 0, false
	}
	return f.h.nextFire(f.n, now)
}

// AsyncEvents is the number of interrupts the timer raised since the
// previous call (or the open): each is one kill_fasync(SIGIO, POLL_IN) of
// Linux's hpet_interrupt, which the kernel turns into a signal to the
// file's owner while O_ASYNC is set.
func (f *File) AsyncEvents() uint64 {
	if _, errno := f.lock(); errno != 0 {
		return 0
	}
	defer f.h.mu.Unlock()
	t := &f.h.timers[f.n]
	n := t.irqs - f.asyncBase
	f.asyncBase = t.irqs
	return n
}

// Pread is Read: Linux's driver ignores the offset, and the file is
// opened with FMODE_PREAD. A negative offset is EINVAL.
func (f *File) Pread(p []byte, off int64) (int, unix.Errno) {
	if off < 0 {
		return 0, unix.EINVAL
	}
	return f.Read(p)
}

// Ioctl is hpet_ioctl. Requests are compared as the 32-bit cmd Linux
// sees; anything but the six HPET requests is EINVAL, as in the driver.
func (f *File) Ioctl(req, arg uint64, m vfs.Memory) (uint64, unix.Errno) {
	cmd := uint32(req)
	switch cmd {
	case HPET_IE_ON, HPET_IE_OFF, HPET_INFO, HPET_EPI, HPET_DPI, HPET_IRQFREQ:
	default:
		if f.isClosed() {
			return 0, unix.EBADF
		}
		return 0, unix.EINVAL
	}
	now, errno := f.lock()
	if errno != 0 {
		return 0, errno
	}
	h := f.h
	if cmd == HPET_INFO {
		info := h.info(f.n)
		h.mu.Unlock()
		if m == nil || m.CopyOut(arg, info[:]) != nil {
			return 0, unix.EFAULT
		}
		return 0, 0
	}
	defer h.mu.Unlock()
	switch cmd {
	case HPET_IE_ON:
		return 0, h.ieOn(f.n, now)
	case HPET_IE_OFF:
		h.ieOff(f.n)
	case HPET_EPI:
		if h.timerCaps(f.n)&TnPeriodicCap == 0 {
			return 0, unix.ENXIO
		}
		h.timers[f.n].drv.flags |= drvPeriodic
	case HPET_DPI:
		if h.timerCaps(f.n)&TnPeriodicCap == 0 {
			return 0, unix.ENXIO
		}
		t := &h.timers[f.n]
		if t.drv.flags&drvPeriodic != 0 && t.conf&TnPeriodic != 0 {
			h.writeTimerConf(f.n, h.timerConfReg(f.n)^TnPeriodic)
		}
		t.drv.flags &^= drvPeriodic
	case HPET_IRQFREQ:
		// The guest has no CAP_SYS_RESOURCE: the limit always applies.
		if arg > h.maxUserFreq {
			return 0, unix.EACCES
		}
		if arg == 0 {
			return 0, unix.EINVAL
		}
		h.timers[f.n].drv.freq = h.hzToTicks(arg)
	}
	return 0, 0
}

// hzToTicks is hpet_time_div: ticks per period of hz, rounded, and also
// the way back from ticks to Hz.
func (h *HPET) hzToTicks(hz uint64) uint64 { return (h.tickFreq + hz>>1) / hz }

// info is HPET_INFO's struct hpet_info for timer n. The caller holds mu.
func (h *HPET) info(n int) [InfoSize]byte {
	var b [InfoSize]byte
	d := &h.timers[n].drv
	if d.freq != 0 {
		binary.LittleEndian.PutUint64(b[0:], h.hzToTicks(d.freq)) // hi_ireqfreq
	}
	binary.LittleEndian.PutUint64(b[8:], h.timerConfReg(n)&TnPeriodicCap) // hi_flags
	binary.LittleEndian.PutUint16(b[16:], 0)                              // hi_hpet: the only block
	binary.LittleEndian.PutUint16(b[18:], uint16(n))                      // hi_timer
	return b
}

// ieOn is hpet_ioctl_ieon, register access for register access, with a
// calibration delta (hp_delta) of 0: the driver's accesses take no time.
// The caller holds mu and has settled at now.
func (h *HPET) ieOn(n int, now int64) unix.Errno {
	t := &h.timers[n]
	d := &t.drv
	if d.freq == 0 {
		return unix.EIO
	}
	if d.flags&drvIE != 0 {
		return unix.EBUSY
	}
	d.flags |= drvIE
	if t.conf&TnIntTypeLevel != 0 {
		d.flags |= drvShared
	}
	if !d.irq {
		d.flags ^= drvIE
		return unix.EIO
	}
	all := ^uint64(0)
	if d.flags&drvShared != 0 {
		// Keep the timer from firing while it is set up, and clear any
		// left-over status.
		h.writeTimerConf(n, h.timerConfReg(n)&^TnPeriodic)
		h.writeComparator(n, h.counterAt(now), all)
		h.status &^= 1 << n
	}
	period := d.freq
	v := h.timerConfReg(n)
	// The driver forces the comparator into 32-bit mode.
	g := v | Tn32Bit | TnIntEnable
	if d.flags&drvPeriodic != 0 {
		g |= TnPeriodic
		h.writeTimerConf(n, v|TnPeriodic|TnValSet)
		h.writeComparator(n, period+h.counterAt(now), all) // the accumulator: the first interrupt
		h.writeComparator(n, period, all)                  // the period
	} else {
		h.writeComparator(n, period+h.counterAt(now), all)
	}
	if d.flags&drvShared != 0 {
		h.status &^= 1 << n
	}
	h.writeTimerConf(n, g)
	return 0
}

// ieOff is HPET_IE_OFF. The caller holds mu and has settled.
func (h *HPET) ieOff(n int) {
	d := &h.timers[n].drv
	if d.flags&drvIE == 0 {
		return
	}
	h.writeTimerConf(n, h.timerConfReg(n)&^TnIntEnable)
	d.flags ^= drvIE
}

func (f *File) isClosed() bool {
	f.h.mu.Lock()
	defer f.h.mu.Unlock()
	return f.closed
}

// Close is hpet_release: the timer's interrupt is disabled, its frequency
// forgotten, periodic mode left if HPET_EPI had set it, and the timer is
// free for the next open.
func (f *File) Close() unix.Errno {
	if _, errno := f.lock(); errno != 0 {
		return 0
	}
	h := f.h
	defer h.mu.Unlock()
	f.closed = true
	n := f.n
	d := &h.timers[n].drv
	h.writeTimerConf(n, h.timerConfReg(n)&^TnIntEnable)
	d.freq = 0
	if d.flags&drvPeriodic != 0 && h.timers[n].conf&TnPeriodic != 0 {
		h.writeTimerConf(n, h.timerConfReg(n)^TnPeriodic)
	}
	d.flags &^= drvOpen | drvIE | drvPeriodic
	d.bound = false
	return 0
}

// MmapBacking is hpet_mmap: exactly one page (the length rounded up to
// whole pages) at offset 0, else EINVAL; a writable mapping is EACCES, as
// the file is always read-only. The mapping is the HPET's register page,
// uncached.
func (f *File) MmapBacking(off, length uint64, prot uint32, _ bool) (vfs.Backing, unix.Errno) {
	if prot&unix.PROT_WRITE != 0 {
		return nil, unix.EACCES
	}
	if off != 0 || length == 0 || length > MMIOSize {
		return nil, unix.EINVAL
	}
	return &Backing{h: f.h}, 0
}

// Backing is a mapping of /dev/hpet: a guestmm.DeviceBacking whose page is
// the HPET's MMIO region, so guest loads reach the model through the bus.
type Backing struct{ h *HPET }

// HPET is the mapped device.
func (b *Backing) HPET() *HPET { return b.h }

// Name is the device's path, for /proc/self/maps.
func (*Backing) Name() string { return DevicePath }

// MMIOBase is the guest-physical address of the register page.
func (*Backing) MMIOBase() uint64 { return MMIOBase }

// MMIOSize is one page.
func (*Backing) MMIOSize() uint64 { return MMIOSize }

// VMAType is the checkpoint VMA type of the mapping, "hpet".
func (*Backing) VMAType() string { return VMAType }

// Access is how /dev/hpet is always open: readable (and executable, as any
// device node on a mount without noexec), never writable, so a shared
// mapping can never be made writable.
func (*Backing) Access() guestmm.Prot { return guestmm.ProtRead | guestmm.ProtExec }

// errNotFile is ReadAt's error.
var errNotFile = fmt.Errorf("hpet: /dev/hpet's mapping is device memory, not file contents: %w", unix.EIO)

// ReadAt fails with EIO: the mapping's pages are the device's, reached
// through the MMIO bus, and never read as a file.
func (*Backing) ReadAt([]byte, int64) (int, error) { return 0, errNotFile }
