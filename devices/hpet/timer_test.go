package hpet

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// startAt returns an enabled default HPET whose counter starts at c.
func startAt(t *testing.T, c uint64) (*HPET, *fakeClock) {
	h, clk := newTest(t, Config{})
	write64(t, h, RegCounter, c)
	h.Enable()
	return h, clk
}

// toCounter moves the clock to the earliest time the counter reads c.
func toCounter(t *testing.T, h *HPET, clk *fakeClock, c uint64) {
	t.Helper()
	cur := read64(t, h, RegCounter)
	require.GreaterOrEqual(t, c, cur)
	h.mu.Lock()
	kh, kl := h.ticks(clk.Now() - h.t0)
	kl += c - cur
	at, ok := h.timeOfTick(kh, kl)
	h.mu.Unlock()
	require.True(t, ok)
	clk.set(at)
	require.Equal(t, c, read64(t, h, RegCounter))
}

func TestOneShot64(t *testing.T) {
	h, clk := startAt(t, 0)
	write64(t, h, tcmp(2), 1000)
	write64(t, h, tcfg(2), TnIntEnable)
	t0 := clk.Now()

	at, ok := h.NextFire(2, t0)
	require.True(t, ok)
	assert.Equal(t, t0+nsForTicks(1000), at)
	assert.Zero(t, h.Interrupts(2, at-1))
	assert.Equal(t, uint64(1), h.Interrupts(2, at))

	toCounter(t, h, clk, 999)
	assert.Zero(t, h.Interrupts(2, clk.Now()))
	toCounter(t, h, clk, 1000)
	assert.Equal(t, uint64(1), h.Interrupts(2, clk.Now()))
	assert.Equal(t, uint64(1000), read64(t, h, tcmp(2)), "a one-shot comparator stays put")
	clk.advance(10_000_000_000)
	assert.Equal(t, uint64(1), h.Interrupts(2, clk.Now()), "only once in 2^64 ticks")
	_, ok = h.NextFire(2, clk.Now())
	assert.False(t, ok)
	assert.Zero(t, read64(t, h, RegIntStatus), "edge-triggered: no status")
	assert.Zero(t, h.Interrupts(0, clk.Now()), "other timers are quiet")
	assert.Zero(t, h.Interrupts(-1, clk.Now()))
	assert.Zero(t, h.Interrupts(3, clk.Now()))
}

func TestOneShotCompareEqualsCounter(t *testing.T) {
	h, clk := startAt(t, 500)
	write64(t, h, tcmp(2), 500) // the counter already reads 500
	write64(t, h, tcfg(2), TnIntEnable)
	clk.advance(1_000_000)
	assert.Zero(t, h.Interrupts(2, clk.Now()), "a match needs the counter to reach the value")
}

func TestPeriodicValSet(t *testing.T) {
	h, clk := startAt(t, 0)
	write64(t, h, tcfg(0), TnPeriodic|TnValSet|TnIntEnable)
	write64(t, h, tcmp(0), 1000) // VAL_SET: the accumulator (first match) and the period
	write64(t, h, tcmp(0), 500)  // the period only
	assert.Equal(t, uint64(1000), read64(t, h, tcmp(0)))
	assert.Zero(t, read64(t, h, tcfg(0))&TnValSet, "VAL_SET cleared and write-only")

	toCounter(t, h, clk, 999)
	assert.Zero(t, h.Interrupts(0, clk.Now()))
	toCounter(t, h, clk, 1000)
	assert.Equal(t, uint64(1), h.Interrupts(0, clk.Now()))
	assert.Equal(t, uint64(1500), read64(t, h, tcmp(0)), "the comparator advanced by the period")
	toCounter(t, h, clk, 2600) // 1500, 2000, 2500
	assert.Equal(t, uint64(4), h.Interrupts(0, clk.Now()))
	assert.Equal(t, uint64(3000), read64(t, h, tcmp(0)))

	// A write without VAL_SET changes the period from the next match on.
	write64(t, h, tcmp(0), 100)
	assert.Equal(t, uint64(3000), read64(t, h, tcmp(0)))
	toCounter(t, h, clk, 3250) // 3000, 3100, 3200
	assert.Equal(t, uint64(7), h.Interrupts(0, clk.Now()))
	assert.Equal(t, uint64(3300), read64(t, h, tcmp(0)))

	// VAL_SET again moves the accumulator.
	write64(t, h, tcfg(0), TnPeriodic|TnValSet|TnIntEnable)
	write64(t, h, tcmp(0), 10_000)
	toCounter(t, h, clk, 9_999)
	assert.Equal(t, uint64(7), h.Interrupts(0, clk.Now()))
	toCounter(t, h, clk, 30_000) // 10000, 20000, 30000
	assert.Equal(t, uint64(10), h.Interrupts(0, clk.Now()))
}

func TestValSetNeedsPeriodicMode(t *testing.T) {
	h, _ := startAt(t, 0)
	write64(t, h, tcfg(0), TnValSet) // not periodic: no effect
	write64(t, h, tcfg(0), TnPeriodic)
	write64(t, h, tcmp(0), 1234)
	assert.Equal(t, ^uint64(0), read64(t, h, tcmp(0)), "without VAL_SET a periodic write is the period only")

	// One-shot timers ignore VAL_SET.
	write64(t, h, tcfg(2), TnValSet)
	write64(t, h, tcmp(2), 77)
	assert.Equal(t, uint64(77), read64(t, h, tcmp(2)))
}

func TestPeriodic32BitHalves(t *testing.T) {
	// Any comparator write clears VAL_SET, so in 64-bit mode 32-bit
	// stores set only the accumulator's low half (as in QEMU).
	h, _ := startAt(t, 0)
	write32(t, h, tcfg(0), TnPeriodic|TnValSet|TnIntEnable)
	write32(t, h, tcmp(0), 100) // accumulator and period low, clears VAL_SET
	write32(t, h, tcmp(0)+4, 0) // the period's high half only
	assert.Equal(t, uint64(0xffffffff_00000064), read64(t, h, tcmp(0)))
	h.mu.Lock()
	assert.Equal(t, uint64(100), h.timers[0].period)
	h.mu.Unlock()

	// In 32-bit mode (what Linux uses) the low half is all there is.
	h, clk := startAt(t, 0)
	write32(t, h, tcfg(0), TnPeriodic|TnValSet|TnIntEnable|Tn32Bit)
	write32(t, h, tcmp(0), 100)
	assert.Equal(t, uint64(100), read64(t, h, tcmp(0)))
	toCounter(t, h, clk, 1000)
	assert.Equal(t, uint64(10), h.Interrupts(0, clk.Now()))
}

func TestPeriodZero(t *testing.T) {
	h, clk := startAt(t, 0)
	write64(t, h, tcfg(1), TnPeriodic|TnValSet|TnIntEnable)
	write64(t, h, tcmp(1), 0) // accumulator 0, period 0
	toCounter(t, h, clk, 1_000_000)
	assert.Zero(t, h.Interrupts(1, clk.Now()), "64-bit: 0 comes round again only after 2^64 ticks")

	h, clk = startAt(t, 0)
	write64(t, h, tcfg(1), TnPeriodic|TnValSet|TnIntEnable|Tn32Bit)
	write64(t, h, tcmp(1), 10)
	clk.advance(nsForTicks(10))
	assert.Equal(t, uint64(1), h.Interrupts(1, clk.Now()))
	write64(t, h, tcfg(1), TnPeriodic|TnValSet|TnIntEnable|Tn32Bit)
	write64(t, h, tcmp(1), 0) // accumulator 0, period 0: matches at every wrap
	at, ok := h.NextFire(1, clk.Now())
	require.True(t, ok)
	h.mu.Lock()
	c := h.counterAt(at)
	h.mu.Unlock()
	assert.Equal(t, uint64(1<<32), c)
	clk.set(at)
	assert.Equal(t, uint64(2), h.Interrupts(1, clk.Now()))
	next, ok := h.NextFire(1, at)
	require.True(t, ok)
	assert.InDelta(t, float64(nsForTicks(1<<32)), float64(next-at), 1)
}

func Test32BitOneShotWraps(t *testing.T) {
	h, clk := startAt(t, 0xFFFF_FF00)
	write64(t, h, tcfg(2), Tn32Bit|TnIntEnable)
	write64(t, h, tcmp(2), 0xAAAA_0000_0000_0080)
	assert.Equal(t, uint64(0x80), read64(t, h, tcmp(2)), "32-bit mode drops the high half")
	write32(t, h, tcmp(2)+4, 0xffffffff)
	assert.Zero(t, read32(t, h, tcmp(2)+4), "the high half ignores writes")

	at, ok := h.NextFire(2, clk.Now())
	require.True(t, ok)
	assert.Equal(t, clk.Now()+nsForTicks(0x180), at, "matches the low half after the wrap")
	toCounter(t, h, clk, 0x1_0000_0080)
	assert.Equal(t, uint64(1), h.Interrupts(2, clk.Now()))
	toCounter(t, h, clk, 0x2_0000_007F)
	assert.Equal(t, uint64(1), h.Interrupts(2, clk.Now()))
	toCounter(t, h, clk, 0x2_0000_0080)
	assert.Equal(t, uint64(2), h.Interrupts(2, clk.Now()), "and again each time the low half comes round")
	toCounter(t, h, clk, 0x7_0000_0080)
	assert.Equal(t, uint64(7), h.Interrupts(2, clk.Now()))
}

func Test32BitPeriodicWraps(t *testing.T) {
	h, clk := startAt(t, 0xFFFF_FF00)
	write64(t, h, tcfg(0), TnPeriodic|TnValSet|TnIntEnable|Tn32Bit)
	write64(t, h, tcmp(0), 0xFFFF_FFC0) // first match, period 0xFFFFFFC0
	write64(t, h, tcmp(0), 0x100)       // period 0x100
	toCounter(t, h, clk, 0xFFFF_FFC0)
	assert.Equal(t, uint64(1), h.Interrupts(0, clk.Now()))
	assert.Equal(t, uint64(0xC0), read64(t, h, tcmp(0)), "the comparator wraps at 32 bits")
	toCounter(t, h, clk, 0x1_0000_01C0) // 0x1_000000C0, 0x1_000001C0
	assert.Equal(t, uint64(3), h.Interrupts(0, clk.Now()))
	assert.Equal(t, uint64(0x2C0), read64(t, h, tcmp(0)))

	// Forcing 32-bit mode truncates a 64-bit comparator and period.
	h, _ = startAt(t, 0)
	write64(t, h, tcfg(1), TnPeriodic|TnValSet)
	write64(t, h, tcmp(1), 0x5_0000_0010)
	write64(t, h, tcfg(1), TnPeriodic|Tn32Bit)
	assert.Equal(t, uint64(0x10), read64(t, h, tcmp(1)))
	h.mu.Lock()
	assert.Equal(t, uint64(0x10), h.timers[1].period)
	h.mu.Unlock()
}

func TestLevelStatus(t *testing.T) {
	h, clk := startAt(t, 0)
	write64(t, h, tcmp(1), 100)
	write64(t, h, tcfg(1), TnIntTypeLevel) // interrupt disabled: status only
	write64(t, h, tcmp(2), 100)
	write64(t, h, tcfg(2), TnIntEnable) // edge: no status
	toCounter(t, h, clk, 99)
	assert.Zero(t, read64(t, h, RegIntStatus))
	toCounter(t, h, clk, 100)
	assert.Equal(t, uint64(0b010), read64(t, h, RegIntStatus))
	assert.Zero(t, h.Interrupts(1, clk.Now()), "INT_ENB clear: no interrupt")
	assert.Equal(t, uint64(1), h.Interrupts(2, clk.Now()))

	write64(t, h, RegIntStatus, 0b101) // 0s and other bits: no effect
	assert.Equal(t, uint64(0b010), read64(t, h, RegIntStatus))
	write32(t, h, RegIntStatus+4, 0xffffffff)
	assert.Equal(t, uint64(0b010), read64(t, h, RegIntStatus))
	write32(t, h, RegIntStatus, 0b010)
	assert.Zero(t, read64(t, h, RegIntStatus), "write 1 to clear")

	// Switching to edge mode clears the bit.
	write64(t, h, tcmp(1), 200)
	toCounter(t, h, clk, 200)
	assert.Equal(t, uint64(0b010), read64(t, h, RegIntStatus))
	write64(t, h, tcfg(1), 0)
	assert.Zero(t, read64(t, h, RegIntStatus))
}

func TestHaltedCounterNeverMatches(t *testing.T) {
	h, clk := startAt(t, 0)
	write64(t, h, tcmp(2), 1000)
	write64(t, h, tcfg(2), TnIntEnable)
	write64(t, h, RegConfig, 0)
	clk.advance(1_000_000_000)
	assert.Zero(t, h.Interrupts(2, clk.Now()))
	_, ok := h.NextFire(2, clk.Now())
	assert.False(t, ok, "halted")
	write64(t, h, RegCounter, 2000) // jump past the comparator: no match
	write64(t, h, RegConfig, ConfEnable)
	clk.advance(1_000_000)
	assert.Zero(t, h.Interrupts(2, clk.Now()))
	write64(t, h, tcfg(2), 0)
	write64(t, h, tcmp(2), read64(t, h, RegCounter)+10)
	clk.advance(1_000_000)
	assert.Zero(t, h.Interrupts(2, clk.Now()), "INT_ENB clear")
	_, ok = h.NextFire(2, clk.Now())
	assert.False(t, ok)
}

func TestFiredAndNextFireAgree(t *testing.T) {
	h, clk := startAt(t, 12345)
	write64(t, h, tcfg(0), TnPeriodic|TnValSet|TnIntEnable|Tn32Bit)
	write64(t, h, tcmp(0), 12345+223722)
	write64(t, h, tcmp(0), 223722) // 64 Hz
	start := clk.Now()
	at := start
	for i := range 100 {
		next, ok := h.NextFire(0, at)
		require.True(t, ok)
		require.Greater(t, next, at)
		assert.Equal(t, uint64(i), h.Fired(0, start, next-1))
		assert.Equal(t, uint64(i+1), h.Fired(0, start, next))
		assert.Equal(t, uint64(1), h.Fired(0, next-1, next))
		at = next
	}
	// 100 periods of 223722 ticks at 69841279 fs.
	assert.InDelta(t, float64(100*223722)*DefaultPeriodFS/1e6, float64(at-start), 1)
	assert.Zero(t, h.Fired(0, at, at))
	assert.Zero(t, h.Fired(0, at, start))
	assert.Zero(t, h.Fired(7, start, at))
	_, ok := h.NextFire(9, at)
	assert.False(t, ok)
	// Nothing was settled by the queries.
	assert.Zero(t, h.Interrupts(0, clk.Now()))
}

func TestEnableIsIdempotent(t *testing.T) {
	h, clk := newTest(t, Config{})
	h.Enable()
	clk.advance(1_000_000)
	h.Enable()
	assert.Equal(t, uint64(14318), read64(t, h, RegCounter))
}
