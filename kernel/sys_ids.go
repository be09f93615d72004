package kernel

import (
	"encoding/binary"

	"golang.org/x/sys/unix"
)

// User and group ids. The guest runs with the host's ids (getuid and
// friends return them) and cannot change them: a set*id call that leaves
// every id as it is succeeds, one Linux would refuse fails as Linux fails
// it (EPERM without CAP_SETUID/CAP_SETGID, EINVAL for -1 where an id is
// needed), and one Linux would carry out is not implemented (ENOSYS,
// named by -v).

// idSet is the real, effective and saved ids of one kind.
type idSet [3]uint32

// keepID (-1) leaves an id unchanged in setreuid, setresuid and friends.
const keepID = ^uint32(0)

func hostUIDs() idSet {
	r, e, s := unix.Getresuid()
	return idSet{uint32(r), uint32(e), uint32(s)}
}

func hostGIDs() idSet {
	r, e, s := unix.Getresgid()
	return idSet{uint32(r), uint32(e), uint32(s)}
}

// has reports whether id is one of the set's.
func (s idSet) has(id uint32) bool { return id == s[0] || id == s[1] || id == s[2] }

// putIDs is getresuid and getresgid: the three ids to three pointers.
func (k *Kernel) putIDs(t *Task, s idSet, va [3]uint64) (uint64, unix.Errno) {
	for i, p := range va {
		var b [4]byte
		binary.LittleEndian.PutUint32(b[:], s[i])
		if e := k.copyOut(t, p, b[:]); e != 0 {
			return 0, e
		}
	}
	return 0, 0
}

func (k *Kernel) sysGetresuid(t *Task, a *args) (uint64, unix.Errno) {
	return k.putIDs(t, hostUIDs(), [3]uint64{a[0], a[1], a[2]})
}

func (k *Kernel) sysGetresgid(t *Task, a *args) (uint64, unix.Errno) {
	return k.putIDs(t, hostGIDs(), [3]uint64{a[0], a[1], a[2]})
}

// setIDs finishes a set*id call: allowed is Linux's permission check for
// a caller without the capability, next the ids it would leave.
func (k *Kernel) setIDs(kind string, cur, next idSet, allowed bool) (uint64, unix.Errno) {
	if !allowed && !k.privileged() {
		return 0, unix.EPERM
	}
	if next == cur {
		return 0, 0
	}
	k.noteOnce("setid-"+kind, "changing the "+kind+" ids is not implemented: returning ENOSYS")
	return 0, unix.ENOSYS
}

// setID is setuid and setgid: with the capability every id becomes id,
// without it only the effective one, to the real or saved id.
func (k *Kernel) setID(kind string, cur idSet, id uint32) (uint64, unix.Errno) {
	if id == keepID {
		return 0, unix.EINVAL
	}
	next := idSet{cur[0], id, cur[2]}
	if k.privileged() {
		next = idSet{id, id, id}
	}
	return k.setIDs(kind, cur, next, id == cur[0] || id == cur[2])
}

// setREID is setreuid and setregid: the real id may become the effective
// one, the effective one any of real, effective or saved; the saved id
// follows the effective one when the real id is set or the effective one
// changes to something other than the real id.
func (k *Kernel) setREID(kind string, cur idSet, r, e uint32) (uint64, unix.Errno) {
	next, allowed := cur, true
	if r != keepID {
		next[0] = r
		allowed = r == cur[0] || r == cur[1]
	}
	if e != keepID {
		next[1] = e
		allowed = allowed && cur.has(e)
	}
	if r != keepID || e != keepID && e != cur[0] {
		next[2] = next[1]
	}
	return k.setIDs(kind, cur, next, allowed)
}

// setRESID is setresuid and setresgid: each id may become any of the
// three current ones.
func (k *Kernel) setRESID(kind string, cur idSet, ids [3]uint32) (uint64, unix.Errno) {
	next, allowed := cur, true
	for i, id := range ids {
		if id != keepID {
			next[i] = id
			allowed = allowed && cur.has(id)
		}
	}
	return k.setIDs(kind, cur, next, allowed)
}

func (k *Kernel) sysSetuid(_ *Task, a *args) (uint64, unix.Errno) {
	return k.setID("user", hostUIDs(), uint32(a[0]))
}

func (k *Kernel) sysSetgid(_ *Task, a *args) (uint64, unix.Errno) {
	return k.setID("group", hostGIDs(), uint32(a[0]))
}

func (k *Kernel) sysSetreuid(_ *Task, a *args) (uint64, unix.Errno) {
	return k.setREID("user", hostUIDs(), uint32(a[0]), uint32(a[1]))
}

func (k *Kernel) sysSetregid(_ *Task, a *args) (uint64, unix.Errno) {
	return k.setREID("group", hostGIDs(), uint32(a[0]), uint32(a[1]))
}

func (k *Kernel) sysSetresuid(_ *Task, a *args) (uint64, unix.Errno) {
	return k.setRESID("user", hostUIDs(), [3]uint32{uint32(a[0]), uint32(a[1]), uint32(a[2])})
}

func (k *Kernel) sysSetresgid(_ *Task, a *args) (uint64, unix.Errno) {
	return k.setRESID("group", hostGIDs(), [3]uint32{uint32(a[0]), uint32(a[1]), uint32(a[2])})
}
