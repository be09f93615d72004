package kernel

import (
	"bufio"
	"encoding/json"
	"io"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"
)

// TraceEvents writes a run as a Chrome/Perfetto trace-event file (the
// JSON object format with a "traceEvents" array; see docs/TRACE.md):
//
//   - a complete event ("X") per system call, from its entry to its
//     completion (a call that blocked spans its wait), with pid the guest
//     pid, tid the guest tid, and the decoded arguments and result;
//   - instant events ("i") for signals delivered to a handler, processes
//     ending, and the marks the caller adds (checkpoint, restore);
//   - counters ("C") of page faults and of device MMIO accesses, per
//     bucket of at least CounterBucket, on the pseudo-process 0 (the
//     machine): the file grows with the run's length, not with how many
//     faults or accesses it makes;
//   - metadata ("M"): process and thread names (their comm) as last seen.
//
// Timestamps are microseconds of the host's monotonic clock since
// NewTraceEvents, also under --deterministic (the virtual clock only
// advances at system calls and would give every call a zero duration).
// Events are written as they happen; Close writes the metadata and ends
// the JSON. A TraceEvents may be used by one kernel at a time; its
// methods are safe for concurrent use.
type TraceEvents struct {
	mu      sync.Mutex
	w       *bufio.Writer
	start   time.Time
	first   bool
	err     error
	procs   map[int]string    // pid -> comm
	threads map[int]traceTask // tid -> pid, comm
	closed  bool
}

type traceTask struct {
	pid  int
	comm string
}

// CounterBucket is the shortest interval the fault and device counters
// are aggregated over.
const CounterBucket = time.Millisecond

// NewTraceEvents starts a trace-event file on w.
func NewTraceEvents(w io.Writer) *TraceEvents {
	te := &TraceEvents{w: bufio.NewWriterSize(w, 64<<10), start: time.Now(), first: true,
		procs: map[int]string{}, threads: map[int]traceTask{}}
	_, te.err = te.w.WriteString(`{"displayTimeUnit":"ns","otherData":{"generator":"emuckpt"},"traceEvents":[`)
	return te
}

// traceEvent is one entry of the traceEvents array.
type traceEvent struct {
	Name  string         `json:"name"`
	Cat   string         `json:"cat,omitempty"`
	Ph    string         `json:"ph"`
	Ts    float64        `json:"ts"`
	Dur   *float64       `json:"dur,omitempty"`
	Pid   int            `json:"pid"`
	Tid   int            `json:"tid"`
	Scope string         `json:"s,omitempty"`
	Args  map[string]any `json:"args,omitempty"`
}

// now is the time since the start in nanoseconds (0 for a nil te).
func (te *TraceEvents) now() int64 {
	if te == nil {
		return 0
	}
	return int64(time.Since(te.start))
}

func usec(ns int64) float64 { return float64(ns) / 1e3 }

func (te *TraceEvents) emit(ev traceEvent) {
	if te.err != nil || te.closed {
		return
	}
	b, err := json.Marshal(ev)
	if err != nil {
		te.err = err
		return
	}
	if !te.first {
		te.w.WriteByte(',')
	}
	te.first = false
	te.w.WriteByte('\n')
	_, te.err = te.w.Write(b)
}

// seen records the name of a task for the metadata events.
func (te *TraceEvents) seen(pid, tid int, comm string) {
	te.threads[tid] = traceTask{pid, comm}
	if pid == tid || te.procs[pid] == "" {
		te.procs[pid] = comm
	}
}

// syscall records a completed system call that started at start (ns).
func (te *TraceEvents) syscall(pid, tid int, comm, name, args, ret string, start int64) {
	te.mu.Lock()
	defer te.mu.Unlock()
	te.seen(pid, tid, comm)
	dur := usec(te.now() - start)
	te.emit(traceEvent{Name: name, Cat: "syscall", Ph: "X", Ts: usec(start), Dur: &dur, Pid: pid, Tid: tid,
		Args: map[string]any{"args": args, "ret": ret}})
}

// instant records an event of one task at this moment.
func (te *TraceEvents) instant(name, cat string, pid, tid int, comm string, args map[string]any) {
	te.mu.Lock()
	defer te.mu.Unlock()
	te.seen(pid, tid, comm)
	te.emit(traceEvent{Name: name, Cat: cat, Ph: "i", Ts: usec(te.now()), Pid: pid, Tid: tid, Scope: "t", Args: args})
}

// Mark records a global instant event (scope "g"), such as "checkpoint"
// or "restore", with optional arguments.
func (te *TraceEvents) Mark(name string, args map[string]any) {
	if te == nil {
		return
	}
	te.mu.Lock()
	defer te.mu.Unlock()
	te.emit(traceEvent{Name: name, Cat: "emuckpt", Ph: "i", Ts: usec(te.now()), Scope: "g", Args: args})
}

// counter records counter values at ts (ns) on the machine's track.
func (te *TraceEvents) counter(name string, ts int64, values map[string]any) {
	te.mu.Lock()
	defer te.mu.Unlock()
	te.emit(traceEvent{Name: name, Ph: "C", Ts: usec(ts), Args: values})
}

// Close writes the name metadata and ends the file; it does not close
// the writer. It returns the first write error.
func (te *TraceEvents) Close() error {
	te.mu.Lock()
	defer te.mu.Unlock()
	if te.closed {
		return te.err
	}
	meta := func(name string, pid, tid int, value string) {
		te.emit(traceEvent{Name: name, Ph: "M", Pid: pid, Tid: tid, Args: map[string]any{"name": value}})
	}
	meta("process_name", 0, 0, "emuckpt (machine)")
	for _, pid := range slices.Sorted(maps.Keys(te.procs)) {
		meta("process_name", pid, pid, te.procs[pid])
	}
	for _, tid := range slices.Sorted(maps.Keys(te.threads)) {
		meta("thread_name", te.threads[tid].pid, tid, te.threads[tid].comm)
	}
	te.closed = true
	if te.err == nil {
		_, te.err = te.w.WriteString("\n]}\n")
	}
	if err := te.w.Flush(); te.err == nil {
		te.err = err
	}
	return te.err
}

// traceCounters is the tracer's counter state: the counts at the start of
// the current bucket.
type traceCounters struct {
	at      int64 // ns
	faults  uint64
	devices map[string]uint64
	nonzero bool // the last values written were not all zero
}

// traceCounters samples the page-fault and device-access counts at an
// exit of task t and writes them once a bucket (CounterBucket) is over:
// the number of each in the bucket, at the bucket's start. It is called
// at every exit the kernel settles (run.go), system calls included, and
// when the first process ends (the last, partial bucket).
func (k *Kernel) traceCounters(t *Task) { k.sampleCounters(false) }

// sampleCounters writes the counters if a bucket is over or, with force,
// in any case (the end of the run).
func (k *Kernel) sampleCounters(force bool) {
	te := k.cfg.TraceEvents
	if te == nil {
		return
	}
	c := &k.trace.counters
	now := te.now()
	if c.devices != nil && now-c.at < int64(CounterBucket) && !force {
		return
	}
	faults, devices := k.timers.minFaults, k.m.Bus.Accesses()
	if c.devices == nil {
		c.at, c.faults, c.devices = now, faults, devices
		return
	}
	mmio := map[string]any{}
	zero := faults == c.faults
	for name, n := range devices {
		mmio[name] = n - c.devices[name]
		zero = zero && n == c.devices[name]
	}
	if !zero || c.nonzero {
		// A bucket of zeros is written once, where the activity stops.
		te.counter("page faults", c.at, map[string]any{"faults": faults - c.faults})
		te.counter("device MMIO accesses", c.at, mmio)
	}
	c.nonzero = !zero
	c.at, c.faults, c.devices = now, faults, devices
}

// traceSignal records the delivery of signal si to a handler of t.
func (k *Kernel) traceSignal(t *Task, si sigInfo) {
	if te := k.cfg.TraceEvents; te != nil {
		te.instant(SignalName(si.signo), "signal", t.proc.pid, t.tid, t.comm,
			map[string]any{"code": codeName(si.signo, si.code), "handler": "yes"})
	}
}

// traceExitProcess records the end of process p.
func (k *Kernel) traceExitProcess(p *Process, st ExitStatus) {
	te := k.cfg.TraceEvents
	if te == nil {
		return
	}
	tid, comm := p.pid, ""
	if l := p.leader(); l != nil {
		tid, comm = l.tid, l.comm
	}
	name, args := "exit", map[string]any{"status": strconv.Itoa(st.Code)}
	if st.Signal != 0 {
		name, args = "killed by "+SignalName(st.Signal), map[string]any{"signal": SignalName(st.Signal)}
	}
	te.instant(name, "process", p.pid, tid, comm, args)
	if p == k.first {
		k.sampleCounters(true) // the run ends: the last bucket
	}
}
