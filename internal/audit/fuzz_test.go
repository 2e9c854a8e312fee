// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"bytes"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/ssh"
)

// FuzzVerify feeds arbitrary bytes to Verify as a log. It must never panic,
// and its report must list at most one problem per line, in order. The seed
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
