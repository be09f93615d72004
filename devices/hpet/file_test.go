package hpet

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/emuckpt/emuckpt/guestmm"
	"github.com/emuckpt/emuckpt/kernel/vfs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// openTest opens /dev/hpet on an enabled default HPET.
func openTest(t *testing.T, flags int) (*HPET, *fakeClock, *fakeSleeper, *File) {
	t.Helper()
	h, clk := newTest(t, Config{})
	h.Enable()
	s := &fakeSleeper{clk: clk}
	f, errno := h.Open(flags, s)
	require.Zero(t, errno)
	return h, clk, s, f.(*File)
}

func ioctl(f *File, req, arg uint64) unix.Errno {
	_, errno := f.Ioctl(req, arg, &fakeMemory{base: 0x1000, b: make([]byte, 64)})
	return errno
}

func readCount(t *testing.T, f *File) (uint64, unix.Errno) {
	t.Helper()
	var b [16]byte
	n, errno := f.Read(b[:])
	if errno != 0 {
		return 0, errno
	}
	require.Equal(t, 8, n)
	return binary.LittleEndian.Uint64(b[:]), 0
}

func TestIoctlNumbers(t *testing.T) {
	ioc := func(dir, nr, size uint64) uint64 { return dir<<30 | size<<16 | 'h'<<8 | nr }
	assert.Equal(t, uint64(HPET_IE_ON), ioc(0, 1, 0))
	assert.Equal(t, uint64(HPET_IE_OFF), ioc(0, 2, 0))
	assert.Equal(t, uint64(HPET_INFO), ioc(2, 3, InfoSize))
	assert.Equal(t, uint64(HPET_EPI), ioc(0, 4, 0))
	assert.Equal(t, uint64(HPET_DPI), ioc(0, 5, 0))
	assert.Equal(t, uint64(HPET_IRQFREQ), ioc(1, 6, 8))
}

func TestOpenRules(t *testing.T) {
	h, clk := newTest(t, Config{})
	s := &fakeSleeper{clk: clk}
	for _, fl := range []int{unix.O_WRONLY, unix.O_RDWR, unix.O_RDWR | unix.O_NONBLOCK} {
		_, errno := h.Open(fl, s)
		assert.Equal(t, unix.EINVAL, errno, "flags %#x", fl)
	}
	var files []*File
	for i := range 3 {
		f, errno := h.Open(unix.O_RDONLY|unix.O_CLOEXEC, s)
		require.Zero(t, errno)
		files = append(files, f.(*File))
		assert.Equal(t, i, files[i].Timer(), "the lowest free timer")
	}
	_, errno := h.Open(unix.O_RDONLY, s)
	assert.Equal(t, unix.EBUSY, errno, "every timer held")

	assert.Zero(t, files[1].Close())
	f, errno := h.Open(unix.O_RDONLY, s)
	require.Zero(t, errno)
	assert.Equal(t, 1, f.(*File).Timer(), "a closed file frees its timer")

	// The first open routes an IRQ and makes the timer level-triggered,
	// as hpet_timer_set_irq does.
	for n := range 3 {
		c := read64(t, h, tcfg(n))
		assert.Equal(t, uint64(TnIntTypeLevel), c&TnIntTypeLevel, "timer %d", n)
		assert.Equal(t, uint64(20), c>>TnRouteShift&0x1f, "timer %d", n)
	}
}

func TestIoctlErrnos(t *testing.T) {
	h, _, _, f := openTest(t, unix.O_RDONLY)
	f2, errno := h.Open(unix.O_RDONLY, nil)
	require.Zero(t, errno)
	f3, errno := h.Open(unix.O_RDONLY, nil)
	require.Zero(t, errno)
	one := f3.(*File) // timer 2: not periodic-capable

	tests := []struct {
		name string
		f    *File
		req  uint64
		arg  uint64
		want unix.Errno
	}{
		{"IE_ON before IRQFREQ", f, HPET_IE_ON, 0, unix.EIO},
		{"IE_OFF when off", f, HPET_IE_OFF, 0, 0},
		{"IRQFREQ 0", f, HPET_IRQFREQ, 0, unix.EINVAL},
		{"IRQFREQ above max-user-freq", f, HPET_IRQFREQ, 65, unix.EACCES},
		{"IRQFREQ huge", f, HPET_IRQFREQ, ^uint64(0), unix.EACCES},
		{"IRQFREQ 64", f, HPET_IRQFREQ, 64, 0},
		{"EPI", f, HPET_EPI, 0, 0},
		{"IE_ON", f, HPET_IE_ON, 0, 0},
		{"IE_ON twice", f, HPET_IE_ON, 0, unix.EBUSY},
		{"IE_OFF", f, HPET_IE_OFF, 0, 0},
		{"IE_ON again", f, HPET_IE_ON, 0, 0},
		{"DPI", f, HPET_DPI, 0, 0},
		{"EPI on a one-shot timer", one, HPET_EPI, 0, unix.ENXIO},
		{"DPI on a one-shot timer", one, HPET_DPI, 0, unix.ENXIO},
		{"IRQFREQ on a one-shot timer", one, HPET_IRQFREQ, 1, 0},
		{"IE_ON on a one-shot timer", one, HPET_IE_ON, 0, 0},
		{"unknown request", f, 0x6807, 0, unix.EINVAL},
		{"TCGETS", f, unix.TCGETS, 0, unix.EINVAL},
		{"FIONREAD", f, 0x541B, 0x1000, unix.EINVAL},
		{"INFO to a bad pointer", f, HPET_INFO, 0x10, unix.EFAULT},
		{"high bits of the request ignored", f, 1<<32 | HPET_IE_OFF, 0, 0},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, ioctl(tt.f, tt.req, tt.arg), tt.name)
	}
	_, errno = f.Ioctl(HPET_INFO, 0x1000, nil)
	assert.Equal(t, unix.EFAULT, errno, "no memory")

	h.SetMaxUserFreq(1000)
	assert.Equal(t, uint64(1000), h.MaxUserFreq())
	assert.Zero(t, ioctl(f2.(*File), HPET_IRQFREQ, 1000))
	assert.Equal(t, unix.EACCES, ioctl(f2.(*File), HPET_IRQFREQ, 1001))
}

func TestInfo(t *testing.T) {
	h, _, _, f := openTest(t, unix.O_RDONLY)
	mem := &fakeMemory{base: 0x5000, b: make([]byte, 32)}
	for i := range mem.b {
		mem.b[i] = 0xAA
	}
	_, errno := f.Ioctl(HPET_INFO, 0x5000, mem)
	require.Zero(t, errno)
	assert.Equal(t, uint64(0), binary.LittleEndian.Uint64(mem.b[0:]), "hi_ireqfreq before IRQFREQ")
	assert.Equal(t, uint64(HPET_INFO_PERIODIC), binary.LittleEndian.Uint64(mem.b[8:]))
	assert.Equal(t, uint16(0), binary.LittleEndian.Uint16(mem.b[16:]), "hi_hpet")
	assert.Equal(t, uint16(0), binary.LittleEndian.Uint16(mem.b[18:]), "hi_timer")
	assert.Equal(t, []byte{0, 0, 0, 0}, mem.b[20:24], "padding zeroed")
	assert.Equal(t, byte(0xAA), mem.b[24], "nothing past the struct")

	require.Zero(t, ioctl(f, HPET_IRQFREQ, 64))
	_, errno = f.Ioctl(HPET_INFO, 0x5000, mem)
	require.Zero(t, errno)
	assert.Equal(t, uint64(64), binary.LittleEndian.Uint64(mem.b[0:]), "Hz, back from 223722 ticks")

	h.SetMaxUserFreq(1 << 40)
	for _, tt := range []struct{ hz, want uint64 }{
		{1, 1}, {2, 2}, {50, 50}, {100, 100}, {1000, 1000}, {4096, 4096},
		{10000, 9999}, // 1432 ticks: Linux's round trip loses one
	} {
		require.Zero(t, ioctl(f, HPET_IRQFREQ, tt.hz))
		_, errno = f.Ioctl(HPET_INFO, 0x5000, mem)
		require.Zero(t, errno)
		assert.Equal(t, tt.want, binary.LittleEndian.Uint64(mem.b[0:]), "%d Hz", tt.hz)
	}
	// Faster than the counter: 0 ticks, which reads as unset.
	require.Zero(t, ioctl(f, HPET_IRQFREQ, 1<<40))
	assert.Equal(t, unix.EIO, ioctl(f, HPET_IE_ON, 0))

	f2, _ := h.Open(unix.O_RDONLY, nil)
	f3, _ := h.Open(unix.O_RDONLY, nil)
	_ = f2
	_, errno = f3.Ioctl(HPET_INFO, 0x5000, mem)
	require.Zero(t, errno)
	assert.Equal(t, uint64(0), binary.LittleEndian.Uint64(mem.b[8:]), "timer 2 is not periodic-capable")
	assert.Equal(t, uint16(2), binary.LittleEndian.Uint16(mem.b[18:]))
}

func TestReadErrnos(t *testing.T) {
	_, clk, s, f := openTest(t, unix.O_RDONLY)
	var b [8]byte
	_, errno := f.Read(b[:])
	assert.Equal(t, unix.EIO, errno, "no IRQFREQ yet")
	_, errno = f.Read(b[:4])
	assert.Equal(t, unix.EIO, errno, "EIO comes before EINVAL")

	require.Zero(t, ioctl(f, HPET_IRQFREQ, 64))
	_, errno = f.Read(b[:4])
	assert.Equal(t, unix.EINVAL, errno, "shorter than an unsigned long")
	_, errno = f.Read(nil)
	assert.Equal(t, unix.EINVAL, errno)

	// Interrupts off: it waits forever, that is until interrupted.
	before := clk.Now()
	_, errno = f.Read(b[:])
	assert.Equal(t, unix.EINTR, errno)
	assert.Equal(t, []int64{Forever}, s.deadlines)
	assert.Equal(t, before, clk.Now(), "a wait forever does not move the clock")

	// A Sleeper that returns from Forever: one more look, then EINTR.
	s.deadlines, s.foreverReturns = nil, true
	_, errno = f.Read(b[:])
	assert.Equal(t, unix.EINTR, errno)
	assert.Equal(t, []int64{Forever}, s.deadlines)

	f.SetFlags(unix.O_NONBLOCK)
	_, errno = f.Read(b[:])
	assert.Equal(t, unix.EAGAIN, errno, "O_NONBLOCK, nothing pending")
	require.Zero(t, ioctl(f, HPET_IE_ON, 0))
	_, errno = f.Read(b[:])
	assert.Equal(t, unix.EAGAIN, errno, "the first interrupt is 1/64 s away")
	f.SetFlags(0)

	// An interrupted sleep is EINTR.
	s.deadlines, s.interrupt = nil, true
	_, errno = f.Read(b[:])
	assert.Equal(t, unix.EINTR, errno)
	require.Len(t, s.deadlines, 1)
	assert.NotEqual(t, int64(Forever), s.deadlines[0])

	_, errno = f.Pread(b[:], -1)
	assert.Equal(t, unix.EINVAL, errno)
	_, errno = f.Lseek(0, unix.SEEK_SET)
	assert.Equal(t, unix.ESPIPE, errno)
	_, errno = f.Write(b[:])
	assert.Equal(t, unix.EINVAL, errno)

	// No sleeper: a read that would wait says so, for the guest kernel
	// to wait until the file polls readable.
	f.sleeper = nil
	_, errno = f.Read(b[:])
	assert.Equal(t, vfs.EBLOCK, errno)
}

func TestReadPeriodic(t *testing.T) {
	h, clk, s, f := openTest(t, unix.O_RDONLY)
	require.Zero(t, ioctl(f, HPET_IRQFREQ, 64))
	require.Zero(t, ioctl(f, HPET_EPI, 0))
	start := clk.Now()
	require.Zero(t, ioctl(f, HPET_IE_ON, 0))

	c := read64(t, h, tcfg(0))
	assert.Equal(t, uint64(TnIntTypeLevel|TnIntEnable|TnPeriodic|TnPeriodicCap|TnSize64Cap|Tn32Bit|20<<TnRouteShift),
		c&0xffffffff, "programmed as the driver does")
	for i := 1; i <= 5; i++ {
		n, errno := readCount(t, f)
		require.Zero(t, errno)
		assert.Equal(t, uint64(1), n, "read %d", i)
		// 64 Hz is 223722 ticks: 15.625031 ms.
		assert.InDelta(t, float64(i)*223722*DefaultPeriodFS/1e6, float64(clk.Now()-start), 70, "read %d at %d/64 s, within a tick", i, i)
	}
	assert.Len(t, s.deadlines, 5, "one sleep per read")
	assert.Zero(t, read64(t, h, RegIntStatus), "the handler cleared the level-triggered status")

	// Interrupts pile up between reads.
	clk.advance(100_000_000)
	n, errno := readCount(t, f)
	require.Zero(t, errno)
	assert.Equal(t, uint64(6), n, "6.4 periods")

	// Through Pread too.
	var b [8]byte
	got, errno := f.Pread(b[:], 12345)
	require.Zero(t, errno)
	assert.Equal(t, 8, got)
	assert.Equal(t, uint64(1), binary.LittleEndian.Uint64(b[:]))

	// IE_OFF stops them.
	require.Zero(t, ioctl(f, HPET_IE_OFF, 0))
	clk.advance(1_000_000_000)
	f.SetFlags(unix.O_NONBLOCK)
	_, errno = readCount(t, f)
	assert.Equal(t, unix.EAGAIN, errno)
}

func TestReadOneShotRearmed(t *testing.T) {
	// Without HPET_EPI the driver's handler re-arms the one-shot timer
	// each time, so interrupts still come at the requested rate.
	h, clk, _, f := openTest(t, unix.O_RDONLY)
	_, _ = h.Open(unix.O_RDONLY, nil)
	g, errno := h.Open(unix.O_RDONLY, &fakeSleeper{clk: clk})
	require.Zero(t, errno)
	one := g.(*File)
	require.Equal(t, 2, one.Timer())
	for _, f := range []*File{f, one} {
		require.Zero(t, ioctl(f, HPET_IRQFREQ, 50))
		start := clk.Now()
		require.Zero(t, ioctl(f, HPET_IE_ON, 0))
		assert.Zero(t, read64(t, h, tcfg(f.Timer()))&TnPeriodic, "timer %d one-shot", f.Timer())
		for i := 1; i <= 3; i++ {
			n, errno := readCount(t, f)
			require.Zero(t, errno)
			assert.Equal(t, uint64(1), n)
			// 50 Hz is 286364 ticks: 20.000014 ms.
			assert.InDelta(t, float64(i)*286364*DefaultPeriodFS/1e6, float64(clk.Now()-start), 70, "within a tick")
		}
		clk.advance(1_000_000_000)
		n, errno := readCount(t, f)
		require.Zero(t, errno)
		assert.Equal(t, uint64(49), n, "the period is a little over 20 ms")
	}

	// HPET_EPI while interrupts are on stops the re-arming: the timer is
	// one-shot again (until the next IE_ON), matching once per 2^32 ticks.
	require.Zero(t, ioctl(f, HPET_EPI, 0))
	armed, ok := h.NextFire(0, clk.Now())
	require.True(t, ok)
	assert.Less(t, armed-clk.Now(), int64(20_000_015), "the interrupt already armed still comes")
	next, ok := h.NextFire(0, armed)
	require.True(t, ok)
	assert.InDelta(t, float64(nsForTicks(1<<32)), float64(next-armed), 1, "then one 2^32 ticks (300 s) later")
}

func TestCloseReleases(t *testing.T) {
	h, clk, _, f := openTest(t, unix.O_RDONLY)
	require.Zero(t, ioctl(f, HPET_IRQFREQ, 64))
	require.Zero(t, ioctl(f, HPET_EPI, 0))
	require.Zero(t, ioctl(f, HPET_IE_ON, 0))
	clk.advance(50_000_000)
	assert.Zero(t, f.Close())
	c := read64(t, h, tcfg(0))
	assert.Zero(t, c&(TnIntEnable|TnPeriodic), "interrupts off, periodic mode left")
	assert.Zero(t, f.Close(), "a second close is harmless")

	_, errno := f.Read(make([]byte, 8))
	assert.Equal(t, unix.EBADF, errno)
	assert.Equal(t, unix.EBADF, ioctl(f, HPET_IE_ON, 0))
	assert.Equal(t, unix.EBADF, ioctl(f, 0x1234, 0))

	// The next opener starts afresh: no frequency, no count.
	g, errno := h.Open(unix.O_RDONLY|unix.O_NONBLOCK, nil)
	require.Zero(t, errno)
	_, errno = g.Read(make([]byte, 8))
	assert.Equal(t, unix.EIO, errno)
	require.Zero(t, ioctl(g.(*File), HPET_IRQFREQ, 64))
	_, errno = g.Read(make([]byte, 8))
	assert.Equal(t, unix.EAGAIN, errno, "interrupts before the open are not counted")
}

func TestMmap(t *testing.T) {
	h, _, _, f := openTest(t, unix.O_RDONLY)
	tests := []struct {
		name       string
		off, len   uint64
		prot       uint32
		shared     bool
		wantErrno  unix.Errno
		wantMapped bool
	}{
		{"one page", 0, 4096, unix.PROT_READ, true, 0, true},
		{"private", 0, 4096, unix.PROT_READ, false, 0, true},
		{"less than a page", 0, 100, unix.PROT_READ, true, 0, true},
		{"exec", 0, 4096, unix.PROT_READ | unix.PROT_EXEC, true, 0, true},
		{"two pages", 0, 8192, unix.PROT_READ, true, unix.EINVAL, false},
		{"offset", 4096, 4096, unix.PROT_READ, true, unix.EINVAL, false},
		{"empty", 0, 0, unix.PROT_READ, true, unix.EINVAL, false},
		{"write shared", 0, 4096, unix.PROT_READ | unix.PROT_WRITE, true, unix.EACCES, false},
		{"write private", 0, 4096, unix.PROT_WRITE, false, unix.EACCES, false},
		{"write and two pages", 0, 8192, unix.PROT_WRITE, true, unix.EACCES, false},
	}
	for _, tt := range tests {
		b, errno := f.MmapBacking(tt.off, tt.len, tt.prot, tt.shared)
		assert.Equal(t, tt.wantErrno, errno, tt.name)
		if !tt.wantMapped {
			continue
		}
		d, ok := b.(guestmm.DeviceBacking)
		require.True(t, ok, tt.name)
		assert.Equal(t, uint64(0xFED00000), d.MMIOBase())
		assert.Equal(t, uint64(4096), d.MMIOSize())
		assert.Equal(t, "/dev/hpet", d.Name())
		assert.Equal(t, "hpet", b.(interface{ VMAType() string }).VMAType())
		assert.Equal(t, guestmm.ProtRead|guestmm.ProtExec, b.(guestmm.BackingAccess).Access())
		assert.Same(t, h, b.(*Backing).HPET())
		_, err := d.ReadAt(make([]byte, 4096), 0)
		assert.True(t, errors.Is(err, unix.EIO))
	}
}

func TestThroughVFS(t *testing.T) {
	h, clk := newTest(t, Config{})
	h.Enable()
	fs, err := vfs.New(vfs.Options{})
	require.NoError(t, err)
	defer fs.Close()
	s := &fakeSleeper{clk: clk}
	require.NoError(t, fs.AddDevice(DevicePath, DeviceInfo(), func(flags int) (vfs.File, unix.Errno) { return h.Open(flags, s) }))

	_, errno := fs.Open("/", "/dev/hpet", unix.O_RDWR)
	assert.Equal(t, unix.EINVAL, errno)
	f, errno := fs.Open("/", "/dev/hpet", unix.O_RDONLY|unix.O_NONBLOCK)
	require.Zero(t, errno)
	st, errno := f.Stat()
	require.Zero(t, errno)
	assert.Equal(t, uint32(unix.S_IFCHR|0o644), st.Mode)
	assert.Equal(t, unix.Mkdev(10, 228), st.Rdev)

	mem := &fakeMemory{base: 0x1000, b: make([]byte, 64)}
	_, errno = f.Ioctl(HPET_IRQFREQ, 64, mem)
	require.Zero(t, errno)
	_, errno = f.Read(make([]byte, 8))
	assert.Equal(t, unix.EAGAIN, errno, "O_NONBLOCK reaches the device")
	f.SetFlags(0)
	_, errno = f.Ioctl(HPET_IE_ON, 0, mem)
	require.Zero(t, errno)
	b := make([]byte, 8)
	n, errno := f.Read(b)
	require.Zero(t, errno)
	assert.Equal(t, 8, n)
	assert.Equal(t, uint64(1), binary.LittleEndian.Uint64(b))

	m := f.(vfs.Mappable)
	_, errno = m.MmapBacking(0, 4096, unix.PROT_READ|unix.PROT_WRITE, true)
	assert.Equal(t, unix.EACCES, errno)
	bk, errno := m.MmapBacking(0, 4096, unix.PROT_READ, true)
	require.Zero(t, errno)
	assert.Equal(t, "/dev/hpet", bk.Name())
	assert.Zero(t, f.Close())
	assert.Zero(t, read64(t, h, tcfg(0))&TnIntEnable)
}
