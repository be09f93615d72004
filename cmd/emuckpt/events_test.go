package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// running is an emuckpt process that a test drives by events: it waits for
// a line of the guest's output before it acts, instead of sleeping for a
// time that a slow machine may not keep to.
type running struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	stdout bytes.Buffer
	stderr strings.Builder
	lines  chan string   // each line of stdout, as it comes
	done   chan struct{} // closed when stdout is at its end
}

// startEmuckpt starts the CLI with args.
func startEmuckpt(t *testing.T, args ...string) *running {
	t.Helper()
	r := &running{lines: make(chan string, 1024), done: make(chan struct{})}
	r.cmd = exec.Command(os.Args[0], args...)
	r.cmd.Env = append(os.Environ(), "EMUCKPT_E2E_MAIN=1")
	r.cmd.Stderr = &r.stderr
	out, err := r.cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, r.cmd.Start())
	go func() {
		defer close(r.done)
		s := bufio.NewScanner(out)
		for s.Scan() {
			r.mu.Lock()
			r.stdout.WriteString(s.Text() + "\n")
			r.mu.Unlock()
			select {
			case r.lines <- s.Text():
			default:
			}
		}
	}()
	t.Cleanup(func() {
		if r.cmd.ProcessState == nil {
			r.cmd.Process.Kill()
			r.cmd.Wait()
		}
	})
	return r
}

// waitLine waits until the guest prints line. The limit only keeps a
// broken run from hanging the test; it is no measure of speed.
func (r *running) waitLine(t *testing.T, line string) {
	t.Helper()
	limit := time.After(5 * time.Minute)
	for {
		select {
		case l := <-r.lines:
			if l == line {
				return
			}
		case <-r.done:
			t.Fatalf("the guest ended without printing %q; stderr: %s", line, r.stderr.String())
		case <-limit:
			t.Fatalf("the guest did not print %q in 5 minutes", line)
		}
	}
}

// wait waits for the process to end and returns its result.
func (r *running) wait(t *testing.T) result {
	t.Helper()
	<-r.done
	err := r.cmd.Wait()
	status := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		require.True(t, ok, "running %v: %v", r.cmd.Args, err)
		status = ee.ExitCode()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return result{r.stdout.String(), r.stderr.String(), status}
}
