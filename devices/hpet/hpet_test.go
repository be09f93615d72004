package hpet

import (
	"errors"
	"testing"

	"github.com/emuckpt/emuckpt/vmm"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseConfig(t *testing.T) {
	tests := []struct {
		in      string
		want    Config
		wantErr string
	}{
		{"", DefaultConfig(), ""},
		{"timers=3,period=69841279", DefaultConfig(), ""},
		{"timers=1", Config{Timers: 1, PeriodFS: DefaultPeriodFS}, ""},
		{"period=100000000", Config{Timers: 3, PeriodFS: MaxPeriodFS}, ""},
		{" timers = 32 , period=0x1 ", Config{Timers: 32, PeriodFS: 1}, ""},
		{"period=10000000,timers=8,", Config{Timers: 8, PeriodFS: 10000000}, ""},
		{"timers=0", Config{}, "timers=0: want a number of timers from 1 to 32"},
		{"timers=33", Config{}, "from 1 to 32"},
		{"timers=-1", Config{}, "from 1 to 32"},
		{"timers=x", Config{}, "from 1 to 32"},
		{"period=0", Config{}, "period=0: want the tick period in femtoseconds, 1 to 100000000"},
		{"period=100000001", Config{}, "1 to 100000000"},
		{"period=99999999999", Config{}, "1 to 100000000"},
		{"timers=3,timers=4", Config{}, "timers given twice"},
		{"freq=10", Config{}, `unknown key "freq"`},
		{"timers", Config{}, "want KEY=VALUE"},
		{"=3", Config{}, "want KEY=VALUE"},
		{"timers=", Config{}, "want KEY=VALUE"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseConfig(tt.in)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
			assert.NoError(t, got.Validate())
			back, err := ParseConfig(got.String())
			require.NoError(t, err)
			assert.Equal(t, got, back, "String round-trips")
		})
	}
}

func TestNew(t *testing.T) {
	clk := &fakeClock{}
	for _, bad := range []Config{{Timers: 33}, {Timers: -1}, {PeriodFS: MaxPeriodFS + 1}} {
		_, err := New(bad, clk)
		assert.Error(t, err, "%+v", bad)
	}
	_, err := New(Config{}, nil)
	assert.Error(t, err)
	h, err := New(Config{}, clk)
	require.NoError(t, err)
	assert.Equal(t, DefaultConfig(), h.Config())
	assert.Equal(t, uint64(14318180), h.TickFrequency())
	assert.Equal(t, "hpet", h.Name())
}

func TestCapabilities(t *testing.T) {
	tests := []struct {
		cfg  Config
		want uint64
	}{
		// Intel ICH's familiar value: rev 1, 3 timers, 64-bit, legacy route, 8086.
		{DefaultConfig(), 0x0429B17F_8086A201},
		{Config{Timers: 1, PeriodFS: 1}, 0x00000001_8086A001},
		{Config{Timers: 32, PeriodFS: MaxPeriodFS}, 0x05F5E100_8086BF01},
	}
	for _, tt := range tests {
		h, _ := newTest(t, tt.cfg)
		assert.Equal(t, tt.want, read64(t, h, RegCapID), "%s", tt.cfg)
		assert.Equal(t, uint32(tt.want), read32(t, h, RegCapID))
		assert.Equal(t, uint32(tt.want>>32), read32(t, h, RegCapID+4))
		write64(t, h, RegCapID, 0)
		write32(t, h, RegCapID+4, 0)
		assert.Equal(t, tt.want, read64(t, h, RegCapID), "read-only")
	}
}

func TestResetValues(t *testing.T) {
	h, _ := newTest(t, Config{})
	tests := []struct {
		name string
		off  uint64
		want uint64
	}{
		{"config", RegConfig, 0},
		{"status", RegIntStatus, 0},
		{"counter", RegCounter, 0},
		{"timer0 config", tcfg(0), RouteCap<<32 | TnSize64Cap | TnPeriodicCap},
		{"timer1 config", tcfg(1), RouteCap<<32 | TnSize64Cap | TnPeriodicCap},
		{"timer2 config", tcfg(2), RouteCap<<32 | TnSize64Cap},
		{"timer0 comparator", tcmp(0), ^uint64(0)},
		{"timer2 comparator", tcmp(2), ^uint64(0)},
		{"timer0 fsb", tfsb(0), 0},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, read64(t, h, tt.off), tt.name)
	}
}

func TestReservedRegisters(t *testing.T) {
	h, _ := newTest(t, Config{}) // three timers: 0x160.. is past them
	for _, off := range []uint64{0x008, 0x018, 0x028, 0x030, 0x0E8, 0x0F8, 0x118, 0x138, 0x160, 0x168, 0x3F8, 0x400, 0xFF8} {
		write64(t, h, off, ^uint64(0))
		write32(t, h, off+4, 0xffffffff)
		assert.Zero(t, read64(t, h, off), "%#x", off)
	}
	// Nothing else changed.
	assert.Zero(t, read64(t, h, RegConfig))
	assert.Zero(t, read64(t, h, RegCounter))
}

func TestAccessWidths(t *testing.T) {
	h, _ := newTest(t, Config{})
	tests := []struct {
		off  uint64
		size int
		code int // 0: allowed
	}{
		{0x000, 8, 0},
		{0x000, 4, 0},
		{0x004, 4, 0},
		{0x0F4, 4, 0},
		{0xFFC, 4, 0},
		{0x000, 1, busAdraln},
		{0x000, 2, busAdraln},
		{0x000, 3, busAdraln},
		{0x000, 16, busAdraln},
		{0x000, 0, busAdraln},
		{0x002, 4, busAdraln},
		{0x004, 8, busAdraln},
		{0x0F1, 8, busAdraln},
		{0x1000, 4, busAdrerr},
	}
	for _, tt := range tests {
		for _, write := range []bool{false, true} {
			data := make([]byte, tt.size)
			var err error
			if write {
				err = h.Write(tt.off, data)
			} else {
				err = h.Read(tt.off, data)
			}
			if tt.code == 0 {
				assert.NoError(t, err, "%d bytes at %#x", tt.size, tt.off)
				continue
			}
			var af *vmm.AccessFault
			require.True(t, errors.As(err, &af), "%d bytes at %#x write=%v: %v", tt.size, tt.off, write, err)
			assert.Equal(t, 7, af.Signal)
			assert.Equal(t, tt.code, af.Code)
			assert.NotEmpty(t, af.Reason)
		}
	}
}

func TestGeneralConfig(t *testing.T) {
	h, _ := newTest(t, Config{})
	write64(t, h, RegConfig, ^uint64(0))
	assert.Equal(t, uint64(ConfEnable|ConfLegacy), read64(t, h, RegConfig), "reserved bits stay 0")
	write32(t, h, RegConfig+4, 0xffffffff)
	assert.Equal(t, uint64(ConfEnable|ConfLegacy), read64(t, h, RegConfig))
	write32(t, h, RegConfig, ConfLegacy)
	assert.Equal(t, uint64(ConfLegacy), read64(t, h, RegConfig))
	h.Enable()
	assert.Equal(t, uint64(ConfEnable|ConfLegacy), read64(t, h, RegConfig))
}

func TestCounterRate(t *testing.T) {
	tests := []struct {
		period uint32
		dt     int64
		want   uint64
	}{
		{DefaultPeriodFS, 1_000_000_000, 14318179}, // 14318179.94 rounded down
		{DefaultPeriodFS, 1, 0},
		{DefaultPeriodFS, 70, 1},
		{DefaultPeriodFS, 20_000_000, 286363},
		{MaxPeriodFS, 1_000_000_000, 10_000_000},
		{1_000_000, 12345, 12345},
		{1, 1_000_000_000, 1_000_000_000_000_000},
		{1, 20_000_000_000_000, 20_000_000_000_000_000_000 % (1 << 64)}, // wraps after 5 h
		{DefaultPeriodFS, 3600 * 1_000_000_000 * 24 * 365, 451_538_122_605_114},
	}
	for _, tt := range tests {
		h, clk := newTest(t, Config{PeriodFS: tt.period})
		clk.advance(12345)
		assert.Zero(t, read64(t, h, RegCounter), "halted at reset")
		h.Enable()
		clk.advance(tt.dt)
		assert.Equal(t, tt.want, read64(t, h, RegCounter), "period %d after %d ns", tt.period, tt.dt)
		assert.Equal(t, tt.want, h.Counter())
		assert.Equal(t, uint32(tt.want), read32(t, h, RegCounter))
		assert.Equal(t, uint32(tt.want>>32), read32(t, h, RegCounter+4))
	}
}

func TestCounterHaltLatchesAndWrites(t *testing.T) {
	h, clk := newTest(t, Config{})
	h.Enable()
	clk.advance(1_000_000) // 1 ms: 14318 ticks
	assert.Equal(t, uint64(14318), read64(t, h, RegCounter))

	write64(t, h, RegCounter, 5)
	assert.Equal(t, uint64(14318), read64(t, h, RegCounter), "a write while running is ignored")

	write64(t, h, RegConfig, 0) // halt
	clk.advance(1_000_000)
	assert.Equal(t, uint64(14318), read64(t, h, RegCounter), "latched at the halt")
	clk.advance(1_000_000_000)
	assert.Equal(t, uint64(14318), read64(t, h, RegCounter), "stays latched")

	write64(t, h, RegCounter, 0x1_0000_0000)
	assert.Equal(t, uint64(0x1_0000_0000), read64(t, h, RegCounter))
	write32(t, h, RegCounter, 0xffffff00)
	assert.Equal(t, uint64(0x1_ffffff00), read64(t, h, RegCounter), "low half")
	write32(t, h, RegCounter+4, 7)
	assert.Equal(t, uint64(0x7_ffffff00), read64(t, h, RegCounter), "high half")

	write64(t, h, RegConfig, ConfEnable) // restart from the written value
	clk.advance(nsForTicks(0x100))
	assert.Equal(t, uint64(0x8_00000000), read64(t, h, RegCounter), "carries into the high half")
}

func TestClockGoingBackwards(t *testing.T) {
	h, clk := newTest(t, Config{})
	h.Enable()
	clk.advance(1_000_000)
	c := read64(t, h, RegIntStatus) // settles
	_ = c
	c1 := read64(t, h, RegCounter)
	clk.advance(-500_000)
	assert.Equal(t, c1, read64(t, h, RegCounter), "time holds still")
	clk.advance(600_000)
	assert.Greater(t, read64(t, h, RegCounter), c1)
}

func TestTimerConfigBits(t *testing.T) {
	caps0 := uint64(RouteCap<<32 | TnSize64Cap | TnPeriodicCap)
	caps2 := uint64(RouteCap<<32 | TnSize64Cap)
	tests := []struct {
		name  string
		timer int
		write uint64
		want  uint64
	}{
		{"all ones, periodic-capable", 0, ^uint64(0), caps0 | TnIntTypeLevel | TnIntEnable | TnPeriodic | Tn32Bit},
		{"all ones, one-shot only", 2, ^uint64(0), caps2 | TnIntTypeLevel | TnIntEnable | Tn32Bit},
		{"periodic ignored without the cap", 2, TnPeriodic, caps2},
		{"route 20", 0, 20 << TnRouteShift, caps0 | 20<<TnRouteShift},
		{"route 23", 1, 23<<TnRouteShift | TnIntEnable, caps0 | 23<<TnRouteShift | TnIntEnable},
		{"FSB bits are read-only", 0, TnFSBEnable | TnFSBCap, caps0},
		{"capabilities are read-only", 2, TnPeriodicCap, caps2},
		{"VAL_SET reads 0", 0, TnPeriodic | TnValSet, caps0 | TnPeriodic},
		{"reserved bits 0, 7, 16-31", 1, 1 | 1<<7 | 0xffff0000, caps0},
	}
	for _, tt := range tests {
		h, _ := newTest(t, Config{})
		write64(t, h, tcfg(tt.timer), tt.write)
		assert.Equal(t, tt.want, read64(t, h, tcfg(tt.timer)), tt.name)
	}

	// An unsupported route keeps the old one.
	h, _ := newTest(t, Config{})
	write64(t, h, tcfg(0), 21<<TnRouteShift)
	write64(t, h, tcfg(0), 3<<TnRouteShift)
	assert.Equal(t, uint64(21), read64(t, h, tcfg(0))>>TnRouteShift&0x1f)
	// The high half (INT_ROUTE_CAP) ignores 32-bit stores.
	write32(t, h, tcfg(0)+4, 0)
	assert.Equal(t, uint32(RouteCap), read32(t, h, tcfg(0)+4))
	// A 32-bit store to the low half works.
	write32(t, h, tcfg(0), TnIntEnable)
	assert.Equal(t, caps0|TnIntEnable|21<<TnRouteShift, read64(t, h, tcfg(0)), "route 0 is not routable either")
}

func TestFSBRouteStorage(t *testing.T) {
	h, _ := newTest(t, Config{})
	write64(t, h, tfsb(1), 0x12345678_9abcdef0)
	assert.Equal(t, uint64(0x12345678_9abcdef0), read64(t, h, tfsb(1)))
	write32(t, h, tfsb(1)+4, 1)
	assert.Equal(t, uint64(0x1_9abcdef0), read64(t, h, tfsb(1)))
}
