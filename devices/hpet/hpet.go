package hpet

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"sync"

	"github.com/emuckpt/emuckpt/vmm"
)

// Clock is the guest's monotonic clock in nanoseconds: the host clock, or
// the VMM's virtual clock under --deterministic. It should not go
// backwards; if it does, the model holds time still until it catches up.
type Clock interface {
	Now() int64
}

// ClockFunc adapts a function to Clock.
type ClockFunc func() int64

// Now calls f.
func (f ClockFunc) Now() int64 { return f() }

// Signals of an AccessFault (Linux's numbers).
const (
	sigbus    = 7
	busAdraln = 1 // BUS_ADRALN: invalid address alignment
	busAdrerr = 2 // BUS_ADRERR: nonexistent physical address
)

// HPET is a register-accurate model of one HPET 1.0a block. It is a
// vmm.Device for the MMIO region at MMIOBase, and the /dev/hpet driver
// (Open) runs on top of it. It is safe for concurrent use.
//
// Time: the main counter is derived from the Clock. While ENABLE_CNF is
// set, counter = base + (now - t0) * 1e6 / PeriodFS, rounded down; clearing
// ENABLE_CNF latches it. Comparator matches are not delivered to a CPU;
// the model works out from the clock when each comparator matched, and
// keeps per timer the number of interrupts raised (Interrupts, Fired,
// NextFire) and the level-triggered status bits. See doc.go.
type HPET struct {
	cfg      Config
	clk      Clock
	period   uint64 // PeriodFS
	gcap     uint64 // the General Capabilities and ID register
	tickFreq uint64 // ticks per second, rounded: Linux's hp_tick_freq

	mu      sync.Mutex
	conf    uint64 // General Configuration: ConfEnable | ConfLegacy
	status  uint64 // General Interrupt Status
	running bool   // conf&ConfEnable, kept apart for the counter's fast path
	base    uint64 // counter value at t0 (running) or the latched value (halted)
	t0      int64  // when the counter last started, or base was last set while running
	// The settle point: every comparator's state is known as of time
	// last, when the counter read lastCount. Register accesses move it
	// forward (settle); it never moves back.
	last      int64
	lastCount uint64
	// seen is the latest clock reading the model has acted on: time never
	// runs backwards for it, even if the Clock does.
	seen   int64
	timers []timer

	maxUserFreq uint64 // the sysctl dev.hpet.max-user-freq
}

// timer is one comparator and the /dev/hpet driver's state for it.
type timer struct {
	conf   uint64 // the writable configuration bits, read back as written
	valSet bool   // Tn_VAL_SET_CNF latched: the next comparator write sets the accumulator
	cmp    uint64 // the comparator: the counter value of the next match
	period uint64 // periodic mode: what each match adds to cmp
	fsb    uint64 // the FSB Interrupt Route register (plain storage)
	irqs   uint64 // interrupts raised since New: matches with Tn_INT_ENB_CNF set
	drv    driver // Linux's struct hpet_dev for this timer
}

// New returns a model of an HPET with cfg's shape, its counter halted at
// 0 and every register at its reset value. Zero fields of cfg take their
// defaults. The VMM calls Enable when the machine starts.
func New(cfg Config, clk Clock) (*HPET, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if clk == nil {
		return nil, fmt.Errorf("hpet: New: nil Clock")
	}
	cfg = cfg.withDefaults()
	p := uint64(cfg.PeriodFS)
	h := &HPET{
		cfg:    cfg,
		clk:    clk,
		period: p,
		gcap: RevisionID | uint64(cfg.Timers-1)<<CapNumTimShift | CapCountSize | CapLegacyRoute |
			VendorID<<CapVendorShift | p<<CapPeriodShift,
		tickFreq:    (1_000_000_000_000_000 + p/2) / p,
		timers:      make([]timer, cfg.Timers),
		maxUserFreq: DefaultMaxUserFreq,
	}
	for i := range h.timers {
		h.timers[i].cmp = ^uint64(0) // the spec's reset value
	}
	h.last = clk.Now()
	h.t0, h.seen = h.last, h.last
	return h, nil
}

// Config returns the HPET's shape, with defaults filled in.
func (h *HPET) Config() Config { return h.cfg }

// TickFrequency is the counter's frequency in Hz, rounded to the nearest
// integer as Linux's driver computes it (14318180 for the default period).
func (h *HPET) TickFrequency() uint64 { return h.tickFreq }

// Name is the device's name on the MMIO bus.
func (h *HPET) Name() string { return "hpet" }

var _ vmm.Device = (*HPET)(nil)

// Enable sets ENABLE_CNF, starting the main counter from its current
// value (0 after New), as Linux does when it takes the HPET.
func (h *HPET) Enable() {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	h.settle(now)
	h.writeConf(h.conf|ConfEnable, now)
}

// Counter returns the main counter's value now.
func (h *HPET) Counter() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.counterAt(h.now())
}

// now reads the clock, holding time still if it went backwards. The
// caller holds mu.
func (h *HPET) now() int64 {
	if t := h.clk.Now(); t > h.seen {
		h.seen = t
	}
	return h.seen
}

// checkAccess enforces the spec's access rules: aligned 32- or 64-bit
// accesses only.
func checkAccess(off uint64, size int) error {
	if size != 4 && size != 8 {
		return &vmm.AccessFault{Signal: sigbus, Code: busAdraln,
			Reason: fmt.Sprintf("hpet: %d-byte access at offset %#x: the HPET takes only aligned 4- and 8-byte accesses", size, off)}
	}
	if off%uint64(size) != 0 {
		return &vmm.AccessFault{Signal: sigbus, Code: busAdraln,
			Reason: fmt.Sprintf("hpet: misaligned %d-byte access at offset %#x", size, off)}
	}
	if off >= MMIOSize {
		return &vmm.AccessFault{Signal: sigbus, Code: busAdrerr,
			Reason: fmt.Sprintf("hpet: access at offset %#x is past the HPET's page", off)}
	}
	return nil
}

// Read is a load from the register block: 4 or 8 bytes, naturally
// aligned; a 4-byte load at +4 reads the high half of a 64-bit register.
// Other widths or alignments fail with SIGBUS (BUS_ADRALN).
func (h *HPET) Read(off uint64, data []byte) error {
	if err := checkAccess(off, len(data)); err != nil {
		return err
	}
	h.mu.Lock()
	v := h.read64(off &^ 7)
	h.mu.Unlock()
	if len(data) == 8 {
		binary.LittleEndian.PutUint64(data, v)
	} else {
		binary.LittleEndian.PutUint32(data, uint32(v>>((off&4)*8)))
	}
	return nil
}

// Write is a store to the register block, with the same access rules as
// Read. A 4-byte store changes one half of a 64-bit register.
func (h *HPET) Write(off uint64, data []byte) error {
	if err := checkAccess(off, len(data)); err != nil {
		return err
	}
	var val, mask uint64
	if len(data) == 8 {
		val, mask = binary.LittleEndian.Uint64(data), ^uint64(0)
	} else {
		shift := (off & 4) * 8
		val, mask = uint64(binary.LittleEndian.Uint32(data))<<shift, 0xffffffff<<shift
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	h.settle(now)
	h.write64(off&^7, val, mask, now)
	return nil
}

// ReadRegister returns the 64-bit register at off (8-aligned), with the
// side effects of a guest load (none, for the HPET).
func (h *HPET) ReadRegister(off uint64) uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.read64(off &^ 7)
}

// WriteRegister stores v into the 64-bit register at off (8-aligned) as a
// guest 8-byte store would.
func (h *HPET) WriteRegister(off uint64, v uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	h.settle(now)
	h.write64(off&^7, v, ^uint64(0), now)
}

// timerReg splits off into a timer index and the offset within its
// registers, or ok=false when off is not a timer's.
func (h *HPET) timerReg(off uint64) (n int, reg uint64, ok bool) {
	if off < RegTimer0 {
		return 0, 0, false
	}
	i := (off - RegTimer0) / TimerStride
	if i >= uint64(len(h.timers)) {
		return 0, 0, false
	}
	return int(i), (off - RegTimer0) % TimerStride, true
}

// read64 is the value of the 64-bit register at off. The caller holds mu.
func (h *HPET) read64(off uint64) uint64 {
	switch off {
	case RegCounter:
		return h.counterAt(h.now())
	case RegCapID:
		return h.gcap
	case RegConfig:
		return h.conf
	case RegIntStatus:
		h.settle(h.now())
		return h.status
	}
	n, reg, ok := h.timerReg(off)
	if !ok {
		return 0 // reserved
	}
	t := &h.timers[n]
	switch reg {
	case TimerConfig:
		return t.conf | h.timerCaps(n)
	case TimerCompare:
		h.settle(h.now())
		return t.cmp
	case TimerFSB:
		return t.fsb
	}
	return 0
}

// timerCaps is timer n's read-only configuration bits.
func (h *HPET) timerCaps(n int) uint64 {
	c := uint64(TnSize64Cap) | RouteCap<<TnRouteCapShift
	if n < 2 {
		c |= TnPeriodicCap
	}
	return c
}

// write64 stores the mask bits of val into the register at off. The
// caller holds mu and has settled the model at now.
func (h *HPET) write64(off, val, mask uint64, now int64) {
	switch off {
	case RegCapID:
		return // read-only
	case RegConfig:
		h.writeConf(h.conf&^mask|val&mask, now)
		return
	case RegIntStatus:
		h.status &^= val & mask // write 1 to clear
		return
	case RegCounter:
		// The spec says software must halt the counter before writing
		// it; a write while it runs is ignored.
		if !h.running {
			h.base = h.base&^mask | val&mask
			h.lastCount = h.base
		}
		return
	}
	n, reg, ok := h.timerReg(off)
	if !ok {
		return // reserved
	}
	switch reg {
	case TimerConfig:
		if mask&0xffffffff != 0 { // the high half is INT_ROUTE_CAP, read-only
			h.writeTimerConf(n, val)
		}
	case TimerCompare:
		h.writeComparator(n, val, mask)
	case TimerFSB:
		t := &h.timers[n]
		t.fsb = t.fsb&^mask | val&mask
	}
}

// writeConf sets the General Configuration register. Starting the counter
// sets its origin to now; halting it latches its value.
func (h *HPET) writeConf(v uint64, now int64) {
	v &= ConfEnable | ConfLegacy
	on := v&ConfEnable != 0
	switch {
	case on && !h.running:
		h.base, h.t0, h.running = h.lastCount, now, true
	case !on && h.running:
		h.base, h.running = h.lastCount, false
	}
	h.conf = v
}

// writeTimerConf sets the writable bits of timer n's configuration from
// the low 32 bits of v.
func (h *HPET) writeTimerConf(n int, v uint64) {
	t := &h.timers[n]
	old := t.conf
	w := uint64(TnIntTypeLevel | TnIntEnable | Tn32Bit)
	perCap := h.timerCaps(n)&TnPeriodicCap != 0
	if perCap {
		w |= TnPeriodic
	}
	c := v & w
	// An INT_ROUTE_CNF value the timer cannot route to is not taken: the
	// field keeps its old value (the spec: it "will not match what was
	// written").
	route := v & TnRouteMask >> TnRouteShift
	if RouteCap&(1<<route) != 0 {
		c |= route << TnRouteShift
	} else {
		c |= old & TnRouteMask
	}
	t.conf = c
	if c&TnPeriodic == 0 {
		t.valSet = false
	} else if perCap && v&TnValSet != 0 {
		t.valSet = true
	}
	if c&Tn32Bit != 0 && old&Tn32Bit == 0 {
		// A 64-bit timer forced to 32 bits keeps only the low halves.
		t.cmp, t.period = uint64(uint32(t.cmp)), uint64(uint32(t.period))
	}
	if c&TnIntTypeLevel == 0 {
		// In edge mode the status bit means nothing; it reads 0.
		h.status &^= 1 << n
	}
}

// writeComparator stores the mask bits of v into timer n's comparator. In
// periodic mode a write sets the period, and also the comparator (the
// accumulator) when Tn_VAL_SET_CNF was set; any write clears VAL_SET. In
// 32-bit mode the high half is ignored.
func (h *HPET) writeComparator(n int, v, mask uint64) {
	t := &h.timers[n]
	if t.conf&Tn32Bit != 0 {
		v, mask = v&0xffffffff, mask&0xffffffff
		if mask == 0 {
			return
		}
	}
	periodic := t.conf&TnPeriodic != 0
	if !periodic || t.valSet {
		t.cmp = t.cmp&^mask | v&mask
	}
	if periodic {
		t.period = t.period&^mask | v&mask
	}
	t.valSet = false
}

// counterAt is the main counter's value at now (≥ last). The caller holds
// mu.
func (h *HPET) counterAt(now int64) uint64 {
	if !h.running {
		return h.base
	}
	_, lo := h.ticks(now - h.t0)
	return h.base + lo
}

// ticks is the number of whole ticks in dt ≥ 0 nanoseconds,
// floor(dt * 1e6 / PeriodFS), as a 128-bit number.
func (h *HPET) ticks(dt int64) (hi, lo uint64) {
	ph, pl := bits.Mul64(uint64(dt), femtosecondsPerNS)
	if ph == 0 {
		return 0, pl / h.period
	}
	hi = ph / h.period
	lo, _ = bits.Div64(ph%h.period, pl, h.period)
	return hi, lo
}

// ticksBetween is the number of ticks the running counter makes in
// (a, b], a ≥ t0, saturated at 2^64-1.
func (h *HPET) ticksBetween(a, b int64) uint64 {
	ah, al := h.ticks(a - h.t0)
	bh, bl := h.ticks(b - h.t0)
	lo, borrow := bits.Sub64(bl, al, 0)
	hi, _ := bits.Sub64(bh, ah, borrow)
	if hi != 0 {
		return ^uint64(0)
	}
	return lo
}

// timeOfTick is the earliest time at which the running counter has made
// k = (kh, kl) ticks since t0: t0 + ceil(k * PeriodFS / 1e6). ok is false
// if that is past the end of int64 time.
func (h *HPET) timeOfTick(kh, kl uint64) (int64, bool) {
	mh, ml := bits.Mul64(kl, h.period)
	hh, hl := bits.Mul64(kh, h.period)
	var c uint64
	mh, c = bits.Add64(mh, hl, 0)
	if hh != 0 || c != 0 {
		return 0, false
	}
	ml, c = bits.Add64(ml, femtosecondsPerNS-1, 0)
	mh, c = bits.Add64(mh, 0, c)
	if c != 0 || mh >= femtosecondsPerNS {
		return 0, false
	}
	q, _ := bits.Div64(mh, ml, femtosecondsPerNS)
	t := h.t0 + int64(q)
	if q > 1<<63-1 || t < h.t0 {
		return 0, false
	}
	return t, true
}
