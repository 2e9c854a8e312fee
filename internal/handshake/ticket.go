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
	ticketVersion    = 1
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
	Key            []byte // user's public key, SSH wire form
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
	addBytes16(&b, t.Key)
	addBytes16(&b, []byte(t.Service))
	b.AddBytes(t.HostKeyHash[:])
	b.AddBytes(t.Secret[:])
	return b.BytesOrPanic()
}

func parseTicketContents(p []byte) (*ticketContents, error) {
	s := cryptobyte.String(p)
	t := &ticketContents{}
	var v uint8
	var user, svc, hk, sec []byte
	if !s.ReadUint8(&v) || v != ticketVersion || !s.ReadUint64(&t.Issued) || !s.ReadUint64(&t.Expiry) ||
		!readBytes16(&s, &user, MaxNameLen) || !readBytes16(&s, &t.Key, MaxTicketSize) ||
		!readBytes16(&s, &svc, MaxNameLen) || !s.ReadBytes(&hk, 32) || !s.ReadBytes(&sec, PSKLen) || !s.Empty() {
		return nil, ErrTicketInvalid
	}
	t.User, t.Service = string(user), string(svc)
	copy(t.HostKeyHash[:], hk)
	copy(t.Secret[:], sec)
	return t, nil
}

// TicketKeys holds the server's rotating ticket encryption keys. A new key is made every
// lifetime; an old key is kept as long as a ticket it sealed can still be valid. Safe for
// concurrent use.
type TicketKeys struct {
	mu       sync.Mutex
	lifetime time.Duration
	rand     io.Reader
	keys     []*ticketKey // newest first
}

type ticketKey struct {
	id      [ticketKeyIDLen]byte
	key     [32]byte
	aead    cipher.AEAD
	created time.Time
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

// current returns the key to seal with, rotating and retiring keys as time passes.
func (t *TicketKeys) current(now time.Time) (*ticketKey, error) {
	if len(t.keys) == 0 || now.Sub(t.keys[0].created) >= t.lifetime {
		k := &ticketKey{created: now}
		if _, err := io.ReadFull(t.rand, k.id[:]); err != nil {
			return nil, fmt.Errorf("ticket key: %w", err)
		}
		if _, err := io.ReadFull(t.rand, k.key[:]); err != nil {
			return nil, fmt.Errorf("ticket key: %w", err)
		}
		block, err := aes.NewCipher(k.key[:])
		if err != nil {
			return nil, err
		}
		if k.aead, err = cipher.NewGCM(block); err != nil {
			return nil, err
		}
		t.keys = append([]*ticketKey{k}, t.keys...)
	}
	// A key retired at time r sealed tickets expiring by r+lifetime: drop keys past that.
	for i := 1; i < len(t.keys); i++ {
		if now.Sub(t.keys[i-1].created) > t.lifetime {
			for _, old := range t.keys[i:] {
				clear(old.key[:])
			}
			t.keys = t.keys[:i]
			break
		}
	}
	return t.keys[0], nil
}

// seal encrypts c into a ticket.
func (t *TicketKeys) seal(c *ticketContents, now time.Time) ([]byte, error) {
	t.mu.Lock()
	k, err := t.current(now)
	t.mu.Unlock()
	if err != nil {
		return nil, err
	}
	pt := c.marshal()
	defer clear(pt)
	out := make([]byte, 0, minTicketLen+len(pt))
	out = append(out, k.id[:]...)
	nonce := make([]byte, ticketNonceLen)
	if _, err := io.ReadFull(t.rand, nonce); err != nil {
		return nil, fmt.Errorf("ticket nonce: %w", err)
	}
	out = append(out, nonce...)
	ad := append([]byte(ticketAD), k.id[:]...)
	out = k.aead.Seal(out, nonce, pt, ad)
	if len(out) > MaxTicketSize {
		return nil, fmt.Errorf("ticket of %d bytes exceeds the limit of %d (user key too large)", len(out), MaxTicketSize)
	}
	return out, nil
}

// open decrypts a ticket and checks its expiry against now.
func (t *TicketKeys) open(ticket []byte, now time.Time) (*ticketContents, error) {
	if len(ticket) < minTicketLen || len(ticket) > MaxTicketSize {
		return nil, ErrTicketInvalid
	}
	var id [ticketKeyIDLen]byte
	copy(id[:], ticket)
	t.mu.Lock()
	var k *ticketKey
	for _, cand := range t.keys {
		if cand.id == id {
			k = cand
			break
		}
	}
	t.mu.Unlock()
	if k == nil {
		return nil, ErrTicketUnknownKey
	}
	nonce := ticket[ticketKeyIDLen : ticketKeyIDLen+ticketNonceLen]
	ad := append([]byte(ticketAD), id[:]...)
	pt, err := k.aead.Open(nil, nonce, ticket[ticketKeyIDLen+ticketNonceLen:], ad)
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
