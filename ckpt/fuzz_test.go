package ckpt

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzParse feeds arbitrary bytes to the image reader and the state
// decoder: they must refuse bad input with an error, never panic.
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
		for _, v := range img.State.Process.VMAs {
			_ = v.Stored()
		}
		pages := make([]byte, img.State.PageCount*4096)
		require.NoError(t, img.ReadPages(pages, 0))
	})
}
