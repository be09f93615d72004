package hpet

import (
	"testing"

	"github.com/emuckpt/emuckpt/kernel/vfs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestPollAndAsync follows one /dev/hpet file through the states of
// hpet_poll (readable when an interrupt is unread) and the interrupts
// that hpet_fasync would signal.
func TestPollAndAsync(t *testing.T) {
	_, clk, _, f := openTest(t, unix.O_RDONLY)
	const period = 15_625_031 // 64 Hz at the default period, in ns (223722 ticks)
	type state struct {
		poll   uint32
		next   bool  // NextReady reports an interrupt to come
		nextIn int64 // ... this long from now (within 100 ns)
		async  uint64
	}
	for _, step := range []struct {
		name string
		do   func()
		want state
	}{
		{"opened", func() {}, state{}},
		{"IRQFREQ, interrupts off", func() { require.Zero(t, ioctl(f, HPET_IRQFREQ, 64)) }, state{}},
		{"IE_ON", func() { require.Zero(t, ioctl(f, HPET_IE_ON, 0)) }, state{next: true, nextIn: period}},
		{"half a period", func() { clk.advance(period / 2) }, state{next: true, nextIn: period - period/2}},
		{"the first interrupt", func() { clk.advance(period - period/2) }, state{poll: vfs.PollIn | vfs.PollRdnorm, next: true, nextIn: period, async: 1}},
		{"three more, unread", func() { clk.advance(3 * period) }, state{poll: vfs.PollIn | vfs.PollRdnorm, next: true, nextIn: period, async: 3}},
		{"read", func() {
			n, errno := readCount(t, f)
			require.Zero(t, errno)
			assert.Equal(t, uint64(4), n)
		}, state{next: true, nextIn: period}},
		{"IE_OFF", func() { require.Zero(t, ioctl(f, HPET_IE_OFF, 0)); clk.advance(10 * period) }, state{}},
	} {
		step.do()
		assert.Equal(t, step.want.poll, f.Poll(), "%s: Poll", step.name)
		at, ok := f.NextReady()
		assert.Equal(t, step.want.next, ok, "%s: NextReady", step.name)
		if ok {
			assert.InDelta(t, step.want.nextIn, at-clk.Now(), 100, "%s: NextReady", step.name)
		}
		assert.Equal(t, step.want.async, f.AsyncEvents(), "%s: AsyncEvents", step.name)
	}
	require.Zero(t, f.Close())
	assert.Equal(t, uint32(vfs.PollNval), f.Poll(), "closed")
	_, ok := f.NextReady()
	assert.False(t, ok)
	assert.Zero(t, f.AsyncEvents())
}

// TestReopenStartsAsyncCount: a file re-attached after a restore does not
// signal the interrupts from before the checkpoint again.
func TestReopenStartsAsyncCount(t *testing.T) {
	h, clk, s, f := openTest(t, unix.O_RDONLY)
	require.Zero(t, ioctl(f, HPET_IRQFREQ, 64))
	require.Zero(t, ioctl(f, HPET_IE_ON, 0))
	clk.advance(100_000_000)
	st := h.SaveState()

	h2, clk2 := newTest(t, Config{})
	clk2.set(clk.Now())
	require.NoError(t, h2.RestoreState(st))
	g, errno := h2.ReopenFile(f.Timer(), unix.O_RDONLY, s)
	require.Zero(t, errno)
	assert.Zero(t, g.(*File).AsyncEvents())
	assert.Equal(t, uint32(vfs.PollIn|vfs.PollRdnorm), g.(*File).Poll(), "the unread interrupts are still readable")
}
