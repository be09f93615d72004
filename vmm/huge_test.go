package vmm

import (
	"encoding/binary"
	"testing"

	"github.com/emuckpt/emuckpt/guestmm"
	"github.com/stretchr/testify/require"
)

// TestRefreshHugePages: a 2 MiB guest page that is unmapped, split or
// write-protected is seen so by the guest after the ring-0 refresh of its
// PD entry (no stale 2 MiB translation), without a full flush.
func TestRefreshHugePages(t *testing.T) {
	// loop: mov rax,[rbx]; syscall; jmp loop
	code := []byte{0x48, 0x8B, 0x03, 0x0F, 0x05, 0xEB, 0xF9}
	// loop: mov [rbx],rax; syscall; jmp loop
	store := []byte{0x48, 0x89, 0x03, 0x0F, 0x05, 0xEB, 0xF9}
	const base = 0x40000000
	tests := []struct {
		name   string
		code   []byte
		change func(as *guestmm.AddressSpace) error
		at     uint64 // where the guest accesses after the change
		fault  bool   // the access must fault
		value  uint64 // else the value it must load
	}{
		{"munmap of the whole 2 MiB", code, func(as *guestmm.AddressSpace) error {
			return as.Munmap(base, guestmm.HugePageSize)
		}, base + 0x1000, true, 0},
		{"munmap of one page splits", code, func(as *guestmm.AddressSpace) error {
			return as.Munmap(base+0x1000, guestmm.PageSize)
		}, base + 0x1000, true, 0},
		{"after a split the other pages stay", code, func(as *guestmm.AddressSpace) error {
			return as.Munmap(base+0x1000, guestmm.PageSize)
		}, base + 0x2000, false, 0x2000},
		{"mprotect of the whole 2 MiB", store, func(as *guestmm.AddressSpace) error {
			return as.Mprotect(base, guestmm.HugePageSize, guestmm.ProtRead)
		}, base + 0x3000, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, tt.code)
			as, err := guestmm.NewAddressSpace(r.m.Mem(), r.frames, guestmm.Layout{HugePages: true})
			require.NoError(t, err)
			require.NoError(t, MapKernel(as.PageTables()))
			_, err = as.Mmap(codeVA, guestmm.PageSize, guestmm.ProtRead|guestmm.ProtExec, guestmm.MapPrivate|guestmm.MapAnonymous|guestmm.MapFixed, nil, 0)
			require.NoError(t, err)
			require.NoError(t, as.WriteForce(codeVA, tt.code))
			_, err = as.Mmap(base, 2*guestmm.HugePageSize, guestmm.ProtRead|guestmm.ProtWrite, guestmm.MapPrivate|guestmm.MapAnonymous|guestmm.MapFixed, nil, 0)
			require.NoError(t, err)
			require.True(t, as.HandleFault(base, guestmm.PFUser|guestmm.PFWrite).Resolved)
			require.Equal(t, 1, as.PageTables().HugePages())
			for off := uint64(0); off < 16*guestmm.PageSize; off += guestmm.PageSize {
				var b [8]byte
				binary.LittleEndian.PutUint64(b[:], off)
				require.NoError(t, as.CopyOut(base+off, b[:]))
			}
			as.PageTables().TakeChanged()

			// The guest touches the 2 MiB page through every 4 KiB page
			// it will use, so that the shadow MMU maps them.
			require.NoError(t, r.c.Start(Regs{RIP: codeVA, RBX: base}, as.PageTables().Root(), 0))
			for _, off := range []uint64{0, 0x1000, 0x2000, 0x3000} {
				r.c.Regs().RBX = base + off
				ex, err := r.c.Run()
				require.NoError(t, err)
				require.Equal(t, ExitSyscall, ex.Kind, "%v", ex)
			}

			require.NoError(t, tt.change(as))
			runs, all := as.PageTables().TakeChanged()
			require.False(t, all)
			r.c.RefreshPages(runs)
			r.c.Regs().RBX = tt.at
			ex, err := r.c.Run()
			require.NoError(t, err)
			if tt.fault {
				require.Equal(t, ExitException, ex.Kind, "%v", ex)
				require.Equal(t, VecPF, ex.Vector)
				require.Equal(t, tt.at, ex.CR2)
			} else {
				require.Equal(t, ExitSyscall, ex.Kind, "%v", ex)
				require.Equal(t, tt.value, r.c.Regs().RAX)
			}
			require.Zero(t, r.m.Zaps(), "no full flush")
		})
	}
}
