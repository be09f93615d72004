package hpet

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestRegisterName(t *testing.T) {
	for off, want := range map[uint64]string{
		0x000: "HPET_ID", 0x004: "HPET_ID+4", 0x010: "HPET_CFG", 0x020: "HPET_STATUS",
		0x0F0: "HPET_COUNTER", 0x0F4: "HPET_COUNTER+4", 0x100: "HPET_T0_CFG", 0x108: "HPET_T0_CMP",
		0x110: "HPET_T0_ROUTE", 0x128: "HPET_T1_CMP", 0x148: "HPET_T2_CMP",
		0x018: "reserved+0x18", 0x118: "reserved+0x118", 0x800: "reserved+0x800",
	} {
		assert.Equal(t, want, RegisterName(off), "%#x", off)
	}
}
