// SPDX-License-Identifier: Apache-2.0

package handshake

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"golang.org/x/crypto/cryptobyte"
)

// Ticket layout (docs/PROTOCOL.md §5): key_id(8) || nonce(12) || AES-256-GCM(contents).
const (
	ticketKeyIDLen   = 8
	ticketNonceLen   = 12
	ticketVersion    = 3 // 3: the secret is from a hybrid full handshake (protocol version 3)
	ticketAD         = "netauth-v1 ticket\x00"
	minTicketLen     = ticketKeyIDLen + ticketNonceLen + 16
	DefaultTicketTTL = time.Hour
)

// Ticket errors. None of them is sent to the peer: a ticket that fails for any reason makes
// the server fall back to a full handshake.
var (
	ErrTicketUnknownKey = errors.New("ticket encrypted under an unknown or retired key")
	ErrTicketInvalid    = errors.New("ticket failed authentication or is malformed")
	ErrTicketExpired    = errors.New("ticket expired")
)

// ticketContents is what a ticket holds, readable only by the server.
type ticketContents struct {
	Issued, Expiry uint64 // Unix seconds; Issued is the time of the full handshake
	User           string
	KeyHash        [32]byte // SHA-256 of the user's public key's wire form (not the key)
	Service        string
	HostKeyHash    [32]byte // SHA-256 of the host key's wire form
	Secret         [PSKLen]byte
}

func (t *ticketContents) marshal() []byte {
	var b cryptobyte.Builder
	b.AddUint8(ticketVersion)
	b.AddUint64(t.Issued)
	b.AddUint64(t.Expiry)
	addBytes16(&b, []byte(t.User))
	b.AddBytes(t.KeyHash[:])
	addBytes16(&b, []byte(t.Service))
	b.AddBytes(t.HostKeyHash[:])
	b.AddBytes(t.Secret[:])
	return b.BytesOrPanic()
}

func parseTicketContents(p []byte) (*ticketContents, error) {
	s := cryptobyte.String(p)
	t := &ticketContents{}
	var v uint8
	var user, kh, svc, hk, sec []byte
	if !s.ReadUint8(&v) || v != ticketVersion || !s.ReadUint64(&t.Issued) || !s.ReadUint64(&t.Expiry) ||
		!readBytes16(&s, &user, MaxNameLen) || !s.ReadBytes(&kh, 32) ||
		!readBytes16(&s, &svc, MaxNameLen) || !s.ReadBytes(&hk, 32) || !s.ReadBytes(&sec, PSKLen) || !s.Empty() {
		return nil, ErrTicketInvalid
	}
	t.User, t.Service = string(user), string(svc)
	copy(t.KeyHash[:], kh)
	copy(t.HostKeyHash[:], hk)
	copy(t.Secret[:], sec)
	return t, nil
}

// TicketKeys holds the server's rotating ticket encryption keys. A new key is made every
// lifetime; an old key is kept as long as a ticket it sealed can still be valid, then dropped
// and wiped (docs/PROTOCOL.md §5.2). Sealing and opening retire keys as they go; so that keys
// do not outlive their use on a server that makes no full handshakes, whoever owns a
// TicketKeys also runs RetireLoop. Safe for concurrent use.
//
// What is wiped: the 32-byte key, the only copy a TicketKeys keeps. The AES key schedule and
// GHASH key that crypto/aes and crypto/cipher derive from it are not: Go offers no way to
// clear them. They are therefore not kept either: each seal and open derives them anew, and
// they are garbage once it returns (unreferenced, overwritten only when the memory is
// reused), so no long-lived copy of a retired key remains reachable.
type TicketKeys struct {
	mu       sync.Mutex
	lifetime time.Duration
	rand     io.Reader
	keys     []*ticketKey // newest first
}

type ticketKey struct {
	id      [ticketKeyIDLen]byte
	key     [32]byte
	created time.Time
}

// aead returns AES-256-GCM under the key, for one seal or open.
func (k *ticketKey) aead() (cipher.AEAD, error) {
	block, err := aes.NewCipher(k.key[:])
	if err != nil {
		return nil, fmt.Errorf("ticket key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("ticket key: %w", err)
	}
	return aead, nil
}

// NewTicketKeys returns a key set issuing tickets valid for lifetime (DefaultTicketTTL if
// zero), drawing keys and nonces from rand.
func NewTicketKeys(lifetime time.Duration, rand io.Reader) *TicketKeys {
	if lifetime <= 0 {
		lifetime = DefaultTicketTTL
	}
	return &TicketKeys{lifetime: lifetime, rand: rand}
}

// Lifetime returns how long issued tickets are valid.
func (t *TicketKeys) Lifetime() time.Duration { return t.lifetime }

// Len returns how many keys the set holds.
func (t *TicketKeys) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.keys)
}

// current returns the key to seal with, rotating and retiring keys as time passes.
func (t *TicketKeys) current(now time.Time) (*ticketKey, error) {
	t.retireLocked(now)
	if len(t.keys) == 0 || now.Sub(t.keys[0].created) >= t.lifetime {
		k := &ticketKey{created: now}
		if _, err := io.ReadFull(t.rand, k.id[:]); err != nil {
			return nil, fmt.Errorf("ticket key: %w", err)
		}
		if _, err := io.ReadFull(t.rand, k.key[:]); err != nil {
			clear(k.key[:])
			return nil, fmt.Errorf("ticket key: %w", err)
		}
		t.keys = append([]*ticketKey{k}, t.keys...)
	}
	return t.keys[0], nil
}

// retireAt returns when key i (in t.keys, newest first) stops being needed: it seals until its
// successor is made, and at the latest until one lifetime after it was made (the next seal
// then makes a successor); the tickets it sealed expire at most one lifetime after that.
func (t *TicketKeys) retireAt(i int) time.Time {
	stop := t.keys[i].created.Add(t.lifetime)
	if i > 0 && t.keys[i-1].created.Before(stop) {
		stop = t.keys[i-1].created
	}
	return stop.Add(t.lifetime)
}

// retireLocked drops and wipes every key that no valid ticket can need at now. Keys are
// ordered newest first and retire in the same order, oldest first.
func (t *TicketKeys) retireLocked(now time.Time) {
	n := len(t.keys)
	for n > 0 && now.After(t.retireAt(n-1)) {
		n--
	}
	for i := n; i < len(t.keys); i++ {
		clear(t.keys[i].key[:])
		clear(t.keys[i].id[:])
		t.keys[i] = nil
	}
	t.keys = t.keys[:n]
}

// Retire drops and wipes the keys that no ticket valid at now can need, and returns when the
// next remaining key will be due for retirement (the zero time if no key is left).
func (t *TicketKeys) Retire(now time.Time) (next time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.retireLocked(now)
	if len(t.keys) == 0 {
		return time.Time{}
	}
	return t.retireAt(len(t.keys) - 1)
}

// minRetireInterval is the shortest wait between two wakes of RetireLoop: a tiny ticket
// lifetime would otherwise make it spin. A key can outlive its time by this much, unusable:
// opening a ticket retires the keys past their time first.
const minRetireInterval = 100 * time.Millisecond

// RetireLoop retires keys on time, by the system clock, until stop is closed: it wakes when
// the oldest key is due, and at least once a lifetime (a key made in between is not due
// before two lifetimes have passed), but not more often than every minRetireInterval.
func (t *TicketKeys) RetireLoop(stop <-chan struct{}) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-stop:
			return
		case <-timer.C:
		}
		now := time.Now()
		wait := t.lifetime
		if next := t.Retire(now); !next.IsZero() {
			// Retire drops a key once the clock is past its time: wake just after it.
			wait = min(wait, next.Sub(now)+time.Millisecond)
		}
		timer.Reset(max(wait, minRetireInterval))
	}
}

// seal encrypts c into a ticket. Only choosing the key and drawing the nonce hold the lock;
// the encryption runs on a copy of the key, wiped afterwards.
func (t *TicketKeys) seal(c *ticketContents, now time.Time) ([]byte, error) {
	var k ticketKey
	defer clear(k.key[:])
	nonce := make([]byte, ticketNonceLen)
	t.mu.Lock()
	cur, err := t.current(now)
	if err == nil {
		k = *cur
		if _, err = io.ReadFull(t.rand, nonce); err != nil {
			err = fmt.Errorf("ticket nonce: %w", err)
		}
	}
	t.mu.Unlock()
	if err != nil {
		return nil, err
	}
	aead, err := k.aead()
	if err != nil {
		return nil, err
	}
	pt := c.marshal()
	defer clear(pt)
	out := make([]byte, 0, minTicketLen+len(pt))
	out = append(out, k.id[:]...)
	out = append(out, nonce...)
	ad := append([]byte(ticketAD), k.id[:]...)
	out = aead.Seal(out, nonce, pt, ad)
	if len(out) > MaxTicketSize {
		return nil, fmt.Errorf("ticket of %d bytes exceeds the limit of %d", len(out), MaxTicketSize)
	}
	return out, nil
}

// open decrypts a ticket and checks its expiry against now. It retires keys first, so a
// ticket under a key past its time never opens. Only finding the key holds the lock; the
// decryption runs on a copy of it, wiped afterwards.
func (t *TicketKeys) open(ticket []byte, now time.Time) (*ticketContents, error) {
	if len(ticket) < minTicketLen || len(ticket) > MaxTicketSize {
		return nil, ErrTicketInvalid
	}
	var id [ticketKeyIDLen]byte
	copy(id[:], ticket)
	var k ticketKey
	defer clear(k.key[:])
	found := false
	t.mu.Lock()
	t.retireLocked(now)
	for _, cand := range t.keys {
		if cand.id == id {
			k, found = *cand, true
			break
		}
	}
	t.mu.Unlock()
	if !found {
		return nil, ErrTicketUnknownKey
	}
	aead, err := k.aead()
	if err != nil {
		return nil, err
	}
	nonce := ticket[ticketKeyIDLen : ticketKeyIDLen+ticketNonceLen]
	ad := append([]byte(ticketAD), id[:]...)
	pt, err := aead.Open(nil, nonce, ticket[ticketKeyIDLen+ticketNonceLen:], ad)
	if err != nil {
		return nil, ErrTicketInvalid
	}
	defer clear(pt)
	c, err := parseTicketContents(pt)
	if err != nil {
		return nil, err
	}
	if uint64(now.Unix()) >= c.Expiry {
		return nil, ErrTicketExpired
	}
	return c, nil
}

func hostKeyHash(wire []byte) [32]byte { return sha256.Sum256(wire) }
