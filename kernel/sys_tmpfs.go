package kernel

import (
	"github.com/emuckpt/emuckpt/kernel/vfs"
	"golang.org/x/sys/unix"
)

// The tmpfs mounts of a run or a restore, memfd_create and fallocate. The
// calls that change a tmpfs's namespace and attributes are those of the
// read-only root (sys_modify.go), which hand the change to the tmpfs.

// truncater is implemented by files ftruncate(2) can change.
type truncater interface{ Truncate(size int64) unix.Errno }

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
