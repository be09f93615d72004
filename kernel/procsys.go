package kernel

import (
	"fmt"
	"strings"

	"github.com/emuckpt/emuckpt/guestmm"
	"github.com/emuckpt/emuckpt/kernel/vfs"
	"golang.org/x/sys/unix"
)

// The files of /proc itself (vfs.SystemFiles) and /proc/PID/fd, as the
// kernel sees the machine. docs/KERNEL.md, "Files", says how they differ
// from Linux's.

func (v procView) Files(pid int) *vfs.FDTable {
	p := v.k.procs[pid]
	if p == nil || p.exited {
		return nil
	}
	return p.fds
}

func (v procView) MappedFiles(pid int) []vfs.MappedFile {
	p := v.k.procs[pid]
	if p == nil || p.exited || p.as == nil {
		return nil
	}
	var out []vfs.MappedFile
	for _, vma := range p.as.VMAs() {
		if strings.HasPrefix(vma.Name, "/") && (vma.Kind == guestmm.KindFile || vma.Kind == guestmm.KindDevice || vma.Kind == guestmm.KindAnon) {
			out = append(out, vfs.MappedFile{Start: vma.Start, End: vma.End, Path: vma.Name})
		}
	}
	return out
}

func (v procView) System(name string) []byte {
	k := v.k
	switch name {
	case "cpuinfo":
		return k.cpuinfo()
	case "loadavg":
		return k.loadavg()
	case "meminfo":
		return k.meminfo()
	case "stat":
		return k.procStat()
	case "uptime":
		up, _ := k.clock.Now(unix.CLOCK_BOOTTIME)
		return fmt.Appendf(nil, "%d.%02d 0.00\n", up/1e9, up%1e9/1e7)
	case "version":
		return []byte("Linux version " + utsRelease + " (emuckpt@emuckpt) (go) " + utsVersion + "\n")
	}
	return nil
}

// taskCounts is the number of tasks, and of those running or runnable.
func (k *Kernel) taskCounts() (total, running int) {
	for _, p := range k.procs {
		for _, t := range p.tasks {
			if t.state == taskExited {
				continue
			}
			total++
			if t.state != taskBlocked {
				running++
			}
		}
	}
	return total, running
}

// loadavg is /proc/loadavg. The guest kernel keeps no load average: the
// three figures are 0.00, then the runnable and total tasks and the last
// pid given out, as Linux prints them.
func (k *Kernel) loadavg() []byte {
	total, running := k.taskCounts()
	return fmt.Appendf(nil, "0.00 0.00 0.00 %d/%d %d\n", running, total, k.sched.nextPID)
}

// meminfo is /proc/meminfo: the guest's RAM in frames, what its tmpfs
// mounts hold (Shmem, counted in Cached as Linux does), no swap.
func (k *Kernel) meminfo() []byte {
	total, free := k.ramBytes()
	total, free = total/1024, free/1024
	shmem := uint64(k.fs.TmpfsBytes()) / 1024
	var b []byte
	for _, f := range []struct {
		name string
		kb   uint64
	}{
		{"MemTotal", total}, {"MemFree", free}, {"MemAvailable", free}, {"Buffers", 0},
		{"Cached", shmem}, {"SwapCached", 0}, {"SwapTotal", 0}, {"SwapFree", 0},
		{"Shmem", shmem},
	} {
		b = fmt.Appendf(b, "%-16s%8d kB\n", f.name+":", f.kb)
	}
	return b
}

// procStat is /proc/stat: CPU time in USER_HZ (100) ticks, from the
// guest's CPU-time clock (split evenly over the vCPUs: the kernel does not
// keep it per vCPU), idle time the rest of the uptime, and the task
// counts.
func (k *Kernel) procStat() []byte {
	const tick = 1e7 // ns per USER_HZ tick
	n := max(len(k.cpus), 1)
	up, _ := k.clock.Now(unix.CLOCK_BOOTTIME)
	used := k.cpuTime()
	user, sys := used.user/tick, used.sys/tick
	idle := max(up*int64(n)/tick-user-sys, 0)
	line := func(name string, div int64) string {
		return fmt.Sprintf("%s %d 0 %d %d 0 0 0 0 0 0\n", name, user/div, sys/div, idle/div)
	}
	var b strings.Builder
	b.WriteString(line("cpu ", 1))
	for i := range n {
		b.WriteString(line(fmt.Sprintf("cpu%d", i), int64(n)))
	}
	boot, _ := k.clock.Now(unix.CLOCK_REALTIME)
	_, running := k.taskCounts()
	fmt.Fprintf(&b, "intr 0\nctxt 0\nbtime %d\nprocesses %d\nprocs_running %d\nprocs_blocked 0\nsoftirq 0 0 0 0 0 0 0 0 0 0 0\n",
		(boot-up)/1e9, k.sched.nextPID, running)
	return []byte(b.String())
}

// sysctls are the /proc/sys files the guest can read: the values this
// kernel has (the uname fields, the VMA and descriptor limits, the lowest
// mapping address) or Linux's defaults. They cannot be written (EACCES).
func sysctls() map[string]string {
	return map[string]string{
		"kernel/ostype":        "Linux",
		"kernel/osrelease":     utsRelease,
		"kernel/version":       utsVersion,
		"kernel/hostname":      utsNodename,
		"kernel/domainname":    "(none)",
		"kernel/ngroups_max":   fmt.Sprint(ngroupsMax),
		"kernel/cap_last_cap":  "40",
		"kernel/pid_max":       "4194304",
		"vm/mmap_min_addr":     fmt.Sprint(guestmm.DefaultMmapMin),
		"vm/max_map_count":     fmt.Sprint(guestmm.DefaultMaxMapCount),
		"vm/overcommit_memory": "0",
		"fs/nr_open":           fmt.Sprint(vfs.NrOpen),
	}
}

// addSysctls registers the sysctls under /proc/sys.
func addSysctls(fs *vfs.FS) error {
	for name, value := range sysctls() {
		content := []byte(value + "\n")
		if err := fs.AddFile("/proc/sys/"+name, func() []byte { return content }); err != nil {
			return err
		}
	}
	return nil
}
