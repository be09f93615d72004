package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/emuckpt/emuckpt/ckpt"
	"github.com/emuckpt/emuckpt/devices/bsr"
	"github.com/emuckpt/emuckpt/devices/hpet"
	"github.com/emuckpt/emuckpt/kernel"
	"github.com/emuckpt/emuckpt/testimages"
)

// demoProgram is the embedded guest program of `emuckpt demo`
// (testimages/src/devckpt.c).
const demoProgram = "devckpt"

// cmdDemo runs the embedded device program, lets it checkpoint itself,
// restores the image under both device-state policies and says what came
// back.
func cmdDemo(args []string, stdout, stderr *os.File) int {
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
		fmt.Fprintln(stdout, "usage: emuckpt demo\n\nRuns an embedded guest program that maps /dev/hpet and /dev/bsr8_0, keeps\nanonymous and scratch (MADV_DONTDUMP) memory and checkpoints itself; then\nrestores the image in fresh VMs under --device-state=fresh and preserve.")
		return 0
	}
	if len(args) > 0 {
		fmt.Fprintf(stderr, "emuckpt: demo takes no arguments\n")
		return exitFailure
	}
	dir, err := os.MkdirTemp("", "emuckpt-demo-")
	if err != nil {
		fmt.Fprintf(stderr, "emuckpt: demo: %v\n", err)
		return exitFailure
	}
	defer os.RemoveAll(dir)
	prog, err := testimages.FS.ReadFile("bin/" + demoProgram)
	if err != nil {
		fmt.Fprintf(stderr, "emuckpt: demo: %v\n", err)
		return exitFailure
	}
	path := filepath.Join(dir, demoProgram)
	if err := os.WriteFile(path, prog, 0o755); err != nil {
		fmt.Fprintf(stderr, "emuckpt: demo: %v\n", err)
		return exitFailure
	}
	image := filepath.Join(dir, "demo.img")
	say := func(format string, a ...any) { fmt.Fprintf(stdout, format+"\n", a...) }

	say("1. Run %s in a fresh VM. It maps /dev/hpet and /dev/bsr8_0, fills 64 pages of", demoProgram)
	say("   anonymous memory, marks 16 pages as scratch (MADV_DONTDUMP), stores five")
	say("   participants' bytes in the BSR, and calls emuckpt_checkpoint().")
	guest := func(f func(out *os.File) error) error {
		r, w, err := os.Pipe()
		if err != nil {
			return err
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			sc := bufio.NewScanner(r)
			for sc.Scan() {
				fmt.Fprintf(stdout, "   | %s\n", sc.Text())
			}
			io.Copy(io.Discard, r)
		}()
		err = f(w)
		w.Close()
		<-done
		r.Close()
		return err
	}
	devices := deviceFactories(hpet.DefaultConfig(), bsr.DefaultSpecs())
	var stored *kernel.State
	err = guest(func(out *os.File) error {
		cfg := kernel.Config{Program: prog, Name: demoProgram, Path: path, Args: []string{demoProgram},
			Env: defaultEnv, Stdout: out, Stderr: out, Log: stderr}
		cfg.Devices = devices
		cfg.Checkpoint.Save = func(s *kernel.Snapshot) error {
			stored = s.State
			return ckpt.Write(image, s)
		}
		k, err := kernel.New(cfg)
		if err != nil {
			return err
		}
		defer k.Close()
		st, err := k.Run(context.Background())
		if err == nil && !st.Checkpointed {
			err = fmt.Errorf("the program ended (%+v) without checkpointing", st)
		}
		return err
	})
	if err != nil {
		fmt.Fprintf(stderr, "emuckpt: demo: %v\n", err)
		return exitFailure
	}
	var devBytes, stored4k uint64
	for _, v := range stored.Processes[0].VMAs {
		if v.Type == kernel.VMADevice {
			devBytes += v.Stored() * 4096
		}
		stored4k += v.Stored()
	}
	info, _ := os.Stat(image)
	say("\n2. The checkpoint left the VM: %d bytes of image, %d pages of contents.", info.Size(), stored4k)
	say("   Device VMAs are stored mapping-only (%d bytes of contents); the scratch", devBytes)
	say("   range is stored as a mapping without contents. `emuckpt inspect` shows:")
	img, err := ckpt.Open(image)
	if err != nil {
		fmt.Fprintf(stderr, "emuckpt: demo: %v\n", err)
		return exitFailure
	}
	for i := range img.State.Processes[0].VMAs {
		v := inspectVMAOf(&img.State.Processes[0].VMAs[i])
		typ := v.Type
		if v.Device != "" {
			typ += "(" + v.Device + ")"
		}
		say("   %012x-%012x %s %-13s %7d bytes  %s", v.Start, v.End, v.Perms, typ, v.StoredBytes, v.Backing)
	}
	img.Close()

	for i, policy := range []string{"fresh", "preserve"} {
		say("\n%d. Restore the image in a new VM with --device-state=%s:", 3+i, policy)
		err := guest(func(out *os.File) error {
			img, err := ckpt.Open(image)
			if err != nil {
				return err
			}
			defer img.Close()
			cfg := kernel.Config{Program: prog, Path: path, Stdout: out, Stderr: out, Log: stderr,
				PreserveDevices: policy == "preserve"}
			cfg.Devices = devices
			k, err := img.Restore(cfg)
			if err != nil {
				return err
			}
			defer k.Close()
			st, err := k.Run(context.Background())
			if err == nil && st.ShellStatus() != 0 {
				err = fmt.Errorf("the restored program ended with status %d", st.ShellStatus())
			}
			return err
		})
		if err != nil {
			fmt.Fprintf(stderr, "emuckpt: demo: %v\n", err)
			return exitFailure
		}
	}
	say("\nWhat came back: the device mappings at the same addresses, the anonymous")
	say("memory, the registers and descriptors. What did not: the scratch range")
	say("(zero-filled) and, under the default fresh policy, the device contents: the")
	say("BSR reads zero and the HPET counter started over. Under preserve the device")
	say("models got their saved registers back, so both continued.")
	say("\nTry it yourself: emuckpt run --checkpoint-to IMG PROGRAM; emuckpt inspect IMG;")
	say("emuckpt restore [--device-state=preserve] IMG.")
	return 0
}
