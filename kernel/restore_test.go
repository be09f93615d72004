package kernel

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"testing"

	"github.com/emuckpt/emuckpt/internal/kvmtest"
	"github.com/emuckpt/emuckpt/testimages"
	"github.com/stretchr/testify/require"
)

// snapshotHello checkpoints hello after its third system call and returns
// the state and its page data (copied out of the machine).
func snapshotHello(t *testing.T) (*State, []byte, []byte) {
	prog, err := testimages.FS.ReadFile("bin/hello")
	require.NoError(t, err)
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	require.NoError(t, err)
	t.Cleanup(func() { null.Close() })
	var st *State
	var pages []byte
	cfg := Config{Program: prog, Name: "hello", Args: []string{"hello"}, Stdout: null, Stderr: null, MemSize: 64 << 20}
	cfg.Checkpoint = CheckpointConfig{AtSyscall: 3, Save: func(s *Snapshot) error {
		st = s.State
		for _, pa := range s.Pages {
			pages = append(pages, s.Mem[pa:pa+4096]...)
		}
		return nil
	}}
	k, err := New(cfg)
	require.NoError(t, err)
	defer k.Close()
	_, err = k.Run(context.Background())
	require.NoError(t, err)
	require.NotNil(t, st)
	return st, pages, prog
}

// TestRestoreRejectsBadState feeds Restore states that a corrupted or
// hostile image could carry: each must fail with an error, never panic,
// and leave nothing running.
func TestRestoreRejectsBadState(t *testing.T) {
	kvmtest.Require(t)
	good, pages, prog := snapshotHello(t)
	clone := func() *State {
		b, err := json.Marshal(good)
		require.NoError(t, err)
		var s State
		require.NoError(t, json.Unmarshal(b, &s))
		return &s
	}
	firstStored := func(s *State) *VMAState {
		for i := range s.Processes[0].VMAs {
			if len(s.Processes[0].VMAs[i].Pages) > 0 {
				return &s.Processes[0].VMAs[i]
			}
		}
		t.Fatal("no VMA with pages")
		return nil
	}
	cases := map[string]func(s *State){
		"overlapping VMAs":     func(s *State) { s.Processes[0].VMAs[1].Start = s.Processes[0].VMAs[0].Start },
		"VMA past user space":  func(s *State) { s.Processes[0].VMAs[len(s.Processes[0].VMAs)-1].End = 1 << 60 },
		"unaligned VMA":        func(s *State) { s.Processes[0].VMAs[0].End++ },
		"unknown VMA kind":     func(s *State) { s.Processes[0].VMAs[0].Kind = "mystery" },
		"page run past data":   func(s *State) { firstStored(s).Pages[0].Index = s.PageCount },
		"page run huge":        func(s *State) { firstStored(s).Pages[0].Count = 1 << 62 },
		"page run outside VMA": func(s *State) { firstStored(s).Pages[0].VA = 0x10000 },
		"too many pages":       func(s *State) { s.PageCount = 1 << 40 },
		"short FPU state":      func(s *State) { s.Processes[0].Tasks[0].FPU = s.Processes[0].Tasks[0].FPU[:100] },
		"bad signal":           func(s *State) { s.Processes[0].Actions = append(s.Processes[0].Actions, SigAction{Signal: 99}) },
		"kernel FS base":       func(s *State) { s.Processes[0].Tasks[0].FSBase = 0xffffff8000001000 },
		"no tasks":             func(s *State) { s.Processes[0].Tasks = nil },
		"unknown fd kind":      func(s *State) { s.Processes[0].FDs[0].File.Kind = "socket" },
		"unknown device type": func(s *State) {
			s.Processes[0].VMAs = append(s.Processes[0].VMAs, VMAState{Type: VMADevice, Kind: "device", Start: 0x7000000000, End: 0x7000001000, Prot: 1, MaxProt: 1, Shared: true, Name: "/dev/hpet", Device: "frobnicator"})
		},
		"missing device": func(s *State) {
			s.Processes[0].VMAs = append(s.Processes[0].VMAs, VMAState{Type: VMADevice, Kind: "device", Start: 0x7000000000, End: 0x7000001000, Prot: 1, MaxProt: 1, Shared: true, Name: "/dev/nothing", Device: VanillaDevice})
		},
		"bad brk": func(s *State) { s.Processes[0].BrkStart, s.Processes[0].Brk = 0x1001, 0 },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			s := clone()
			mutate(s)
			k, err := Restore(Config{Program: prog, MemSize: 64 << 20}, s, PageBytes(pages))
			if k != nil {
				k.Close()
			}
			require.Error(t, err)
		})
	}
	t.Run("changed program", func(t *testing.T) {
		other, err := testimages.FS.ReadFile("bin/args")
		require.NoError(t, err)
		_, err = Restore(Config{Program: other}, clone(), PageBytes(pages))
		require.ErrorIs(t, err, ErrRestore)
		require.ErrorContains(t, err, "has changed since the checkpoint")
	})
	t.Run("good state restores", func(t *testing.T) {
		r, w, err := os.Pipe()
		require.NoError(t, err)
		k, err := Restore(Config{Program: prog, Stdout: w}, clone(), PageBytes(pages))
		require.NoError(t, err)
		defer k.Close()
		st, err := k.Run(context.Background())
		require.NoError(t, err)
		w.Close()
		out := make([]byte, 100)
		n, _ := r.Read(out)
		require.Equal(t, ExitStatus{}, st)
		require.Equal(t, "hello, world\n", string(out[:n]))
	})
}

// TestProcessAttributesRoundTrip checkpoints sysmisc after it has set
// its umask, name, parent-death signal, dumpable flag, nice value and a
// locked page, restores the image, and checks that the restored process
// has them all, and that the restored run prints what the first did.
func TestProcessAttributesRoundTrip(t *testing.T) {
	kvmtest.Require(t)
	prog, err := testimages.FS.ReadFile("bin/sysmisc")
	require.NoError(t, err)
	runWith := func(run func(w *os.File) (*Kernel, error)) (*Kernel, string) {
		r, w, err := os.Pipe()
		require.NoError(t, err)
		defer r.Close()
		k, err := run(w)
		require.NoError(t, err)
		t.Cleanup(func() { k.Close() })
		st, err := k.Run(context.Background())
		require.NoError(t, err)
		require.Equal(t, ExitStatus{}, st)
		w.Close()
		out, err := io.ReadAll(r)
		require.NoError(t, err)
		return k, string(out)
	}
	var snap *State
	var pages []byte
	_, first := runWith(func(w *os.File) (*Kernel, error) {
		cfg := Config{Program: prog, Name: "sysmisc", Args: []string{"sysmisc", "ckpt"}, Stdout: w, MemSize: 64 << 20}
		cfg.Checkpoint = CheckpointConfig{LeaveRunning: true, Save: func(s *Snapshot) error {
			snap = s.State
			for _, pa := range s.Pages {
				pages = append(pages, s.Mem[pa:pa+4096]...)
			}
			return nil
		}}
		return New(cfg)
	})
	require.NotNil(t, snap)
	ps, ts := snap.Processes[0], snap.Processes[0].Tasks[0]
	require.Equal(t, uint32(0o027), *ps.Umask)
	require.Equal(t, 0, *ps.Dumpable)
	require.Equal(t, "renamed", *ts.Comm)
	require.Equal(t, 15, ts.Pdeathsig)
	require.Equal(t, 7, ts.Nice)
	locked := 0
	for _, v := range ps.VMAs {
		if v.Locked {
			locked++
			require.Equal(t, uint64(4096), v.End-v.Start)
		}
	}
	require.Equal(t, 1, locked)

	k, second := runWith(func(w *os.File) (*Kernel, error) {
		return Restore(Config{Program: prog, Stdout: w}, snap, PageBytes(pages))
	})
	p := k.first
	require.Equal(t, uint32(0o027), p.umask)
	require.Equal(t, 0, p.dumpable)
	require.Equal(t, "renamed", p.tasks[0].comm)
	require.Equal(t, "checkpoint: 1\n", first[:14])
	require.Equal(t, "checkpoint: 2\n", second[:14])
	require.Equal(t, first[14:], second[14:])
	require.Contains(t, second, "name=renamed pdeathsig=15 dumpable=0 umask=027 nice=7\n")

	t.Run("old image without the attributes", func(t *testing.T) {
		old := *snap
		old.Processes[0].Umask, old.Processes[0].Dumpable, old.Processes[0].Tasks = nil, nil, []TaskState{snap.Processes[0].Tasks[0]}
		old.Processes[0].Tasks[0].Comm, old.Processes[0].Tasks[0].Nice, old.Processes[0].Tasks[0].Pdeathsig = nil, 0, 0
		k, out := runWith(func(w *os.File) (*Kernel, error) {
			return Restore(Config{Program: prog, Stdout: w}, &old, PageBytes(pages))
		})
		require.Equal(t, "sysmisc", k.first.tasks[0].comm)
		require.Contains(t, out, "name=sysmisc pdeathsig=0 dumpable=1 umask=022 nice=0\n")
	})
}
