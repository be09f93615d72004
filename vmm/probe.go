package vmm

import (
	"sync"

	"github.com/emuckpt/emuckpt/guestmm"
)

var tscProbe struct {
	once sync.Once
	ok   bool
	err  error
}

// TSCTrapWorks reports whether this KVM honours CR4.TSD, that is whether
// rdtsc at CPL3 raises #GP so that the VMM can emulate it. Hardware KVM
// does; PVM accepts the bit but lets rdtsc read the host TSC. The answer
// comes from running `rdtsc` once in a throwaway machine and is cached.
func TSCTrapWorks() (bool, error) {
	tscProbe.once.Do(func() { tscProbe.ok, tscProbe.err = probeTSCTrap() })
	return tscProbe.ok, tscProbe.err
}

func probeTSCTrap() (bool, error) {
	m, c, err := probeMachine([]byte{0x0F, 0x31, 0x0F, 0x05}, true) // rdtsc; syscall
	if err != nil {
		return false, err
	}
	defer m.Close()
	ex, err := c.Run()
	if err != nil {
		return false, err
	}
	return ex.Kind == ExitException && ex.Vector == VecGP, nil
}

// probeMachine makes a throwaway machine whose vCPU is ready to run code
// at CPL3 (trapTSC sets CR4.TSD). The caller closes the machine.
func probeMachine(code []byte, trapTSC bool) (*Machine, *VCPU, error) {
	m, err := New(Config{MemSize: 4 << 20, TrapTSC: trapTSC})
	if err != nil {
		return nil, nil, err
	}
	c, err := func() (*VCPU, error) {
		frames := guestmm.NewFrames(m.Mem(), RAMBase, m.MemSize())
		pt, err := guestmm.NewPageTables(m.Mem(), frames)
		if err != nil {
			return nil, err
		}
		if err := MapKernel(pt); err != nil {
			return nil, err
		}
		pa, err := frames.Alloc()
		if err != nil {
			return nil, err
		}
		const codeVA = 0x400000
		copy(m.Mem()[pa:], code)
		if err := pt.Map(codeVA, pa, guestmm.Present|guestmm.User); err != nil {
			return nil, err
		}
		c, err := m.NewVCPU()
		if err != nil {
			return nil, err
		}
		return c, c.Start(Regs{RIP: codeVA}, pt.Root(), 0)
	}()
	if err != nil {
		m.Close()
		return nil, nil, err
	}
	return m, c, nil
}
