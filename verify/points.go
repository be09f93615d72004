package verify

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Kinds of events, and of points.
const (
	KindSyscall = "syscall" // after the Nth system call
	KindDevice  = "device"  // after the Nth device MMIO access
	KindCall    = "call"    // at the Nth emuckpt_checkpoint() call
)

// At is which events --at chooses points from.
type At string

// Values of At.
const (
	AtSyscall At = "syscall"
	AtDevice  At = "device"
	AtAll     At = "all"
)

// ParseAt parses --at.
func ParseAt(s string) (At, error) {
	switch a := At(s); a {
	case AtSyscall, AtDevice, AtAll:
		return a, nil
	}
	return "", fmt.Errorf("%q: want syscall, device or all", s)
}

// DefaultPoints is how many points a verify takes at most when neither
// Every nor Points is given.
const DefaultPoints = 200

// Point is a moment of the run where a checkpoint is taken.
type Point struct {
	Kind  string // KindSyscall, KindDevice or KindCall
	Index uint64 // from 1, among the events of its kind
	// Name is the system call (for a syscall point) or the device
	// register and access (for a device point), when known.
	Name string
}

// String is "syscall:12 (write)", as --checkpoint-at would name it.
func (p Point) String() string {
	s := p.Kind + ":" + strconv.FormatUint(p.Index, 10)
	if p.Name != "" {
		s += " (" + p.Name + ")"
	}
	return s
}

func (p Point) key() string { return p.Kind + ":" + strconv.FormatUint(p.Index, 10) }

// Events counts the reference run's events of each kind.
type Events struct {
	Syscalls uint64 `json:"syscalls"`
	Devices  uint64 `json:"device_accesses"`
	Calls    uint64 `json:"checkpoint_calls"`
	// LastSyscallExits says the last system call ended the program (exit
	// or exit_group), so no checkpoint can follow it.
	LastSyscallExits bool `json:"-"`
}

// Select chooses the points of a verify from the reference's events:
// every K-th (every > 0) or n spread evenly (n > 0; with neither, every
// event up to DefaultPoints, else DefaultPoints spread evenly) of the
// system calls and device accesses at names, in that order (syscalls
// first, then device accesses), plus every emuckpt_checkpoint() call.
func Select(ev Events, at At, every uint64, n int) []Point {
	var cands []Point
	if at == AtSyscall || at == AtAll {
		last := ev.Syscalls
		if ev.LastSyscallExits && last > 0 {
			last-- // nothing follows the exit
		}
		for i := uint64(1); i <= last; i++ {
			cands = append(cands, Point{Kind: KindSyscall, Index: i})
		}
	}
	if at == AtDevice || at == AtAll {
		for i := uint64(1); i <= ev.Devices; i++ {
			cands = append(cands, Point{Kind: KindDevice, Index: i})
		}
	}
	var out []Point
	switch {
	case every > 0:
		for i := every; i <= uint64(len(cands)); i += every {
			out = append(out, cands[i-1])
		}
	default:
		if n <= 0 {
			n = DefaultPoints
		}
		out = spread(cands, n)
	}
	for i := uint64(1); i <= ev.Calls; i++ {
		out = append(out, Point{Kind: KindCall, Index: i})
	}
	return out
}

// spread picks n of cands spaced evenly, the first and the last included.
func spread(cands []Point, n int) []Point {
	if n >= len(cands) {
		return cands
	}
	if n == 1 {
		return []Point{cands[len(cands)-1]}
	}
	out := make([]Point, 0, n)
	for i := 0; i < n; i++ {
		j := int(math.Round(float64(i) * float64(len(cands)-1) / float64(n-1)))
		out = append(out, cands[j])
	}
	return out
}

// Shard is one of Count parts of a verify: the points whose position in
// the selection is Index modulo Count. The zero Shard is the whole.
type Shard struct {
	Index, Count int
}

// ParseShard parses "I/N" (0 <= I < N).
func ParseShard(s string) (Shard, error) {
	i, n, ok := strings.Cut(s, "/")
	idx, err1 := strconv.Atoi(i)
	cnt, err2 := strconv.Atoi(n)
	if !ok || err1 != nil || err2 != nil || cnt < 1 || idx < 0 || idx >= cnt {
		return Shard{}, fmt.Errorf("%q: want I/N with 0 <= I < N", s)
	}
	return Shard{Index: idx, Count: cnt}, nil
}

func (s Shard) String() string {
	if s.Count <= 1 {
		return ""
	}
	return fmt.Sprintf("%d/%d", s.Index, s.Count)
}

// Of returns the shard's part of points.
func (s Shard) Of(points []Point) []Point {
	if s.Count <= 1 {
		return points
	}
	var out []Point
	for i, p := range points {
		if i%s.Count == s.Index {
			out = append(out, p)
		}
	}
	return out
}
