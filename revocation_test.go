// SPDX-License-Identifier: Apache-2.0

package netauth

import (
	"context"
	"errors"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
)

// revokingKeys gives a user's key for the first lookups and then revokes it: the key is
// removed right after lookup number revokeAfter returned it.
type revokingKeys struct {
	mu          sync.Mutex
	user        string
	key         ssh.PublicKey
	lookups     int
	revokeAfter int
}

func (k *revokingKeys) Keys(_ context.Context, user string) ([]ssh.PublicKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.lookups++
	if user != k.user || k.lookups > k.revokeAfter {
		return nil, nil
	}
	return []ssh.PublicKey{k.key}, nil
}

// TestKeyRevokedDuringResumption removes the user's key while a resumption is in flight:
// after the server checked the ticket's key at the ClientHello and before the client's binder
// arrives. The binder must not admit the client: ServerConfig.Keys is consulted on every
// resumption "so removing a key takes effect at once", and a ticket holder who keeps
// resumptions waiting must not get in after the key is gone.
func TestKeyRevokedDuringResumption(t *testing.T) {
	alice := newTestUser(t, "alice")
	// Lookup 1 is the full handshake's, lookup 2 the resumption's at its ClientHello.
	src := &revokingKeys{user: "alice", key: alice.signer.PublicKey(), revokeAfter: 2}
	ts := newTestServer(t, func(cfg *ServerConfig) { cfg.Keys = src })
	ts.serveEcho()
	cfg := ts.clientConfig(alice)
	c, err := dialVerdict(ts.addr, cfg)
	if err != nil {
		t.Fatalf("full handshake: %v", err)
	}
	c.Close()
	c, err = dialVerdict(ts.addr, cfg)
	if err == nil {
		id := c.Identity()
		c.Close()
		t.Fatalf("accepted (resumed %v) after the key was revoked", id.Resumed)
	}
	var re *RefusedError
	if !errors.As(err, &re) || re.Code != CodeNotAuthorized {
		t.Fatalf("resumption after revocation: %v, want not authorized", err)
	}
	src.mu.Lock()
	defer src.mu.Unlock()
	if src.lookups < 3 {
		t.Fatalf("%d key lookups: the resumption was not attempted", src.lookups)
	}
}
