package vfs

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// identityOf returns the identity of the file at path, through a backing
// as a mapping would have.
func identityOf(t *testing.T, path string) FileIdentity {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	b, errno := newFileBacking(int(f.Fd()), path)
	require.Zero(t, errno)
	defer b.Close()
	id, err := b.Identity()
	require.NoError(t, err)
	again, err := b.Identity() // from the cache: the file did not change
	require.NoError(t, err)
	require.Equal(t, id, again)
	return id
}

// TestFileIdentity: an identity follows the contents, including edits
// that keep the size and reset the mtime (cp -p, rsync -t, touch -d), and
// survives a copy of the file (a new inode, mtime and ctime).
func TestFileIdentity(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "data.txt")
	content := []byte("first line\nsecond line\n")
	require.NoError(t, os.WriteFile(path, content, 0o644))
	old := time.Date(2020, 1, 2, 3, 4, 5, 6, time.UTC)
	require.NoError(t, os.Chtimes(path, old, old))
	then := identityOf(t, path)
	sum := sha256.Sum256(content)
	assert.Equal(t, hex.EncodeToString(sum[:]), then.SHA256)
	assert.Equal(t, int64(len(content)), then.Size)

	copied := filepath.Join(dir, "copy.txt")
	require.NoError(t, os.WriteFile(copied, content, 0o644))
	tests := []struct {
		name    string
		path    string
		prepare func(path string)
		matches bool
	}{
		{"unchanged", path, func(string) {}, true},
		{"a copy elsewhere (new inode and times)", copied, func(string) {}, true},
		{"edited in place, same size, mtime reset", path, func(p string) {
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			require.NoError(t, err)
			_, err = f.WriteAt([]byte("F"), 0)
			require.NoError(t, err)
			require.NoError(t, f.Close())
			require.NoError(t, os.Chtimes(p, old, old))
		}, false},
		{"replaced by a longer file", path, func(p string) {
			require.NoError(t, os.WriteFile(p, append(content, 'x'), 0o644))
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.prepare(tt.path)
			now := identityOf(t, tt.path)
			assert.Equal(t, tt.matches, then.Matches(now), "then %v, now %v", then, now)
		})
	}
}

// TestFileIdentityWithoutHash: identities from images written before
// content hashes compare size, mtime and inode.
func TestFileIdentityWithoutHash(t *testing.T) {
	legacy := FileIdentity{Size: 10, MtimeNS: 5, Ino: 7}
	now := FileIdentity{Size: 10, MtimeNS: 5, Ino: 7, SHA256: "ab"}
	assert.True(t, legacy.Matches(now))
	now.MtimeNS = 6
	assert.False(t, legacy.Matches(now))
	assert.Equal(t, "size 10, mtime 5 ns, inode 7", legacy.String())
}

// TestFileIdentityCacheSeesResetMtime: a backing keeps its last identity
// while the file looks the same; an edit that restores size and mtime
// still changes the ctime, so the next identity is computed again.
func TestFileIdentityCacheSeesResetMtime(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data.txt")
	require.NoError(t, os.WriteFile(path, []byte("0123456789"), 0o644))
	old := time.Date(2020, 1, 2, 3, 4, 5, 6, time.UTC)
	require.NoError(t, os.Chtimes(path, old, old))
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	b, errno := newFileBacking(int(f.Fd()), path)
	require.Zero(t, errno)
	defer b.Close()
	before, err := b.Identity()
	require.NoError(t, err)

	time.Sleep(10 * time.Millisecond) // a ctime the file system can tell apart
	w, err := os.OpenFile(path, os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = w.WriteAt([]byte("X"), 0)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	require.NoError(t, os.Chtimes(path, old, old))

	after, err := b.Identity()
	require.NoError(t, err)
	assert.Equal(t, before.Size, after.Size)
	assert.Equal(t, before.MtimeNS, after.MtimeNS, "the mtime was reset")
	assert.False(t, before.Matches(after), "the content hash tells the edit")
}
