package vfs

import "encoding/binary"

// Directory entry types (d_type), as in <dirent.h>.
const (
	DTUnknown = 0
	DTFifo    = 1
	DTChr     = 2
	DTDir     = 4
	DTBlk     = 6
	DTReg     = 8
	DTLnk     = 10
	DTSock    = 12
)

// direntHeader is the size of linux_dirent64 before d_name:
// d_ino u64, d_off i64, d_reclen u16, d_type u8.
const direntHeader = 8 + 8 + 2 + 1

// Dirent is one directory entry.
type Dirent struct {
	Ino  uint64
	Type uint8
	Name string
}

// direntRecLen is the length of the linux_dirent64 record for a name: the
// header, the name, its NUL, rounded up to 8 bytes.
func direntRecLen(name string) int {
	return (direntHeader + len(name) + 1 + 7) &^ 7
}

// AppendDirent64 appends the linux_dirent64 record for e, whose d_off (the
// offset of the entry after it) is off.
func AppendDirent64(buf []byte, e Dirent, off int64) []byte {
	n := direntRecLen(e.Name)
	start := len(buf)
	buf = append(buf, make([]byte, n)...)
	rec := buf[start:]
	binary.LittleEndian.PutUint64(rec[0:], e.Ino)
	binary.LittleEndian.PutUint64(rec[8:], uint64(off))
	binary.LittleEndian.PutUint16(rec[16:], uint16(n))
	rec[18] = e.Type
	copy(rec[direntHeader:], e.Name)
	return buf
}

// ParseDirents64 decodes a buffer of linux_dirent64 records, as filled by
// getdents64(2). It stops at the first malformed record.
func ParseDirents64(buf []byte) []Dirent {
	var out []Dirent
	for len(buf) >= direntHeader {
		reclen := int(binary.LittleEndian.Uint16(buf[16:]))
		if reclen < direntHeader || reclen > len(buf) {
			break
		}
		name := buf[direntHeader:reclen]
		for i, c := range name {
			if c == 0 {
				name = name[:i]
				break
			}
		}
		out = append(out, Dirent{
			Ino:  binary.LittleEndian.Uint64(buf),
			Type: buf[18],
			Name: string(name),
		})
		buf = buf[reclen:]
	}
	return out
}
