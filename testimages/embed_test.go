package testimages

import (
	"bytes"
	"os"
	"os/exec"
	"testing"
)

// Every built program must be both embedded and present on disk, with the
// same bytes.
func TestBinariesPresent(t *testing.T) {
	names := []string{
		"hello", "hello-pie", "args", "malloc", "mmap", "readfile", "segv",
		"efault", "dettime", "cpubound", "getpid_loop", "fault_loop", "stat",
		"fdops", "exitcode", "sigs",
	}
	for _, name := range names {
		embedded, err := FS.ReadFile("bin/" + name)
		if err != nil {
			t.Errorf("%s: not embedded: %v", name, err)
			continue
		}
		onDisk, err := os.ReadFile(Path(name))
		if err != nil {
			t.Errorf("%s: not on disk: %v", name, err)
			continue
		}
		if !bytes.Equal(embedded, onDisk) {
			t.Errorf("%s: embedded and on-disk copies differ", name)
		}
		if !bytes.HasPrefix(onDisk, []byte("\x7fELF")) {
			t.Errorf("%s: not an ELF file", name)
		}
	}
}

// Smoke test: run hello natively.
func TestHelloNative(t *testing.T) {
	for _, name := range []string{"hello", "hello-pie"} {
		out, err := exec.Command(Path(name)).Output()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got, want := string(out), "hello, world\n"; got != want {
			t.Errorf("%s: got %q, want %q", name, got, want)
		}
	}
}
