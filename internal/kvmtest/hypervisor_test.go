package kvmtest

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestHostHypervisor(t *testing.T) {
	sig := HostHypervisor()
	t.Logf("hypervisor signature: %q", sig)
	assert.LessOrEqual(t, len(sig), 12)
	assert.NotContains(t, sig, "\x00")
}
