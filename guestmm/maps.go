package guestmm

import (
	"fmt"
	"strings"
)

// mapsNameColumn is where Linux starts the name column of /proc/PID/maps:
// the header is padded to 25 + 6*sizeof(void*) - 1 = 72 characters and a
// space follows.
const mapsNameColumn = 72

// MapsText renders the VMAs in the format of Linux's /proc/self/maps:
//
//	00400000-00452000 r-xp 00000000 00:00 0                                  /bin/prog
//	7ffff7ff9000-7ffff7ffd000 rw-p 00000000 00:00 0
//
// Device and inode numbers are always zero. Lines without a name end with
// the space that follows the inode, exactly as Linux prints them.
func (as *AddressSpace) MapsText() string {
	var b strings.Builder
	for _, v := range as.vmas.v {
		writeMapsLine(&b, v)
	}
	return b.String()
}

// writeMapsLine writes v's line of /proc/PID/maps.
func writeMapsLine(b *strings.Builder, v *VMA) {
	lineStart := b.Len()
	share := byte('p')
	if v.Shared {
		share = 's'
	}
	var off uint64
	if !v.Anonymous {
		off = v.Offset
	}
	fmt.Fprintf(b, "%08x-%08x %s%c %08x %02x:%02x %d ",
		v.Start, v.End, v.Prot.String(), share, off, 0, 0, 0)
	if v.Name != "" {
		if pad := mapsNameColumn - (b.Len() - lineStart); pad > 0 {
			b.WriteString(strings.Repeat(" ", pad))
		}
		b.WriteByte(' ')
		// seq_path escapes newlines so that a name cannot forge lines.
		b.WriteString(strings.ReplaceAll(v.Name, "\n", `\012`))
	}
	b.WriteByte('\n')
}

// SmapsText renders /proc/PID/smaps: each VMA's maps line, then its
// memory in Linux's fields and order. Rss counts the pages the guest's
// page tables map; Pss divides each by the number of address spaces that
// share its frame (after fork); anonymous pages and file pages written
// by this process (copied) are dirty, other file pages clean, and pages
// whose frame is shared count as shared. AnonHugePages is the part in 2
// MiB pages. There is no swap.
func (as *AddressSpace) SmapsText() string {
	var b strings.Builder
	for _, v := range as.vmas.v {
		writeMapsLine(&b, v)
		var rss, pss, sharedClean, sharedDirty, privClean, privDirty, anon, huge uint64
		for _, pte := range as.PresentPages(v.Start, v.End) {
			if !pte.Resident() {
				continue
			}
			rss += PageSize
			refs := uint64(1)
			if pte&Special == 0 && as.frames.Contains(pte.Addr()) {
				refs = uint64(max(as.frames.RefCount(pte.Addr()), 1))
			}
			pss += PageSize / refs
			dirty := v.Anonymous || pte&Copied != 0
			switch {
			case refs > 1 && dirty:
				sharedDirty += PageSize
			case refs > 1:
				sharedClean += PageSize
			case dirty:
				privDirty += PageSize
			default:
				privClean += PageSize
			}
			if dirty {
				anon += PageSize
			}
			if pte&PS != 0 {
				huge += PageSize
			}
		}
		var locked uint64
		if v.Locked {
			locked = pss
		}
		for _, f := range []struct {
			name string
			kb   uint64
		}{
			{"Size", v.Len()}, {"KernelPageSize", PageSize}, {"MMUPageSize", PageSize},
			{"Rss", rss}, {"Pss", pss}, {"Shared_Clean", sharedClean}, {"Shared_Dirty", sharedDirty},
			{"Private_Clean", privClean}, {"Private_Dirty", privDirty}, {"Referenced", rss},
			{"Anonymous", anon}, {"LazyFree", 0}, {"AnonHugePages", huge}, {"ShmemPmdMapped", 0},
			{"FilePmdMapped", 0}, {"Shared_Hugetlb", 0}, {"Private_Hugetlb", 0}, {"Swap", 0},
			{"SwapPss", 0}, {"Locked", locked},
		} {
			fmt.Fprintf(&b, "%-16s%8d kB\n", f.name+":", f.kb/1024)
		}
		thp := 0 // as Linux: eligible, and room for an aligned 2 MiB page
		if as.hugeEligible(v) && (v.Start+hugeMask)&^hugeMask+HugePageSize <= v.End {
			thp = 1
		}
		fmt.Fprintf(&b, "THPeligible:    %d\nVmFlags: %s\n", thp, v.flagNames())
	}
	return b.String()
}

// flagNames is the VmFlags line of smaps: Linux's two-letter names of
// the VMA's flags, in its bit order, each followed by a space.
func (v *VMA) flagNames() string {
	var b strings.Builder
	add := func(on bool, name string) {
		if on {
			b.WriteString(name + " ")
		}
	}
	add(v.Prot&ProtRead != 0, "rd")
	add(v.Prot&ProtWrite != 0, "wr")
	add(v.Prot&ProtExec != 0, "ex")
	add(v.Shared, "sh")
	add(v.MaxProt&ProtRead != 0, "mr")
	add(v.MaxProt&ProtWrite != 0, "mw")
	add(v.MaxProt&ProtExec != 0, "me")
	add(v.Shared, "ms")
	add(v.GrowsDown, "gd")
	add(v.Kind == KindDevice || v.Kind == KindVVar, "pf")
	add(v.Locked, "lo")
	add(v.Kind == KindDevice, "io")
	add(v.DontFork || v.Kind == KindDevice, "dc")
	add(v.Kind == KindDevice || v.Kind == KindVVar, "de")
	add(!v.Shared && v.Prot&ProtWrite != 0 && v.Kind != KindDevice, "ac")
	add(v.NoReserve, "nr")
	add(v.WipeOnFork, "wf")
	add(v.DontDump || v.Kind == KindDevice, "dd")
	add(v.NoHugePage, "nh")
	return b.String()
}
