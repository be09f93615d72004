package kernel

import (
	"encoding/binary"
	"sync"
	"time"

	"crypto/rand"

	"golang.org/x/sys/unix"
)

// Clock is the guest's source of time.
type Clock interface {
	// Now returns the time of clock id (CLOCK_REALTIME, CLOCK_MONOTONIC,
	// ...) in nanoseconds.
	Now(id int32) (int64, bool)
	// Sleep waits d nanoseconds of this clock's time.
	Sleep(d int64)
	// Tick is called at every system call and trapped rdtsc.
	Tick()
	// TSC is the value rdtsc returns when it traps.
	TSC() uint64
}

// HostClock passes the host's clocks through.
type HostClock struct{}

func (HostClock) Now(id int32) (int64, bool) {
	var ts unix.Timespec
	if err := unix.ClockGettime(id, &ts); err != nil {
		return 0, false
	}
	return ts.Nano(), true
}

func (HostClock) Sleep(d int64) { time.Sleep(time.Duration(d)) }
func (HostClock) Tick()         {}

func (c HostClock) TSC() uint64 {
	ns, _ := c.Now(unix.CLOCK_MONOTONIC)
	return uint64(ns)
}

// VirtualClock is the deterministic clock of --deterministic. Its rule:
//
//   - it starts at 0 for CLOCK_MONOTONIC (and BOOTTIME) and at
//     VirtualEpoch for CLOCK_REALTIME;
//   - every system call and every trapped rdtsc/rdtscp advances it by
//     VirtualTick (1 µs);
//   - nanosleep and clock_nanosleep advance it by the requested time
//     instead of waiting;
//   - rdtsc returns the monotonic time in nanoseconds (a 1 GHz TSC);
//   - the CPU-time clocks read the same as CLOCK_MONOTONIC;
//   - timers fire at the first system call or fault at or after their
//     expiry, and sleeps stop at the next expiry (see timers.go).
//
// Nothing the host does changes what the guest reads, so two runs with the
// same program, input and seed see the same times.
type VirtualClock struct {
	mu sync.Mutex
	ns int64
}

// VirtualEpoch is CLOCK_REALTIME at the start of a deterministic run:
// 2000-01-01T00:00:00Z.
const VirtualEpoch = 946684800 * int64(time.Second)

// VirtualTick is how far one system call advances the virtual clock.
const VirtualTick = int64(time.Microsecond)

// NewVirtualClock returns a virtual clock at time 0.
func NewVirtualClock() *VirtualClock { return &VirtualClock{} }

// Elapsed is the virtual time since the start of the run.
func (c *VirtualClock) Elapsed() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ns
}

func (c *VirtualClock) Now(id int32) (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch id {
	case unix.CLOCK_REALTIME, unix.CLOCK_REALTIME_COARSE, unix.CLOCK_TAI:
		return VirtualEpoch + c.ns, true
	case unix.CLOCK_MONOTONIC, unix.CLOCK_MONOTONIC_RAW, unix.CLOCK_MONOTONIC_COARSE,
		unix.CLOCK_BOOTTIME, unix.CLOCK_PROCESS_CPUTIME_ID, unix.CLOCK_THREAD_CPUTIME_ID:
		return c.ns, true
	}
	return 0, false
}

func (c *VirtualClock) Sleep(d int64) {
	c.mu.Lock()
	c.ns += d
	c.mu.Unlock()
}

func (c *VirtualClock) Tick() { c.Sleep(VirtualTick) }

func (c *VirtualClock) TSC() uint64 {
	ns, _ := c.Now(unix.CLOCK_MONOTONIC)
	return uint64(ns)
}

// seededRand is a deterministic byte stream (xoshiro256**) for AT_RANDOM,
// getrandom and /dev/urandom under --deterministic. It is not
// cryptographic and does not need to be.
type seededRand struct {
	mu sync.Mutex
	s  [4]uint64
}

func newSeededRand(seed uint64) *seededRand {
	r := &seededRand{}
	// splitmix64 spreads the seed over the state.
	for i := range r.s {
		seed += 0x9e3779b97f4a7c15
		z := seed
		z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
		z = (z ^ z>>27) * 0x94d049bb133111eb
		r.s[i] = z ^ z>>31
	}
	return r
}

func rotl(x uint64, k uint) uint64 { return x<<k | x>>(64-k) }

func (r *seededRand) next() uint64 {
	s := &r.s
	out := rotl(s[1]*5, 7) * 9
	t := s[1] << 17
	s[2] ^= s[0]
	s[3] ^= s[1]
	s[1] ^= s[2]
	s[0] ^= s[3]
	s[2] ^= t
	s[3] = rotl(s[3], 45)
	return out
}

func (r *seededRand) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b [8]byte
	for i := 0; i < len(p); i += 8 {
		binary.LittleEndian.PutUint64(b[:], r.next())
		copy(p[i:], b[:])
	}
	return len(p), nil
}

// hostRand is the host's cryptographic randomness.
type hostRand struct{}

func (hostRand) Read(p []byte) (int, error) { return rand.Read(p) }

// AdvanceClock moves the guest's clocks d forward, as if the machine had
// been down for d between a checkpoint and this restore: CLOCK_REALTIME,
// CLOCK_MONOTONIC and the clocks that follow them (BOOTTIME, TAI, the
// coarse and raw variants; under the virtual clock the CPU-time clocks
// too, which read CLOCK_MONOTONIC there). Timers armed on them expire
// accordingly. Devices keep their own time only if their DeviceEnv.Now
// does not follow the guest clock (see verify's perturbations). Call it
// before Run.
func (k *Kernel) AdvanceClock(d time.Duration) {
	if d <= 0 {
		return
	}
	if vc, ok := k.clock.(*VirtualClock); ok {
		vc.Sleep(int64(d))
		return
	}
	if tc, ok := k.clock.(*tscClock); ok {
		tc.advance(int64(d))
		return
	}
	k.clock = offsetClock{Clock: k.clock, off: int64(d)}
}

// offsetClock is a host clock moved forward by AdvanceClock.
type offsetClock struct {
	Clock
	off int64
}

func (c offsetClock) Now(id int32) (int64, bool) {
	ns, ok := c.Clock.Now(id)
	switch id {
	case unix.CLOCK_PROCESS_CPUTIME_ID, unix.CLOCK_THREAD_CPUTIME_ID:
		return ns, ok
	}
	return ns + c.off, ok
}

func (c offsetClock) TSC() uint64 { return c.Clock.TSC() + uint64(c.off) }
