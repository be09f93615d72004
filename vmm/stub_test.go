package vmm

import (
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/arch/x86/x86asm"
)

// TestRefreshCodeDecodes disassembles the hand-assembled refresh stub and
// checks every instruction and branch target.
func TestRefreshCodeDecodes(t *testing.T) {
	want := []string{
		"PUSH RAX", "PUSH RCX", "PUSH RDX", "PUSH RSI", "PUSH RDI",
		"MOV RSI, [RIP+0x6c]", "MOV RCX, [RSI]", "TEST RCX, RCX", "JE .+79",
		"ADD RSI, 0x8",
		"TEST RCX, RCX", "JE .+36", "MOV RAX, [RSI]", "MOV RDI, [RSI+0x8]",
		"TEST RDI, RDI", "JE .+15", "LOCK OR [RAX], 0x0", "NOP", "ADD RAX, 0x8", "DEC RDI", "JMP .-20",
		"ADD RSI, 0x10", "DEC RCX", "JMP .-41",
		"MOV RAX, CR3", "MOV CR3, RAX", "MOV RSI, [RIP+0x2a]", "MOV [RSI], 0x0",
		"POP RDI", "POP RSI", "POP RDX", "POP RCX", "POP RAX", "MOV RSP, [RIP+0x1f]", "IRETQ",
		"POP RDI", "POP RSI", "POP RDX", "POP RCX", "POP RAX", "JMP .+103",
	}
	var got []string
	targets := map[int]int{} // offset of instruction -> branch target
	starts := map[int]bool{}
	for off := 0; off < len(refreshCode); {
		inst, err := x86asm.Decode(refreshCode[off:], 64)
		require.NoError(t, err, "at %d", off)
		got = append(got, inst.String())
		starts[off] = true
		if rel, ok := inst.Args[0].(x86asm.Rel); ok {
			targets[off] = off + inst.Len + int(rel)
		}
		if m, ok := inst.Args[1].(x86asm.Mem); ok && m.Base == x86asm.RIP {
			switch inst.Args[0] {
			case x86asm.RSI:
				require.Equal(t, refreshListPtr, off+inst.Len+int(m.Disp), "list pointer")
			case x86asm.RSP:
				require.Equal(t, refreshFramePtr, off+inst.Len+int(m.Disp), "frame pointer")
			}
		}
		off += inst.Len
	}
	require.Equal(t, want, got)
	for from, to := range targets {
		if to == len(refreshCode)+udDispatch+20-refreshStub-len(refreshCode) {
			continue // the jump out to udDispatch
		}
		require.True(t, starts[to], "branch at %d lands inside an instruction (%d)", from, to)
	}
	last := len(refreshCode) - 5
	require.Equal(t, udDispatch+20, refreshStub+targets[last], "not armed: on to the #UD exit")
	require.LessOrEqual(t, len(refreshCode), refreshListPtr)
	require.LessOrEqual(t, refreshStub+refreshFramePtr+8, udDispatch)
}

func TestUDDispatchDecodes(t *testing.T) {
	var got []string
	off := 0
	for off < len(udDispatchCode) {
		inst, err := x86asm.Decode(udDispatchCode[off:], 64)
		require.NoError(t, err, "at %d", off)
		got = append(got, inst.String())
		if inst.Op == x86asm.JE {
			target := udDispatch + off + inst.Len + int(inst.Args[0].(x86asm.Rel))
			require.Equal(t, refreshStub, target, "je goes to refreshStub")
		}
		if inst.Op == x86asm.CMP {
			require.Equal(t, 32, off+inst.Len+0x13, "constant at offset 32")
		}
		off += inst.Len
	}
	require.Equal(t, []string{"PUSH RAX", "MOV RAX, [RSP+Reg(0)+0x8]", "CMP RAX, [RIP+0x13]", "POP RAX", "JE .-212", "OUT 0xe1, AL", "HLT", "UD2"}, got)
}
