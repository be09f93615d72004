package main

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/emuckpt/emuckpt/devices/bsr"
	"github.com/emuckpt/emuckpt/devices/hpet"
	"github.com/emuckpt/emuckpt/kernel"
	"github.com/emuckpt/emuckpt/kernel/vfs"
	"golang.org/x/sys/unix"
)

// Guest-physical windows of the devices, above the largest guest RAM
// (3 GiB) and below the HPET's conventional 0xFED00000.
const bsrBase = 0xE0000000

// deviceFactories is the device set of a machine: the HPET and the BSRs.
func deviceFactories(h hpet.Config, specs []bsr.Spec) []kernel.DeviceFactory {
	return []kernel.DeviceFactory{hpetDevice(h), bsrDevice(specs)}
}

// bsrFlag is the repeatable --bsr BYTES[:STRIDE[:LENGTH]] flag; given at
// least once it replaces the default set.
type bsrFlag []bsr.Spec

func (f *bsrFlag) String() string {
	var s []string
	for _, sp := range *f {
		s = append(s, sp.String())
	}
	return strings.Join(s, ",")
}

func (f *bsrFlag) Set(v string) error {
	sp, err := bsr.ParseSpec(v)
	if err != nil {
		return err
	}
	*f = append(*f, sp)
	return nil
}

func (f bsrFlag) specs() []bsr.Spec {
	if len(f) == 0 {
		return bsr.DefaultSpecs()
	}
	return f
}

// bsrDevice plugs a BSR set into the kernel: one MMIO window, one
// /dev/bsr<bytes>_<n> and one /sys/class/bsr/<name>/ per register.
func bsrDevice(specs []bsr.Spec) kernel.DeviceFactory {
	return func(kernel.DeviceEnv) (kernel.Device, error) {
		set, err := bsr.New(specs, bsrBase)
		if err != nil {
			return kernel.Device{}, err
		}
		var d kernel.Device
		for _, r := range set.Registers() {
			d.MMIO = append(d.MMIO, kernel.MMIORegion{Base: r.MMIOBase(), Size: r.MMIOSize(), Dev: r})
			d.Files = append(d.Files, kernel.DeviceFile{Path: r.DevicePath(), Info: r.DeviceInfo(), Open: r.Open})
			files := r.SysfsFiles()
			names := make([]string, 0, len(files))
			for n := range files {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, n := range names {
				content := []byte(files[n])
				d.Text = append(d.Text, kernel.TextFile{Path: r.SysfsDir() + "/" + n, Content: func() []byte { return content }})
			}
		}
		d.VMATypes = []kernel.VMAType{bsrVMAType}
		d.State = &kernel.DeviceState{
			Name: "bsr",
			Save: func() ([]byte, error) { return json.Marshal(set.SaveState()) },
			Restore: func(b []byte) error {
				var st bsr.State
				if err := json.Unmarshal(b, &st); err != nil {
					return err
				}
				return set.RestoreState(st)
			},
		}
		return d, nil
	}
}

// hpetFlag is --hpet timers=N,period=FS. Repeated flags add up: each
// sets only the keys it names.
type hpetFlag struct{ cfg hpet.Config }

func (f *hpetFlag) String() string { return f.cfg.String() }

func (f *hpetFlag) Set(v string) error {
	cfg, err := hpet.ParseConfig(v)
	if err != nil {
		return err
	}
	for _, item := range strings.Split(v, ",") {
		switch key, _, _ := strings.Cut(item, "="); strings.TrimSpace(key) {
		case "timers":
			f.cfg.Timers = cfg.Timers
		case "period":
			f.cfg.PeriodFS = cfg.PeriodFS
		}
	}
	return nil
}

// hpetDevice plugs an HPET into the kernel: its MMIO page at 0xFED00000,
// /dev/hpet, and its registers for --device-state=preserve. The counter
// starts at boot, as Linux enables the HPET when it takes it.
func hpetDevice(cfg hpet.Config) kernel.DeviceFactory {
	return func(env kernel.DeviceEnv) (kernel.Device, error) {
		h, err := hpet.New(cfg, hpet.ClockFunc(env.Now))
		if err != nil {
			return kernel.Device{}, err
		}
		return kernel.Device{
			MMIO: []kernel.MMIORegion{{Base: hpet.MMIOBase, Size: hpet.MMIOSize, Dev: h}},
			Files: []kernel.DeviceFile{{Path: hpet.DevicePath, Info: hpet.DeviceInfo(),
				Open: func(fl int) (vfs.File, unix.Errno) { return h.Open(fl, nil) },
				Reopen: func(state []byte, fl int) (vfs.File, unix.Errno) {
					var timer int
					if err := json.Unmarshal(state, &timer); err != nil {
						return nil, unix.EINVAL
					}
					return h.ReopenFile(timer, fl, nil)
				}}},
			Start:    h.Enable,
			VMATypes: []kernel.VMAType{hpetVMAType},
			State: &kernel.DeviceState{
				Name: "hpet",
				Save: func() ([]byte, error) { return json.Marshal(h.SaveState()) },
				Restore: func(b []byte) error {
					var st hpet.State
					if err := json.Unmarshal(b, &st); err != nil {
						return err
					}
					return h.RestoreState(st)
				},
			},
		}, nil
	}
}

// bsrVMAType is the "bsr" device VMA type: a checkpoint records the
// register's geometry, and restore refuses a register of another size,
// stride or length behind the same name.
var bsrVMAType = kernel.VMAType{
	Name: bsr.VMAType,
	Save: func(b vfs.Backing) (json.RawMessage, error) {
		r, err := bsrRegister(b)
		if err != nil {
			return nil, err
		}
		return json.Marshal(r.Spec().String())
	},
	Check: func(b vfs.Backing, saved json.RawMessage) error {
		r, err := bsrRegister(b)
		if err != nil {
			return err
		}
		var spec string
		if err := json.Unmarshal(saved, &spec); err != nil {
			return fmt.Errorf("bad saved BSR geometry: %v", err)
		}
		if here := r.Spec().String(); here != spec {
			return fmt.Errorf("%s is --bsr %s here, the image was taken with --bsr %s", r.Name(), here, spec)
		}
		return nil
	},
}

func bsrRegister(b vfs.Backing) (*bsr.Register, error) {
	bb, ok := b.(*bsr.Backing)
	if !ok {
		return nil, fmt.Errorf("%s is not a BSR mapping", b.Name())
	}
	return bb.Register(), nil
}

// hpetVMAType is the "hpet" device VMA type: a checkpoint records the
// HPET's configuration, and restore refuses another timer count or period.
var hpetVMAType = kernel.VMAType{
	Name: hpet.VMAType,
	Save: func(b vfs.Backing) (json.RawMessage, error) {
		hb, ok := b.(*hpet.Backing)
		if !ok {
			return nil, fmt.Errorf("%s is not an HPET mapping", b.Name())
		}
		return json.Marshal(hb.HPET().Config().String())
	},
	Check: func(b vfs.Backing, saved json.RawMessage) error {
		hb, ok := b.(*hpet.Backing)
		if !ok {
			return fmt.Errorf("%s is not an HPET mapping", b.Name())
		}
		var cfg string
		if err := json.Unmarshal(saved, &cfg); err != nil {
			return fmt.Errorf("bad saved HPET configuration: %v", err)
		}
		if here := hb.HPET().Config().String(); here != cfg {
			return fmt.Errorf("the HPET is --hpet %s here, the image was taken with --hpet %s", here, cfg)
		}
		return nil
	},
}
