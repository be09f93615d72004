package main

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/emuckpt/emuckpt/internal/kvmtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// The real-program stage runs Debian's busybox-static and bash-static
// natively and under `emuckpt run --root`, and compares stdout, stderr and
// the exit status. Both runs start in the root directory with the program
// named by the same relative path (bin/busybox, bin/bash), so argv[0] and
// every path the programs print are the same. .ci/run installs the
// packages; a developer machine without them skips.

var realProgs = map[string][]string{
	"busybox": {"/usr/bin/busybox", "/bin/busybox"},
	"bash":    {"/bin/bash-static", "/usr/bin/bash-static"},
}

// realRow is one line of the table. A row with diff set is a known,
// documented difference: emuckpt must still end it cleanly (no signal, no
// emuckpt error) with status diffStatus.
type realRow struct {
	prog       string // busybox or bash
	args       []string
	diff       string
	diffStatus int
	// absolute: the output holds absolute paths, which match only when the
	// native run is chrooted into the root (as root).
	absolute bool
}

func bb(args ...string) realRow { return realRow{prog: "busybox", args: args} }
func bashc(script string) realRow {
	return realRow{prog: "bash", args: []string{"--norc", "--noprofile", "-c", script}}
}
func shc(script string) realRow   { return realRow{prog: "busybox", args: []string{"sh", "-c", script}} }
func (r realRow) chroot() realRow { r.absolute = true; return r }
func (r realRow) differs(reason string, status int) realRow {
	r.diff, r.diffStatus = reason, status
	return r
}

var realTable = []realRow{
	bb("cat", "data/words.txt"),
	bb("cat", "-n", "data/words.txt"),
	bb("cat", "data/missing"),
	bb("head", "-n", "3", "data/words.txt"),
	bb("head", "-c", "7", "data/words.txt"),
	bb("tail", "-n", "2", "data/words.txt"),
	bb("tail", "-c", "5", "data/words.txt"),
	bb("wc", "data/words.txt"),
	bb("wc", "-l", "data/words.txt", "data/table.csv"),
	bb("sort", "data/words.txt"),
	bb("sort", "-r", "-u", "data/words.txt"),
	bb("sort", "-t", ",", "-k", "2n", "data/table.csv"),
	bb("uniq", "-c", "data/sorted.txt"),
	bb("uniq", "-d", "data/sorted.txt"),
	bb("cut", "-d", ",", "-f", "1,3", "data/table.csv"),
	bb("cut", "-c", "1-3", "data/words.txt"),
	bb("tr", "a-z", "A-Z"), // stdin is /dev/null
	bb("sed", "-n", "2,4p", "data/words.txt"),
	bb("sed", "s/a/A/g", "data/words.txt"),
	bb("sed", "-e", "/fig/d", "-e", "1i\\top", "data/words.txt"),
	bb("awk", "-F,", "{ s += $2 } END { print s, NR }", "data/table.csv"),
	bb("awk", "BEGIN { for (i = 1; i <= 5; i++) printf \"%d^2=%d\\n\", i, i*i }"),
	bb("awk", "length($0) > 4", "data/words.txt"),
	bb("grep", "an", "data/words.txt"),
	bb("grep", "-c", "-v", "a", "data/words.txt"),
	bb("grep", "-n", "-E", "^(fig|date)$", "data/words.txt"),
	bb("grep", "nomatch", "data/words.txt"),
	bb("od", "-A", "x", "-t", "x1z", "data/table.csv"),
	bb("hexdump", "-C", "data/words.txt"),
	bb("md5sum", "data/words.txt", "data/table.csv"),
	bb("sha1sum", "data/words.txt"),
	bb("sha256sum", "data/words.txt"),
	bb("sha512sum", "data/table.csv"),
	bb("base64", "data/table.csv"),
	bb("base64", "-d", "data/b64.txt"),
	bb("cksum", "data/words.txt"),
	bb("expr", "7", "*", "6"),
	bb("expr", "length", "emuckpt"),
	bb("expr", "1", "=", "2"),
	bb("seq", "1", "3", "20"),
	bb("seq", "-s", ",", "5"),
	bb("printf", "%s-%05d-%x\\n", "a", "42", "255"),
	bb("echo", "-n", "no newline"),
	bb("echo", "-e", "tab\\there"),
	bb("basename", "/a/b/c.txt", ".txt"),
	bb("dirname", "/a/b/c.txt"),
	bb("ls", "data"),
	bb("ls", "-1", "-a", "bin"),
	bb("ls", "data/missing"),
	bb("stat", "-c", "%n %s %F", "data/words.txt", "data"),
	bb("readlink", "data/link"),
	bb("realpath", "data/link").chroot(),
	bb("true"),
	bb("false"),
	bb("test", "-f", "data/words.txt"),
	bb("test", "-d", "data/words.txt"),
	bb("env"),
	bb("nproc"),
	bb("id", "-u"),
	bb("pwd").chroot(),
	bb("rev", "data/words.txt"),
	bb("tac", "data/words.txt"),
	bb("nl", "data/words.txt"),
	bb("fold", "-w", "3", "data/table.csv"),
	bb("paste", "-s", "-d", ":", "data/words.txt"),
	bb("comm", "-12", "data/sorted.txt", "data/sorted.txt"),
	bb("cmp", "data/words.txt", "data/sorted.txt"),
	bb("strings", "data/table.csv"),
	bb("factor", "360", "97"),
	bb("xargs", "echo"), // echo is a NOFORK applet: no fork
	bb("timeout", "1", "true"),
	bb("find", "data", "-name", "w*", "-exec", "cat", "{}", ";"),
	shc("echo hello; x=3; echo $((x * 14))"),
	shc("for w in a b c; do printf '%s.' $w; done; echo"),
	shc("f() { echo \"args: $#\"; return 3; }; f 1 2; echo $?"),
	shc("set -- x y z; shift; echo \"$@\"; exit 5"),
	shc("cat data/words.txt | sort"),
	shc("busybox true"),
	bashc("echo $((2**10 + 7 % 3))"),
	bashc("s=emuckpt; echo ${#s} ${s:2:3} ${s^^} ${s/ck/CK}"),
	bashc("a=(one two three); a+=(four); echo ${#a[@]} ${a[2]} \"${a[@]:1:2}\""),
	bashc("declare -A m=([x]=1 [y]=2); for k in $(echo x y); do :; done; echo ${m[x]}${m[y]}"),
	bashc("printf '%-6s|%4d|%.2f\\n' ab 42 3.14159"),
	bashc("while read -r w; do n=$((n+1)); done < data/words.txt; echo $n"),
	bashc("mapfile -t l < data/words.txt; echo ${l[-1]} ${#l[@]}"),
	bashc("fact() { (( $1 <= 1 )) && echo 1 && return; echo $(( $1 * $(fact $(( $1 - 1 ))) )); }; fact 5"),
	bashc("fib() { local a=0 b=1 i; for ((i = 0; i < $1; i++)); do ((b += a, a = b - a)); done; echo $a; }; fib 30"),
	bashc("[[ abc == a* ]] && echo glob; [[ x =~ ^[a-z]$ ]] && echo re"),
	bashc("case foo in f*) echo f;; *) echo other;; esac"),
	bashc("x=5; let x*=3; echo $x; false; echo $?"),
	bashc("echo ${UNSET:-default} ${HOME}"),
	bashc("IFS=, read -r a b c < data/table.csv; echo $c$b$a"),
	bashc("while read -r l; do echo \"got $l\"; done < <(printf 'a\\nb\\n')"), // bash opens /dev/fd/63, a pipe
	bashc("busybox cat <(echo procsub) <(echo two)"),
	shc("cat /dev/stdin < data/words.txt | wc -l"),
	shc("echo to-stderr > /dev/stderr; echo to-stdout > /dev/stdout"),
	shc("readlink /proc/self/fd/0 /dev/stdin /dev/fd"),
	shc("exec 5< data/words.txt; readlink /proc/self/fd/5; head -1 /proc/self/fd/5").chroot(),
	shc("head -1 /proc/meminfo | cut -d: -f1; free > /dev/null && echo free-ok"),
	shc("awk '{print NF}' /proc/uptime /proc/loadavg; cut -c1-14 /proc/version; head -1 /proc/stat | cut -c1-4"),
	shc("cat /proc/sys/kernel/ostype /proc/sys/kernel/ngroups_max"),
	shc("grep -q '^flags' /proc/cpuinfo && grep -q '^processor' /proc/cpuinfo && echo cpuinfo-ok"),
	bashc("exit 42"),
	bashc("nosuchcommand"),
}

// realRoot builds the guest root: the static binaries in bin and the data
// files the table reads. It skips when a package is missing.
func realRoot(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "bin"), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "data"), 0o755))
	for name, paths := range realProgs {
		src := ""
		for _, p := range paths {
			if _, err := os.Stat(p); err == nil {
				src = p
				break
			}
		}
		if src == "" {
			t.Skipf("%s not found (%s): install Debian's busybox-static and bash-static", name, strings.Join(paths, ", "))
		}
		if f, err := elf.Open(src); err == nil {
			static := true
			for _, p := range f.Progs {
				static = static && p.Type != elf.PT_INTERP
			}
			f.Close()
			if !static {
				t.Skipf("%s is dynamically linked: install Debian's busybox-static and bash-static", src)
			}
		}
		b, err := os.ReadFile(src)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, "bin", name), b, 0o755))
	}
	words := "pear\napple\nfig\napple\nbanana\ncherry\nfig\ndate\n"
	files := map[string]string{
		"words.txt":  words,
		"sorted.txt": "apple\napple\nbanana\ncherry\ndate\nfig\nfig\npear\n",
		"table.csv":  "a,1,x\nb,2,y\nc,3,z\n",
		"b64.txt":    "ZW11Y2twdCByZWFsIHByb2dyYW1zCg==\n",
	}
	for name, text := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, "data", name), []byte(text), 0o644))
	}
	require.NoError(t, os.Symlink("words.txt", filepath.Join(dir, "data", "link")))
	if os.Geteuid() == 0 {
		// The chrooted native run needs /dev/null and udev's links into
		// /proc/self/fd, as the guest has them.
		dev := filepath.Join(dir, "dev")
		require.NoError(t, os.Mkdir(dev, 0o755))
		require.NoError(t, unix.Mknod(filepath.Join(dev, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
		for name, target := range map[string]string{"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0",
			"stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"} {
			require.NoError(t, os.Symlink(target, filepath.Join(dev, name)))
		}
		// The chrooted native run needs /proc/self/exe as the guest has
		// it: busybox runs its applets by exec'ing it.
		proc := filepath.Join(dir, "proc")
		require.NoError(t, os.Mkdir(proc, 0o555))
		require.NoError(t, unix.Mount("proc", proc, "proc", 0, ""), "mounting proc in the guest root")
		t.Cleanup(func() { unix.Unmount(proc, unix.MNT_DETACH) })
	}
	return dir
}

// runReal runs bin/PROG ARGS from root, natively or under emuckpt with
// extra run flags, with emuckpt's default environment.
func runReal(t *testing.T, root string, guest bool, flags []string, prog string, args ...string) result {
	t.Helper()
	name := "bin/" + prog
	var cmd *exec.Cmd
	if guest {
		argv := append(append(append([]string{"run", "--root", root, "--cwd", "/"}, flags...), name), args...)
		cmd = exec.Command(os.Args[0], argv...)
		cmd.Env = append(os.Environ(), "EMUCKPT_E2E_MAIN=1")
	} else {
		cmd = exec.Command(filepath.Join(root, name), args...)
		cmd.Args[0] = name
		cmd.Env = defaultEnv
		if os.Geteuid() == 0 {
			cmd.Path = "/" + name
			cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
			cmd.Dir = "/"
			return runCmd(t, cmd)
		}
	}
	cmd.Dir = root
	return runCmd(t, cmd)
}

// TestRealPrograms is the real-program stage: every row must match the
// native run, or be a documented difference that ends cleanly.
func TestRealPrograms(t *testing.T) {
	kvmtest.Require(t)
	root := realRoot(t)
	var match, documented, failed int
	for _, row := range realTable {
		name := row.prog + " " + strings.Join(row.args, " ")
		if len(name) > 60 {
			name = name[:60]
		}
		t.Run(name, func(t *testing.T) {
			if row.absolute && os.Geteuid() != 0 {
				t.Skip("prints absolute paths: the native run needs chroot, so root")
			}
			want := runReal(t, root, false, nil, row.prog, row.args...)
			got := runReal(t, root, true, nil, row.prog, row.args...)
			same := want == got
			switch {
			case row.diff != "":
				documented++
				t.Logf("documented difference (%s): status %d, stderr %q", row.diff, got.status, got.stderr)
				assert.False(t, same, "documented difference %q no longer differs: remove the mark", row.diff)
				assert.Equal(t, row.diffStatus, got.status, "status; stderr: %s", got.stderr)
				assert.NotContains(t, got.stderr, "emuckpt:", "emuckpt itself complained")
				assert.NotContains(t, got.stderr, "killed by")
				if t.Failed() {
					failed++
				}
			case same:
				match++
			default:
				failed++
				assert.Equal(t, want.stdout, got.stdout, "stdout")
				assert.Equal(t, want.stderr, got.stderr, "stderr")
				assert.Equal(t, want.status, got.status, "status")
			}
		})
	}
	t.Logf("real programs: %d rows: %d match, %d documented differences, %d fail", len(realTable), match, documented, failed)
}

// TestRealProgramsCheckpoint checkpoints a few rows after several system
// calls, restores each image in a fresh VM, and requires the output of the
// interrupted run followed by the restored run to equal the uninterrupted
// run's, with the same exit status.
func TestRealProgramsCheckpoint(t *testing.T) {
	kvmtest.Require(t)
	root := realRoot(t)
	dir := t.TempDir()
	for name, row := range map[string]realRow{
		"sha256sum": bb("sha256sum", "data/words.txt"),
		"sort":      bb("sort", "data/words.txt"),
		"bash loop": bashc("for ((i = 0; i < 12; i++)); do echo \"line $i $((i * i))\"; done; exit 3"),
	} {
		t.Run(name, func(t *testing.T) {
			want := runReal(t, root, true, nil, row.prog, row.args...)
			require.Equal(t, runReal(t, root, false, nil, row.prog, row.args...), want)
			traced := runReal(t, root, true, []string{"--trace"}, row.prog, row.args...)
			n := strings.Count(traced.stderr, "emuckpt: trace: ")
			require.Greater(t, n, 4)
			image := filepath.Join(dir, row.args[0]+".img")
			checked := 0
			for k := 1; k < n; k += max(1, n/6) { // the last call is exit_group
				os.Remove(image)
				first := runReal(t, root, true, []string{"--checkpoint-to", image, "--checkpoint-at", "syscall:" + itoa(k)}, row.prog, row.args...)
				// glibc's bash briefly holds a socket (it asks nscd for
				// the user): a checkpoint there is refused, as documented;
				// take the next call instead.
				for first.status == 125 && strings.Contains(first.stderr, "which images do not hold yet") && k+1 < n {
					os.Remove(image)
					k++
					first = runReal(t, root, true, []string{"--checkpoint-to", image, "--checkpoint-at", "syscall:" + itoa(k)}, row.prog, row.args...)
				}
				require.Equal(t, 0, first.status, "k=%d: %s", k, first.stderr)
				require.Contains(t, first.stderr, "checkpoint written to "+image)
				cmd := exec.Command(os.Args[0], "restore", "--root", root, image)
				cmd.Env = append(os.Environ(), "EMUCKPT_E2E_MAIN=1")
				second := runCmd(t, cmd)
				assert.Equal(t, want.stdout, first.stdout+second.stdout, "k=%d", k)
				assert.Equal(t, want.status, second.status, "k=%d: %s", k, second.stderr)
				assert.Equal(t, want.stderr, second.stderr, "k=%d", k)
				checked++
			}
			t.Logf("%d system calls, %d checkpoints restored", n, checked)
		})
	}
}
