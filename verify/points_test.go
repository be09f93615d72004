package verify

import (
	"bytes"
	"encoding/xml"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func keys(ps []Point) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.key())
	}
	return out
}

func TestSelect(t *testing.T) {
	ev := Events{Syscalls: 6, Devices: 3, Calls: 1, LastSyscallExits: true}
	for _, c := range []struct {
		name  string
		at    At
		every uint64
		n     int
		want  string
	}{
		{"all by default", AtAll, 0, 0, "syscall:1 syscall:2 syscall:3 syscall:4 syscall:5 device:1 device:2 device:3 call:1"},
		{"syscalls, the exit left out", AtSyscall, 0, 0, "syscall:1 syscall:2 syscall:3 syscall:4 syscall:5 call:1"},
		{"devices", AtDevice, 0, 0, "device:1 device:2 device:3 call:1"},
		{"every 3rd", AtAll, 3, 0, "syscall:3 device:1 call:1"},
		{"every 1st is all", AtDevice, 1, 0, "device:1 device:2 device:3 call:1"},
		{"3 spread evenly, ends included", AtAll, 0, 3, "syscall:1 syscall:5 device:3 call:1"},
		{"1 point is the last", AtSyscall, 0, 1, "syscall:5 call:1"},
		{"more points than events", AtSyscall, 0, 50, "syscall:1 syscall:2 syscall:3 syscall:4 syscall:5 call:1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			assert.Equal(t, c.want, strings.Join(keys(Select(ev, c.at, c.every, c.n)), " "))
		})
	}
	// The default caps at DefaultPoints, spread evenly.
	big := Select(Events{Syscalls: 1001, LastSyscallExits: true}, AtSyscall, 0, 0)
	require.Len(t, big, DefaultPoints)
	assert.Equal(t, uint64(1), big[0].Index)
	assert.Equal(t, uint64(1000), big[len(big)-1].Index)
	for i := 1; i < len(big); i++ {
		gap := big[i].Index - big[i-1].Index
		assert.True(t, gap == 5 || gap == 6, "gap %d at %d", gap, i)
	}
}

// TestShardsCoverEveryPointOnce: the shards of any size split any
// selection into disjoint parts that together are the selection.
func TestShardsCoverEveryPointOnce(t *testing.T) {
	points := Select(Events{Syscalls: 97, Devices: 41, Calls: 2, LastSyscallExits: true}, AtAll, 0, 0)
	for _, n := range []int{1, 2, 3, 7, 16, 200, 500} {
		seen := map[string]int{}
		for i := 0; i < n; i++ {
			s, err := ParseShard(strings.Join([]string{itoa(i), itoa(n)}, "/"))
			require.NoError(t, err)
			for _, p := range s.Of(points) {
				seen[p.key()]++
			}
		}
		require.Len(t, seen, len(points), "N=%d", n)
		for k, c := range seen {
			assert.Equal(t, 1, c, "N=%d: %s", n, k)
		}
	}
	for _, bad := range []string{"", "1", "2/2", "-1/3", "a/b", "0/0", "1/x"} {
		_, err := ParseShard(bad)
		assert.Error(t, err, bad)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestParsePerturbation(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"none", "none"},
		{"hpet-jump=10s", "hpet-jump=10s"},
		{"bsr-clear,clock-jump=1h", "clock-jump=1h0m0s,bsr-clear"},
		{"hpet-jump=1ms, clock-jump=2s, bsr-clear", "hpet-jump=1ms,clock-jump=2s,bsr-clear"},
	} {
		p, err := ParsePerturbation(c.in)
		require.NoError(t, err, c.in)
		assert.Equal(t, c.want, p.String(), c.in)
		back, err := ParsePerturbation(p.String())
		require.NoError(t, err)
		assert.Equal(t, p, back, "String reads back")
	}
	p, _ := ParsePerturbation("hpet-jump=1500ms")
	assert.Equal(t, 1500*time.Millisecond, p.HPETJump)
	for _, bad := range []string{"", "hpet-jump", "hpet-jump=0", "clock-jump=-1s", "clock-jump=soon", "bsr-clear=1", "reboot"} {
		_, err := ParsePerturbation(bad)
		assert.Error(t, err, bad)
	}
}

func TestFirstDiff(t *testing.T) {
	assert.Empty(t, firstDiff("stdout", []byte("a\nb\n"), []byte("a\nb\n")))
	want := []byte("l1\nl2\nl3\nl4\nl5\nl6\nl7\nl8\n")
	got := []byte("l1\nl2\nl3\nl4\nX5\nl6\nl7\nl8\n")
	d := firstDiff("stdout", want, got)
	assert.Contains(t, d, "stdout: first difference at byte 12 (line 5): \"l\" in the reference, \"X\" after the restore")
	assert.Contains(t, d, ">    5 | l5")
	assert.Contains(t, d, ">    5 | X5")
	assert.Contains(t, d, "     2 | l2", "three lines of context before")
	assert.Contains(t, d, "     8 | l8", "three lines of context after")
	assert.NotContains(t, d, "     1 | l1")

	d = firstDiff("stderr", []byte("a\n"), []byte("a\nmore\n"))
	assert.Contains(t, d, "the reference ends there, the restored run printed 5 bytes more")
	assert.Contains(t, d, ">    2 | more")
	d = firstDiff("stdout", []byte("a\nb\n"), []byte("a\n"))
	assert.Contains(t, d, "the restored run ends there, the reference printed 2 bytes more")
	assert.Contains(t, firstDiff("stdout", []byte("\x01\n"), []byte("\x02\n")), `"\x02"`, "control bytes are quoted")
}

func sampleRecords() []Record {
	mk := func(kind string, idx uint64, policy, outcome string) Record {
		r := Record{Program: "prog", Args: []string{"prog", "a"}, Kind: kind, Index: idx, Policy: policy,
			Perturbation: "none", Outcome: outcome, Seconds: 0.01, Total: 6}
		if outcome == Fail {
			r.Message, r.Diff = "stdout differs", "stdout: first difference at byte 3 <&>"
			r.Restore = "emuckpt restore --device-state=fresh /tmp/x.img"
		}
		return r
	}
	return []Record{
		mk(KindSyscall, 1, Fresh, Pass), mk(KindSyscall, 1, Preserve, Pass),
		mk(KindDevice, 2, Fresh, Fail), mk(KindDevice, 2, Preserve, Pass),
		mk(KindCall, 1, Fresh, Error), mk(KindCall, 1, Preserve, Pass),
	}
}

// TestJUnitParses: the JUnit report is XML that encoding/xml reads back,
// with one testcase per point and policy and the failures' diffs.
func TestJUnitParses(t *testing.T) {
	var b bytes.Buffer
	require.NoError(t, JUnit(&b, sampleRecords()))
	var doc struct {
		XMLName  xml.Name `xml:"testsuites"`
		Tests    int      `xml:"tests,attr"`
		Failures int      `xml:"failures,attr"`
		Errors   int      `xml:"errors,attr"`
		Suites   []struct {
			Name  string `xml:"name,attr"`
			Tests int    `xml:"tests,attr"`
			Cases []struct {
				Name      string `xml:"name,attr"`
				Classname string `xml:"classname,attr"`
				Failure   *struct {
					Message string `xml:"message,attr"`
					Text    string `xml:",chardata"`
				} `xml:"failure"`
				Error *struct {
					Message string `xml:"message,attr"`
				} `xml:"error"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	require.NoError(t, xml.Unmarshal(b.Bytes(), &doc), b.String())
	assert.Equal(t, 6, doc.Tests)
	assert.Equal(t, 1, doc.Failures)
	assert.Equal(t, 1, doc.Errors)
	require.Len(t, doc.Suites, 1)
	assert.Equal(t, "prog a", doc.Suites[0].Name)
	require.Len(t, doc.Suites[0].Cases, 6)
	c := doc.Suites[0].Cases[2]
	assert.Equal(t, "device:2 fresh", c.Name)
	assert.Equal(t, "emuckpt.verify.prog", c.Classname)
	require.NotNil(t, c.Failure)
	assert.Equal(t, "stdout differs", c.Failure.Message)
	assert.Contains(t, c.Failure.Text, "first difference at byte 3 <&>")
	assert.Contains(t, c.Failure.Text, "reproduce: emuckpt restore --device-state=fresh /tmp/x.img")
	assert.NotNil(t, doc.Suites[0].Cases[4].Error)
	assert.Nil(t, doc.Suites[0].Cases[0].Failure)
}

func TestMerge(t *testing.T) {
	recs := sampleRecords()
	merged, err := Merge(recs[:2], recs[2:5], recs[5:])
	require.NoError(t, err)
	assert.Len(t, merged, 6)

	_, err = Merge(recs[:2], recs[5:])
	require.Error(t, err)
	assert.Contains(t, err.Error(), "3 of 6 results (a shard is missing)")

	_, err = Merge(recs, recs[:1])
	require.Error(t, err)
	assert.Contains(t, err.Error(), "syscall:1 fresh: given twice")

	// Through the JSON files, as verify --merge reads them.
	dir := t.TempDir()
	require.NoError(t, WriteJSON(dir+"/a.json", recs[:3]))
	require.NoError(t, WriteJSON(dir+"/b.json", recs[3:]))
	a, err := ReadJSON(dir + "/a.json")
	require.NoError(t, err)
	b, err := ReadJSON(dir + "/b.json")
	require.NoError(t, err)
	merged, err = Merge(b, a)
	require.NoError(t, err)
	SortRecords(merged)
	assert.Equal(t, recs, merged)
}

func TestSummarize(t *testing.T) {
	var recs []Record
	for i := 1; i <= DetailedReports+2; i++ {
		recs = append(recs, Record{Program: "p", Kind: KindSyscall, Index: uint64(i), Policy: Fresh, Perturbation: "none",
			Outcome: Fail, Message: "stdout differs", Diff: "DIFF" + strconv.Itoa(i)})
	}
	recs = append(recs, Record{Program: "p", Kind: KindDevice, Index: 1, Policy: Fresh, Perturbation: "none", Outcome: Pass})
	var b bytes.Buffer
	pass, fail, errs := Summarize(&b, recs, 2*time.Second, false)
	assert.Equal(t, []int{1, DetailedReports + 2, 0}, []int{pass, fail, errs})
	out := b.String()
	assert.Contains(t, out, "FAIL p syscall:1 fresh: stdout differs\n    DIFF1\n")
	assert.Contains(t, out, "DIFF10\n")
	assert.NotContains(t, out, "DIFF11")
	assert.Contains(t, out, "FAIL p syscall:12 fresh: stdout differs\n")
	assert.Contains(t, out, "(the last 2 in one line each")
	assert.NotContains(t, out, "pass p device:1")
	assert.Contains(t, out, "verify: 13 points, 13 restores: 1 passed, 12 diverged, 0 errors in 2s (6.5 points/s)")
	b.Reset()
	Summarize(&b, recs, 0, true)
	assert.Contains(t, b.String(), "pass p device:1 fresh (0.000s)")
}
