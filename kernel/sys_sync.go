package kernel

import (
	"golang.org/x/sys/unix"

	"github.com/emuckpt/emuckpt/kernel/vfs"
)

// Writing back and reading ahead. The guest's files are the read-only root
// (which the guest cannot change), tmpfs and memfd files (in guest RAM)
// and the host's standard streams: nothing the guest writes waits for
// write-back, so these calls check their arguments as Linux does and have
// nothing more to do. A checkpoint image is made durable by emuckpt
// itself (fsync before rename), whatever the guest calls.

// syncable reports whether fd names a file with an fsync operation in
// Linux: regular files and directories. Pipes, sockets, devices, terminals
// and procfs files have none (EINVAL).
func (k *Kernel) syncable(t *Task, fd uint64) unix.Errno {
	f, st, e := k.usableFile(t, fd)
	if e != 0 {
		return e
	}
	mode := st.Mode & unix.S_IFMT
	if mode != unix.S_IFREG && mode != unix.S_IFDIR || f.Describe().Kind == vfs.KindGenerated {
		return unix.EINVAL
	}
	return 0
}

func (k *Kernel) sysFsync(t *Task, a *args) (uint64, unix.Errno)     { return 0, k.syncable(t, a[0]) }
func (k *Kernel) sysFdatasync(t *Task, a *args) (uint64, unix.Errno) { return 0, k.syncable(t, a[0]) }

// sysSyncFileRange is sync_file_range(2): EINVAL for an unknown flag or a
// negative or wrapping range, ESPIPE for a pipe, socket or device, as
// Linux checks them.
func (k *Kernel) sysSyncFileRange(t *Task, a *args) (uint64, unix.Errno) {
	const flags = 0x1 | 0x2 | 0x4 // SYNC_FILE_RANGE_WAIT_BEFORE, _WRITE, _WAIT_AFTER
	_, st, e := k.usableFile(t, a[0])
	if e != 0 {
		return 0, e
	}
	off, n := int64(a[1]), int64(a[2])
	if a[3]&^flags != 0 || off < 0 || n < 0 || off+n < off {
		return 0, unix.EINVAL
	}
	if mode := st.Mode & unix.S_IFMT; mode != unix.S_IFREG && mode != unix.S_IFDIR && mode != unix.S_IFBLK && mode != unix.S_IFLNK {
		return 0, unix.ESPIPE
	}
	return 0, 0
}

// sysSyncfs is syncfs(2): any open descriptor will do.
func (k *Kernel) sysSyncfs(t *Task, a *args) (uint64, unix.Errno) {
	_, e := k.file(t, a[0])
	return 0, e
}

// sysSync is sync(2), which cannot fail.
func (k *Kernel) sysSync(*Task, *args) (uint64, unix.Errno) { return 0, 0 }

// sysReadahead is readahead(2): the descriptor must be open for reading
// (EBADF) on a regular file (EINVAL).
func (k *Kernel) sysReadahead(t *Task, a *args) (uint64, unix.Errno) {
	f, st, e := k.usableFile(t, a[0])
	if e != 0 {
		return 0, e
	}
	if f.Flags()&unix.O_ACCMODE == unix.O_WRONLY {
		return 0, unix.EBADF
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || f.Describe().Kind == vfs.KindGenerated {
		return 0, unix.EINVAL
	}
	return 0, 0
}
