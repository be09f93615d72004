package guestmm_test

import (
	"fmt"

	"github.com/emuckpt/emuckpt/guestmm"
)

// The life of a page: mmap records a VMA, the guest's first access faults
// and HandleFault maps a zero frame, and the kernel side reads and writes
// guest memory with CopyIn and CopyOut.
func Example() {
	ram := make([]byte, 16<<20) // guest RAM; in the VMM a lazily allocated mmap
	frames := guestmm.NewFrames(ram, 1<<20, uint64(len(ram)))
	as, err := guestmm.NewAddressSpace(ram, frames, guestmm.Layout{})
	if err != nil {
		panic(err)
	}
	defer as.Destroy()

	addr, err := as.Mmap(0, 8192, guestmm.ProtRead|guestmm.ProtWrite,
		guestmm.MapPrivate|guestmm.MapAnonymous, nil, 0)
	if err != nil {
		panic(err)
	}
	fmt.Printf("mapped at %#x\n", addr)

	// The guest writes to the page: #PF with W|U set.
	r := as.HandleFault(addr+16, guestmm.PFWrite|guestmm.PFUser)
	fmt.Println("resolved:", r.Resolved)
	pte, _ := as.PageTables().Lookup(addr)
	fmt.Println("writable:", pte.Has(guestmm.Writable))

	// A syscall hands the kernel a buffer.
	if err := as.CopyOut(addr+4090, []byte("hello, guest")); err != nil {
		panic(err)
	}
	s, err := as.ReadString(addr+4090, 64)
	fmt.Println(s, err)

	// An access outside any mapping is a SIGSEGV.
	r = as.HandleFault(0x1000, guestmm.PFUser)
	fmt.Println(r.Signal, r.Code == guestmm.SegvMapErr)
	fmt.Print(as.MapsText())
	// Output:
	// mapped at 0x7ffff7ffd000
	// resolved: true
	// writable: true
	// hello, guest <nil>
	// segmentation fault true
	// 7ffff7ffd000-7ffff7fff000 rw-p 00000000 00:00 0
}
