package vmm

import (
	"encoding/binary"
	"math/rand/v2"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emuckpt/emuckpt/guestmm"
	"github.com/stretchr/testify/require"
)

// seqDevice answers every load with the number of loads before it and
// remembers the last store, so that a load that is lost, replayed or
// left half done shows up as a gap in the sequence.
type seqDevice struct {
	loads atomic.Uint64
	last  atomic.Uint64
}

func (d *seqDevice) Name() string { return "seq" }
func (d *seqDevice) Read(off uint64, b []byte) error {
	binary.LittleEndian.PutUint64(b, d.loads.Add(1)-1)
	return nil
}
func (d *seqDevice) Write(off uint64, b []byte) error {
	d.last.Store(binary.LittleEndian.Uint64(b))
	return nil
}

const (
	stormCounterVA = 0x600000 // RAM: the round number, stored every round
	stormTouchVA   = 0x700000 // unmapped at every system call, faulted back in
	stormDeviceVA  = 0x800000 // the seqDevice
	stormDevicePA  = 0xfed00000
)

// stormCode is the guest of the kick storm. r12 counts rounds; r13 is the
// device load it expects next.
//
//	top:  inc r12
//	      mov rax, [stormDeviceVA]   ; MMIO load
//	      cmp rax, r13
//	      jne badload
//	      inc r13
//	      mov [stormDeviceVA+8], r12 ; MMIO store
//	      mov [stormCounterVA], r12  ; RAM store
//	      mov ax, cs
//	      and eax, 3
//	      cmp eax, 3
//	      jne badcs
//	      mov [stormTouchVA], r12    ; #PF after each system call
//	      test r12, 7
//	      jnz top
//	      mov eax, 39                ; a system call every 8 rounds
//	      syscall
//	      jmp top
//	badload: int3                    ; at +0x48
//	badcs:   int3                    ; at +0x49
var stormCode = []byte{
	0x49, 0xff, 0xc4, 0x48, 0x8b, 0x04, 0x25, 0x00, 0x00, 0x80, 0x00, 0x4c,
	0x39, 0xe8, 0x75, 0x38, 0x49, 0xff, 0xc5, 0x4c, 0x89, 0x24, 0x25, 0x08,
	0x00, 0x80, 0x00, 0x4c, 0x89, 0x24, 0x25, 0x00, 0x00, 0x60, 0x00, 0x66,
	0x8c, 0xc8, 0x83, 0xe0, 0x03, 0x83, 0xf8, 0x03, 0x75, 0x1b, 0x4c, 0x89,
	0x24, 0x25, 0x00, 0x00, 0x70, 0x00, 0x49, 0xf7, 0xc4, 0x07, 0x00, 0x00,
	0x00, 0x75, 0xc1, 0xb8, 0x27, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xeb, 0xb8,
	0xcc, 0xcc,
}

// stormKicks is how many kicks TestKickStorm sends; EMUCKPT_STORM_KICKS
// overrides it (.ci/run asks for more).
func stormKicks(t *testing.T, def int) int {
	if s := os.Getenv("EMUCKPT_STORM_KICKS"); s != "" {
		n, err := strconv.Atoi(s)
		require.NoError(t, err, "EMUCKPT_STORM_KICKS")
		return n
	}
	return def
}

// TestKickStorm kicks a guest at random moments while it loads and
// stores device registers, faults, makes system calls and has its page
// tables changed under it (refreshed through the ring-0 stub or flushed),
// and plays the kernel by hand. At every return from Run the user state
// must be exact: the round counter in RAM and in r12, and the device's
// load count and r13, agree (an instruction is never replayed or lost),
// a register the test wrote at the previous stop is still there, and the
// guest, which checks its own CS, never found itself at CPL0.
func TestKickStorm(t *testing.T) {
	r := newRig(t, stormCode)
	dev := &seqDevice{}
	require.NoError(t, r.m.Bus.Register(stormDevicePA, pageSize, dev))
	counterPA := r.mapData(t, stormCounterVA)
	require.NoError(t, r.pt.Map(stormDeviceVA, stormDevicePA, guestmm.Present|guestmm.Writable|guestmm.User|guestmm.NX|guestmm.PCD|guestmm.Special))
	touchPA, err := r.frames.Alloc()
	require.NoError(t, err)
	r.pt.TakeChanged()

	kicks := stormKicks(t, 3000)
	var sent atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range kicks {
			time.Sleep(time.Duration(rand.IntN(120)) * time.Microsecond)
			r.c.Kick()
			sent.Add(1)
		}
	}()

	var stops, syscalls, faults, refreshes, flushes int
	marker := uint64(0)
	changed := func() {
		runs, all := r.pt.TakeChanged()
		if all || len(runs) == 0 {
			return
		}
		if syscalls%5 == 0 {
			r.c.FlushTLB()
			flushes++
		} else {
			r.c.RefreshPages(runs)
			refreshes++
		}
	}
	for finished := false; !finished; {
		select {
		case <-done:
			finished = true
		default:
		}
		ex, err := r.c.Run()
		require.NoError(t, err)
		regs := r.c.Regs()
		require.Equal(t, marker, regs.R15, "a register written at the previous stop was lost (%v exit)", ex.Kind)
		mem := binary.LittleEndian.Uint64(r.m.Mem()[counterPA:])
		require.Contains(t, []uint64{regs.R12, regs.R12 - 1}, mem, "RAM counter %d against r12 %d (%v exit at %#x)", mem, regs.R12, ex.Kind, regs.RIP)
		loads := dev.loads.Load()
		require.Contains(t, []uint64{regs.R13, regs.R13 + 1}, loads, "device loads %d against r13 %d (%v exit at %#x)", loads, regs.R13, ex.Kind, regs.RIP)
		switch ex.Kind {
		case ExitKicked:
			stops++
			marker = uint64(stops)
			regs.R15 = marker
		case ExitSyscall:
			require.Equal(t, uint64(39), regs.RAX)
			syscalls++
			regs.RAX = 1
			require.NoError(t, r.pt.SetPTE(stormTouchVA, 0))
			changed()
		case ExitException:
			require.Equal(t, VecPF, ex.Vector, "guest check failed at %#x (+0x48: bad device load, +0x49: CPL0)", regs.RIP-1-codeVA)
			require.Equal(t, uint64(stormTouchVA), ex.CR2)
			faults++
			require.NoError(t, r.pt.Map(stormTouchVA, touchPA, guestmm.Present|guestmm.Writable|guestmm.User|guestmm.NX))
			changed()
		default:
			t.Fatalf("unexpected %v exit at %#x", ex.Kind, regs.RIP)
		}
	}
	t.Logf("%d kicks sent: %d kicked stops, %d system calls, %d page faults, %d refreshes, %d flushes, %d rounds, %d exits",
		sent.Load(), stops, syscalls, faults, refreshes, flushes, r.c.Regs().R12, r.c.Exits())
	require.Greater(t, stops, kicks/10, "most kicks should stop the vCPU")
	require.Greater(t, faults, 0)
	require.Greater(t, refreshes, 0)
}
