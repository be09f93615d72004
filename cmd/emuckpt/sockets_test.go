package main

import (
	"path/filepath"
	"testing"

	"github.com/emuckpt/emuckpt/internal/kvmtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSocketsMatchNative runs the AF_UNIX program natively (its socket
// names in a temporary directory) and under emuckpt (in the guest's
// /tmp), on the host clock and the virtual one: socketpair with fork,
// servers on a path and on an abstract name, datagrams, seqpacket,
// SCM_RIGHTS passing a pipe end and a file, SCM_CREDENTIALS, shutdown,
// EPIPE and SIGPIPE, poll, socket options and errno cases.
func TestSocketsMatchNative(t *testing.T) {
	kvmtest.Require(t)
	want := native(t, img("sockets"), t.TempDir())
	require.Equal(t, 0, want.status, want.stdout+want.stderr)
	require.Contains(t, want.stdout, "done\n")
	for _, mode := range [][]string{nil, {"--deterministic"}} {
		args := append(append([]string{"run"}, mode...), img("sockets"), "/tmp")
		got := emuckpt(t, args...)
		assert.Equal(t, want.stdout, got.stdout, "%v", mode)
		assert.Equal(t, want.status, got.status, "%v: %s", mode, got.stderr)
		assert.Empty(t, got.stderr, "%v", mode)
	}
}

// TestSocketsGuestOnly covers what differs from a native run by design:
// the read-only root (EROFS), and address families other than AF_UNIX
// (EAFNOSUPPORT, named once by -v).
func TestSocketsGuestOnly(t *testing.T) {
	kvmtest.Require(t)
	got := emuckpt(t, "run", img("sockets"), "rofs")
	assert.Equal(t, result{stdout: "bind on /: EROFS\n"}, got)
	got = emuckpt(t, "run", "-v", img("sockets"), "inet")
	assert.Equal(t, "socket AF_INET: EAFNOSUPPORT\nsocketpair AF_INET: EAFNOSUPPORT\n", got.stdout)
	assert.Equal(t, 0, got.status)
	assert.Contains(t, got.stderr, "address family 2 is not supported, only AF_UNIX: EAFNOSUPPORT")
}

// TestSocketNameCheckpoint: the name a closed socket leaves in /tmp is in
// the image, and the restored run finds nobody listening there.
func TestSocketNameCheckpoint(t *testing.T) {
	kvmtest.Require(t)
	image := filepath.Join(t.TempDir(), "sock.img")
	first := emuckpt(t, "run", "--checkpoint-to", image, "--leave-running", img("sockets"), "ckpt")
	require.Equal(t, 0, first.status, first.stderr)
	const after = "stat /tmp/stale: ok\nsocket: 1\nconnect /tmp/stale: ECONNREFUSED\n"
	assert.Equal(t, "bind /tmp/stale: ok\ncheckpoint: 1\n"+after, first.stdout)
	second := emuckpt(t, "restore", image)
	require.Equal(t, 0, second.status, second.stderr)
	assert.Equal(t, "checkpoint: 2\n"+after, second.stdout)
}

// TestSocketCheckpointRefused: images do not hold sockets yet, so a
// checkpoint while one is open fails cleanly, naming the descriptor,
// and the program goes on (emuckpt_checkpoint gives EIO).
func TestSocketCheckpointRefused(t *testing.T) {
	kvmtest.Require(t)
	image := filepath.Join(t.TempDir(), "sock.img")
	got := emuckpt(t, "run", "--checkpoint-to", image, img("sockets"), "ckptopen")
	assert.Equal(t, 0, got.status, got.stderr)
	assert.Equal(t, "checkpoint with sockets open: -5\n", got.stdout)
	assert.Contains(t, got.stderr, "descriptor 3 of process")
	assert.Contains(t, got.stderr, "is a socket, which images do not hold yet")
	assert.NoFileExists(t, image)
}
