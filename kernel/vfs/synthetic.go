package vfs

import (
	"fmt"
	"sort"

	"golang.org/x/sys/unix"
)

// syntheticDev is the st_dev of every synthetic file, as if they all lived
// on one devtmpfs.
var syntheticDev = Makedev(0, 5)

// firstSyntheticIno is the inode number of the synthetic root; the others
// follow in registration order, so they are the same in every run that
// registers the same entries.
const firstSyntheticIno = 1

type nodeKind int

const (
	nodeDir nodeKind = iota
	nodeDevice
	nodeGenerated
	nodeSymlink
	nodeRegular // a regular file of a tmpfs mount
	nodeSocket  // a socket inode of a tmpfs mount (bind)
)

// node is an entry of the synthetic tree. Its fields other than children
// never change once it is in the tree; children is guarded by FS.mu.
type node struct {
	name     string
	parent   *node // nil for the root
	kind     nodeKind
	ino      uint64
	children map[string]*node // nodeDir

	device DeviceInfo                         // nodeDevice
	open   func(flags int) (File, unix.Errno) // nodeDevice
	// reopen re-creates a description from FileState.Device (nodeDevice),
	// or opens the file a magic link stands for (nodeSymlink, state nil).
	reopen func(state []byte, flags int) (File, unix.Errno)

	content func() []byte // nodeGenerated

	target string // nodeSymlink
	// magicStat, with reopen, makes a symbolic link (/proc/PID/fd/N)
	// open and stat as the open file it stands for, whatever its target
	// says, as Linux's magic links.
	magicStat func() (Stat, unix.Errno)

	// dyn makes a directory's entries come from a function (/proc).
	dyn *dynDir

	// ti is the tmpfs inode of an entry of a tmpfs mount (see tmpfs.go),
	// nil for the other synthetic entries. The name and parent of a tmpfs
	// entry change on rename, under FS.mu.
	ti *tmpInode
}

// DeviceInfo describes a character device node.
type DeviceInfo struct {
	Major, Minor uint32
	// Perm is the permission bits of st_mode; 0 means 0666.
	Perm uint32
}

// path is the node's absolute guest path.
func (n *node) path() string {
	if n.parent == nil {
		return "/"
	}
	var comps []string
	for ; n.parent != nil; n = n.parent {
		comps = append(comps, n.name)
	}
	for i, j := 0, len(comps)-1; i < j; i, j = i+1, j-1 {
		comps[i], comps[j] = comps[j], comps[i]
	}
	return joinPath(comps)
}

// stat is the node's own stat. The caller holds FS.mu.
func (n *node) stat() Stat {
	if n.ti != nil {
		return n.tmpStat()
	}
	st := Stat{Dev: syntheticDev, Ino: n.ino, Nlink: 1, Blksize: 4096}
	switch n.kind {
	case nodeDir:
		st.Mode = unix.S_IFDIR | 0o555
		st.Nlink = 2
		for _, c := range n.children {
			if c.kind == nodeDir {
				st.Nlink++
			}
		}
	case nodeDevice:
		perm := n.device.Perm & 0o7777
		if perm == 0 {
			perm = 0o666
		}
		st.Mode = unix.S_IFCHR | perm
		st.Rdev = Makedev(n.device.Major, n.device.Minor)
	case nodeGenerated:
		// Like procfs: a size of 0, whatever the content.
		st.Mode = unix.S_IFREG | 0o444
	case nodeSymlink:
		st.Mode = unix.S_IFLNK | 0o777
		st.Size = int64(len(n.target))
	}
	return st
}

func (n *node) direntType() uint8 {
	switch n.kind {
	case nodeDir:
		return DTDir
	case nodeDevice:
		return DTChr
	case nodeGenerated, nodeRegular:
		return DTReg
	case nodeSymlink:
		return DTLnk
	case nodeSocket:
		return DTSock
	}
	return DTUnknown
}

// sortedChildren lists a directory's children by name. The caller holds
// FS.mu.
func (n *node) sortedChildren() []*node {
	out := make([]*node, 0, len(n.children))
	for _, c := range n.children {
		out = append(out, c)
	}
	if n.dyn != nil {
		out = append(out, n.dyn.list()...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// AddDevice registers a character device at path; open makes a File each
// time the guest opens it, given the open flags. The FS supplies the File's
// Stat (S_IFCHR, the device number, its inode) and Describe, and calls its
// SetFlags with the open flags; embed DeviceBase for the defaults of what
// the device does not support. A device that implements Mappable or
// AnonymousMapper can be mmap'ed.
func (fs *FS) AddDevice(path string, info DeviceInfo, open func(flags int) (File, unix.Errno)) error {
	return fs.AddReopenableDevice(path, info, open, nil)
}

// AddReopenableDevice is AddDevice with a re-open hook: Reopen of a
// FileState whose Device is set (see DeviceDescriber) calls reopen instead
// of open, so that the description comes back as it was.
func (fs *FS) AddReopenableDevice(path string, info DeviceInfo, open func(flags int) (File, unix.Errno),
	reopen func(state []byte, flags int) (File, unix.Errno)) error {
	if open == nil {
		return fmt.Errorf("vfs: AddDevice %q: nil open", path)
	}
	return fs.addNode(path, &node{kind: nodeDevice, device: info, open: open, reopen: reopen})
}

// AddFile registers a read-only generated file at path. content is called
// when a read starts at offset 0 or away from where the previous read of
// the description ended, and the reads that follow on see that snapshot,
// as procfs seq_files behave. Like a procfs file it stats as S_IFREG 0444, size 0.
func (fs *FS) AddFile(path string, content func() []byte) error {
	if content == nil {
		return fmt.Errorf("vfs: AddFile %q: nil content", path)
	}
	return fs.addNode(path, &node{kind: nodeGenerated, content: content})
}

// AddSymlink registers a symbolic link at path. Its target is resolved like
// any guest path, so it cannot leave the root either.
func (fs *FS) AddSymlink(path, target string) error {
	if target == "" || len(target) >= PathMax || cString(target) != target {
		return fmt.Errorf("vfs: AddSymlink %q: bad target %q", path, target)
	}
	return fs.addNode(path, &node{kind: nodeSymlink, target: target})
}

// addNode puts leaf at path, creating the directories on the way.
func (fs *FS) addNode(path string, leaf *node) error {
	comps, ok := cleanAbs(path)
	if !ok {
		return fmt.Errorf("vfs: bad synthetic path %q", path)
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	dir := fs.tree
	for _, c := range comps[:len(comps)-1] {
		child := dir.children[c]
		if child == nil {
			child = fs.newNode(dir, c, &node{kind: nodeDir})
		} else if child.kind != nodeDir {
			return fmt.Errorf("vfs: synthetic path %q: %s is not a directory", path, child.path())
		}
		dir = child
	}
	name := comps[len(comps)-1]
	if dir.children[name] != nil {
		return fmt.Errorf("vfs: synthetic path %q already exists", path)
	}
	fs.newNode(dir, name, leaf)
	return nil
}

// newNode links n into dir as name. The caller holds fs.mu.
func (fs *FS) newNode(dir *node, name string, n *node) *node {
	fs.nextIno++
	n.name = name
	n.parent = dir
	n.ino = fs.nextIno
	if n.kind == nodeDir {
		n.children = map[string]*node{}
	}
	dir.children[name] = n
	return n
}
