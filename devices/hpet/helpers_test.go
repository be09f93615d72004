package hpet

import (
	"encoding/binary"
	"errors"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// fakeClock is a Clock the test moves by hand.
type fakeClock struct {
	mu sync.Mutex
	ns int64
}

func (c *fakeClock) Now() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ns
}

func (c *fakeClock) set(ns int64) {
	c.mu.Lock()
	c.ns = ns
	c.mu.Unlock()
}

func (c *fakeClock) advance(d int64) {
	c.mu.Lock()
	c.ns += d
	c.mu.Unlock()
}

// fakeSleeper is a Sleeper on a fakeClock: like the virtual clock it jumps
// to the deadline. It records the deadlines it was given; interrupt makes
// it return false (Forever always returns false unless foreverReturns).
type fakeSleeper struct {
	clk            *fakeClock
	deadlines      []int64
	interrupt      bool
	foreverReturns bool
}

func (s *fakeSleeper) SleepUntil(ns int64) bool {
	s.deadlines = append(s.deadlines, ns)
	if s.interrupt {
		return false
	}
	if ns == Forever {
		return s.foreverReturns
	}
	if ns > s.clk.Now() {
		s.clk.set(ns)
	}
	return true
}

// fakeMemory is guest memory at [base, base+len(b)).
type fakeMemory struct {
	base uint64
	b    []byte
}

var errFault = errors.New("fault")

func (m *fakeMemory) CopyIn(va uint64, dst []byte) error {
	if va < m.base || va-m.base+uint64(len(dst)) > uint64(len(m.b)) {
		return errFault
	}
	copy(dst, m.b[va-m.base:])
	return nil
}

func (m *fakeMemory) CopyOut(va uint64, src []byte) error {
	if va < m.base || va-m.base+uint64(len(src)) > uint64(len(m.b)) {
		return errFault
	}
	copy(m.b[va-m.base:], src)
	return nil
}

// newTest returns an HPET of cfg on a fake clock at time 1000 ns.
func newTest(t testing.TB, cfg Config) (*HPET, *fakeClock) {
	t.Helper()
	clk := &fakeClock{ns: 1000}
	h, err := New(cfg, clk)
	require.NoError(t, err)
	return h, clk
}

// read64 and read32 are guest loads; they fail the test on a fault.
func read64(t testing.TB, h *HPET, off uint64) uint64 {
	t.Helper()
	var b [8]byte
	require.NoError(t, h.Read(off, b[:]))
	return binary.LittleEndian.Uint64(b[:])
}

func read32(t testing.TB, h *HPET, off uint64) uint32 {
	t.Helper()
	var b [4]byte
	require.NoError(t, h.Read(off, b[:]))
	return binary.LittleEndian.Uint32(b[:])
}

func write64(t testing.TB, h *HPET, off, v uint64) {
	t.Helper()
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	require.NoError(t, h.Write(off, b[:]))
}

func write32(t testing.TB, h *HPET, off uint64, v uint32) {
	t.Helper()
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	require.NoError(t, h.Write(off, b[:]))
}

func tcfg(n int) uint64 { return RegTimer0 + uint64(n)*TimerStride + TimerConfig }
func tcmp(n int) uint64 { return RegTimer0 + uint64(n)*TimerStride + TimerCompare }
func tfsb(n int) uint64 { return RegTimer0 + uint64(n)*TimerStride + TimerFSB }

// nsForTicks is the time the default HPET takes for n ticks, rounded up.
func nsForTicks(n uint64) int64 {
	return int64((n*DefaultPeriodFS + femtosecondsPerNS - 1) / femtosecondsPerNS)
}
