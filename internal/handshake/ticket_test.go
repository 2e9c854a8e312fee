// SPDX-License-Identifier: Apache-2.0

package handshake

import (
	"crypto/rand"
	"errors"
	"testing"
	"time"
)

func testTicket() *ticketContents {
	return &ticketContents{User: "alice", KeyHash: [32]byte{1}, Service: "echo"}
}

// sealAt seals a ticket valid for one lifetime from now.
func sealAt(t *testing.T, tk *TicketKeys, now time.Time) []byte {
	t.Helper()
	c := testTicket()
	c.Issued, c.Expiry = uint64(now.Unix()), uint64(now.Add(tk.Lifetime()).Unix())
	tkt, err := tk.seal(c, now)
	if err != nil {
		t.Fatal(err)
	}
	return tkt
}

// heldKey returns the key the set holds under the id of ticket, or nil.
func heldKey(tk *TicketKeys, ticket []byte) *ticketKey {
	tk.mu.Lock()
	defer tk.mu.Unlock()
	for _, k := range tk.keys {
		if string(k.id[:]) == string(ticket[:ticketKeyIDLen]) {
			return k
		}
	}
	return nil
}

func wiped(k *ticketKey) bool { return k.key == [32]byte{} }

// TestTicketKeyRetiredWithoutSeal: a key is dropped and its bytes zeroed once no ticket it
// sealed can be valid, even when no ticket is sealed any more; until then it still opens its
// tickets, the last one sealed included.
func TestTicketKeyRetiredWithoutSeal(t *testing.T) {
	const life = time.Hour
	tk := NewTicketKeys(life, rand.Reader)
	t0 := time.Unix(1795780800, 0)
	first := sealAt(t, tk, t0)
	k := heldKey(tk, first)
	if k == nil || wiped(k) {
		t.Fatal("no key after sealing")
	}
	// The last ticket this key seals: just before it is one lifetime old.
	last := sealAt(t, tk, t0.Add(life-time.Second))
	if heldKey(tk, last) != k {
		t.Fatal("the key rotated before one lifetime passed")
	}
	if _, err := tk.open(last, t0.Add(2*life-2*time.Second)); err != nil {
		t.Fatalf("the key's last ticket, still valid, does not open: %v", err)
	}
	if wiped(k) || tk.Len() != 1 {
		t.Fatal("the key was retired while a ticket it sealed was valid")
	}
	// Two lifetimes after it was made, nothing it sealed is valid: opening any ticket (here
	// one of its own) retires it, with no seal in between.
	_, err := tk.open(first, t0.Add(2*life+time.Second))
	if !errors.Is(err, ErrTicketUnknownKey) {
		t.Fatalf("open after retirement: %v, want ErrTicketUnknownKey", err)
	}
	if !wiped(k) || tk.Len() != 0 {
		t.Fatalf("key not wiped (%x) or still held (%d keys) after its retirement time", k.key, tk.Len())
	}
}

// TestTicketKeysRetire: Retire drops exactly the keys past their time, wipes them, and says
// when the next one is due.
func TestTicketKeysRetire(t *testing.T) {
	const life = time.Hour
	tk := NewTicketKeys(life, rand.Reader)
	if next := tk.Retire(time.Now()); !next.IsZero() {
		t.Fatalf("empty set: next retirement %v, want none", next)
	}
	t0 := time.Unix(1795780800, 0)
	a := sealAt(t, tk, t0)
	b := sealAt(t, tk, t0.Add(life)) // rotates: a's key stops sealing now
	ka, kb := heldKey(tk, a), heldKey(tk, b)
	if ka == nil || kb == nil || ka == kb {
		t.Fatal("no rotation after one lifetime")
	}
	if next := tk.Retire(t0.Add(2 * life)); !next.Equal(t0.Add(2*life)) || wiped(ka) || tk.Len() != 2 {
		t.Fatalf("at its retirement time: next %v, wiped %v, %d keys; want the old key kept until after %v", next, wiped(ka), tk.Len(), t0.Add(2*life))
	}
	next := tk.Retire(t0.Add(2*life + time.Nanosecond))
	if !wiped(ka) || tk.Len() != 1 || heldKey(tk, a) != nil {
		t.Fatalf("old key after its time: wiped %v, %d keys", wiped(ka), tk.Len())
	}
	if wiped(kb) || !next.Equal(t0.Add(3*life)) {
		t.Fatalf("current key: wiped %v, next retirement %v, want %v", wiped(kb), next, t0.Add(3*life))
	}
	if _, err := tk.open(b, t0.Add(2*life-time.Second)); err != nil {
		t.Fatalf("the current key's valid ticket: %v", err)
	}
	if next := tk.Retire(t0.Add(3*life + time.Second)); !next.IsZero() || !wiped(kb) || tk.Len() != 0 {
		t.Fatalf("every key past its time: next %v, wiped %v, %d keys", next, wiped(kb), tk.Len())
	}
}

// TestTicketKeysRetireLoop: with no seal and no open, RetireLoop alone wipes a key once it is
// past its time (two lifetimes after it was made), not before, and returns when stopped.
func TestTicketKeysRetireLoop(t *testing.T) {
	const life = 200 * time.Millisecond
	tk := NewTicketKeys(life, rand.Reader)
	start := time.Now()
	ticket := sealAt(t, tk, start)
	k := heldKey(tk, ticket)
	stop, done := make(chan struct{}), make(chan struct{})
	go func() { defer close(done); tk.RetireLoop(stop) }()
	defer func() {
		close(stop)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("RetireLoop did not return after stop")
		}
	}()
	for tk.Len() != 0 {
		if time.Since(start) > 10*time.Second {
			t.Fatal("RetireLoop did not retire the key")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if d := time.Since(start); d < 2*life {
		t.Fatalf("key retired %v after it was made, before two lifetimes (%v)", d, 2*life)
	}
	tk.mu.Lock()
	zero := wiped(k)
	tk.mu.Unlock()
	if !zero {
		t.Fatalf("retired key not wiped: %x", k.key)
	}
	if _, err := tk.open(ticket, start); !errors.Is(err, ErrTicketUnknownKey) {
		t.Fatalf("ticket under the retired key: %v, want ErrTicketUnknownKey", err)
	}
}
