package kernel

import (
	"encoding/binary"

	"github.com/emuckpt/emuckpt/kernel/vfs"
	"golang.org/x/sys/unix"
)

// System calls that change the namespace: on a tmpfs (see vfs/tmpfs.go)
// they work as on Linux; on the read-only root they fail with EROFS.

const (
	atRemovedir     = 0x200
	atSymlinkFollow = 0x400
	// defaultUmask is the process umask applied to the modes of new files.
	defaultUmask = 0o022
)

// atPath reads a path argument and the directory it is relative to.
func (k *Kernel) atPath(t *Task, dirfd, pathVA uint64) (dir, path string, e unix.Errno) {
	if path, e = k.path(t, pathVA); e != 0 {
		return "", "", e
	}
	dir, e = k.dirOf(t, dirfd, path)
	return dir, path, e
}

func cwdFD() uint64 { return uint64(atFDCWD & 0xffffffff) }

func (k *Kernel) sysCreat(t *Task, a *args) (uint64, unix.Errno) {
	return k.openat(t, cwdFD(), a[0], unix.O_CREAT|unix.O_WRONLY|unix.O_TRUNC, a[1])
}

func (k *Kernel) sysMkdir(t *Task, a *args) (uint64, unix.Errno) {
	return k.mkdirat(t, cwdFD(), a[0], a[1])
}

func (k *Kernel) sysMkdirat(t *Task, a *args) (uint64, unix.Errno) {
	return k.mkdirat(t, a[0], a[1], a[2])
}

func (k *Kernel) mkdirat(t *Task, dirfd, pathVA, mode uint64) (uint64, unix.Errno) {
	dir, p, e := k.atPath(t, dirfd, pathVA)
	if e != 0 {
		return 0, e
	}
	return 0, k.fs.Mkdir(dir, p, uint32(mode)&0o1777&^defaultUmask)
}

func (k *Kernel) sysRmdir(t *Task, a *args) (uint64, unix.Errno) {
	return k.unlinkat(t, cwdFD(), a[0], atRemovedir)
}

func (k *Kernel) sysUnlink(t *Task, a *args) (uint64, unix.Errno) {
	return k.unlinkat(t, cwdFD(), a[0], 0)
}

func (k *Kernel) sysUnlinkat(t *Task, a *args) (uint64, unix.Errno) {
	return k.unlinkat(t, a[0], a[1], a[2])
}

func (k *Kernel) unlinkat(t *Task, dirfd, pathVA, flags uint64) (uint64, unix.Errno) {
	if flags&^atRemovedir != 0 {
		return 0, unix.EINVAL
	}
	dir, p, e := k.atPath(t, dirfd, pathVA)
	if e != 0 {
		return 0, e
	}
	return 0, k.fs.Unlink(dir, p, flags&atRemovedir != 0)
}

func (k *Kernel) sysSymlink(t *Task, a *args) (uint64, unix.Errno) {
	return k.symlinkat(t, a[0], cwdFD(), a[1])
}

func (k *Kernel) sysSymlinkat(t *Task, a *args) (uint64, unix.Errno) {
	return k.symlinkat(t, a[0], a[1], a[2])
}

func (k *Kernel) symlinkat(t *Task, targetVA, dirfd, pathVA uint64) (uint64, unix.Errno) {
	target, e := k.path(t, targetVA)
	if e != 0 {
		return 0, e
	}
	dir, p, e := k.atPath(t, dirfd, pathVA)
	if e != 0 {
		return 0, e
	}
	return 0, k.fs.Symlink(target, dir, p)
}

func (k *Kernel) sysLink(t *Task, a *args) (uint64, unix.Errno) {
	return k.linkat(t, cwdFD(), a[0], cwdFD(), a[1], 0)
}

func (k *Kernel) sysLinkat(t *Task, a *args) (uint64, unix.Errno) {
	return k.linkat(t, a[0], a[1], a[2], a[3], a[4])
}

func (k *Kernel) linkat(t *Task, olddirfd, oldVA, newdirfd, newVA, flags uint64) (uint64, unix.Errno) {
	if flags&^(atSymlinkFollow|atEmptyPath) != 0 {
		return 0, unix.EINVAL
	}
	oldPath, e := k.path(t, oldVA)
	if e != 0 {
		return 0, e
	}
	newDir, newPath, e := k.atPath(t, newdirfd, newVA)
	if e != 0 {
		return 0, e
	}
	if oldPath == "" && flags&atEmptyPath != 0 {
		f, e := k.file(t, olddirfd)
		if e != 0 {
			return 0, e
		}
		return 0, k.fs.LinkFile(f, newDir, newPath)
	}
	oldDir, e := k.dirOf(t, olddirfd, oldPath)
	if e != 0 {
		return 0, e
	}
	return 0, k.fs.Link(oldDir, oldPath, flags&atSymlinkFollow != 0, newDir, newPath)
}

func (k *Kernel) sysRename(t *Task, a *args) (uint64, unix.Errno) {
	return k.renameat2(t, cwdFD(), a[0], cwdFD(), a[1], 0)
}

func (k *Kernel) sysRenameat(t *Task, a *args) (uint64, unix.Errno) {
	return k.renameat2(t, a[0], a[1], a[2], a[3], 0)
}

func (k *Kernel) sysRenameat2(t *Task, a *args) (uint64, unix.Errno) {
	return k.renameat2(t, a[0], a[1], a[2], a[3], a[4])
}

func (k *Kernel) renameat2(t *Task, olddirfd, oldVA, newdirfd, newVA, flags uint64) (uint64, unix.Errno) {
	oldDir, oldPath, e := k.atPath(t, olddirfd, oldVA)
	if e != 0 {
		return 0, e
	}
	newDir, newPath, e := k.atPath(t, newdirfd, newVA)
	if e != 0 {
		return 0, e
	}
	if flags > 0xffffffff {
		return 0, unix.EINVAL
	}
	return 0, k.fs.Rename(oldDir, oldPath, newDir, newPath, uint32(flags))
}

func (k *Kernel) sysTruncate(t *Task, a *args) (uint64, unix.Errno) {
	p, e := k.path(t, a[0])
	if e != 0 {
		return 0, e
	}
	return 0, k.fs.Truncate(t.proc.cwd, p, int64(a[1]))
}

// truncater is implemented by files ftruncate(2) can change.
type truncater interface{ Truncate(size int64) unix.Errno }

func (k *Kernel) sysFtruncate(t *Task, a *args) (uint64, unix.Errno) {
	f, e := k.file(t, a[0])
	if e != 0 {
		return 0, e
	}
	if int64(a[1]) < 0 {
		return 0, unix.EINVAL
	}
	tr, ok := f.(truncater)
	if !ok {
		if f.Flags()&unix.O_PATH != 0 {
			return 0, unix.EBADF
		}
		return 0, unix.EINVAL // not a regular file open for writing
	}
	return 0, tr.Truncate(int64(a[1]))
}

// tmpfsMountsForRun are the tmpfs mounts of a new run: a /tmp of half the
// guest RAM (Linux's default tmpfs size) unless cfg.Tmpfs mounts one
// itself, then cfg.Tmpfs.
func tmpfsMountsForRun(cfg *Config) []TmpfsMount {
	mounts := []TmpfsMount{}
	hasTmp := false
	for _, m := range cfg.Tmpfs {
		if m.Path == "/tmp" {
			hasTmp = true
		}
	}
	if !hasTmp {
		mounts = append(mounts, TmpfsMount{Path: "/tmp"})
	}
	return append(mounts, cfg.Tmpfs...)
}

// TmpfsMount is a tmpfs to mount (--tmpfs PATH[:SIZE]).
type TmpfsMount struct {
	Path string
	// Size is the size limit in bytes; 0 means half of guest RAM.
	Size int64
}

// mountTmpfs mounts the given tmpfs mounts.
func (k *Kernel) mountTmpfs(mounts []TmpfsMount) error {
	for _, m := range mounts {
		size := m.Size
		if size == 0 {
			size = int64(k.m.MemSize() / 2)
		}
		if err := k.fs.MountTmpfs(m.Path, size); err != nil {
			return err
		}
	}
	return nil
}

// restoreTmpfs mounts the image's tmpfs mounts with their contents, then
// applies cfg.Tmpfs: a path the image has keeps its contents and takes
// the flag's size (refused if the contents do not fit); a new path is
// mounted empty.
func (k *Kernel) restoreTmpfs(states []vfs.MountState, load vfs.PageLoader) error {
	if err := k.fs.RestoreTmpfs(states, load); err != nil {
		return err
	}
	for _, m := range k.cfg.Tmpfs {
		if !k.fs.HasTmpfs(m.Path) {
			if err := k.mountTmpfs([]TmpfsMount{m}); err != nil {
				return err
			}
			continue
		}
		if m.Size != 0 {
			if err := k.fs.SetTmpfsSize(m.Path, m.Size); err != nil {
				return err
			}
		}
	}
	return nil
}

func (k *Kernel) sysMemfdCreate(t *Task, a *args) (uint64, unix.Errno) {
	name, err := t.proc.as.ReadString(a[0], 250)
	if err != nil {
		if errnoOf(err) == unix.ENAMETOOLONG {
			return 0, unix.EINVAL // longer than 249 bytes
		}
		return 0, errnoOf(err)
	}
	f, e := k.fs.MemfdCreate(name, uint32(a[1]))
	if e != 0 {
		return 0, e
	}
	fd, e := t.proc.fds.Install(f, a[1]&vfs.MfdCloexec != 0)
	if e != 0 {
		f.Close()
		return 0, e
	}
	return uint64(fd), 0
}

func (k *Kernel) sysFallocate(t *Task, a *args) (uint64, unix.Errno) {
	f, e := k.file(t, a[0])
	if e != 0 {
		return 0, e
	}
	return 0, vfs.Fallocate(f, uint32(a[1]), int64(a[2]), int64(a[3]))
}

func (k *Kernel) sysStatfs(t *Task, a *args) (uint64, unix.Errno) {
	p, e := k.path(t, a[0])
	if e != 0 {
		return 0, e
	}
	buf, ok, e := k.fs.Statfs(t.proc.cwd, p)
	if e != 0 {
		return 0, e
	}
	if !ok {
		return 0, unix.ENOSYS // only tmpfs so far; the root is issue 9 part 3
	}
	return 0, k.copyOut(t, a[1], buf)
}

func (k *Kernel) sysFstatfs(t *Task, a *args) (uint64, unix.Errno) {
	f, e := k.file(t, a[0])
	if e != 0 {
		return 0, e
	}
	buf, ok := vfs.StatfsFile(f)
	if !ok {
		buf, ok = vfs.StatfsDir(f)
	}
	if !ok {
		return 0, unix.ENOSYS // only tmpfs so far; the root is issue 9 part 3
	}
	return 0, k.copyOut(t, a[1], buf)
}

// attrAt finds the inode of a chmod/chown/utimensat-like call: the file
// at path, or with AT_EMPTY_PATH and an empty path the descriptor dirfd.
func (k *Kernel) attrAt(t *Task, dirfd, pathVA uint64, follow, emptyPath bool) (vfs.Attr, unix.Errno) {
	p, e := k.path(t, pathVA)
	if e != 0 {
		return vfs.Attr{}, e
	}
	if p == "" {
		if !emptyPath {
			return vfs.Attr{}, unix.ENOENT
		}
		if int32(dirfd) == atFDCWD {
			return k.fs.AttrPath(t.proc.cwd, ".", true)
		}
		f, e := k.file(t, dirfd)
		if e != 0 {
			return vfs.Attr{}, e
		}
		return vfs.AttrFile(f)
	}
	dir, e := k.dirOf(t, dirfd, p)
	if e != 0 {
		return vfs.Attr{}, e
	}
	return k.fs.AttrPath(dir, p, follow)
}

func (k *Kernel) attrFD(t *Task, fd uint64) (vfs.Attr, unix.Errno) {
	f, e := k.file(t, fd)
	if e != 0 {
		return vfs.Attr{}, e
	}
	if f.Flags()&unix.O_PATH != 0 {
		return vfs.Attr{}, unix.EBADF
	}
	return vfs.AttrFile(f)
}

func (k *Kernel) sysChmod(t *Task, a *args) (uint64, unix.Errno) {
	return k.fchmodat(t, cwdFD(), a[0], a[1], 0)
}

func (k *Kernel) sysFchmodat(t *Task, a *args) (uint64, unix.Errno) {
	return k.fchmodat(t, a[0], a[1], a[2], 0) // fchmodat has no flags argument
}

func (k *Kernel) fchmodat(t *Task, dirfd, pathVA, mode, flags uint64) (uint64, unix.Errno) {
	at, e := k.attrAt(t, dirfd, pathVA, flags&atSymlinkNofollow == 0, false)
	if e != 0 {
		return 0, e
	}
	return 0, at.Chmod(uint32(mode))
}

func (k *Kernel) sysFchmod(t *Task, a *args) (uint64, unix.Errno) {
	at, e := k.attrFD(t, a[0])
	if e != 0 {
		return 0, e
	}
	return 0, at.Chmod(uint32(a[1]))
}

func (k *Kernel) sysChown(t *Task, a *args) (uint64, unix.Errno) {
	return k.fchownat(t, cwdFD(), a[0], a[1], a[2], 0)
}

func (k *Kernel) sysLchown(t *Task, a *args) (uint64, unix.Errno) {
	return k.fchownat(t, cwdFD(), a[0], a[1], a[2], atSymlinkNofollow)
}

func (k *Kernel) sysFchownat(t *Task, a *args) (uint64, unix.Errno) {
	return k.fchownat(t, a[0], a[1], a[2], a[3], a[4])
}

func (k *Kernel) fchownat(t *Task, dirfd, pathVA, uid, gid, flags uint64) (uint64, unix.Errno) {
	if flags&^(atSymlinkNofollow|atEmptyPath) != 0 {
		return 0, unix.EINVAL
	}
	at, e := k.attrAt(t, dirfd, pathVA, flags&atSymlinkNofollow == 0, flags&atEmptyPath != 0)
	if e != 0 {
		return 0, e
	}
	return 0, at.Chown(uint32(uid), uint32(gid))
}

func (k *Kernel) sysFchown(t *Task, a *args) (uint64, unix.Errno) {
	at, e := k.attrFD(t, a[0])
	if e != 0 {
		return 0, e
	}
	return 0, at.Chown(uint32(a[1]), uint32(a[2]))
}

func (k *Kernel) sysUtimensat(t *Task, a *args) (uint64, unix.Errno) {
	dirfd, pathVA, timesVA, flags := a[0], a[1], a[2], a[3]
	if flags&^(atSymlinkNofollow|atEmptyPath) != 0 {
		return 0, unix.EINVAL
	}
	var times *[2]vfs.Timespec
	if timesVA != 0 {
		var b [32]byte
		if e := k.copyIn(t, timesVA, b[:]); e != 0 {
			return 0, e
		}
		le := binary.LittleEndian
		times = &[2]vfs.Timespec{
			{Sec: int64(le.Uint64(b[0:])), Nsec: int64(le.Uint64(b[8:]))},
			{Sec: int64(le.Uint64(b[16:])), Nsec: int64(le.Uint64(b[24:]))},
		}
	}
	var at vfs.Attr
	var e unix.Errno
	if pathVA == 0 {
		// futimens: utimensat(fd, NULL, times, 0).
		if flags&atSymlinkNofollow != 0 {
			return 0, unix.EINVAL
		}
		if int32(dirfd) == atFDCWD {
			return 0, unix.EFAULT
		}
		at, e = k.attrFD(t, dirfd)
	} else {
		at, e = k.attrAt(t, dirfd, pathVA, flags&atSymlinkNofollow == 0, flags&atEmptyPath != 0)
	}
	if e != 0 {
		return 0, e
	}
	return 0, at.Utimens(times)
}
