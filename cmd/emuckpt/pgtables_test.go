package main

import (
	"strconv"
	"testing"

	"github.com/emuckpt/emuckpt/internal/kvmtest"
	"github.com/stretchr/testify/assert"
)

// TestPageTableChurn is issue 7's reproduction: one page mapped at a new
// 1 GiB-aligned address, touched and unmapped, 130,044 times under
// --mem 64M. With the emptied page tables never freed the guest ran out
// of memory after about 8,000 cycles (SIGKILL, status 137); Linux and
// emuckpt complete them all. The test runs 20,000 cycles, past where the
// guest used to die; EMUCKPT_CHURN_CYCLES sets another number (.ci/run
// runs all 130,044, over a minute on PVM), and -short runs 10,000.
func TestPageTableChurn(t *testing.T) {
	kvmtest.Require(t)
	cycles := envInt(t, "EMUCKPT_CHURN_CYCLES", 20000)
	if testing.Short() {
		cycles = 10000
	}
	r := emuckpt(t, "run", "--mem", "64M", img("pgtable_churn"), strconv.Itoa(cycles))
	assert.Equal(t, 0, r.status, "stdout: %s\nstderr: %s", r.stdout, r.stderr)
	assert.Equal(t, "cycles: "+strconv.Itoa(cycles)+"\nok\n", r.stdout)
	assert.Empty(t, r.stderr)
}
