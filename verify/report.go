package verify

import (
	"bufio"
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// diffContext is how many lines around the first difference a report
// shows on each side.
const diffContext = 3

// firstDiff describes the first difference between want and got, with
// diffContext lines of context on both sides, or "" if they are equal.
func firstDiff(stream string, want, got []byte) string {
	if bytes.Equal(want, got) {
		return ""
	}
	i := 0
	for i < len(want) && i < len(got) && want[i] == got[i] {
		i++
	}
	line := bytes.Count(want[:i], []byte("\n")) // from 0
	var b strings.Builder
	fmt.Fprintf(&b, "%s: first difference at byte %d (line %d):", stream, i, line+1)
	switch {
	case i == len(want):
		fmt.Fprintf(&b, " the reference ends there, the restored run printed %d bytes more\n", len(got)-i)
	case i == len(got):
		fmt.Fprintf(&b, " the restored run ends there, the reference printed %d bytes more\n", len(want)-i)
	default:
		fmt.Fprintf(&b, " %q in the reference, %q after the restore\n", want[i:i+1], got[i:i+1])
	}
	show := func(title string, data []byte) {
		lines := strings.SplitAfter(string(data), "\n")
		if n := len(lines); n > 0 && lines[n-1] == "" {
			lines = lines[:n-1]
		}
		fmt.Fprintf(&b, "  %s:\n", title)
		lo, hi := max(0, line-diffContext), min(len(lines), line+diffContext+1)
		if lo >= hi {
			fmt.Fprintf(&b, "    (nothing from line %d on)\n", line+1)
		}
		for j := lo; j < hi; j++ {
			mark := " "
			if j == line {
				mark = ">"
			}
			fmt.Fprintf(&b, "  %s %4d | %s\n", mark, j+1, printable(strings.TrimSuffix(lines[j], "\n")))
		}
	}
	show("reference", want)
	show("checkpoint + restore", got)
	return strings.TrimSuffix(b.String(), "\n")
}

// printable is l, or l quoted if it holds anything but printable text.
func printable(l string) string {
	for _, c := range l {
		if c < ' ' && c != '\t' || c == 0x7f || c == utf8.RuneError {
			return strconv.Quote(l)
		}
	}
	return l
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}

// Record is one result as --json writes it, one JSON object per line.
// Total is the number of results of the whole verify (all shards), so
// Merge can tell a missing shard.
type Record struct {
	Program      string   `json:"program"`
	Args         []string `json:"args"`
	Kind         string   `json:"kind"`
	Index        uint64   `json:"index"`
	Name         string   `json:"name,omitempty"`
	Policy       string   `json:"policy"`
	Perturbation string   `json:"perturbation"`
	Outcome      string   `json:"outcome"`
	Message      string   `json:"message,omitempty"`
	Diff         string   `json:"diff,omitempty"`
	Status       int      `json:"status"`
	Seconds      float64  `json:"seconds"`
	Image        string   `json:"image,omitempty"`
	Restore      string   `json:"restore,omitempty"`
	Shard        string   `json:"shard,omitempty"`
	Total        int      `json:"total"`
}

// Point is the record's point.
func (r *Record) Point() Point { return Point{Kind: r.Kind, Index: r.Index, Name: r.Name} }

// TestName is the name of the record's JUnit testcase:
// "syscall:12 (write) fresh" plus the perturbation if any.
func (r *Record) TestName() string {
	s := r.Point().String() + " " + r.Policy
	if r.Perturbation != "" && r.Perturbation != "none" {
		s += " " + r.Perturbation
	}
	return s
}

func (r *Record) key() string {
	return r.Program + "\x00" + strings.Join(r.Args, "\x00") + "\x00" + r.Point().key() + "\x00" + r.Policy + "\x00" + r.Perturbation
}

// Records turns the report's results into records. restore is the
// command line that restores an image in this run's world ("emuckpt
// restore --root DIR"): it prefixes each kept image's command.
func (r *Report) Records(restore string) []Record {
	var out []Record
	for _, res := range r.Results {
		rec := Record{
			Program: r.Program, Args: r.Args, Kind: res.Point.Kind, Index: res.Point.Index, Name: res.Point.Name,
			Policy: res.Policy, Perturbation: res.Perturbation.String(), Outcome: res.Outcome,
			Message: res.Message, Diff: res.Diff, Status: res.Status, Seconds: res.Duration.Seconds(),
			Image: res.Image, Shard: r.Shard.String(), Total: r.Total(),
		}
		if res.Image != "" {
			rec.Restore = strings.Join(append(append([]string{restore}, res.Command...), shellQuote(res.Image)), " ")
		}
		out = append(out, rec)
	}
	return out
}

// shellQuote quotes s for a POSIX shell if it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(c rune) bool {
		return !(c == '/' || c == '.' || c == '-' || c == '_' || c == '=' || c == ',' || c == ':' || c == '+' ||
			c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z')
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// ShellQuote quotes each argument for a POSIX shell where needed and
// joins them.
func ShellQuote(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = shellQuote(a)
	}
	return strings.Join(q, " ")
}

// WriteJSON writes records to path, one JSON object per line.
func WriteJSON(path string, recs []Record) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	for i := range recs {
		if err := enc.Encode(&recs[i]); err != nil {
			return err
		}
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// ReadJSON reads a file WriteJSON wrote.
func ReadJSON(path string) ([]Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var recs []Record
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 64<<20)
	for n := 1; sc.Scan(); n++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var r Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, fmt.Errorf("%s:%d: %v", path, n, err)
		}
		recs = append(recs, r)
	}
	return recs, sc.Err()
}

// Merge joins the records of the shards of one or more verifies. It
// reports an error for a result given twice, and for a verify whose
// results are fewer than its Total (a shard missing).
func Merge(sets ...[]Record) ([]Record, error) {
	seen := map[string]bool{}
	var out []Record
	var problems []string
	for _, set := range sets {
		for _, r := range set {
			if seen[r.key()] {
				problems = append(problems, fmt.Sprintf("%s %s: given twice", r.Program, r.TestName()))
				continue
			}
			seen[r.key()] = true
			out = append(out, r)
		}
	}
	count := map[string]int{}
	total := map[string]int{}
	var progs []string
	for _, r := range out {
		p := r.Program + " " + strings.Join(r.Args[min(1, len(r.Args)):], " ")
		if _, ok := count[p]; !ok {
			progs = append(progs, p)
		}
		count[p]++
		total[p] = max(total[p], r.Total)
	}
	for _, p := range progs {
		if count[p] < total[p] {
			problems = append(problems, fmt.Sprintf("%s: %d of %d results (a shard is missing)", strings.TrimSpace(p), count[p], total[p]))
		}
	}
	if len(problems) > 0 {
		return out, fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	return out, nil
}

// DetailedReports is how many results that did not pass Summarize shows
// in full; the rest get one line each (the JUnit and JSON reports have
// them all in full).
const DetailedReports = 10

// Summarize prints each result that did not pass, the first
// DetailedReports with their reports (and with all, each that passed,
// one line each), then the counts.
func Summarize(w io.Writer, recs []Record, elapsed time.Duration, all bool) (pass, fail, errs int) {
	for i := range recs {
		r := &recs[i]
		msg := r.Message
		switch r.Outcome {
		case Pass:
			pass++
			if all {
				fmt.Fprintf(w, "pass %s %s (%.3fs)\n", r.Program, r.TestName(), r.Seconds)
			}
			continue
		case Fail:
			fail++
		default:
			errs++
		}
		detailed := fail+errs <= DetailedReports
		if !detailed {
			msg, _, _ = strings.Cut(msg, "\n")
		}
		fmt.Fprintf(w, "%s %s %s: %s\n", strings.ToUpper(r.Outcome), r.Program, r.TestName(), msg)
		if r.Diff != "" && detailed {
			fmt.Fprintln(w, indent(r.Diff))
		}
		if r.Restore != "" {
			fmt.Fprintf(w, "    reproduce: %s\n", r.Restore)
		}
	}
	if n := fail + errs - DetailedReports; n > 0 {
		fmt.Fprintf(w, "(the last %d in one line each: --junit and --json have them in full)\n", n)
	}
	points := map[string]bool{}
	for _, r := range recs {
		points[r.Program+"\x00"+r.Point().key()] = true
	}
	fmt.Fprintf(w, "verify: %d points, %d restores: %d passed, %d diverged, %d errors", len(points), len(recs), pass, fail, errs)
	if elapsed > 0 {
		fmt.Fprintf(w, " in %v (%.1f points/s)", elapsed.Round(time.Millisecond), float64(len(points))/elapsed.Seconds())
	}
	fmt.Fprintln(w)
	return
}

// JUnit XML, as Jenkins, GitLab and GitHub test reporters read it.
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Time     float64      `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Errors   int         `xml:"errors,attr"`
	Time     float64     `xml:"time,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      float64       `xml:"time,attr"`
	Failure   *junitProblem `xml:"failure,omitempty"`
	Error     *junitProblem `xml:"error,omitempty"`
}

type junitProblem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

// JUnit writes recs as JUnit XML: one testsuite per program and
// arguments, one testcase per point × policy (× perturbation), failures
// with their diff.
func JUnit(w io.Writer, recs []Record) error {
	all := junitSuites{Name: "emuckpt verify"}
	idx := map[string]int{}
	for _, r := range recs {
		name := strings.Join(append([]string{r.Program}, r.Args[min(1, len(r.Args)):]...), " ")
		i, ok := idx[name]
		if !ok {
			i = len(all.Suites)
			idx[name] = i
			all.Suites = append(all.Suites, junitSuite{Name: name})
		}
		s := &all.Suites[i]
		c := junitCase{Name: r.TestName(), Classname: "emuckpt.verify." + r.Program, Time: r.Seconds}
		text := r.Message
		if r.Diff != "" {
			text += "\n" + r.Diff
		}
		if r.Restore != "" {
			text += "\nreproduce: " + r.Restore
		}
		switch r.Outcome {
		case Fail:
			c.Failure = &junitProblem{Message: r.Message, Type: "divergence", Text: text}
			s.Failures++
		case Pass:
		default:
			c.Error = &junitProblem{Message: r.Message, Type: "error", Text: text}
			s.Errors++
		}
		s.Tests++
		s.Time += r.Seconds
		s.Cases = append(s.Cases, c)
	}
	for _, s := range all.Suites {
		all.Tests += s.Tests
		all.Failures += s.Failures
		all.Errors += s.Errors
		all.Time += s.Time
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(all); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

// WriteJUnit writes JUnit XML to path.
func WriteJUnit(path string, recs []Record) error {
	var b bytes.Buffer
	if err := JUnit(&b, recs); err != nil {
		return err
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// SortRecords orders records by program, point kind, index, policy and
// perturbation, as a merged report lists them.
func SortRecords(recs []Record) {
	kind := func(k string) int { return slices.Index([]string{KindSyscall, KindDevice, KindCall}, k) }
	slices.SortStableFunc(recs, func(a, b Record) int {
		if c := strings.Compare(a.Program+"\x00"+strings.Join(a.Args, "\x00"), b.Program+"\x00"+strings.Join(b.Args, "\x00")); c != 0 {
			return c
		}
		if c := kind(a.Kind) - kind(b.Kind); c != 0 {
			return c
		}
		if a.Index != b.Index {
			if a.Index < b.Index {
				return -1
			}
			return 1
		}
		if c := strings.Compare(a.Policy, b.Policy); c != 0 {
			return c
		}
		return strings.Compare(a.Perturbation, b.Perturbation)
	})
}
