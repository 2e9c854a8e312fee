// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"ubns.dev/netauth/internal/testutil"

	"golang.org/x/crypto/ssh"
	sshagent "golang.org/x/crypto/ssh/agent"

	"ubns.dev/netauth/internal/keys"
)

// fakeClock is a settable clock for Options.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// newEd25519 returns a fresh Ed25519 key to add to an agent and its public key.
func newEd25519(t testing.TB) (sshagent.AddedKey, ssh.PublicKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return sshagent.AddedKey{PrivateKey: priv, Comment: "test"}, sshPub
}

// newHostKey returns a fresh Ed25519 host public key.
func newHostKey(t testing.TB) ssh.PublicKey {
	t.Helper()
	_, pub := newEd25519(t)
	return pub
}

// statementFor returns an encoded authenticator statement for host.
func statementFor(t testing.TB, host ssh.PublicKey) []byte {
	t.Helper()
	st := keys.Statement{
		HandshakeHash: bytes.Repeat([]byte{0x5a}, keys.HandshakeHashSize),
		HostKey:       host,
		Service:       "imap",
		User:          "alice",
		Time:          time.Unix(1790000000, 0),
	}
	b, err := st.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// serve serves a on a fresh socket until the test ends and returns the
// socket path.
func serve(t *testing.T, a *Agent) string {
	t.Helper()
	ln, path, err := Listen(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after cancel")
		}
	})
	return path
}

// dial connects a client to the agent at path for the rest of the test.
func dial(t *testing.T, path string) sshagent.ExtendedAgent {
	t.Helper()
	c, closer, err := Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closer.Close() })
	return c
}

func TestListen(t *testing.T) {
	dir := t.TempDir()
	ln, path, err := Listen(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if got, want := filepath.Base(path), "agent."+strconv.Itoa(os.Getpid()); got != want {
		t.Errorf("socket name = %q, want %q", got, want)
	}
	private := filepath.Dir(path)
	if filepath.Dir(private) != dir || !strings.HasPrefix(filepath.Base(private), "netauth-") {
		t.Errorf("socket directory = %q, want netauth-* in %q", private, dir)
	}
	fi, err := os.Stat(private)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("directory mode = %v, want 0700", fi.Mode().Perm())
	}
	fi, err = os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode = %v, want a socket with mode 0600", fi.Mode())
	}
	ln.Close()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket still exists after Close: %v", err)
	}
}

func TestStandardOperations(t *testing.T) {
	a := New(Options{})
	c := dial(t, serve(t, a))
	key, pub := newEd25519(t)
	if err := c.Add(key); err != nil {
		t.Fatal(err)
	}
	list, err := c.List()
	if err != nil || len(list) != 1 || !bytes.Equal(list[0].Blob, pub.Marshal()) {
		t.Fatalf("List = %v, %v; want the added key", list, err)
	}
	sig, err := c.Sign(pub, []byte("login data"))
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Verify([]byte("login data"), sig); err != nil {
		t.Errorf("signature does not verify: %v", err)
	}
	if err := c.Lock([]byte("pw")); err != nil {
		t.Fatal(err)
	}
	if list, err := c.List(); err != nil || len(list) != 0 {
		t.Errorf("List while locked = %v, %v; want empty", list, err)
	}
	if _, err := c.Sign(pub, []byte("x")); err == nil {
		t.Error("Sign while locked succeeded")
	}
	if err := c.Unlock([]byte("wrong")); err == nil {
		t.Error("Unlock with the wrong passphrase succeeded")
	}
	if err := c.Unlock([]byte("pw")); err != nil {
		t.Fatal(err)
	}
	if err := c.Remove(pub); err != nil {
		t.Fatal(err)
	}
	if list, _ := c.List(); len(list) != 0 {
		t.Errorf("List after Remove = %v, want empty", list)
	}
}

func TestUnknownExtensionIsUnsupported(t *testing.T) {
	c := dial(t, serve(t, New(Options{})))
	if _, err := c.Extension("other@example.com", nil); !errors.Is(err, sshagent.ErrExtensionUnsupported) {
		t.Errorf("unknown extension: err = %v, want ErrExtensionUnsupported", err)
	}
}

func TestTickets(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_000_000, 0)}
	a := New(Options{Now: clock.Now})
	c := dial(t, serve(t, a))
	now := clock.Now()

	if _, _, err := GetTicket(c, "a"); !errors.Is(err, ErrNoTicket) {
		t.Fatalf("GetTicket of a missing ticket: err = %v, want ErrNoTicket", err)
	}
	if err := PutTicket(c, "a", []byte("ticket-1"), now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	tk, exp, err := GetTicket(c, "a")
	if err != nil || string(tk) != "ticket-1" || !exp.Equal(now.Add(time.Hour)) {
		t.Fatalf("GetTicket = %q, %v, %v; want ticket-1 expiring in an hour", tk, exp, err)
	}
	// Overwrite.
	if err := PutTicket(c, "a", []byte("ticket-2"), now.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if tk, exp, err := GetTicket(c, "a"); err != nil || string(tk) != "ticket-2" || !exp.Equal(now.Add(2*time.Hour)) {
		t.Fatalf("GetTicket after overwrite = %q, %v, %v", tk, exp, err)
	}
	// Delete (twice: deleting a missing ticket is fine).
	for range 2 {
		if err := DeleteTicket(c, "a"); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := GetTicket(c, "a"); !errors.Is(err, ErrNoTicket) {
		t.Fatalf("GetTicket after delete: err = %v, want ErrNoTicket", err)
	}

	// Expiry: the ticket lives until, and not at, its expiry second.
	if err := PutTicket(c, "e", []byte("short"), now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	clock.Set(now.Add(time.Minute - time.Second))
	if _, _, err := GetTicket(c, "e"); err != nil {
		t.Fatalf("GetTicket just before expiry: %v", err)
	}
	a.mu.Lock()
	data := a.tickets["e"].data
	a.mu.Unlock()
	clock.Set(now.Add(time.Minute))
	if _, _, err := GetTicket(c, "e"); !errors.Is(err, ErrNoTicket) {
		t.Fatalf("GetTicket at expiry: err = %v, want ErrNoTicket", err)
	}
	if !bytes.Equal(data, make([]byte, len(data))) {
		t.Errorf("expired ticket bytes not zeroed: %q", data)
	}
	a.mu.Lock()
	n := len(a.tickets)
	a.mu.Unlock()
	if n != 0 {
		t.Errorf("%d tickets cached after expiry, want 0", n)
	}
	// A far-future expiry saturates instead of wrapping around.
	if _, err := a.Extension(ExtTicketPut, ssh.Marshal(ticketPutRequest{ID: "far", Ticket: []byte("x"), Expiry: 1<<64 - 1})); err != nil {
		t.Fatalf("put with expiry 2^64-1: %v", err)
	}
	if _, exp, err := GetTicket(c, "far"); err != nil || exp.Year() != 9999 {
		t.Errorf("GetTicket of a far-future ticket = %v, %v; want an expiry in 9999", exp, err)
	}
	// A ticket that has already expired is refused.
	if err := PutTicket(c, "old", []byte("x"), clock.Now()); err == nil {
		t.Error("PutTicket of an expired ticket succeeded")
	}
}

func TestTicketLimits(t *testing.T) {
	a := New(Options{})
	exp := uint64(time.Now().Add(time.Hour).Unix())
	put := func(id string, ticket []byte) error {
		_, err := a.Extension(ExtTicketPut, ssh.Marshal(ticketPutRequest{ID: id, Ticket: ticket, Expiry: exp}))
		return err
	}
	get := func(id string) error {
		_, err := a.Extension(ExtTicketGet, ssh.Marshal(ticketIDRequest{ID: id}))
		return err
	}
	long := strings.Repeat("i", MaxTicketIDSize)
	tests := []struct {
		name   string
		id     string
		ticket []byte
		ok     bool
	}{
		{"id at limit", long, []byte("t"), true},
		{"id over limit", long + "i", []byte("t"), false},
		{"empty id", "", []byte("t"), false},
		{"ticket at limit", "t", make([]byte, MaxTicketSize), true},
		{"ticket over limit", "t2", make([]byte, MaxTicketSize+1), false},
		{"empty ticket", "t3", nil, false},
	}
	for _, tt := range tests {
		if err := put(tt.id, tt.ticket); (err == nil) != tt.ok {
			t.Errorf("%s: put err = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
	if err := get(long); err != nil {
		t.Errorf("get with a %d-byte id: %v", len(long), err)
	}
	if err := get(long + "i"); err == nil {
		t.Errorf("get with a %d-byte id succeeded", len(long)+1)
	}
	// Malformed contents: truncated, trailing bytes, empty.
	good := ssh.Marshal(ticketPutRequest{ID: "x", Ticket: []byte("t"), Expiry: exp})
	for _, bad := range [][]byte{nil, good[:len(good)-1], append(bytes.Clone(good), 0)} {
		if _, err := a.Extension(ExtTicketPut, bad); err == nil {
			t.Errorf("put with contents %x succeeded", bad)
		}
	}
	// The client helpers check the limits before sending.
	if err := PutTicket(a, long+"i", []byte("t"), time.Now().Add(time.Hour)); err == nil {
		t.Error("PutTicket with a long id succeeded")
	}
	if err := PutTicket(a, "x", make([]byte, MaxTicketSize+1), time.Now().Add(time.Hour)); err == nil {
		t.Error("PutTicket with a long ticket succeeded")
	}
}

func TestTicketEviction(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_000_000, 0)}
	a := New(Options{Now: clock.Now, MaxTickets: 3})
	now := clock.Now()
	mustPut := func(id string, exp time.Duration) {
		t.Helper()
		if err := PutTicket(a, id, []byte("ticket-"+id), now.Add(exp)); err != nil {
			t.Fatal(err)
		}
	}
	has := func(id string) bool {
		_, _, err := GetTicket(a, id)
		if err != nil && !errors.Is(err, ErrNoTicket) {
			t.Fatal(err)
		}
		return err == nil
	}
	mustPut("a", 3*time.Hour)
	mustPut("b", 1*time.Hour)
	mustPut("c", 2*time.Hour)
	a.mu.Lock()
	bData := a.tickets["b"].data
	a.mu.Unlock()
	mustPut("d", 4*time.Hour) // evicts b, which expires first
	if has("b") || !has("a") || !has("c") || !has("d") {
		t.Errorf("after eviction: a=%v b=%v c=%v d=%v; want b evicted", has("a"), has("b"), has("c"), has("d"))
	}
	if !bytes.Equal(bData, make([]byte, len(bData))) {
		t.Errorf("evicted ticket bytes not zeroed: %q", bData)
	}
	// Overwriting an existing id never evicts another ticket.
	mustPut("a", 5*time.Hour)
	if !has("c") || !has("d") {
		t.Error("overwrite evicted another ticket")
	}
	// Expired tickets go before live ones: c has expired, d has not.
	clock.Set(now.Add(2 * time.Hour))
	mustPut("e", 30*time.Hour)
	if has("c") || !has("a") || !has("d") || !has("e") {
		t.Errorf("after expiry and put: a=%v c=%v d=%v e=%v; want only c gone", has("a"), has("c"), has("d"), has("e"))
	}
	a.mu.Lock()
	n := len(a.tickets)
	a.mu.Unlock()
	if n > 3 {
		t.Errorf("%d tickets cached, more than MaxTickets 3", n)
	}
}

func TestRemoveAllAndLockWipeTickets(t *testing.T) {
	a := New(Options{})
	c := dial(t, serve(t, a))
	key, pub := newEd25519(t)
	if err := c.Add(key); err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour)
	if err := PutTicket(c, "id", []byte("secret"), exp); err != nil {
		t.Fatal(err)
	}
	a.mu.Lock()
	data := a.tickets["id"].data
	a.mu.Unlock()
	if err := c.RemoveAll(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := GetTicket(c, "id"); !errors.Is(err, ErrNoTicket) {
		t.Errorf("GetTicket after RemoveAll: err = %v, want ErrNoTicket", err)
	}
	if !bytes.Equal(data, make([]byte, len(data))) {
		t.Errorf("ticket bytes not zeroed by RemoveAll: %q", data)
	}

	if err := c.Add(key); err != nil {
		t.Fatal(err)
	}
	if err := PutTicket(c, "id", []byte("secret"), exp); err != nil {
		t.Fatal(err)
	}
	a.mu.Lock()
	data = a.tickets["id"].data
	a.mu.Unlock()
	if err := c.Lock([]byte("pw")); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data, make([]byte, len(data))) {
		t.Errorf("ticket bytes not zeroed by Lock: %q", data)
	}
	// Every extension fails while locked, and not as "unsupported" or
	// "not found".
	host := newHostKey(t)
	checks := map[string]error{}
	checks["put"] = PutTicket(c, "id", []byte("x"), exp)
	_, _, checks["get"] = GetTicket(c, "id")
	checks["delete"] = DeleteTicket(c, "id")
	_, checks["sign"] = SignStatement(c, pub, statementFor(t, host))
	for name, err := range checks {
		if err == nil || errors.Is(err, ErrUnsupported) || errors.Is(err, ErrNoTicket) {
			t.Errorf("%s while locked: err = %v, want a failure", name, err)
		}
	}
	if err := c.Unlock([]byte("pw")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := GetTicket(c, "id"); !errors.Is(err, ErrNoTicket) {
		t.Errorf("GetTicket after unlock: err = %v, want ErrNoTicket (wiped by Lock)", err)
	}
	if _, err := SignStatement(c, pub, statementFor(t, host)); err != nil {
		t.Errorf("SignStatement after unlock: %v", err)
	}
}

func TestSignStatement(t *testing.T) {
	a := New(Options{})
	c := dial(t, serve(t, a))

	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edKey, _ := newEd25519(t)
	host := newHostKey(t)
	stmt := statementFor(t, host)
	for _, priv := range []any{edKey.PrivateKey, ecKey, rsaKey} {
		signer, err := ssh.NewSignerFromKey(priv)
		if err != nil {
			t.Fatal(err)
		}
		pub := signer.PublicKey()
		if err := c.Add(sshagent.AddedKey{PrivateKey: priv}); err != nil {
			t.Fatal(err)
		}
		blob, err := SignStatement(c, pub, stmt)
		if err != nil {
			t.Fatalf("%s: SignStatement: %v", pub.Type(), err)
		}
		got, err := keys.Verify(blob, Namespace, stmt)
		if err != nil {
			t.Fatalf("%s: keys.Verify: %v", pub.Type(), err)
		}
		if !bytes.Equal(got.Marshal(), pub.Marshal()) {
			t.Errorf("%s: signature made by %s", pub.Type(), keys.Fingerprint(got))
		}
		if _, err := keys.Verify(blob, "file", stmt); err == nil {
			t.Errorf("%s: signature verifies in another namespace", pub.Type())
		}
	}

	// A key the agent does not hold, a malformed statement, an oversized one.
	_, other := newEd25519(t)
	if _, err := SignStatement(c, other, stmt); err == nil {
		t.Error("SignStatement with a key the agent lacks succeeded")
	}
	edPub, _ := ssh.NewPublicKey(edKey.PrivateKey.(ed25519.PrivateKey).Public())
	bad := bytes.Replace(stmt, []byte("user alice"), []byte("user ../x"), 1)
	if _, err := SignStatement(c, edPub, bad); err == nil {
		t.Error("SignStatement of a malformed statement succeeded")
	}
	if _, err := a.Extension(ExtSign, ssh.Marshal(signRequest{KeyBlob: edPub.Marshal(), Statement: make([]byte, keys.MaxStatementSize+1)})); err == nil {
		t.Error("netauth-sign of an oversized statement succeeded")
	}
	if _, err := SignStatement(c, edPub, make([]byte, keys.MaxStatementSize+1)); err == nil {
		t.Error("SignStatement of an oversized statement succeeded")
	}
}

func TestHostRestriction(t *testing.T) {
	key, pub := newEd25519(t)
	freeKey, freePub := newEd25519(t)
	allowed, otherHost := newHostKey(t), newHostKey(t)
	logs := &testutil.Buffer{}
	a := New(Options{
		Logger:       slog.New(slog.NewTextHandler(logs, nil)),
		Restrictions: map[string][]string{keys.Fingerprint(pub): {keys.Fingerprint(allowed)}},
	})
	c := dial(t, serve(t, a))
	for _, k := range []sshagent.AddedKey{key, freeKey} {
		if err := c.Add(k); err != nil {
			t.Fatal(err)
		}
	}

	// netauth-sign: only the listed host.
	if blob, err := SignStatement(c, pub, statementFor(t, allowed)); err != nil {
		t.Errorf("SignStatement for the allowed host: %v", err)
	} else if _, err := keys.Verify(blob, Namespace, statementFor(t, allowed)); err != nil {
		t.Errorf("keys.Verify: %v", err)
	}
	if _, err := SignStatement(c, pub, statementFor(t, otherHost)); err == nil || errors.Is(err, ErrUnsupported) {
		t.Errorf("SignStatement for another host: err = %v, want a refusal", err)
	}
	if !strings.Contains(logs.String(), keys.Fingerprint(otherHost)) {
		t.Errorf("refusal not logged with the host fingerprint; log:\n%s", logs)
	}
	// An unrestricted key signs for any host.
	if _, err := SignStatement(c, freePub, statementFor(t, otherHost)); err != nil {
		t.Errorf("SignStatement with an unrestricted key: %v", err)
	}

	// The raw path: netauth SSHSIG data is refused for the restricted key,
	// also when malformed, while other data is signed.
	netauthData := keys.SignedData(Namespace, statementFor(t, otherHost))
	if _, err := c.Sign(pub, netauthData); err == nil {
		t.Error("raw Sign of netauth SSHSIG data with a restricted key succeeded")
	}
	if _, err := c.SignWithFlags(pub, netauthData, sshagent.SignatureFlagRsaSha512); err == nil {
		t.Error("raw SignWithFlags of netauth SSHSIG data with a restricted key succeeded")
	}
	if _, err := c.Sign(pub, []byte("SSHSIG\x00\x00")); err == nil {
		t.Error("raw Sign of truncated SSHSIG data with a restricted key succeeded")
	}
	for _, data := range [][]byte{
		[]byte("ssh login session data"),
		keys.SignedData("file", []byte("a file")),
	} {
		sig, err := c.Sign(pub, data)
		if err != nil {
			t.Errorf("raw Sign of %q with a restricted key: %v", data, err)
			continue
		}
		if err := pub.Verify(data, sig); err != nil {
			t.Errorf("raw signature does not verify: %v", err)
		}
	}
	if _, err := c.Sign(freePub, netauthData); err != nil {
		t.Errorf("raw Sign of netauth data with an unrestricted key: %v", err)
	}
}

func TestIsNetauthSignedData(t *testing.T) {
	tests := []struct {
		data []byte
		want bool
	}{
		{keys.SignedData(Namespace, []byte("m")), true},
		{keys.SignedData("file", []byte("m")), false},
		{keys.SignedData(Namespace+"x", []byte("m")), false},
		{[]byte("SSHSIG"), true},
		{[]byte("SSHSIG\x00\x00\x00\xff"), true},
		{[]byte("SSHSI"), false},
		{nil, false},
		{[]byte("\x00\x00\x00\x0bssh-ed25519"), false},
	}
	for _, tt := range tests {
		if got := isNetauthSignedData(tt.data); got != tt.want {
			t.Errorf("isNetauthSignedData(%q) = %v, want %v", tt.data, got, tt.want)
		}
	}
}

func TestParseRestrictions(t *testing.T) {
	k1, k2 := keys.Fingerprint(newHostKey(t)), keys.Fingerprint(newHostKey(t))
	h1, h2, h3 := keys.Fingerprint(newHostKey(t)), keys.Fingerprint(newHostKey(t)), keys.Fingerprint(newHostKey(t))
	in := "# netauth key restrictions\n\n  " +
		k1 + " " + h1 + "\t" + h2 + "  # mail servers\n" +
		"   # indented comment\n" +
		k2 + " " + h3 + "\n" +
		k1 + " " + h3 + " " + h1 + "\n"
	got, err := ParseRestrictions(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{k1: {h1, h2, h3}, k2: {h3}}
	if len(got) != len(want) {
		t.Fatalf("ParseRestrictions = %v, want %v", got, want)
	}
	for k, hosts := range want {
		if strings.Join(got[k], ",") != strings.Join(hosts, ",") {
			t.Errorf("hosts of %s = %v, want %v", k, got[k], hosts)
		}
	}

	bad := []struct {
		in, line string
	}{
		{k1 + "\n", "line 1"},
		{"\n\n" + k1 + " MD5:aa:bb\n", "line 3"},
		{"# c\n" + k1 + " # " + h1 + "\n", "line 2"},
		{"ssh-ed25519 AAAA " + h1 + "\n", "line 1"},
		{"SHA256:short " + h1 + "\n", "line 1"},
		{k1 + " " + h1 + "=\n", "line 1"},
		{"#\n" + strings.Repeat("x", maxRestrictionLine+1) + "\n", "line 2"},
	}
	for _, tt := range bad {
		_, err := ParseRestrictions(strings.NewReader(tt.in))
		if err == nil || !strings.Contains(err.Error(), tt.line) {
			t.Errorf("ParseRestrictions(%.40q): err = %v, want an error naming %s", tt.in, err, tt.line)
		}
	}
	if got, err := ParseRestrictions(strings.NewReader("")); err != nil || len(got) != 0 {
		t.Errorf("empty file: %v, %v", got, err)
	}
}

func TestSocketPath(t *testing.T) {
	t.Setenv(SockEnv, "")
	t.Setenv(SSHSockEnv, "")
	if _, err := SocketPath(); err == nil || !strings.Contains(err.Error(), "netauth agent") {
		t.Errorf("no agent: err = %v, want advice to start netauth agent", err)
	}
	t.Setenv(SSHSockEnv, "/ssh")
	if p, err := SocketPath(); err != nil || p != "/ssh" {
		t.Errorf("SocketPath = %q, %v; want /ssh", p, err)
	}
	t.Setenv(SockEnv, "/netauth")
	if p, err := SocketPath(); err != nil || p != "/netauth" {
		t.Errorf("SocketPath = %q, %v; want /netauth", p, err)
	}
}

func TestServeShutdown(t *testing.T) {
	a := New(Options{})
	ln, path, err := Listen(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln) }()
	// An idle client must not keep Serve from returning.
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := sshagent.NewClient(conn).List(); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	if _, err := net.Dial("unix", path); err == nil {
		t.Error("socket still accepts connections after Serve returned")
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("idle connection not closed by shutdown: read err = %v", err)
	}
}

func TestServeRefusesNonUnixConn(t *testing.T) {
	logs := &testutil.Buffer{}
	a := New(Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := sshagent.NewClient(conn).List(); err == nil {
		t.Error("agent answered over TCP")
	}
	if !strings.Contains(logs.String(), "not a Unix connection") {
		t.Errorf("refusal not logged; log:\n%s", logs)
	}
}

func FuzzExtension(f *testing.F) {
	exts := []string{ExtTicketPut, ExtTicketGet, ExtTicketDelete, ExtSign}
	key, pub := newEd25519(f)
	host := newHostKey(f)
	exp := uint64(time.Now().Add(time.Hour).Unix())
	idMax, idOver := strings.Repeat("i", MaxTicketIDSize), strings.Repeat("i", MaxTicketIDSize+1)
	for i := range exts {
		f.Add(uint8(i), []byte{})
	}
	for _, id := range []string{"", "a", idMax, idOver} {
		f.Add(uint8(0), ssh.Marshal(ticketPutRequest{ID: id, Ticket: []byte("t"), Expiry: exp}))
		f.Add(uint8(1), ssh.Marshal(ticketIDRequest{ID: id}))
		f.Add(uint8(2), ssh.Marshal(ticketIDRequest{ID: id}))
	}
	for _, n := range []int{0, 1, MaxTicketSize, MaxTicketSize + 1} {
		f.Add(uint8(0), ssh.Marshal(ticketPutRequest{ID: "a", Ticket: make([]byte, n), Expiry: exp}))
	}
	f.Add(uint8(0), ssh.Marshal(ticketPutRequest{ID: "a", Ticket: []byte("t"), Expiry: 1<<64 - 1}))
	f.Add(uint8(0), ssh.Marshal(ticketPutRequest{ID: "a", Ticket: []byte("t"), Expiry: 0}))
	stmt := statementFor(f, host)
	f.Add(uint8(3), ssh.Marshal(signRequest{KeyBlob: pub.Marshal(), Statement: stmt}))
	f.Add(uint8(3), ssh.Marshal(signRequest{KeyBlob: pub.Marshal(), Statement: make([]byte, keys.MaxStatementSize+1)}))
	f.Add(uint8(3), ssh.Marshal(signRequest{KeyBlob: []byte("junk"), Statement: stmt}))
	f.Add(uint8(3), ssh.Marshal(signRequest{KeyBlob: host.Marshal(), Statement: stmt}))

	a := New(Options{
		MaxTickets:   8,
		Restrictions: map[string][]string{keys.Fingerprint(pub): {keys.Fingerprint(host)}},
	})
	if err := a.Add(key); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, which uint8, contents []byte) {
		ext := exts[int(which)%len(exts)]
		resp, err := a.Extension(ext, contents)
		if err != nil {
			if resp != nil {
				t.Errorf("%s: response %x with error %v", ext, resp, err)
			}
			return
		}
		if resp != nil && resp[0] != msgSuccess {
			t.Errorf("%s: response starts with %d, want SSH_AGENT_SUCCESS", ext, resp[0])
		}
		a.mu.Lock()
		n := len(a.tickets)
		a.mu.Unlock()
		if n > 8 {
			t.Errorf("%d tickets cached, more than MaxTickets", n)
		}
	})
}

// TestTicketByteBudget: tickets may be up to MaxTicketSize each, but together at most
// MaxTicketBytes: storing more evicts the tickets expiring first, and the count of bytes the
// agent keeps follows every put, eviction, expiry and deletion.
func TestTicketByteBudget(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_000_000, 0)}
	a := New(Options{Now: clock.Now})
	now := clock.Now()
	n := MaxTicketBytes/MaxTicketSize + 8
	for i := range n {
		if err := PutTicket(a, fmt.Sprintf("t%04d", i), make([]byte, MaxTicketSize), now.Add(time.Duration(i+1)*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	a.mu.Lock()
	kept, total := len(a.tickets), 0
	for _, tk := range a.tickets {
		total += len(tk.data)
	}
	counted := a.ticketBytes
	a.mu.Unlock()
	if total > MaxTicketBytes || counted != total || kept != MaxTicketBytes/MaxTicketSize {
		t.Fatalf("after %d tickets of %d bytes: %d kept, %d bytes (counted %d); want %d kept, at most %d bytes", n, MaxTicketSize, kept, total, counted, MaxTicketBytes/MaxTicketSize, MaxTicketBytes)
	}
	if _, _, err := GetTicket(a, "t0000"); !errors.Is(err, ErrNoTicket) {
		t.Errorf("the ticket expiring first was not the one evicted: %v", err)
	}
	if _, _, err := GetTicket(a, fmt.Sprintf("t%04d", n-1)); err != nil {
		t.Errorf("the newest ticket is missing: %v", err)
	}
	if err := a.RemoveAll(); err != nil {
		t.Fatal(err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.tickets) != 0 || a.ticketBytes != 0 {
		t.Errorf("after RemoveAll: %d tickets, %d bytes counted; want none", len(a.tickets), a.ticketBytes)
	}
}
