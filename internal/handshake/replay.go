// SPDX-License-Identifier: Apache-2.0

package handshake

import (
	"crypto/sha256"
	"errors"
	"sync"
	"time"
)

// Replay cache errors.
var (
	ErrReplayed        = errors.New("authenticator already used")
	ErrReplayCacheFull = errors.New("replay cache full of live entries")
)

// DefaultReplayCapacity bounds a ReplayCache.
const DefaultReplayCapacity = 1 << 16

// ReplayCache remembers the authenticators accepted within the clock-skew window, so none is
// accepted twice. Each authenticator is also bound to its connection's handshake hash, so a
// replay fails the signature check anyway; the cache is a second, independent barrier. Safe
// for concurrent use.
type ReplayCache struct {
	mu       sync.Mutex
	seen     map[[32]byte]time.Time // hash of the SSHSIG blob -> when it can be forgotten
	capacity int
}

// NewReplayCache returns a cache holding at most capacity entries
// (DefaultReplayCapacity if capacity <= 0).
func NewReplayCache(capacity int) *ReplayCache {
	if capacity <= 0 {
		capacity = DefaultReplayCapacity
	}
	return &ReplayCache{seen: make(map[[32]byte]time.Time), capacity: capacity}
}

// Add records sig until forget. It returns ErrReplayed if sig is already recorded, and
// ErrReplayCacheFull when the cache is full of live entries: it then refuses new ones (fails
// closed) rather than forgetting a live entry.
func (c *ReplayCache) Add(sig []byte, forget, now time.Time) error {
	k := sha256.Sum256(sig)
	c.mu.Lock()
	defer c.mu.Unlock()
	if t, ok := c.seen[k]; ok && now.Before(t) {
		return ErrReplayed
	}
	if len(c.seen) >= c.capacity {
		for h, t := range c.seen {
			if !now.Before(t) {
				delete(c.seen, h)
			}
		}
		if len(c.seen) >= c.capacity {
			return ErrReplayCacheFull
		}
	}
	c.seen[k] = forget
	return nil
}

// Len returns the number of entries held, live or not yet swept.
func (c *ReplayCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}
