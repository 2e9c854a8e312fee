// SPDX-License-Identifier: Apache-2.0

package usercert

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// countingCommand writes a principals command that appends a line to a file at every run and
// prints the contents of a list file; it returns the command, the list file and a function
// that counts the runs.
func countingCommand(t *testing.T) (PrincipalsCommand, string, func() int) {
	t.Helper()
	dir := t.TempDir()
	ran, list := filepath.Join(dir, "ran"), filepath.Join(dir, "list")
	script := filepath.Join(dir, "principals")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho x >>"+ran+"\ncat "+list+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	runs := func() int {
		b, err := os.ReadFile(ran)
		if os.IsNotExist(err) {
			return 0
		}
		if err != nil {
			t.Fatal(err)
		}
		return strings.Count(string(b), "x")
	}
	return PrincipalsCommand{Path: script, Args: []string{"%u"}}, list, runs
}

// TestPrincipalsCachedForRechecks: re-checks of a live session (WithCachedPrincipals) within
// the TTL run the principals command once; after the TTL it runs again; a principal removed
// from the user's list fails the first re-check after the TTL; a handshake's check asks
// every time and sees the removal at once; a Checker made anew (a reload) does not take the
// old one's answers.
func TestPrincipalsCachedForRechecks(t *testing.T) {
	f := newFixture(t)
	cmd, list, runs := countingCommand(t)
	if err := os.WriteFile(list, []byte("staff\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := &Checker{CAs: []ssh.PublicKey{f.caPub}, Principals: []PrincipalSource{cmd}}
	cert := certify(t, f.ca, f.id, "-I", "a", "-n", "staff")
	recheck := WithCachedPrincipals(context.Background())
	t0 := time.Now()
	check := func(ctx context.Context, at time.Duration) error {
		return c.Check(ctx, cert, "alice", client, t0.Add(at), time.Minute)
	}
	if err := check(context.Background(), 0); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	if n := runs(); n != 1 {
		t.Fatalf("%d runs after the handshake, want 1", n)
	}
	// A re-check every second for the TTL: the answer the handshake got decides them all.
	for s := range int(DefaultPrincipalsTTL / time.Second) {
		if err := check(recheck, time.Duration(s)*time.Second); err != nil {
			t.Fatalf("re-check at %ds: %v", s, err)
		}
	}
	if n := runs(); n != 1 {
		t.Fatalf("the principals command ran %d times for a handshake and %d re-checks within the TTL, want 1", n, DefaultPrincipalsTTL/time.Second)
	}
	if err := check(recheck, DefaultPrincipalsTTL); err != nil {
		t.Fatalf("re-check at the TTL: %v", err)
	}
	if n := runs(); n != 2 {
		t.Fatalf("%d runs after the TTL, want 2", n)
	}

	// The principal is removed: re-checks within the TTL of the last answer still accept, the
	// first after it refuses; a handshake refuses at once.
	if err := os.WriteFile(list, []byte("other\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	last := DefaultPrincipalsTTL
	if err := check(recheck, last+DefaultPrincipalsTTL-time.Second); err != nil {
		t.Fatalf("re-check within the TTL of the last answer: %v", err)
	}
	if err := check(context.Background(), last+time.Second); err == nil {
		t.Fatal("handshake accepted after the principal was removed")
	}
	if n := runs(); n != 3 {
		t.Fatalf("%d runs, want 3 (the handshake asks)", n)
	}
	// The handshake's answer replaced the remembered one: the next re-check refuses.
	if err := check(recheck, last+2*time.Second); err == nil {
		t.Fatal("re-check accepted after a handshake saw the principal removed")
	}
	if n := runs(); n != 3 {
		t.Fatalf("%d runs, want 3 (the re-check used the handshake's answer)", n)
	}

	// Without that handshake, the removal shows at the first re-check after the TTL.
	if err := os.WriteFile(list, []byte("staff\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c = &Checker{CAs: []ssh.PublicKey{f.caPub}, Principals: []PrincipalSource{cmd}}
	if err := check(recheck, 0); err != nil {
		t.Fatalf("first re-check: %v", err)
	}
	if err := os.WriteFile(list, []byte("other\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var refusedAt time.Duration
	for s := time.Duration(1); s < 2*DefaultPrincipalsTTL/time.Second; s++ {
		if err := check(recheck, s*time.Second); err != nil {
			refusedAt = s * time.Second
			break
		}
	}
	if refusedAt != DefaultPrincipalsTTL {
		t.Fatalf("principal removed at 0s: re-checks every second first refuse at %v, want %v", refusedAt, DefaultPrincipalsTTL)
	}

	// A Checker made anew on a reload adopts the verified certificates, not the answers.
	if err := os.WriteFile(list, []byte("staff\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := check(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	before := runs()
	reloaded := &Checker{CAs: []ssh.PublicKey{f.caPub}, Principals: []PrincipalSource{cmd}}
	reloaded.Adopt(c)
	if err := reloaded.Check(recheck, cert, "alice", client, t0, time.Minute); err != nil {
		t.Fatal(err)
	}
	if n := runs(); n != before+1 {
		t.Fatalf("a new Checker's first re-check ran the command %d times, want 1 (answers must not carry over)", n-before)
	}
}

// fakeSource answers every user with its list, or its error, and counts the questions.
type fakeSource struct {
	list  []string
	err   error
	asked atomic.Int32
}

func (s *fakeSource) Principals(context.Context, string) ([]string, error) {
	s.asked.Add(1)
	return s.list, s.err
}

// TestPrincipalsCacheErrors: an answer in which the source failed decides re-checks only
// for a few seconds, and a handshake whose lookup failed remembers nothing.
func TestPrincipalsCacheErrors(t *testing.T) {
	f := newFixture(t)
	src := &fakeSource{err: errors.New("directory down")}
	c := &Checker{CAs: []ssh.PublicKey{f.caPub}, Principals: []PrincipalSource{src}}
	cert := certify(t, f.ca, f.id, "-I", "a", "-n", "staff")
	recheck := WithCachedPrincipals(context.Background())
	t0 := time.Now()
	var ue *Error
	if err := c.Check(context.Background(), cert, "alice", client, t0, time.Minute); !errors.As(err, &ue) || !ue.Lookup {
		t.Fatalf("handshake with a failing source: %v", err)
	}
	if err := c.Check(recheck, cert, "alice", client, t0, time.Minute); !errors.As(err, &ue) || !ue.Lookup {
		t.Fatalf("re-check with a failing source: %v", err)
	}
	if n := src.asked.Load(); n != 2 {
		t.Fatalf("source asked %d times, want 2 (a failed handshake remembers nothing)", n)
	}
	for s := range principalsErrorTTL / time.Second {
		if err := c.Check(recheck, cert, "alice", client, t0.Add(s*time.Second), time.Minute); !errors.As(err, &ue) || !ue.Lookup {
			t.Fatalf("re-check at %ds: %v", s, err)
		}
	}
	if n := src.asked.Load(); n != 2 {
		t.Fatalf("source asked %d times, want 2 (the failure is remembered for %v)", n, principalsErrorTTL)
	}
	src.err, src.list = nil, []string{"staff"}
	if err := c.Check(recheck, cert, "alice", client, t0.Add(principalsErrorTTL), time.Minute); err != nil {
		t.Fatalf("re-check once the failure is forgotten: %v", err)
	}
	if n := src.asked.Load(); n != 3 {
		t.Fatalf("source asked %d times, want 3", n)
	}
	// A clock that went back does not make an answer younger.
	if err := c.Check(recheck, cert, "alice", client, t0, time.Minute); err != nil {
		t.Fatal(err)
	}
	if n := src.asked.Load(); n != 4 {
		t.Fatalf("source asked %d times, want 4 (an answer from the future is not used)", n)
	}
}

// TestPrincipalsCacheBound: the answers remembered stay within maxCachedPrincipals however
// many users are re-checked, and handshakes refused for any number of user names remember
// none.
func TestPrincipalsCacheBound(t *testing.T) {
	f := newFixture(t)
	src := &fakeSource{list: []string{"staff"}}
	c := &Checker{CAs: []ssh.PublicKey{f.caPub}, Principals: []PrincipalSource{src}}
	cert := certify(t, f.ca, f.id, "-I", "a", "-n", "staff")
	other := certify(t, f.ca, f.id, "-I", "b", "-n", "nobody")
	recheck := WithCachedPrincipals(context.Background())
	now := time.Now()
	for i := range 3 * maxCachedPrincipals {
		if err := c.Check(context.Background(), other, fmt.Sprintf("u%d", i), client, now, time.Minute); err == nil {
			t.Fatal("certificate without an allowed principal accepted")
		}
	}
	c.mu.Lock()
	n := len(c.principals)
	c.mu.Unlock()
	if n != 0 {
		t.Fatalf("refused handshakes left %d answers remembered, want 0", n)
	}
	for i := range maxCachedPrincipals + 100 {
		if err := c.Check(recheck, cert, fmt.Sprintf("u%d", i), client, now, time.Minute); err != nil {
			t.Fatal(err)
		}
		c.mu.Lock()
		n = len(c.principals)
		c.mu.Unlock()
		if n > maxCachedPrincipals {
			t.Fatalf("%d answers remembered, more than %d", n, maxCachedPrincipals)
		}
	}
	if n != maxCachedPrincipals {
		t.Fatalf("%d answers remembered, want %d", n, maxCachedPrincipals)
	}
	// An answer too large to remember is asked each time.
	big := &fakeSource{list: []string{strings.Repeat("p", maxCachedAnswer), "staff"}}
	c = &Checker{CAs: []ssh.PublicKey{f.caPub}, Principals: []PrincipalSource{big}}
	for range 3 {
		if err := c.Check(recheck, cert, "alice", client, now, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if n := big.asked.Load(); n != 3 {
		t.Fatalf("a large answer was asked %d times in 3 re-checks, want 3 (not remembered)", n)
	}
}
