package hpet

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestSaveRestore(t *testing.T) {
	h, clk, _, f := openTest(t, unix.O_RDONLY)
	require.Zero(t, ioctl(f, HPET_IRQFREQ, 64))
	require.Zero(t, ioctl(f, HPET_EPI, 0))
	require.Zero(t, ioctl(f, HPET_IE_ON, 0))
	write64(t, h, tcmp(2), 0x1234)
	write64(t, h, tcfg(2), TnIntTypeLevel)
	write64(t, h, tfsb(1), 0xfeedface)
	write64(t, h, RegConfig, ConfEnable|ConfLegacy)
	clk.advance(50_000_000) // 3 interrupts so far
	n, errno := readCount(t, f)
	require.Zero(t, errno)
	require.Equal(t, uint64(3), n)
	clk.advance(20_000_000) // one more, unread

	s := h.SaveState()
	assert.Equal(t, uint64(4), s.Timer[0].Interrupts)
	assert.Equal(t, uint64(3), s.Timer[0].Driver.ReadBase)
	assert.True(t, s.Timer[0].Driver.Open && s.Timer[0].Driver.IE && s.Timer[0].Driver.Periodic && s.Timer[0].Driver.SharedIRQ)
	assert.Equal(t, uint64(0b100), s.Status, "timer 2 matched (level, no interrupt)")
	counter := s.Counter

	// Through JSON, into a model whose clock is elsewhere.
	js, err := json.Marshal(s)
	require.NoError(t, err)
	var s2 State
	require.NoError(t, json.Unmarshal(js, &s2))
	h2, clk2 := newTest(t, Config{})
	clk2.set(9_000_000_000)
	require.NoError(t, h2.RestoreState(s2))

	assert.Equal(t, counter, read64(t, h2, RegCounter), "the counter resumes where it was")
	for _, off := range []uint64{RegCapID, RegConfig, RegIntStatus, tcfg(0), tcmp(0), tfsb(1), tcfg(2), tcmp(2)} {
		assert.Equal(t, read64(t, h, off), read64(t, h2, off), "register %#x", off)
	}
	assert.Equal(t, s, h2.SaveState().withSavedAt(s.SavedAt))

	// The descriptor is re-bound and carries on: one unread interrupt,
	// then one per 1/64 s.
	_, errno = h2.ReopenFile(1, unix.O_RDONLY, nil)
	assert.Equal(t, unix.EBADF, errno, "timer 1 was not open")
	g, errno := h2.ReopenFile(0, unix.O_RDONLY, &fakeSleeper{clk: clk2})
	require.Zero(t, errno)
	_, errno = h2.ReopenFile(0, unix.O_RDONLY, nil)
	assert.Equal(t, unix.EBUSY, errno, "already bound")
	_, errno = h2.Open(unix.O_RDONLY, nil)
	require.Zero(t, errno, "timer 1 is free")
	f2 := g.(*File)
	n, errno = readCount(t, f2)
	require.Zero(t, errno)
	assert.Equal(t, uint64(1), n)
	at := clk2.Now()
	n, errno = readCount(t, f2)
	require.Zero(t, errno)
	assert.Equal(t, uint64(1), n)
	assert.Less(t, clk2.Now()-at, int64(15_700_000))
	assert.Equal(t, uint64(4), h.Interrupts(0, clk.Now()), "the original is unaffected")

	// Mismatched shapes are refused.
	h3, _ := newTest(t, Config{Timers: 4})
	assert.ErrorContains(t, h3.RestoreState(s), "timers=3,period=69841279")
	bad := s
	bad.Timer = bad.Timer[:2]
	assert.ErrorContains(t, h2.RestoreState(bad), "corrupt")
}

// withSavedAt returns s with SavedAt replaced, for comparing states
// saved at different times.
func (s State) withSavedAt(at int64) State {
	s.SavedAt = at
	return s
}

func TestRestoreHalted(t *testing.T) {
	h, clk := newTest(t, Config{Timers: 1, PeriodFS: 10_000_000})
	h.Enable()
	clk.advance(1_000)
	write64(t, h, RegConfig, 0)
	s := h.SaveState()
	assert.Equal(t, uint64(100), s.Counter)
	h2, clk2 := newTest(t, Config{Timers: 1, PeriodFS: 10_000_000})
	require.NoError(t, h2.RestoreState(s))
	clk2.advance(1_000_000)
	assert.Equal(t, uint64(100), read64(t, h2, RegCounter), "still halted")
	write64(t, h2, RegConfig, ConfEnable)
	clk2.advance(1_000)
	assert.Equal(t, uint64(200), read64(t, h2, RegCounter))
}
