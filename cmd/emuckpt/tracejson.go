package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/emuckpt/emuckpt/kernel"
)

// addTraceJSONFlag adds --trace-json FILE to run and restore.
func addTraceJSONFlag(fs *flag.FlagSet) *string {
	return fs.String("trace-json", "", "write a Chrome/Perfetto trace-event JSON file of the run: system calls, signals, page faults, device accesses, checkpoints (see docs/TRACE.md)")
}

// traceJSON is an open --trace-json file.
type traceJSON struct {
	path string
	f    *os.File
	te   *kernel.TraceEvents
}

// openTraceJSON creates the --trace-json file (nothing for an empty
// path) and makes cfg's kernel write to it, marking each checkpoint it
// saves. A file that cannot be created is reported as a usage error.
func openTraceJSON(cmd, path string, cfg *kernel.Config, stderr io.Writer) (*traceJSON, bool) {
	if path == "" {
		return nil, true
	}
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintf(stderr, "emuckpt: %s: --trace-json: %v\n", cmd, err)
		return nil, false
	}
	t := &traceJSON{path: path, f: f, te: kernel.NewTraceEvents(f)}
	cfg.TraceEvents = t.te
	if save := cfg.Checkpoint.Save; save != nil {
		cfg.Checkpoint.Save = func(s *kernel.Snapshot) error {
			err := save(s)
			args := map[string]any{"syscalls": s.State.Syscalls, "pages": s.State.PageCount}
			if err != nil {
				args["error"] = err.Error()
			}
			t.te.Mark("checkpoint", args)
			return err
		}
	}
	return t, true
}

// mark adds a global event (nothing without --trace-json).
func (t *traceJSON) mark(name string, args map[string]any) {
	if t != nil {
		t.te.Mark(name, args)
	}
}

// finish ends and closes the file; an error is reported on stderr (the
// run's status is kept).
func (t *traceJSON) finish(stderr io.Writer) {
	if t == nil {
		return
	}
	err := t.te.Close()
	if cerr := t.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		fmt.Fprintf(stderr, "emuckpt: --trace-json %s: %v\n", t.path, err)
	}
}
