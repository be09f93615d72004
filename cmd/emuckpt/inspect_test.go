package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"

	"github.com/emuckpt/emuckpt/ckpt"
	"github.com/emuckpt/emuckpt/kernel"
	"github.com/emuckpt/emuckpt/kernel/vfs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const testSHA = "16fde19863673d58730fe3cc392613c3f281c166a82ff140ee95f704072df1d7"

// syntheticImage writes a consistent image (no KVM needed) with n
// anonymous VMAs after a few VMAs of the other types, some of whose names
// a terminal would not like, and opens it.
func syntheticImage(tb testing.TB, n int) (string, *ckpt.Image) {
	tb.Helper()
	st := &kernel.State{
		Program: kernel.ProgramRef{Name: "prog", Path: "testimages/bin/prog", SHA256: testSHA, Size: 1},
		MemSize: 64 << 20,
		NextPID: 2,
		Processes: []kernel.ProcessState{{PID: 2, PPID: 1, PGID: 2, SID: 1, BrkStart: 0x409000, Brk: 0x409000, Tasks: []kernel.TaskState{{TID: 2}}, VMAs: []kernel.VMAState{
			{Type: kernel.VMAFile, Start: 0x400000, End: 0x401000, Prot: 5, MaxProt: 7, Kind: "file", Name: "prog", Objref: 1,
				Pages: []kernel.PageRun{{VA: 0x400000, Count: 1, Index: 0, Copied: true}}},
			{Type: kernel.VMAFile, Start: 0x500000, End: 0x502000, Prot: 1, MaxProt: 7, Kind: "file", Name: "/dätä.txt", Objref: 2, Offset: 0x1000},
			{Type: kernel.VMAFileShared, Start: 0x600000, End: 0x601000, Prot: 1, MaxProt: 5, Shared: true, Kind: "file", Name: "/x\x1b[31m\ty", Objref: 3},
			{Type: kernel.VMAScratch, Start: 0x700000, End: 0x710000, Prot: 3, MaxProt: 7, Anonymous: true, DontDump: true, Kind: "anon"},
			{Type: kernel.VMADevice, Start: 0x800000, End: 0x801000, Prot: 1, MaxProt: 1, Shared: true, Kind: "device", Name: "/dev/hpet", Device: "hpet"},
		}}},
		Objects: []kernel.Object{
			{Ref: 1, Kind: "program", Path: "prog"},
			{Ref: 2, Kind: "file", Path: "/dätä.txt", Identity: &vfs.FileIdentity{Size: 8192, SHA256: testSHA}},
			{Ref: 3, Kind: "file", Path: "/x\x1b[31m\ty", Identity: &vfs.FileIdentity{Size: 1, SHA256: testSHA}},
		},
		PageCount: 2,
	}
	for i := range n {
		start := uint64(0x10000000 + i*0x2000)
		v := kernel.VMAState{Type: kernel.VMAAnon, Start: start, End: start + 0x2000, Prot: 3, MaxProt: 7, Anonymous: true, Kind: "anon", ZeroPages: 1}
		if i%3 == 0 {
			v.Pages = []kernel.PageRun{{VA: start, Count: 1, Index: 1}} // one frame, mapped by many
		}
		st.Processes[0].VMAs = append(st.Processes[0].VMAs, v)
	}
	mem := make([]byte, 3*4096)
	mem[4096], mem[8192] = 1, 2
	path := filepath.Join(tb.TempDir(), "synthetic.img")
	require.NoError(tb, ckpt.Write(path, &kernel.Snapshot{State: st, Mem: mem, Pages: []uint64{4096, 8192}}))
	img, err := ckpt.Open(path)
	require.NoError(tb, err)
	tb.Cleanup(func() { img.Close() })
	return path, img
}

// referenceInspection fills in every task's VMAs, as inspect did before
// it streamed them.
func referenceInspection(path string, img *ckpt.Image) inspection {
	in := inspect(path, img)
	vmasOf := vmasOfTask(img.State)
	for i := range in.Tasks {
		vmas := vmasOf(i)
		for j := range vmas {
			in.Tasks[i].VMAs = append(in.Tasks[i].VMAs, inspectVMAOf(&vmas[j]))
		}
	}
	return in
}

// TestInspectStreamsTheSameOutput: the streamed JSON is byte for byte
// what json.Encoder with SetIndent("", "  ") made of the whole inspection,
// and the text table what text/tabwriter made of it.
func TestInspectStreamsTheSameOutput(t *testing.T) {
	for _, n := range []int{0, 1, 50} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			path, img := syntheticImage(t, n)
			in := inspect(path, img)
			ref := referenceInspection(path, img)

			var want bytes.Buffer
			enc := json.NewEncoder(&want)
			enc.SetIndent("", "  ")
			require.NoError(t, enc.Encode(ref))
			var got bytes.Buffer
			w := bufio.NewWriter(&got)
			require.NoError(t, writeInspectJSON(w, in, vmasOfTask(img.State)))
			require.NoError(t, w.Flush())
			require.Equal(t, want.String(), got.String())
			var back inspection
			require.NoError(t, json.Unmarshal(got.Bytes(), &back))
			require.Len(t, back.Tasks[0].VMAs, n+5)

			got.Reset()
			writeInspectText(&got, in, vmasOfTask(img.State))
			require.Equal(t, referenceText(ref), got.String())
		})
	}
}

// referenceText is the table as text/tabwriter laid it out.
func referenceText(in inspection) string {
	var b strings.Builder
	fmt.Fprintf(&b, "image %s: format version %d, %d bytes\n", in.Image, in.Version, in.Size)
	fmt.Fprintf(&b, "program %s (sha256 %s)\nclock %s, %d system calls\n", in.Program.Path, in.Program.SHA256, in.Clock, in.Syscalls)
	for _, o := range in.Objects {
		fmt.Fprintf(&b, "object %d: %s %s\n", o.Ref, o.Kind, printable(o.Path))
	}
	for _, p := range in.Processes {
		fmt.Fprintf(&b, "process %d (ppid %d, pgid %d, sid %d): %s, %d threads\n", p.PID, p.PPID, p.PGID, p.SID, p.State, p.Threads)
	}
	for _, t := range in.Tasks {
		fmt.Fprintf(&b, "\ntask pid %d tid %d: rip %#x rsp %#x\n", t.PID, t.TID, t.RIP, t.RSP)
		tw := tabwriter.NewWriter(&b, 2, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "RANGE\tPERMS\tOFFSET\tTYPE\tSTORED\tZERO PAGES\tBACKING")
		for _, v := range t.VMAs {
			typ := v.Type
			if v.Device != "" {
				typ += "(" + v.Device + ")"
			}
			fmt.Fprintf(tw, "%08x-%08x\t%s\t%08x\t%s\t%d\t%d\t%s\n", v.Start, v.End, v.Perms, v.Offset, typ, v.StoredBytes, v.ZeroPages, printable(v.Backing))
		}
		tw.Flush()
	}
	fmt.Fprintf(&b, "\ntotal: %d VMAs, %d pages stored (%d bytes), %d zero pages not stored\n",
		in.Totals.VMAs, in.Totals.StoredPages, in.Totals.StoredBytes, in.Totals.ZeroPages)
	return b.String()
}

// TestInspectQuotesHostileNames: names from the image reach the terminal
// quoted, never as raw control characters.
func TestInspectQuotesHostileNames(t *testing.T) {
	path, img := syntheticImage(t, 0)
	var out bytes.Buffer
	writeInspectText(&out, inspect(path, img), vmasOfTask(img.State))
	assert.NotContains(t, out.String(), "\x1b")
	assert.Contains(t, out.String(), `"/x\x1b[31m\ty"`)
	assert.Contains(t, out.String(), "/dätä.txt", "printable Unicode stays as it is")
}

// BenchmarkInspect runs inspect (text and JSON, output to /dev/null) on
// images of 10,000 to 1,000,000 VMAs and reports the time per VMA, which
// stays flat: inspect is linear. (Before it streamed, a million VMAs took
// 14 s to a file and needed 2 GB of memory.)
func BenchmarkInspect(b *testing.B) {
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	require.NoError(b, err)
	defer null.Close()
	for _, n := range []int{10000, 100000, 1000000} {
		path, _ := syntheticImage(b, n)
		for _, format := range []string{"text", "json"} {
			b.Run(fmt.Sprintf("%s/%d", format, n), func(b *testing.B) {
				args := []string{path}
				if format == "json" {
					args = []string{"--json", path}
				}
				for b.Loop() {
					if st := cmdInspect(args, null, os.Stderr); st != 0 {
						b.Fatalf("status %d", st)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/VMA")
			})
		}
	}
}
