package verify

import (
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emuckpt/emuckpt/ckpt"
	"github.com/emuckpt/emuckpt/devices/bsr"
	"github.com/emuckpt/emuckpt/devices/hpet"
	"github.com/emuckpt/emuckpt/kernel"
	"github.com/emuckpt/emuckpt/vmm"
)

// Perturbation is what a real restart may bring besides a new machine,
// applied when an image is restored, before the program goes on:
//
//   - hpet-jump=DUR: the HPET's time base moves DUR forward, as if DUR had
//     passed between the checkpoint and the restore on a machine whose
//     HPET kept counting: its main counter (if enabled) reads DUR worth of
//     ticks more, and timers whose comparators it passes raise their
//     interrupts. The guest clocks do not move.
//   - clock-jump=DUR: the guest's CLOCK_REALTIME and CLOCK_MONOTONIC (and
//     BOOTTIME, TAI and the coarse variants; under the deterministic
//     clock of a verify also the CPU-time clocks, which read MONOTONIC
//     there) move DUR forward, as if the machine had been down for DUR:
//     sleeps and timers due within DUR end at once. The HPET does not
//     move (combine with hpet-jump for both).
//   - bsr-clear: every BSR register is cleared after the restore, as a
//     BSR that another job used meanwhile would be; under
//     --device-state=fresh registers start cleared anyway, so it matters
//     under preserve.
//
// The zero Perturbation is none.
type Perturbation struct {
	HPETJump  time.Duration
	ClockJump time.Duration
	BSRClear  bool
}

// ParsePerturbation parses a comma-separated list of the items above,
// applied together, or "none".
func ParsePerturbation(s string) (Perturbation, error) {
	var p Perturbation
	if s == "none" {
		return p, nil
	}
	for _, item := range strings.Split(s, ",") {
		key, val, hasVal := strings.Cut(strings.TrimSpace(item), "=")
		switch key {
		case "hpet-jump", "clock-jump":
			d, err := time.ParseDuration(val)
			if !hasVal || err != nil || d <= 0 {
				return p, fmt.Errorf("%s: want %s=DUR with a positive duration such as 10s", item, key)
			}
			if key == "hpet-jump" {
				p.HPETJump = d
			} else {
				p.ClockJump = d
			}
		case "bsr-clear":
			if hasVal {
				return p, fmt.Errorf("%s: bsr-clear takes no value", item)
			}
			p.BSRClear = true
		default:
			return p, fmt.Errorf("%q: unknown perturbation; want hpet-jump=DUR, clock-jump=DUR, bsr-clear or none", item)
		}
	}
	return p, nil
}

// String is the canonical form ParsePerturbation reads back; "none" for
// the zero Perturbation.
func (p Perturbation) String() string {
	var s []string
	if p.HPETJump > 0 {
		s = append(s, "hpet-jump="+p.HPETJump.String())
	}
	if p.ClockJump > 0 {
		s = append(s, "clock-jump="+p.ClockJump.String())
	}
	if p.BSRClear {
		s = append(s, "bsr-clear")
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ",")
}

// Restore restores img with cfg (as ckpt.Image.Restore) and applies p.
// `emuckpt restore --perturb` and every restore of a verify go through
// it.
func Restore(img *ckpt.Image, cfg kernel.Config, p Perturbation) (*kernel.Kernel, error) {
	var taps []*deviceTap
	if p != (Perturbation{}) {
		devs := make([]kernel.DeviceFactory, len(cfg.Devices))
		for i, f := range cfg.Devices {
			t := &deviceTap{}
			taps = append(taps, t)
			devs[i] = t.wrap(f)
		}
		cfg.Devices = devs
	}
	k, err := img.Restore(cfg)
	if err != nil {
		return nil, err
	}
	k.AdvanceClock(p.ClockJump)
	for _, t := range taps {
		t.clockOff.Store(int64(p.ClockJump))
		for _, d := range t.devs {
			switch d := d.(type) {
			case *hpet.HPET:
				t.jump.Store(int64(p.HPETJump))
			case *bsr.Register:
				if p.BSRClear {
					d.Reset()
				}
			}
		}
	}
	return k, nil
}

// deviceTap stands between a device factory and the kernel: it keeps the
// models the factory makes, and gives them a time base of their own,
// the guest clock less clockOff (so that a clock-jump leaves devices
// alone) plus jump (hpet-jump).
type deviceTap struct {
	devs     []vmm.Device
	clockOff atomic.Int64
	jump     atomic.Int64
}

func (t *deviceTap) wrap(f kernel.DeviceFactory) kernel.DeviceFactory {
	return func(env kernel.DeviceEnv) (kernel.Device, error) {
		now := env.Now
		env.Now = func() int64 { return now() - t.clockOff.Load() + t.jump.Load() }
		d, err := f(env)
		for _, r := range d.MMIO {
			t.devs = append(t.devs, r.Dev)
		}
		return d, err
	}
}
