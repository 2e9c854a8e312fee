// SPDX-License-Identifier: Apache-2.0

package netauth

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth/internal/handshake"
	"ubns.dev/netauth/internal/keys"
	"ubns.dev/netauth/internal/testutil"
)

// TestRefusalLogLineBounded: the line a Listener logs for a refused handshake is bounded,
// whatever the client put in its authenticator. The handshake quotes the namespace of a
// malformed SSHSIG signature into the refusal's error: a ClientAuth carrying a 16 KiB
// namespace made a log line of about 64 KiB, once per handshake.
func TestRefusalLogLineBounded(t *testing.T) {
	var logged testutil.Buffer
	ts := newTestServer(t, func(c *ServerConfig) { c.Logger = slog.New(slog.NewTextHandler(&logged, nil)) })
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	// An SSHSIG signature of the largest size, nearly all of it namespace: bytes that %q
	// turns into four each.
	blob := []byte("SSHSIG\x00\x00\x00\x01")
	put := func(s []byte) {
		blob = binary.BigEndian.AppendUint32(blob, uint32(len(s)))
		blob = append(blob, s...)
	}
	put(sshPub.Marshal())
	put(bytes.Repeat([]byte{0xff}, keys.MaxSignatureSize-len(blob)-4-3*4-len("sha512")))
	put(nil)
	put([]byte("sha512"))
	put(nil)
	if len(blob) != keys.MaxSignatureSize {
		t.Fatalf("the signature is %d bytes, want %d", len(blob), keys.MaxSignatureSize)
	}
	_, err = keys.ParseSSHSIG(blob, handshake.Namespace)
	if err == nil || !strings.Contains(err.Error(), "namespace") {
		t.Fatalf("ParseSSHSIG of a signature with a foreign namespace = %v", err)
	}
	// As the handshake refuses it (internal/handshake, Authenticate).
	ts.ln.logRefusal(&handshake.Refusal{Code: handshake.CodeAuthFailed, Reason: "malformed authenticator", Err: err,
		Client: "[2001:db8::1]:40000", User: "alice", Signature: blob})
	out := logged.String()
	if !strings.Contains(out, "handshake refused") || !strings.Contains(out, "namespace") {
		t.Fatalf("the refusal was not logged:\n%.300s", out)
	}
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if len(line) > maxRefusalLogLine {
			t.Fatalf("a refusal made a log line of %d bytes, more than %d:\n%.300s...", len(line), maxRefusalLogLine, line)
		}
	}
}

// TestCutQuoted: cutQuoted keeps a string that fits once quoted, and otherwise cuts it at a
// character boundary so that, quoted, it fits.
func TestCutQuoted(t *testing.T) {
	for _, s := range []string{"", "alice", strings.Repeat("a", 300), strings.Repeat("a", 301), strings.Repeat("\xff", 200),
		strings.Repeat("é\u2028\x00\"\\", 100), strings.Repeat("日本", 100), "ab\xffcd" + strings.Repeat("\x1b[2J", 80)} {
		got := cutQuoted(s, 300)
		quoted := len(strconv.Quote(got)) - 2
		switch {
		case quoted > 300:
			t.Errorf("cutQuoted(%.40q...) is %d bytes quoted, more than 300", s, quoted)
		case len(strconv.Quote(s))-2 <= 300 && got != s:
			t.Errorf("cutQuoted(%.40q...) changed a string that fits", s)
		case got != s && (!strings.HasSuffix(got, "...") || !strings.HasPrefix(s, strings.TrimSuffix(got, "...")) || !utf8.ValidString(strings.TrimSuffix(got, "...")) && utf8.ValidString(s)):
			t.Errorf("cutQuoted(%.40q...) = %.40q..., not a prefix of whole characters and \"...\"", s, got)
		}
	}
}
