package vfs

import (
	"fmt"
	"sort"

	"github.com/emuckpt/emuckpt/guestmm"
	"golang.org/x/sys/unix"
)

// MountState is a tmpfs mount as plain data, for a checkpoint: every live
// inode once (named ones, and those only open: unlinked while open or
// O_TMPFILE), the directory tree as entries naming inodes, and the
// contents of regular files as their allocated pages. Open descriptions
// refer to an inode by Mount and Ino (FileState). The files of
// memfd_create are on a hidden mount with Path "memfd:", whose root
// directory has no entries.
type MountState struct {
	Path    string       `json:"path"`
	Size    int64        `json:"size"` // the size limit in bytes
	Root    uint64       `json:"root"` // inode number of the root directory
	NextIno uint64       `json:"next_ino"`
	Inodes  []InodeState `json:"inodes"`
}

// InodeState is one tmpfs inode.
type InodeState struct {
	Ino  uint64 `json:"ino"`
	Mode uint32 `json:"mode"` // S_IFDIR, S_IFREG, S_IFLNK or S_IFSOCK, and the permission bits
	Uid  uint32 `json:"uid"`
	Gid  uint32 `json:"gid"`
	// Nlink is the number of names of a regular file or symbolic link
	// (the entries naming it); 0 for a file that is only open.
	Nlink   uint64     `json:"nlink"`
	Atime   Timespec   `json:"atime"`
	Mtime   Timespec   `json:"mtime"`
	Ctime   Timespec   `json:"ctime"`
	Size    int64      `json:"size,omitempty"`
	Pages   []TmpPage  `json:"pages,omitempty"`   // regular files
	Target  string     `json:"target,omitempty"`  // symbolic links
	Entries []TmpEntry `json:"entries,omitempty"` // directories, by name
	Unnamed bool       `json:"unnamed,omitempty"` // O_TMPFILE never linked
	NoLink  bool       `json:"no_link,omitempty"` // O_TMPFILE|O_EXCL, memfd
	Seals   uint32     `json:"seals,omitempty"`   // F_ADD_SEALS seals of a regular file
}

// TmpPage is an allocated page of a regular file: its index in the file
// (offset / 4096) and where its contents are: page Page of the image's
// page data.
type TmpPage struct {
	Index int64  `json:"index"`
	Page  uint64 `json:"page"`
}

// PageSaver stores the contents of a guest frame in the image being
// written and returns its index in the image's page data.
type PageSaver func(frame uint64) (page uint64)

// PageLoader returns the guest frame that holds page page of the image's
// page data; the restored file takes over its reference.
type PageLoader func(page uint64) (frame uint64, err error)

// TmpEntry is a directory entry.
type TmpEntry struct {
	Name string `json:"name"`
	Ino  uint64 `json:"ino"`
}

// TmpfsState describes every tmpfs mount, in mount order; save stores
// each allocated page of each file once.
func (fs *FS) TmpfsState(save PageSaver) []MountState {
	fs.mu.RLock()
	defer fs.mu.RUnlock()
	var out []MountState
	mounts := fs.mounts
	if fs.memfdMnt != nil && len(fs.memfdMnt.inodes) > 1 {
		mounts = append(mounts[:len(mounts):len(mounts)], fs.memfdMnt)
	}
	for _, m := range mounts {
		ms := MountState{Path: m.path, Size: m.limit, Root: m.root.ti.ino, NextIno: m.nextIno}
		// Entries come from the tree: walk it, recording each directory.
		entries := map[uint64][]TmpEntry{}
		var walk func(d *node)
		walk = func(d *node) {
			for _, c := range d.sortedChildren() {
				entries[d.ti.ino] = append(entries[d.ti.ino], TmpEntry{Name: c.name, Ino: c.ti.ino})
				if c.kind == nodeDir {
					walk(c)
				}
			}
		}
		walk(m.root)
		inos := make([]uint64, 0, len(m.inodes))
		for ino := range m.inodes {
			inos = append(inos, ino)
		}
		sort.Slice(inos, func(i, j int) bool { return inos[i] < inos[j] })
		for _, ino := range inos {
			ti := m.inodes[ino]
			is := InodeState{Ino: ino, Mode: ti.mode, Uid: ti.uid, Gid: ti.gid, Atime: ti.atime, Mtime: ti.mtime, Ctime: ti.ctime,
				Entries: entries[ino], Unnamed: ti.unnamed, NoLink: ti.noLink}
			if ti.mode&unix.S_IFMT == unix.S_IFREG {
				is.Seals = ti.seals
			}
			switch ti.mode & unix.S_IFMT {
			case unix.S_IFREG:
				is.Nlink, is.Size = ti.nlink, ti.size
				idx := make([]int64, 0, len(ti.pages))
				for i := range ti.pages {
					idx = append(idx, i)
				}
				sort.Slice(idx, func(a, b int) bool { return idx[a] < idx[b] })
				for _, i := range idx {
					is.Pages = append(is.Pages, TmpPage{Index: i, Page: save(ti.pages[i])})
				}
			case unix.S_IFLNK:
				is.Nlink = ti.nlink
				is.Target = symlinkTarget(m.root, ino)
			case unix.S_IFSOCK:
				// A socket name; the socket itself is not saved (a
				// checkpoint refuses open sockets), so after a restore
				// nothing is bound to it: ECONNREFUSED, as for a stale name.
				is.Nlink = ti.nlink
			}
			ms.Inodes = append(ms.Inodes, is)
		}
		out = append(out, ms)
	}
	return out
}

// symlinkTarget finds the target of symbolic link inode ino under d.
func symlinkTarget(d *node, ino uint64) string {
	for _, c := range d.children {
		if c.ti.ino == ino && c.kind == nodeSymlink {
			return c.target
		}
		if c.kind == nodeDir {
			if t := symlinkTarget(c, ino); t != "" {
				return t
			}
		}
	}
	return ""
}

// Validate checks that a mount's state is a consistent tmpfs: a clean
// path, inodes with distinct numbers below NextIno and known types, a
// directory tree from Root in which each directory appears once and
// entries name existing inodes by distinct plain names, link counts that
// match the entries, pages inside the file and in order, and no more
// pages than the size limit allows. Restore relies on it. That the page
// indexes lie in the image's page data, each used once, is for the
// caller to check (kernel.State.Validate).
func (ms *MountState) Validate() error {
	_, err := ms.build(nil, nil)
	return err
}

// build makes the mount a MountState describes (see Validate), with its
// pages from load in frames; with load nil it only checks.
func (ms *MountState) build(frames *guestmm.Frames, load PageLoader) (m *tmpMount, err error) {
	if comps, ok := cleanAbs(ms.Path); ms.Path != memfdMount && (!ok || joinPath(comps) != ms.Path) {
		return nil, fmt.Errorf("tmpfs mount point %q is not a clean absolute path", ms.Path)
	}
	if ms.Size <= 0 || ms.Size%pageSize != 0 {
		return nil, fmt.Errorf("tmpfs %s: size %d is not a positive multiple of 4096", ms.Path, ms.Size)
	}
	m = &tmpMount{frames: frames, path: ms.Path, limit: ms.Size, nextIno: ms.NextIno, inodes: map[uint64]*tmpInode{}}
	m.vfsMnt.tmp = m
	defer func() {
		if err != nil && load != nil {
			m.freeAll()
		}
	}()
	states := map[uint64]*InodeState{}
	for i := range ms.Inodes {
		is := &ms.Inodes[i]
		if is.Ino == 0 || is.Ino > ms.NextIno {
			return nil, fmt.Errorf("tmpfs %s: inode %d is not in 1..next_ino (%d)", ms.Path, is.Ino, ms.NextIno)
		}
		if states[is.Ino] != nil {
			return nil, fmt.Errorf("tmpfs %s: inode %d appears twice", ms.Path, is.Ino)
		}
		states[is.Ino] = is
		ti := &tmpInode{mnt: m, ino: is.Ino, mode: is.Mode, uid: is.Uid, gid: is.Gid,
			atime: is.Atime, mtime: is.Mtime, ctime: is.Ctime, unnamed: is.Unnamed, noLink: is.NoLink,
			seals: is.Seals}
		if is.Seals&^sealsKnown != 0 {
			return nil, fmt.Errorf("tmpfs %s: inode %d has unknown seals %#x", ms.Path, is.Ino, is.Seals)
		}
		typ := is.Mode & unix.S_IFMT
		if is.Mode&^(unix.S_IFMT|0o7777) != 0 || typ != unix.S_IFDIR && typ != unix.S_IFREG && typ != unix.S_IFLNK && typ != unix.S_IFSOCK {
			return nil, fmt.Errorf("tmpfs %s: inode %d has mode %#o", ms.Path, is.Ino, is.Mode)
		}
		if typ != unix.S_IFDIR && len(is.Entries) > 0 {
			return nil, fmt.Errorf("tmpfs %s: inode %d has entries but is not a directory", ms.Path, is.Ino)
		}
		if typ != unix.S_IFREG && (len(is.Pages) > 0 || is.Unnamed || is.NoLink || is.Seals != 0) {
			return nil, fmt.Errorf("tmpfs %s: inode %d has file contents but is not a regular file", ms.Path, is.Ino)
		}
		if typ != unix.S_IFLNK && is.Target != "" {
			return nil, fmt.Errorf("tmpfs %s: inode %d has a link target but is not a symbolic link", ms.Path, is.Ino)
		}
		switch typ {
		case unix.S_IFREG:
			if is.Size < 0 || is.Size > maxFileSize-pageSize {
				return nil, fmt.Errorf("tmpfs %s: inode %d has size %d", ms.Path, is.Ino, is.Size)
			}
			ti.size = is.Size
			for j, pg := range is.Pages {
				if pg.Index < 0 || pg.Index >= (is.Size+pageSize-1)/pageSize || j > 0 && pg.Index <= is.Pages[j-1].Index {
					return nil, fmt.Errorf("tmpfs %s: inode %d: page %d (index %d) is not a page inside the file, in order", ms.Path, is.Ino, j, pg.Index)
				}
				if m.used += pageSize; m.used > m.limit {
					return nil, fmt.Errorf("tmpfs %s: the contents exceed the size limit of %d bytes", ms.Path, m.limit)
				}
				if ti.pages == nil {
					ti.pages = map[int64]uint64{}
				}
				if load == nil {
					ti.pages[pg.Index] = 0
					continue
				}
				pa, err := load(pg.Page)
				if err != nil {
					return nil, fmt.Errorf("tmpfs %s: inode %d: %v", ms.Path, is.Ino, err)
				}
				ti.pages[pg.Index] = pa
			}
		case unix.S_IFLNK:
			if is.Target == "" || len(is.Target) >= PathMax || cString(is.Target) != is.Target {
				return nil, fmt.Errorf("tmpfs %s: symbolic link %d has a bad target", ms.Path, is.Ino)
			}
			ti.size = int64(len(is.Target))
		}
		m.inodes[is.Ino] = ti
		m.all = append(m.all, ti)
	}
	rootState := states[ms.Root]
	if rootState == nil || rootState.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil, fmt.Errorf("tmpfs %s: root inode %d is not a directory of the mount", ms.Path, ms.Root)
	}
	links := map[uint64]uint64{}
	seenDir := map[uint64]bool{ms.Root: true}
	var grow func(d *node, is *InodeState) error
	grow = func(d *node, is *InodeState) error {
		for _, e := range is.Entries {
			if !plainName(e.Name) || d.children[e.Name] != nil {
				return fmt.Errorf("tmpfs %s: directory %d: bad or repeated name %q", ms.Path, is.Ino, e.Name)
			}
			cs := states[e.Ino]
			if cs == nil {
				return fmt.Errorf("tmpfs %s: directory %d: entry %q names inode %d, which is not saved", ms.Path, is.Ino, e.Name, e.Ino)
			}
			c := &node{name: e.Name, parent: d, ino: e.Ino, ti: m.inodes[e.Ino]}
			switch cs.Mode & unix.S_IFMT {
			case unix.S_IFDIR:
				if seenDir[e.Ino] {
					return fmt.Errorf("tmpfs %s: directory %d appears twice in the tree", ms.Path, e.Ino)
				}
				seenDir[e.Ino] = true
				c.kind, c.children = nodeDir, map[string]*node{}
				c.ti.nlink = 1
				if err := grow(c, cs); err != nil {
					return err
				}
			case unix.S_IFREG:
				c.kind = nodeRegular
			case unix.S_IFLNK:
				c.kind, c.target = nodeSymlink, cs.Target
			case unix.S_IFSOCK:
				c.kind = nodeSocket
			}
			links[e.Ino]++
			d.children[e.Name] = c
		}
		return nil
	}
	if ms.Path == memfdMount && len(rootState.Entries) > 0 {
		return nil, fmt.Errorf("tmpfs %s: the memfd mount has no names", ms.Path)
	}
	root := &node{kind: nodeDir, ino: ms.Root, ti: m.inodes[ms.Root], children: map[string]*node{}}
	root.ti.nlink = 1
	if err := grow(root, rootState); err != nil {
		return nil, err
	}
	for _, is := range ms.Inodes {
		switch is.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			if !seenDir[is.Ino] {
				return nil, fmt.Errorf("tmpfs %s: directory %d is not in the tree", ms.Path, is.Ino)
			}
		default:
			if links[is.Ino] != is.Nlink {
				return nil, fmt.Errorf("tmpfs %s: inode %d has nlink %d but %d entries", ms.Path, is.Ino, is.Nlink, links[is.Ino])
			}
			if t := is.Mode & unix.S_IFMT; (t == unix.S_IFLNK || t == unix.S_IFSOCK) && is.Nlink == 0 {
				return nil, fmt.Errorf("tmpfs %s: symbolic link or socket %d has no name", ms.Path, is.Ino)
			}
			m.inodes[is.Ino].nlink = is.Nlink
		}
	}
	m.root = root
	return m, nil
}

// freeAll drops the frames of every inode, for a mount that could not be
// built.
func (m *tmpMount) freeAll() {
	for _, ti := range m.all {
		for _, pa := range ti.pages {
			m.frames.DecRef(pa)
		}
		ti.pages = nil
	}
}

// RestoreTmpfs mounts tmpfs mounts from a checkpoint, taking their pages
// from load. Files open in the image are then re-opened by Reopen
// (FileState.Mount and Ino); inodes that nothing names, holds open or
// maps are dropped by DropUnused.
func (fs *FS) RestoreTmpfs(states []MountState, load PageLoader) error {
	for i := range states {
		m, err := states[i].build(fs.frames, load)
		if err != nil {
			return err
		}
		if err := fs.attachMount(m); err != nil {
			m.freeAll()
			return err
		}
		m.all = nil
	}
	return nil
}

// attachMount puts a built mount into the tree (the memfd mount beside
// it).
func (fs *FS) attachMount(m *tmpMount) error {
	if m.path == memfdMount {
		fs.mu.Lock()
		defer fs.mu.Unlock()
		if fs.memfdMnt != nil {
			return fmt.Errorf("vfs: two memfd mounts")
		}
		m.dev = Makedev(0, tmpfsFirstMinor-1)
		fs.memfdMnt = m
		return nil
	}
	comps, _ := cleanAbs(m.path)
	fs.mu.Lock()
	if fs.mountAt(m.path) != nil {
		fs.mu.Unlock()
		return fmt.Errorf("vfs: two tmpfs mounts at %s", m.path)
	}
	dir := fs.tree
	for _, c := range comps[:len(comps)-1] {
		child := dir.children[c]
		if child == nil {
			child = fs.newNode(dir, c, &node{kind: nodeDir})
		} else if child.kind != nodeDir || child.ti != nil {
			fs.mu.Unlock()
			return fmt.Errorf("vfs: tmpfs mount point %s: %s is not a synthetic directory", m.path, child.path())
		}
		dir = child
	}
	name := comps[len(comps)-1]
	if dir.children[name] != nil {
		fs.mu.Unlock()
		return fmt.Errorf("vfs: tmpfs mount point %s is already taken", m.path)
	}
	m.dev = Makedev(0, uint32(tmpfsFirstMinor+len(fs.mounts)))
	m.root.name, m.root.parent = name, dir
	dir.children[name] = m.root
	fs.mounts = append(fs.mounts, m)
	fs.mu.Unlock()
	return nil
}

// DropUnused releases restored inodes that have no name and are not open,
// after the descriptors have been re-opened.
func (fs *FS) DropUnused() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for _, m := range append(fs.mounts[:len(fs.mounts):len(fs.mounts)], fs.memfdMnt) {
		if m == nil {
			continue
		}
		for _, ti := range m.inodes {
			ti.release()
		}
	}
}

// SetTmpfsSize changes the size limit of the tmpfs at path, as
// `mount -o remount,size=` does: EBUSY-like error if the contents do not
// fit in the new size.
func (fs *FS) SetTmpfsSize(path string, size int64) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	m := fs.mountAt(path)
	if m == nil {
		return fmt.Errorf("vfs: no tmpfs at %s", path)
	}
	if size = roundUpPage(size); size < m.used || size <= 0 {
		return fmt.Errorf("tmpfs %s holds %d bytes, more than the new size %d", path, m.used, size)
	}
	m.limit = size
	return nil
}

// HasTmpfs reports whether a tmpfs is mounted at the canonical path.
func (fs *FS) HasTmpfs(path string) bool {
	fs.mu.RLock()
	defer fs.mu.RUnlock()
	return fs.mountAt(path) != nil
}

// reopenTmpfs re-opens a KindTmpfs description from its state.
func (fs *FS) reopenTmpfs(s FileState) (File, unix.Errno) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	m := fs.mountAt(s.Mount)
	if m == nil {
		return nil, unix.ENOENT
	}
	ti := m.inodes[s.Ino]
	if ti == nil || ti.mode&unix.S_IFMT != unix.S_IFREG {
		return nil, unix.ESTALE
	}
	f := fs.openTmpInode(ti, s.Path, s.Flags&^(unix.O_CREAT|unix.O_EXCL|unix.O_TRUNC|oTmpfileBit))
	f.off = s.Offset
	return f, 0
}
