package vmm

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/emuckpt/emuckpt/guestmm"
	"github.com/emuckpt/emuckpt/internal/kvmtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRAMLayout(t *testing.T) {
	for _, tt := range []struct {
		mem  uint64
		end  uint64
		want []RAMRange
	}{
		{64 << 20, 64 << 20, []RAMRange{{0, 64 << 20}}},
		{3 << 30, 3 << 30, []RAMRange{{0, LowMemEnd}}},
		{3<<30 + 4096, 4<<30 + 4096, []RAMRange{{0, LowMemEnd}, {HighMemBase, 4<<30 + 4096}}},
		{5 << 30, 6 << 30, []RAMRange{{0, LowMemEnd}, {HighMemBase, 6 << 30}}},
		{MaxMemSize, 65 << 30, []RAMRange{{0, LowMemEnd}, {HighMemBase, 65 << 30}}},
	} {
		t.Run(fmt.Sprint(tt.mem), func(t *testing.T) {
			assert.Equal(t, tt.end, PhysEnd(tt.mem))
			assert.Equal(t, tt.want, RAMRanges(tt.mem))
			var total uint64
			for _, r := range tt.want {
				total += r.End - r.Start
				assert.False(t, r.Start < HighMemBase && r.End > LowMemEnd, "RAM never covers the MMIO hole")
			}
			assert.Equal(t, tt.mem, total)
		})
	}
}

// TestRAMAboveTheHole runs a guest whose page tables, code and data are
// all above 4 GiB, in the second memory slot: it reads and writes its
// data there, and a remap after FlushTLB (which deletes and re-adds both
// slots) is seen.
func TestRAMAboveTheHole(t *testing.T) {
	kvmtest.Require(t)
	m, err := New(Config{MemSize: 3<<30 + 16<<20})
	require.NoError(t, err)
	defer m.Close()
	require.Equal(t, []RAMRange{{0, LowMemEnd}, {HighMemBase, HighMemBase + 16<<20}}, m.RAMRanges())
	require.Equal(t, uint64(HighMemBase+16<<20), uint64(len(m.Mem())))
	all := m.NewFrames()
	assert.Equal(t, int((3<<30+16<<20-RAMBase)/guestmm.PageSize), all.Capacity())

	frames := guestmm.NewFrames(m.Mem(), HighMemBase, HighMemBase+16<<20)
	pt, err := guestmm.NewPageTables(m.Mem(), frames)
	require.NoError(t, err)
	require.NoError(t, MapKernel(pt))
	// mov rax,[dataVA]; mov [dataVA+8],rax; syscall; jmp to start
	code := []byte{0x48, 0x8B, 0x04, 0x25, 0x00, 0x00, 0x60, 0x00,
		0x48, 0x89, 0x04, 0x25, 0x08, 0x00, 0x60, 0x00, 0x0F, 0x05, 0xEB, 0xEC}
	cpa, err := frames.Alloc()
	require.NoError(t, err)
	require.GreaterOrEqual(t, cpa, uint64(HighMemBase))
	copy(m.Mem()[cpa:], code)
	require.NoError(t, pt.Map(codeVA, cpa, guestmm.Present|guestmm.User))
	data := func(v uint64) uint64 {
		pa, err := frames.Alloc()
		require.NoError(t, err)
		binary.LittleEndian.PutUint64(m.Mem()[pa:], v)
		return pa
	}
	pa1 := data(0x1111)
	require.NoError(t, pt.Map(dataVA, pa1, guestmm.Present|guestmm.Writable|guestmm.User|guestmm.NX))
	c, err := m.NewVCPU()
	require.NoError(t, err)
	require.NoError(t, c.Start(Regs{RIP: codeVA, RSP: dataVA + 0x1000}, pt.Root(), 0))
	ex, err := c.Run()
	require.NoError(t, err)
	require.Equal(t, ExitSyscall, ex.Kind)
	assert.Equal(t, uint64(0x1111), c.Regs().RAX)
	assert.Equal(t, uint64(0x1111), binary.LittleEndian.Uint64(m.Mem()[pa1+8:]), "the guest's store is in guest RAM above 4 GiB")

	pa2 := data(0x2222)
	require.NoError(t, pt.SetPTE(dataVA, guestmm.MakePTE(pa2, guestmm.Present|guestmm.Writable|guestmm.User|guestmm.NX)))
	c.FlushTLB()
	zaps := m.Zaps()
	ex, err = c.Run()
	require.NoError(t, err)
	require.Equal(t, ExitSyscall, ex.Kind)
	assert.Greater(t, m.Zaps(), zaps)
	assert.Equal(t, uint64(0x2222), c.Regs().RAX)
	assert.Equal(t, uint64(0x2222), binary.LittleEndian.Uint64(m.Mem()[pa2+8:]))
}

func TestMemSizeLimits(t *testing.T) {
	kvmtest.Require(t)
	_, err := New(Config{MemSize: MaxMemSize + 4096})
	assert.ErrorContains(t, err, "too large: at most 64 GiB")
	m, err := New(Config{MemSize: MaxMemSize})
	require.NoError(t, err, "64 GiB costs only its page tables on the host")
	assert.Equal(t, uint64(65<<30), uint64(len(m.Mem())))
	m.Close()
}

// TestCheckPhysBits: a machine whose RAM ends beyond the physical
// address width of the guest's CPUID is refused; a CPUID without leaf
// 0x80000008 is taken at its word.
func TestCheckPhysBits(t *testing.T) {
	for _, tt := range []struct {
		name    string
		bits    uint32 // 0: no leaf 0x80000008
		mem     uint64
		wantErr string
	}{
		{"36 bits, 64 GiB", 36, MaxMemSize, "guest memory 68719476736 bytes ends at guest-physical 0x1040000000, beyond the 36-bit physical addresses of this CPU"},
		{"36 bits, 32 GiB", 36, 32 << 30, ""},
		{"39 bits, 64 GiB", 39, MaxMemSize, ""},
		{"32 bits, 3 GiB", 32, 3 << 30, ""},
		{"32 bits, 3 GiB and a page", 32, 3<<30 + 4096, "beyond the 32-bit physical addresses"},
		{"no leaf", 0, MaxMemSize, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tab := &cpuidTable{Nent: 2}
			tab.Entries[0] = cpuidEntry{Function: 0x80000000, Eax: 0x80000008}
			if tt.bits != 0 {
				tab.Entries[1] = cpuidEntry{Function: 0x80000008, Eax: 48<<8 | tt.bits}
			}
			assert.Equal(t, uint(tt.bits), tab.physBits())
			m := &Machine{cfg: Config{MemSize: tt.mem}, cpuid: tab}
			err := m.checkPhysBits()
			if tt.wantErr == "" {
				assert.NoError(t, err)
			} else {
				assert.ErrorContains(t, err, tt.wantErr)
			}
		})
	}
}
