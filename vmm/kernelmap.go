package vmm

import "github.com/emuckpt/emuckpt/guestmm"

// MapKernel installs the machine's pages (GDT, IDT, TSS, stubs, ring-0
// stack, syscall trampoline) into an address space's page tables.
func MapKernel(pt *guestmm.PageTables) error {
	for _, p := range KernelPages() {
		flags := guestmm.Present
		if p.Write {
			flags |= guestmm.Writable
		}
		if p.User {
			flags |= guestmm.User
		} else {
			flags |= guestmm.Global
		}
		if !p.Exec {
			flags |= guestmm.NX
		}
		if err := pt.Map(p.VA, p.PA, flags|guestmm.Special); err != nil {
			return err
		}
	}
	return pt.SetRecursiveSlot(RecursiveSlot)
}
