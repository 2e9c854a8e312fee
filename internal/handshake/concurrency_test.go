// SPDX-License-Identifier: Apache-2.0

package handshake

import (
	"sync"
	"testing"
	"time"

	"ubns.dev/netauth/internal/keys"
	"ubns.dev/netauth/internal/record"
)

// TestConcurrentSameAuthenticator races one genuine authenticator against itself: sent at
// once for its own handshake (many times) and for other handshakes. Exactly one may be
// accepted, and it leaves exactly one replay-cache entry: the others find the session taken
// or fail verification against another handshake's hash.
func TestConcurrentSameAuthenticator(t *testing.T) {
	e := newEnv(t)
	core, err := NewServerCore(e.srv, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	c := coreClient{t, core}
	alice := e.cli.Signer.(keySigner).s
	own := c.begin()
	now := time.Now()
	st := &keys.Statement{HandshakeHash: own.HandshakeHash, HostKey: core.HostKey(), Service: e.srv.Service, User: "alice", Time: time.Unix(now.Unix(), 0)}
	stmt, err := st.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	sshsig, err := keys.Sign(alice, Namespace, stmt)
	if err != nil {
		t.Fatal(err)
	}
	sessions := []uint64{own.Session}
	for range 7 {
		sessions = append(sessions, c.begin().Session)
	}
	const perSession = 8
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		accepted []uint64
	)
	start := make(chan struct{})
	for _, id := range sessions {
		for range perSession {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, err := core.Commit(&CommitRequest{Session: id, User: "alice", Time: uint64(now.Unix()), SSHSIG: sshsig}, &record.State{})
				if err == nil {
					mu.Lock()
					accepted = append(accepted, id)
					mu.Unlock()
				}
			}()
		}
	}
	close(start)
	wg.Wait()
	if len(accepted) != 1 || accepted[0] != own.Session {
		t.Fatalf("accepted for sessions %v, want exactly once, for session %d", accepted, own.Session)
	}
	if n := e.srv.Replay.Len(); n != 1 {
		t.Fatalf("replay cache holds %d entries, want 1", n)
	}
}
