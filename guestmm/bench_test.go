package guestmm

import (
	"testing"
)

// BenchmarkFault measures resolving a demand fault on anonymous memory:
// VMA lookup, frame allocation (and clearing, once frames are recycled)
// and installing the PTE.
func BenchmarkFault(b *testing.B) {
	const pages = 16384
	as := newTestAS(b, pages+64)
	const region = (pages - 64) * PageSize
	addr := mustMmap(b, as, 0, region, rw, anonPriv, nil, 0)
	// Some neighbours, so the VMA lookup is not trivial.
	for i := range uint64(32) {
		mustMmap(b, as, 0x10000000+i*2*PageSize, PageSize, ProtRead, anonPriv|MapFixed, nil, 0)
	}
	b.ReportAllocs()
	b.ResetTimer()
	va := addr
	for b.Loop() {
		if va == addr+region {
			b.StopTimer()
			if err := as.Munmap(addr, region); err != nil {
				b.Fatal(err)
			}
			addr = mustMmap(b, as, addr, region, rw, anonPriv|MapFixed, nil, 0)
			va = addr
			b.StartTimer()
		}
		if r := as.HandleFault(va, PFUser|PFWrite); !r.Resolved {
			b.Fatalf("fault at %#x: %+v", va, r)
		}
		va += PageSize
	}
}

// BenchmarkMap measures PageTables.Map over a 1 GiB window, creating the
// intermediate tables on the first pass.
func BenchmarkMap(b *testing.B) {
	_, frames := newTestFrames(b, 1024)
	pt, err := NewPageTables(frames.Mem(), frames)
	if err != nil {
		b.Fatal(err)
	}
	const window = 1 << 30
	b.ReportAllocs()
	va, pa := uint64(0), uint64(testRAMBase)
	for b.Loop() {
		if err := pt.Map(0x400000+va, pa, Writable|User|NX); err != nil {
			b.Fatal(err)
		}
		va = (va + PageSize) % window
		if va == 0 {
			pa ^= PageSize // later passes replace present entries
		}
	}
}

// BenchmarkCopyIn measures copying 16 KiB out of mapped guest memory.
func BenchmarkCopyIn(b *testing.B) {
	as := newTestAS(b, 64)
	addr := mustMmap(b, as, 0, 5*PageSize, rw, anonPriv|MapPopulate, nil, 0)
	buf := make([]byte, 4*PageSize)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if err := as.CopyIn(addr+100, buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFaultHuge measures the guest side of a demand fault that maps
// a 2 MiB page: VMA lookup, a 2 MiB block of never-used frames (not
// cleared), the deposited table and the PD entry. Each op maps 2 MiB.
func BenchmarkFaultHuge(b *testing.B) {
	const blocks = 64
	mem, frames := newTestFrames(b, (blocks+2)*HugeFrames)
	as, err := NewAddressSpace(mem, frames, Layout{HugePages: true})
	if err != nil {
		b.Fatal(err)
	}
	const region = (blocks - 1) * HugePageSize
	addr := mustMmap(b, as, 0x40000000, region, rw, anonPriv|MapFixed, nil, 0)
	b.ReportAllocs()
	va := addr
	for b.Loop() {
		if va == addr+region {
			b.StopTimer()
			as.Destroy()
			mem, frames = newTestFrames(b, (blocks+2)*HugeFrames)
			if as, err = NewAddressSpace(mem, frames, Layout{HugePages: true}); err != nil {
				b.Fatal(err)
			}
			addr = mustMmap(b, as, 0x40000000, region, rw, anonPriv|MapFixed, nil, 0)
			va = addr
			b.StartTimer()
		}
		if r := as.HandleFault(va, PFUser|PFWrite); !r.Resolved || as.pt.HugePages() == 0 {
			b.Fatalf("fault at %#x: %+v", va, r)
		}
		va += HugePageSize
	}
}
