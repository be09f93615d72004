package vfs

import "golang.org/x/sys/unix"

// Socket names in the file system: bind(2) of a path makes an S_IFSOCK
// inode (a nodeSocket node) in a tmpfs, which refers to the bound socket
// while it is open; connect(2) and sendto(2) find the socket through it.
// On the read-only root bind is EROFS, as on a read-only mount.

// BindSocket makes the socket inode path (relative to cwd) with mode
// (S_IFSOCK and permission bits, umask applied) for sock. EEXIST if the
// name exists (the caller reports EADDRINUSE). The returned function
// detaches the socket from the inode when it closes; the name stays.
func (fs *FS) BindSocket(cwd, path string, mode uint32, sock any) (func(), unix.Errno) {
	m, pp, e := fs.create(cwd, path, false)
	if e != 0 {
		return nil, e
	}
	if m.tmp == nil {
		return nil, m.change()
	}
	dir := pp.dir.synth
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if errno := mayAdd(dir, pp.last); errno != 0 {
		return nil, errno
	}
	ti := dir.ti.mnt.newInode(mode, fs.now())
	ti.sock = sock
	ti.opens++ // the bound socket holds the inode
	fs.link(dir, pp.last, &node{kind: nodeSocket, ti: ti})
	return func() {
		fs.mu.Lock()
		defer fs.mu.Unlock()
		ti.sock = nil
		ti.opens--
		ti.release()
	}, 0
}

// LookupSocket finds the socket bound at path: ENOENT if there is no such
// name, ECONNREFUSED if it is not a socket or nothing is bound to it any
// more, EACCES without write permission on it.
func (fs *FS) LookupSocket(cwd, path string) (any, unix.Errno) {
	r, lerr := fs.resolve(cwd, path, true)
	if lerr != nil {
		return nil, lerr.errno
	}
	fs.mu.RLock()
	defer fs.mu.RUnlock()
	n := r.synth
	if n == nil || n.kind != nodeSocket {
		if r.host && !r.isDir && r.st.Mode&unix.S_IFMT == unix.S_IFSOCK {
			return nil, unix.ECONNREFUSED // a host socket: not the guest's
		}
		return nil, unix.ECONNREFUSED
	}
	st := n.tmpStat()
	if errno := permits(&st, unix.W_OK); errno != 0 {
		return nil, errno
	}
	if n.ti.sock == nil {
		return nil, unix.ECONNREFUSED
	}
	return n.ti.sock, 0
}
