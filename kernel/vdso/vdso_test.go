package vdso

import (
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestBlobMatchesSource rebuilds vdso.so from its source with the
// Makefile and requires the committed blob to be the same bytes.
func TestBlobMatchesSource(t *testing.T) {
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("gcc not installed")
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make not installed")
	}
	dir := t.TempDir()
	for _, f := range []string{"src/vdso.c", "src/vdso.lds", "Makefile"} {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, f)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, f), b, 0o644))
	}
	out, err := exec.Command("make", "-s", "-C", dir, "vdso.so").CombinedOutput()
	require.NoError(t, err, "%s", out)
	built, err := os.ReadFile(filepath.Join(dir, "vdso.so"))
	require.NoError(t, err)
	assert.True(t, bytes.Equal(built, Image), "vdso.so differs from what src/vdso.c and src/vdso.lds build (%d bytes built, %d committed): run `make -C kernel/vdso` and commit vdso.so", len(built), len(Image))
}

// TestImageShape checks what the C libraries and the Go runtime look for
// when they parse a vDSO: one PT_LOAD at 0 holding the whole image,
// unwind tables, a
// dynamic section with DT_HASH, DT_GNU_HASH, DT_VERSYM and DT_VERDEF, and
// Linux's symbols in version LINUX_2.6.
func TestImageShape(t *testing.T) {
	f, err := elf.NewFile(bytes.NewReader(Image))
	require.NoError(t, err)
	assert.Equal(t, elf.ET_DYN, f.Type)
	assert.Equal(t, elf.EM_X86_64, f.Machine)

	var loads []*elf.Prog
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD {
			loads = append(loads, p)
		}
	}
	require.Len(t, loads, 1)
	assert.Equal(t, uint64(0), loads[0].Vaddr)
	assert.Equal(t, uint64(0), loads[0].Off)
	assert.Equal(t, loads[0].Filesz, loads[0].Memsz, "no bss")
	assert.LessOrEqual(t, loads[0].Filesz, uint64(len(Image)), "the kernel maps the whole file")
	assert.Equal(t, elf.PF_R|elf.PF_X, loads[0].Flags)

	var ehFrame bool
	for _, p := range f.Progs {
		ehFrame = ehFrame || p.Type == elf.PT_GNU_EH_FRAME && p.Filesz > 0
	}
	assert.True(t, ehFrame, "unwind tables for debuggers and unwinders (PT_GNU_EH_FRAME)")

	for _, tag := range []elf.DynTag{elf.DT_HASH, elf.DT_GNU_HASH, elf.DT_VERSYM, elf.DT_VERDEF, elf.DT_SYMTAB, elf.DT_STRTAB} {
		v, err := f.DynValue(tag)
		require.NoError(t, err)
		assert.Len(t, v, 1, "%v", tag)
	}
	rels, err := f.DynValue(elf.DT_RELA)
	require.NoError(t, err)
	assert.Empty(t, rels, "the vDSO is not relocated")

	syms, err := f.DynamicSymbols()
	require.NoError(t, err)
	got := map[string]elf.Symbol{}
	for _, s := range syms {
		got[s.Name] = s
	}
	for _, name := range []string{"clock_gettime", "gettimeofday", "time", "getcpu", "clock_getres"} {
		strong, ok := got["__vdso_"+name]
		require.True(t, ok, "__vdso_%s", name)
		assert.Equal(t, elf.STB_GLOBAL, elf.ST_BIND(strong.Info), name)
		assert.Equal(t, elf.STT_FUNC, elf.ST_TYPE(strong.Info), name)
		assert.Equal(t, "LINUX_2.6", strong.Version, name)
		weak, ok := got[name]
		require.True(t, ok, name)
		assert.Equal(t, elf.STB_WEAK, elf.ST_BIND(weak.Info), name)
		assert.Equal(t, strong.Value, weak.Value, "%s is an alias of __vdso_%s", name, name)
		assert.Equal(t, "LINUX_2.6", weak.Version, name)
	}
}
