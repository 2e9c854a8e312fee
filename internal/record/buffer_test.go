// SPDX-License-Identifier: Apache-2.0

package record

import (
	"bytes"
	"io"
	"testing"
	"ubns.dev/netauth/internal/testutil"
)

func (c *Conn) readBufLen() int {
	c.in.Lock()
	defer c.in.Unlock()
	return len(c.in.buf)
}

// TestReadBufferStartsSmall: a connection in its handshake holds a small read buffer; a
// plaintext frame the reader allowed grows it only to that frame's size; the first record
// too large for it grows it to the full size, and data read across the growth is intact.
func TestReadBufferStartsSmall(t *testing.T) {
	na, nb := testutil.TCPPair(t)
	rc := NewConn(nb)
	if n := rc.readBufLen(); n != rbufInitial {
		t.Fatalf("new connection's read buffer: %d bytes, want %d", n, rbufInitial)
	}
	// A ClientHello-sized frame and another small one fit without growth.
	hello := append([]byte{FrameClientHello, 2110 >> 8, 2110 & 0xff}, bytes.Repeat([]byte{7}, 2110)...)
	mustWrite(t, na, append(hello, FrameClientHello, 0, 1, 9))
	for _, want := range []int{2110, 1} {
		if _, body, err := rc.ReadFrame(2110); err != nil || len(body) != want {
			t.Fatalf("frame: %d bytes, %v; want %d", len(body), err, want)
		}
	}
	if n := rc.readBufLen(); n != rbufInitial {
		t.Fatalf("after handshake-sized frames: %d bytes, want %d", n, rbufInitial)
	}
	// A larger plaintext frame the reader allowed: grown to just that.
	big := append([]byte{FrameClientHello, 0x20, 0}, bytes.Repeat([]byte{8}, 0x2000)...)
	mustWrite(t, na, big)
	if _, body, err := rc.ReadFrame(0x2000); err != nil || !bytes.Equal(body, big[HeaderLen:]) {
		t.Fatalf("large plaintext frame: %v", err)
	}
	if n := rc.readBufLen(); n != len(big) {
		t.Fatalf("after an allowed %d-byte frame: buffer %d bytes, want exactly that", len(big), n)
	}

	// Keyed: small records leave the buffer alone, a large one grows it to the full size.
	rc.SetKeys(NewHalf(testKeys[1], 0), NewHalf(testKeys[0], 0))
	h := sealer()
	small := bytes.Repeat([]byte("s"), 100)
	large := bytes.Repeat([]byte("L"), MaxPlaintext)
	var stream []byte
	for range 3 {
		stream = append(stream, seal(t, h, TypeData, small)...)
	}
	stream = append(stream, seal(t, h, TypeData, large)...)
	stream = append(stream, seal(t, h, TypeData, small)...)
	go func() { _, _ = na.Write(stream) }()
	for i := range 3 {
		got := make([]byte, len(small))
		if _, err := io.ReadFull(rc, got); err != nil || !bytes.Equal(got, small) {
			t.Fatalf("small record %d: %v", i, err)
		}
	}
	if n := rc.readBufLen(); n >= rbufSize {
		t.Fatalf("small records grew the buffer to %d", n)
	}
	want := append(append([]byte(nil), large...), small...)
	got := make([]byte, len(want))
	if _, err := io.ReadFull(rc, got); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("large record across the growth: %v (equal %v)", err, bytes.Equal(got, want))
	}
	if n := rc.readBufLen(); n != rbufSize {
		t.Fatalf("after a large record: buffer %d bytes, want %d", n, rbufSize)
	}
}

// TestImportFullBuffer: a state holding a full read buffer imports intact.
func TestImportFullBuffer(t *testing.T) {
	_, nb := testutil.TCPPair(t)
	plain := bytes.Repeat([]byte("p"), rbufSize/2)
	unread := bytes.Repeat([]byte("u"), rbufSize-len(plain))
	st := &State{SendKey: testKeys[0], RecvKey: testKeys[1], Plain: plain, Unread: unread}
	c, err := Import(nb, st)
	if err != nil {
		t.Fatal(err)
	}
	c.in.Lock()
	defer c.in.Unlock()
	if !bytes.Equal(c.in.plain, plain) || !bytes.Equal(c.in.buf[c.in.pos:c.in.end], unread) {
		t.Fatal("imported buffers differ from the state")
	}
}
