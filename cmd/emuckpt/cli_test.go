package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emuckpt/emuckpt/internal/kvmtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestUsageErrors: a bad flag or value is status 125 with two lines on
// stderr, "emuckpt: COMMAND: the error" and a pointer to --help, never
// the whole usage; nothing runs. None needs KVM.
func TestUsageErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		want string // the first line
	}{
		{"bad size", []string{"run", "--mem", "xx", img("hello")},
			`emuckpt: run: invalid value "xx" for flag -mem: want a size like 512M or 2G`},
		{"memory above the maximum", []string{"run", "--mem", "1T", img("hello")},
			`emuckpt: run: invalid value "1T" for flag -mem: 1T is more than the maximum, 64G`},
		{"memory just above the maximum", []string{"run", "--mem", "65537M", img("hello")},
			`emuckpt: run: invalid value "65537M" for flag -mem: 65537M is more than the maximum, 64G`},
		{"memory above the maximum, verify", []string{"verify", "--mem", "65G", img("hello")},
			`emuckpt: verify: invalid value "65G" for flag -mem: 65G is more than the maximum, 64G`},
		{"memory below the minimum", []string{"run", "--mem", "1M", img("hello")},
			`emuckpt: run: invalid value "1M" for flag -mem: 1M is less than the minimum, 4M`},
		{"unknown flag of run", []string{"run", "--bogus", img("hello")},
			`emuckpt: run: flag provided but not defined: -bogus`},
		{"bad duration", []string{"run", "--timeout", "soon", img("hello")},
			`emuckpt: run: invalid value "soon" for flag -timeout: parse error`},
		{"bad env", []string{"run", "--env", "novalue", img("hello")},
			`emuckpt: run: invalid value "novalue" for flag -env: want KEY=VALUE, got "novalue"`},
		{"unknown flag of restore", []string{"restore", "--bogus", "x.img"},
			`emuckpt: restore: flag provided but not defined: -bogus`},
		{"bad value of restore", []string{"restore", "--tmpfs", "tmp", "x.img"},
			`emuckpt: restore: invalid value "tmp" for flag -tmpfs: want an absolute, clean guest path other than / (PATH[:SIZE]), got "tmp"`},
		{"unknown flag of inspect", []string{"inspect", "--yaml", "x.img"},
			`emuckpt: inspect: flag provided but not defined: -yaml`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := emuckpt(t, tt.args...)
			assert.Equal(t, exitFailure, r.status)
			assert.Empty(t, r.stdout, "nothing runs")
			assert.Equal(t, tt.want+"\nRun 'emuckpt "+tt.args[0]+" --help' for usage.\n", r.stderr)
		})
	}
	r := emuckpt(t, "checkpoint", img("hello"))
	assert.Equal(t, exitFailure, r.status)
	assert.Equal(t, "emuckpt: unknown command \"checkpoint\"\nRun 'emuckpt help' for usage.\n", r.stderr)
}

// TestHelpShowsMemoryLimits: --help gives the memory default as a size
// one would type, and the range --mem takes.
func TestHelpShowsMemoryLimits(t *testing.T) {
	r := emuckpt(t, "run", "--help")
	require.Equal(t, 0, r.status)
	assert.Contains(t, r.stderr, "guest RAM size, from 4M to 64G (e.g. 512M, 2G) (default 512M)")
	assert.NotContains(t, r.stderr, "536870912")
}

func TestSizeFlag(t *testing.T) {
	for _, tt := range []struct {
		in   string
		n    uint64
		show string // String of the parsed value; "" for an error
	}{
		{"512M", 512 << 20, "512M"}, {"512m", 512 << 20, "512M"}, {"2G", 2 << 30, "2G"},
		{"1T", 1 << 40, "1T"}, {"65536", 64 << 10, "64K"}, {"1000", 1000, "1000"},
		{"1536M", 1536 << 20, "1536M"}, {"3072M", 3 << 30, "3G"}, {"4k", 4096, "4K"},
		{"0", 0, ""}, {"M", 0, ""}, {"-1M", 0, ""}, {"1.5G", 0, ""}, {"1P", 0, ""}, {"", 0, ""},
	} {
		t.Run(tt.in, func(t *testing.T) {
			var s sizeFlag
			err := s.Set(tt.in)
			if tt.show == "" {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.n, uint64(s))
			assert.Equal(t, tt.show, s.String())
		})
	}
}

// TestMemAboveTheHole: --mem takes sizes beyond the MMIO hole at 3 GiB
// up to the maximum, and a guest that touches more than fits below the
// hole runs with its data intact (its frames above 4 GiB).
func TestMemAboveTheHole(t *testing.T) {
	kvmtest.Require(t)
	for _, tt := range []struct {
		mem  string
		args []string
		want string
	}{
		{"64G", []string{img("hello")}, "hello, world\n"},
		{"4G", []string{img("bigmem"), "3150"}, "bigmem 3150 MiB: ok (checkpoint returned -89)\n"},
	} {
		t.Run(tt.mem, func(t *testing.T) {
			r := emuckpt(t, append([]string{"run", "--mem", tt.mem}, tt.args...)...)
			assert.Equal(t, 0, r.status, r.stderr)
			assert.Equal(t, tt.want, r.stdout)
		})
	}
}

// TestImageFileErrors: a file that is not there is reported as such, not
// as a bad image, by restore and inspect; a file that is not an image
// names the command that writes images.
func TestImageFileErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.img")
	notImage := filepath.Join(dir, "notes.txt")
	require.NoError(t, os.WriteFile(notImage, []byte("not an image\n"), 0o644))
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"inspect", missing}, "emuckpt: " + missing + ": cannot open the image: no such file or directory\n"},
		{[]string{"restore", missing}, "emuckpt: " + missing + ": cannot open the image: no such file or directory\n"},
		{[]string{"inspect", notImage}, "emuckpt: " + notImage + ": bad checkpoint image: " + notImage +
			`: not an emuckpt image: it starts with not an i, not "EMUCKPT\x00"; pass an image written by 'emuckpt run --checkpoint-to FILE'` + "\n"},
		{[]string{"restore", notImage}, "pass an image written by 'emuckpt run --checkpoint-to FILE'\n"},
	} {
		t.Run(strings.Join(tt.args[:1], " ")+" "+filepath.Base(tt.args[1]), func(t *testing.T) {
			r := emuckpt(t, tt.args...)
			assert.Equal(t, exitFailure, r.status)
			assert.True(t, strings.HasSuffix(r.stderr, tt.want), "stderr: %s", r.stderr)
			assert.NotContains(t, r.stderr, "'emuckpt checkpoint'")
		})
	}
}

// TestCheckpointTriggerNeverFires: a --checkpoint-at trigger the run ends
// before is said on stderr, with status 125 and the status the run had,
// and no image; one that fires is silent about it.
func TestCheckpointTriggerNeverFires(t *testing.T) {
	kvmtest.Require(t)
	for _, tt := range []struct {
		name   string
		flags  []string
		args   []string
		status int
		want   string // the last line of stderr; "" when the trigger fires
	}{
		{"syscall", []string{"--checkpoint-at", "syscall:1000"}, []string{"hello"}, exitFailure,
			"--checkpoint-at syscall:1000 never fired: the run ended after 5 system calls, and no checkpoint was written; exit status 125 instead of 0"},
		{"device", []string{"--checkpoint-at", "device:1000", "-v"}, []string{"hello"}, exitFailure,
			"--checkpoint-at device:1000 never fired: the run ended after 0 device accesses, and no checkpoint was written; exit status 125 instead of 0"},
		{"time", []string{"--checkpoint-at", "time:1h"}, []string{"exitcode", "3"}, exitFailure,
			"--checkpoint-at time:1h never fired: the run ended after "},
		{"the exit status it would have had", []string{"--checkpoint-at", "syscall:1000"}, []string{"exitcode", "3"}, exitFailure,
			"exit status 125 instead of 3"},
		{"some points of a list", []string{"--checkpoint-at", "syscall:2,3,1000"}, []string{"hello"}, exitFailure,
			"--checkpoint-at syscall:2,3,1000 fired at 2 of its 3 points: the run ended after 5 system calls; exit status 125 instead of 0"},
		{"fires", []string{"--checkpoint-at", "syscall:2"}, []string{"hello"}, 0, ""},
		{"fires and the run goes on", []string{"--checkpoint-at", "syscall:2", "--leave-running"}, []string{"hello"}, 0, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			image := filepath.Join(t.TempDir(), "x.img")
			args := append(append([]string{"run", "--checkpoint-to", image}, tt.flags...), img(tt.args[0]))
			r := emuckpt(t, append(args, tt.args[1:]...)...)
			assert.Equal(t, tt.status, r.status, r.stderr)
			if tt.want == "" {
				assert.NotContains(t, r.stderr, "never fired")
				assert.FileExists(t, image)
				return
			}
			lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
			assert.Contains(t, lines[len(lines)-1], tt.want)
			assert.True(t, strings.HasPrefix(lines[len(lines)-1], "emuckpt: "+img(tt.args[0])+": --checkpoint-at "), r.stderr)
			if strings.Contains(tt.want, "fired at") {
				// The points that fired wrote their images.
				assert.FileExists(t, image)
				assert.FileExists(t, image+".1")
				return
			}
			assert.NoFileExists(t, image)
		})
	}
}

// TestCwdChecked: --cwd must name a directory of the guest's file system
// by an absolute path (status 125 before the program runs otherwise); the
// program starts in its canonical path.
func TestCwdChecked(t *testing.T) {
	root := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(root, "f.txt"), []byte("x"), 0o644))
	require.NoError(t, os.Mkdir(filepath.Join(root, "sub"), 0o755))
	for _, tt := range []struct {
		name  string
		root  bool
		cwd   string
		want  string // stderr; "" for a run that starts in getcw
		kvm   bool
		getcw string
	}{
		{name: "relative", cwd: "tmp", want: "emuckpt: run: --cwd tmp: want an absolute guest path, such as /tmp\n"},
		{name: "relative with a root", root: true, cwd: "sub", want: "emuckpt: run: --cwd sub: want an absolute guest path, such as /tmp\n"},
		{name: "missing", cwd: "/nope", kvm: true,
			want: "emuckpt: run: --cwd /nope: no such file or directory in the guest's file system, which without --root holds only /, /tmp, /dev and /proc\n"},
		{name: "missing in the root", root: true, cwd: "/nope", kvm: true,
			want: "emuckpt: run: --cwd /nope: no such file or directory in the guest's file system\n"},
		{name: "a regular file", root: true, cwd: "/f.txt", kvm: true,
			want: "emuckpt: run: --cwd /f.txt: not a directory in the guest's file system\n"},
		{name: "a host directory outside the root", root: true, cwd: root, kvm: true,
			want: "emuckpt: run: --cwd " + root + ": no such file or directory in the guest's file system\n"},
		{name: "tmpfs", cwd: "/tmp/", kvm: true, getcw: "/tmp"},
		{name: "a directory of the root", root: true, cwd: "/tmp/../sub", kvm: true, getcw: "/sub"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.kvm {
				kvmtest.Require(t)
			}
			args := []string{"run", "--cwd", tt.cwd}
			if tt.root {
				args = append(args, "--root", root)
			}
			r := emuckpt(t, append(args, img("stat"), "/")...)
			if tt.want != "" {
				assert.Equal(t, exitFailure, r.status)
				assert.Empty(t, r.stdout, "the program must not run")
				assert.Equal(t, tt.want, r.stderr)
				return
			}
			// stat's other checks want another argument: only its
			// getcwd line matters here.
			assert.Contains(t, r.stdout, "\ngetcwd: "+tt.getcw+"\n", r.stderr)
		})
	}
}

// TestInspectShowsRootAndDescriptors: an image records the --root of the
// run (absolute, however it was given); inspect shows it and the open
// descriptors; restore without --root refuses with a hint to pass it.
func TestInspectShowsRootAndDescriptors(t *testing.T) {
	kvmtest.Require(t)
	root := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(root, "f.txt"), []byte("inside the root\n"), 0o644))
	wd, err := os.Getwd()
	require.NoError(t, err)
	rel, err := filepath.Rel(wd, root)
	require.NoError(t, err)
	image := filepath.Join(t.TempDir(), "rf.img")
	// readfile opens its file with the third system call.
	r := emuckpt(t, "run", "--root", rel, "--checkpoint-to", image, "--checkpoint-at", "syscall:4", img("readfile"), "/f.txt")
	require.Equal(t, 0, r.status, r.stderr)

	r = emuckpt(t, "inspect", image)
	require.Equal(t, 0, r.status, r.stderr)
	for _, want := range []string{
		"\nroot " + root + " (restore needs --root: this directory or a copy of it)\n",
		"\nfd 0: stdio stdin, O_RDONLY|O_LARGEFILE, offset 0, description 0\n",
		"\nfd 1: stdio stdout, O_WRONLY|O_LARGEFILE, offset 0, description 1\n",
		"\nfd 3: regular /f.txt, O_RDONLY|O_LARGEFILE, offset 0, description 3\n",
	} {
		assert.Contains(t, r.stdout, want)
	}

	r = emuckpt(t, "inspect", "--json", image)
	require.Equal(t, 0, r.status, r.stderr)
	var in inspection
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &in))
	assert.Equal(t, root, in.Root)
	require.Len(t, in.FDs, 4)
	assert.Equal(t, inspectFD{FD: 3, Desc: 3, Kind: "regular", Path: "/f.txt", Flags: "O_RDONLY|O_LARGEFILE"}, in.FDs[3])

	r = emuckpt(t, "restore", image)
	assert.Equal(t, exitFailure, r.status)
	assert.Empty(t, r.stdout, "nothing runs")
	assert.Equal(t, "emuckpt: "+image+": the program ran with --root "+root+": restore it with --root "+root+" (or a copy of that directory)\n", r.stderr)

	r = emuckpt(t, "restore", "--root", root, image)
	assert.Equal(t, 0, r.status, r.stderr)
	assert.Contains(t, r.stdout, "inside the root")
}

func TestOpenFlags(t *testing.T) {
	for _, tt := range []struct {
		flags int
		want  string
	}{
		{0, "O_RDONLY"},
		{unix.O_WRONLY | unix.O_APPEND | 0x8000, "O_WRONLY|O_APPEND|O_LARGEFILE"},
		{unix.O_RDWR | unix.O_NONBLOCK | unix.O_ASYNC, "O_RDWR|O_ASYNC|O_NONBLOCK"},
		{unix.O_PATH | unix.O_DIRECTORY, "O_DIRECTORY|O_PATH"},
		{unix.O_RDONLY | unix.O_SYNC, "O_RDONLY|O_SYNC"},
		{unix.O_RDONLY | unix.O_DSYNC, "O_RDONLY|O_DSYNC"},
		{unix.O_WRONLY | 0o100000000000, "O_WRONLY|0100000000000"},
	} {
		assert.Equal(t, tt.want, openFlags(tt.flags), "%#o", tt.flags)
	}
}
