// Package hpet models the High Precision Event Timer (IA-PC HPET 1.0a)
// and Linux's /dev/hpet driver on top of it.
//
// # The device
//
// HPET is one register block: a vmm.Device for the page at MMIOBase
// (0xFED00000). Its registers are the spec's: General Capabilities and ID
// (0x000), General Configuration (0x010), General Interrupt Status
// (0x020), the Main Counter (0x0F0) and, for each of 1 to 32 timers, a
// configuration/capability register, a comparator and an FSB route at
// 0x100 + 0x20·N. Loads and stores are 4 or 8 bytes, naturally aligned
// (a 4-byte access at +4 is the high half of a 64-bit register); other
// accesses are refused with SIGBUS (BUS_ADRALN). Reserved registers read 0
// and ignore stores; read-only bits ignore stores.
//
// Time comes from a Clock (monotonic nanoseconds: the host's, or the
// VMM's virtual clock under --deterministic). While ENABLE_CNF is set the
// main counter is base + (now - t0)·10⁶ / PeriodFS, rounded down, where t0
// is when it was last started; clearing ENABLE_CNF latches it, and only
// then may it be written.
//
// # Interrupts without a CPU
//
// No interrupt reaches a vCPU. Instead the model works out, from the
// clock, at which counter values each comparator matched: once (one-shot,
// 64-bit), every 2^32 ticks (one-shot in 32-bit mode, where only the low
// halves are compared), or every period (periodic mode, the comparator
// advancing by the period at each match). It does this lazily: the state
// is "settled" up to a point in time, and each register access first
// brings it forward to now, raising the status bits of level-triggered
// timers and counting, per timer, the matches that happened with
// Tn_INT_ENB_CNF set: the interrupts (Interrupts, Fired). NextFire says
// when the next one will come, which is how a blocking read of /dev/hpet
// knows how long to sleep.
//
// # /dev/hpet
//
// Open returns a vfs.File with the ABI of Linux's drivers/char/hpet.c: a
// read-only open claims a free timer; the ioctls HPET_IRQFREQ, HPET_EPI,
// HPET_DPI, HPET_IE_ON, HPET_IE_OFF and HPET_INFO program it as the
// driver does, register access by register access; read returns the
// number of interrupts since the last read, waiting on a Sleeper for the
// next one; mmap maps the register page read-only (a Backing, which is a
// guestmm.DeviceBacking of VMA type "hpet"). Linux's interrupt handler is
// modelled too: it runs at the instant of each match, clears the status
// bit of a level-triggered timer and re-arms a one-shot timer one period
// on, so that a one-shot timer with interrupts on behaves as periodic.
//
// docs/DEVICES.md lists the registers and the ABI as implemented and
// every place where the model differs from real hardware or from Linux.
//
// # Checkpoints
//
// SaveState and RestoreState carry the whole model, including the
// driver's per-timer state, as plain data; ReopenFile re-creates the
// File of a descriptor that held a timer.
package hpet
