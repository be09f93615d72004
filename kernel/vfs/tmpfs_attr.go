package vfs

import (
	"golang.org/x/sys/unix"
)

// chmod, chown and utimensat of tmpfs files, with Linux's permission
// rules for the host's uid: only the owner (or root) changes the mode or
// sets explicit times; "now" needs ownership or write permission; a
// non-root owner may give the file only to a group they are in. The
// read-only root's EROFS comes first (AttrPath, AttrFile in modify.go).

// Utimens special nanosecond values.
const (
	UtimeNow  = (1 << 30) - 1
	UtimeOmit = (1 << 30) - 2
)

// Attr is the tmpfs inode a chmod, chown or utimens acts on, found by
// path or by descriptor (AttrPath, AttrFile).
type Attr struct {
	fs *FS
	ti *tmpInode
}

func (a Attr) owner() bool {
	uid := hostUID()
	return uid == 0 || uint32(uid) == a.ti.uid
}

// Chmod is chmod(2): EPERM unless owner. A non-root caller outside the
// file's group cannot set S_ISGID, as on Linux.
func (a Attr) Chmod(mode uint32) unix.Errno {
	a.fs.mu.Lock()
	defer a.fs.mu.Unlock()
	if !a.owner() {
		return unix.EPERM
	}
	mode &= 0o7777
	if hostUID() != 0 && !inGroup(int(a.ti.gid)) {
		mode &^= unix.S_ISGID
	}
	a.ti.mode = a.ti.mode&unix.S_IFMT | mode
	a.ti.ctime = a.fs.now()
	return 0
}

// IsSymlink reports whether the inode is a symbolic link (fchmodat with
// AT_SYMLINK_NOFOLLOW on one is EOPNOTSUPP).
func (a Attr) IsSymlink() bool { return a.ti.mode&unix.S_IFMT == unix.S_IFLNK }

// Chown is chown(2); -1 (as uint32) leaves an id unchanged. Root may do
// anything; others only keep the uid and give the file to one of their
// groups, being its owner (EPERM otherwise). A change clears S_ISUID, and
// S_ISGID when group-executable, on files that are not directories.
func (a Attr) Chown(uid, gid uint32) unix.Errno {
	a.fs.mu.Lock()
	defer a.fs.mu.Unlock()
	ti := a.ti
	if hostUID() != 0 {
		if uid != ^uint32(0) && uid != ti.uid {
			return unix.EPERM
		}
		if gid != ^uint32(0) && gid != ti.gid && (!a.owner() || !inGroup(int(gid))) {
			return unix.EPERM
		}
	}
	if uid != ^uint32(0) {
		ti.uid = uid
	}
	if gid != ^uint32(0) {
		ti.gid = gid
	}
	if (uid != ^uint32(0) || gid != ^uint32(0)) && ti.mode&unix.S_IFMT != unix.S_IFDIR {
		ti.mode &^= unix.S_ISUID
		if ti.mode&0o010 != 0 {
			ti.mode &^= unix.S_ISGID
		}
	}
	ti.ctime = a.fs.now()
	return 0
}

// Utimens is utimensat(2): times nil means both now; a time whose Nsec is
// UtimeNow or UtimeOmit is now or left alone. Explicit times need the
// owner (EPERM); now needs the owner or write permission (EACCES).
func (a Attr) Utimens(times *[2]Timespec) unix.Errno {
	a.fs.mu.Lock()
	defer a.fs.mu.Unlock()
	ti := a.ti
	now := a.fs.now()
	t := [2]Timespec{{Nsec: UtimeNow}, {Nsec: UtimeNow}}
	if times != nil {
		t = *times
	}
	explicit := false
	for _, x := range t {
		if x.Nsec != UtimeNow && x.Nsec != UtimeOmit {
			if x.Nsec < 0 || x.Nsec > 999999999 {
				return unix.EINVAL
			}
			explicit = true
		}
	}
	if t[0].Nsec == UtimeOmit && t[1].Nsec == UtimeOmit {
		return 0
	}
	if explicit && !a.owner() {
		return unix.EPERM
	}
	if !explicit && !a.owner() {
		st := ti.stat(nil)
		if permits(&st, unix.W_OK) != 0 {
			return unix.EACCES
		}
	}
	set := func(dst *Timespec, x Timespec) {
		switch x.Nsec {
		case UtimeOmit:
		case UtimeNow:
			*dst = now
		default:
			*dst = x
		}
	}
	set(&ti.atime, t[0])
	set(&ti.mtime, t[1])
	ti.ctime = now
	return 0
}
