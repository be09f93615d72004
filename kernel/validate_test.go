package kernel

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/emuckpt/emuckpt/kernel/vfs"
	"github.com/stretchr/testify/require"
)

const testSHA = "16fde19863673d58730fe3cc392613c3f281c166a82ff140ee95f704072df1d7"

// validState is a consistent State with one VMA of every type, as a
// checkpoint writes them (no KVM needed).
func validState() *State {
	pg := func(n uint64) uint64 { return n * 4096 }
	return &State{
		Program: ProgramRef{Name: "prog", Path: "testimages/bin/prog", SHA256: testSHA, Size: 30000},
		MemSize: 64 << 20,
		NextPID: 2,
		Processes: []ProcessState{{
			PID: 2, PPID: 1, PGID: 2, SID: 1, Cwd: "/", Exe: "prog", BrkStart: 0x409000, Brk: 0x40a000, FDLimit: 1024,
			FDs:     []vfs.FDEntry{{FD: 3, File: vfs.FileState{Kind: vfs.KindTmpfs, Path: "/tmp/f", Flags: 2, Mount: "/tmp", Ino: 2}}},
			Actions: []SigAction{{Signal: 10, Handler: 0x401000}},
			VMAs: []VMAState{
				{Type: VMAFile, Start: 0x400000, End: 0x401000, Prot: 1, MaxProt: 7, Kind: "file", Name: "prog", Objref: 1},
				{Type: VMAFile, Start: 0x401000, End: 0x405000, Prot: 3, MaxProt: 7, Kind: "file", Name: "prog", Offset: pg(1), Objref: 1,
					Pages: []PageRun{{VA: 0x402000, Count: 1, Index: 0, Copied: true}}},
				{Type: VMAHeap, Start: 0x409000, End: 0x40a000, Prot: 3, MaxProt: 7, Anonymous: true, Kind: "heap", Name: "[heap]",
					Pages: []PageRun{{VA: 0x409000, Count: 1, Index: 1}}},
				{Type: VMAFileShared, Start: 0x7f0000000000, End: 0x7f0000002000, Prot: 1, MaxProt: 5, Shared: true, Kind: "file", Name: "/data.txt", Objref: 2},
				{Type: VMAFile, Start: 0x7f0000002000, End: 0x7f0000004000, Prot: 3, MaxProt: 7, Kind: "file", Name: "/data.txt", Offset: pg(2), Objref: 2,
					Pages: []PageRun{{VA: 0x7f0000003000, Count: 1, Index: 2, Copied: true}}},
				{Type: VMAAnon, Start: 0x7f0000010000, End: 0x7f0000020000, Prot: 3, MaxProt: 7, Anonymous: true, Kind: "anon",
					Pages: []PageRun{{VA: 0x7f0000010000, Count: 2, Index: 3}, {VA: 0x7f0000014000, Count: 1, Index: 5}}, ZeroPages: 3},
				{Type: VMAShm, Start: 0x7f0000020000, End: 0x7f0000022000, Prot: 3, MaxProt: 7, Shared: true, Anonymous: true, Kind: "anon",
					Pages: []PageRun{{VA: 0x7f0000020000, Count: 1, Index: 6}}},
				// A second mapping of the same shared frame: the page is
				// stored once, both runs name it.
				{Type: VMAShm, Start: 0x7f0000030000, End: 0x7f0000031000, Prot: 1, MaxProt: 7, Shared: true, Anonymous: true, Kind: "anon",
					Pages: []PageRun{{VA: 0x7f0000030000, Count: 1, Index: 6}}},
				{Type: VMAScratch, Start: 0x7f0000040000, End: 0x7f0000050000, Prot: 3, MaxProt: 7, Anonymous: true, DontDump: true, Kind: "anon"},
				{Type: VMADevice, Start: 0x7ffff7ffe000, End: 0x7ffff7fff000, Prot: 1, MaxProt: 1, Shared: true, Kind: "device", Name: "/dev/hpet",
					Device: "hpet", DeviceParams: json.RawMessage(`{"timers":3}`)},
				{Type: VMAStack, Start: 0x7ffffffde000, End: 0x7ffffffff000, Prot: 3, MaxProt: 7, Anonymous: true, GrowsDown: true, Kind: "stack", Name: "[stack]",
					Pages: []PageRun{{VA: 0x7fffffffe000, Count: 1, Index: 7}}},
			},
			Tasks: []TaskState{{TID: 2, FSBase: 0x40a000, PendingCodes: map[int]int{10: 0}}},
		}},
		Objects: []Object{
			{Ref: 1, Kind: "program", Path: "prog"},
			{Ref: 2, Kind: "file", Path: "/data.txt", Identity: &vfs.FileIdentity{Size: 9000, MtimeNS: 1, Ino: 2, SHA256: testSHA}},
			{Ref: 3, Kind: "tmpfs", Path: "/tmp/f", Mount: "/tmp", Ino: 2},
		},
		Tmpfs: []vfs.MountState{{Path: "/tmp", Size: 1 << 20, Root: 1, NextIno: 3, Inodes: []vfs.InodeState{
			{Ino: 1, Mode: 0o41777, Entries: []vfs.TmpEntry{{Name: "f", Ino: 2}}},
			{Ino: 2, Mode: 0o100644, Nlink: 1, Size: 3, Pages: []vfs.TmpPage{{Index: 0, Page: 8}}},
		}}},
		PageCount: 9,
	}
}

func TestValidateAcceptsConsistentStates(t *testing.T) {
	require.NoError(t, validState().Validate())
	attrs := validState() // with every process attribute set
	umask, dumpable, comm := uint32(0o777), 0, "fifteen-bytes-x"
	attrs.Processes[0].Umask, attrs.Processes[0].Dumpable, attrs.Processes[0].Groups = &umask, &dumpable, []uint32{7, 9}
	attrs.Processes[0].LockFuture, attrs.Processes[0].LockOnFault = true, true
	attrs.Processes[0].VMAs[5].Locked = true
	attrs.Processes[0].Tasks[0].Comm, attrs.Processes[0].Tasks[0].Nice, attrs.Processes[0].Tasks[0].Pdeathsig = &comm, -20, 64
	require.NoError(t, attrs.Validate())
	legacy := validState() // images from before objects: program VMAs without objref
	legacy.Processes[0].VMAs[0].Objref, legacy.Processes[0].VMAs[1].Objref = 0, 0
	legacy.Objects = legacy.Objects[1:]
	require.NoError(t, legacy.Validate())
	noHash := validState() // images from before content hashes
	noHash.Objects[1].Identity.SHA256 = ""
	require.NoError(t, noHash.Validate())
	rooted := validState() // a run with --root
	rooted.Root = "/srv/data"
	require.NoError(t, rooted.Validate())
}

// TestValidateRefusesInconsistentStates: states whose checksums would be
// fine but whose parts contradict each other. Each is refused, and the
// message names the record.
func TestValidateRefusesInconsistentStates(t *testing.T) {
	vma := func(s *State, i int) *VMAState { return &s.Processes[0].VMAs[i] }
	const (
		prog, progData, heap, shared, private, anon, shm, shm2, scratch, device, stack = 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10
	)
	tests := []struct {
		name   string
		mutate func(s *State)
		msg    string // part of the message
	}{
		// Types that contradict kinds: restore builds from the kind.
		{"unknown VMA type", func(s *State) { vma(s, anon).Type = "MYSTERY" }, `processes[0].vmas[5] 0x7f0000010000-0x7f0000020000 ("MYSTERY"): type "MYSTERY" does not match kind anon`},
		{"DEVICE type on an anonymous VMA", func(s *State) { vma(s, anon).Type = VMADevice }, `processes[0].vmas[5] 0x7f0000010000-0x7f0000020000 ("DEVICE"): type "DEVICE" does not match kind anon`},
		{"ANON type on a device VMA", func(s *State) { vma(s, device).Type = VMAAnon }, "does not match kind device"},
		{"STACK type on a heap", func(s *State) { vma(s, heap).Type = VMAStack }, "does not match kind heap"},
		{"FILE type on a shared file", func(s *State) { vma(s, shared).Type = VMAFile }, "which make it FILE_SHARED"},
		{"SCRATCH type without dont_dump", func(s *State) { vma(s, anon).Type = VMAScratch }, "which make it ANON"},
		{"unknown kind", func(s *State) { vma(s, anon).Kind = "mystery" }, `unknown VMA kind "mystery"`},
		{"relative root", func(s *State) { s.Root = "data" }, `root: "data" is not an absolute path`},
		{"anonymous file", func(s *State) { vma(s, private).Anonymous = true }, "anonymous is true for kind file"},
		{"anon not anonymous", func(s *State) { vma(s, anon).Anonymous = false }, "anonymous is false for kind anon"},

		// Pages where the type stores none, and runs that collide.
		{"SCRATCH with stored pages", func(s *State) {
			vma(s, scratch).Pages = []PageRun{{VA: 0x7f0000040000, Count: 1, Index: 3}}
		}, "a SCRATCH VMA stores no pages"},
		{"DEVICE with stored pages", func(s *State) {
			vma(s, device).Pages = []PageRun{{VA: 0x7ffff7ffe000, Count: 1, Index: 3}}
		}, "a DEVICE VMA stores no pages"},
		{"FILE_SHARED with zero pages", func(s *State) { vma(s, shared).ZeroPages = 1 }, "a FILE_SHARED VMA stores no pages"},
		{"overlapping page runs", func(s *State) { vma(s, anon).Pages[1].VA = 0x7f0000011000 }, "pages[1] at 0x7f0000011000 overlaps or precedes the run before it"},
		{"the same run twice", func(s *State) { v := vma(s, anon); v.Pages = append(v.Pages, v.Pages[1]) }, "pages[2] at 0x7f0000014000 overlaps"},
		{"empty run", func(s *State) { vma(s, anon).Pages[0].Count = 0 }, "empty or unaligned run"},
		{"unaligned run", func(s *State) { vma(s, anon).Pages[0].VA++ }, "empty or unaligned run"},
		{"run past its VMA", func(s *State) { vma(s, anon).Pages[1].Count = 100 }, "reach past the VMA"},
		{"run count wraps", func(s *State) { vma(s, anon).Pages[1].Count = 1 << 52 }, "reach past the VMA"},
		{"run before its VMA", func(s *State) { vma(s, anon).Pages[0].VA = 0x7f0000000000 }, "overlaps or precedes"},
		{"run outside the page data", func(s *State) { vma(s, anon).Pages[1].Index = 9 }, "outside the image's 9 pages"},
		{"run index wraps", func(s *State) { vma(s, anon).Pages[1].Index = ^uint64(0) }, "outside the image's 9 pages"},
		{"uncopied page of a FILE VMA", func(s *State) { vma(s, progData).Pages[0].Copied = false }, "copied is false in a FILE VMA"},
		{"copied page of an ANON VMA", func(s *State) { vma(s, anon).Pages[0].Copied = true }, "copied is true in a ANON VMA"},
		{"too many zero pages", func(s *State) { vma(s, anon).ZeroPages = 17 }, "17 zero pages in a VMA of 16 pages"},

		// Files whose identity restore could not check.
		{"FILE VMA without objref", func(s *State) { vma(s, private).Objref = 0 }, `file "/data.txt" has no objref`},
		{"FILE_SHARED VMA without objref", func(s *State) { vma(s, shared).Objref = 0 }, "has no objref"},
		{"objref to nothing", func(s *State) { vma(s, private).Objref = 9 }, "objref 9 names no object"},
		{"objref to another file", func(s *State) { vma(s, private).Objref = 1 }, `maps "/data.txt", but its objref 1 is "prog"`},
		{"objref on an anonymous VMA", func(s *State) { vma(s, anon).Objref = 2 }, "objref 2 on a VMA that maps no file"},
		{"file object without identity", func(s *State) { s.Objects[1].Identity = nil }, "objects[1] (objref 2, \"/data.txt\"): a file object without an identity"},
		{"file object with a bad hash", func(s *State) { s.Objects[1].Identity.SHA256 = "xyz" }, "bad identity"},
		{"program object naming another file", func(s *State) { s.Objects[0].Path = "/etc/passwd" }, "must name the program"},
		{"repeated objref", func(s *State) { s.Objects[1].Ref = 1 }, "objref must be positive and unique"},
		{"unknown object kind", func(s *State) { s.Objects[1].Kind = "socket" }, `unknown kind "socket"`},

		// tmpfs files and what names them.
		{"tmpfs descriptor naming no file", func(s *State) { s.Processes[0].FDs[0].File.Ino = 7 }, "processes[0].fds[0] (fd 3): names inode 7 of tmpfs \"/tmp\""},
		{"tmpfs descriptor naming a directory", func(s *State) { s.Processes[0].FDs[0].File.Ino = 1 }, "which is not a saved regular file"},
		{"tmpfs descriptor of no mount", func(s *State) { s.Processes[0].FDs[0].File.Mount = "/var" }, "names inode 2 of tmpfs \"/var\""},
		{"tmpfs object naming no file", func(s *State) { s.Objects[2].Ino = 9 }, "objects[2] (objref 3): names inode 9"},
		{"tmpfs object with an identity", func(s *State) { s.Objects[2].Identity = s.Objects[1].Identity }, "a tmpfs object needs a path, a mount and an inode"},
		{"tmpfs object without a mount", func(s *State) { s.Objects[2].Mount = "" }, "a tmpfs object needs"},
		{"two tmpfs at one path", func(s *State) { s.Tmpfs = append(s.Tmpfs, s.Tmpfs[0]) }, "tmpfs[1]: a second mount at /tmp"},
		{"tmpfs link count", func(s *State) { s.Tmpfs[0].Inodes[1].Nlink = 2 }, "tmpfs[0]: tmpfs /tmp: inode 2 has nlink 2 but 1 entries"},
		{"tmpfs page past the end", func(s *State) { s.Tmpfs[0].Inodes[1].Size = 0 }, "is not a page inside the file"},
		{"tmpfs page outside the page data", func(s *State) { s.Tmpfs[0].Inodes[1].Pages[0].Page = 9 }, "inode 2: page 9 is outside the image's 9 pages"},
		{"tmpfs page of a VMA", func(s *State) { s.Tmpfs[0].Inodes[1].Pages[0].Page = 4 }, "page 4 of the page data is also a VMA's"},
		{"tmpfs page used twice", func(s *State) {
			in := &s.Tmpfs[0].Inodes[1]
			in.Size = 8192
			in.Pages = append(in.Pages, vfs.TmpPage{Index: 1, Page: 8})
		}, "page 8 of the page data is used twice"},

		// Offsets and ranges.
		{"file offset near 2^64", func(s *State) { vma(s, private).Offset = 1<<64 - 4096 }, "bad offset 0xfffffffffffff000"},
		{"file offset past 2^63", func(s *State) { vma(s, private).Offset = 1 << 63 }, "bad offset"},
		{"unaligned offset", func(s *State) { vma(s, private).Offset = 100 }, "bad offset 0x64"},
		{"overlapping VMAs", func(s *State) { vma(s, shm2).Start = 0x7f0000021000 }, "overlaps or precedes the VMA before it"},
		{"VMAs out of order", func(s *State) {
			v := s.Processes[0].VMAs
			v[anon], v[shm] = v[shm], v[anon]
		}, "processes[0].vmas[6]"},
		{"VMA past user space", func(s *State) { vma(s, stack).End = 1 << 60 }, "not a page-aligned range of user space"},
		{"empty VMA", func(s *State) { vma(s, anon).End = vma(s, anon).Start }, "not a page-aligned range"},
		{"unaligned VMA", func(s *State) { vma(s, anon).End++ }, "not a page-aligned range"},
		{"write beyond max_prot", func(s *State) { vma(s, prog).Prot = 3; vma(s, prog).MaxProt = 1 }, "bad protection"},
		{"unknown prot bits", func(s *State) { vma(s, anon).Prot = 0x10 }, "bad protection"},

		// Devices.
		{"device VMA without device type", func(s *State) { vma(s, device).Device = "" }, "a device VMA without a device VMA type"},
		{"device type on an anonymous VMA", func(s *State) { vma(s, anon).Device = "hpet" }, `device VMA type "hpet" on a VMA that maps no device`},

		// The rest of the state.
		{"bad program hash", func(s *State) { s.Program.SHA256 = "00" }, "program: sha256"},
		{"no program name", func(s *State) { s.Program.Name = "" }, "program: no name"},
		{"more pages than RAM", func(s *State) { s.PageCount = 1 << 40 }, "page_count"},
		{"bad brk", func(s *State) { s.Processes[0].BrkStart, s.Processes[0].Brk = 0x1001, 0 }, "bad heap break"},
		{"bad signal", func(s *State) { s.Processes[0].Actions[0].Signal = 99 }, "processes[0].sigactions[0]: bad or repeated signal 99"},
		{"repeated signal", func(s *State) { s.Processes[0].Actions = append(s.Processes[0].Actions, s.Processes[0].Actions[0]) }, "repeated signal 10"},
		{"no tasks", func(s *State) { s.Processes[0].Tasks = nil }, "a live process has tasks"},
		{"repeated tid", func(s *State) { s.Processes[0].Tasks = append(s.Processes[0].Tasks, s.Processes[0].Tasks[0]) }, "tasks[1]: bad or repeated tid 2"},
		{"kernel FS base", func(s *State) { s.Processes[0].Tasks[0].FSBase = 0xffffff8000001000 }, "FS/GS base outside user space"},
		{"pending code of signal 0", func(s *State) { s.Processes[0].Tasks[0].PendingCodes = map[int]int{0: 1} }, "pending code for bad signal 0"},
		// Process attributes (prctl, umask, setpriority, mlock).
		{"umask with file type bits", func(s *State) { m := uint32(0o10022); s.Processes[0].Umask = &m }, "process: umask 010022 is not a permission mask"},
		{"dumpable 2", func(s *State) { d := 2; s.Processes[0].Dumpable = &d }, "process: dumpable 2 is neither 0 nor 1"},
		{"too many groups", func(s *State) { s.Processes[0].Groups = make([]uint32, ngroupsMax+1) }, "more than NGROUPS_MAX"},
		{"lock on fault alone", func(s *State) { s.Processes[0].LockOnFault = true }, "lock_on_fault without lock_future"},
		{"long comm", func(s *State) { c := "sixteen-bytes-xx"; s.Processes[0].Tasks[0].Comm = &c }, "longer than 15 bytes or holds a NUL"},
		{"comm with NUL", func(s *State) { c := "a\x00b"; s.Processes[0].Tasks[0].Comm = &c }, "holds a NUL"},
		{"nice -21", func(s *State) { s.Processes[0].Tasks[0].Nice = -21 }, "bad pdeathsig 0 or nice -21"},
		{"pdeathsig 65", func(s *State) { s.Processes[0].Tasks[0].Pdeathsig = 65 }, "bad pdeathsig 65"},
		{"locked device VMA", func(s *State) { vma(s, device).Locked = true }, "a device mapping cannot be locked"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := validState()
			tt.mutate(s)
			err := s.Validate()
			require.Error(t, err)
			require.Contains(t, err.Error(), tt.msg)
			require.Less(t, len(err.Error()), 600, "message too long")
		})
	}
}

// TestValidateBoundsMessages: strings from the image are quoted and cut
// short in messages, so a hostile image cannot flood the terminal or send
// it escape sequences.
func TestValidateBoundsMessages(t *testing.T) {
	s := validState()
	s.Processes[0].VMAs[5].Type = "\x1b[2J" + strings.Repeat("A", 10000)
	err := s.Validate()
	require.Error(t, err)
	require.NotContains(t, err.Error(), "\x1b")
	require.Less(t, len(err.Error()), 400)
}

// BenchmarkValidate shows that Validate is linear in the number of VMAs:
// ns/VMA stays flat from 1,000 to 1,000,000.
func BenchmarkValidate(b *testing.B) {
	for _, n := range []int{1000, 1000000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			s := validState()
			s.Processes[0].VMAs = s.Processes[0].VMAs[:0]
			for i := range n {
				start := uint64(0x10000000 + i*0x2000)
				s.Processes[0].VMAs = append(s.Processes[0].VMAs, VMAState{Type: VMAAnon, Start: start, End: start + 0x1000, Prot: 3, MaxProt: 7, Anonymous: true, Kind: "anon"})
			}
			for b.Loop() {
				if err := s.Validate(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/VMA")
		})
	}
}
