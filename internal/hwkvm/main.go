// Command hwkvm tests emuckpt on hardware-style KVM on a machine that has
// none: it runs internal/hwkvm/hwkvm.sh, which boots a Debian kernel in
// QEMU TCG with a virtual AMD CPU that has SVM, loads kvm_amd there and
// runs emuckpt's test programs (quick) and test binaries (full) on it.
// The script's header says what it needs and does.
//
//	go run ./internal/hwkvm [quick|full|all]
//
// The exit status is the script's: 0 when every step passed.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// script is the harness, relative to the repository's root.
const script = "internal/hwkvm/hwkvm.sh"

func main() {
	path, err := findScript()
	if err != nil {
		fmt.Fprintf(os.Stderr, "hwkvm: %v\n", err)
		os.Exit(2)
	}
	cmd := exec.Command("bash", append([]string{path}, os.Args[1:]...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		os.Exit(exit.ExitCode())
	default:
		fmt.Fprintf(os.Stderr, "hwkvm: %v\n", err)
		os.Exit(2)
	}
}

// findScript looks for the script in the working directory and the
// directories above it, that is, anywhere in the repository.
func findScript() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, script)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("%s not found here or above: run this inside the repository", script)
		}
		dir = parent
	}
}
