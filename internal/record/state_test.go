// SPDX-License-Identifier: Apache-2.0

package record

import (
	"bytes"
	"io"
	"testing"
)

// TestExportImport moves one end of a live connection to a new Conn (as a handoff to a worker
// does), with records already buffered, and checks the stream continues both ways.
func TestExportImport(t *testing.T) {
	client, server := keyedPair(t)
	client.SetRekeyAfter(3)
	for _, m := range []string{"one", "two", "three", "four"} {
		if _, err := client.Write([]byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 2)
	if _, err := io.ReadFull(server, buf); err != nil || string(buf) != "on" {
		t.Fatalf("read %q %v", buf, err)
	}
	st, err := server.Export()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := server.Read(buf); err != ErrDetached {
		t.Fatalf("read after export: %v", err)
	}
	st2, err := ParseState(st.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	moved, err := Import(server.NetConn(), st2)
	if err != nil {
		t.Fatal(err)
	}
	rest := make([]byte, len("etwothreefour"))
	if _, err := io.ReadFull(moved, rest); err != nil || string(rest) != "etwothreefour" {
		t.Fatalf("after import read %q %v", rest, err)
	}
	if _, err := moved.Write([]byte("reply")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 5)
	if _, err := io.ReadFull(client, got); err != nil || !bytes.Equal(got, []byte("reply")) {
		t.Fatalf("client read %q %v", got, err)
	}
	if err := moved.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Read(got); err != io.EOF {
		t.Fatalf("client after close: %v, want io.EOF", err)
	}
}

func TestParseStateRejects(t *testing.T) {
	good := (&State{Unread: []byte("x")}).Marshal()
	for name, b := range map[string][]byte{
		"empty":     nil,
		"truncated": good[:len(good)-1],
		"trailing":  append(append([]byte(nil), good...), 0),
		"version":   append([]byte{9}, good[1:]...),
		"oversized": make([]byte, MaxStateSize+1),
	} {
		if _, err := ParseState(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzParseState(f *testing.F) {
	f.Add((&State{}).Marshal())                                        // minimal valid state
	f.Add((&State{Unread: make([]byte, rbufSize)}).Marshal())          // buffer exactly full
	f.Add((&State{Unread: []byte("a"), Plain: []byte("b")}).Marshal()) // both buffers
	f.Add([]byte{stateVersion})                                        // truncated after version
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseState(b)
		if err != nil {
			return
		}
		if !bytes.Equal(s.Marshal(), b) {
			t.Fatal("parse/marshal round trip changed the bytes")
		}
	})
}
