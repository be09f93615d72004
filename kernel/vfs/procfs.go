package vfs

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Processes is what /proc shows: the guest's processes as the kernel sees
// them. The FS calls it while it resolves a path or lists a directory
// (with its lock held), and when a /proc file is read, so its methods must
// not call back into the FS; they run on the kernel's thread.
type Processes interface {
	// Self is the calling task: its process and thread ids.
	Self() (pid, tid int)
	// PIDs lists the processes not reaped yet, zombies included.
	PIDs() []int
	// Threads lists the threads of process pid (a zombie keeps its
	// leader); ok is false when there is no such process.
	Threads(pid int) (tids []int, ok bool)
	// File generates /proc/PID/NAME (tid 0) or /proc/PID/task/TID/NAME,
	// NAME one of ProcFiles; ok is false once the process or thread is
	// gone, and the read then returns end of file.
	File(pid, tid int, name string) (content []byte, ok bool)
	// Exe is the target of /proc/PID/exe: the guest path of the program;
	// ok is false when there is no such process or it is a zombie.
	Exe(pid int) (path string, ok bool)
	// Files is the descriptor table of process pid, for /proc/PID/fd;
	// nil when there is no such process or it is a zombie.
	Files(pid int) *FDTable
	// System generates /proc/NAME, NAME one of SystemFiles.
	System(name string) []byte
	// MappedFiles lists the mappings of files of process pid, for
	// /proc/PID/map_files; nil when there is no such process or it is a
	// zombie.
	MappedFiles(pid int) []MappedFile
}

// MappedFile is a mapping of a file: its range and the file's guest path.
type MappedFile struct {
	Start, End uint64
	Path       string
}

// SystemFiles are the generated files of /proc itself.
var SystemFiles = []string{"cpuinfo", "loadavg", "meminfo", "stat", "uptime", "version"}

// ProcFiles are the generated files of each /proc/PID and
// /proc/PID/task/TID directory.
var ProcFiles = []string{"cmdline", "comm", "maps", "stat", "status", "smaps"}

// dynDir is a directory whose entries the FS asks for at each lookup
// (/proc and its process directories), rather than a fixed set.
type dynDir struct {
	lookup func(name string) *node // nil when there is no such entry
	list   func() []*node
}

// Inode numbers of /proc entries: computed from the pid, tid and entry,
// so that the same path has the same number for as long as its process
// lives, as on Linux, and runs that make the same processes agree.
const procInoBase = 1 << 62

func procIno(pid, tid, entry int) uint64 {
	return procInoBase | uint64(entry)<<48 | uint64(pid&0xffffff)<<24 | uint64(tid&0xffffff)
}

// Entry numbers of procIno for what procfs.go adds after the first ones
// (1-5 and 6+ for ProcFiles, by position).
const (
	procEntryFdDir  = 32
	procEntryFd     = 33 // procIno(pid, fd, procEntryFd)
	procEntryMounts = 34
	procEntryLink   = 35 // /proc/mounts
	procEntryMapDir = 36
	procEntryMap    = 37 // procIno(pid, index of the mapping, procEntryMap)
	procEntrySystem = 40 // + position in SystemFiles
)

// procfs builds the /proc directory over p.
type procfs struct {
	fs *FS
	p  Processes
}

// addProcfs registers /proc over p. /proc hides whatever directory the
// root has there.
func (fs *FS) addProcfs(p Processes) error {
	pf := procfs{fs, p}
	dir := &node{kind: nodeDir}
	dir.dyn = &dynDir{
		lookup: func(name string) *node { return pf.rootEntry(dir, name) },
		list: func() []*node {
			out := []*node{pf.rootEntry(dir, "self"), pf.rootEntry(dir, "thread-self"), pf.rootEntry(dir, "mounts")}
			for _, name := range SystemFiles {
				out = append(out, pf.rootEntry(dir, name))
			}
			for _, pid := range p.PIDs() {
				out = append(out, pf.processDir(dir, pid, 0))
			}
			return out
		},
	}
	return fs.addNode("/proc", dir)
}

// rootEntry is /proc/NAME.
func (pf procfs) rootEntry(dir *node, name string) *node {
	switch name {
	case "self":
		pid, _ := pf.p.Self()
		return dynNode(dir, name, procIno(0, 0, 1), &node{kind: nodeSymlink, target: strconv.Itoa(pid)})
	case "thread-self":
		pid, tid := pf.p.Self()
		return dynNode(dir, name, procIno(0, 0, 2), &node{kind: nodeSymlink,
			target: strconv.Itoa(pid) + "/task/" + strconv.Itoa(tid)})
	case "mounts":
		return dynNode(dir, name, procIno(0, 0, procEntryLink), &node{kind: nodeSymlink, target: "self/mounts"})
	}
	for i, f := range SystemFiles {
		if f == name {
			return dynNode(dir, name, procIno(0, 0, procEntrySystem+i),
				&node{kind: nodeGenerated, content: func() []byte { return pf.p.System(name) }})
		}
	}
	pid, ok := procNumber(name)
	if !ok {
		return nil
	}
	if _, ok := pf.p.Threads(pid); !ok {
		return nil
	}
	return pf.processDir(dir, pid, 0)
}

// procNumber parses a pid or tid as a /proc entry name: decimal, no sign,
// no leading zero.
func procNumber(name string) (int, bool) {
	if name == "" || name[0] == '0' || len(name) > 9 {
		return 0, false
	}
	n, err := strconv.Atoi(name)
	if err != nil || n <= 0 || strconv.Itoa(n) != name {
		return 0, false
	}
	return n, true
}

// processDir is /proc/PID (tid 0) or /proc/PID/task/TID.
func (pf procfs) processDir(parent *node, pid, tid int) *node {
	name := strconv.Itoa(pid)
	if tid != 0 {
		name = strconv.Itoa(tid)
	}
	d := dynNode(parent, name, procIno(pid, tid, 3), &node{kind: nodeDir})
	entries := append([]string{"exe", "fd", "map_files", "mounts"}, ProcFiles...)
	if tid == 0 {
		entries = append(entries, "task")
	}
	sort.Strings(entries)
	d.dyn = &dynDir{
		lookup: func(name string) *node { return pf.processEntry(d, pid, tid, name) },
		list: func() []*node {
			var out []*node
			for _, e := range entries {
				if n := pf.processEntry(d, pid, tid, e); n != nil {
					out = append(out, n)
				}
			}
			return out
		},
	}
	return d
}

// processEntry is /proc/PID/NAME or /proc/PID/task/TID/NAME.
func (pf procfs) processEntry(d *node, pid, tid int, name string) *node {
	switch name {
	case "exe":
		exe, ok := pf.p.Exe(pid)
		if !ok {
			// A zombie's link has no target, as on Linux (ENOENT).
			return dynNode(d, name, procIno(pid, tid, 4), &node{kind: nodeSymlink})
		}
		return dynNode(d, name, procIno(pid, tid, 4), &node{kind: nodeSymlink, target: exe})
	case "fd":
		return pf.fdDir(d, pid, tid)
	case "map_files":
		return pf.mapFilesDir(d, pid, tid)
	case "mounts":
		return dynNode(d, name, procIno(pid, tid, procEntryMounts), &node{kind: nodeGenerated, content: pf.fs.mountsText})
	case "task":
		if tid != 0 {
			return nil
		}
		t := dynNode(d, name, procIno(pid, 0, 5), &node{kind: nodeDir})
		t.dyn = &dynDir{
			lookup: func(name string) *node {
				id, ok := procNumber(name)
				if !ok {
					return nil
				}
				tids, _ := pf.p.Threads(pid)
				for _, x := range tids {
					if x == id {
						return pf.processDir(t, pid, id)
					}
				}
				return nil
			},
			list: func() []*node {
				tids, _ := pf.p.Threads(pid)
				out := make([]*node, 0, len(tids))
				for _, x := range tids {
					out = append(out, pf.processDir(t, pid, x))
				}
				return out
			},
		}
		return t
	}
	for i, f := range ProcFiles {
		if f == name {
			content := func() []byte {
				b, _ := pf.p.File(pid, tid, name)
				return b
			}
			return dynNode(d, name, procIno(pid, tid, 6+i), &node{kind: nodeGenerated, content: content})
		}
	}
	return nil
}

// dynNode fills in a node of a dynamic directory: it is made afresh at
// each lookup and is not linked into its parent's children.
func dynNode(parent *node, name string, ino uint64, n *node) *node {
	n.name, n.parent, n.ino = name, parent, ino
	if n.kind == nodeDir && n.children == nil {
		n.children = map[string]*node{}
	}
	return n
}

// child is the entry name of directory n, static or dynamic; nil if none.
// The caller holds FS.mu.
func (n *node) child(name string) *node {
	if c := n.children[name]; c != nil {
		return c
	}
	if n.dyn != nil {
		return n.dyn.lookup(name)
	}
	return nil
}

// hidesHost reports whether directory n hides the root's directory at its
// path: a tmpfs mount, /proc and what is under it.
func (n *node) hidesHost() bool {
	return n.ti != nil || n.dyn != nil
}

// fdDir is /proc/PID/fd: a link per open descriptor, readable only while
// the process lives.
func (pf procfs) fdDir(parent *node, pid, tid int) *node {
	d := dynNode(parent, "fd", procIno(pid, tid, procEntryFdDir), &node{kind: nodeDir})
	d.dyn = &dynDir{
		lookup: func(name string) *node {
			fd, err := strconv.Atoi(name)
			if err != nil || fd < 0 || strconv.Itoa(fd) != name {
				return nil
			}
			return pf.fdLink(d, pid, fd)
		},
		// The listing names the links without looking at their files:
		// one of them may be the directory being read, whose lock the
		// read holds.
		list: func() []*node {
			var out []*node
			if t := pf.p.Files(pid); t != nil {
				for _, fd := range t.Open() {
					out = append(out, dynNode(d, strconv.Itoa(fd), procIno(pid, fd, procEntryFd), &node{kind: nodeSymlink}))
				}
			}
			return out
		},
	}
	return d
}

// fdLink is /proc/PID/fd/N: a symbolic link whose target reads as Linux
// shows it (a path, "pipe:[INO]", "socket:[INO]", "anon_inode:[...]").
// Opening it opens the file again: through its path where it has one;
// a standard stream, a pipe, or a tmpfs or memfd file (also once
// unlinked), is reopened directly, as Linux's magic links do. Sockets and
// the anonymous inodes cannot be opened this way here (ENOENT, as their
// target names no file; Linux gives ENXIO).
func (pf procfs) fdLink(d *node, pid, fd int) *node {
	t := pf.p.Files(pid)
	if t == nil {
		return nil
	}
	f, errno := t.Get(fd)
	if errno != 0 {
		return nil
	}
	desc := f.Describe()
	n := &node{kind: nodeSymlink, target: fdTarget(f, desc)}
	switch desc.Kind {
	case KindStdio, KindTmpfs:
		n.reopen = func(_ []byte, flags int) (File, unix.Errno) {
			s := desc
			s.Flags, s.Offset = flags&^(unix.O_CREAT|unix.O_EXCL|unix.O_NOCTTY|unix.O_TRUNC), 0
			return pf.fs.Reopen(s)
		}
		n.magicStat = f.Stat
	case KindPipe:
		if e, ok := f.(*pipeEnd); ok {
			n.reopen = func(_ []byte, flags int) (File, unix.Errno) { return reopenPipe(e, flags) }
			n.magicStat = f.Stat
		}
	}
	return dynNode(d, strconv.Itoa(fd), procIno(pid, fd, procEntryFd), n)
}

// fdTarget is what readlink of /proc/PID/fd/N gives for f.
func fdTarget(f File, desc FileState) string {
	ino := func() uint64 {
		st, _ := f.Stat()
		return st.Ino
	}
	switch desc.Kind {
	case KindPipe:
		return fmt.Sprintf("pipe:[%d]", ino())
	case KindSocket:
		return fmt.Sprintf("socket:[%d]", ino())
	case KindStdio:
		return stdioTarget(f, desc.Path)
	}
	if desc.Path == "" {
		return fmt.Sprintf("anon_inode:[%d]", ino())
	}
	return desc.Path
}

// stdioTarget names a host standard stream as Linux would, without showing
// a host path: a pipe or socket by its inode, a terminal or other device
// by its /dev name, and a host file as /dev/stdin, /dev/stdout or
// /dev/stderr.
func stdioTarget(f File, name string) string {
	st, _ := f.Stat()
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFIFO:
		return fmt.Sprintf("pipe:[%d]", st.Ino)
	case unix.S_IFSOCK:
		return fmt.Sprintf("socket:[%d]", st.Ino)
	case unix.S_IFCHR:
		if s, ok := f.(*stdioFile); ok {
			if p, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(s.fd)); err == nil && strings.HasPrefix(p, "/dev/") {
				return p
			}
		}
	}
	return "/dev/" + name
}

// mapFilesDir is /proc/PID/map_files: a link named START-END (lower-case
// hex, no leading zeros) per mapping of a file, to the file's path.
func (pf procfs) mapFilesDir(parent *node, pid, tid int) *node {
	d := dynNode(parent, "map_files", procIno(pid, tid, procEntryMapDir), &node{kind: nodeDir})
	link := func(i int, m MappedFile) *node {
		return dynNode(d, fmt.Sprintf("%x-%x", m.Start, m.End), procIno(pid, i, procEntryMap),
			&node{kind: nodeSymlink, target: m.Path})
	}
	d.dyn = &dynDir{
		lookup: func(name string) *node {
			for i, m := range pf.p.MappedFiles(pid) {
				if name == fmt.Sprintf("%x-%x", m.Start, m.End) {
					return link(i, m)
				}
			}
			return nil
		},
		list: func() []*node {
			var out []*node
			for i, m := range pf.p.MappedFiles(pid) {
				out = append(out, link(i, m))
			}
			return out
		},
	}
	return d
}
