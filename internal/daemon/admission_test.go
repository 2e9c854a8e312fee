// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"math"
	"net"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth/internal/handshake"
	"ubns.dev/netauth/internal/keys"
	"ubns.dev/netauth/internal/record"
	"ubns.dev/netauth/internal/x25519"
)

// rawSigner signs authenticators with an in-memory key.
type rawSigner struct{ s ssh.Signer }

func (r rawSigner) PublicKey() ssh.PublicKey { return r.s.PublicKey() }
func (r rawSigner) SignStatement(stmt []byte) ([]byte, error) {
	return keys.Sign(r.s, handshake.Namespace, stmt)
}

// rawHandshake runs the client side of a full handshake against netauthd's service with the
// internal client, whose clock the test sets, and returns the verdict's error.
func (tb *testbed) rawHandshake(t *testing.T, service, user string, signer ssh.Signer, now time.Time) error {
	t.Helper()
	nc, err := net.Dial("tcp", tb.addr(service))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	host := tb.d.HostKey()
	cfg := &handshake.ClientConfig{
		User:   user,
		Signer: rawSigner{signer},
		CheckHostKey: func(k ssh.PublicKey, _ string) error {
			if string(k.Marshal()) != string(host.Marshal()) {
				return errors.New("wrong host key")
			}
			return nil
		},
		Now:       func() time.Time { return now },
		Ephemeral: func() (x25519.KeyPair, error) { return x25519.Generate(rand.Reader) },
	}
	c, err := handshake.RunClient(record.NewConn(nc), cfg)
	if err != nil {
		return err
	}
	if c.Pending() {
		_, err = c.ReadVerdict(time.Now())
	}
	return err
}

func wantCode(t *testing.T, what string, err error, code handshake.Code) {
	t.Helper()
	var re *handshake.RefusedError
	if !errors.As(err, &re) || re.Code != code {
		t.Fatalf("%s: %v, want a refusal with code %v", what, err, code)
	}
}

// TestUnauthorizedKeysLeaveNothingInNetauthd floods netauthd (through its unprivileged
// acceptor) with authenticators that verify but come from keys that are not the claimed
// user's: for a real user and for users who do not exist. Each is refused as not authorized,
// none enters the replay cache, and a legitimate handshake then succeeds.
func TestUnauthorizedKeysLeaveNothingInNetauthd(t *testing.T) {
	tb := newTestbed(t, whoamiService)
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	attacker, _ := ssh.NewSignerFromKey(priv)
	const flood = 300
	for i := range flood {
		user := "netauth-alice"
		if i%2 == 1 {
			user = fmt.Sprintf("nosuch%d", i)
		}
		err := tb.rawHandshake(t, "whoami", user, attacker, time.Now())
		wantCode(t, fmt.Sprintf("handshake %d as %s", i, user), err, handshake.CodeNotAuthorized)
	}
	if n := tb.d.replay.Len(); n != 0 {
		t.Fatalf("after %d unauthorized handshakes the replay cache holds %d entries, want 0", flood, n)
	}
	if err := tb.rawHandshake(t, "whoami", "netauth-alice", tb.users["netauth-alice"], time.Now()); err != nil {
		t.Fatalf("legitimate handshake after the flood: %v", err)
	}
	if n := tb.d.replay.Len(); n != 1 {
		t.Fatalf("replay cache holds %d entries after one accepted handshake, want 1", n)
	}
}

// TestAuthenticatorTimeBoundsInNetauthd checks netauthd's clock-skew decision at its edges,
// through the acceptor and the monitor. A negative time cannot be signed by the client (a
// statement's time starts at 1970); the wire field is unsigned, so it arrives as a value above
// 2^62, refused like 2^63-1 here (and each such value is checked on the core in
// internal/handshake).
func TestAuthenticatorTimeBoundsInNetauthd(t *testing.T) {
	tb := newTestbed(t, whoamiService)
	skew := tb.cfg.MaxClockSkew
	if skew <= 0 {
		skew = handshake.DefaultMaxClockSkew
	}
	alice := tb.users["netauth-alice"]
	// A margin of one second on each side of the window absorbs the time between the
	// client's clock reading and the server's.
	for _, tc := range []struct {
		name string
		at   func() time.Time
		code handshake.Code // CodeOK: accepted
	}{
		{"now", time.Now, handshake.CodeOK},
		{"now+skew-1s", func() time.Time { return time.Now().Add(skew - time.Second) }, handshake.CodeOK},
		{"now-skew+1s", func() time.Time { return time.Now().Add(-skew + time.Second) }, handshake.CodeOK},
		{"now+skew+1s", func() time.Time { return time.Now().Add(skew + 1100*time.Millisecond) }, handshake.CodeClockSkew},
		{"now-skew-1s", func() time.Time { return time.Now().Add(-skew - 1100*time.Millisecond) }, handshake.CodeClockSkew},
		{"0", func() time.Time { return time.Unix(0, 0) }, handshake.CodeClockSkew},
		{"2^62", func() time.Time { return time.Unix(1<<62, 0) }, handshake.CodeClockSkew},
		{"2^63-1", func() time.Time { return time.Unix(math.MaxInt64, 0) }, handshake.CodeProtocolError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := tb.d.replay.Len()
			err := tb.rawHandshake(t, "whoami", "netauth-alice", alice, tc.at())
			if tc.code == handshake.CodeOK {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			wantCode(t, tc.name, err, tc.code)
			if n := tb.d.replay.Len(); n != before {
				t.Fatalf("a refused authenticator changed the replay cache from %d to %d entries", before, n)
			}
		})
	}
}
