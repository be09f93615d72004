package vfs

import (
	"sort"
	"strconv"
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
}

// ProcFiles are the generated files of each /proc/PID and
// /proc/PID/task/TID directory.
var ProcFiles = []string{"cmdline", "comm", "maps", "stat", "status"}

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

// procfs builds the /proc directory over p.
type procfs struct{ p Processes }

// addProcfs registers /proc over p. /proc hides whatever directory the
// root has there.
func (fs *FS) addProcfs(p Processes) error {
	pf := procfs{p}
	dir := &node{kind: nodeDir}
	dir.dyn = &dynDir{
		lookup: func(name string) *node { return pf.rootEntry(dir, name) },
		list: func() []*node {
			out := []*node{pf.rootEntry(dir, "self"), pf.rootEntry(dir, "thread-self")}
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
	entries := append([]string{"exe"}, ProcFiles...)
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
