package testimages

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Every built program must be both embedded and present on disk, with the
// same bytes.
func TestBinariesPresent(t *testing.T) {
	srcs, err := filepath.Glob(filepath.Join(filepath.Dir(Path("hello")), "..", "src", "*.c"))
	if err != nil || len(srcs) == 0 {
		t.Fatalf("no sources found: %v", err)
	}
	names := []string{"hello-pie"}
	for _, s := range srcs {
		names = append(names, strings.TrimSuffix(filepath.Base(s), ".c"))
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
