package vfs

import (
	"strings"

	"golang.org/x/sys/unix"
)

// dirLevel is one directory on the walker's current path.
type dirLevel struct {
	synth *node // the synthetic directory here, or nil
	host  bool  // the root has a real directory here
}

// resolved is what a guest path names.
type resolved struct {
	comps []string // canonical components: no ".", "..", or symbolic link
	synth *node    // the synthetic entry, or nil for a host object
	// host is true when the root has the object: a host object, or the host
	// directory under a synthetic one.
	host  bool
	isDir bool
	// magic is set for a magic link followed (/proc/PID/fd/N): synth is
	// the link, which opens and stats as the file it stands for.
	magic bool
	// st is the host lstat of a host object that is not a directory.
	st unix.Stat_t
}

func (r *resolved) path() string { return joinPath(r.comps) }

// lookupError is a failed lookup. missingLast is set for ENOENT on the final
// component, whose parent directory exists: the case where O_CREAT would
// create it.
type lookupError struct {
	errno       unix.Errno
	missingLast bool
}

// resolve walks a guest path, relative to cwd unless absolute, like Linux's
// path walk in a chroot at the guest root. The final symbolic link is
// followed if follow is set or the path ends in "/". The caller must not
// hold fs.mu.
func (fs *FS) resolve(cwd, p string, follow bool) (resolved, *lookupError) {
	fs.mu.RLock()
	defer fs.mu.RUnlock()

	fail := func(e unix.Errno) (resolved, *lookupError) { return resolved{}, &lookupError{errno: e} }

	p = cString(p)
	if p == "" {
		return fail(unix.ENOENT)
	}
	if len(p) >= PathMax {
		return fail(unix.ENAMETOOLONG)
	}
	if p[0] != '/' {
		if !strings.HasPrefix(cwd, "/") {
			cwd = "/"
		}
		p = cwd + "/" + p
	}
	// A trailing slash asks for a directory, following a final symlink.
	mustDir := strings.HasSuffix(p, "/")

	// pending holds the components still to walk, the next one last, so
	// that a symbolic link's target can be pushed in front of the rest.
	pending := reversed(splitPath(p))
	var comps []string
	levels := []dirLevel{{synth: fs.tree, host: fs.root != nil}}
	links := 0

	// expand replaces a symbolic link by its target.
	expand := func(target string, last bool) unix.Errno {
		links++
		if links > MaxSymlinks {
			return unix.ELOOP
		}
		if target == "" {
			return unix.ENOENT
		}
		if last && strings.HasSuffix(target, "/") {
			mustDir = true
		}
		if target[0] == '/' {
			comps = comps[:0]
			levels = levels[:1]
		}
		pending = append(pending, reversed(splitPath(target))...)
		return 0
	}

	for len(pending) > 0 {
		name := pending[len(pending)-1]
		pending = pending[:len(pending)-1]
		last := len(pending) == 0

		switch name {
		case ".":
			continue
		case "..":
			if len(comps) > 0 {
				comps = comps[:len(comps)-1]
				levels = levels[:len(levels)-1]
			}
			continue
		}
		if len(name) > NameMax {
			return fail(unix.ENAMETOOLONG)
		}
		here := levels[len(levels)-1]
		next := append(comps[:len(comps):len(comps)], name)

		if here.synth != nil {
			if child := here.synth.child(name); child != nil {
				switch child.kind {
				case nodeDir:
					comps = next
					// A tmpfs hides the host directory it is mounted on;
					// /proc hides the root's.
					levels = append(levels, dirLevel{synth: child, host: here.host && !child.hidesHost() && fs.hostIsDir(next)})
				case nodeSymlink:
					if last && !mustDir && (!follow || child.reopen != nil) {
						return resolved{comps: next, synth: child, magic: follow}, nil
					}
					if e := expand(child.target, last); e != 0 {
						return fail(e)
					}
				default:
					if !last || mustDir {
						return fail(unix.ENOTDIR)
					}
					return resolved{comps: next, synth: child}, nil
				}
				continue
			}
		}
		if !here.host {
			return resolved{}, &lookupError{errno: unix.ENOENT, missingLast: last}
		}

		fd, st, errno := fs.root.lstat(next)
		if errno != 0 {
			return resolved{}, &lookupError{errno: errno, missingLast: errno == unix.ENOENT && last}
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			unix.Close(fd)
			comps = next
			levels = append(levels, dirLevel{host: true})
		case unix.S_IFLNK:
			if last && !follow && !mustDir {
				unix.Close(fd)
				return resolved{comps: next, host: true, st: st}, nil
			}
			target, errno := readlinkFd(fd)
			unix.Close(fd)
			if errno != 0 {
				return fail(errno)
			}
			if e := expand(target, last); e != 0 {
				return fail(e)
			}
		default:
			unix.Close(fd)
			if !last || mustDir {
				return fail(unix.ENOTDIR)
			}
			return resolved{comps: next, host: true, st: st}, nil
		}
	}

	// The walk ended on a directory.
	here := levels[len(levels)-1]
	return resolved{comps: comps, synth: here.synth, host: here.host, isDir: true}, nil
}

// hostIsDir reports whether the root has a directory (not a symbolic link
// to one) at comps.
func (fs *FS) hostIsDir(comps []string) bool {
	st, errno := fs.root.stat(comps)
	return errno == 0 && st.Mode&unix.S_IFMT == unix.S_IFDIR
}

func reversed(s []string) []string {
	for i, j := 0, len(s)-1; i < j; i, j = i+1, j-1 {
		s[i], s[j] = s[j], s[i]
	}
	return s
}
