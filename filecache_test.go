// SPDX-License-Identifier: Apache-2.0

package netauth

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"ubns.dev/netauth/internal/handshake"
)

func newFileCache(t *testing.T) (*FileTicketCache, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "netauth")
	c, err := NewFileTicketCache(dir)
	if err != nil {
		t.Fatal(err)
	}
	return c, dir
}

// TestFileTicketCache: sessions survive in the file, expire, are deleted; the directory is
// 0700 and the file 0600, no temporary file is left, and the file stays bounded.
func TestFileTicketCache(t *testing.T) {
	c, dir := newFileCache(t)
	exp := time.Now().Add(time.Hour)
	c.Put("a", []byte("session a"), exp)
	c.Put("old", []byte("expired"), time.Now().Add(-time.Second))
	// Another instance (another process) sees it.
	other := &FileTicketCache{dir: dir}
	if s, ok := other.Get("a"); !ok || string(s) != "session a" {
		t.Errorf("Get(a) = %q, %v", s, ok)
	}
	if _, ok := other.Get("old"); ok {
		t.Error("an expired session was returned")
	}
	other.Delete("a")
	if _, ok := c.Get("a"); ok {
		t.Error("a deleted session was returned")
	}
	for name, want := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, fileCacheName): 0o600, filepath.Join(dir, fileCacheLock): 0o600} {
		fi, err := os.Stat(name)
		if err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v, %v; want mode %v", name, fi, err, want)
		}
	}
	for i := range maxFileCacheEntries + 20 {
		c.Put(fmt.Sprint("id", i), bytes.Repeat([]byte{1}, 100), exp.Add(time.Duration(i)*time.Second))
	}
	entries, err := c.load()
	if err != nil || len(entries) != maxFileCacheEntries {
		t.Errorf("after %d Puts the file holds %d entries (%v), want %d", maxFileCacheEntries+20, len(entries), err, maxFileCacheEntries)
	}
	if _, ok := c.Get("id0"); ok {
		t.Error("the session expiring soonest was kept over the limit")
	}
	if _, ok := c.Get(fmt.Sprint("id", maxFileCacheEntries+19)); !ok {
		t.Error("the newest session was dropped")
	}
	names, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(names) != 2 {
		t.Errorf("cache directory holds %v, want the file and its lock only", names)
	}
}

// TestFileTicketCacheLargeSession: a session as large as a handshake allows (a user
// certificate's) is stored and read back.
func TestFileTicketCacheLargeSession(t *testing.T) {
	c, _ := newFileCache(t)
	var errs []error
	c.OnError = func(err error) { errs = append(errs, err) }
	session := bytes.Repeat([]byte{7}, handshake.MaxSessionSize)
	c.Put("netauth-v1 alice@host:1 svc", session, time.Now().Add(time.Hour))
	if s, ok := c.Get("netauth-v1 alice@host:1 svc"); !ok || !bytes.Equal(s, session) {
		t.Errorf("a session of %d bytes was not read back (%v, errors %v)", len(session), ok, errs)
	}
}

// TestFileTicketCacheSizeBound: Puts keep the file within maxFileCacheSize (a larger one is
// not read), dropping the sessions expiring soonest, so the newest ones stay readable.
func TestFileTicketCacheSizeBound(t *testing.T) {
	c, dir := newFileCache(t)
	var errs []error
	c.OnError = func(err error) { errs = append(errs, err) }
	exp := time.Now().Add(time.Hour)
	const n, size = 300, 5 << 10
	for i := range n {
		c.Put(fmt.Sprint("id", i), bytes.Repeat([]byte{byte(i)}, size), exp.Add(time.Duration(i)*time.Second))
		fi, err := os.Stat(filepath.Join(dir, fileCacheName))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > maxFileCacheSize {
			t.Fatalf("after %d Puts of %d-byte sessions the file is %d bytes, more than %d", i+1, size, fi.Size(), maxFileCacheSize)
		}
	}
	if len(errs) > 0 {
		t.Errorf("Put reported %v", errs)
	}
	// As many of the newest as fit are kept: at least 190 of about 5 KiB in 1 MiB.
	for i := n - 190; i < n; i++ {
		if s, ok := c.Get(fmt.Sprint("id", i)); !ok || len(s) != size || s[0] != byte(i) {
			t.Fatalf("session id%d, among the newest, is not readable (%v)", i, ok)
		}
	}
	if _, ok := c.Get("id0"); ok {
		t.Error("the session expiring soonest was kept beyond the size bound")
	}
}

// TestFileTicketCacheConcurrent: concurrent writers through separate opens of the file
// lose no update.
func TestFileTicketCacheConcurrent(t *testing.T) {
	_, dir := newFileCache(t)
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Go(func() {
			c := &FileTicketCache{dir: dir, OnError: func(err error) { t.Error(err) }}
			for i := range 15 {
				c.Put(fmt.Sprint(w, "-", i), []byte("s"), time.Now().Add(time.Hour))
			}
		})
	}
	wg.Wait()
	c := &FileTicketCache{dir: dir}
	for w := range 6 {
		for i := range 15 {
			if _, ok := c.Get(fmt.Sprint(w, "-", i)); !ok {
				t.Errorf("session %d-%d lost", w, i)
			}
		}
	}
}

// TestFileTicketCacheRefuses: a cache file or directory that another user owns, that group or
// others may read, or that is a symbolic link, is not used.
func TestFileTicketCacheRefuses(t *testing.T) {
	exp := time.Now().Add(time.Hour)
	for _, tc := range []struct {
		name  string
		spoil func(t *testing.T, dir, file string)
		want  string
	}{
		{"file of another user", func(t *testing.T, dir, file string) {
			if os.Geteuid() != 0 {
				t.Skip("needs root to give the file away")
			}
			if err := os.Chown(file, 65534, 65534); err != nil {
				t.Fatal(err)
			}
		}, "does not belong"},
		{"group-readable file", func(t *testing.T, dir, file string) {
			if err := os.Chmod(file, 0o640); err != nil {
				t.Fatal(err)
			}
		}, "open to group or others"},
		{"group-readable directory", func(t *testing.T, dir, file string) {
			if err := os.Chmod(dir, 0o750); err != nil {
				t.Fatal(err)
			}
		}, "open to group or others"},
		{"symbolic link", func(t *testing.T, dir, file string) {
			target := filepath.Join(t.TempDir(), "elsewhere")
			if err := os.Rename(file, target); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, file); err != nil {
				t.Fatal(err)
			}
		}, "not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, dir := newFileCache(t)
			c.Put("id", []byte("secret"), exp)
			file := filepath.Join(dir, fileCacheName)
			tc.spoil(t, dir, file)
			var errs []error
			c.OnError = func(err error) { errs = append(errs, err) }
			if _, ok := c.Get("id"); ok {
				t.Error("Get used the refused file")
			}
			if len(errs) == 0 || !strings.Contains(errs[0].Error(), tc.want) {
				t.Errorf("errors %v; want one saying %q", errs, tc.want)
			}
			if _, err := NewFileTicketCache(dir); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewFileTicketCache: %v; want an error saying %q", err, tc.want)
			}
		})
	}
}

// Environment of the helper process of TestFileTicketCacheAcrossProcesses.
const (
	fileCacheHelperEnv = "NETAUTH_TEST_FILECACHE_HELPER"
	fileCacheAddrEnv   = "NETAUTH_TEST_FILECACHE_ADDR"
	fileCacheKHEnv     = "NETAUTH_TEST_FILECACHE_KNOWN_HOSTS"
)

// TestFileTicketCacheHelper is not a test: TestFileTicketCacheAcrossProcesses runs the test
// binary with it selected, as a separate process that dials once and reports whether it resumed.
func TestFileTicketCacheHelper(t *testing.T) {
	if os.Getenv(fileCacheHelperEnv) != "1" {
		t.Skip("helper process of TestFileTicketCacheAcrossProcesses")
	}
	cfg := &Config{
		User:           "alice",
		KnownHostsFile: os.Getenv(fileCacheKHEnv),
		Logger:         slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	c, err := Dial("tcp", os.Getenv(fileCacheAddrEnv), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1)
	if _, err := c.Read(buf); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("RESUMED=%v\n", c.Identity().Resumed)
}

// TestFileTicketCacheAcrossProcesses: with only a stock ssh-agent, the second of two separate
// processes resumes the session the first made, through the file under $XDG_RUNTIME_DIR; and
// without $XDG_RUNTIME_DIR the debug log says why it does not.
func TestFileTicketCacheAcrossProcesses(t *testing.T) {
	dir := t.TempDir()
	keyPath, pub := sshKeygen(t, dir, "ed25519")
	sock := startOpenSSHAgent(t)
	sshAdd(t, sock, keyPath)
	// The key is set before the server starts: its goroutines serve other processes, with
	// no synchronization with this one that the race detector sees.
	ts := newTestServer(t, func(cfg *ServerConfig) { cfg.Keys.(StaticKeys)["alice"] = []ssh.PublicKey{pub} })
	ts.serveEcho()

	runtime := filepath.Join(t.TempDir(), "run")
	if err := os.Mkdir(runtime, 0o700); err != nil {
		t.Fatal(err)
	}
	dialProc := func(xdg string) string {
		t.Helper()
		cmd := exec.Command(os.Args[0], "-test.run=^TestFileTicketCacheHelper$", "-test.count=1")
		env := []string{fileCacheHelperEnv + "=1", fileCacheAddrEnv + "=" + ts.addr, fileCacheKHEnv + "=" + ts.knownHosts,
			"SSH_AUTH_SOCK=" + sock, "NETAUTH_AUTH_SOCK=", "XDG_RUNTIME_DIR=" + xdg}
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("dialing process: %v\n%s", err, out)
		}
		return string(out)
	}
	if out := dialProc(runtime); !strings.Contains(out, "RESUMED=false") {
		t.Fatalf("first process:\n%s", out)
	}
	if out := dialProc(runtime); !strings.Contains(out, "RESUMED=true") {
		t.Fatalf("second process did not resume from the shared file:\n%s", out)
	}
	fi, err := os.Stat(filepath.Join(runtime, "netauth", fileCacheName))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("ticket cache file: %v, %v; want mode 0600", fi, err)
	}
	if fi, err := os.Stat(filepath.Join(runtime, "netauth")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("ticket cache directory: %v, %v; want mode 0700", fi, err)
	}

	// A group-readable cache file is refused: the next process makes a full handshake.
	if err := os.Chmod(filepath.Join(runtime, "netauth", fileCacheName), 0o640); err != nil {
		t.Fatal(err)
	}
	if out := dialProc(runtime); !strings.Contains(out, "RESUMED=false") || !strings.Contains(out, "open to group or others") {
		t.Errorf("process with a group-readable cache file:\n%s", out)
	}

	// Without $XDG_RUNTIME_DIR there is no shared cache, and the debug log says so.
	for range 2 {
		if out := dialProc(""); !strings.Contains(out, "RESUMED=false") || !strings.Contains(out, "XDG_RUNTIME_DIR is not set") {
			t.Errorf("process without $XDG_RUNTIME_DIR:\n%s", out)
		}
	}
}
