package image

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/emuckpt/emuckpt/internal/testfs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// forceNamed makes Create use named temporary files, as on a file system
// without O_TMPFILE, for the rest of the test.
func forceNamed(t *testing.T, named bool) {
	old := forceNamedTemp
	forceNamedTemp = named
	t.Cleanup(func() { forceNamedTemp = old })
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	names := []string{}
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// deadPID returns the PID of a process that has exited.
func deadPID(t *testing.T) int {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	require.NoError(t, cmd.Run())
	return cmd.Process.Pid
}

func TestCheckDestination(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	require.NoError(t, os.WriteFile(file, []byte("not a directory"), 0o600))
	fifo := filepath.Join(dir, "fifo")
	require.NoError(t, unix.Mkfifo(fifo, 0o600))
	tests := []struct {
		name, path, err string
	}{
		{"new file", filepath.Join(dir, "a.img"), ""},
		{"existing file", file, ""},
		{"missing directory", filepath.Join(dir, "nope", "a.img"), "directory " + filepath.Join(dir, "nope") + " does not exist (create it first)"},
		{"directory as target", dir, dir + " is a directory; name an image file (in it)"},
		{"trailing slash", dir + "/", "is not a file name"},
		{"under a regular file", filepath.Join(file, "a.img"), file + " is not a directory"},
		{"deeper under a regular file", filepath.Join(file, "x", "a.img"), "is not a directory"},
		{"FIFO", fifo, fifo + " is not a regular file, and an image would replace it"},
		{"empty", "", "is not a file name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := CheckDestination(tt.path)
			if tt.err == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.err)
		})
	}
	before := listDir(t, dir)
	_, err := CheckDestination(filepath.Join(dir, "b.img"))
	require.NoError(t, err)
	assert.Equal(t, before, listDir(t, dir), "the check leaves no file behind")

	t.Run("read-only directory", func(t *testing.T) {
		ro := testfs.ReadOnly(t)
		for _, named := range []bool{false, true} {
			forceNamed(t, named)
			_, err := CheckDestination(filepath.Join(ro, "a.img"))
			require.ErrorContains(t, err, "cannot create files in "+ro, "named=%v", named)
		}
	})
}

// TestRemoveStale: only temporary files of this image whose process is
// gone and whose lock is free are removed.
func TestRemoveStale(t *testing.T) {
	dir := t.TempDir()
	dead := deadPID(t)
	name := func(pid int, rest string) string {
		return filepath.Join(dir, fmt.Sprintf(".a.img.emuckpt-tmp.%d.%s", pid, rest))
	}
	stale := []string{name(dead, "1"), name(dead, "22")}
	kept := []string{
		name(os.Getpid(), "3"),              // ours
		name(1, "4"),                        // a live process
		name(dead, "5"),                     // locked: see below
		filepath.Join(dir, ".a.img.tmp123"), // not our pattern
		filepath.Join(dir, ".b.img.emuckpt-tmp."+strconv.Itoa(dead)+".6"), // another image
		filepath.Join(dir, "a.img"),
	}
	for _, p := range append(stale, kept...) {
		require.NoError(t, os.WriteFile(p, []byte("x"), 0o600))
	}
	locked, err := os.Open(name(dead, "5"))
	require.NoError(t, err)
	defer locked.Close()
	require.NoError(t, unix.Flock(int(locked.Fd()), unix.LOCK_EX))
	fifo := name(dead, "7")
	require.NoError(t, unix.Mkfifo(fifo, 0o600))
	kept = append(kept, fifo)

	removed, err := CheckDestination(filepath.Join(dir, "a.img"))
	require.NoError(t, err)
	assert.ElementsMatch(t, stale, removed)
	for _, p := range kept {
		assert.FileExists(t, p)
	}
	for _, p := range stale {
		assert.NoFileExists(t, p)
	}
}

// TestKilledWriterLeavesNoFile kills (SIGKILL) a process in the middle of
// writing an image. With O_TMPFILE it leaves no file at all; with a named
// temporary file (a file system without O_TMPFILE) it leaves one, which
// the next Create removes.
func TestKilledWriterLeavesNoFile(t *testing.T) {
	for _, named := range []bool{false, true} {
		t.Run(fmt.Sprintf("named=%v", named), func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "a.img")
			cmd := exec.Command(os.Args[0], "-test.run=^TestHelperSlowWriter$")
			cmd.Env = append(os.Environ(), "EMUCKPT_SLOW_WRITER="+path, "EMUCKPT_SLOW_WRITER_NAMED="+strconv.FormatBool(named))
			out, err := cmd.StdoutPipe()
			require.NoError(t, err)
			require.NoError(t, cmd.Start())
			line, err := bufio.NewReader(out).ReadString('\n')
			require.NoError(t, err)
			require.Equal(t, "writing\n", line)
			require.NoError(t, cmd.Process.Kill())
			cmd.Wait()

			left := listDir(t, dir)
			if !named {
				assert.Empty(t, left)
				return
			}
			require.Len(t, left, 1)
			assert.Regexp(t, `^\.a\.img\.emuckpt-tmp\.\d+\.\d+$`, left[0])
			forceNamed(t, true)
			w, err := Create(path)
			require.NoError(t, err)
			write(t, w, small())
			require.NoError(t, w.Commit())
			assert.Equal(t, []string{"a.img"}, listDir(t, dir), "Create removed the stale file")
		})
	}
}

// TestHelperSlowWriter is not a test: TestKilledWriterLeavesNoFile runs
// the test binary again with only this function, as the writer it kills.
func TestHelperSlowWriter(t *testing.T) {
	path := os.Getenv("EMUCKPT_SLOW_WRITER")
	if path == "" {
		t.Skip("a helper process for TestKilledWriterLeavesNoFile")
	}
	forceNamedTemp = os.Getenv("EMUCKPT_SLOW_WRITER_NAMED") == "true"
	w, err := Create(path)
	require.NoError(t, err)
	data := alignedBuffer(1 << 20)
	for i := range data {
		data[i] = byte(i)
	}
	deadline := time.Now().Add(time.Minute)
	for i := 0; time.Now().Before(deadline); i++ {
		_, err := w.Pages(data)
		require.NoError(t, err)
		if i == 3 {
			fmt.Println("writing")
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("not killed within a minute")
}

// TestRemoveStaleNamed: without O_TMPFILE, CheckDestination still reports
// the stale files it removes.
func TestRemoveStaleNamed(t *testing.T) {
	forceNamed(t, true)
	dir := t.TempDir()
	stale := filepath.Join(dir, fmt.Sprintf(".a.img.emuckpt-tmp.%d.1", deadPID(t)))
	require.NoError(t, os.WriteFile(stale, []byte("x"), 0o600))
	removed, err := CheckDestination(filepath.Join(dir, "a.img"))
	require.NoError(t, err)
	assert.Equal(t, []string{stale}, removed)
	assert.Equal(t, []string{}, listDir(t, dir))
}
