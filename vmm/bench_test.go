package vmm

import (
	"testing"
	"time"

	"github.com/emuckpt/emuckpt/guestmm"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// runRaw is one bare KVM_RUN, with none of Run's bookkeeping: the cost of
// a ring-3 exit and re-entry, the baseline of the figures below.
func (c *VCPU) runRaw() {
	unix.Syscall(unix.SYS_IOCTL, c.fd, kvmRunIoctl, 0)
}

// exitBench is a guest plus the host half of one round trip.
type exitBench struct {
	r    *rig
	step func()
}

func newRawExit(tb testing.TB) *exitBench {
	r := newRig(tb, codeOutLoop)
	return &exitBench{r: r, step: r.c.runRaw}
}

func newSyscallLoop(tb testing.TB) *exitBench {
	r := newRig(tb, codeSyscallLoop)
	return &exitBench{r: r, step: func() {
		ex, err := r.c.Run()
		if err != nil || ex.Kind != ExitSyscall {
			tb.Fatalf("exit %v %v", ex.Kind, err)
		}
		r.c.Regs().RAX = 1
	}}
}

// newFaultLoop touches a new page per iteration; each fault is resolved
// by guestmm's demand paging as the kernel layer does it.
func newFaultLoop(tb testing.TB) *exitBench {
	r := newRig(tb, codeTouchLoop)
	as, err := guestmm.NewAddressSpace(r.m.Mem(), r.frames, guestmm.Layout{})
	require.NoError(tb, err)
	require.NoError(tb, MapKernel(as.PageTables()))
	code, _ := r.pt.Lookup(codeVA)
	_, err = as.Mmap(codeVA, guestmm.PageSize, guestmm.ProtRead|guestmm.ProtExec, guestmm.MapPrivate|guestmm.MapAnonymous|guestmm.MapFixed, nil, 0)
	require.NoError(tb, err)
	require.NoError(tb, as.WriteForce(codeVA, r.m.Mem()[code.Addr():code.Addr()+64]))
	const region = 1 << 30
	base, err := as.Mmap(0, region, guestmm.ProtRead|guestmm.ProtWrite, guestmm.MapPrivate|guestmm.MapAnonymous|guestmm.MapNoReserve, nil, 0)
	require.NoError(tb, err)
	regs := Regs{RIP: codeVA, RBX: base}
	require.NoError(tb, r.c.Start(regs, as.PageTables().Root(), 0))
	touched := uint64(0)
	return &exitBench{r: r, step: func() {
		ex, err := r.c.Run()
		if err != nil || ex.Kind != ExitException || ex.Vector != VecPF {
			tb.Fatalf("exit %v %v", ex, err)
		}
		if res := as.HandleFault(ex.CR2, ex.ErrorCode); !res.Resolved {
			tb.Fatalf("fault at %#x not resolved: %+v", ex.CR2, res)
		}
		touched++
		if touched*guestmm.PageSize >= region-guestmm.PageSize || r.frames.Used() > r.frames.Capacity()-64 {
			// Start over at the beginning of the region with fresh frames.
			require.NoError(tb, as.Madvise(base, region, guestmm.MadvDontNeed))
			r.c.Regs().RBX = base
			r.c.FlushTLB()
			touched = 0
		}
	}}
}

func BenchmarkRawExit(b *testing.B) {
	e := newRawExit(b)
	for b.Loop() {
		e.step()
	}
}

func BenchmarkSyscall(b *testing.B) {
	e := newSyscallLoop(b)
	for b.Loop() {
		e.step()
	}
}

func BenchmarkFault(b *testing.B) {
	e := newFaultLoop(b)
	for b.Loop() {
		e.step()
	}
}

// BenchmarkExitRatios runs the raw exit, syscall and fault loops in
// interleaved rounds in one process and reports each as a ratio of the raw
// exit, so that the noise of a shared machine cancels out.
func BenchmarkExitRatios(b *testing.B) {
	benches := []*exitBench{newRawExit(b), newSyscallLoop(b), newFaultLoop(b)}
	var total [3]time.Duration
	var count int
	for b.Loop() {
		for i, e := range benches {
			start := time.Now()
			for range 50 {
				e.step()
			}
			total[i] += time.Since(start)
		}
		count += 50
	}
	per := func(i int) float64 { return float64(total[i].Nanoseconds()) / float64(count) / 1e3 }
	b.ReportMetric(per(0), "raw-µs/exit")
	b.ReportMetric(per(1), "syscall-µs/op")
	b.ReportMetric(per(2), "fault-µs/op")
	b.ReportMetric(per(1)/per(0), "syscall/raw")
	b.ReportMetric(per(2)/per(0), "fault/raw")
}

func BenchmarkCreateMachine(b *testing.B) {
	for b.Loop() {
		m, err := New(Config{})
		require.NoError(b, err)
		c, err := m.NewVCPU()
		require.NoError(b, err)
		_ = c
		m.Close()
	}
}
