// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
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
// only printable characters, and count no more records of each kind than it
// read. The seeds hold records, checkpoints (closing, opening, and one signed
// in the background), records signed alone (the format before checkpoints),
// a file of both, and records no checkpoint covers. The seed
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
	f.Add(bytes.Join([][]byte{lines[1], lines[0], lines[2], lines[3]}, nil))
	f.Add(bytes.Replace(good, []byte(`"seq":2`), []byte(`"seq":3`), 1))
	for _, seed := range checkpointSeeds(f, host, alice) {
		f.Add(seed)
	}
	f.Add([]byte("\n\n{}\n{\"host_sig\":\"\"}\n{\"seq\":1,\"host_sig\":\"AAAA\"}"))
	f.Add([]byte(`{"seq":1,"mode":"full","decision":"accepted","statement":"x","signature":"-----BEGIN SSH SIGNATURE-----\nU1NIU0lH\n-----END SSH SIGNATURE-----\n","host_sig":"U1NIU0lH"}` + "\n"))

	f.Fuzz(func(t *testing.T, data []byte) {
		rep, err := Verify(bytes.NewReader(data), host.pub)
		if err != nil {
			t.Fatalf("Verify of in-memory bytes returned an error: %v", err)
		}
		checkReport(t, rep)
		if bytes.Equal(data, good) && !rep.Signed() {
			t.Fatalf("the good log does not verify: %v %v", rep.Problems, rep.UncoveredRuns)
		}
		strict, err := VerifyWith(bytes.NewReader(data), host.pub, VerifyOptions{RequireSigned: true})
		if err != nil {
			t.Fatal(err)
		}
		checkReport(t, strict)
		// Uncovered records become bad lines, once each (a record can be both: its content
		// may be bad too); and a log with checkpoints that does not end with a closing one
		// has its last line bad.
		notClosed := 0
		if rep.Checkpoints > 0 && !rep.Closed {
			notClosed = 1
		}
		if strict.Uncovered != 0 || strict.Bad < rep.Bad || strict.Bad > rep.Bad+rep.Uncovered+notClosed || rep.Uncovered > 0 && strict.OK() ||
			notClosed == 1 && strict.OK() {
			t.Fatalf("with RequireSigned: %d bad and %d uncovered; without: %d and %d", strict.Bad, strict.Uncovered, rep.Bad, rep.Uncovered)
		}
	})
}

// checkReport checks what every report must hold, whatever the log: at most
// one problem per line, in order, printable and bounded; the first
// MaxProblems bad lines listed; no more records counted by kind, uncovered or
// bad than lines read; runs of uncovered records within the file, in order.
func checkReport(t *testing.T, rep *Report) {
	t.Helper()
	if rep.Records+rep.Checkpoints != rep.Lines {
		t.Fatalf("%d records and %d checkpoints, of %d lines", rep.Records, rep.Checkpoints, rep.Lines)
	}
	if len(rep.Problems) > MaxProblems || len(rep.Problems) > rep.Bad || rep.Bad > rep.Lines ||
		len(rep.Problems) < min(rep.Bad, MaxProblems) {
		t.Fatalf("%d problems listed, %d bad lines counted, of %d", len(rep.Problems), rep.Bad, rep.Lines)
	}
	last := 0
	for _, p := range rep.Problems {
		if p.Line <= last || p.Line > rep.Lines || p.Reason == "" || len(p.Reason) > maxProblemReason {
			t.Fatalf("bad problem %+v after line %d of %d", p, last, rep.Lines)
		}
		if s := p.String(); !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return !strconv.IsPrint(r) }) {
			t.Fatalf("a problem carries a character that is not printable: %q", s)
		}
		last = p.Line
	}
	if rep.Full+rep.Resumed+rep.Refused+rep.Summaries > rep.Records || rep.Uncovered > rep.Records {
		t.Fatalf("report counts more records than lines: %+v", rep)
	}
	last, n := 0, 0
	for _, u := range rep.UncoveredRuns {
		if u.FirstLine <= last || u.LastLine < u.FirstLine || u.LastLine > rep.Lines || u.Records <= 0 || u.Records > u.LastLine-u.FirstLine+1 ||
			u.LastSeq-u.FirstSeq != uint64(u.LastLine-u.FirstLine) {
			t.Fatalf("bad run of uncovered records %+v after line %d of %d", u, last, rep.Lines)
		}
		if s := u.String(); !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return !strconv.IsPrint(r) }) {
			t.Fatalf("a run carries a character that is not printable: %q", s)
		}
		last, n = u.LastLine, n+u.Records
	}
	if len(rep.UncoveredRuns) < MaxProblems && n != rep.Uncovered {
		t.Fatalf("the runs of uncovered records hold %d, the report counts %d", n, rep.Uncovered)
	}
}

// checkpointSeeds returns logs written with host's key in each format: with
// checkpoints written in the background, records signed alone, a file begun
// in the old format and continued in the new, records left uncovered by a
// Writer that stopped and sealed by the next, and a log still being written.
func checkpointSeeds(f *testing.F, host hostKey, user ssh.Signer) [][]byte {
	dir := f.TempDir()
	records := func() []*Record {
		return []*Record{
			fullRecord(f, host.pub, user, "alice", "imap"),
			resumedRecord(host.pub, user.PublicKey(), "alice", "imap"),
			refusedRecord(host.pub, "handshake timed out"),
		}
	}
	write := func(name string, opts Options, closeIt bool) []byte {
		path := filepath.Join(dir, name)
		w, err := Open(path, host.priv, opts)
		if err != nil {
			f.Fatal(err)
		}
		for _, r := range records() {
			if err := w.Write(r); err != nil {
				f.Fatal(err)
			}
		}
		if opts.CheckpointRecords > 0 {
			waitCovered(f, w)
		}
		if _, err := w.WriteRefusal(&Refusal{Client: "192.0.2.1:1", Code: "auth_failed"}); err != nil {
			f.Fatal(err)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		if closeIt {
			if err := w.Close(); err != nil {
				f.Fatal(err)
			}
			if data, err = os.ReadFile(path); err != nil {
				f.Fatal(err)
			}
		} else {
			w.Close()
		}
		return data
	}
	background := write("background.log", Options{CheckpointRecords: 2}, true)
	legacy := write("legacy.log", Options{signEach: true}, true)
	mixed := write("legacy.log", Options{}, true)     // continues legacy.log
	open := write("background.log", Options{}, false) // ends in records not covered
	write("crashed.log", Options{}, false)            // a Writer that stopped, then the next
	crashed := write("crashed.log", Options{}, true)
	return [][]byte{background, legacy, mixed, open, crashed}
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
	for _, seed := range checkpointSeeds(f, host, alice) {
		f.Add(seed)
	}
	f.Add(bytes.Replace(good, []byte(`"user":"alice"`), []byte(`"user":"\u001b[2J\u202e"`), 1))
	f.Add(bytes.Replace(good, []byte(`"event":"close"`), []byte(`"event":"open"`), 1))
	f.Add(bytes.Replace(good, []byte(`"from":1`), []byte(`"from":3`), 1))
	f.Add(bytes.Replace(good, []byte(`"seq":2`), []byte(`"seq":18446744073709551615`), 1))
	f.Add([]byte(`{"seq":1,"decision":"refused","summary":{"source":"x","counts":{"a":18446744073709551615,"b":1}},"host_sig":""}` + "\n"))

	// resign replaces the host signature of each line that has one with the host key's
	// signature over what it covers: a checkpoint's JSON, or the line's canonical bytes.
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
			var ck struct {
				Checkpoint json.RawMessage `json:"checkpoint"`
			}
			if json.Unmarshal(body, &ck) == nil && ck.Checkpoint != nil {
				canonical = ck.Checkpoint
			}
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
		checkReport(t, rep)
		if bytes.Equal(data, good) && !rep.Signed() {
			t.Fatalf("the good log does not verify: %v", rep.Problems)
		}
	})
}
