// SPDX-License-Identifier: Apache-2.0

package handshake

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"math"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth/internal/keys"
	"ubns.dev/netauth/internal/record"
	"ubns.dev/netauth/internal/testutil"
)

// coreClient drives a ServerCore directly, as a client whose framing is perfect: message 1
// is a fresh ephemeral key and encapsulation key, message 3 an authenticator made with any key, for any user, at
// any time.
type coreClient struct {
	t    *testing.T
	core *ServerCore
}

// begin runs message 1 of a full handshake and returns the core's answer.
func (c coreClient) begin() *BeginResponse {
	c.t.Helper()
	resp, err := c.core.Begin(&BeginRequest{Client: "192.0.2.7:4000", Mode: ModeFull, Noise: fullMessage1(c.t)})
	if err != nil {
		c.t.Fatalf("Begin: %v", err)
	}
	return resp
}

// auth sends message 3: an authenticator for user at time when, signed by signer over the
// statement for this handshake (or, with garbage, a well-formed SSHSIG from signer's key whose
// signature bytes are random).
func (c coreClient) auth(begin *BeginResponse, user string, signer ssh.Signer, when uint64, garbage bool) (*Accepted, error) {
	c.t.Helper()
	var sshsig []byte
	if when <= math.MaxInt64 {
		st := &keys.Statement{HandshakeHash: begin.HandshakeHash, HostKey: c.core.HostKey(), Service: c.core.cfg.Service,
			User: user, Time: time.Unix(int64(when), 0)}
		if stmt, err := st.Marshal(); err == nil {
			if sshsig, err = keys.Sign(signer, Namespace, stmt); err != nil {
				c.t.Fatal(err)
			}
		}
	}
	if sshsig == nil || garbage {
		junk := make([]byte, ed25519.SignatureSize)
		rand.Read(junk)
		sshsig = keys.Assemble(signer.PublicKey(), Namespace, &ssh.Signature{Format: ssh.KeyAlgoED25519, Blob: junk})
	}
	return c.core.Commit(&CommitRequest{Session: begin.Session, User: user, Time: when, SSHSIG: sshsig}, &record.State{})
}

func wantCode(t *testing.T, what string, err error, code Code) {
	t.Helper()
	var r *Refusal
	if !errors.As(err, &r) || r.Code != code {
		t.Fatalf("%s: %v, want a refusal with code %v", what, err, code)
	}
}

// TestUnauthorizedKeysLeaveNothing floods a server with authenticators that verify but whose
// keys are not the claimed user's (a key of the attacker's own, for a real user and for users
// who do not exist). None may enter the replay cache, so the cache cannot be filled to lock
// out every full handshake: afterwards a legitimate handshake succeeds and the cache holds
// exactly its entry.
func TestUnauthorizedKeysLeaveNothing(t *testing.T) {
	e := newEnv(t)
	const capacity = 16
	e.srv.Replay = NewReplayCache(capacity)
	core, err := NewServerCore(e.srv, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	c := coreClient{t, core}
	attacker := testutil.Signer(t)
	const flood = 2000
	for i := range flood {
		user := "alice"
		if i%2 == 1 {
			user = fmt.Sprintf("nosuchuser%d", i)
		}
		_, err := c.auth(c.begin(), user, attacker, uint64(time.Now().Unix()), false)
		wantCode(t, fmt.Sprintf("handshake %d (%s)", i, user), err, CodeNotAuthorized)
	}
	if n := e.srv.Replay.Len(); n != 0 {
		t.Fatalf("after %d unauthorized handshakes the replay cache holds %d entries, want 0", flood, n)
	}
	core.mu.Lock()
	pending := len(core.sessions)
	core.mu.Unlock()
	if pending != 0 {
		t.Fatalf("%d refused handshakes are still pending", pending)
	}
	alice := e.cli.Signer.(keySigner).s
	if _, err := c.auth(c.begin(), "alice", alice, uint64(time.Now().Unix()), false); err != nil {
		t.Fatalf("legitimate handshake after the flood: %v", err)
	}
	if n := e.srv.Replay.Len(); n != 1 {
		t.Fatalf("replay cache holds %d entries after one accepted handshake, want 1", n)
	}
}

// TestUnauthorizedKeyIsNotVerified sends an authenticator from a key that is not the user's,
// with random signature bytes: it is refused as not authorized, which shows the server looked
// the key up before spending a verification on it (a verification would have failed first,
// with auth_failed). The same garbage from the user's own key fails verification.
func TestUnauthorizedKeyIsNotVerified(t *testing.T) {
	e := newEnv(t)
	core, err := NewServerCore(e.srv, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	c := coreClient{t, core}
	now := uint64(time.Now().Unix())
	_, err = c.auth(c.begin(), "alice", testutil.Signer(t), now, true)
	wantCode(t, "garbage from an unauthorized key", err, CodeNotAuthorized)
	_, err = c.auth(c.begin(), "alice", e.cli.Signer.(keySigner).s, now, true)
	wantCode(t, "garbage from alice's key", err, CodeAuthFailed)
	if n := e.srv.Replay.Len(); n != 0 {
		t.Fatalf("replay cache holds %d entries, want 0", n)
	}
}

// TestAuthenticatorTimeBounds checks the authenticator time against the server's clock at the
// edges: the skew window is inclusive, and times far in the future (where a difference of
// times overflows time.Duration) or past 2^62 are refused, never accepted.
func TestAuthenticatorTimeBounds(t *testing.T) {
	serverNow := time.Unix(1_800_000_000, 0)
	const skew = 30 * time.Second
	now, s := uint64(serverNow.Unix()), uint64(skew/time.Second)
	cases := []struct {
		name string
		time uint64
		code Code // CodeOK: accepted
	}{
		{"now", now, CodeOK},
		{"now+skew", now + s, CodeOK},
		{"now-skew", now - s, CodeOK},
		{"now+skew-1s", now + s - 1, CodeOK},
		{"now-skew+1s", now - s + 1, CodeOK},
		{"now+skew+1s", now + s + 1, CodeClockSkew},
		{"now-skew-1s", now - s - 1, CodeClockSkew},
		{"0", 0, CodeClockSkew},
		{"2^62", 1 << 62, CodeClockSkew},
		{"2^62+1", 1<<62 + 1, CodeProtocolError},
		{"2^63-1", math.MaxInt64, CodeProtocolError},
		{"negative (2^64-1)", math.MaxUint64, CodeProtocolError},
		{"most negative (2^63)", 1 << 63, CodeProtocolError},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.srv.MaxClockSkew = skew
			e.srv.Now = func() time.Time { return serverNow }
			core, err := NewServerCore(e.srv, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			c := coreClient{t, core}
			_, err = c.auth(c.begin(), "alice", e.cli.Signer.(keySigner).s, tc.time, false)
			if tc.code == CodeOK {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			wantCode(t, tc.name, err, tc.code)
			if n := e.srv.Replay.Len(); n != 0 {
				t.Fatalf("a refused authenticator left %d replay-cache entries", n)
			}
		})
	}
}

// TestReplayEntryLifetimeCapped checks that no replay-cache entry outlives two skews from
// now, whatever time the authenticator claims.
func TestReplayEntryLifetimeCapped(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	const skew = time.Minute
	for _, t0 := range []time.Time{now, now.Add(skew), now.Add(-skew), now.Add(100 * skew), time.Unix(1<<62, 0), time.Unix(math.MaxInt64, 0)} {
		forget := replayForget(t0, now, skew)
		if forget.After(now.Add(2 * skew)) {
			t.Errorf("authenticator time %d: forgotten at %d, after now+2*skew %d", t0.Unix(), forget.Unix(), now.Add(2*skew).Unix())
		}
		if want := t0.Add(skew); !want.After(now.Add(2*skew)) && !forget.Equal(want) {
			t.Errorf("authenticator time %d: forgotten at %d, want its time + skew %d", t0.Unix(), forget.Unix(), want.Unix())
		}
	}
}

// TestOneUserCannotLockOutOthers has one user with an authorized key make as many full
// handshakes as the replay cache holds, each with the longest-lived time the skew allows: the
// user's entries stay within their share, and another user still gets in.
func TestOneUserCannotLockOutOthers(t *testing.T) {
	e := newEnv(t)
	const capacity = 256
	e.srv.Replay = NewReplayCache(capacity)
	mallory := testutil.Signer(t)
	e.allowed["mallory"] = mallory.PublicKey()
	core, err := NewServerCore(e.srv, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	c := coreClient{t, core}
	for i := range capacity + 10 {
		if _, err := c.auth(c.begin(), "mallory", mallory, uint64(time.Now().Add(DefaultMaxClockSkew).Unix()), false); err != nil {
			t.Fatalf("mallory's handshake %d: %v", i, err)
		}
	}
	if n, share := e.srv.Replay.Len(), capacity/replayUserShare; n != share {
		t.Fatalf("one user holds %d replay-cache entries, want their share %d", n, share)
	}
	if _, err := c.auth(c.begin(), "alice", e.cli.Signer.(keySigner).s, uint64(time.Now().Unix()), false); err != nil {
		t.Fatalf("alice locked out by another user's handshakes: %v", err)
	}
}

// TestReplayCacheShares checks the cache's bookkeeping directly: a replay within a user's
// share is refused, a user at their share forgets their own oldest entry, and the whole cache
// fails closed only when every share is in use by live entries.
func TestReplayCacheShares(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	live := now.Add(time.Minute)
	c := NewReplayCache(4 * replayUserShare) // a share of 4
	sig := func(user string, i int) []byte { return []byte(fmt.Sprintf("%s-%d", user, i)) }
	for i := range 4 {
		if err := c.Add("u", sig("u", i), live, now); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Add("u", sig("u", 3), live, now); !errors.Is(err, ErrReplayed) {
		t.Fatalf("replay within the share: %v, want ErrReplayed", err)
	}
	if err := c.Add("u", sig("u", 4), live, now); err != nil {
		t.Fatalf("a fifth entry for a user with a share of 4: %v", err)
	}
	if err := c.Add("u", sig("u", 0), live, now); err != nil {
		t.Fatalf("the user's oldest entry was not the one forgotten: %v", err)
	}
	if err := c.Add("u", sig("u", 4), live, now); !errors.Is(err, ErrReplayed) {
		t.Fatalf("a recent entry was forgotten: %v", err)
	}
	// Fill every other share with live entries: then the cache refuses.
	for u := range replayUserShare - 1 {
		for i := range 4 {
			if err := c.Add(fmt.Sprint("user", u), sig(fmt.Sprint("user", u), i), live, now); err != nil {
				t.Fatalf("user %d entry %d: %v", u, i, err)
			}
		}
	}
	if err := c.Add("late", sig("late", 0), live, now); !errors.Is(err, ErrReplayCacheFull) {
		t.Fatalf("cache full of live entries: %v, want ErrReplayCacheFull", err)
	}
	// Once they expire, there is room again and the swept users are gone.
	if err := c.Add("late", sig("late", 0), live, live); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
	if n := c.Len(); n != 1 {
		t.Fatalf("%d entries after a sweep, want 1", n)
	}
}
