package hpet

import "math/bits"

// settle brings every comparator forward to now: it counts the matches
// the counter made since the last settle point, advances periodic
// comparators, raises level-triggered status bits and counts interrupts.
// Every register access that depends on the comparators, and every write,
// settles first. The caller holds mu.
func (h *HPET) settle(now int64) {
	if now <= h.last {
		return
	}
	if h.running {
		if n := h.ticksBetween(h.last, now); n > 0 {
			c0 := h.lastCount
			for i := range h.timers {
				t := &h.timers[i]
				m, cmp := t.matches(c0, n)
				if m == 0 {
					continue
				}
				t.cmp = cmp
				delivered := t.conf&TnIntEnable != 0
				if delivered {
					t.irqs += m
				}
				// A level-triggered match sets the status bit, whether or
				// not the interrupt is enabled; Linux's handler for a
				// level-triggered /dev/hpet timer clears it at once.
				if t.conf&TnIntTypeLevel != 0 {
					if delivered && t.drv.acks() {
						h.status &^= 1 << i
					} else {
						h.status |= 1 << i
					}
				}
			}
			h.lastCount = c0 + n
		}
	}
	h.last = now
}

// step is the distance in ticks between two matches of t (after the
// first), or 0 if it matches only once in 2^64 ticks. A periodic timer
// adds its period (a period of 0 matches again when the counter wraps,
// as the comparator stays put); a one-shot timer matches again only when
// the counter comes round: every 2^32 ticks in 32-bit mode. Linux's
// /dev/hpet handler re-arms a one-shot timer one interrupt period on
// from each match, which makes it periodic in effect.
func (t *timer) step() uint64 {
	w32 := t.conf&Tn32Bit != 0
	var s uint64
	switch {
	case t.conf&TnPeriodic != 0:
		s = t.period
	case t.conf&TnIntEnable != 0 && t.drv.rearms():
		s = t.drv.freq
	}
	if w32 {
		s = uint64(uint32(s))
		if s == 0 {
			s = 1 << 32
		}
	}
	return s
}

// matches counts the counter values in (c0, c0+n] at which t's comparator
// matches, and returns the comparator as it stands after them. In 32-bit
// mode only the low 32 bits of the counter are compared.
func (t *timer) matches(c0, n uint64) (count, cmp uint64) {
	cmp = t.cmp
	d, ok := t.firstMatch(c0)
	if !ok || d > n {
		return 0, cmp
	}
	count = 1
	s := t.step()
	if s != 0 {
		count += (n - d) / s
	}
	if t.conf&TnPeriodic != 0 || t.conf&TnIntEnable != 0 && t.drv.rearms() {
		cmp += count * s
		if t.conf&Tn32Bit != 0 {
			cmp = uint64(uint32(cmp))
		}
	}
	return count, cmp
}

// firstMatch is the number of ticks d ≥ 1 after counter value c0 at which
// t next matches; ok is false when that is 2^64 ticks away (a 64-bit
// comparator equal to the counter).
func (t *timer) firstMatch(c0 uint64) (d uint64, ok bool) {
	if t.conf&Tn32Bit != 0 {
		d = uint64(uint32(t.cmp) - uint32(c0))
		if d == 0 {
			d = 1 << 32
		}
		return d, true
	}
	d = t.cmp - c0
	return d, d != 0
}

// project returns timer n as it will stand at time at ≥ last, given that
// no register changes before then, and the counter's value then. The
// caller holds mu.
func (h *HPET) project(n int, at int64) (timer, uint64) {
	t := h.timers[n]
	if !h.running || at <= h.last {
		return t, h.lastCount
	}
	nt := h.ticksBetween(h.last, at)
	m, cmp := t.matches(h.lastCount, nt)
	if m > 0 {
		t.cmp = cmp
		if t.conf&TnIntEnable != 0 {
			t.irqs += m
		}
	}
	return t, h.lastCount + nt
}

// Interrupts is the number of interrupts timer n has raised from New (or
// the restored state's count) up to time at: comparator matches while
// Tn_INT_ENB_CNF was set. Times in the future are projected from the
// present registers; a time before the last register access counts as
// that access's time. An out-of-range timer has raised none.
func (h *HPET) Interrupts(n int, at int64) uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if n < 0 || n >= len(h.timers) {
		return 0
	}
	t, _ := h.project(n, at)
	return t.irqs
}

// Fired is the number of interrupts timer n raises in the window
// (since, until]: Interrupts(n, until) - Interrupts(n, since). The model
// keeps no history, so a window that starts before the last register
// access starts there.
func (h *HPET) Fired(n int, since, until int64) uint64 {
	if until <= since {
		return 0
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if n < 0 || n >= len(h.timers) {
		return 0
	}
	a, _ := h.project(n, since)
	b, _ := h.project(n, until)
	return b.irqs - a.irqs
}

// NextFire is the earliest time t > after at which timer n raises an
// interrupt, if the registers stay as they are. ok is false when it
// never will: the counter is halted, the timer's interrupt is disabled,
// or the match is beyond the end of int64 time.
func (h *HPET) NextFire(n int, after int64) (t int64, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.nextFire(n, after)
}

// nextFire is NextFire with mu held.
func (h *HPET) nextFire(n int, after int64) (int64, bool) {
	if n < 0 || n >= len(h.timers) || !h.running {
		return 0, false
	}
	if after < h.last {
		after = h.last
	}
	t, c := h.project(n, after)
	if t.conf&TnIntEnable == 0 {
		return 0, false
	}
	d, ok := t.firstMatch(c)
	if !ok {
		return 0, false
	}
	kh, kl := h.ticks(after - h.t0)
	var carry uint64
	kl, carry = bits.Add64(kl, d, 0)
	kh += carry
	return h.timeOfTick(kh, kl)
}
