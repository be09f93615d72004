package bsr

import (
	"bytes"
	"fmt"
)

// State is the contents of a Set as plain data, for a checkpoint taken
// with --device-state=preserve. The default for checkpoints is
// mapping-only: device contents are not saved at all.
type State struct {
	Registers []RegisterState
}

// RegisterState is the contents of one register.
type RegisterState struct {
	Name  string // such as "bsr8_0"
	Spec  Spec   // the geometry it had, checked on restore
	Bytes []byte // the participant bytes; len == Spec.Bytes
}

// SaveState returns the contents of every register, in order.
func (s *Set) SaveState() State {
	st := State{Registers: make([]RegisterState, 0, len(s.regs))}
	for _, r := range s.regs {
		st.Registers = append(st.Registers, r.SaveState())
	}
	return st
}

// RestoreState puts back contents saved by SaveState. The Set must have the
// same registers, in the same order and with the same geometry (the same
// --bsr flags); otherwise nothing changes and the error says which register
// differs.
func (s *Set) RestoreState(st State) error {
	if len(st.Registers) != len(s.regs) {
		return fmt.Errorf("bsr: the saved state has %d registers, this machine %d; restore with the --bsr flags of the checkpointed run", len(st.Registers), len(s.regs))
	}
	for i, r := range s.regs {
		if err := r.check(st.Registers[i]); err != nil {
			return err
		}
	}
	for i, r := range s.regs {
		r.set(st.Registers[i].Bytes)
	}
	return nil
}

// SaveState returns the register's contents.
func (r *Register) SaveState() RegisterState {
	return RegisterState{Name: r.name, Spec: r.spec, Bytes: r.Bytes()}
}

// RestoreState puts back contents saved by SaveState of a register with the
// same name and geometry.
func (r *Register) RestoreState(st RegisterState) error {
	if err := r.check(st); err != nil {
		return err
	}
	r.set(st.Bytes)
	return nil
}

func (r *Register) check(st RegisterState) error {
	if st.Name != r.name || st.Spec != r.spec {
		return fmt.Errorf("bsr: saved register %s (%s) does not match %s (%s); restore with the --bsr flags of the checkpointed run", st.Name, st.Spec, r.name, r.spec)
	}
	if uint64(len(st.Bytes)) != r.spec.Bytes {
		return fmt.Errorf("bsr: saved register %s has %d bytes, want %d; the state is corrupt", st.Name, len(st.Bytes), r.spec.Bytes)
	}
	return nil
}

func (r *Register) set(b []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	copy(r.bytes, b)
}

// Equal reports whether two states hold the same registers and bytes.
func (st State) Equal(o State) bool {
	if len(st.Registers) != len(o.Registers) {
		return false
	}
	for i, r := range st.Registers {
		q := o.Registers[i]
		if r.Name != q.Name || r.Spec != q.Spec || !bytes.Equal(r.Bytes, q.Bytes) {
			return false
		}
	}
	return true
}
