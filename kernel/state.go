package kernel

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/emuckpt/emuckpt/guestmm"
	"github.com/emuckpt/emuckpt/kernel/vfs"
	"github.com/emuckpt/emuckpt/vmm"
)

// State is everything a checkpoint needs to continue a run in a new
// machine, apart from page contents: plain data, encodable as JSON.
type State struct {
	Program  ProgramRef `json:"program"`
	MemSize  uint64     `json:"mem_size"`
	Clock    ClockState `json:"clock"`
	Syscalls uint64     `json:"syscalls"`
	// Time is the guest's timers and CPU-time accounting.
	Time TimeState `json:"time"`
	// Processes is the process tree: the run's first process first,
	// then the others by pid, so that a parent comes before its
	// children. NextPID is the last pid or tid handed out.
	Processes []ProcessState `json:"processes"`
	NextPID   int            `json:"next_pid"`
	// Pipes are the pipes the descriptors of the tree hold, each once
	// with the bytes queued in it; a pipe end names its pipe by objref.
	Pipes   []vfs.PipeState `json:"pipes,omitempty"`
	Devices []DeviceRecord  `json:"devices,omitempty"`
	// Objects are the shared objects the VMAs refer to by objref: each
	// file is recorded once, however many VMAs map it.
	Objects []Object `json:"objects,omitempty"`
	// Tmpfs are the tmpfs mounts with their files (vfs.MountState), each
	// file once; descriptors name them by mount and inode number.
	Tmpfs     []vfs.MountState `json:"tmpfs,omitempty"`
	PageCount uint64           `json:"page_count"`

	// Root is the host directory the guest saw as / (Config.Root); empty
	// without one, and in images from before it was saved.
	Root string `json:"root,omitempty"`
}

// Object is a shared object of an image, saved once and named by its
// objref (Ref, from 1) wherever it is used.
type Object struct {
	Ref  int    `json:"objref"`
	Kind string `json:"kind"` // "program", "file" or "tmpfs"
	Path string `json:"path"`
	// Mount and Ino name a tmpfs file (kind "tmpfs"): the mount point and
	// the inode in the image's tmpfs record, whose contents the image
	// holds, so it needs no identity.
	Mount string `json:"mount,omitempty"`
	Ino   uint64 `json:"ino,omitempty"`
	// Identity is the file's size, modification time and inode at the
	// checkpoint (kind "file"); the program is identified by its SHA-256.
	Identity *vfs.FileIdentity `json:"identity,omitempty"`
}

// ProgramRef identifies the program file so that a restore maps the same
// bytes: its clean pages are read again from it.
type ProgramRef struct {
	Name   string `json:"name"`
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	Size   int    `json:"size"`
}

// ClockState is the guest clock at the checkpoint.
type ClockState struct {
	Virtual bool      `json:"virtual"`
	NS      int64     `json:"ns,omitempty"`
	Rand    [4]uint64 `json:"rand,omitempty"`
}

// ProcessState is a Process as data.
//
// What several processes share is saved once: an address space shared by
// CLONE_VM (a vfork child before it execs) is the VMAs of the process
// named by SharesMemoryWith, a descriptor table shared by CLONE_FILES is
// the one of SharesFilesWith, open file descriptions shared after fork
// have one Desc number across all tables (one offset), and a frame that
// processes share copy-on-write after fork is stored once.
type ProcessState struct {
	PID  int `json:"pid"`
	PPID int `json:"ppid"`
	// Parent is the pid of the process wait4 reports this one to; 0 for
	// a child of init (the first process, and orphans).
	Parent     int `json:"parent,omitempty"`
	PGID       int `json:"pgid"`
	SID        int `json:"sid"`
	ExitSignal int `json:"exit_signal,omitempty"`
	// Zombie is a process that exited and was not reaped: Status is
	// what wait4 will report; it has no tasks, memory or descriptors.
	Zombie bool        `json:"zombie,omitempty"`
	Status *ExitStatus `json:"status,omitempty"`
	// Execed is set once it called execve; Program when it runs the
	// run's program (whose pages come from the program file).
	Execed  bool     `json:"execed,omitempty"`
	Program bool     `json:"program,omitempty"`
	Args    []string `json:"args,omitempty"`
	// SharesMemoryWith and SharesFilesWith name the earlier process
	// whose address space or descriptor table this one uses (0: its own).
	SharesMemoryWith int `json:"shares_memory_with,omitempty"`
	SharesFilesWith  int `json:"shares_files_with,omitempty"`
	// VforkParent is the tid of the task waiting in vfork for this
	// process to exec or exit.
	VforkParent int           `json:"vfork_parent,omitempty"`
	Cwd         string        `json:"cwd"`
	Exe         string        `json:"exe"`
	Actions     []SigAction   `json:"sigactions,omitempty"`
	BrkStart    uint64        `json:"brk_start"`
	Brk         uint64        `json:"brk"`
	FDLimit     int           `json:"fd_limit"`
	FDs         []vfs.FDEntry `json:"fds"`
	VMAs        []VMAState    `json:"vmas"`
	// Umask and Dumpable are nil in images from before they were saved
	// (restored as 0022 and 1).
	Umask    *uint32 `json:"umask,omitempty"`
	Dumpable *int    `json:"dumpable,omitempty"`
	// Groups is the group list a privileged setgroups set; null, the
	// host's. An empty list ([]) is a list, so no omitempty.
	Groups []uint32 `json:"groups"`
	// LockFuture and LockOnFault are mlockall's MCL_FUTURE and
	// MCL_ONFAULT.
	LockFuture  bool `json:"lock_future,omitempty"`
	LockOnFault bool `json:"lock_on_fault,omitempty"`
	// Tasks are the process's threads, the thread-group leader first.
	Tasks []TaskState `json:"tasks,omitempty"`
}

// SigAction is a non-default signal disposition.
type SigAction struct {
	Signal   int    `json:"signal"`
	Handler  uint64 `json:"handler"`
	Flags    uint64 `json:"flags"`
	Restorer uint64 `json:"restorer"`
	Mask     uint64 `json:"mask"`
}

// TaskState is a Task and its CPU state.
type TaskState struct {
	TID      int      `json:"tid"`
	Regs     vmm.Regs `json:"regs"`
	FSBase   uint64   `json:"fs_base"`
	GSBase   uint64   `json:"gs_base"`
	FPU      []byte   `json:"fpu"`
	ClearTID uint64   `json:"clear_child_tid"`
	Robust   uint64   `json:"robust_list"`
	RobustSz uint64   `json:"robust_list_len"`
	Sigmask  uint64   `json:"sigmask"`
	Pending  uint64   `json:"pending"`
	// PendingCodes is the si_code of each pending signal.
	PendingCodes map[int]int `json:"pending_codes,omitempty"`
	AltSP        uint64      `json:"altstack_sp"`
	AltFlags     int32       `json:"altstack_flags"`
	AltSize      uint64      `json:"altstack_size"`
	// Comm is the task name (prctl PR_SET_NAME); nil in images from
	// before it was saved, restored as the program's name.
	Comm      *string `json:"comm,omitempty"`
	Pdeathsig int     `json:"pdeathsig,omitempty"`
	Nice      int     `json:"nice,omitempty"`
	// Affinity is the task's sched_setaffinity mask (0: every vCPU). A
	// restore with fewer vCPUs keeps those that exist, or all if none.
	Affinity uint64 `json:"affinity,omitempty"`
	// Blocked says the task waits in the system call RAX names, with
	// RIP after its syscall instruction: the restored task makes the
	// call again (not counted as a new call), and a wait with a deadline
	// has WaitLeft ns of it left (-1: none). Images from before this
	// field rewound RIP to the syscall instruction instead.
	Blocked  bool  `json:"blocked,omitempty"`
	WaitLeft int64 `json:"wait_left,omitempty"`
	// VforkChild is the pid of the child a task blocked in vfork waits
	// for; the call returns that pid when the wait is over.
	VforkChild int `json:"vfork_child,omitempty"`
	// SavedMask is the task's own signal mask while a ppoll or pselect6
	// that replaced it waits (Sigmask is then the call's).
	SavedMask *uint64 `json:"saved_mask,omitempty"`
}

// VMA types in an image. A type says what the checkpoint stores for the
// VMA and how restore brings it back (see docs/FORMAT.md).
const (
	VMAAnon       = "ANON"        // private anonymous: present non-zero pages
	VMAShm        = "SHM_ANON"    // shared anonymous: present non-zero pages
	VMAHeap       = "HEAP"        // the brk heap: as ANON
	VMAStack      = "STACK"       // the stack: as ANON
	VMAFile       = "FILE"        // private file: only pages copied on write
	VMAFileShared = "FILE_SHARED" // shared file (read-only root): no pages
	VMAScratch    = "SCRATCH"     // MADV_DONTDUMP: mapping only, restored zero-filled
	VMADevice     = "DEVICE"      // device mapping: mapping only, no contents
	VMAVDSO       = "VDSO"        // the vDSO's code: as ANON (its bytes as they were)
	VMAVVar       = "VVAR"        // the vDSO's data page: mapping only, rewritten by the restoring kernel
)

// VMAState is one VMA of the image.
type VMAState struct {
	Type      string `json:"type"`
	Start     uint64 `json:"start"`
	End       uint64 `json:"end"`
	Prot      uint32 `json:"prot"`
	MaxProt   uint32 `json:"max_prot"`
	Shared    bool   `json:"shared,omitempty"`
	Anonymous bool   `json:"anonymous,omitempty"`
	GrowsDown bool   `json:"grows_down,omitempty"`
	DontDump  bool   `json:"dont_dump,omitempty"`
	NoReserve bool   `json:"no_reserve,omitempty"`
	Locked    bool   `json:"locked,omitempty"` // mlock, MAP_LOCKED
	Kind      string `json:"kind"`
	Name      string `json:"name,omitempty"`
	Offset    uint64 `json:"offset,omitempty"`
	// Device is the device VMA type its device registered ("hpet", "bsr",
	// or "vanilla" for a device that registers nothing special).
	Device string `json:"device,omitempty"`
	// DeviceParams is what the device VMA type saved about the device.
	DeviceParams json.RawMessage `json:"device_params,omitempty"`
	// Objref names the file a FILE or FILE_SHARED VMA maps (see Object).
	Objref int `json:"objref,omitempty"`
	// NoHugePage: madvise(MADV_NOHUGEPAGE), or MAP_STACK; restore puts
	// no 2 MiB page there.
	NoHugePage bool `json:"no_huge_page,omitempty"`
	// Pages are the stored pages, in runs; ZeroPages counts present pages
	// that were all zero and are not stored.
	Pages     []PageRun `json:"pages,omitempty"`
	ZeroPages uint64    `json:"zero_pages,omitempty"`
}

// PageRun is Count consecutive virtual pages from VA whose contents are
// pages Index.. Index+Count-1 of the image's page data.
type PageRun struct {
	VA     uint64 `json:"va"`
	Count  uint64 `json:"count"`
	Index  uint64 `json:"index"`
	Copied bool   `json:"copied,omitempty"`
}

// DeviceRecord is a device model's own state, saved for
// --device-state=preserve.
type DeviceRecord struct {
	Name string `json:"name"`
	Data []byte `json:"data"`
}

// Stored counts the pages a VMA stores.
func (v *VMAState) Stored() uint64 {
	var n uint64
	for _, r := range v.Pages {
		n += r.Count
	}
	return n
}

// Snapshot is a State plus where its pages are: Pages[i] is the
// guest-physical address of page i of the page data, in Mem.
type Snapshot struct {
	State *State
	Mem   []byte
	Pages []uint64
	// Started is when the kernel began taking the snapshot (the guest has
	// been stopped since).
	Started time.Time
	// Self says the guest asked for it (emuckpt_checkpoint()).
	Self bool
	// Guard, for a checkpoint written while the guest runs on (see
	// bgsave.go), hands out the page data as it was; nil means the guest
	// is stopped until Save returns and Mem can be read directly. Paused
	// is then how long the guest was stopped, and StateJSON the State as
	// JSON, taken while it was (State itself must not be read).
	Guard     PageGuard
	Paused    time.Duration
	StateJSON []byte
	// Parent is set in a delta (CheckpointConfig.Incremental, after the
	// first image of the run): Parent[i] is 1 + the index of page i in
	// the previous image written, whose frame was not written since, or
	// 0 for a page the snapshot stores itself. nil: a full snapshot.
	Parent []uint64
	// next is what the image of this snapshot holds per frame
	// (incremental.go), for the delta after it.
	next []uint32
	// pages, until the page lists are finished (memorySnapshot), is what
	// finishes them.
	pages *memorySnapshot
}

// Delta says whether the snapshot is a delta against the previous image
// written (see Parent).
func (s *Snapshot) Delta() bool { return s.Parent != nil }

// StoredPages is the number of pages the snapshot's image stores itself:
// all of them, or in a delta those its parent does not hold.
func (s *Snapshot) StoredPages() int {
	if !s.Delta() {
		return len(s.Pages)
	}
	n := 0
	for _, p := range s.Parent {
		if p == 0 {
			n++
		}
	}
	return n
}

func programRef(name, path string, prog []byte) ProgramRef {
	sum := sha256.Sum256(prog)
	return ProgramRef{Name: name, Path: path, SHA256: hex.EncodeToString(sum[:]), Size: len(prog)}
}

// Matches reports whether prog is the program the reference names.
func (r ProgramRef) Matches(prog []byte) bool {
	sum := sha256.Sum256(prog)
	return len(prog) == r.Size && hex.EncodeToString(sum[:]) == r.SHA256
}

func vmaKindName(k guestmm.VMAKind) string {
	switch k {
	case guestmm.KindAnon:
		return "anon"
	case guestmm.KindFile:
		return "file"
	case guestmm.KindHeap:
		return "heap"
	case guestmm.KindStack:
		return "stack"
	case guestmm.KindDevice:
		return "device"
	case guestmm.KindVDSO:
		return "vdso"
	case guestmm.KindVVar:
		return "vvar"
	}
	return fmt.Sprintf("kind%d", k)
}

func vmaKindFromName(s string) (guestmm.VMAKind, bool) {
	for _, k := range []guestmm.VMAKind{guestmm.KindAnon, guestmm.KindFile, guestmm.KindHeap, guestmm.KindStack, guestmm.KindDevice, guestmm.KindVDSO, guestmm.KindVVar} {
		if vmaKindName(k) == s {
			return k, true
		}
	}
	return 0, false
}

// vmaType classifies a VMA for the image.
func vmaType(v *guestmm.VMA) string { return vmaTypeFor(v.Kind, v.DontDump, v.Shared) }

// vmaTypeFor is the image type of a VMA of the given kind and flags. A
// VMA's type follows from them, which is how Validate checks it.
func vmaTypeFor(kind guestmm.VMAKind, dontDump, shared bool) string {
	switch {
	case kind == guestmm.KindDevice:
		return VMADevice
	case kind == guestmm.KindVVar:
		return VMAVVar
	case kind == guestmm.KindVDSO && !dontDump:
		return VMAVDSO
	case dontDump:
		return VMAScratch
	case kind == guestmm.KindStack:
		return VMAStack
	case kind == guestmm.KindHeap:
		return VMAHeap
	case kind == guestmm.KindFile && shared:
		return VMAFileShared
	case kind == guestmm.KindFile:
		return VMAFile
	case shared:
		return VMAShm
	}
	return VMAAnon
}
