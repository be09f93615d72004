package hpet

import "fmt"

// State is the model's state as plain data, for --device-state=preserve:
// the registers, the main counter's value, every timer's interrupt count
// and the /dev/hpet driver's per-timer state. It has no pointers and
// encodes with encoding/json or gob as it is.
type State struct {
	Timers   int    // the Config the state belongs to
	PeriodFS uint32 //
	Config   uint64 // General Configuration (ENABLE_CNF, LEG_RT_CNF)
	Status   uint64 // General Interrupt Status
	// Counter is the main counter's value at the save. A restore starts
	// it from there (running if Config has ENABLE_CNF): the counter does
	// not count the time between the save and the restore.
	Counter uint64
	// SavedAt is the Clock's reading at the save, for reference; a
	// restore does not use it.
	SavedAt     int64
	MaxUserFreq uint64 // the sysctl dev.hpet.max-user-freq
	Timer       []TimerState
}

// TimerState is one timer in a State.
type TimerState struct {
	// Config is the writable bits of the configuration register (INT_TYPE,
	// INT_ENB, TYPE, 32MODE, INT_ROUTE); ValSet is the latched
	// Tn_VAL_SET_CNF, which reads as 0.
	Config     uint64
	ValSet     bool
	Comparator uint64 // the next match (the accumulator in periodic mode)
	Period     uint64 // periodic mode: the increment
	FSBRoute   uint64
	Interrupts uint64 // interrupts raised so far (see HPET.Interrupts)
	Driver     DriverState
}

// DriverState is Linux's per-timer /dev/hpet state.
type DriverState struct {
	Open      bool   // a /dev/hpet file holds the timer (re-bind it with ReopenFile)
	IE        bool   // HPET_IE_ON given
	Periodic  bool   // HPET_EPI given
	SharedIRQ bool   // level-triggered: the handler clears the status bit
	IRQ       bool   // the timer has been routed an IRQ (at its first open)
	Freq      uint64 // the interrupt period in ticks (HPET_IRQFREQ), 0 if unset
	ReadBase  uint64 // Interrupts at the open or the last read
}

// SaveState returns the model's state now.
func (h *HPET) SaveState() State {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	h.settle(now)
	s := State{
		Timers: h.cfg.Timers, PeriodFS: h.cfg.PeriodFS,
		Config: h.conf, Status: h.status, Counter: h.lastCount, SavedAt: now,
		MaxUserFreq: h.maxUserFreq,
		Timer:       make([]TimerState, len(h.timers)),
	}
	for i := range h.timers {
		t := &h.timers[i]
		d := &t.drv
		s.Timer[i] = TimerState{
			Config: t.conf, ValSet: t.valSet, Comparator: t.cmp, Period: t.period,
			FSBRoute: t.fsb, Interrupts: t.irqs,
			Driver: DriverState{
				Open: d.flags&drvOpen != 0, IE: d.flags&drvIE != 0,
				Periodic: d.flags&drvPeriodic != 0, SharedIRQ: d.flags&drvShared != 0,
				IRQ: d.irq, Freq: d.freq, ReadBase: d.readBase,
			},
		}
	}
	return s
}

// RestoreState replaces the model's state with s, which must come from an
// HPET of the same Config. The counter resumes from s.Counter now. Files
// of the old model no longer refer to timers: re-create each open
// /dev/hpet descriptor with ReopenFile.
func (h *HPET) RestoreState(s State) error {
	if s.Timers != h.cfg.Timers || s.PeriodFS != h.cfg.PeriodFS {
		return fmt.Errorf("hpet: the saved state is of an HPET with timers=%d,period=%d, this one is %s: restore with the same --hpet",
			s.Timers, s.PeriodFS, h.cfg)
	}
	if len(s.Timer) != h.cfg.Timers {
		return fmt.Errorf("hpet: the saved state has %d timers' registers for %d timers: it is corrupt", len(s.Timer), s.Timers)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	h.last, h.lastCount, h.seen = now, s.Counter, now
	h.conf = 0
	h.running = false
	h.base = s.Counter
	h.writeConf(s.Config, now)
	h.maxUserFreq = s.MaxUserFreq
	for i := range h.timers {
		ts := &s.Timer[i]
		t := &h.timers[i]
		*t = timer{}
		h.writeTimerConf(i, ts.Config)
		t.valSet = ts.ValSet && t.conf&TnPeriodic != 0
		t.cmp, t.period, t.fsb, t.irqs = ts.Comparator, ts.Period, ts.FSBRoute, ts.Interrupts
		if t.conf&Tn32Bit != 0 {
			t.cmp, t.period = uint64(uint32(t.cmp)), uint64(uint32(t.period))
		}
		d := &t.drv
		d.irq, d.freq, d.readBase = ts.Driver.IRQ, ts.Driver.Freq, ts.Driver.ReadBase
		for _, f := range []struct {
			on  bool
			bit uint32
		}{{ts.Driver.Open, drvOpen}, {ts.Driver.IE, drvIE}, {ts.Driver.Periodic, drvPeriodic}, {ts.Driver.SharedIRQ, drvShared}} {
			if f.on {
				d.flags |= f.bit
			}
		}
	}
	h.status = s.Status & (1<<len(h.timers) - 1)
	return nil
}
