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
			return kernel.Device{}, fmt.Errorf("bsr: %w", err)
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

// hpetFlag is --hpet timers=N,period=FS.
type hpetFlag struct{ cfg hpet.Config }

func (f *hpetFlag) String() string { return f.cfg.String() }

func (f *hpetFlag) Set(v string) error {
	cfg, err := hpet.ParseConfig(v)
	if err != nil {
		return err
	}
	f.cfg = cfg
	return nil
}

// hpetDevice plugs an HPET into the kernel: its MMIO page at 0xFED00000,
// /dev/hpet, and its registers for --device-state=preserve. The counter
// starts at boot, as Linux enables the HPET when it takes it.
func hpetDevice(cfg hpet.Config) kernel.DeviceFactory {
	return func(env kernel.DeviceEnv) (kernel.Device, error) {
		h, err := hpet.New(cfg, hpet.ClockFunc(env.Now))
		if err != nil {
			return kernel.Device{}, fmt.Errorf("hpet: %w", err)
		}
		return kernel.Device{
			MMIO: []kernel.MMIORegion{{Base: hpet.MMIOBase, Size: hpet.MMIOSize, Dev: h}},
			Files: []kernel.DeviceFile{{Path: hpet.DevicePath, Info: hpet.DeviceInfo(),
				Open: func(fl int) (vfs.File, unix.Errno) { return h.Open(fl, env.Sleeper) }}},
			Start: h.Enable,
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
