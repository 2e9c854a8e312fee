// SPDX-License-Identifier: Apache-2.0

package keys

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// agedCache returns a FileCache whose clock runs an hour ahead, so that every file it
// reads counts as unchanged for longer than RacyWindow and is kept: the tests below check
// that what is kept is not used once the file changed. Between two changes they wait
// fileTick, so that each change gets a status-change time of its own (file times come from
// a clock that advances in ticks of a few milliseconds).
func agedCache() *FileCache {
	return &FileCache{now: func() time.Time { return time.Now().Add(time.Hour) }}
}

const fileTick = 30 * time.Millisecond

// has reports whether src authorizes k for user, failing the test on an error.
func has(t *testing.T, src Source, user string, k ssh.PublicKey) bool {
	t.Helper()
	got, err := Lookup(context.Background(), src, user, sha256.Sum256(k.Marshal()))
	if err != nil {
		t.Fatalf("Lookup(%s): %v", user, err)
	}
	return got != nil
}

func inode(t *testing.T, path string) (ino uint64, mtime time.Time, size int64) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino, fi.ModTime(), fi.Size()
}

// TestFileCacheRevalidates: a cached authorized keys file is read once while it does not
// change, and every kind of change is seen at the next lookup: an edit in place, a file
// renamed over it, an edit of the same size with the same modification time (only the
// status-change time tells), a change of mode (refused, as without a cache), removal, and a
// symbolic link pointed at another file.
func TestFileCacheRevalidates(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "alice")
	c := agedCache()
	src := UserFiles{Dir: dir, Cache: c}
	k := make([]ssh.PublicKey, 8)
	for i := range k {
		k[i] = newPub(t)
	}

	writeFile(t, path, authLine(k[0])+"\n", 0o644)
	for range 3 {
		if !has(t, src, "alice", k[0]) {
			t.Fatal("key not found")
		}
	}
	if n := c.Reads(); n != 1 {
		t.Fatalf("an unchanged file was read %d times for 3 lookups; want 1", n)
	}

	// Edited in place: same inode.
	ino0, _, _ := inode(t, path)
	time.Sleep(fileTick)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(authLine(k[1]) + "\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if ino, _, _ := inode(t, path); ino != ino0 {
		t.Fatal("the edit in place changed the inode")
	}
	if has(t, src, "alice", k[0]) || !has(t, src, "alice", k[1]) {
		t.Fatal("edit in place not seen")
	}

	// Replaced by a rename.
	time.Sleep(fileTick)
	tmp := filepath.Join(dir, ".alice.tmp")
	writeFile(t, tmp, authLine(k[2])+"\n", 0o644)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	if has(t, src, "alice", k[1]) || !has(t, src, "alice", k[2]) {
		t.Fatal("replacement by rename not seen")
	}

	// The same size and modification time (to the nanosecond), same inode: only the
	// status-change time differs.
	has(t, src, "alice", k[2])
	ino1, mtime1, size1 := inode(t, path)
	time.Sleep(fileTick)
	f, err = os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(authLine(k[3]) + "\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Chtimes(path, mtime1, mtime1); err != nil {
		t.Fatal(err)
	}
	if ino, mtime, size := inode(t, path); ino != ino1 || !mtime.Equal(mtime1) || size != size1 {
		t.Fatalf("the rewrite changed inode, size or mtime (%d %v %d, was %d %v %d)", ino, mtime, size, ino1, mtime1, size1)
	}
	if has(t, src, "alice", k[2]) || !has(t, src, "alice", k[3]) {
		t.Fatal("same-size rewrite with the same modification time not seen")
	}

	// Made group-writable: refused, as it is without a cache; fixed: accepted again.
	time.Sleep(fileTick)
	if err := os.Chmod(path, 0o664); err != nil {
		t.Fatal(err)
	}
	if _, err := Lookup(context.Background(), src, "alice", sha256.Sum256(k[3].Marshal())); err == nil || !strings.Contains(err.Error(), "writable by group or others") {
		t.Fatalf("group-writable file: %v; want it refused", err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if !has(t, src, "alice", k[3]) {
		t.Fatal("key not found after the mode was fixed")
	}

	// Removed.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if has(t, src, "alice", k[3]) {
		t.Fatal("key of a removed file still authorized")
	}
	if c.entries[path] != nil {
		t.Error("a removed file's keys are still kept")
	}

	// A symbolic link, pointed at another file.
	a, b := filepath.Join(dir, "a.keys"), filepath.Join(dir, "b.keys")
	writeFile(t, a, authLine(k[4])+"\n", 0o644)
	writeFile(t, b, authLine(k[5])+"\n", 0o644)
	if err := os.Symlink(a, path); err != nil {
		t.Fatal(err)
	}
	if !has(t, src, "alice", k[4]) {
		t.Fatal("key through the link not found")
	}
	if err := os.Symlink(b, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	if has(t, src, "alice", k[4]) || !has(t, src, "alice", k[5]) {
		t.Fatal("link pointed at another file not seen")
	}

	// The directory replaced by another one (renamed over it) with a file of its own.
	time.Sleep(fileTick)
	dir2 := dir + ".new"
	if err := os.Mkdir(dir2, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir2, "alice"), authLine(k[6])+"\n", 0o644)
	if err := os.Rename(dir, dir+".old"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir + ".old"); os.RemoveAll(dir2) })
	if err := os.Rename(dir2, dir); err != nil {
		t.Fatal(err)
	}
	if has(t, src, "alice", k[5]) || !has(t, src, "alice", k[6]) {
		t.Fatal("replaced directory not seen")
	}
}

// TestFileCacheRacy: a file read within RacyWindow of its last change is read again at
// every lookup (an edit in the same clock tick would leave its status unchanged), and kept
// once it has been unchanged for longer.
func TestFileCacheRacy(t *testing.T) {
	dir := t.TempDir()
	k := newPub(t)
	writeFile(t, filepath.Join(dir, "alice"), authLine(k)+"\n", 0o644)
	now := time.Now()
	c := &FileCache{now: func() time.Time { return now }}
	src := UserFiles{Dir: dir, Cache: c}
	for range 3 {
		if !has(t, src, "alice", k) {
			t.Fatal("key not found")
		}
	}
	if n := c.Reads(); n != 3 {
		t.Fatalf("a file changed just now was read %d times for 3 lookups; want 3 (never kept)", n)
	}
	now = now.Add(RacyWindow + time.Second)
	for range 3 {
		if !has(t, src, "alice", k) {
			t.Fatal("key not found")
		}
	}
	if n := c.Reads(); n != 4 {
		t.Fatalf("a file unchanged for longer than RacyWindow: %d reads in all; want 4 (kept once read)", n)
	}
}

// TestFileCacheHomeChecks: with a cache, the checks on the home directory, ~/.ssh and the
// file are still made at every lookup, on their current owners and modes.
func TestFileCacheHomeChecks(t *testing.T) {
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	home, sshDir, ak := newHome(t)
	k := newPub(t)
	writeFile(t, ak, authLine(k)+"\n", 0o600)
	c := agedCache()
	src := HomeAuthorizedKeys{Cache: c, Lookup: func(_ context.Context, name string) (*user.User, error) {
		return &user.User{Username: name, Uid: me.Uid, HomeDir: home}, nil
	}}
	if !has(t, src, "alice", k) {
		t.Fatal("key not found")
	}
	for _, p := range []string{sshDir, home, ak} {
		fi, _ := os.Stat(p)
		time.Sleep(fileTick)
		os.Chmod(p, fi.Mode().Perm()|0o020)
		if _, err := src.Keys(context.Background(), "alice"); err == nil || !strings.Contains(err.Error(), "writable by group or others") {
			t.Errorf("with %s group-writable: %v; want it refused", p, err)
		}
		os.Chmod(p, fi.Mode().Perm())
		if !has(t, src, "alice", k) {
			t.Fatalf("key not found once %s was fixed", p)
		}
	}
	if me.Uid == "0" {
		time.Sleep(fileTick)
		if err := os.Chown(sshDir, 12345, 12345); err != nil {
			t.Fatal(err)
		}
		if _, err := src.Keys(context.Background(), "alice"); err == nil || !strings.Contains(err.Error(), "owned by uid 12345") {
			t.Errorf("with ~/.ssh owned by another user: %v; want it refused", err)
		}
	}
	if n := c.Reads(); n != 2 {
		t.Errorf("the file was read %d times; want 2 (once more after its own mode changed, not for its directories)", n)
	}
}

// TestFileCacheSharedKeys: the keys a cached file gives are not the caller's to change:
// Keys returns a copy, and what a caller does to it does not reach the next lookup.
func TestFileCacheSharedKeys(t *testing.T) {
	dir := t.TempDir()
	k1, k2 := newPub(t), newPub(t)
	writeFile(t, filepath.Join(dir, "alice"), authLine(k1)+"\n", 0o644)
	c := agedCache()
	for _, src := range []Source{UserFiles{Dir: dir, Cache: c}, Multi{UserFiles{Dir: dir, Cache: c}}} {
		got, err := src.Keys(context.Background(), "alice")
		if err != nil || len(got) != 1 {
			t.Fatalf("%T: Keys = %d keys, %v", src, len(got), err)
		}
		got[0] = k2
		if !has(t, src, "alice", k1) || has(t, src, "alice", k2) {
			t.Fatalf("%T: a change to the slice Keys returned reached the cache", src)
		}
	}
}

// TestFileCacheBounds: a FileCache keeps at most maxCachedBytes of files and
// maxCachedFiles files, and a file that cannot be parsed is not kept.
func TestFileCacheBounds(t *testing.T) {
	c := agedCache()
	old := time.Now().Add(-time.Hour)
	for i := range 200 {
		c.put(fmt.Sprintf("/f%d", i), fileStamp{ino: uint64(i), size: MaxKeyFileSize, mtime: old.UnixNano(), ctime: old.UnixNano()}, nil, time.Now())
	}
	if c.bytes > maxCachedBytes || len(c.entries) != maxCachedBytes/MaxKeyFileSize {
		t.Errorf("after 200 files of %d bytes: %d entries, %d bytes; want %d, at most %d", MaxKeyFileSize, len(c.entries), c.bytes, maxCachedBytes/MaxKeyFileSize, maxCachedBytes)
	}
	for i := range maxCachedFiles + 10 {
		c.put(fmt.Sprintf("/s%d", i), fileStamp{ino: uint64(i), size: 10, mtime: old.UnixNano(), ctime: old.UnixNano()}, nil, time.Now())
	}
	if len(c.entries) > maxCachedFiles {
		t.Errorf("%d entries; want at most %d", len(c.entries), maxCachedFiles)
	}
	var sum int64
	for _, e := range c.entries {
		sum += e.stamp.size
	}
	if sum != c.bytes {
		t.Errorf("the byte count is %d, the entries' sizes add up to %d", c.bytes, sum)
	}

	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "bob"), "not a key\n", 0o644)
	c = agedCache()
	for range 2 {
		if _, err := (UserFiles{Dir: dir, Cache: c}).Keys(context.Background(), "bob"); err == nil {
			t.Fatal("malformed file accepted")
		}
	}
	if len(c.entries) != 0 {
		t.Error("a file that cannot be parsed was kept")
	}
}
