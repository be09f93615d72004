package guestmm

import (
	"sync/atomic"
	"unsafe"
)

// PrepareWrite takes the host's write fault on every page of guest memory
// that b spans, if there is one to take, in Go code the runtime can
// preempt: an atomic add of zero to the first word of each page, which
// changes nothing. Call it before copy or clear write guest memory.
//
// While a background checkpoint runs, guest RAM is write-protected
// through a userfaultfd (kernel/bgsave.go): the first write to a page
// waits in the host kernel until a handler goroutine has copied the page
// aside. copy and clear are runtime assembly, which Go cannot preempt: a
// thread that faults there keeps its P, so a stop-the-world or a GC
// barrier (forEachP) waits for it for ever, and the handler, back from
// its poll, finds no P to run on: the run hangs (TestSIGUSR1Storm did,
// 1 run in 30). A fault in ordinary Go code is interrupted by the
// preemption signal, the goroutine gives its P up, and the handler runs.
func PrepareWrite(b []byte) {
	if len(b) == 0 {
		return
	}
	first := unsafe.Pointer(&b[0])
	off := uintptr(first) & (PageSize - 1)
	page := unsafe.Add(first, -int(off))
	for n := uintptr(len(b)) + off; ; n -= PageSize {
		atomic.AddUint32((*uint32)(page), 0)
		if n <= PageSize {
			return
		}
		page = unsafe.Add(page, PageSize)
	}
}
