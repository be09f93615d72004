package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/emuckpt/emuckpt/ckpt"
	"github.com/emuckpt/emuckpt/kernel"
	"github.com/emuckpt/emuckpt/kernel/vfs"
	"golang.org/x/sys/unix"
)

// inspect prints what an image holds. An image may hold a great many
// VMAs (restore refuses more than 65530, but inspect shows any image), so
// everything here is linear in their number and the output is streamed:
// one pass over the VMAs to sum the totals and size the columns, one to
// print them through a buffer. Before, the whole output sat in memory
// (text/tabwriter's cells, json.Encoder's indented buffer) and the table
// went out with a write(2) per cell: 14 s for a million VMAs.

// inspection is the stable JSON form of `emuckpt inspect --json`
// (documented in docs/FORMAT.md).
type inspection struct {
	Image   string `json:"image"`
	Version uint32 `json:"format_version"`
	Size    int64  `json:"size"`
	// Chain is the image and its parents down to the full image, for an
	// incremental image; absent for a full one.
	Chain   []inspectLink     `json:"chain,omitempty"`
	Program kernel.ProgramRef `json:"program"`
	// Root is the --root of the run ("" without one, or in an image from
	// before it was recorded).
	Root     string          `json:"root,omitempty"`
	Clock    string          `json:"clock"`
	Syscalls uint64          `json:"syscalls"`
	Tasks    []inspectTask   `json:"tasks"`
	Devices  []string        `json:"device_state,omitempty"`
	Objects  []kernel.Object `json:"objects,omitempty"`
	Tmpfs    []inspectMount  `json:"tmpfs,omitempty"`
	// Timers are the guest's armed timers (alarm, setitimer, timer_create).
	Timers []kernel.Timer `json:"timers,omitempty"`
	// Processes is the process tree (parents before children); FDs
	// are the first process's descriptors, as before trees.
	Processes []inspectProcess `json:"processes"`
	FDs       []inspectFD      `json:"fds"`
	Totals    inspectTotals    `json:"totals"`
}

// inspectLink is one image of a chain.
type inspectLink struct {
	Image        string `json:"image"`
	HeaderSHA256 string `json:"header_sha256"`
	PageCount    uint64 `json:"page_count"`
	StoredPages  uint64 `json:"stored_pages"`
	FromParent   uint64 `json:"from_parent"`
	Size         int64  `json:"size"`
}

// inspectProcess is one process of the tree. What it shares with another
// process names that process (its pid); open file descriptions shared
// across processes have the same desc number, pipe ends name their pipe.
type inspectProcess struct {
	PID              int         `json:"pid"`
	PPID             int         `json:"ppid"`
	PGID             int         `json:"pgid"`
	SID              int         `json:"sid"`
	State            string      `json:"state"` // "live", or "zombie (exit N)" / "zombie (SIGNAME)"
	Threads          int         `json:"threads"`
	Cmdline          []string    `json:"cmdline"`
	Exe              string      `json:"exe"`
	SharesMemoryWith int         `json:"shares_memory_with,omitempty"`
	SharesFilesWith  int         `json:"shares_files_with,omitempty"`
	FDs              []inspectFD `json:"fds"`
}

// inspectFD is one open descriptor.
type inspectFD struct {
	FD      int    `json:"fd"`
	Cloexec bool   `json:"cloexec"`
	Desc    int    `json:"desc"` // descriptors with the same desc share an open file description
	Kind    string `json:"kind"`
	Path    string `json:"path"`
	Flags   string `json:"flags"` // as open(2) spells them: O_RDONLY|O_NONBLOCK
	Offset  int64  `json:"offset"`
	Pipe    int    `json:"pipe,omitempty"` // a pipe end's pipe (objref)
	Mount   string `json:"mount,omitempty"`
	Ino     uint64 `json:"ino,omitempty"`
}

// openFlagNames are the flags an open file description keeps, after the
// access mode, in the order open(2) lists them.
var openFlagNames = []struct {
	bit  int
	name string
}{
	{unix.O_APPEND, "O_APPEND"}, {unix.O_ASYNC, "O_ASYNC"}, {unix.O_DIRECT, "O_DIRECT"},
	{unix.O_DIRECTORY, "O_DIRECTORY"}, {0x8000, "O_LARGEFILE"}, {unix.O_NOATIME, "O_NOATIME"},
	{unix.O_NOFOLLOW, "O_NOFOLLOW"}, {unix.O_NONBLOCK, "O_NONBLOCK"}, {unix.O_PATH, "O_PATH"},
	{unix.O_SYNC, "O_SYNC"}, {unix.O_DSYNC, "O_DSYNC"},
}

// openFlags spells the flags of an open file description.
func openFlags(f int) string {
	names := []string{"O_RDONLY"}
	switch f & unix.O_ACCMODE {
	case unix.O_WRONLY:
		names[0] = "O_WRONLY"
	case unix.O_RDWR:
		names[0] = "O_RDWR"
	case unix.O_ACCMODE:
		names[0] = "O_ACCMODE"
	}
	rest := f &^ unix.O_ACCMODE
	if rest&unix.O_PATH != 0 && f&unix.O_ACCMODE == 0 {
		names = names[:0] // O_PATH ignores the access mode
	}
	for _, n := range openFlagNames {
		if rest&n.bit == n.bit {
			names = append(names, n.name)
			rest &^= n.bit
		}
	}
	if rest != 0 {
		names = append(names, fmt.Sprintf("%#o", rest))
	}
	return strings.Join(names, "|")
}

func inspectFDs(fds []vfs.FDEntry) []inspectFD {
	out := make([]inspectFD, 0, len(fds))
	for _, e := range fds {
		out = append(out, inspectFD{FD: e.FD, Cloexec: e.CloseOnExec, Desc: e.Desc, Kind: string(e.File.Kind),
			Path: e.File.Path, Flags: openFlags(e.File.Flags), Offset: e.File.Offset, Pipe: e.File.Pipe, Mount: e.File.Mount, Ino: e.File.Ino})
	}
	return out
}

// inspectMount is a tmpfs mount of the image and its files.
type inspectMount struct {
	Path        string         `json:"path"`
	Size        int64          `json:"size"`
	StoredBytes int64          `json:"stored_bytes"`
	Inodes      []inspectInode `json:"inodes"`
}

// inspectInode is one tmpfs inode: its names (none for a file unlinked
// while open, or O_TMPFILE), type and size, and the bytes the image
// stores for it.
type inspectInode struct {
	Ino         uint64   `json:"ino"`
	Type        string   `json:"type"` // "dir", "file" or "symlink"
	Mode        string   `json:"mode"` // permission bits, octal
	Nlink       uint64   `json:"nlink"`
	Size        int64    `json:"size"`
	StoredBytes int64    `json:"stored_bytes"`
	Paths       []string `json:"paths"`
	Target      string   `json:"target,omitempty"`
}

// inspectTmpfs describes the tmpfs mounts of a (validated) state.
func inspectTmpfs(mounts []vfs.MountState) []inspectMount {
	var out []inspectMount
	for _, m := range mounts {
		byIno := map[uint64]*vfs.InodeState{}
		for i := range m.Inodes {
			byIno[m.Inodes[i].Ino] = &m.Inodes[i]
		}
		paths := map[uint64][]string{m.Root: {m.Path}}
		var walk func(ino uint64, dir string)
		walk = func(ino uint64, dir string) {
			for _, e := range byIno[ino].Entries {
				p := dir + "/" + e.Name
				paths[e.Ino] = append(paths[e.Ino], p)
				if c := byIno[e.Ino]; c != nil && c.Mode&unix.S_IFMT == unix.S_IFDIR {
					walk(e.Ino, p)
				}
			}
		}
		if byIno[m.Root] != nil {
			walk(m.Root, m.Path)
		}
		im := inspectMount{Path: m.Path, Size: m.Size}
		for _, in := range m.Inodes {
			ii := inspectInode{Ino: in.Ino, Type: "file", Mode: fmt.Sprintf("%04o", in.Mode&0o7777), Nlink: in.Nlink,
				Size: in.Size, StoredBytes: int64(len(in.Pages)) * 4096, Paths: paths[in.Ino], Target: in.Target}
			switch in.Mode & unix.S_IFMT {
			case unix.S_IFDIR:
				ii.Type, ii.Nlink = "dir", 0
			case unix.S_IFLNK:
				ii.Type, ii.Size = "symlink", int64(len(in.Target))
			}
			if ii.Paths == nil {
				ii.Paths = []string{}
			}
			im.StoredBytes += ii.StoredBytes
			im.Inodes = append(im.Inodes, ii)
		}
		out = append(out, im)
	}
	return out
}

type inspectTask struct {
	PID int    `json:"pid"`
	TID int    `json:"tid"`
	RIP uint64 `json:"rip"`
	RSP uint64 `json:"rsp"`
	// Blocked: the task waits in a system call, made again at restore.
	Blocked bool `json:"blocked,omitempty"`
	// VMAs are the process's VMAs (every task of a process shares them).
	// inspect leaves them out; the writers stream them from the state.
	VMAs []inspectVMA `json:"vmas"`
}

type inspectVMA struct {
	Start       uint64 `json:"start"`
	End         uint64 `json:"end"`
	Perms       string `json:"perms"`
	Offset      uint64 `json:"offset"`
	Type        string `json:"type"`
	Device      string `json:"device_type,omitempty"`
	Backing     string `json:"backing,omitempty"`
	StoredBytes uint64 `json:"stored_bytes"`
	ZeroPages   uint64 `json:"zero_pages"`
}

type inspectTotals struct {
	VMAs        int    `json:"vmas"`
	StoredPages uint64 `json:"stored_pages"`
	StoredBytes uint64 `json:"stored_bytes"`
	ZeroPages   uint64 `json:"zero_pages"`
}

func perms(v *kernel.VMAState) string {
	b := []byte("---p")
	if v.Prot&1 != 0 {
		b[0] = 'r'
	}
	if v.Prot&2 != 0 {
		b[1] = 'w'
	}
	if v.Prot&4 != 0 {
		b[2] = 'x'
	}
	if v.Shared {
		b[3] = 's'
	}
	return string(b)
}

func inspectVMAOf(v *kernel.VMAState) inspectVMA {
	return inspectVMA{Start: v.Start, End: v.End, Perms: perms(v), Offset: v.Offset, Type: v.Type,
		Device: v.Device, Backing: v.Name, StoredBytes: v.Stored() * 4096, ZeroPages: v.ZeroPages}
}

// inspect describes an image: everything but the VMAs of each task, which
// the writers take from the state (vmasOfTask) one at a time.
func inspect(path string, img *ckpt.Image) inspection {
	st := img.State
	info := img.Info()
	out := inspection{Image: path, Version: info.Version, Size: info.Size, Program: st.Program, Root: st.Root,
		FDs: inspectFDs(st.Processes[0].FDs), Clock: "host", Syscalls: st.Syscalls, Objects: st.Objects, Tmpfs: inspectTmpfs(st.Tmpfs)}
	for _, tm := range st.Time.Timers {
		if tm.Expiry != 0 || tm.Remaining != 0 {
			out.Timers = append(out.Timers, tm)
		}
	}
	if st.Clock.Virtual {
		out.Clock = fmt.Sprintf("virtual, %d ns", st.Clock.NS)
	}
	if chain := img.Chain(); len(chain) > 1 {
		for _, l := range chain {
			out.Chain = append(out.Chain, inspectLink{Image: l.Path, HeaderSHA256: l.HeaderSHA256, PageCount: l.PageCount,
				StoredPages: l.StoredPages, FromParent: l.FromParent, Size: l.Size})
		}
	}
	for _, d := range st.Devices {
		out.Devices = append(out.Devices, d.Name)
	}
	for i := range st.Processes {
		ps := &st.Processes[i]
		ip := inspectProcess{PID: ps.PID, PPID: ps.PPID, PGID: ps.PGID, SID: ps.SID, State: "live", Threads: len(ps.Tasks),
			Cmdline: ps.Args, Exe: ps.Exe, SharesMemoryWith: ps.SharesMemoryWith, SharesFilesWith: ps.SharesFilesWith,
			FDs: inspectFDs(ps.FDs)}
		if ip.Cmdline == nil {
			ip.Cmdline = []string{}
		}
		if ps.Zombie {
			ip.State = fmt.Sprintf("zombie (exit %d)", ps.Status.Code)
			if ps.Status.Signal != 0 {
				ip.State = "zombie (" + kernel.SignalName(ps.Status.Signal) + ")"
			}
		}
		out.Processes = append(out.Processes, ip)
		var perTask inspectTotals
		for _, v := range taskVMAs(st, ps) {
			perTask.VMAs++
			perTask.StoredPages += v.Stored()
			perTask.ZeroPages += v.ZeroPages
		}
		for _, ts := range ps.Tasks {
			out.Tasks = append(out.Tasks, inspectTask{PID: ps.PID, TID: ts.TID, RIP: ts.Regs.RIP, RSP: ts.Regs.RSP, Blocked: ts.Blocked})
			// The totals count each task's table, as they always have.
			out.Totals.VMAs += perTask.VMAs
			out.Totals.StoredPages += perTask.StoredPages
			out.Totals.ZeroPages += perTask.ZeroPages
		}
	}
	out.Totals.StoredBytes = out.Totals.StoredPages * 4096
	return out
}

// taskVMAs are the VMAs of a process's tasks: its own, or those of the
// process whose memory it shares.
func taskVMAs(st *kernel.State, ps *kernel.ProcessState) []kernel.VMAState {
	if ps.SharesMemoryWith != 0 {
		for i := range st.Processes {
			if st.Processes[i].PID == ps.SharesMemoryWith {
				return st.Processes[i].VMAs
			}
		}
	}
	return ps.VMAs
}

// vmasOfTask returns, for each task of st in order, its VMAs.
func vmasOfTask(st *kernel.State) func(task int) []kernel.VMAState {
	var per [][]kernel.VMAState
	for i := range st.Processes {
		ps := &st.Processes[i]
		for range ps.Tasks {
			per = append(per, taskVMAs(st, ps))
		}
	}
	return func(task int) []kernel.VMAState { return per[task] }
}

func cmdInspect(args []string, stdout, stderr *os.File) int {
	fs := flag.NewFlagSet("inspect", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON (stable; see docs/FORMAT.md)")
	if ok, st := parseFlags(fs, args, "usage: emuckpt inspect [--json] IMAGE\n\nShows a checkpoint image: header, the --root of the run, open descriptors,\ntasks and, per task, its VMAs with their type, backing object and stored\nbytes.\n\nFlags:\n", stderr); !ok {
		return st
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "emuckpt: inspect: want exactly one IMAGE")
		return exitFailure
	}
	img, err := ckpt.Open(fs.Arg(0))
	if err != nil {
		return imageError(stderr, fs.Arg(0), err)
	}
	defer img.Close()
	if err := img.Verify(); err != nil {
		return imageError(stderr, fs.Arg(0), err)
	}
	in := inspect(fs.Arg(0), img)
	w := bufio.NewWriterSize(stdout, 1<<16)
	if *asJSON {
		err = writeInspectJSON(w, in, vmasOfTask(img.State))
	} else {
		writeInspectText(w, in, vmasOfTask(img.State))
	}
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		fmt.Fprintf(stderr, "emuckpt: inspect: %v\n", err)
		return exitFailure
	}
	return 0
}

// writeInspectJSON writes in, with vmas as every task's VMAs, as indented
// JSON: the bytes json.MarshalIndent(in, "", "  ") would give with the
// VMAs filled in, plus a newline, but one VMA at a time.
func writeInspectJSON(w *bufio.Writer, in inspection, vmasOf func(task int) []kernel.VMAState) error {
	tasks := in.Tasks
	in.Tasks = nil
	top, err := json.MarshalIndent(in, "", "  ")
	if err != nil {
		return err
	}
	// Strings are escaped in JSON (a newline is \n), so a raw newline
	// followed by exactly two spaces starts a top-level field: this is
	// the tasks field and nothing else.
	before, after, ok := bytes.Cut(top, []byte("\n  \"tasks\": null"))
	if !ok {
		return fmt.Errorf("internal error: no tasks field in %.100s", top)
	}
	w.Write(before)
	w.WriteString("\n  \"tasks\": ")
	if err := writeJSONList(w, "  ", len(tasks), func(i int, prefix string) error {
		t := tasks[i]
		t.VMAs = nil
		b, err := json.MarshalIndent(t, prefix, "  ")
		if err != nil {
			return err
		}
		before, after, ok := bytes.Cut(b, []byte("\n"+prefix+"  \"vmas\": null"))
		if !ok {
			return fmt.Errorf("internal error: no vmas field in %.100s", b)
		}
		w.Write(before)
		w.WriteString("\n" + prefix + "  \"vmas\": ")
		vmas := vmasOf(i)
		if err := writeJSONList(w, prefix+"  ", len(vmas), func(j int, prefix string) error {
			b, err := json.MarshalIndent(inspectVMAOf(&vmas[j]), prefix, "  ")
			w.Write(b)
			return err
		}); err != nil {
			return err
		}
		w.Write(after)
		return nil
	}); err != nil {
		return err
	}
	w.Write(after)
	w.WriteString("\n")
	return nil
}

// writeJSONList writes a JSON array of n elements, indented as
// json.MarshalIndent does at prefix: elem writes element i, whose own
// lines start with the prefix it is given. A nil slice is null in
// MarshalIndent's output; an empty list here is [] (the same value for a
// reader).
func writeJSONList(w *bufio.Writer, prefix string, n int, elem func(i int, prefix string) error) error {
	if n == 0 {
		w.WriteString("[]")
		return nil
	}
	w.WriteString("[")
	for i := range n {
		if i > 0 {
			w.WriteString(",")
		}
		w.WriteString("\n" + prefix + "  ")
		if err := elem(i, prefix+"  "); err != nil {
			return err
		}
	}
	w.WriteString("\n" + prefix + "]")
	return nil
}

// writeInspectText writes in as text: a header, then per task a table
// like /proc/PID/maps. Strings that come from the image are quoted if
// they hold anything but printable characters, so that an image cannot
// send escape sequences to a terminal or break the table.
func writeInspectText(w io.Writer, in inspection, vmasOf func(task int) []kernel.VMAState) {
	fmt.Fprintf(w, "image %s: format version %d, %d bytes\n", in.Image, in.Version, in.Size)
	if len(in.Chain) > 0 {
		fmt.Fprintf(w, "incremental: a chain of %d images, this one first, its full image last\n", len(in.Chain))
		for i, l := range in.Chain {
			fmt.Fprintf(w, "  %d %s: %d pages, %d stored, %d from its parent; %d bytes; header sha256 %s\n",
				i, printable(l.Image), l.PageCount, l.StoredPages, l.FromParent, l.Size, l.HeaderSHA256)
		}
	}
	fmt.Fprintf(w, "program %s (sha256 %s)\nclock %s, %d system calls\n", printable(in.Program.Path), printable(in.Program.SHA256), in.Clock, in.Syscalls)
	if in.Root != "" {
		fmt.Fprintf(w, "root %s (restore needs --root: this directory or a copy of it)\n", printable(in.Root))
	}
	if len(in.Devices) > 0 {
		names := make([]string, len(in.Devices))
		for i, d := range in.Devices {
			names[i] = printable(d)
		}
		fmt.Fprintf(w, "device state saved for: %s\n", strings.Join(names, ", "))
	}
	for _, o := range in.Objects {
		fmt.Fprintf(w, "object %d: %s %s\n", o.Ref, printable(o.Kind), printable(o.Path))
	}
	for _, m := range in.Tmpfs {
		fmt.Fprintf(w, "tmpfs %s: size %d, %d inodes, %d bytes stored\n", printable(m.Path), m.Size, len(m.Inodes), m.StoredBytes)
		for _, in := range m.Inodes {
			where := "(no name: unlinked while open, or O_TMPFILE)"
			if len(in.Paths) > 0 {
				names := make([]string, len(in.Paths))
				for i, p := range in.Paths {
					names[i] = printable(p)
				}
				where = strings.Join(names, ", ")
			}
			fmt.Fprintf(w, "  %s %d %s %d bytes: %s\n", in.Type, in.Ino, in.Mode, in.Size, where)
		}
	}
	for _, p := range in.Processes {
		args := make([]string, len(p.Cmdline))
		for i, a := range p.Cmdline {
			args[i] = printable(a)
		}
		fmt.Fprintf(w, "%s\n", processLine(p, args))
		if p.SharesMemoryWith != 0 {
			fmt.Fprintf(w, "  shares the memory of process %d\n", p.SharesMemoryWith)
		}
		if p.SharesFilesWith != 0 {
			fmt.Fprintf(w, "  shares the descriptors of process %d\n", p.SharesFilesWith)
		}
		if p.PID != in.Processes[0].PID {
			writeInspectFDs(w, "  ", p.FDs)
		}
	}
	writeInspectFDs(w, "", in.FDs)
	for _, tm := range in.Timers {
		when := fmt.Sprintf("in %d ns", tm.Remaining)
		if tm.Expiry != 0 {
			when = fmt.Sprintf("at %d ns (CLOCK_REALTIME)", tm.Expiry)
		}
		what := kernel.SignalName(tm.Signo)
		if tm.Kind == kernel.TimerFD {
			what = fmt.Sprintf("%d expiries unread,", tm.Ticks)
		}
		fmt.Fprintf(w, "timer %s %d: %s fires %s, interval %d ns\n", printable(tm.Kind), tm.ID, what, when, tm.Interval)
	}
	// Column widths as text/tabwriter computed them (minimum 2, padding
	// 2), from a first pass; the last column is not padded.
	header := [...]string{"RANGE", "PERMS", "OFFSET", "TYPE", "STORED", "ZERO PAGES", "BACKING"}
	var width [len(header) - 1]int
	for c := range width {
		width[c] = utf8.RuneCountInString(header[c])
	}
	for t := range in.Tasks {
		vmas := vmasOf(t)
		for i := range vmas {
			cells := tableRow(&vmas[i])
			for c := range width {
				width[c] = max(width[c], utf8.RuneCountInString(cells[c]))
			}
		}
	}
	row := func(cells [len(header)]string) {
		for c, cell := range cells[:len(width)] {
			io.WriteString(w, cell)
			io.WriteString(w, strings.Repeat(" ", width[c]+2-utf8.RuneCountInString(cell)))
		}
		io.WriteString(w, cells[len(width)])
		io.WriteString(w, "\n")
	}
	for ti, t := range in.Tasks {
		blocked := ""
		if t.Blocked {
			blocked = ", waiting in a system call"
		}
		fmt.Fprintf(w, "\ntask pid %d tid %d: rip %#x rsp %#x%s\n", t.PID, t.TID, t.RIP, t.RSP, blocked)
		row(header)
		vmas := vmasOf(ti)
		for i := range vmas {
			row(tableRow(&vmas[i]))
		}
	}
	fmt.Fprintf(w, "\ntotal: %d VMAs, %d pages stored (%d bytes), %d zero pages not stored\n",
		in.Totals.VMAs, in.Totals.StoredPages, in.Totals.StoredBytes, in.Totals.ZeroPages)
}

// processLine is a process's line of the text: ids, state, threads, and
// its program and command line when the image names them.
func processLine(p inspectProcess, args []string) string {
	line := fmt.Sprintf("process %d (ppid %d, pgid %d, sid %d): %s, %d threads", p.PID, p.PPID, p.PGID, p.SID, p.State, p.Threads)
	if p.Exe != "" {
		line += ", exe " + printable(p.Exe)
	}
	if len(args) > 0 {
		line += ": " + strings.Join(args, " ")
	}
	return line
}

// writeInspectFDs writes descriptors, one line each.
func writeInspectFDs(w io.Writer, indent string, fds []inspectFD) {
	for _, fd := range fds {
		what := fmt.Sprintf("%s %s", fd.Kind, printable(fd.Path))
		switch {
		case fd.Kind == string(vfs.KindTmpfs):
			what += fmt.Sprintf(" (inode %d of %s)", fd.Ino, printable(fd.Mount))
		case fd.Pipe != 0:
			what += fmt.Sprintf(" (pipe %d)", fd.Pipe)
		}
		cloexec := ""
		if fd.Cloexec {
			cloexec = ", close-on-exec"
		}
		fmt.Fprintf(w, indent+"fd %d: %s, %s, offset %d, description %d%s\n", fd.FD, what, fd.Flags, fd.Offset, fd.Desc, cloexec)
	}
}

// tableRow is one VMA's line of the text table.
func tableRow(v *kernel.VMAState) [7]string {
	typ := printable(v.Type)
	if v.Device != "" {
		typ += "(" + printable(v.Device) + ")"
	}
	return [7]string{
		fmt.Sprintf("%08x-%08x", v.Start, v.End), perms(v), fmt.Sprintf("%08x", v.Offset), typ,
		strconv.FormatUint(v.Stored()*4096, 10), strconv.FormatUint(v.ZeroPages, 10), printable(v.Name),
	}
}

// printable returns s if it is valid UTF-8 of printable characters, and s
// quoted (with Go escapes) otherwise.
func printable(s string) string {
	for _, r := range s {
		if r == utf8.RuneError || !strconv.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}
