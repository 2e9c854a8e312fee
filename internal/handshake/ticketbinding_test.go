// SPDX-License-Identifier: Apache-2.0

package handshake

import (
	"context"
	"crypto/mlkem"
	"crypto/sha256"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth/internal/identity"
	"ubns.dev/netauth/internal/keys"
	"ubns.dev/netauth/internal/noise"
	"ubns.dev/netauth/internal/record"
)

// keyTable is a key source for these tests: each user's keys, a count of lookups, and a
// failure (a directory gone down) from lookup number failFrom on (0: never).
type keyTable struct {
	mu       sync.Mutex
	keys     map[string][]ssh.PublicKey
	lookups  int
	failFrom int
}

// errDirectory is the key source's failure; its text must never reach a client.
var errDirectory = errors.New("ldap: dial tcp 10.0.0.5:636: connection refused")

func (k *keyTable) Keys(_ context.Context, user string) ([]ssh.PublicKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.lookups++
	if k.failFrom > 0 && k.lookups >= k.failFrom {
		return nil, errDirectory
	}
	return k.keys[user], nil
}

func (k *keyTable) set(user string, ks ...ssh.PublicKey) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.keys[user] = ks
}

func (k *keyTable) count() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.lookups
}

// newKeyTableEnv is newEnv whose server finds keys with FindKey in a keyTable, as the
// library and netauthd do; Authorize admits whoever Eligible found, and counts its calls.
func newKeyTableEnv(t *testing.T) (*env, *keyTable, *int) {
	e := newEnv(t)
	src := &keyTable{keys: map[string][]ssh.PublicKey{"alice": {e.cli.Signer.PublicKey()}}}
	e.srv.Eligible = func(r *Result) error { return FindKey(context.Background(), src, r) }
	var mu sync.Mutex
	authorized := new(int)
	e.srv.Authorize = func(*Result) (any, error) {
		mu.Lock()
		defer mu.Unlock()
		*authorized++
		return nil, nil
	}
	return e, src, authorized
}

// ticketFor runs a full handshake for e's client and returns its session (ticket and secret).
func ticketFor(t *testing.T, e *env) *Session {
	t.Helper()
	e.cli.Session = nil
	o := e.run(t)
	if o.cliErr != nil || o.srvErr != nil {
		t.Fatalf("full handshake: client %v, server %v", o.cliErr, o.srvErr)
	}
	sess, err := o.cli.ReadVerdict(time.Now())
	if err != nil || sess == nil {
		t.Fatalf("verdict: %v, session %v", err, sess)
	}
	return sess
}

// resumeHello is message 1 of a resumption with ticket (version 3: e || ek || NNpsk0's tag),
// its NNpsk0 message made with psk.
func resumeHello(t *testing.T, ticket, psk []byte) *BeginRequest {
	t.Helper()
	hello := &clientHello{Version: Version, Mode: ModeResume, Ticket: ticket}
	pro := prologue(hello, NoiseMessage1Resume)
	eph, err := randomEphemeral()
	if err != nil {
		t.Fatal(err)
	}
	defer eph.Zero()
	dk, err := mlkem.GenerateKey768()
	if err != nil {
		t.Fatal(err)
	}
	hfs, err := noise.NewInitiatorHFS(pro, &eph, dk)
	if err != nil {
		t.Fatal(err)
	}
	msg1, err := hfs.WriteMessage1(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	hs, err := noise.NewInitiator(noise.NNpsk0, pro, &eph, psk)
	if err != nil {
		t.Fatal(err)
	}
	m1, err := hs.WriteMessage1(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	msg1 = append(msg1, m1[noise.DHLen:]...)
	return &BeginRequest{Client: "192.0.2.1:1", Mode: ModeResume, Ticket: ticket, Noise: msg1}
}

// TestTicketStaysWithItsUser: a ticket names its user and the hash of the key, sealed by the
// server; the key is looked for among that user's keys only. Alice and bob share a key: each
// one's ticket resumes as its own user, whatever user the client's cached session claims;
// once the key moves away from alice (bob keeps it), alice's ticket finds no key and falls
// back to a full handshake that refuses her, and bob's still resumes as bob. No ticket ever
// resolves to another user, nor to another key.
func TestTicketStaysWithItsUser(t *testing.T) {
	e, src, _ := newKeyTableEnv(t)
	shared := e.cli.Signer.PublicKey()
	other := newSigner(t).PublicKey()
	src.set("alice", other, shared)
	src.set("bob", shared)

	e.cli.User = "alice"
	alice := ticketFor(t, e)
	e.cli.User = "bob"
	bob := ticketFor(t, e)

	resume := func(sess *Session, claim string) *outcome {
		t.Helper()
		s := *sess
		s.User = claim // the client's own record of the session: it sends none of it
		e.cli.Session, e.cli.User = &s, claim
		return e.run(t)
	}
	for _, tc := range []struct {
		sess        *Session
		claim, want string
	}{{alice, "alice", "alice"}, {alice, "bob", "alice"}, {bob, "bob", "bob"}, {bob, "alice", "bob"}} {
		o := resume(tc.sess, tc.claim)
		if o.srvErr != nil || o.srv == nil || !o.srv.Resumed {
			t.Fatalf("%s's ticket, claimed for %s: server %v, result %+v; want resumed", tc.want, tc.claim, o.srvErr, o.srv)
		}
		if o.srv.User != tc.want || o.srv.Key == nil || identity.KeyHash(o.srv.Key) != identity.KeyHash(shared) ||
			o.srv.KeyFingerprint != ssh.FingerprintSHA256(shared) {
			t.Fatalf("%s's ticket, claimed for %s: resumed as %q with key %s; want %q with the shared key",
				tc.want, tc.claim, o.srv.User, o.srv.KeyFingerprint, tc.want)
		}
	}

	// The key moves: alice no longer has it, bob does.
	src.set("alice", other)
	o := resume(alice, "alice")
	if o.cli == nil || o.cli.Result.Resumed {
		t.Fatal("alice's ticket resumed after her key moved to bob")
	}
	var r *Refusal
	if !errors.As(o.srvErr, &r) || r.Code != CodeNotAuthorized || o.srv != nil {
		t.Fatalf("alice's fallback after her key moved: server %v, result %+v; want not_authorized", o.srvErr, o.srv)
	}
	o = resume(bob, "bob")
	if o.srvErr != nil || o.srv == nil || !o.srv.Resumed || o.srv.User != "bob" {
		t.Fatalf("bob's ticket after alice lost the shared key: server %v, result %+v; want resumed as bob", o.srvErr, o.srv)
	}
}

// TestResumeHelloWithoutSecretLooksUpNothing: the ticket travels in clear, so anyone may
// present a genuine one, but only its holder can make the NNpsk0 message 1 that comes with it.
// A ClientHello with a genuine ticket and a message made without its secret, or with a
// tampered ticket, costs no key lookup: the server looks the key up only once message 1
// verified, and declines the ticket (a full handshake follows, which looks up nothing before
// the client's authenticator).
func TestResumeHelloWithoutSecretLooksUpNothing(t *testing.T) {
	e, src, _ := newKeyTableEnv(t)
	sess := ticketFor(t, e)
	core, err := NewServerCore(e.srv, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	wrong := append([]byte(nil), sess.Secret...)
	wrong[0] ^= 1
	tampered := append([]byte(nil), sess.Ticket...)
	tampered[len(tampered)-1] ^= 1
	for _, tc := range []struct {
		name        string
		ticket, psk []byte
		resumed     bool
		lookups     int
	}{
		{"a message 1 made without the ticket's secret", sess.Ticket, wrong, false, 0},
		{"a tampered ticket", tampered, sess.Secret, false, 0},
		{"the ticket's holder", sess.Ticket, sess.Secret, true, 1},
	} {
		before := src.count()
		resp, err := core.Begin(resumeHello(t, tc.ticket, tc.psk))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		core.Abort(resp.Session)
		if resp.Resumed != tc.resumed || src.count()-before != tc.lookups {
			t.Fatalf("%s: resumed %v after %d key lookups; want resumed %v after %d", tc.name, resp.Resumed,
				src.count()-before, tc.resumed, tc.lookups)
		}
	}
}

// TestResumeKeySourceFailure: a key source that fails during a resumption neither admits the
// client nor tells it why. Failing at the ClientHello, the ticket is declined and the full
// handshake that follows is refused internal_error; failing at the binder's re-check, the
// resumption is refused internal_error before Authorize runs. The client gets the code only;
// the server's refusal carries the source's error, for its log.
func TestResumeKeySourceFailure(t *testing.T) {
	for _, tc := range []struct {
		name     string
		failAt   int // the lookup of the resumption attempt that fails first
		resumed  bool
		wantMode string
	}{{"at the ClientHello", 1, false, "full"}, {"at the binder", 2, true, "resumed"}} {
		t.Run(tc.name, func(t *testing.T) {
			e, src, authorized := newKeyTableEnv(t)
			var refusals []*Refusal
			e.srv.Refused = func(r *Refusal) { refusals = append(refusals, r) }
			e.cli.Session = ticketFor(t, e)
			src.mu.Lock()
			src.failFrom = src.lookups + tc.failAt
			src.mu.Unlock()
			admitted := *authorized
			o := e.run(t)
			if o.cliErr != nil {
				t.Fatalf("client: %v", o.cliErr)
			}
			if o.cli.Result.Resumed != tc.resumed {
				t.Fatalf("resumed %v, want %v", o.cli.Result.Resumed, tc.resumed)
			}
			var r *Refusal
			if !errors.As(o.srvErr, &r) || r.Code != CodeInternalError || !errors.Is(r, errDirectory) || r.Resumed != tc.resumed {
				t.Fatalf("server: %v, want an internal_error refusal (resumed %v) wrapping the source's error", o.srvErr, tc.resumed)
			}
			if len(refusals) != 1 || refusals[0] != r {
				t.Fatalf("%d refusals reported; want exactly the one returned", len(refusals))
			}
			if *authorized != admitted {
				t.Fatal("Authorize ran although the key could not be looked up")
			}
			_, err := o.cli.ReadVerdict(time.Now())
			var re *RefusedError
			if !errors.As(err, &re) || re.Code != CodeInternalError {
				t.Fatalf("client verdict: %v, want internal_error", err)
			}
			if strings.Contains(err.Error(), "ldap") || strings.Contains(err.Error(), "10.0.0.5") {
				t.Fatalf("client error %q discloses the key source's error", err)
			}
		})
	}
}

// TestResumptionSessionTakesNoAuthenticator plays a compromised acceptor that holds a user
// key of its own (mallory's): it replays alice's resumption ClientHello (ticket and message 1
// travel in clear), so that the core's session holds alice's identity from the ticket, then
// commits that session as a full handshake with mallory's genuine authenticator over the very
// handshake hash Begin returned. The core refuses: a resumption's session takes only its
// binder, and the identity a ticket names is never paired with another user's authenticator.
// The session is spent, and neither a full nor a resumed Commit of it is admitted again.
func TestResumptionSessionTakesNoAuthenticator(t *testing.T) {
	e, src, authorized := newKeyTableEnv(t)
	mallory := newSigner(t)
	src.set("mallory", mallory.PublicKey())
	sess := ticketFor(t, e)
	admitted := *authorized
	core, err := NewServerCore(e.srv, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := core.Begin(resumeHello(t, sess.Ticket, sess.Secret))
	if err != nil || !resp.Resumed || resp.User != "alice" {
		t.Fatalf("replayed resumption hello: %+v, %v", resp, err)
	}
	now := time.Now()
	st := &keys.Statement{HandshakeHash: resp.HandshakeHash, HostKey: core.HostKey(), Service: e.srv.Service, User: "mallory", Time: now}
	stmt, err := st.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	sig, err := mallory.SignStatement(stmt)
	if err != nil {
		t.Fatal(err)
	}
	state := &record.State{SendKey: resp.Send, RecvKey: resp.Recv}
	_, err = core.Commit(&CommitRequest{Session: resp.Session, User: "mallory", Time: uint64(now.Unix()), SSHSIG: sig}, state)
	var r *Refusal
	if !errors.As(err, &r) || r.Code != CodeProtocolError {
		t.Fatalf("a resumption's session committed with an authenticator: %v, want protocol_error", err)
	}
	if _, err := core.Commit(&CommitRequest{Session: resp.Session, Resumed: true, Binder: resumptionBinder(sess.Secret, resp.HandshakeHash)}, state); err == nil {
		t.Fatal("the session was admitted after a refused Commit")
	}
	if *authorized != admitted {
		t.Fatal("Authorize ran for a resumption's session committed as a full handshake")
	}
}

// TestFindKeyOnlyAmongTheUsersKeys: FindKey, the key lookup of every Eligible, sets the
// user's own key whose hash is wanted (the source's key, with its type and fingerprint) and
// nothing else: a key of another user, or a lookup that fails, leaves the result without a
// key, refused not_authorized or internal_error; the refusal's reason names neither the
// source's error (which it wraps, for the log) nor anything but the hash and the user.
func TestFindKeyOnlyAmongTheUsersKeys(t *testing.T) {
	k1, k2, k3 := newSigner(t).PublicKey(), newSigner(t).PublicKey(), newSigner(t).PublicKey()
	src := &keyTable{keys: map[string][]ssh.PublicKey{"alice": {k1, k2}, "bob": {k3}}}
	find := func(user string, k ssh.PublicKey) (*Result, error) {
		r := &Result{KeyHash: sha256.Sum256(k.Marshal())}
		r.User = user
		return r, FindKey(context.Background(), src, r)
	}
	for _, k := range []ssh.PublicKey{k1, k2} {
		r, err := find("alice", k)
		if err != nil || r.Key == nil || identity.KeyHash(r.Key) != identity.KeyHash(k) ||
			r.KeyFingerprint != ssh.FingerprintSHA256(k) || r.KeyType != k.Type() {
			t.Fatalf("alice's key %s: %v, found %+v", ssh.FingerprintSHA256(k), err, r.Identity)
		}
	}
	for _, tc := range []struct {
		user string
		key  ssh.PublicKey
	}{{"alice", k3}, {"bob", k1}, {"carol", k1}} {
		r, err := find(tc.user, tc.key)
		var ref *Refusal
		if !errors.As(err, &ref) || ref.Code != CodeNotAuthorized || r.Key != nil || r.KeyFingerprint != "" {
			t.Fatalf("%s with a key not theirs: %v, key %v; want not_authorized and no key", tc.user, err, r.Key)
		}
		if !strings.Contains(ref.Reason, ssh.FingerprintSHA256(tc.key)) || !strings.Contains(ref.Reason, `"`+tc.user+`"`) {
			t.Fatalf("reason %q does not name the key's fingerprint and the user", ref.Reason)
		}
	}
	src.failFrom = src.lookups + 1
	r, err := find("alice", k1)
	var ref *Refusal
	if !errors.As(err, &ref) || ref.Code != CodeInternalError || !errors.Is(err, errDirectory) || r.Key != nil {
		t.Fatalf("failing source: %v, key %v; want internal_error wrapping the source's error, no key", err, r.Key)
	}
	if strings.Contains(ref.Reason, "ldap") {
		t.Fatalf("reason %q quotes the source's error", ref.Reason)
	}
}

// TestEligibleCannotSubstituteTheKey: an Eligible that approves the user but sets another of
// their keys than the one wanted (a server bug: say it returns the user's first key) never
// makes a result carry a key that was not the one verified: the core refuses the full
// handshake internal_error before Authorize, and declines the ticket (its full handshake is
// refused the same way). Whatever reaches the audit record, the worker or the application is
// the key the signature or the ticket named.
func TestEligibleCannotSubstituteTheKey(t *testing.T) {
	e, src, authorized := newKeyTableEnv(t)
	signed := e.cli.Signer.PublicKey()
	first := newSigner(t).PublicKey()
	src.set("alice", first, signed)
	sess := ticketFor(t, e)
	admitted := *authorized
	e.srv.Eligible = func(r *Result) error {
		ks, _ := src.Keys(context.Background(), r.User)
		if len(ks) == 0 {
			return errors.New("no keys")
		}
		r.SetKey(ks[0])
		return nil
	}
	for _, s := range []*Session{nil, sess} {
		e.cli.Session = s
		o := e.run(t)
		if o.cliErr != nil {
			t.Fatalf("client: %v", o.cliErr)
		}
		var r *Refusal
		if o.srv != nil {
			t.Fatalf("ticket offered %v: accepted %s with key %s; want refused", s != nil, o.srv.User, o.srv.KeyFingerprint)
		}
		if o.cli.Result.Resumed || !errors.As(o.srvErr, &r) || r.Code != CodeInternalError {
			t.Fatalf("ticket offered %v: resumed %v, server %v; want a full handshake refused internal_error",
				s != nil, o.cli.Result.Resumed, o.srvErr)
		}
	}
	if *authorized != admitted {
		t.Fatal("Authorize ran with a key other than the one verified")
	}
}
