package kvmtest

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// EnvRequire is the environment variable that turns skips into failures.
const EnvRequire = "EMUCKPT_REQUIRE_KVM"

// Require skips or fails tb when /dev/kvm cannot be opened read-write.
func Require(tb testing.TB) {
	tb.Helper()
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR|unix.O_CLOEXEC, 0)
	if err == nil {
		f.Close()
		return
	}
	if os.Getenv(EnvRequire) == "1" {
		tb.Fatalf("%s=1 but /dev/kvm is not usable: %v", EnvRequire, err)
	}
	tb.Skipf("skipping: needs read-write /dev/kvm (%v); set %s=1 to make this a failure", err, EnvRequire)
}
