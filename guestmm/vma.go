package guestmm

import (
	"reflect"
	"slices"
	"sort"
)

// Prot is a set of mmap protection bits, with the Linux values.
type Prot uint32

// Protection bits.
const (
	ProtNone  Prot = 0
	ProtRead  Prot = 1
	ProtWrite Prot = 2
	ProtExec  Prot = 4

	protRWX = ProtRead | ProtWrite | ProtExec
)

// String renders p like the first three columns of /proc/self/maps.
func (p Prot) String() string {
	b := []byte("---")
	if p&ProtRead != 0 {
		b[0] = 'r'
	}
	if p&ProtWrite != 0 {
		b[1] = 'w'
	}
	if p&ProtExec != 0 {
		b[2] = 'x'
	}
	return string(b)
}

// VMAKind says what a VMA was created for.
type VMAKind uint8

// VMA kinds.
const (
	KindAnon   VMAKind = iota // anonymous mmap
	KindFile                  // mmap of a file
	KindHeap                  // the brk area, "[heap]"
	KindStack                 // the main thread stack, "[stack]"
	KindDevice                // mmap of a device's MMIO window
	// KindVDSO is the vDSO's code, "[vdso]": private anonymous memory
	// that the kernel fills at exec (a private copy per process, shared
	// copy-on-write after fork).
	KindVDSO
	// KindVVar is the vDSO's data page, "[vvar]": one frame the kernel
	// owns and rewrites, mapped read-only from its Backing, which must be
	// a PageCache. Its MaxProt keeps it read-only.
	KindVVar
)

var kindNames = [...]string{"anon", "file", "heap", "stack", "device", "vdso", "vvar"}

func (k VMAKind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind?"
}

// special reports whether k is a VMA the kernel makes itself (the vDSO
// and its data page): such VMAs never merge, as Linux's special mappings.
func (k VMAKind) special() bool { return k == KindVDSO || k == KindVVar }

// Backing is the file (or device) behind a mapping.
type Backing interface {
	// ReadAt fills p from offset off. A short read (past end of file)
	// leaves the rest of the page zero.
	ReadAt(p []byte, off int64) (int, error)
	// Name is shown in /proc/self/maps.
	Name() string
}

// BackingAccess may be implemented by a Backing to say how the file
// descriptor behind it was opened: ProtRead if it is readable, ProtWrite if
// it is writable, ProtExec if the file may be executed (not on a noexec
// mount). A Backing without it counts as readable, writable and executable.
type BackingAccess interface {
	Backing
	Access() Prot
}

// PageCache is implemented by backings whose pages already live in guest
// frames (tmpfs files, memfd): a shared mapping maps the file's own frame
// instead of a copy, so writes through it are the file's contents, seen
// by read(2) and by every other shared mapping, as with Linux's page
// cache. Private mappings still copy (Backing.ReadAt).
type PageCache interface {
	Backing
	// Frame returns the frame of the page at file offset off (a multiple
	// of PageSize), allocating a zero one for a hole, with a reference
	// taken for the mapping. It fails past the end of the file and when
	// no page can be allocated; the access is then SIGBUS, as on Linux.
	Frame(off uint64) (pa uint64, err error)
}

// DeviceBacking is a Backing for a device's MMIO window. Pages of such a
// mapping point straight at MMIOBase()+offset with caching disabled; they
// never use RAM frames and are never copied on write.
type DeviceBacking interface {
	Backing
	MMIOBase() uint64
	MMIOSize() uint64
}

// VMA is one virtual memory area: a page-aligned range [Start, End) with
// uniform protection and backing, like Linux's vm_area_struct.
type VMA struct {
	Start, End uint64
	Prot       Prot
	MaxProt    Prot // what mprotect may grant (VM_MAYREAD/MAYWRITE/MAYEXEC)

	Shared     bool // MAP_SHARED
	Anonymous  bool // no Backing (KindAnon, KindHeap, KindStack, KindVDSO)
	GrowsDown  bool // grows down on faults below Start (stacks)
	DontDump   bool // MADV_DONTDUMP: excluded from core dumps / checkpoints
	DontFork   bool // MADV_DONTFORK: not inherited by a child
	WipeOnFork bool // MADV_WIPEONFORK: the child sees zero pages
	NoReserve  bool // MAP_NORESERVE
	NoHugePage bool // MADV_NOHUGEPAGE: no 2 MiB pages
	Locked     bool // MAP_LOCKED

	Kind    VMAKind
	Backing Backing // nil for anonymous memory
	Offset  uint64  // file offset of Start (0 for anonymous memory)
	Name    string  // /proc/self/maps name: path, "[heap]", "[stack]", or ""
}

// Len returns the size of the VMA in bytes.
func (v *VMA) Len() uint64 { return v.End - v.Start }

// Contains reports whether addr lies inside the VMA.
func (v *VMA) Contains(addr uint64) bool { return v.Start <= addr && addr < v.End }

// isFile reports whether pages come from v.Backing (file, not device).
func (v *VMA) isFile() bool { return v.Kind == KindFile }

// offsetOf returns the backing offset of the page at va.
func (v *VMA) offsetOf(va uint64) uint64 { return v.Offset + (va - v.Start) }

// canMerge reports whether b can be appended to a (a.End == b.Start) to
// form one VMA: identical attributes and, for files, contiguous offsets.
func canMerge(a, b *VMA) bool {
	if a.End != b.Start || a.Kind == KindDevice || b.Kind == KindDevice || a.Kind.special() || b.Kind.special() {
		return false
	}
	if a.Prot != b.Prot || a.MaxProt != b.MaxProt || a.Shared != b.Shared ||
		a.Anonymous != b.Anonymous || a.GrowsDown != b.GrowsDown ||
		a.DontDump != b.DontDump || a.DontFork != b.DontFork ||
		a.WipeOnFork != b.WipeOnFork || a.NoReserve != b.NoReserve ||
		a.Locked != b.Locked || a.NoHugePage != b.NoHugePage || a.Kind != b.Kind || a.Name != b.Name {
		return false
	}
	if a.Anonymous {
		// Each shared anonymous mapping is its own memory object.
		return !a.Shared
	}
	return sameBacking(a.Backing, b.Backing) && a.Offset+a.Len() == b.Offset
}

// sameBacking compares two backings by identity without risking the panic
// that == raises on interfaces holding uncomparable values.
func sameBacking(a, b Backing) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	if va.Type() != vb.Type() || !va.Comparable() || !vb.Comparable() {
		return false
	}
	return a == b
}

// vmaList is the sorted, non-overlapping set of VMAs of an address space.
// Callers enforce the map count limit before splitting.
type vmaList struct {
	v []*VMA
}

// search returns the index of the first VMA that ends above addr.
func (l *vmaList) search(addr uint64) int {
	return sort.Search(len(l.v), func(i int) bool { return l.v[i].End > addr })
}

// find returns the VMA containing addr and its index.
func (l *vmaList) find(addr uint64) (*VMA, int) {
	i := l.search(addr)
	if i < len(l.v) && l.v[i].Start <= addr {
		return l.v[i], i
	}
	return nil, i
}

// overlaps reports whether any VMA intersects [start, end).
func (l *vmaList) overlaps(start, end uint64) bool {
	i := l.search(start)
	return i < len(l.v) && l.v[i].Start < end
}

// splitAt makes addr a VMA boundary if it lies strictly inside a VMA.
func (l *vmaList) splitAt(addr uint64) {
	v, i := l.find(addr)
	if v == nil || v.Start == addr {
		return
	}
	hi := *v
	hi.Start = addr
	if !v.Anonymous {
		hi.Offset = v.offsetOf(addr)
	}
	v.End = addr
	l.v = slices.Insert(l.v, i+1, &hi)
}

// isolate splits VMAs so that start and end are boundaries and returns the
// index range [i, j) of the VMAs inside [start, end).
func (l *vmaList) isolate(start, end uint64) (i, j int) {
	l.splitAt(start)
	l.splitAt(end)
	return l.search(start), l.search(end)
}

// insert adds v, which must not overlap any VMA, and returns its index.
func (l *vmaList) insert(v *VMA) int {
	i := l.search(v.Start)
	l.v = slices.Insert(l.v, i, v)
	return i
}

// mergeRange merges mergeable neighbours among the VMAs at indexes
// [i-1, j], i.e. the range [i, j) and the VMAs just outside it.
func (l *vmaList) mergeRange(i, j int) {
	lo := max(i-1, 0)
	hi := min(j, len(l.v)-1)
	for k := hi - 1; k >= lo; k-- {
		a, b := l.v[k], l.v[k+1]
		if canMerge(a, b) {
			a.End = b.End
			l.v = slices.Delete(l.v, k+1, k+2)
		}
	}
}

// gapStart returns the lowest address a new mapping below v may end at:
// v.Start, minus the guard gap for stacks.
func gapStart(v *VMA, guard uint64) uint64 {
	if v.GrowsDown && v.Start >= guard {
		return v.Start - guard
	}
	if v.GrowsDown {
		return 0
	}
	return v.Start
}
