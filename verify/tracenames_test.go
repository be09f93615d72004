package verify

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestTraceNames: the names of the calls come from the --trace lines of
// a single task and of several ("[pid N] " after the prefix); other lines
// are not calls.
func TestTraceNames(t *testing.T) {
	log := `emuckpt: trace: arch_prctl(ARCH_SET_FS, 0x409698) = 0
emuckpt: unknown system call mbind (237): returning ENOSYS
emuckpt: trace: write(1, "a(b", 3) = 3
emuckpt: trace: [pid 2] fork() = 3
emuckpt: trace: [pid 3] exit_group(0) = ?
child output
emuckpt: trace: [pid 2] wait4(3, [{WIFEXITED(s) && WEXITSTATUS(s) == 0}], 0, NULL) = 3
`
	assert.Equal(t, []string{"arch_prctl", "write", "fork", "exit_group", "wait4"}, traceNames(log))
}
