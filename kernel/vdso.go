package kernel

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/emuckpt/emuckpt/guestmm"
	"github.com/emuckpt/emuckpt/kernel/vdso"
	"github.com/emuckpt/emuckpt/vmm"
	"golang.org/x/sys/unix"
)

// The vDSO (docs/KERNEL.md, "The vDSO"). Outside --deterministic every
// process gets two VMAs at the top of its mmap area, as Linux places them
// when it does not randomize the layout (emuckpt never does):
//
//	[vvar]  one read-only page, the clock parameters (vvarLayout)
//	[vdso]  the ELF image of package kernel/vdso; AT_SYSINFO_EHDR
//
// The guest's clocks then come from its TSC: the kernel's own
// clock_gettime (tscClock) and the vDSO compute the same formula from the
// same parameters, so a program that mixes both never sees time go back.
// The parameters follow the host's clock: Tick re-anchors them every
// vvarPeriod and slews the rate so that the guest's CLOCK_MONOTONIC stays
// within a few microseconds of the host's.

// vvarLayout is struct vvar of kernel/vdso/src/vdso.c, byte offsets.
const (
	vvarSeq       = 0  // u32, odd while the kernel writes
	vvarFlags     = 4  // u32, vvarValid
	vvarClockMask = 8  // u32, bit n: clock id n is served
	vvarShift     = 12 // u32
	vvarTSCBase   = 16 // u64
	vvarMult      = 24 // u64
	vvarMonoBase  = 32 // s64, CLOCK_MONOTONIC at tsc_base
	vvarOff       = 40 // s64[vvarClocks], clock id n minus CLOCK_MONOTONIC

	vvarValid  = 1
	vvarClocks = 16
)

// tscShift is the fixed-point shift of the TSC-to-nanoseconds rate.
const tscShift = 32

// vvarPeriod is how often (in host nanoseconds) a system call re-anchors
// the parameters to the host clock.
const vvarPeriod = 50_000_000

// slewPeriods is how many periods re-anchoring takes to close the gap
// between the guest's clock and the host's.
const slewPeriods = 4

// maxSlew bounds how fast the guest clock's rate may differ from the
// measured TSC rate to catch up with the host clock (500 ppm, as NTP).
const maxSlew = 500e-6

// servedClocks are the clocks the TSC clock computes; the others (the
// CPU-time clocks, the alarm clocks, bad ids) stay with the inner clock
// and the vDSO makes the system call for them.
var servedClocks = []int32{
	unix.CLOCK_REALTIME, unix.CLOCK_MONOTONIC, unix.CLOCK_MONOTONIC_RAW,
	unix.CLOCK_REALTIME_COARSE, unix.CLOCK_MONOTONIC_COARSE, unix.CLOCK_BOOTTIME, unix.CLOCK_TAI,
}

// tscParams is one set of parameters: immutable once published.
type tscParams struct {
	tscBase  uint64
	mult     uint64 // nanoseconds per tick << tscShift
	monoBase int64
	mask     uint32
	off      [vvarClocks]int64
}

// mono is CLOCK_MONOTONIC at guest TSC value tsc.
func (p *tscParams) mono(tsc uint64) int64 {
	var d uint64
	if tsc > p.tscBase {
		d = tsc - p.tscBase
	}
	hi, lo := bits.Mul64(d, p.mult)
	return p.monoBase + int64(hi<<(64-tscShift)|lo>>tscShift)
}

// tscClock is the guest's clock when it has a vDSO: the served clocks
// are computed from the guest's TSC (the host's plus tscOff), the rest,
// Sleep and TSC are the inner clock's.
type tscClock struct {
	inner  Clock
	tscOff int64  // guest TSC minus host TSC
	vvar   []byte // the vvar frame in guest RAM
	p      atomic.Pointer[tscParams]
	mu     sync.Mutex // serializes updates
	// rate is the measured nanoseconds per tick << tscShift, and
	// (t0, ns0) the first anchor it is measured from.
	rate    float64
	t0      uint64
	ns0     int64
	next    atomic.Uint64 // guest TSC of the next re-anchoring
	period  uint64        // vvarPeriod in ticks
	updates atomic.Uint64 // re-anchorings so far (tests)
}

// newTSCClock starts a TSC clock over inner, anchored to it now.
func newTSCClock(inner Clock, vvar []byte, tscOff int64, khz uint64) *tscClock {
	c := &tscClock{inner: inner, tscOff: tscOff, vvar: vvar}
	c.rate = 1e6 / float64(khz) * (1 << tscShift)
	c.period = uint64(vvarPeriod / 1e6 * float64(khz))
	c.mu.Lock()
	defer c.mu.Unlock()
	c.anchor(true)
	return c
}

func (c *tscClock) guestTSC() uint64 { return vmm.RDTSC() + uint64(c.tscOff) }

// sample reads the inner clock's CLOCK_MONOTONIC together with the
// guest TSC.
func (c *tscClock) sample() (uint64, int64) {
	t0 := c.guestTSC()
	ns, _ := c.inner.Now(unix.CLOCK_MONOTONIC)
	t1 := c.guestTSC()
	return t0 + (t1-t0)/2, ns
}

// anchor publishes new parameters. With step the guest clock is set to
// the inner clock's (the first anchor, AdvanceClock); otherwise it goes
// on from where it is, with a rate that closes the gap to the inner
// clock within slewPeriods periods. Called with mu held.
func (c *tscClock) anchor(step bool) {
	t, host := c.sample()
	old := c.p.Load()
	np := &tscParams{tscBase: t, monoBase: host}
	if step || old == nil {
		c.t0, c.ns0 = t, host
	} else {
		np.monoBase = old.mono(t)
		if gap := host - np.monoBase; gap > 1e6 {
			np.monoBase = host // far behind (a stall of the host clock's reader): catch up at once
		}
		if dt := t - c.t0; dt > 4*c.period { // long enough to measure the rate to a ppm
			c.rate = float64(host-c.ns0) / float64(dt) * (1 << tscShift)
		}
	}
	// Slew: close the gap over the next slewPeriods periods, within
	// maxSlew.
	adj := float64(host-np.monoBase) / (slewPeriods * vvarPeriod)
	adj = math.Max(-maxSlew, math.Min(maxSlew, adj))
	np.mult = uint64(c.rate * (1 + adj))
	// Offsets of the other clocks from CLOCK_MONOTONIC: kept unless the
	// inner clock's moved by more than a millisecond (a host clock step),
	// so that the jitter of reading two clocks never steps them back.
	// The coarse clocks read as their fine ones (a finer resolution than
	// Linux's tick, never behind it by a tick).
	for _, id := range servedClocks {
		src := id
		switch id {
		case unix.CLOCK_REALTIME_COARSE:
			src = unix.CLOCK_REALTIME
		case unix.CLOCK_MONOTONIC_COARSE:
			src = unix.CLOCK_MONOTONIC
		}
		ns, ok := c.inner.Now(src)
		if !ok {
			continue
		}
		np.mask |= 1 << id
		now, _ := c.inner.Now(unix.CLOCK_MONOTONIC)
		off := ns - now
		if src == unix.CLOCK_MONOTONIC {
			off = 0
		}
		if old != nil && old.mask&(1<<id) != 0 && !step && abs64(off-old.off[id]) < 1e6 {
			off = old.off[id]
		}
		np.off[id] = off
	}
	c.publish(np)
	c.next.Store(t + c.period)
	c.updates.Add(1)
}

func abs64(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}

// publish writes p into the vvar under its sequence counter, then makes
// it the kernel's.
func (c *tscClock) publish(p *tscParams) {
	v := c.vvar
	seq := (*uint32)(unsafe.Pointer(&v[vvarSeq]))
	s := atomic.LoadUint32(seq)
	atomic.StoreUint32(seq, s+1)
	le := binary.LittleEndian
	le.PutUint32(v[vvarFlags:], vvarValid)
	le.PutUint32(v[vvarClockMask:], p.mask)
	le.PutUint32(v[vvarShift:], tscShift)
	le.PutUint64(v[vvarTSCBase:], p.tscBase)
	le.PutUint64(v[vvarMult:], p.mult)
	le.PutUint64(v[vvarMonoBase:], uint64(p.monoBase))
	for i, o := range p.off {
		le.PutUint64(v[vvarOff+8*i:], uint64(o))
	}
	atomic.StoreUint32(seq, s+2) // a locked store: ordered after the others
	c.p.Store(p)
}

func (c *tscClock) Now(id int32) (int64, bool) {
	p := c.p.Load()
	if id < 0 || id >= vvarClocks || p.mask&(1<<id) == 0 {
		return c.inner.Now(id)
	}
	return p.mono(c.guestTSC()) + p.off[id], true
}

func (c *tscClock) Sleep(d int64) { c.inner.Sleep(d) }
func (c *tscClock) TSC() uint64   { return c.inner.TSC() }

// Tick re-anchors the parameters once per vvarPeriod.
func (c *tscClock) Tick() {
	c.inner.Tick()
	if c.guestTSC() < c.next.Load() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.guestTSC() >= c.next.Load() {
		c.anchor(false)
	}
}

// advance moves the guest's clocks d forward (AdvanceClock).
func (c *tscClock) advance(d int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inner = offsetClock{Clock: c.inner, off: d}
	c.anchor(true)
}

// vdsoState is the kernel's vDSO: the vvar frame and the clock that
// writes it. clock is nil when the run has no vDSO; vvarPA is 0 under
// --deterministic.
type vdsoState struct {
	clock  *tscClock
	vvarPA uint64
	// why says why there is no vDSO outside --deterministic.
	why error
}

// setupVDSO gives the run a vDSO unless it is deterministic or the
// guest's TSC cannot be related to the host's; the clock becomes the TSC
// clock. Without the TSC clock the vvar page stays zero (not valid): a
// restored process's vDSO then makes system calls. Call it once the vCPU
// exists.
func (k *Kernel) setupVDSO() {
	if k.cfg.Deterministic {
		return
	}
	pa, err := k.frames.Alloc()
	if err != nil {
		k.vdso.why = err
		return
	}
	k.vdso.vvarPA = pa
	if err := k.startTSCClock(); err != nil {
		k.vdso.why = err
	}
}

func (k *Kernel) startTSCClock() error {
	off, err := k.measureTSC()
	if err != nil {
		return err
	}
	khz, err := k.cpus[0].vcpu.TSCKHz()
	if err != nil {
		return err
	}
	pa := k.vdso.vvarPA
	c := newTSCClock(k.clock, k.m.Mem()[pa:pa+guestmm.PageSize], off, khz)
	k.vdso.clock = c
	k.clock = c
	return nil
}

// measureTSC returns the guest TSC's offset from the host's on the
// kernel's vCPU, in the mode vmm.GuestTSCMode found (once per process,
// in a throwaway machine: running the probe on this vCPU before its first
// task would leave state behind).
func (k *Kernel) measureTSC() (int64, error) {
	mode, err := vmm.GuestTSCMode()
	if err != nil {
		return 0, err
	}
	off, _, err := k.cpus[0].vcpu.GuestTSCOffset(mode)
	return off, err
}

// vvarBacking maps the kernel's vvar frame.
type vvarBacking struct{ k *Kernel }

func (vvarBacking) Name() string { return "[vvar]" }

func (vvarBacking) ReadAt(p []byte, off int64) (int, error) {
	clear(p)
	return len(p), nil
}

func (b vvarBacking) Frame(off uint64) (uint64, error) {
	if off != 0 || b.k.vdso.vvarPA == 0 {
		return 0, unix.EFAULT
	}
	b.k.frames.IncRef(b.k.vdso.vvarPA)
	return b.k.vdso.vvarPA, nil
}

// vdsoPages is the size of the [vdso] VMA.
func vdsoPages() uint64 {
	return (uint64(len(vdso.Image)) + guestmm.PageSize - 1) / guestmm.PageSize
}

// vvarVMA and vdsoVMA are the two VMAs at start (the vvar's address).
func (k *Kernel) vvarVMA(start uint64) guestmm.VMA {
	return guestmm.VMA{Start: start, End: start + vdso.VVarSize, Prot: guestmm.ProtRead, MaxProt: guestmm.ProtRead,
		Kind: guestmm.KindVVar, Backing: vvarBacking{k}, Name: "[vvar]"}
}

func vdsoVMA(start uint64) guestmm.VMA {
	return guestmm.VMA{Start: start, End: start + vdsoPages()*guestmm.PageSize,
		Prot: guestmm.ProtRead | guestmm.ProtExec, MaxProt: guestmm.ProtRead | guestmm.ProtWrite | guestmm.ProtExec,
		Anonymous: true, Kind: guestmm.KindVDSO, Name: "[vdso]"}
}

// mapVDSO maps the vvar and the vDSO into a new address space where
// Linux puts them without randomization, the first mapping of the mmap
// area, and returns the vDSO's address for AT_SYSINFO_EHDR (0: no vDSO).
func (k *Kernel) mapVDSO(as *guestmm.AddressSpace) (uint64, error) {
	if k.vdso.clock == nil {
		return 0, nil
	}
	size := vdso.VVarSize + vdsoPages()*guestmm.PageSize
	start, err := as.Mmap(0, size, guestmm.ProtNone, guestmm.MapPrivate|guestmm.MapAnonymous, nil, 0)
	if err != nil {
		return 0, fmt.Errorf("placing the vDSO: %w", err)
	}
	if err := as.Munmap(start, size); err != nil {
		return 0, err
	}
	base := start + vdso.VVarSize
	if err := as.RestoreVMA(k.vvarVMA(start)); err != nil {
		return 0, fmt.Errorf("mapping the vvar: %w", err)
	}
	if err := as.RestoreVMA(vdsoVMA(base)); err != nil {
		return 0, fmt.Errorf("mapping the vDSO: %w", err)
	}
	if err := as.WriteForce(base, vdso.Image); err != nil {
		return 0, fmt.Errorf("writing the vDSO: %w", err)
	}
	return base, nil
}
