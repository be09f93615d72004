// Package vfs is the file layer of the emuckpt guest kernel: the open file
// descriptions, the fd table, guest path resolution and the synthetic files
// (/dev/null, /dev/zero, /dev/urandom, /proc, ...) that a static
// Linux x86-64 program expects to find.
//
// Everything here speaks Linux: results and errors are what the Linux system
// calls would return, as unix.Errno values, and the byte layouts (struct stat,
// linux_dirent64) are the x86-64 kernel ones. Guest input is hostile; no
// input makes this package panic.
//
// # The guest's namespace
//
// The guest sees one tree made of three layers:
//
//   - the host directory Options.Root, mounted read-only (and nodev) at the
//     guest's "/";
//   - a synthetic tree of directories, character devices, generated files and
//     symbolic links, registered with [FS.AddDevice], [FS.AddFile] and
//     [FS.AddSymlink], that overlays the root;
//   - tmpfs mounts ([FS.MountTmpfs]; the kernel mounts /tmp): in-memory
//     file systems in the synthetic tree, writable, whose files are guest
//     state (tmpfs.go explains them). Their pages are frames of guest RAM,
//     so a MAP_SHARED mapping of a tmpfs file or memfd maps the file's own
//     pages. Their contents are saved by [FS.TmpfsState] and restored by
//     [FS.RestoreTmpfs]; nothing of them is ever written to the host.
//
// With Options.Procs, /proc is a dynamic directory of the synthetic tree:
// its entries (/proc/self, /proc/thread-self, a directory per process and
// per thread, see procfs.go) are asked of the kernel through [Processes]
// at each lookup and listing; they are never linked into the tree.
//
// A synthetic entry shadows a host entry of the same name; a tmpfs mount
// and /proc hide the host directory they are on. A synthetic directory merges its children with those of the host directory at the same
// place, if there is one; directories on the way to a synthetic entry are
// created implicitly. The root is read-only: any open that would write,
// create or truncate a root file fails with EROFS, as on a read-only mount.
// Device nodes, FIFOs and sockets that the root may contain cannot be opened
// (EACCES, as on a nodev mount); the only devices are the synthetic ones.
//
// # Confinement
//
// A guest path can never name a host file outside Root. Paths are resolved by
// one walker ([FS.Open], [FS.Stat], ...) that behaves like a chroot: ".." at
// the guest root stays at the root, and symbolic links found in the root are
// read and expanded by the walker itself, absolute targets restarting at the
// guest root. The walker is also what makes the synthetic overlay visible at
// every step, so that a root symlink pointing at /dev/null reaches the
// synthetic device.
//
// The walker never hands the host kernel a path it has not already made
// canonical: every host lookup is openat2(2) on an O_PATH descriptor of Root
// with RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS|RESOLVE_NO_SYMLINKS, on a path
// made only of components the walker has checked (no "..", no "." and no
// symbolic links). The kernel thus enforces the confinement on its own: even
// a bug in the walker, or a host directory renamed during a lookup, can at
// worst name another file inside Root. Where openat2 is unavailable (ENOSYS,
// or EPERM from a seccomp filter), each lookup instead descends from the
// Root descriptor one component at a time with openat(2) and
// O_PATH|O_NOFOLLOW|O_DIRECTORY, which cannot leave Root either.
//
// Files are never reached through /proc magic links, and a file is opened
// for reading only after the walker has checked that it is a regular file or
// a directory.
//
// # Open files and checkpoints
//
// An open file description is a [File]. Its [File.Describe] method returns a
// [FileState], plain data (kind, canonical guest path, flags, offset) from
// which [FS.Reopen] makes an equivalent description in another process.
// [FDTable.Snapshot] and [FS.RestoreFDTable] do the same for a whole fd
// table, keeping dup'ed descriptors shared.
//
// # Paths
//
// Guest paths are resolved relative to a cwd string that the caller tracks
// per process; it is an absolute canonical guest path, as returned by
// [FS.Chdir]. For the *at system calls, the cwd of a directory descriptor is
// given by [DirPath].
package vfs
