package kernel

import (
	"encoding/json"
	"fmt"

	"github.com/emuckpt/emuckpt/kernel/vfs"
)

// VMAType is a device VMA type that a device registers when it is
// attached (Device.VMATypes). A checkpoint stores a device VMA as a
// mapping only: the type's name, the device path, offset and protection,
// and whatever Save returns; restore opens the device file again, calls
// its mmap again, and lets Check compare the saved parameters with the
// device found there.
type VMAType struct {
	Name string
	// Save describes the device behind a mapping (for example its
	// configuration); nil stores nothing.
	Save func(b vfs.Backing) (json.RawMessage, error)
	// Check refuses, with an error that names the difference, a device
	// that is configured differently from the saved one; nil accepts any.
	Check func(b vfs.Backing, saved json.RawMessage) error
}

// vanillaType is the generic mapping-only type of any device that
// registers nothing special.
var vanillaType = VMAType{Name: VanillaDevice}

func (k *Kernel) registerVMAType(t VMAType) error {
	if k.vmaTypes == nil {
		k.vmaTypes = map[string]VMAType{VanillaDevice: vanillaType}
	}
	if _, dup := k.vmaTypes[t.Name]; dup || t.Name == "" {
		return fmt.Errorf("device VMA type %q registered twice", t.Name)
	}
	k.vmaTypes[t.Name] = t
	return nil
}

// vmaTypeOf returns the registered type of a device mapping's backing.
func (k *Kernel) vmaTypeOf(b vfs.Backing) (VMAType, error) {
	name := VanillaDevice
	if ty, ok := b.(vmaTyper); ok {
		name = ty.VMAType()
	}
	t, ok := k.vmaTypes[name]
	if !ok && name == VanillaDevice {
		return vanillaType, nil
	}
	if !ok {
		return VMAType{}, fmt.Errorf("device %s maps with VMA type %q, which its device did not register", b.Name(), name)
	}
	return t, nil
}
