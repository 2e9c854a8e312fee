// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth/internal/keys"
)

// FuzzVerify feeds arbitrary bytes to Verify as a log. It must never panic,
// and its report must list at most one problem per line, in order, each with
// only printable characters. The seed
// log is kept short: every input that finds new coverage is minimized by
// running Verify on it thousands of times, which the fuzzer's exec count
// does not show (-fuzzminimizetime=1s trades minimization for new inputs).
func FuzzVerify(f *testing.F) {
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	pub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		f.Fatal(err)
	}
	host := hostKey{priv: priv, pub: pub}
	path := filepath.Join(f.TempDir(), "audit.log")
	w, err := Open(path, priv, Options{})
	if err != nil {
		f.Fatal(err)
	}
	alice := newUserKey(f, false)
	for _, r := range []*Record{
		fullRecord(f, pub, alice, "alice", "imap"),
		resumedRecord(pub, alice.PublicKey(), "alice", "imap"),
		refusedRecord(pub, "handshake timed out"),
	} {
		if err := w.Write(r); err != nil {
			f.Fatal(err)
		}
	}
	w.Close()
	good, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	lines := bytes.SplitAfter(good, []byte("\n"))
	f.Add(good)
	f.Add(good[:len(good)-7])
	f.Add(bytes.Join([][]byte{lines[1], lines[0], lines[2]}, nil))
	f.Add(bytes.Replace(good, []byte(`"seq":2`), []byte(`"seq":3`), 1))
	f.Add([]byte("\n\n{}\n{\"host_sig\":\"\"}\n{\"seq\":1,\"host_sig\":\"AAAA\"}"))
	f.Add([]byte(`{"seq":1,"mode":"full","decision":"accepted","statement":"x","signature":"-----BEGIN SSH SIGNATURE-----\nU1NIU0lH\n-----END SSH SIGNATURE-----\n","host_sig":"U1NIU0lH"}` + "\n"))

	f.Fuzz(func(t *testing.T, data []byte) {
		rep, err := Verify(bytes.NewReader(data), host.pub)
		if err != nil {
			t.Fatalf("Verify of in-memory bytes returned an error: %v", err)
		}
		if len(rep.Problems) > MaxProblems || len(rep.Problems) > rep.Bad || rep.Bad > rep.Records ||
			len(rep.Problems) < min(rep.Bad, MaxProblems) {
			t.Fatalf("%d problems listed, %d bad lines counted, of %d", len(rep.Problems), rep.Bad, rep.Records)
		}
		last := 0
		for _, p := range rep.Problems {
			if p.Line <= last || p.Line > rep.Records || p.Reason == "" || len(p.Reason) > maxProblemReason {
				t.Fatalf("bad problem %+v after line %d of %d", p, last, rep.Records)
			}
			if !utf8.ValidString(p.Reason) || strings.ContainsFunc(p.Reason, func(r rune) bool { return !strconv.IsPrint(r) }) {
				t.Fatalf("a problem carries a character that is not printable: %q", p.Reason)
			}
			last = p.Line
		}
		if rep.Full+rep.Resumed+rep.Refused > rep.Records {
			t.Fatalf("report counts more records by kind than lines: %+v", rep)
		}
		if bytes.Equal(data, good) && !rep.OK() {
			t.Fatalf("the good log does not verify: %v", rep.Problems)
		}
	})
}

// FuzzVerifySigned is FuzzVerify as a holder of the host key sees it: every line of the input
// that has a "host_sig" field is signed again by the host key before Verify reads the log, so
// the fuzzer's changes to a record's content reach the checks past the host signature (the
// chain, the user's signature and statement, the times, the handshakes seen). Verify must
// never panic, and what it reports must be fit for a terminal: only printable characters
// (no escape sequences, no bidirectional overrides), valid UTF-8, however the log was crafted.
func FuzzVerifySigned(f *testing.F) {
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	pub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		f.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		f.Fatal(err)
	}
	host := hostKey{priv: priv, pub: pub}
	path := filepath.Join(f.TempDir(), "audit.log")
	w, err := Open(path, priv, Options{})
	if err != nil {
		f.Fatal(err)
	}
	alice := newUserKey(f, true)
	full := fullRecord(f, pub, alice, "alice", "imap")
	for _, r := range []*Record{full, resumedRecord(pub, alice.PublicKey(), "alice", "imap"), refusedRecord(pub, "handshake timed out")} {
		if err := w.Write(r); err != nil {
			f.Fatal(err)
		}
	}
	if _, err := w.WriteRefusal(&Refusal{Client: "192.0.2.1:1", Code: "auth_failed", User: "\xff", Signature: []byte("x")}); err != nil {
		f.Fatal(err)
	}
	w.Close()
	good, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(bytes.Replace(good, []byte(`"user":"alice"`), []byte(`"user":"\u001b[2J\u202e"`), 1))
	f.Add(bytes.Replace(good, []byte(`"seq":2`), []byte(`"seq":18446744073709551615`), 1))
	f.Add([]byte(`{"seq":1,"decision":"refused","summary":{"source":"x","counts":{"a":18446744073709551615,"b":1}},"host_sig":""}` + "\n"))

	// resign replaces the host signature of each line that has one with the host key's
	// signature over the line's canonical bytes.
	resign := func(data []byte) []byte {
		lines := bytes.SplitAfter(data, []byte("\n"))
		for i, l := range lines {
			body, nl := bytes.CutSuffix(l, []byte("\n"))
			rest, ok := bytes.CutSuffix(body, []byte(`"}`))
			j := bytes.LastIndex(rest, []byte(hostSigField))
			if !ok || j < 0 {
				continue
			}
			canonical := append(append([]byte(nil), body[:j+len(hostSigField)]...), `"}`...)
			blob, err := keys.Sign(signer, Namespace, canonical)
			if err != nil {
				f.Fatal(err)
			}
			out := append(append([]byte(nil), body[:j+len(hostSigField)]...), base64.StdEncoding.EncodeToString(blob)...)
			out = append(out, `"}`...)
			if nl {
				out = append(out, '\n')
			}
			lines[i] = out
		}
		return bytes.Join(lines, nil)
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64<<10 {
			return
		}
		rep, err := Verify(bytes.NewReader(resign(data)), host.pub)
		if err != nil {
			t.Fatalf("Verify of in-memory bytes returned an error: %v", err)
		}
		if len(rep.Problems) > rep.Bad || rep.Bad > rep.Records {
			t.Fatalf("%d problems listed, %d bad lines counted, of %d", len(rep.Problems), rep.Bad, rep.Records)
		}
		for _, p := range rep.Problems {
			if s := p.String(); !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return !strconv.IsPrint(r) }) {
				t.Fatalf("a problem carries a control or formatting character, or invalid UTF-8: %q", s)
			}
		}
		if bytes.Equal(data, good) && !rep.OK() {
			t.Fatalf("the good log does not verify: %v", rep.Problems)
		}
	})
}
