package ckpt

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/emuckpt/emuckpt/kernel"
	"github.com/stretchr/testify/require"
)

// inconsistentStates change the state of the golden args image (VMAs 0-3
// map the program, VMA 4 is the stack with page 1 stored) into states
// whose images have valid checksums but contradict themselves.
var inconsistentStates = []struct {
	name   string
	mutate func(*kernel.State)
	msg    string
}{
	{"unknown VMA type", func(s *kernel.State) { s.Processes[0].VMAs[4].Type = "MYSTERY" },
		`processes[0].vmas[4] 0x7ffffffdf000-0x7ffffffff000 ("MYSTERY"): type "MYSTERY" does not match kind stack`},
	{"DEVICE type on an anonymous VMA", func(s *kernel.State) {
		s.Processes[0].VMAs[4].Type, s.Processes[0].VMAs[4].Device = kernel.VMADevice, "hpet"
	}, `type "DEVICE" does not match kind stack`},
	{"SCRATCH VMA with stored pages", func(s *kernel.State) {
		s.Processes[0].VMAs[4].Type, s.Processes[0].VMAs[4].DontDump = kernel.VMAScratch, true
	}, "a SCRATCH VMA stores no pages, this one has 1 runs"},
	{"overlapping page runs", func(s *kernel.State) {
		v := &s.Processes[0].VMAs[4]
		v.Pages = append(v.Pages, kernel.PageRun{VA: v.Pages[0].VA, Count: 1, Index: 0})
	}, "pages[1] at 0x7fffffffe000 overlaps or precedes the run before it"},
	{"FILE VMA without objref", func(s *kernel.State) {
		s.Processes[0].VMAs = append(s.Processes[0].VMAs[:4:4], kernel.VMAState{Type: kernel.VMAFile, Kind: "file",
			Start: 0x7f0000000000, End: 0x7f0000001000, Prot: 1, MaxProt: 5, Name: "/data.txt"}, s.Processes[0].VMAs[4])
	}, `processes[0].vmas[4] 0x7f0000000000-0x7f0000001000 ("FILE"): file "/data.txt" has no objref`},
	{"file offset near 2^64", func(s *kernel.State) { s.Processes[0].VMAs[1].Offset = 1<<64 - 4096 },
		"processes[0].vmas[1] 0x401000-0x406000 (\"FILE\"): bad offset 0xfffffffffffff000"},
	{"page run outside the page data", func(s *kernel.State) { s.Processes[0].VMAs[4].Pages[0].Index = 2 },
		"outside the image's 2 pages"},
}

// TestInconsistentImagesRefused builds images with valid checksums whose
// state contradicts itself: Open and Parse refuse them with ErrImage,
// naming the record, before anything could be restored.
func TestInconsistentImagesRefused(t *testing.T) {
	golden := readGolden(t, "args-v2.img")
	img, err := Parse(buildImage(t, golden.state, golden.pages))
	require.NoError(t, err, "the unchanged state is accepted")
	img.Close()
	dir := t.TempDir()
	for _, tt := range inconsistentStates {
		t.Run(tt.name, func(t *testing.T) {
			b := buildImage(t, mutatedState(t, golden.state, tt.mutate), golden.pages)
			_, err := Parse(b)
			require.ErrorIs(t, err, ErrImage)
			require.ErrorContains(t, err, "state record: ")
			require.ErrorContains(t, err, tt.msg)
			path := filepath.Join(dir, "bad.img")
			require.NoError(t, os.WriteFile(path, b, 0o600))
			_, err = Open(path)
			require.ErrorIs(t, err, ErrImage)
			require.ErrorContains(t, err, tt.msg)
		})
	}
}

func TestGoldenStatesValid(t *testing.T) {
	for _, g := range goldenImages {
		img, err := Open(filepath.Join("testdata", g.file))
		require.NoError(t, err, g.file)
		require.NoError(t, img.Verify(), g.file)
		require.NoError(t, img.Close())
	}
}
