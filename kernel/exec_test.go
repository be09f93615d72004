package kernel

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/emuckpt/emuckpt/guestmm"
	"github.com/emuckpt/emuckpt/kernel/loader"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestExePath(t *testing.T) {
	dir, err := filepath.EvalSymlinks(t.TempDir())
	require.NoError(t, err)
	root := filepath.Join(dir, "root")
	require.NoError(t, os.MkdirAll(filepath.Join(root, "usr/bin"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "usr/bin/busybox"), nil, 0o755))
	// A merged-/usr root: /bin is a link to usr/bin.
	require.NoError(t, os.Symlink("usr/bin", filepath.Join(root, "bin")))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "outside"), nil, 0o755))
	require.NoError(t, os.Symlink(root, filepath.Join(dir, "rootlink")))
	// rootlink stands for the root itself, named through a link.
	require.NoError(t, os.Symlink(filepath.Join(dir, "outside"), filepath.Join(dir, "prog")))
	wd, err := os.Getwd()
	require.NoError(t, err)
	rel, err := filepath.Rel(wd, filepath.Join(root, "bin/busybox"))
	require.NoError(t, err)

	tests := []struct {
		name           string
		path, prog, rt string
		want           string
	}{
		{"inside the root", filepath.Join(root, "usr/bin/busybox"), "busybox", root, "/usr/bin/busybox"},
		{"through a symlinked directory", filepath.Join(root, "bin/busybox"), "bin/busybox", root, "/usr/bin/busybox"},
		{"relative host path", rel, "./busybox", root, "/usr/bin/busybox"},
		{"root named through a link", filepath.Join(root, "bin/busybox"), "busybox", filepath.Join(dir, "rootlink"), "/usr/bin/busybox"},
		{"outside the root", filepath.Join(dir, "outside"), "outside", root, "/outside"},
		{"a link to a file outside", filepath.Join(dir, "prog"), "prog", root, "/outside"},
		{"no root: the host path", filepath.Join(dir, "prog"), "prog", "", filepath.Join(dir, "outside")},
		{"no path: the name", "", "/no/such/prog", "", "/no/such/prog"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, exePath(tt.path, tt.prog, tt.rt))
		})
	}
}

// TestLoadSegmentMapsFilePages: the file part of a segment is mapped at
// load, clean and read-only as a read fault maps it (a checkpoint reads
// it from the file again); the zeroed tail of the last file page is the
// process's own; bss is left to fault in; a segment larger than
// preloadMax faults in too.
func TestLoadSegmentMapsFilePages(t *testing.T) {
	const ramPages = 8192
	mem := make([]byte, (ramPages+256)*guestmm.PageSize)
	frames := guestmm.NewFrames(mem, 256*guestmm.PageSize, uint64(len(mem)))
	as, err := guestmm.NewAddressSpace(mem, frames, addressLayout)
	require.NoError(t, err)
	data := make([]byte, 6*guestmm.PageSize)
	for i := range data {
		data[i] = byte(i*7 + 1)
	}
	prog := &programBacking{data: data, name: "prog"}
	const va = 0x400000
	seg := loader.Segment{Vaddr: va + 0x10, Offset: 0x10, Filesz: 5*guestmm.PageSize + 90,
		Memsz: 8 * guestmm.PageSize, Prot: uint32(guestmm.ProtRead | guestmm.ProtWrite)}
	n, err := loadSegment(as, prog, seg, 0)
	require.NoError(t, err)
	assert.Equal(t, uint64(6), n, "pages mapped at load")
	var present []uint64
	for pva, e := range as.PresentPages(va, va+9*guestmm.PageSize) {
		i := (pva - va) / guestmm.PageSize
		present = append(present, i)
		if i < 5 {
			assert.False(t, e.Has(guestmm.Copied), "page %d clean", i)
			assert.False(t, e.Has(guestmm.Writable), "page %d read-only until written", i)
		} else {
			assert.True(t, e.Has(guestmm.Copied), "page %d holds the zeroed tail", i)
		}
	}
	assert.Equal(t, []uint64{0, 1, 2, 3, 4, 5}, present, "file pages only, not bss")
	got := make([]byte, seg.Filesz)
	require.NoError(t, as.CopyIn(va+0x10, got))
	assert.Equal(t, data[0x10:0x10+seg.Filesz], got)
	tail := make([]byte, guestmm.PageSize-0x10-90)
	require.NoError(t, as.CopyIn(va+0x10+seg.Filesz, tail))
	assert.Equal(t, make([]byte, len(tail)), tail, "zeroed after the file part")

	big := &programBacking{data: make([]byte, preloadMax+guestmm.PageSize), name: "big"}
	seg = loader.Segment{Vaddr: 0x10000000, Filesz: uint64(len(big.data)), Memsz: uint64(len(big.data)), Prot: uint32(guestmm.ProtRead)}
	n, err = loadSegment(as, big, seg, 0)
	require.NoError(t, err)
	assert.Zero(t, n)
	for range as.PresentPages(0x10000000, 0x10000000+uint64(len(big.data))) {
		t.Fatal("a segment above preloadMax is mapped at load")
	}
	as.Destroy()
}
