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
		lineStart := b.Len()
		share := byte('p')
		if v.Shared {
			share = 's'
		}
		var off uint64
		if !v.Anonymous {
			off = v.Offset
		}
		fmt.Fprintf(&b, "%08x-%08x %s%c %08x %02x:%02x %d ",
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
	return b.String()
}
