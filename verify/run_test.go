package verify

import (
	"context"
	"testing"

	"github.com/emuckpt/emuckpt/internal/kvmtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCorrectProgramsPass: programs without restart bugs pass at every
// point, under both policies and every perturbation.
func TestCorrectProgramsPass(t *testing.T) {
	kvmtest.Require(t)
	for _, args := range [][]string{{"hello"}, {"args", "a", "b c"}, {"exitcode", "3"}, {"sighandler"}} {
		t.Run(args[0], func(t *testing.T) {
			cfg := programConfig(t, args[0], args[1:]...)
			cfg.Points = 6
			cfg.Perturbations = []Perturbation{{}, {HPETJump: 1e9, ClockJump: 3600e9, BSRClear: true}}
			var last Progress
			cfg.Progress = func(p Progress) { last = p }
			rep, err := Run(context.Background(), cfg)
			require.NoError(t, err)
			require.NotEmpty(t, rep.Selected)
			assert.Len(t, rep.Results, len(rep.Selected)*4, "points × 2 policies × 2 perturbations")
			assert.Equal(t, len(rep.Results), rep.Total())
			pass, fail, errs := rep.Counts()
			assert.Equal(t, len(rep.Results), pass, "%d failed, %d errors: %+v", fail, errs, rep.Results)
			assert.Equal(t, Progress{Done: len(rep.Results), Total: len(rep.Results), Variants: 4, Elapsed: last.Elapsed}, last)
			for _, r := range rep.Results {
				if r.Point.Kind == KindSyscall {
					assert.NotEmpty(t, r.Point.Name, "the system call is named")
				}
			}
			if args[0] == "exitcode" {
				assert.Equal(t, 3, rep.Reference.Status)
			}
		})
	}
}

// TestShardedRunsCoverTheWhole: the shards of a verify check every
// point of the whole exactly once.
func TestShardedRunsCoverTheWhole(t *testing.T) {
	kvmtest.Require(t)
	cfg := programConfig(t, "getpid_loop", "12")
	cfg.Policies = []string{Fresh}
	whole, err := Run(context.Background(), cfg)
	require.NoError(t, err)
	require.Greater(t, len(whole.Results), 12)
	require.Len(t, whole.Results, int(whole.Reference.Events.Syscalls)-1, "every system call but the exit")
	seen := map[string]int{}
	for i := range 4 {
		cfg.Shard = Shard{Index: i, Count: 4}
		rep, err := Run(context.Background(), cfg)
		require.NoError(t, err)
		assert.Equal(t, whole.Selected, rep.Selected)
		for _, r := range rep.Results {
			assert.Equal(t, Pass, r.Outcome)
			seen[r.Point.key()]++
		}
	}
	require.Len(t, seen, len(whole.Results))
	for _, r := range whole.Results {
		assert.Equal(t, 1, seen[r.Point.key()], r.Point.String())
	}
}

// TestCheckpointCalls: an emuckpt_checkpoint() call is a point, where
// the restored program sees 2; at every other point a later call
// returns 1 in the restored run, as in the reference.
func TestCheckpointCalls(t *testing.T) {
	kvmtest.Require(t)
	cfg := programConfig(t, "ckptwait", "self")
	cfg.At = AtSyscall
	rep, err := Run(context.Background(), cfg)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), rep.Reference.Events.Calls)
	assert.Contains(t, string(rep.Reference.Stdout), "checkpoint: ret=1\n")
	calls := 0
	for _, r := range rep.Results {
		if r.Point.Kind == KindCall {
			calls++
			assert.Equal(t, Fail, r.Outcome)
			assert.Contains(t, r.Diff, "checkpoint: ret=2")
			continue
		}
		assert.Equal(t, Pass, r.Outcome, "%s %s: %s", r.Point, r.Policy, r.Diff)
	}
	assert.Equal(t, 2, calls, "one call, two policies")
}

// TestUncheckablePoints: where no checkpoint can be taken (the program
// holds a pipe), each result of the point is an error saying why.
func TestUncheckablePoints(t *testing.T) {
	kvmtest.Require(t)
	cfg := programConfig(t, "ckptwait", "socket")
	cfg.At = AtSyscall
	rep, err := Run(context.Background(), cfg)
	require.NoError(t, err)
	assert.Len(t, rep.Results, rep.Total())
	pass, _, errs := rep.Counts()
	assert.Positive(t, pass, "the points before the socket pair")
	require.Positive(t, errs)
	for _, r := range rep.Results {
		if r.Outcome == Error {
			assert.Contains(t, r.Message, "the pass never reached this point")
			assert.Contains(t, r.Message, "is a socket, which images do not hold yet")
			assert.NotEmpty(t, r.Policy)
		}
	}
}

// TestIncrementalPassImages: the pass keeps its images in memory as
// deltas (a full one every chainDepth); over random memory work
// (dirtywork) at more points than one chain holds, every restore of
// them passes.
func TestIncrementalPassImages(t *testing.T) {
	kvmtest.Require(t)
	cfg := programConfig(t, "dirtywork", "200", "5")
	cfg.Points = 2*chainDepth + 4
	cfg.Policies = []string{Fresh}
	rep, err := Run(context.Background(), cfg)
	require.NoError(t, err)
	require.Greater(t, len(rep.Selected), chainDepth+1, "more points than one chain")
	pass, fail, errs := rep.Counts()
	assert.Equal(t, len(rep.Results), pass, "%d failed, %d errors: %+v", fail, errs, rep.Results)
}
