package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emuckpt/emuckpt/ckpt"
	"github.com/emuckpt/emuckpt/internal/kvmtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestIncrementalChainIsExact checkpoints a deterministic run of random
// memory work (dirtywork: page writes, mmap/munmap, mremap, MADV_DONTNEED,
// fork and copy on write, tmpfs writes, brk) at several points, once as
// a chain of incremental images and once with --full, and requires each
// image of the chain, read through its parents, to hold exactly what the
// full image of the same point holds: the same state record and the same
// bytes in every page. Then each image of the chain is restored and must
// finish the run as an uninterrupted one does.
func TestIncrementalChainIsExact(t *testing.T) {
	kvmtest.Require(t)
	for _, seed := range []string{"1", "2", "3"} {
		t.Run("seed"+seed, func(t *testing.T) {
			dir := t.TempDir()
			args := []string{img("dirtywork"), "300", seed}
			want := emuckpt(t, append([]string{"run", "--deterministic"}, args...)...)
			require.Equal(t, 0, want.status, want.stderr)
			points := "--checkpoint-at=syscall:150,190,230,270,310"
			inc := filepath.Join(dir, "inc.img")
			full := filepath.Join(dir, "full-%d.img")
			r := emuckpt(t, append([]string{"run", "--deterministic", points, "--leave-running", "--checkpoint-to", inc}, args...)...)
			require.Equal(t, 0, r.status, r.stderr)
			require.Equal(t, want.stdout, r.stdout)
			r = emuckpt(t, append([]string{"run", "--deterministic", points, "--leave-running", "--full", "--checkpoint-to", full}, args...)...)
			require.Equal(t, 0, r.status, r.stderr)
			var deltaStored, fullStored uint64
			for n := range 5 {
				incPath := inc
				if n > 0 {
					incPath = fmt.Sprintf("%s.%d", inc, n)
				}
				fullPath := strings.ReplaceAll(full, "%d", fmt.Sprint(n))
				a, err := ckpt.Open(incPath)
				require.NoError(t, err)
				b, err := ckpt.Open(fullPath)
				require.NoError(t, err)
				require.NoError(t, a.Verify())
				sa, err := json.Marshal(a.State)
				require.NoError(t, err)
				sb, err := json.Marshal(b.State)
				require.NoError(t, err)
				require.JSONEq(t, string(sb), string(sa), "checkpoint %d: state", n)
				chain := a.Chain()
				require.Len(t, chain, n+1, "checkpoint %d: a delta of each image before", n)
				require.Len(t, b.Chain(), 1)
				pa := make([]byte, a.State.PageCount*4096)
				pb := make([]byte, b.State.PageCount*4096)
				require.NoError(t, a.ReadPages(pa, 0))
				require.NoError(t, b.ReadPages(pb, 0))
				for i := 0; i < len(pa); i += 4096 {
					require.True(t, bytes.Equal(pa[i:i+4096], pb[i:i+4096]), "checkpoint %d: page %d differs", n, i/4096)
				}
				// Reading in odd pieces crosses runs of the chain.
				piece := make([]byte, 3*4096)
				for i := uint64(0); i+3 <= a.State.PageCount; i += 5 {
					require.NoError(t, a.ReadPages(piece, i))
					require.Equal(t, pb[i*4096:(i+3)*4096], piece, "checkpoint %d: pages %d-%d", n, i, i+2)
				}
				if n > 0 {
					deltaStored += chain[0].StoredPages
					fullStored += b.Chain()[0].StoredPages
				}
				a.Close()
				b.Close()
				rr := emuckpt(t, "restore", incPath)
				assert.Equal(t, 0, rr.status, "restore %s: %s", incPath, rr.stderr)
				assert.Equal(t, want.stdout, rr.stdout, "restore %s", incPath)
			}
			require.Less(t, deltaStored*2, fullStored, "the deltas store less than half of what the full images do")
		})
	}
}

// TestIncrementalChainRefusesBrokenLinks restores chains with a link
// missing, replaced, corrupt or looping, and requires status 125 and a
// message naming the link.
func TestIncrementalChainRefusesBrokenLinks(t *testing.T) {
	kvmtest.Require(t)
	dir := t.TempDir()
	base := filepath.Join(dir, "c.img")
	r := emuckpt(t, "run", "--deterministic", "--checkpoint-at=syscall:150,200,250", "--checkpoint-to", base, img("dirtywork"), "300", "4")
	require.Equal(t, 0, r.status, r.stderr)
	for _, f := range []string{base, base + ".1", base + ".2"} {
		require.FileExists(t, f)
	}
	copyTo := func(t *testing.T) string {
		d := t.TempDir()
		for _, f := range []string{"c.img", "c.img.1", "c.img.2"} {
			b, err := os.ReadFile(filepath.Join(dir, f))
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(filepath.Join(d, f), b, 0o600))
		}
		return d
	}
	// The chain moved elsewhere still restores: parents are named
	// relative to the image.
	moved := copyTo(t)
	rr := emuckpt(t, "restore", filepath.Join(moved, "c.img.2"))
	require.Equal(t, 0, rr.status, rr.stderr)
	// inspect shows the chain, in text and JSON.
	ri := emuckpt(t, "inspect", "--json", filepath.Join(moved, "c.img.2"))
	require.Equal(t, 0, ri.status, ri.stderr)
	var in struct {
		Chain []struct {
			Image       string `json:"image"`
			PageCount   uint64 `json:"page_count"`
			StoredPages uint64 `json:"stored_pages"`
			FromParent  uint64 `json:"from_parent"`
		} `json:"chain"`
	}
	require.NoError(t, json.Unmarshal([]byte(ri.stdout), &in))
	require.Len(t, in.Chain, 3)
	for i, name := range []string{"c.img.2", "c.img.1", "c.img"} {
		require.Equal(t, filepath.Join(moved, name), in.Chain[i].Image)
		require.Equal(t, in.Chain[i].PageCount, in.Chain[i].StoredPages+in.Chain[i].FromParent)
	}
	require.Zero(t, in.Chain[2].FromParent, "the last is a full image")
	require.NotZero(t, in.Chain[0].FromParent)
	ri = emuckpt(t, "inspect", filepath.Join(moved, "c.img.2"))
	require.Contains(t, ri.stdout, "incremental: a chain of 3 images")
	ri = emuckpt(t, "inspect", "--json", filepath.Join(moved, "c.img"))
	require.NotContains(t, ri.stdout, `"chain"`, "a full image has no chain")

	for _, tc := range []struct {
		name   string
		break_ func(d string)
		want   string
	}{
		{"missing parent", func(d string) { os.Remove(filepath.Join(d, "c.img")) }, "c.img (depth 1) cannot be opened: no such file or directory"},
		{"replaced parent", func(d string) {
			b, err := os.ReadFile(filepath.Join(d, "c.img"))
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(filepath.Join(d, "c.img.1"), b, 0o600))
		}, "c.img.1 (depth 2) is not the image this one was written against"},
		{"corrupt parent", func(d string) {
			f, err := os.OpenFile(filepath.Join(d, "c.img"), os.O_RDWR, 0)
			require.NoError(t, err)
			f.WriteAt([]byte{0xff}, 4096+100)
			f.Close()
		}, "c.img: page data checksum mismatch"},
		{"cycle", func(d string) {
			os.Remove(filepath.Join(d, "c.img"))
			require.NoError(t, os.Symlink("c.img.2", filepath.Join(d, "c.img")))
		}, "the chain is a cycle"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := copyTo(t)
			tc.break_(d)
			rr := emuckpt(t, "restore", filepath.Join(d, "c.img.2"))
			require.Equal(t, exitFailure, rr.status, rr.stderr)
			require.Contains(t, rr.stderr, tc.want)
		})
	}
}

func TestParseTriggerPoints(t *testing.T) {
	for _, tc := range []struct {
		in       string
		syscalls []uint64
		devices  []uint64
		every    time.Duration
		points   int
		repeated bool
		err      string
	}{
		{in: "syscall:5", syscalls: []uint64{5}, points: 1},
		{in: "syscall:100,200,300", syscalls: []uint64{100, 200, 300}, points: 3, repeated: true},
		{in: "device:7,9", devices: []uint64{7, 9}, points: 2, repeated: true},
		{in: "every:50ms", every: 50 * time.Millisecond, repeated: true},
		{in: "time:1s", points: 1},
		{in: "syscall:200,100", err: "the points must increase (100 after 200)"},
		{in: "syscall:100,100", err: "the points must increase"},
		{in: "syscall:1,,2", err: "each N must be a positive integer"},
		{in: "every:0s", err: "DUR must be a positive duration"},
		{in: "often:1", err: "unknown trigger"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			tr, err := parseTrigger(tc.in)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.syscalls, tr.syscalls)
			assert.Equal(t, tc.devices, tr.devices)
			assert.Equal(t, tc.every, tr.every)
			assert.Equal(t, tc.points, tr.points())
			assert.Equal(t, tc.repeated, tr.repeated())
		})
	}
}

func TestImageSeries(t *testing.T) {
	once, _ := parseTrigger("syscall:10")
	many, _ := parseTrigger("syscall:10,20")
	for _, tc := range []struct {
		name        string
		to          string
		tr          trigger
		full        bool
		paths       []string
		incremental bool
	}{
		{"one point", "a.img", once, false, []string{"a.img", "a.img", "a.img"}, false},
		{"several points", "a.img", many, false, []string{"a.img", "a.img.1", "a.img.2"}, true},
		{"several points, full", "a.img", many, true, []string{"a.img", "a.img.1", "a.img.2"}, false},
		{"pattern", "ck-%d.img", once, false, []string{"ck-0.img", "ck-1.img", "ck-2.img"}, true},
		{"pattern, no trigger", "d/%d/x%d", trigger{}, false, []string{"d/0/x0", "d/1/x1", "d/2/x2"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newImageSeries(tc.to, tc.tr, tc.full)
			for n, want := range tc.paths {
				assert.Equal(t, want, s.path(n), "checkpoint %d", n)
			}
			assert.Equal(t, tc.incremental, s.incremental())
		})
	}
}

// TestRestoreIncremental restores an image with --incremental: the
// restored run's checkpoint is a delta against the image it came from,
// and holds what a full checkpoint of the same restored run holds.
func TestRestoreIncremental(t *testing.T) {
	kvmtest.Require(t)
	dir := t.TempDir()
	first := filepath.Join(dir, "a-%d.img")
	r := emuckpt(t, "run", "--deterministic", "--checkpoint-to", first, img("dirtypct"), "8", "50")
	require.Equal(t, 0, r.status, r.stderr)
	base := filepath.Join(dir, "a-0.img")
	// The restored run rewrites 5 % of its pages and checkpoints itself.
	inc := filepath.Join(dir, "b.img")
	ri := emuckpt(t, "restore", "--incremental", "--leave-running", "--checkpoint-to", inc, base)
	require.Equal(t, 0, ri.status, ri.stderr)
	require.Equal(t, "dirtypct: 102 pages rewritten: ok\n", ri.stdout)
	full := filepath.Join(dir, "c.img")
	rf := emuckpt(t, "restore", "--leave-running", "--checkpoint-to", full, base)
	require.Equal(t, 0, rf.status, rf.stderr)
	a, err := ckpt.Open(inc)
	require.NoError(t, err)
	defer a.Close()
	b, err := ckpt.Open(full)
	require.NoError(t, err)
	defer b.Close()
	chain := a.Chain()
	require.Len(t, chain, 2, "a delta against the restored image")
	require.Equal(t, base, chain[1].Path)
	require.Less(t, chain[0].StoredPages, uint64(120), "about the 102 rewritten pages")
	sa, _ := json.Marshal(a.State)
	sb, _ := json.Marshal(b.State)
	require.JSONEq(t, string(sb), string(sa))
	pa := make([]byte, a.State.PageCount*4096)
	pb := make([]byte, b.State.PageCount*4096)
	require.NoError(t, a.ReadPages(pa, 0))
	require.NoError(t, b.ReadPages(pb, 0))
	require.True(t, bytes.Equal(pa, pb), "the pages read through the chain are the full image's")
	rr := emuckpt(t, "restore", inc)
	require.Equal(t, 0, rr.status, rr.stderr)
	require.Equal(t, "dirtypct: 102 pages rewritten: ok\n", rr.stdout)

	r = emuckpt(t, "restore", "--incremental", base)
	require.Equal(t, exitFailure, r.status)
	require.Contains(t, r.stderr, "--incremental needs --checkpoint-to FILE")
}

// TestCheckpointAtEvery checkpoints every 100 ms a program that sleeps for
// 600 ms: a series of images, the later ones deltas, each restorable.
func TestCheckpointAtEvery(t *testing.T) {
	kvmtest.Require(t)
	dir := t.TempDir()
	to := filepath.Join(dir, "e.img")
	r := emuckpt(t, "run", "--checkpoint-at=every:100ms", "--checkpoint-to", to, img("sleeper"), "600")
	require.Equal(t, 0, r.status, r.stderr)
	require.Equal(t, "start\nend\n", r.stdout, "every:DUR never stops the run")
	n := strings.Count(r.stderr, "checkpoint written to")
	require.GreaterOrEqual(t, n, 2, r.stderr)
	last := fmt.Sprintf("%s.%d", to, n-1)
	require.FileExists(t, last)
	a, err := ckpt.Open(last)
	require.NoError(t, err)
	require.Len(t, a.Chain(), n)
	a.Close()
	rr := emuckpt(t, "restore", last)
	require.Equal(t, 0, rr.status, rr.stderr)
	require.Equal(t, "end\n", rr.stdout)
}

// TestChainDepthLimit takes more checkpoints than a chain may hold: the
// image that would be the 65th of its chain is written full, and the
// ones after it are deltas against it again.
func TestChainDepthLimit(t *testing.T) {
	kvmtest.Require(t)
	dir := t.TempDir()
	var points []string
	for n := 100; n < 100+ckpt.MaxChainDepth+3; n++ {
		points = append(points, fmt.Sprint(n))
	}
	to := filepath.Join(dir, "d-%d.img")
	r := emuckpt(t, "run", "--deterministic", "--checkpoint-at=syscall:"+strings.Join(points, ","), "--checkpoint-to", to, img("dirtywork"), "300", "6")
	require.Equal(t, 0, r.status, r.stderr)
	chainLen := func(n int) int {
		a, err := ckpt.Open(strings.ReplaceAll(to, "%d", fmt.Sprint(n)))
		require.NoError(t, err)
		defer a.Close()
		return len(a.Chain())
	}
	require.Equal(t, ckpt.MaxChainDepth+1, chainLen(ckpt.MaxChainDepth), "the deepest chain")
	require.Equal(t, 1, chainLen(ckpt.MaxChainDepth+1), "then a full image")
	require.Equal(t, 2, chainLen(ckpt.MaxChainDepth+2), "and deltas against it")
	rr := emuckpt(t, "restore", strings.ReplaceAll(to, "%d", fmt.Sprint(ckpt.MaxChainDepth)))
	require.Equal(t, 0, rr.status, rr.stderr)
}

// TestIncrementalChainSMP: on two vCPUs (forked children run on the
// other while the parent waits), on the host clock, every image of a
// chain restores to a run that ends as an uninterrupted one does.
func TestIncrementalChainSMP(t *testing.T) {
	kvmtest.Require(t)
	dir := t.TempDir()
	args := []string{img("dirtywork"), "300", "7"}
	want := emuckpt(t, append([]string{"run", "--cpus", "2"}, args...)...)
	require.Equal(t, 0, want.status, want.stderr)
	to := filepath.Join(dir, "s.img")
	r := emuckpt(t, append([]string{"run", "--cpus", "2", "--checkpoint-at=syscall:120,160,200,240,280", "--leave-running", "--checkpoint-to", to}, args...)...)
	require.Equal(t, 0, r.status, r.stderr)
	require.Equal(t, want.stdout, r.stdout)
	for n := range 5 {
		path := to
		if n > 0 {
			path = fmt.Sprintf("%s.%d", to, n)
		}
		rr := emuckpt(t, "restore", path)
		require.Equal(t, 0, rr.status, "%s: %s", path, rr.stderr)
		require.Equal(t, want.stdout, rr.stdout, path)
	}
}
