// SPDX-License-Identifier: Apache-2.0

package record

import (
	"errors"
	"io"
	"testing"
	"time"
)

// TestCloseWithReasonRevoked: a close record carrying the reason CloseRevoked makes the peer's
// Read return ErrRevoked, "access revoked", after the data sent before it, even when the
// closing side closes while its own Read is in progress (a worker's handler waiting for the
// client); a plain close record is still io.EOF, and so is one with a reason this side does
// not know (a later version's).
func TestCloseWithReasonRevoked(t *testing.T) {
	server, client := keyedPair(t)
	client.ReadCloseReasons()
	if _, err := server.Write([]byte("last words")); err != nil {
		t.Fatal(err)
	}
	reading := make(chan error, 1)
	go func() { _, err := server.Read(make([]byte, 1)); reading <- err }()
	time.Sleep(20 * time.Millisecond) // the server's Read is in progress
	if err := server.CloseWithReason(CloseRevoked); err != nil {
		t.Fatal(err)
	}
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	data, err := io.ReadAll(client)
	if string(data) != "last words" || !errors.Is(err, ErrRevoked) || err.Error() != "netauth: access revoked: the server closed the connection" {
		t.Fatalf("the client read %q, %v; want the data, then ErrRevoked", data, err)
	}
	if _, err := client.Read(make([]byte, 1)); !errors.Is(err, ErrRevoked) {
		t.Fatalf("a second Read: %v, want ErrRevoked again", err)
	}
	<-reading

	for _, why := range [][]byte{nil, {0x7f}, {CloseRevoked, 0}} {
		raw, rc := rawToKeyed(t)
		rc.ReadCloseReasons()
		mustWrite(t, raw, seal(t, sealer(), TypeClose, why))
		_ = rc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := rc.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("a close record with %x: %v, want io.EOF", why, err)
		}
	}
}

// TestCloseReasonFromClientIgnored: only a server gives a reason in its close record (docs/
// PROTOCOL.md §7.2). A Conn that does not read reasons (a server's) reads a client's close
// record saying access_revoked as end-of-stream, not as "access revoked: the server closed
// the connection", which a client could otherwise make a server's application report.
func TestCloseReasonFromClientIgnored(t *testing.T) {
	raw, rc := rawToKeyed(t)
	mustWrite(t, raw, seal(t, sealer(), TypeClose, []byte{CloseRevoked}))
	_ = rc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := rc.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("a server read a client's close record with access_revoked as %v, want io.EOF", err)
	}
}
