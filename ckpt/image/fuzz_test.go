package image

import (
	"bytes"
	"errors"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzParse checks that Parse never panics, never modifies its input, that
// every error is an *Error of a known kind with a short message, and that
// every accepted image can be read completely and written back.
// TestParseBoundedAllocation checks memory separately.
//
//	go test -run XXX -fuzz=FuzzParse -fuzztime=60s -fuzzminimizetime=500x ./ckpt/image/
//
// Limit minimization as above: images are at least 4 KiB (the header
// page), and with the default limit (60 s per input) a worker spends most
// of its time minimizing each new input, which shows as "0/sec". On a
// loaded machine, Go 1.26 may end a time-bounded run with a bare "context
// deadline exceeded" failure and no failing input written (a race in the
// fuzzing coordinator, go.dev/issue/75804): for CI prefer a count, e.g.
// -fuzztime=2000000x (about a minute here).
func FuzzParse(f *testing.F) {
	for _, c := range []content{
		{},
		small(),
		randContent(1, []int{0, 3, 8, 100}, nil),
		randContent(2, []int{1}, []int{1}),
	} {
		b := build(f, c)
		f.Add(b)
		f.Add(b[:len(b)-1])
		f.Add(b[:headerLen])
	}
	f.Add([]byte(Magic))
	f.Add([]byte("\x7fELF"))
	f.Fuzz(func(t *testing.T, data []byte) {
		orig := bytes.Clone(data)
		img, err := Parse(data)
		lazy, lazyErr := Parse(data, LazyPages())
		require.Equal(t, orig, data, "Parse must not modify its input")
		if lazyErr != nil {
			require.Error(t, err, "a lazy failure is a full failure")
			require.Nil(t, lazy)
		}
		if err != nil {
			require.Nil(t, img)
			var ie *Error
			require.True(t, errors.As(err, &ie), "error %v is not an *Error", err)
			require.Contains(t, []error{ErrNotImage, ErrTruncated, ErrCorrupt, ErrVersion}, ie.Kind)
			require.Less(t, len(err.Error()), 512, "error message is bounded")
			if lazy != nil {
				require.ErrorIs(t, lazy.VerifyPages(), ErrCorrupt, "only page data can differ")
			}
			return
		}
		require.NoError(t, lazy.VerifyPages())
		require.LessOrEqual(t, img.NumPages()*PageSize, uint64(len(data)))
		// Write the content back and read it again.
		var buf Buffer
		w := NewWriter(&buf)
		for _, r := range img.Records() {
			require.NotZero(t, r.Type)
			require.Less(t, r.Type, ReservedTypes)
			require.NoError(t, w.Record(r.Type, r.Payload))
		}
		for i := range img.NumPages() {
			p, err := img.Page(i)
			require.NoError(t, err)
			require.Len(t, p, PageSize)
			_, err = w.Pages(p)
			require.NoError(t, err)
		}
		require.NoError(t, w.Commit())
		again, err := Parse(buf.Bytes())
		require.NoError(t, err)
		require.Equal(t, img.Records(), again.Records())
		require.Equal(t, img.pages, again.pages)
	})
}

// TestParseBoundedAllocation: Parse allocates a small multiple of its
// input, whatever the lengths in the header and the records say. Open
// allocates the metadata area in addition, which is bounded by the file's
// size (and by MaxMetadataLen).
func TestParseBoundedAllocation(t *testing.T) {
	b := build(t, randContent(1, nil, []int{1}))
	sums := frame(TypePageSums, le.AppendUint32(nil, crc32c(b[PageSize:2*PageSize])))
	manyRecords := bytes.Repeat(frame(1, nil), 10000)
	inputs := map[string][]byte{
		"valid":          b,
		"many records":   remeta(b, bytes.Join([][]byte{manyRecords, sums, frame(TypeEnd, nil)}, nil)),
		"huge pages":     reheader(b, func(h []byte) { le.PutUint64(h[offNumPages:], maxPages) }),
		"huge metadata":  reheader(b, func(h []byte) { le.PutUint64(h[offMetaLen:], MaxMetadataLen) }),
		"huge record":    remeta(b, bytes.Join([][]byte{le.AppendUint32(le.AppendUint32(nil, 1), 0xffffffff), sums, frame(TypeEnd, nil)}, nil)),
		"huge sum table": remeta(b, bytes.Join([][]byte{le.AppendUint32(le.AppendUint32(nil, TypePageSums), 0xfffffff0), frame(TypeEnd, nil)}, nil)),
	}
	for name, in := range inputs {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		img, err := Parse(in)
		runtime.ReadMemStats(&after)
		if name == "valid" || name == "many records" {
			require.NoError(t, err, name)
			if name == "many records" {
				require.Len(t, img.Records(), 10000)
			}
		} else {
			require.Error(t, err, name)
		}
		alloc := after.TotalAlloc - before.TotalAlloc
		require.Less(t, alloc, uint64(8*len(in)+4096), "%s: %d bytes allocated for %d bytes of input", name, alloc, len(in))
	}
}
