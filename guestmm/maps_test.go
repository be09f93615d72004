package guestmm

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMapsText(t *testing.T) {
	as := newTestAS(t, 64)
	prog := &memFile{name: "/usr/bin/prog", data: pattern(3*PageSize, 0)}
	mustMmap(t, as, 0x400000, PageSize, ProtRead|ProtExec, MapPrivate|MapFixed, prog, 0)
	mustMmap(t, as, 0x401000, PageSize, rw, MapPrivate|MapFixed, prog, 2*PageSize)
	as.SetBrkBase(0x402000)
	as.Brk(0x404000)
	mustMmap(t, as, 0, 2*PageSize, rw, anonPriv, nil, 0)
	mustMmap(t, as, 0, PageSize, ProtRead, MapShared|MapAnonymous, nil, 0)
	mustMmap(t, as, 0, PageSize, ProtNone, anonPriv, nil, 0)
	require.NoError(t, as.SetupStack(0x7ffffffde000+0x21000, 0x21000))

	want := "" +
		"00400000-00401000 r-xp 00000000 00:00 0                                  /usr/bin/prog\n" +
		"00401000-00402000 rw-p 00002000 00:00 0                                  /usr/bin/prog\n" +
		"00402000-00404000 rw-p 00000000 00:00 0                                  [heap]\n" +
		"7ffff7ffb000-7ffff7ffc000 ---p 00000000 00:00 0 \n" +
		"7ffff7ffc000-7ffff7ffd000 r--s 00000000 00:00 0                          /dev/zero (deleted)\n" +
		"7ffff7ffd000-7ffff7fff000 rw-p 00000000 00:00 0 \n" +
		"7ffffffde000-7ffffffff000 rw-p 00000000 00:00 0                          [stack]\n"
	assert.Equal(t, want, as.MapsText())

	for _, line := range strings.Split(strings.TrimSuffix(want, "\n"), "\n") {
		if strings.HasSuffix(line, " ") {
			continue
		}
		// Linux pads the header to 72 columns, then one space.
		assert.Equal(t, byte(' '), line[72], line)
		assert.NotEqual(t, byte(' '), line[73], line)
	}
}

func TestMapsTextEscapesNewline(t *testing.T) {
	as := newTestAS(t, 16)
	f := &memFile{name: "/tmp/evil\n00000000-ffffffff rwxp", data: nil}
	mustMmap(t, as, 0x400000, PageSize, ProtRead, MapPrivate|MapFixed, f, 0)
	text := as.MapsText()
	assert.Equal(t, 1, strings.Count(text, "\n"))
	assert.Contains(t, text, `/tmp/evil\01200000000-ffffffff rwxp`)
}

func TestMapsTextLongAddresses(t *testing.T) {
	as := newTestAS(t, 16)
	// With full 12-digit addresses the padding is shorter but the name
	// still starts at column 73.
	f := &memFile{name: "/x"}
	mustMmap(t, as, 0x7fff00000000, PageSize, ProtRead, MapPrivate|MapFixed, f, 0x123000)
	assert.Equal(t, "7fff00000000-7fff00001000 r--p 00123000 00:00 0                          /x\n", as.MapsText())
}
