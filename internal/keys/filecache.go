// SPDX-License-Identifier: Apache-2.0

package keys

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
)

// RacyWindow is how recent a file's last change may be, when it is read, for FileCache
// to keep what it read. A change that lands within the file system's timestamp
// granularity of the one before leaves the same size and times (and an edit in place the
// same inode): the file's status cannot tell such changes apart, so a file read that soon
// after a change is read again on its next use, until it has not changed for RacyWindow
// (the "racy" entries of git's index, handled the same way). Two seconds covers the
// coarse clock file times are taken from and file systems with one-second timestamps.
const RacyWindow = 2 * time.Second

// Bounds on what a FileCache keeps: the files' sizes together, and the number of files.
const (
	maxCachedBytes = 64 << 20
	maxCachedFiles = 1 << 14
)

// FileCache keeps the keys parsed from authorized keys files, so that a file that did not
// change is neither read nor parsed again, nor its keys hashed: each use stats the file
// and reuses what was read only if the file's status is exactly what it was when read
// (device, inode, size, modification and status-change times to the nanosecond, mode,
// owner, group, link count). Any write, replacement (a rename over it gets another inode),
// change of mode or owner, or link changes the status-change time or the inode; a file
// changed within RacyWindow of being read is not kept (see RacyWindow). The checks a
// source makes on the file (regular file, size, owner, mode, and for home directories the
// directories' owners and modes) are made on every use, on the file's current status.
// A missing file, an error and a file that cannot be parsed are never kept.
//
// A FileCache is safe for concurrent use; its zero value is empty and ready. Sources that
// share one share what they read (entries are keyed by path). It keeps at most 64 MiB of
// files (by their sizes) and 16384 files, forgetting arbitrary entries past that.
type FileCache struct {
	mu      sync.Mutex
	entries map[string]*fileEntry
	bytes   int64

	now   func() time.Time // replaces time.Now in tests
	reads int              // files read and parsed
}

// fileEntry is one file's keys as read, and the status the file had then.
type fileEntry struct {
	stamp fileStamp
	keys  []hashedKey // shared: never modified
}

// fileStamp is what identifies a file's content without reading it (sys_unix.go).
type fileStamp struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64 // nanoseconds since the epoch
	mode         uint32
	uid, gid     uint32
	nlink        uint64
}

// newest is the later of the file's modification and status-change times.
func (s fileStamp) newest() int64 { return max(s.mtime, s.ctime) }

// Reads returns how many times files were read and parsed through c.
func (c *FileCache) Reads() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reads
}

func (c *FileCache) clock() time.Time {
	if c.now != nil {
		return c.now()
	}
	return time.Now()
}

// get returns the keys kept for path if the file still has status st.
func (c *FileCache) get(path string, st fileStamp) ([]hashedKey, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[path]
	if e == nil {
		return nil, false
	}
	if e.stamp != st {
		c.dropLocked(path, e)
		return nil, false
	}
	return e.keys, true
}

// forget drops what is kept for path.
func (c *FileCache) forget(path string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.entries[path]; e != nil {
		c.dropLocked(path, e)
	}
}

func (c *FileCache) dropLocked(path string, e *fileEntry) {
	delete(c.entries, path)
	c.bytes -= e.stamp.size
}

// put keeps keys, read from path when it had status st, unless the file changed too
// shortly before the read started (at readStart) for its status to tell a later change.
func (c *FileCache) put(path string, st fileStamp, keys []hashedKey, readStart time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reads++
	if st.newest() >= readStart.Add(-RacyWindow).UnixNano() || st.size > maxCachedBytes {
		if e := c.entries[path]; e != nil {
			c.dropLocked(path, e)
		}
		return
	}
	if c.entries == nil {
		c.entries = make(map[string]*fileEntry)
	}
	if e := c.entries[path]; e != nil {
		c.dropLocked(path, e)
	}
	for p, e := range c.entries {
		if c.bytes+st.size <= maxCachedBytes && len(c.entries) < maxCachedFiles {
			break
		}
		c.dropLocked(p, e)
	}
	c.entries[path] = &fileEntry{stamp: st, keys: keys}
	c.bytes += st.size
}

// hashedKey is a key with the SHA-256 of its wire form.
type hashedKey struct {
	key  ssh.PublicKey
	hash [sha256.Size]byte
}

// hashKeys pairs each key with its hash.
func hashKeys(keys []ssh.PublicKey) []hashedKey {
	if len(keys) == 0 {
		return nil
	}
	out := make([]hashedKey, len(keys))
	for i, k := range keys {
		out[i] = hashedKey{key: k, hash: sha256.Sum256(k.Marshal())}
	}
	return out
}

// plainKeys returns the keys of hs, in a slice of the caller's.
func plainKeys(hs []hashedKey) []ssh.PublicKey {
	if len(hs) == 0 {
		return nil
	}
	out := make([]ssh.PublicKey, len(hs))
	for i, h := range hs {
		out[i] = h.key
	}
	return out
}

// readKeyFile reads and parses the authorized keys file at path. A missing file gives no
// keys. The file must be a regular file of at most MaxKeyFileSize bytes, and check, if not
// nil, vets its status too. With a cache, a file whose status did not change since it was
// last read is not read again; every check is still made, on its current status.
func readKeyFile(path string, check func(fs.FileInfo) error, cache *FileCache) ([]hashedKey, error) {
	if cache != nil {
		fi, err := os.Stat(path)
		if err == nil {
			if st, ok := statStamp(fi); ok {
				if keys, ok := cache.get(path, st); ok {
					if err := checkKeyFile(path, fi, check); err != nil {
						return nil, err
					}
					return keys, nil
				}
			}
		} else {
			cache.forget(path)
			if errors.Is(err, fs.ErrNotExist) {
				return nil, nil // as the open below would find
			}
		}
		// Read it (and report any error) exactly as without a cache.
	}
	readStart := time.Time{}
	if cache != nil {
		readStart = cache.clock()
	}
	// O_NONBLOCK keeps a FIFO planted at path from blocking the open.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("keys: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	if err := checkKeyFile(path, fi, check); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("keys: reading %s: %w", path, err)
	}
	if len(data) > MaxKeyFileSize {
		return nil, fmt.Errorf("keys: %s is larger than %d bytes", path, MaxKeyFileSize)
	}
	keys, err := ParseAuthorizedKeys(data, path)
	if err != nil {
		return nil, err
	}
	hashed := hashKeys(keys)
	if cache != nil {
		// The status from before the read: a change during it shows at the next use.
		if st, ok := statStamp(fi); ok && int64(len(data)) == st.size {
			cache.put(path, st, hashed, readStart)
		}
	}
	return hashed, nil
}

// checkKeyFile makes the checks on an authorized keys file's status: a regular file, not
// larger than MaxKeyFileSize, and whatever check adds.
func checkKeyFile(path string, fi fs.FileInfo, check func(fs.FileInfo) error) error {
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("keys: %s is not a regular file", path)
	}
	if fi.Size() > MaxKeyFileSize {
		return fmt.Errorf("keys: %s is larger than %d bytes", path, MaxKeyFileSize)
	}
	if check != nil {
		return check(fi)
	}
	return nil
}
