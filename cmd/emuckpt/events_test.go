package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// lockedBuffer collects a child's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// child is an emuckpt process that the test talks to while it runs: it
// holds its stdin, watches its output and sends it signals. Tests act on
// events (a line the guest printed) rather than after a delay that a slow
// machine may not keep to.
type child struct {
	cmd            *exec.Cmd
	stdin          io.WriteCloser
	stdout, stderr lockedBuffer
	exited         chan struct{} // closed when cmd.Wait returned
	waitErr        error
}

// startEmuckpt starts the CLI with args.
func startEmuckpt(t *testing.T, args ...string) *child {
	t.Helper()
	c := &child{cmd: exec.Command(os.Args[0], args...)}
	c.cmd.Env = append(os.Environ(), "EMUCKPT_E2E_MAIN=1")
	c.cmd.Stdout, c.cmd.Stderr = &c.stdout, &c.stderr
	var err error
	c.stdin, err = c.cmd.StdinPipe()
	require.NoError(t, err)
	require.NoError(t, c.cmd.Start())
	c.exited = make(chan struct{})
	go func() {
		c.waitErr = c.cmd.Wait()
		close(c.exited)
	}()
	t.Cleanup(func() {
		c.cmd.Process.Kill()
		<-c.exited
	})
	return c
}

// waitFor waits until out contains s. The limit only keeps a broken run
// from hanging the test; it is no measure of speed.
func (c *child) waitFor(t *testing.T, out *lockedBuffer, s string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Minute); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		if strings.Contains(out.String(), s) {
			return
		}
		select {
		case <-c.exited:
			if !strings.Contains(out.String(), s) {
				t.Fatalf("emuckpt ended (%v) without printing %q; stdout:\n%s\nstderr:\n%s", c.waitErr, s, c.stdout.String(), c.stderr.String())
			}
			return
		default:
		}
	}
	t.Fatalf("no %q after 5 minutes; stdout:\n%s\nstderr:\n%s", s, c.stdout.String(), c.stderr.String())
}

func (c *child) signal(t *testing.T, sig os.Signal) {
	t.Helper()
	require.NoError(t, c.cmd.Process.Signal(sig))
}

// finish closes stdin and waits for the end.
func (c *child) finish(t *testing.T) result {
	t.Helper()
	c.stdin.Close()
	<-c.exited
	if _, ok := c.waitErr.(*exec.ExitError); c.waitErr != nil && !ok {
		require.NoError(t, c.waitErr)
	}
	return result{c.stdout.String(), c.stderr.String(), c.cmd.ProcessState.ExitCode()}
}
