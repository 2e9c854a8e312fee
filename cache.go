// SPDX-License-Identifier: Apache-2.0

package netauth

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"ubns.dev/netauth/internal/handshake"
)

// TicketCache stores a client's resumption sessions (ticket, secret and identity, as opaque
// secret bytes) under an id naming the user, server and service ("netauth-v1 user@host:port
// service"). It also stores, under "netauth-key-v1 user@host:port service", the public key
// blob of the key that server last accepted (kept 30 days). Implementations must be safe for
// concurrent use and should wipe what they evict.
type TicketCache interface {
	// Get returns a copy of the session stored under id.
	Get(id string) (session []byte, ok bool)
	// Put stores session under id until expiry.
	Put(id string, session []byte, expiry time.Time)
	// Delete forgets id.
	Delete(id string)
}

// NewMemoryTicketCache returns a TicketCache in process memory holding at most max sessions
// (the ones expiring soonest are evicted first).
func NewMemoryTicketCache(max int) TicketCache {
	if max <= 0 {
		max = 1
	}
	return &memoryCache{max: max, m: make(map[string]memoryEntry)}
}

type memoryEntry struct {
	session []byte
	expiry  time.Time
}

type memoryCache struct {
	mu  sync.Mutex
	max int
	m   map[string]memoryEntry
}

func (c *memoryCache) Get(id string) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[id]
	if !ok {
		return nil, false
	}
	if !time.Now().Before(e.expiry) {
		c.deleteLocked(id)
		return nil, false
	}
	return append([]byte(nil), e.session...), true
}

func (c *memoryCache) Put(id string, session []byte, expiry time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deleteLocked(id)
	for len(c.m) >= c.max {
		var victim string
		var soonest time.Time
		for k, e := range c.m {
			if victim == "" || e.expiry.Before(soonest) {
				victim, soonest = k, e.expiry
			}
		}
		c.deleteLocked(victim)
	}
	c.m[id] = memoryEntry{session: append([]byte(nil), session...), expiry: expiry}
}

func (c *memoryCache) Delete(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deleteLocked(id)
}

func (c *memoryCache) deleteLocked(id string) {
	if e, ok := c.m[id]; ok {
		clear(e.session)
		delete(c.m, id)
	}
}

// Limits of a ticket cache file.
const (
	// maxFileCacheEntries is how many sessions a ticket cache file holds; beyond it the ones
	// expiring soonest are dropped.
	maxFileCacheEntries = 256
	// maxFileCacheEntry bounds one stored id or session, in bytes: a session of a user
	// certificate may be as large as the handshake allows one to be.
	maxFileCacheEntry = handshake.MaxSessionSize
	// maxFileCacheSize bounds the file: Put drops the sessions expiring soonest until the
	// rest fit, and a larger file is not read (and is replaced on the next Put).
	maxFileCacheSize = 1 << 20
)

// fileCacheName is the ticket cache file in the cache directory; fileCacheLock is the lock
// file that orders the processes using it.
const (
	fileCacheName = "tickets"
	fileCacheLock = "tickets.lock"
)

// FileTicketCache is a TicketCache in a file shared by the processes of one user, for when
// the user runs no netauth agent: a stock ssh-agent has no ticket cache, and without a
// shared one every process would make a full handshake to every server.
//
// The cache lives in a directory that must belong to the process's effective user and be
// accessible to no one else (mode 0700; NewFileTicketCache makes it if missing). The file,
// mode 0600, is replaced atomically (written under a temporary name in the same directory,
// then renamed) under an exclusive lock on a lock file beside it; readers take a shared lock.
// It holds at most 256 sessions and 1 MiB. A directory or file that belongs to another user,
// or that group or others may read or write, or a symbolic link, is refused.
type FileTicketCache struct {
	dir string
	// OnError, if set, receives the errors Get, Put and Delete meet (the TicketCache
	// interface has no room for them): a refused or unreadable file is a cache miss.
	OnError func(error)
}

// NewFileTicketCache returns a ticket cache in dir, creating dir (mode 0700) if it does not
// exist, after checking that dir and any cache file in it belong to this user and are private.
func NewFileTicketCache(dir string) (*FileTicketCache, error) {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("netauth: ticket cache: %w", err)
	}
	c := &FileTicketCache{dir: dir}
	if err := checkPrivate(dir, true); err != nil {
		return nil, err
	}
	if err := checkPrivate(filepath.Join(dir, fileCacheName), false); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	return c, nil
}

// DefaultFileTicketCacheDir returns $XDG_RUNTIME_DIR/netauth, where Dial keeps the shared
// ticket cache when the agent has none, or an error saying why there is none.
func DefaultFileTicketCacheDir() (string, error) {
	rt := os.Getenv("XDG_RUNTIME_DIR")
	if rt == "" {
		return "", errors.New("netauth: no shared ticket cache: $XDG_RUNTIME_DIR is not set, so tickets stay in this process; start a netauth agent (eval \"$(netauth agent)\") to share them")
	}
	if !filepath.IsAbs(rt) {
		return "", fmt.Errorf("netauth: no shared ticket cache: $XDG_RUNTIME_DIR %q is not an absolute path", rt)
	}
	return filepath.Join(rt, "netauth"), nil
}

// checkPrivate checks that path (a directory if dir) is no symbolic link, belongs to the
// effective user, and is accessible to no one else.
func checkPrivate(path string, dir bool) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("netauth: ticket cache: %w", err)
	}
	switch {
	case dir && !fi.IsDir():
		return fmt.Errorf("netauth: ticket cache: %s is not a directory", path)
	case !dir && !fi.Mode().IsRegular():
		return fmt.Errorf("netauth: ticket cache: %s is not a regular file", path)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("netauth: ticket cache: %s does not belong to uid %d; refusing it", path, os.Geteuid())
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("netauth: ticket cache: %s has mode %v, open to group or others; refusing it (want %v)", path, fi.Mode().Perm(), map[bool]os.FileMode{true: 0o700, false: 0o600}[dir])
	}
	return nil
}

// fileEntry is one stored session, in SSH wire format in the file.
type fileEntry struct {
	ID      string
	Session []byte
	Expiry  uint64
}

func (c *FileTicketCache) report(err error) {
	if err != nil && c.OnError != nil {
		c.OnError(err)
	}
}

// lock opens the lock file and locks it (shared or exclusive).
func (c *FileTicketCache) lock(how int) (*os.File, error) {
	if err := checkPrivate(c.dir, true); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(c.dir, fileCacheLock), os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("netauth: ticket cache: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		return nil, fmt.Errorf("netauth: ticket cache: lock: %w", err)
	}
	return f, nil
}

// load reads the cache file; a missing file is an empty cache. The caller holds the lock.
func (c *FileTicketCache) load() ([]fileEntry, error) {
	path := filepath.Join(c.dir, fileCacheName)
	if err := checkPrivate(path, false); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	// The directory is this user's alone, so the file checked is the file opened;
	// O_NOFOLLOW all the same.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("netauth: ticket cache: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("netauth: ticket cache: %w", err)
	}
	if fi.Size() > maxFileCacheSize {
		return nil, fmt.Errorf("netauth: ticket cache: %s is %d bytes, more than %d; ignoring it", path, fi.Size(), maxFileCacheSize)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxFileCacheSize+1))
	if err != nil {
		return nil, fmt.Errorf("netauth: ticket cache: %w", err)
	}
	defer clear(b)
	var entries []fileEntry
	for rest := b; len(rest) > 0; {
		if len(entries) >= maxFileCacheEntries {
			break
		}
		var e struct {
			ID      string
			Session []byte
			Expiry  uint64
			Rest    []byte `ssh:"rest"`
		}
		if err := ssh.Unmarshal(rest, &e); err != nil {
			return nil, fmt.Errorf("netauth: ticket cache: %s is malformed; ignoring it", path)
		}
		if len(e.ID) <= maxFileCacheEntry && len(e.Session) <= maxFileCacheEntry {
			entries = append(entries, fileEntry{ID: e.ID, Session: bytes.Clone(e.Session), Expiry: e.Expiry})
		}
		rest = e.Rest
	}
	return entries, nil
}

// store replaces the cache file with entries, atomically. The caller holds the lock.
func (c *FileTicketCache) store(entries []fileEntry) error {
	var b []byte
	for _, e := range entries {
		b = append(b, ssh.Marshal(e)...)
	}
	defer clear(b)
	tmp, err := os.CreateTemp(c.dir, fileCacheName+".*") // mode 0600
	if err != nil {
		return fmt.Errorf("netauth: ticket cache: %w", err)
	}
	name := tmp.Name()
	_, err = tmp.Write(b)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(name, filepath.Join(c.dir, fileCacheName))
	}
	if err != nil {
		os.Remove(name)
		return fmt.Errorf("netauth: ticket cache: %w", err)
	}
	return nil
}

func wipeEntries(entries []fileEntry) {
	for _, e := range entries {
		clear(e.Session)
	}
}

// Get returns a copy of the session stored under id, if it has not expired.
func (c *FileTicketCache) Get(id string) ([]byte, bool) {
	l, err := c.lock(syscall.LOCK_SH)
	if err != nil {
		c.report(err)
		return nil, false
	}
	defer l.Close()
	entries, err := c.load()
	defer wipeEntries(entries)
	if err != nil {
		c.report(err)
		return nil, false
	}
	now := uint64(max(time.Now().Unix(), 0))
	for _, e := range entries {
		if e.ID == id && now < e.Expiry {
			return bytes.Clone(e.Session), true
		}
	}
	return nil, false
}

// Put stores session under id until expiry, dropping expired sessions and, beyond the
// limit, those expiring soonest.
func (c *FileTicketCache) Put(id string, session []byte, expiry time.Time) {
	if len(id) > maxFileCacheEntry || len(session) > maxFileCacheEntry {
		c.report(fmt.Errorf("netauth: ticket cache: entry too large (%d and %d bytes)", len(id), len(session)))
		return
	}
	c.update(id, &fileEntry{ID: id, Session: bytes.Clone(session), Expiry: uint64(max(expiry.Unix(), 0))})
}

// Delete forgets id.
func (c *FileTicketCache) Delete(id string) { c.update(id, nil) }

// update replaces (or with e nil, removes) the entry under id.
func (c *FileTicketCache) update(id string, e *fileEntry) {
	l, err := c.lock(syscall.LOCK_EX)
	if err != nil {
		c.report(err)
		return
	}
	defer l.Close()
	entries, err := c.load()
	if err != nil {
		// A file that cannot be used is replaced.
		c.report(err)
		entries = nil
	}
	defer wipeEntries(entries)
	now := uint64(max(time.Now().Unix(), 0))
	kept := entries[:0:0]
	found := false
	for _, old := range entries {
		if old.ID == id {
			found = true
		}
		if old.ID != id && now < old.Expiry {
			kept = append(kept, old)
		}
	}
	if e == nil && !found {
		return
	}
	if e != nil {
		defer clear(e.Session)
		slices.SortFunc(kept, func(a, b fileEntry) int { return cmp.Compare(b.Expiry, a.Expiry) })
		kept = kept[:min(len(kept), maxFileCacheEntries-1)]
		size := e.size()
		for i, old := range kept {
			if size+old.size() > maxFileCacheSize {
				kept = kept[:i]
				break
			}
			size += old.size()
		}
		kept = append(kept, *e)
	}
	c.report(c.store(kept))
}

// size is the length of e in the file (its SSH wire form).
func (e *fileEntry) size() int { return 4 + len(e.ID) + 4 + len(e.Session) + 8 }
