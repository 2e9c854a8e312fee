// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"ubns.dev/netauth"
	"ubns.dev/netauth/internal/keys"
)

// whoamiSession is a live connection to the whoami service, asked again and again.
type whoamiSession struct {
	c *netauth.Conn
	r *bufio.Reader
}

func dialWhoami(t *testing.T, tb *testbed, cfg *netauth.Config) *whoamiSession {
	t.Helper()
	c, err := netauth.Dial("tcp", tb.addr("whoami"), cfg)
	if err != nil {
		t.Fatalf("%s: %v", cfg.User, err)
	}
	t.Cleanup(func() { c.Close() })
	return &whoamiSession{c: c, r: bufio.NewReader(c)}
}

// ask returns the worker's answer, as fields.
func (s *whoamiSession) ask() (map[string]string, error) {
	_ = s.c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintln(s.c, "?"); err != nil {
		return nil, err
	}
	line, err := s.r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, f := range strings.Fields(line) {
		k, v, _ := strings.Cut(f, "=")
		out[k] = v
	}
	return out, nil
}

// TestKeyMovedBetweenUsers: alice and bob share a key. Each one's connections and tickets are
// their own: the worker (and through it the application) sees the user who authenticated,
// and a resumption the user its ticket names. Then the key moves away from alice (bob keeps
// it): the revocation check stops alice's worker and closes her connection, her ticket no
// longer resumes (nor resumes as bob: it falls back to a full handshake that refuses her),
// and bob, with the same key, keeps his connection and resumes his ticket.
func TestKeyMovedBetweenUsers(t *testing.T) {
	tb := newTestbed(t, whoamiService)
	shared := tb.users["netauth-alice"]
	tb.setKey("netauth-bob", shared.PublicKey())
	fp := keys.Fingerprint(shared.PublicKey())
	aliceCfg := tb.config("netauth-alice")
	bobCfg := tb.config("netauth-bob")
	bobCfg.Signer = shared

	want := func(who string, got map[string]string, err error, user string, resumed bool) {
		t.Helper()
		if err != nil || got["user"] != user || got["key"] != fp || got["resumed"] != fmt.Sprint(resumed) {
			t.Fatalf("%s: %v %v; want user %s, key %s, resumed %v", who, got, err, user, fp, resumed)
		}
	}
	alice := dialWhoami(t, tb, aliceCfg)
	got, err := alice.ask()
	want("alice's connection", got, err, "netauth-alice", false)
	bob := dialWhoami(t, tb, bobCfg)
	got, err = bob.ask()
	want("bob's connection", got, err, "netauth-bob", false)
	got, err = tb.whoami("whoami", "netauth-alice", aliceCfg)
	want("alice's resumption", got, err, "netauth-alice", true)
	got, err = tb.whoami("whoami", "netauth-bob", bobCfg)
	want("bob's resumption", got, err, "netauth-bob", true)

	// The key moves: alice's file goes, bob's keeps it.
	tb.setKey("netauth-alice", nil)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := alice.ask(); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatal("alice's connection still open 5s after her key moved")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("alice's connection still served 5s after her key moved")
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second) // several more revocation checks (every 200ms)
	got, err = bob.ask()
	want("bob's connection after the key left alice", got, err, "netauth-bob", false)

	_, err = tb.whoami("whoami", "netauth-alice", aliceCfg)
	var re *netauth.RefusedError
	if !errors.As(err, &re) || re.Code != netauth.CodeNotAuthorized {
		t.Fatalf("alice's ticket after her key moved: %v, want not authorized", err)
	}
	got, err = tb.whoami("whoami", "netauth-bob", bobCfg)
	want("bob's resumption after the key left alice", got, err, "netauth-bob", true)
}
