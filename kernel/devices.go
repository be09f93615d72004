package kernel

import (
	"fmt"

	"github.com/emuckpt/emuckpt/kernel/vfs"
	"github.com/emuckpt/emuckpt/vmm"
	"golang.org/x/sys/unix"
)

// A device plugs into the kernel through DeviceFactory: the kernel calls it
// once, with the guest clock, and registers what it returns. Device
// packages (devices/hpet, devices/bsr) never import this package; the
// command line wires them in.
type DeviceFactory func(env DeviceEnv) (Device, error)

// DeviceEnv is what the kernel gives a device.
type DeviceEnv struct {
	// Now is the guest's CLOCK_MONOTONIC in nanoseconds: the host clock,
	// or the virtual clock under --deterministic.
	Now func() int64
}

// Device is what a device contributes to the machine and the file system.
type Device struct {
	MMIO  []MMIORegion
	Files []DeviceFile
	Text  []TextFile
	// Start runs once the machine is ready (the HPET starts its counter
	// here, as Linux enables the HPET when it takes it).
	Start func()
	// State, if set, saves and restores the device model's registers for
	// --device-state=preserve.
	State *DeviceState
	// VMATypes are the device VMA types the device registers for its
	// mappings (see VMAType).
	VMATypes []VMAType
}

// DeviceState saves and restores one device model's own state.
type DeviceState struct {
	Name    string
	Save    func() ([]byte, error)
	Restore func([]byte) error
}

// MMIORegion is a guest-physical range served by dev.
type MMIORegion struct {
	Base, Size uint64
	Dev        vmm.Device
}

// DeviceFile is a character device node such as /dev/hpet.
type DeviceFile struct {
	Path string
	Info vfs.DeviceInfo
	Open func(flags int) (vfs.File, unix.Errno)
	// Reopen, if set, re-creates a descriptor from what its file said of
	// itself (vfs.DeviceDescriber), at a restore that preserves device
	// state.
	Reopen func(state []byte, flags int) (vfs.File, unix.Errno)
}

// TextFile is a read-only generated file such as a sysfs attribute.
type TextFile struct {
	Path    string
	Content func() []byte
}

// attachDevices builds and registers every configured device.
func (k *Kernel) attachDevices() error {
	env := DeviceEnv{Now: k.monotonic}
	var starts []func()
	for _, f := range k.cfg.Devices {
		d, err := f(env)
		if err != nil {
			return err
		}
		for _, r := range d.MMIO {
			for _, ram := range k.m.RAMRanges() {
				if r.Base < ram.End && r.Base+r.Size > ram.Start {
					return fmt.Errorf("device %s at %#x lies inside guest RAM (%#x-%#x): devices belong in the MMIO hole [%#x, %#x)", r.Dev.Name(), r.Base, ram.Start, ram.End, uint64(vmm.LowMemEnd), uint64(vmm.HighMemBase))
				}
			}
			if err := k.m.Bus.Register(r.Base, r.Size, tickingDevice{r.Dev, k.clock}); err != nil {
				return err
			}
		}
		for _, f := range d.Files {
			if err := k.fs.AddReopenableDevice(f.Path, f.Info, f.Open, f.Reopen); err != nil {
				return err
			}
		}
		for _, t := range d.Text {
			if err := k.fs.AddFile(t.Path, t.Content); err != nil {
				return err
			}
		}
		if d.Start != nil {
			starts = append(starts, d.Start)
		}
		if d.State != nil {
			k.deviceStates = append(k.deviceStates, *d.State)
		}
		for _, t := range d.VMATypes {
			if err := k.registerVMAType(t); err != nil {
				return err
			}
		}
	}
	for _, s := range starts {
		s()
	}
	return nil
}

func (k *Kernel) monotonic() int64 {
	ns, _ := k.clock.Now(unix.CLOCK_MONOTONIC)
	return ns
}

// tickingDevice advances the guest clock at every device access, so that
// under the virtual clock a program polling a device sees time pass.
type tickingDevice struct {
	vmm.Device
	clock Clock
}

func (d tickingDevice) Read(off uint64, data []byte) error {
	d.clock.Tick()
	return d.Device.Read(off, data)
}

func (d tickingDevice) Write(off uint64, data []byte) error {
	d.clock.Tick()
	return d.Device.Write(off, data)
}
