package loader

import (
	"bytes"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzParse checks that Parse never panics, that every error is a *Error
// of a known kind with a short message, and that every accepted file meets
// the Image invariants. Parse's allocations are bounded by construction
// (at most 73 program headers, Segment.Data aliases the input);
// TestParseBoundedAllocation measures them.
//
//	go test -fuzz=FuzzParse -fuzztime=60s ./kernel/loader/
func FuzzParse(f *testing.F) {
	for _, tc := range parseCases() {
		f.Add(tc.data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		orig := bytes.Clone(data)
		img, err := Parse(data)
		require.Equal(t, orig, data, "Parse must not modify its input")
		if err != nil {
			require.Nil(t, img)
			var le *Error
			require.True(t, errors.As(err, &le), "error %v is not a *Error", err)
			require.Contains(t, []error{ErrNotELF, ErrWrongArch, ErrDynamic, ErrCorrupt}, le.Kind)
			require.Less(t, len(err.Error()), 1024, "error message is bounded")
			return
		}
		require.LessOrEqual(t, len(img.Segments), maxPhdrBytes/phdrSize)
		checkImage(t, data, img)
		auxv := img.Auxv(AuxvParams{})
		_, _, err = BuildStack(UserSpaceEnd, StackInfo{Args: []string{"p"}, ExecFn: "p", Platform: "x86_64"}, auxv)
		require.NoError(t, err)
	})
}

// FuzzBuildStack builds stacks from arbitrary strings (split at 0xff bytes,
// so they may contain NUL) and checks that they decode back.
func FuzzBuildStack(f *testing.F) {
	f.Add([]byte("prog\xffarg\xff\xffA=1"), uint8(1), uint8(0))
	f.Add([]byte(""), uint8(0), uint8(3))
	f.Add([]byte("x\x00y"), uint8(1), uint8(5))
	f.Fuzz(func(t *testing.T, data []byte, nargs, lenMod uint8) {
		parts := bytes.Split(data, []byte{0xff})
		var strs []string
		for _, p := range parts {
			strs = append(strs, string(p))
		}
		n := min(int(nargs), len(strs))
		info := StackInfo{
			Args:       strs[:n],
			Env:        strs[n:],
			ExecFn:     string(bytes.Repeat([]byte("e"), int(lenMod))),
			Random:     testRandom(),
			Platform:   "x86_64"[:lenMod%7],
			StackLimit: uint64(lenMod) << 10, // exercise small limits too
		}
		auxv := []AuxEntry{{AT_PAGESZ, PageSize}, {AT_RANDOM, 0}, {AT_UID, uint64(lenMod)}}
		const top = 0x7fff_ffff_f000
		st, err := LayoutStack(top, info, auxv)
		if err != nil {
			require.True(t, errors.Is(err, ErrArgListTooLong) || errors.Is(err, ErrInvalidStack), "%v", err)
			return
		}
		checkStack(t, top, info, auxv, st)
	})
}
