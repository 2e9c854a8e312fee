// SPDX-License-Identifier: Apache-2.0

package keys

import (
	"bytes"
	"crypto/ed25519"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func testHostKey(t testing.TB) ssh.PublicKey {
	t.Helper()
	seed := bytes.Repeat([]byte{7}, ed25519.SeedSize)
	k, err := ssh.NewPublicKey(ed25519.NewKeyFromSeed(seed).Public())
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func testStatement(t testing.TB) *Statement {
	hh := make([]byte, 32)
	for i := range hh {
		hh[i] = byte(i * 9)
	}
	return &Statement{
		HandshakeHash: hh,
		HostKey:       testHostKey(t),
		Service:       "imap",
		User:          "alice@example.org",
		Time:          time.Unix(1700000000, 0),
	}
}

func testStatementText(t testing.TB) string {
	return "netauth-authenticator-v1\n" +
		"handshake-hash 0009121b242d363f48515a636c757e879099a2abb4bdc6cfd8e1eaf3fc050e17\n" +
		"host-key " + authLine(testHostKey(t)) + "\n" +
		"service imap\n" +
		"user alice@example.org\n" +
		"time 1700000000\n"
}

func TestValidName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"alice", true},
		{"a", true},
		{"Alice.B_c-d@example.org", true},
		{"0day", true},
		{"_svc", true},
		{"@x", true},
		{strings.Repeat("a", 64), true},
		{"", false},
		{strings.Repeat("a", 65), false},
		{"-alice", false},
		{".alice", false},
		{"..", false},
		{".", false},
		{"../etc", false},
		{"a/b", false},
		{"a b", false},
		{"a\n", false},
		{"a\x00", false},
		{"é", false},
		{"a:b", false},
		{"a+b", false},
	}
	for _, tt := range tests {
		err := ValidName(tt.name)
		if (err == nil) != tt.ok {
			t.Errorf("ValidName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

func TestStatementRoundTrip(t *testing.T) {
	s := testStatement(t)
	b, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if want := testStatementText(t); string(b) != want {
		t.Fatalf("Marshal =\n%s\nwant\n%s", b, want)
	}
	p, err := ParseStatement(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p.HandshakeHash, s.HandshakeHash) || !bytes.Equal(p.HostKey.Marshal(), s.HostKey.Marshal()) ||
		p.Service != s.Service || p.User != s.User || !p.Time.Equal(s.Time) {
		t.Fatalf("ParseStatement = %+v, want %+v", p, s)
	}
	again, err := p.Marshal()
	if err != nil || !bytes.Equal(again, b) {
		t.Fatalf("re-Marshal = %q, %v", again, err)
	}

	// Fractions of a second are dropped; time zero is allowed.
	for _, tt := range []struct {
		t    time.Time
		want string
	}{
		{time.Unix(1700000000, 999999999), "time 1700000000\n"},
		{time.Unix(0, 0), "time 0\n"},
		{time.Unix(1<<62, 0), "time 4611686018427387904\n"},
	} {
		s.Time = tt.t
		b, err := s.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasSuffix(b, []byte(tt.want)) {
			t.Errorf("Marshal with time %v ends %q, want %q", tt.t, b[len(b)-20:], tt.want)
		}
		if _, err := ParseStatement(b); err != nil {
			t.Errorf("ParseStatement(%q): %v", b, err)
		}
	}
}

func TestStatementMarshalRejects(t *testing.T) {
	ecKey := newSigner(t, "ecdsa-p256").PublicKey()
	tests := []struct {
		name   string
		change func(*Statement)
	}{
		{"short hash", func(s *Statement) { s.HandshakeHash = s.HandshakeHash[:31] }},
		{"long hash", func(s *Statement) { s.HandshakeHash = append(s.HandshakeHash, 0) }},
		{"nil host key", func(s *Statement) { s.HostKey = nil }},
		{"ecdsa host key", func(s *Statement) { s.HostKey = ecKey }},
		{"empty service", func(s *Statement) { s.Service = "" }},
		{"bad service", func(s *Statement) { s.Service = "im ap" }},
		{"bad user", func(s *Statement) { s.User = "../etc" }},
		{"long user", func(s *Statement) { s.User = strings.Repeat("u", 65) }},
		{"negative time", func(s *Statement) { s.Time = time.Unix(-1, 0) }},
		{"zero time", func(s *Statement) { s.Time = time.Time{} }},
	}
	for _, tt := range tests {
		s := testStatement(t)
		tt.change(s)
		if b, err := s.Marshal(); err == nil {
			t.Errorf("%s: Marshal = %q, want error", tt.name, b)
		}
	}
}

// statementVariants returns rejected variants of the test statement.
func statementVariants(t testing.TB) []struct{ name, text string } {
	good := testStatementText(t)
	ecdsaLine := authLine(newSigner(t, "ecdsa-p256").PublicKey())
	hostLine := "host-key " + authLine(testHostKey(t)) + "\n"
	r := strings.NewReplacer
	return []struct{ name, text string }{
		{"empty", ""},
		{"truncated", good[:len(good)-1]},
		{"truncated mid", good[:100]},
		{"extra line", good + "extra 1\n"},
		{"extra empty line", good + "\n"},
		{"crlf", strings.ReplaceAll(good, "\n", "\r\n")},
		{"bad magic", r("netauth-authenticator-v1", "netauth-authenticator-v2").Replace(good)},
		{"uppercase hex", r("0009121b242d", "0009121B242D").Replace(good)},
		{"short hex", r("0e17\n", "0e\n").Replace(good)},
		{"non-hex", r("0e17\n", "0e1g\n").Replace(good)},
		{"leading zero time", r("time 1700000000", "time 01700000000").Replace(good)},
		{"signed time", r("time 1700000000", "time +1700000000").Replace(good)},
		{"negative time", r("time 1700000000", "time -1").Replace(good)},
		{"20 digit time", r("time 1700000000", "time 17000000000000000000").Replace(good)},
		{"int64 overflow time", r("time 1700000000", "time 9999999999999999999").Replace(good)},
		{"space in time", r("time 1700000000", "time  1700000000").Replace(good)},
		{"empty time", r("time 1700000000", "time ").Replace(good)},
		{"oversized", good + strings.Repeat("#", MaxStatementSize)},
		{"ecdsa host key", r(hostLine, "host-key "+ecdsaLine+"\n").Replace(good)},
		{"host key comment", r(hostLine, strings.TrimSuffix(hostLine, "\n")+" comment\n").Replace(good)},
		{"host key bad base64", r(hostLine, "host-key ssh-ed25519 !!!!\n").Replace(good)},
		{"host key type mismatch", r(hostLine, strings.Replace(hostLine, "ssh-ed25519 ", "ssh-rsa ", 1)).Replace(good)},
		{"bad service", r("service imap", "service -imap").Replace(good)},
		{"empty user", r("user alice@example.org", "user ").Replace(good)},
		{"bad user", r("user alice@example.org", "user ../etc").Replace(good)},
		{"user with space", r("user alice@example.org", "user alice bob").Replace(good)},
		{"swapped fields", r("service imap\nuser alice@example.org", "user alice@example.org\nservice imap").Replace(good)},
		{"tab separator", r("service imap", "service\timap").Replace(good)},
		{"trailing space", r("service imap", "service imap ").Replace(good)},
	}
}

func TestParseStatementRejects(t *testing.T) {
	for _, tt := range statementVariants(t) {
		if s, err := ParseStatement([]byte(tt.text)); err == nil {
			t.Errorf("%s: ParseStatement = %+v, want error", tt.name, s)
		}
	}
}

func FuzzParseStatement(f *testing.F) {
	f.Add([]byte(testStatementText(f)))
	for _, v := range statementVariants(f) {
		f.Add([]byte(v.text))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseStatement(b)
		if err != nil {
			return
		}
		again, err := s.Marshal()
		if err != nil {
			t.Fatalf("parsed statement does not marshal: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("round trip changed %q to %q", b, again)
		}
	})
}
