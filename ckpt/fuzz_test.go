package ckpt

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/emuckpt/emuckpt/ckpt/image"
	"github.com/emuckpt/emuckpt/kernel"
	"github.com/stretchr/testify/require"
)

// FuzzParse feeds arbitrary bytes to the image reader and the state
// decoder: they must refuse bad input with an error, never panic. Nearly
// every mutation breaks a checksum; FuzzState explores what the checksums
// protect.
func FuzzParse(f *testing.F) {
	for _, g := range goldenImages {
		if b, err := os.ReadFile("testdata/" + g.file); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("EMUCKPT\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		img, err := Parse(b)
		if err != nil {
			return
		}
		defer img.Close()
		checkAccepted(t, img)
	})
}

// FuzzState wraps arbitrary state records into images with valid
// checksums (the two pages of the golden args image as page data), so the
// fuzzer works on what an image means rather than on its checksums. An
// image whose state Parse accepts must satisfy everything restore relies
// on (checkAccepted).
//
//	go test -run XXX -fuzz=FuzzState -fuzztime=200000x ./ckpt/
func FuzzState(f *testing.F) {
	golden := readGolden(f, "args-v2.img")
	f.Add(golden.state)
	for _, m := range inconsistentStates {
		f.Add(mutatedState(f, golden.state, m.mutate))
	}
	f.Fuzz(func(t *testing.T, state []byte) {
		img, err := Parse(buildImage(t, state, golden.pages))
		if err != nil {
			require.ErrorIs(t, err, ErrImage)
			require.Less(t, len(err.Error()), 1000, "error message is bounded")
			return
		}
		defer img.Close()
		checkAccepted(t, img)
	})
}

// checkAccepted checks, independently of Validate, what restore relies on
// in an image Parse accepted, and reads all its page data.
func checkAccepted(t *testing.T, img *Image) {
	st := img.State
	var prevEnd uint64
	for _, v := range st.Processes[0].VMAs {
		require.Less(t, v.Start, v.End)
		require.GreaterOrEqual(t, v.Start, prevEnd, "VMAs overlap")
		prevEnd = v.End
		require.LessOrEqual(t, v.Offset, uint64(1<<63)-(v.End-v.Start), "offset overflows off_t")
		switch v.Type {
		case kernel.VMAScratch, kernel.VMADevice, kernel.VMAFileShared:
			require.Empty(t, v.Pages, "a %s VMA stores no pages", v.Type)
		case kernel.VMAAnon, kernel.VMAShm, kernel.VMAHeap, kernel.VMAStack, kernel.VMAFile:
		default:
			t.Fatalf("unknown VMA type %q accepted", v.Type)
		}
		require.Equal(t, v.Type == kernel.VMADevice, v.Kind == "device")
		if v.Kind == "file" && v.Name != st.Program.Name {
			require.NotZero(t, v.Objref, "a file VMA without objref")
		}
		next := v.Start
		for _, r := range v.Pages {
			require.GreaterOrEqual(t, r.VA, next, "page runs overlap")
			require.LessOrEqual(t, r.Count, (v.End-r.VA)/4096, "page run outside its VMA")
			require.LessOrEqual(t, r.Index+r.Count, st.PageCount, "page run outside the page data")
			require.Greater(t, r.Index+r.Count, r.Index, "page run wraps")
			next = r.VA + r.Count*4096
		}
	}
	pages := make([]byte, st.PageCount*4096)
	require.NoError(t, img.ReadPages(pages, 0))
}

// golden is a golden image taken apart: its state record and page data.
type golden struct {
	state []byte
	pages []byte
}

func readGolden(tb testing.TB, file string) golden {
	b, err := os.ReadFile("testdata/" + file)
	require.NoError(tb, err)
	img, err := image.Parse(b)
	require.NoError(tb, err)
	defer img.Close()
	pages, err := img.PageRange(0, img.NumPages())
	require.NoError(tb, err)
	for _, r := range img.Records() {
		if r.Type == RecState {
			return golden{state: r.Payload, pages: pages}
		}
	}
	tb.Fatal("no state record")
	return golden{}
}

// buildImage makes an image of a state record and page data, with valid
// checksums whatever the record says.
func buildImage(tb testing.TB, state, pages []byte) []byte {
	var buf image.Buffer
	w := image.NewWriter(&buf)
	require.NoError(tb, w.Record(RecState, state))
	if len(pages) > 0 {
		_, err := w.Pages(pages)
		require.NoError(tb, err)
	}
	require.NoError(tb, w.Commit())
	return buf.Bytes()
}

// mutatedState decodes a state record, changes it and encodes it again.
func mutatedState(tb testing.TB, state []byte, mutate func(*kernel.State)) []byte {
	var st kernel.State
	require.NoError(tb, json.Unmarshal(state, &st))
	mutate(&st)
	b, err := json.Marshal(&st)
	require.NoError(tb, err)
	return b
}
