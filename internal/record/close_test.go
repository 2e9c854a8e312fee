// SPDX-License-Identifier: Apache-2.0

package record

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// setCloseWait sets how long Close waits for the peer's close record, for one test.
func setCloseWait(t *testing.T, d time.Duration) {
	old := closeWait
	closeWait = d
	t.Cleanup(func() { closeWait = old })
}

// socketClosed reports whether c's socket was closed within d (or, for 0, already).
func socketClosed(c *Conn, d time.Duration) bool {
	if d == 0 {
		select {
		case <-c.sockClosed:
			return true
		default:
			return false
		}
	}
	select {
	case <-c.sockClosed:
		return true
	case <-time.After(d):
		return false
	}
}

// TestCloseWaitsForPeerClose: Close returns at once, sends its close record and a FIN at
// once, and keeps the socket open, reading, until the peer's close record arrives; then it
// closes it.
func TestCloseWaitsForPeerClose(t *testing.T) {
	setCloseWait(t, 10*time.Second)
	a, b := keyedPair(t)
	mustWrite(t, b, []byte("unread")) // data a never reads: dropped by the close
	time.Sleep(20 * time.Millisecond)
	start := time.Now()
	if err := a.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Close took %v", d)
	}
	if socketClosed(a, 50*time.Millisecond) {
		t.Fatal("socket closed before the peer's close record")
	}
	// The peer reads the close record and then the end of the TCP stream (the FIN).
	if _, err := b.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("peer Read: %v, want io.EOF", err)
	}
	if n, err := b.NetConn().Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("peer socket Read = %d, %v; want the end of the stream", n, err)
	}
	mustWrite(t, b, bytes.Repeat([]byte("x"), 300<<10)) // still read and dropped
	if socketClosed(a, 50*time.Millisecond) {
		t.Fatal("socket closed before the peer's close record")
	}
	if err := b.Close(); err != nil {
		t.Fatalf("peer Close: %v", err)
	}
	if !socketClosed(a, 5*time.Second) {
		t.Fatal("socket still open 5 s after the peer's close record")
	}
}

// TestCloseSilentPeer: a peer that never sends its close record holds the socket open no
// longer than closeWait.
func TestCloseSilentPeer(t *testing.T) {
	setCloseWait(t, 200*time.Millisecond)
	a, _ := keyedPair(t)
	start := time.Now()
	if err := a.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if !socketClosed(a, 5*time.Second) {
		t.Fatal("socket still open 5 s after Close")
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("socket closed after %v, before the wait of 200ms", d)
	}
}

// TestCloseWaitReadDeadline: the read deadline, if earlier, bounds the wait.
func TestCloseWaitReadDeadline(t *testing.T) {
	setCloseWait(t, time.Minute)
	a, _ := keyedPair(t)
	if err := a.SetReadDeadline(time.Now().Add(100 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if !socketClosed(a, 10*time.Second) {
		t.Fatal("socket still open 10 s after Close, with a read deadline of 100 ms")
	}
	if err := a.SetDeadline(time.Time{}); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("SetDeadline after Close: %v, want net.ErrClosed", err)
	}
}

// TestCloseAfterPeerClose: when the peer's close record was read, or is already buffered,
// Close closes the socket before it returns.
func TestCloseAfterPeerClose(t *testing.T) {
	setCloseWait(t, time.Minute)
	t.Run("read", func(t *testing.T) {
		a, b := keyedPair(t)
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("Read: %v, want io.EOF", err)
		}
		if err := a.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if !socketClosed(a, 0) {
			t.Fatal("socket open after Close returned")
		}
	})
	t.Run("buffered", func(t *testing.T) {
		a, b := keyedPair(t)
		s := b.out.half // b's records, sealed here so that they go out in one write
		var frames []byte
		var err error
		if frames, err = s.Seal(frames, TypeData, []byte("last")); err != nil {
			t.Fatal(err)
		}
		if frames, err = s.Seal(frames, TypeRekey, nil); err != nil {
			t.Fatal(err)
		}
		s.Rekey()
		if frames, err = s.Seal(frames, TypeClose, nil); err != nil {
			t.Fatal(err)
		}
		mustWrite(t, b.NetConn(), frames)
		time.Sleep(20 * time.Millisecond)
		buf := make([]byte, 4)
		if n, err := a.Read(buf); err != nil || string(buf[:n]) != "last" {
			t.Fatalf("Read = %q, %v", buf[:n], err)
		}
		if err := a.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if !socketClosed(a, 0) {
			t.Fatal("socket open after Close returned, with the peer's close record buffered")
		}
	})
}

// TestCloseUndecryptable: records Close cannot open (here under another key: the case of a
// client that closes before reading the server's verdict, whose application key it never
// installed) are skipped frame by frame up to the end of the stream.
func TestCloseUndecryptable(t *testing.T) {
	setCloseWait(t, time.Minute)
	other := NewHalf([32]byte{1}, 0)
	for name, first := range map[string][]byte{
		"record under another key": seal(t, other, TypeData, []byte("under another key")),
		"plaintext frame":          {FrameAlert, 0, 1, 9},
	} {
		raw, rc := rawToKeyed(t)
		if err := rc.Close(); err != nil {
			t.Fatalf("%s: Close: %v", name, err)
		}
		mustWrite(t, raw, first)
		mustWrite(t, raw, seal(t, sealer(), TypeClose, nil)) // a close record, no longer looked for
		if socketClosed(rc, 50*time.Millisecond) {
			t.Fatalf("%s: socket closed at a record after one it could not open", name)
		}
		raw.Close()
		if !socketClosed(rc, 5*time.Second) {
			t.Fatalf("%s: socket still open 5 s after the peer's end of stream", name)
		}
	}
}

// TestCloseDetached: a connection handed over to another process closes its socket at once,
// with neither a close record nor a wait.
func TestCloseDetached(t *testing.T) {
	setCloseWait(t, time.Minute)
	a, b := keyedPair(t)
	if _, err := a.Export(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if !socketClosed(a, 0) {
		t.Fatal("socket open after Close returned")
	}
	if _, err := b.Read(make([]byte, 1)); !errors.Is(err, ErrTruncated) {
		t.Fatalf("peer Read: %v, want ErrTruncated (no close record)", err)
	}
}

// TestCloseInterruptsBlockedWrite: a Write blocked on a peer that does not read is
// interrupted by Close, which closes the socket before it returns (no close record can follow
// the half-sent data, and nothing waits for the peer's).
func TestCloseInterruptsBlockedWrite(t *testing.T) {
	setCloseWait(t, time.Minute)
	a, _ := keyedPair(t)
	done := make(chan error, 1)
	go func() {
		_, err := a.Write(make([]byte, 64<<20))
		done <- err
	}()
	for a.activeCall.Load() == 0 { // the Write has started
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	if err := a.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if !socketClosed(a, 0) {
		t.Fatal("socket open after Close returned")
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("blocked Write returned no error after Close")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not interrupt a blocked Write")
	}
}
