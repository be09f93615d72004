package ckpt

import (
	"encoding/json"
	"testing"

	"github.com/emuckpt/emuckpt/guestmm"
	"github.com/stretchr/testify/require"
)

func TestParentRecordRoundTrip(t *testing.T) {
	for _, runs := range [][]ParentRun{
		{},
		{{Index: 0, Count: 5, ParentIndex: 0}},
		{{Index: 3, Count: 25, ParentIndex: 1}, {Index: 29, Count: 50, ParentIndex: 27}, {Index: 80, Count: 7, ParentIndex: 200}, {Index: 88, Count: 1, ParentIndex: 0}},
	} {
		ref := ParentRef{Path: "a.img", HeaderSHA256: "00ff", PageCount: 300, Depth: 2, Runs: runs}
		b, err := json.Marshal(ref)
		require.NoError(t, err)
		var got ParentRef
		require.NoError(t, json.Unmarshal(b, &got))
		require.Equal(t, ref, got, "%s", b)
	}
	b, _ := json.Marshal(ParentRef{Runs: []ParentRun{{Index: 3, Count: 25, ParentIndex: 1}, {Index: 29, Count: 50, ParentIndex: 27}}})
	require.Contains(t, string(b), `"runs":[3,25,-2,1,50,0]`, "skip, count, change of shift")
}

func TestParentRecordRefusesBadRuns(t *testing.T) {
	for _, tc := range []struct{ runs, want string }{
		{`[1,2]`, "not three per run"},
		{`[-1,2,0]`, "do not make a run"},
		{`[0,0,0]`, "do not make a run"},
		{`[0,2,-5]`, "do not make a run"},
		{`[0,9223372036854775807,0,0,9223372036854775807,0]`, "do not make a run"},
	} {
		var ref ParentRef
		err := json.Unmarshal([]byte(`{"path":"a","runs":`+tc.runs+`}`), &ref)
		require.ErrorContains(t, err, tc.want, tc.runs)
	}
}

func TestCheckRuns(t *testing.T) {
	ref := func(runs ...ParentRun) *ParentRef { return &ParentRef{PageCount: 10, Runs: runs} }
	for _, tc := range []struct {
		name          string
		ref           *ParentRef
		pages, stored uint64
		want          string
	}{
		{"ok", ref(ParentRun{0, 2, 0}, ParentRun{5, 3, 7}), 10, 5, ""},
		{"overlap", ref(ParentRun{0, 3, 0}, ParentRun{2, 1, 5}), 10, 6, "overlaps"},
		{"outside image", ref(ParentRun{8, 3, 0}), 10, 7, "outside the image's 10 pages"},
		{"outside parent", ref(ParentRun{0, 3, 8}), 10, 7, "outside the parent's 10 pages"},
		{"count mismatch", ref(ParentRun{0, 3, 0}), 10, 6, "the page data holds 6, not 7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkRuns(tc.ref, tc.pages, tc.stored)
			if tc.want == "" {
				require.NoError(t, err)
			} else {
				require.ErrorContains(t, err, tc.want)
			}
		})
	}
}

// TestCachedPages: parts of chunks read in turn (as restore's fill
// workers do) read each chunk once while no more than cachedChunks are
// in use at once, and get the right bytes.
func TestCachedPages(t *testing.T) {
	const chunk, pages = 4, 22 // the last chunk is short
	src := make([]byte, pages*guestmm.PageSize)
	for i := range src {
		src[i] = byte(i/guestmm.PageSize*7 + i%251)
	}
	for _, tc := range []struct {
		name  string
		reads [][2]uint64 // first page, count
		want  map[uint64]int
	}{
		{"one chunk in parts", [][2]uint64{{0, 1}, {1, 2}, {3, 1}}, map[uint64]int{0: 1}},
		{"two readers in turn", [][2]uint64{{0, 1}, {8, 1}, {1, 1}, {9, 2}, {2, 2}, {11, 1}}, map[uint64]int{0: 1, 8: 1}},
		{"across chunks", [][2]uint64{{2, 3}, {5, 1}}, map[uint64]int{0: 1, 4: 1}},
		{"a chunk's worth or more: read as it is", [][2]uint64{{2, 4}}, map[uint64]int{2: 1}},
		{"the short last chunk", [][2]uint64{{20, 1}, {21, 1}}, map[uint64]int{20: 1}},
		{"more chunks than kept: read again", [][2]uint64{{0, 1}, {4, 1}, {8, 1}, {12, 1}, {16, 1}, {1, 1}},
			map[uint64]int{0: 2, 4: 1, 8: 1, 12: 1, 16: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := map[uint64]int{}
			c := cachedPages{count: pages, chunk: chunk, read: func(dst []byte, first uint64) error {
				got[first]++
				copy(dst, src[first*guestmm.PageSize:])
				return nil
			}}
			for _, r := range tc.reads {
				dst := make([]byte, r[1]*guestmm.PageSize)
				require.NoError(t, c.readPages(dst, r[0]))
				require.Equal(t, src[r[0]*guestmm.PageSize:(r[0]+r[1])*guestmm.PageSize], dst)
			}
			require.Equal(t, tc.want, got)
		})
	}
}
