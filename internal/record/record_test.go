// SPDX-License-Identifier: Apache-2.0

package record

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"math"
	"net"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"
	"ubns.dev/netauth/internal/testutil"

	"github.com/flynn/noise"
)

// testKeys are the two directions' keys of a test connection.
var testKeys = [2][32]byte{
	{0: 0xa1, 31: 0x1a},
	{0: 0xb2, 31: 0x2b},
}

// keyedPair returns two keyed record connections talking to each other over loopback TCP.
func keyedPair(t testing.TB) (a, b *Conn) {
	t.Helper()
	na, nb := testutil.TCPPair(t)
	a, b = NewConn(na), NewConn(nb)
	a.SetKeys(NewHalf(testKeys[0], 0), NewHalf(testKeys[1], 0))
	b.SetKeys(NewHalf(testKeys[1], 0), NewHalf(testKeys[0], 0))
	return a, b
}

// rawToKeyed returns a raw connection and a keyed record connection reading what the raw
// one writes (with the keys of sealer()).
func rawToKeyed(t testing.TB) (raw net.Conn, rc *Conn) {
	t.Helper()
	na, nb := testutil.TCPPair(t)
	rc = NewConn(nb)
	rc.SetKeys(NewHalf(testKeys[1], 0), NewHalf(testKeys[0], 0))
	return na, rc
}

// sealer returns a Half that seals what rawToKeyed's record connection opens.
func sealer() *Half { return NewHalf(testKeys[0], 0) }

func seal(t testing.TB, h *Half, typ byte, content []byte) []byte {
	t.Helper()
	f, err := h.Seal(nil, typ, content)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func mustWrite(t testing.TB, c net.Conn, b []byte) {
	t.Helper()
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
}

func TestSealOpenRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 100, MaxPlaintext - 1, MaxPlaintext} {
		content := make([]byte, n)
		rand.Read(content)
		s, o := NewHalf(testKeys[0], 0), NewHalf(testKeys[0], 0)
		for i := range 3 {
			f := seal(t, s, TypeData, content)
			bodyLen := n + 1 + TagLen
			if len(f) != HeaderLen+bodyLen || f[0] != FrameRecord || int(f[1])<<8|int(f[2]) != bodyLen {
				t.Fatalf("content %d: frame of %d bytes with header % x, want body %d", n, len(f), f[:HeaderLen], bodyLen)
			}
			if n >= 16 && bytes.Contains(f, content) { // shorter contents may occur by chance
				t.Fatalf("content %d: plaintext visible in the record", n)
			}
			typ, got, err := o.Open(f[:HeaderLen], f[HeaderLen:])
			if err != nil || typ != TypeData || !bytes.Equal(got, content) {
				t.Fatalf("content %d record %d: open = %d, %d bytes, %v", n, i, typ, len(got), err)
			}
		}
		if _, sn := s.Key(); sn != 3 {
			t.Fatalf("sealer nonce %d after 3 records", sn)
		}
		if _, on := o.Key(); on != 3 {
			t.Fatalf("opener nonce %d after 3 records", on)
		}
	}
	// Every inner type survives the round trip.
	s, o := NewHalf(testKeys[0], 0), NewHalf(testKeys[0], 0)
	for _, typ := range []byte{TypeData, TypeClose, TypeRekey, TypeServerAuth, TypeClientAuth, TypeVerdict, 0xff} {
		f := seal(t, s, typ, []byte("x"))
		got, c, err := o.Open(f[:HeaderLen], f[HeaderLen:])
		if err != nil || got != typ || string(c) != "x" {
			t.Fatalf("type 0x%02x: got 0x%02x %q %v", typ, got, c, err)
		}
	}
	// Seal appends to dst without touching what is there.
	prefix := []byte("prefix")
	f, err := NewHalf(testKeys[0], 0).Seal(append([]byte(nil), prefix...), TypeData, []byte("abc"))
	if err != nil || !bytes.HasPrefix(f, prefix) || len(f) != len(prefix)+HeaderLen+3+1+TagLen {
		t.Fatalf("Seal with a prefix: %q %v", f, err)
	}
}

// TestHalfMatchesNoise checks the record layer against flynn/noise's CipherState: a record
// body is the Noise encryption of content || type with the header as associated data, the
// nonce is the Noise nonce, and Rekey is Noise's REKEY.
func TestHalfMatchesNoise(t *testing.T) {
	suite := noise.NewCipherSuite(noise.DH25519, noise.CipherAESGCM, noise.HashSHA256)
	cs := noise.UnsafeNewCipherState(suite, testKeys[0], 0)
	h := NewHalf(testKeys[0], 0)
	for i := range 5 {
		content := []byte{byte(i), 1, 2, 3}
		f := seal(t, h, TypeData, content)
		want, err := cs.Encrypt(nil, f[:HeaderLen], append(append([]byte(nil), content...), TypeData))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(f[HeaderLen:], want) {
			t.Fatalf("record %d differs from the Noise encryption", i)
		}
		if i == 2 {
			h.Rekey()
			cs.Rekey()
			if hk, _ := h.Key(); hk != cs.UnsafeKey() {
				t.Fatal("Rekey differs from Noise's REKEY")
			}
			if hk, _ := h.Key(); hk == testKeys[0] {
				t.Fatal("Rekey left the key unchanged")
			}
		}
	}
	if _, n := h.Key(); n != cs.Nonce() {
		t.Fatalf("nonce %d, Noise %d", n, cs.Nonce())
	}
}

func TestOpenTamperedHalf(t *testing.T) {
	f := seal(t, sealer(), TypeData, []byte("attack at dawn"))
	for i := range len(f) {
		for bit := range 8 {
			g := append([]byte(nil), f...)
			g[i] ^= 1 << bit
			o := sealer()
			typ, c, err := o.Open(g[:HeaderLen], g[HeaderLen:])
			if !errors.Is(err, ErrAuth) {
				t.Fatalf("byte %d bit %d flipped: Open = %d %q %v, want ErrAuth", i, bit, typ, c, err)
			}
			if _, n := o.Key(); n != 0 {
				t.Fatalf("failed Open advanced the nonce to %d", n)
			}
		}
	}
	// The body must be at least tag + inner type.
	for _, n := range []int{0, 1, TagLen - 1, TagLen} {
		if _, _, err := sealer().Open(f[:HeaderLen], make([]byte, n)); !errors.Is(err, ErrFrameTooShort) {
			t.Fatalf("body of %d bytes: %v, want ErrFrameTooShort", n, err)
		}
	}
}

func TestNonceLimit(t *testing.T) {
	h := NewHalf(testKeys[0], math.MaxUint64-1)
	f, err := h.Seal(nil, TypeData, []byte("last"))
	if err != nil {
		t.Fatalf("last nonce: %v", err)
	}
	if _, err := h.Seal(nil, TypeData, []byte("one too many")); !errors.Is(err, ErrNonceLimit) {
		t.Fatalf("Seal at the reserved nonce: %v, want ErrNonceLimit", err)
	}
	o := NewHalf(testKeys[0], math.MaxUint64-1)
	if _, c, err := o.Open(f[:HeaderLen], f[HeaderLen:]); err != nil || string(c) != "last" {
		t.Fatalf("open last record: %q %v", c, err)
	}
	if _, _, err := o.Open(f[:HeaderLen], f[HeaderLen:]); !errors.Is(err, ErrNonceLimit) {
		t.Fatalf("Open at the reserved nonce: %v, want ErrNonceLimit", err)
	}
	// A connection whose nonces are exhausted fails writes for good.
	a, _ := keyedPair(t)
	a.SetKeys(NewHalf(testKeys[0], math.MaxUint64), NewHalf(testKeys[1], 0))
	if _, err := a.Write([]byte("x")); !errors.Is(err, ErrNonceLimit) {
		t.Fatalf("Write: %v, want ErrNonceLimit", err)
	}
	if err := a.QueueRecord(TypeData, nil); !errors.Is(err, ErrNonceLimit) {
		t.Fatalf("QueueRecord after the limit: %v, want ErrNonceLimit", err)
	}
}

func TestSealTooLargePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("Seal of MaxPlaintext+1 bytes did not panic")
		}
	}()
	_, _ = sealer().Seal(nil, TypeData, make([]byte, MaxPlaintext+1))
}

func TestConnRoundTrip(t *testing.T) {
	a, b := keyedPair(t)
	msgs := []string{"hello", "", "world", string(bytes.Repeat([]byte{'z'}, 1000))}
	for _, m := range msgs {
		n, err := a.Write([]byte(m))
		if err != nil || n != len(m) {
			t.Fatalf("Write(%d bytes) = %d, %v", len(m), n, err)
		}
	}
	want := []byte("helloworld" + msgs[3])
	got := make([]byte, len(want))
	if _, err := io.ReadFull(b, got); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("ReadFull: %v (equal %v)", err, bytes.Equal(got, want))
	}
	// The other direction, read in small pieces.
	mustWrite(t, b, []byte("0123456789"))
	var out []byte
	buf := make([]byte, 3)
	for len(out) < 10 {
		n, err := a.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, buf[:n]...)
		if left := a.Buffered(); left != 10-len(out) {
			t.Fatalf("Buffered = %d after reading %d of 10", left, len(out))
		}
	}
	if string(out) != "0123456789" {
		t.Fatalf("read %q", out)
	}
	if n, err := a.Read(nil); n != 0 || err != nil {
		t.Fatalf("Read(nil) = %d, %v", n, err)
	}
}

// TestWriteEmpty checks that an empty Write sends nothing: a record with no data would make
// the peer's Read return 0, nil.
func TestWriteEmpty(t *testing.T) {
	a, b := keyedPair(t)
	if n, err := a.Write(nil); n != 0 || err != nil {
		t.Fatalf("Write(nil) = %d, %v", n, err)
	}
	mustWrite(t, a, []byte("x"))
	if _, n := b.in.half.Key(); n != 0 {
		t.Fatal("reader opened something before reading")
	}
	buf := make([]byte, 4)
	n, err := b.Read(buf)
	if n != 1 || err != nil {
		t.Fatalf("Read = %d, %v", n, err)
	}
	if _, nonce := b.in.half.Key(); nonce != 1 {
		t.Fatalf("empty Write sent %d records", nonce-1)
	}
}

// TestTamperedRecord flips bits in a record on the wire and then delivers the original,
// untampered record: the connection must fail with ErrAuth and stay failed.
func TestTamperedRecord(t *testing.T) {
	orig := seal(t, sealer(), TypeData, []byte("secret payload"))
	cases := []struct {
		name string
		edit func([]byte) []byte
	}{
		{"header length -1", func(f []byte) []byte { f[2]--; return f[:len(f)-1] }},
		{"header length high byte", func(f []byte) []byte {
			// A length of 256+n needs 256 more bytes: supply them so only the header differs.
			f[1] ^= 1
			return append(f, make([]byte, 256)...)
		}},
		{"first body byte", func(f []byte) []byte { f[HeaderLen] ^= 0x01; return f }},
		{"inner type byte", func(f []byte) []byte { f[len(f)-TagLen-1] ^= 0x01; return f }},
		{"first tag byte", func(f []byte) []byte { f[len(f)-TagLen] ^= 0x80; return f }},
		{"last tag byte", func(f []byte) []byte { f[len(f)-1] ^= 0x01; return f }},
		{"truncated tag", func(f []byte) []byte {
			f[2] -= 4
			return f[:len(f)-4]
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			raw, rc := rawToKeyed(t)
			bad := tc.edit(append([]byte(nil), orig...))
			mustWrite(t, raw, append(bad, orig...))
			buf := make([]byte, 64)
			for i := range 3 {
				n, err := rc.Read(buf)
				if n != 0 || !errors.Is(err, ErrAuth) {
					t.Fatalf("read %d: %d bytes %q, %v; want ErrAuth", i, n, buf[:n], err)
				}
			}
			if _, _, err := rc.ReadRecord(); !errors.Is(err, ErrAuth) {
				t.Fatalf("ReadRecord after failure: %v", err)
			}
		})
	}
}

func TestReorderedAndReplayedRecords(t *testing.T) {
	s := sealer()
	r0 := seal(t, s, TypeData, []byte("zero"))
	r1 := seal(t, s, TypeData, []byte("one"))
	r2 := seal(t, s, TypeData, []byte("two"))
	buf := make([]byte, 16)

	t.Run("reordered", func(t *testing.T) {
		raw, rc := rawToKeyed(t)
		mustWrite(t, raw, append(append(append([]byte(nil), r1...), r0...), r2...))
		if n, err := rc.Read(buf); !errors.Is(err, ErrAuth) {
			t.Fatalf("record 1 first: %q, %v; want ErrAuth", buf[:n], err)
		}
		if n, err := rc.Read(buf); !errors.Is(err, ErrAuth) {
			t.Fatalf("then record 0: %q, %v; want ErrAuth", buf[:n], err)
		}
	})
	t.Run("replayed", func(t *testing.T) {
		raw, rc := rawToKeyed(t)
		mustWrite(t, raw, append(append([]byte(nil), r0...), r0...))
		if n, err := rc.Read(buf); err != nil || string(buf[:n]) != "zero" {
			t.Fatalf("record 0: %q, %v", buf[:n], err)
		}
		if n, err := rc.Read(buf); !errors.Is(err, ErrAuth) {
			t.Fatalf("record 0 again: %q, %v; want ErrAuth", buf[:n], err)
		}
	})
	t.Run("dropped", func(t *testing.T) {
		raw, rc := rawToKeyed(t)
		mustWrite(t, raw, append(append([]byte(nil), r0...), r2...))
		if n, err := rc.Read(buf); err != nil || string(buf[:n]) != "zero" {
			t.Fatalf("record 0: %q, %v", buf[:n], err)
		}
		if n, err := rc.Read(buf); !errors.Is(err, ErrAuth) {
			t.Fatalf("record 2 after a dropped record 1: %q, %v; want ErrAuth", buf[:n], err)
		}
	})
	t.Run("reflected", func(t *testing.T) {
		// A record sent back to its sender does not open under the other direction's key.
		na, nb := testutil.TCPPair(t)
		ca := NewConn(na)
		ca.SetKeys(NewHalf(testKeys[0], 0), NewHalf(testKeys[1], 0))
		f := seal(t, NewHalf(testKeys[0], 0), TypeData, []byte("mirror"))
		mustWrite(t, nb, f)
		if n, err := ca.Read(buf); !errors.Is(err, ErrAuth) {
			t.Fatalf("own record reflected: %q, %v; want ErrAuth", buf[:n], err)
		}
	})
}

func TestRekey(t *testing.T) {
	a, b := keyedPair(t)
	a.SetRekeyAfter(3)
	b.SetRekeyAfter(3)
	buf := make([]byte, 32)
	for i := range 10 {
		msg := []byte{'a', byte(i)}
		mustWrite(t, a, msg)
		if n, err := io.ReadFull(b, buf[:2]); err != nil || !bytes.Equal(buf[:n], msg) {
			t.Fatalf("a->b record %d: %q %v", i, buf[:n], err)
		}
		reply := []byte{'b', byte(i), 0}
		mustWrite(t, b, reply)
		if n, err := io.ReadFull(a, buf[:3]); err != nil || !bytes.Equal(buf[:n], reply) {
			t.Fatalf("b->a record %d: %q %v", i, buf[:n], err)
		}
	}
	// 10 data records with a rekey after every third: 3 rekey records, 13 nonces, 3 REKEYs.
	for _, d := range []struct {
		name       string
		send, recv *Half
		initial    [32]byte
	}{
		{"a->b", a.out.half, b.in.half, testKeys[0]},
		{"b->a", b.out.half, a.in.half, testKeys[1]},
	} {
		sk, sn := d.send.Key()
		rk, rn := d.recv.Key()
		if sk != rk || sn != rn {
			t.Fatalf("%s: sender and receiver disagree (nonces %d, %d; keys equal %v)", d.name, sn, rn, sk == rk)
		}
		if sn != 13 {
			t.Fatalf("%s: nonce %d, want 13 (10 data + 3 rekey records)", d.name, sn)
		}
		want := NewHalf(d.initial, 0)
		for range 3 {
			want.Rekey()
		}
		if wk, _ := want.Key(); wk != sk {
			t.Fatalf("%s: key is not the initial key rekeyed 3 times", d.name)
		}
	}
	if a.out.sent != 1 {
		t.Fatalf("records since the last rekey: %d, want 1", a.out.sent)
	}
	// A rekey record read by ReadRecord is processed and skipped.
	raw, rc := rawToKeyed(t)
	s := sealer()
	stream := seal(t, s, TypeRekey, nil)
	s.Rekey()
	stream = append(stream, seal(t, s, TypeVerdict, []byte("after rekey"))...)
	mustWrite(t, raw, stream)
	typ, c, err := rc.ReadRecord()
	if err != nil || typ != TypeVerdict || string(c) != "after rekey" {
		t.Fatalf("ReadRecord across a rekey: 0x%02x %q %v", typ, c, err)
	}
}

// TestRekeyMismatch checks that a receiver does not follow a sender that changed
// keys without announcing it (and vice versa).
func TestRekeyMismatch(t *testing.T) {
	raw, rc := rawToKeyed(t)
	s := sealer()
	s.Rekey() // silent rekey
	mustWrite(t, raw, seal(t, s, TypeData, []byte("x")))
	if _, err := rc.Read(make([]byte, 4)); !errors.Is(err, ErrAuth) {
		t.Fatalf("unannounced rekey: %v, want ErrAuth", err)
	}
	raw, rc = rawToKeyed(t)
	s = sealer()
	stream := seal(t, s, TypeRekey, nil) // announced but the sender keeps the old key
	stream = append(stream, seal(t, s, TypeData, []byte("x"))...)
	mustWrite(t, raw, stream)
	if _, err := rc.Read(make([]byte, 4)); !errors.Is(err, ErrAuth) {
		t.Fatalf("rekey record without rekeying: %v, want ErrAuth", err)
	}
}

func TestCloseRecord(t *testing.T) {
	a, b := keyedPair(t)
	mustWrite(t, a, []byte("bye"))
	if err := a.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	buf := make([]byte, 8)
	if n, err := b.Read(buf); err != nil || string(buf[:n]) != "bye" {
		t.Fatalf("Read = %q, %v", buf[:n], err)
	}
	for range 2 {
		if n, err := b.Read(buf); n != 0 || err != io.EOF {
			t.Fatalf("Read after the close record = %d, %v; want io.EOF", n, err)
		}
	}
	if _, _, err := b.ReadRecord(); err != io.EOF {
		t.Fatalf("ReadRecord after close: %v", err)
	}
	// The closed side can neither write nor read, and a second Close says so.
	if _, err := a.Write([]byte("x")); err == nil {
		t.Fatal("Write after Close succeeded")
	}
	if _, err := a.Read(buf); err == nil {
		t.Fatal("Read after Close succeeded")
	}
	if err := a.Close(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
}

// TestCloseBeforeKeys closes a connection still in the handshake phase: no record can be
// sent, and the peer sees the stream end.
func TestCloseBeforeKeys(t *testing.T) {
	na, nb := testutil.TCPPair(t)
	a := NewConn(na)
	if err := a.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	b := NewConn(nb)
	if _, _, err := b.ReadFrame(100); !errors.Is(err, ErrTruncated) {
		t.Fatalf("ReadFrame: %v", err)
	}
}

func TestTruncated(t *testing.T) {
	s := sealer()
	rec := seal(t, s, TypeData, []byte("data"))
	next := seal(t, s, TypeData, []byte("more data"))
	cases := []struct {
		name   string
		stream []byte
		data   string // readable before the error
	}{
		{"nothing", nil, ""},
		{"after a record", rec, "data"},
		{"inside a header", append(append([]byte(nil), rec...), next[:2]...), "data"},
		{"after a header", append(append([]byte(nil), rec...), next[:HeaderLen]...), "data"},
		{"inside a body", append(append([]byte(nil), rec...), next[:HeaderLen+4]...), "data"},
		{"inside the tag", append(append([]byte(nil), rec...), next[:len(next)-1]...), "data"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			raw, rc := rawToKeyed(t)
			if len(tc.stream) > 0 {
				mustWrite(t, raw, tc.stream)
			}
			raw.Close()
			got, err := io.ReadAll(rc)
			if string(got) != tc.data || !errors.Is(err, ErrTruncated) {
				t.Fatalf("ReadAll = %q, %v; want %q and ErrTruncated", got, err, tc.data)
			}
			if errors.Is(err, io.EOF) {
				t.Fatal("truncation reported as io.EOF")
			}
			if _, err := rc.Read(make([]byte, 4)); !errors.Is(err, ErrTruncated) {
				t.Fatalf("Read after truncation: %v", err)
			}
		})
	}
	// Through a record Conn, closing the socket without Close sends no close record.
	a, b := keyedPair(t)
	mustWrite(t, a, []byte("partial"))
	a.NetConn().Close()
	got, err := io.ReadAll(b)
	if string(got) != "partial" || !errors.Is(err, ErrTruncated) {
		t.Fatalf("ReadAll = %q, %v", got, err)
	}
}

// blockingConn delivers its data and then acts as a peer that sent it and stopped: a further
// Read would block (it records that and times out), and it counts the bytes read.
type blockingConn struct {
	net.Conn
	data    []byte
	read    int
	blocked bool
}

func (c *blockingConn) Read(p []byte) (int, error) {
	if len(c.data) > 0 {
		n := copy(p, c.data)
		c.data = c.data[n:]
		c.read += n
		return n, nil
	}
	c.blocked = true
	return 0, os.ErrDeadlineExceeded
}

func (c *blockingConn) Close() error { return nil }

func TestFrameLimit(t *testing.T) {
	for _, tc := range []struct {
		name    string
		length  int
		max     int
		wantErr bool
	}{
		{"max", 100, 100, false},
		{"max+1", 101, 100, true},
		{"largest length", MaxBody, 100, true},
		{"largest length at MaxBody", MaxBody, MaxBody, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bc := &blockingConn{data: []byte{FrameClientHello, byte(tc.length >> 8), byte(tc.length)}}
			if !tc.wantErr {
				bc.data = append(bc.data, make([]byte, tc.length)...)
			}
			rc := NewConn(bc)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			typ, body, err := rc.ReadFrame(tc.max)
			runtime.ReadMemStats(&after)
			if !tc.wantErr {
				if err != nil || typ != FrameClientHello || len(body) != tc.length {
					t.Fatalf("ReadFrame = 0x%02x, %d bytes, %v", typ, len(body), err)
				}
				return
			}
			if !errors.Is(err, ErrUnexpectedFrame) {
				t.Fatalf("ReadFrame = %d bytes, %v; want ErrUnexpectedFrame", len(body), err)
			}
			// Refused on the header alone: it did not wait for the body...
			if bc.blocked || bc.read != HeaderLen {
				t.Fatalf("ReadFrame waited for more (%v) and read %d bytes before refusing", bc.blocked, bc.read)
			}
			// ...nor allocate room for it.
			if d := after.TotalAlloc - before.TotalAlloc; d > 16<<10 {
				t.Fatalf("refusing an oversized frame allocated %d bytes", d)
			}
		})
	}
}

func TestWrongFrameTypeAfterKeys(t *testing.T) {
	valid := seal(t, sealer(), TypeData, []byte("ok"))
	for _, typ := range []byte{FrameClientHello, FrameServerHello, FrameAlert, 0x00, 0x16, 0xff} {
		raw, rc := rawToKeyed(t)
		// A plaintext frame where a record must be, followed by a valid record.
		f := append([]byte{typ, 0, byte(len(valid) - HeaderLen)}, valid[HeaderLen:]...)
		mustWrite(t, raw, append(f, valid...))
		for i := range 2 {
			if n, err := rc.Read(make([]byte, 8)); n != 0 || !errors.Is(err, ErrUnexpectedFrame) {
				t.Fatalf("frame type 0x%02x, read %d: %d, %v; want ErrUnexpectedFrame", typ, i, n, err)
			}
		}
	}
	// A record of a handshake type after the handshake fails Read for good.
	raw, rc := rawToKeyed(t)
	s := sealer()
	mustWrite(t, raw, append(seal(t, s, TypeVerdict, []byte("late")), seal(t, s, TypeData, []byte("data"))...))
	for i := range 2 {
		if n, err := rc.Read(make([]byte, 8)); n != 0 || !errors.Is(err, ErrUnexpectedFrame) {
			t.Fatalf("verdict record via Read, read %d: %d, %v; want ErrUnexpectedFrame", i, n, err)
		}
	}
}

func TestNoKeys(t *testing.T) {
	na, nb := testutil.TCPPair(t)
	a := NewConn(na)
	if _, err := a.Write([]byte("x")); !errors.Is(err, ErrNoKeys) {
		t.Fatalf("Write before SetKeys: %v", err)
	}
	if err := a.QueueRecord(TypeData, nil); !errors.Is(err, ErrNoKeys) {
		t.Fatalf("QueueRecord before SetKeys: %v", err)
	}
	if _, err := a.Read(make([]byte, 1)); !errors.Is(err, ErrNoKeys) {
		t.Fatalf("Read before SetKeys: %v", err)
	}
	// Plaintext frames work before keys; what follows them is buffered for the record phase.
	b := NewConn(nb)
	b.QueueRaw([]byte{FrameClientHello, 0, 3, 'a', 'b', 'c'})
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	typ, body, err := a.ReadFrame(10)
	if err != nil || typ != FrameClientHello || string(body) != "abc" {
		t.Fatalf("ReadFrame = 0x%02x %q %v", typ, body, err)
	}
}

// TestPlaintextThenRecords sends a plaintext frame and a record in one write: the bytes past
// the frame stay buffered and are decrypted once the keys are set.
func TestPlaintextThenRecords(t *testing.T) {
	raw, rc := rawToKeyed(t)
	halves := [2]*Half{rc.out.half, rc.in.half}
	rc.SetKeys(nil, nil)
	stream := []byte{FrameServerHello, 0, 2, 'h', 'i'}
	stream = append(stream, seal(t, sealer(), TypeData, []byte("pipelined"))...)
	mustWrite(t, raw, stream)
	typ, body, err := rc.ReadFrame(10)
	if err != nil || typ != FrameServerHello || string(body) != "hi" {
		t.Fatalf("ReadFrame = 0x%02x %q %v", typ, body, err)
	}
	rc.SetKeys(halves[0], halves[1])
	buf := make([]byte, 16)
	if n, err := rc.Read(buf); err != nil || string(buf[:n]) != "pipelined" {
		t.Fatalf("Read = %q, %v", buf[:n], err)
	}
}

func TestCloseWrite(t *testing.T) {
	a, b := keyedPair(t)
	mustWrite(t, a, []byte("request"))
	if err := a.CloseWrite(); err != nil {
		t.Fatalf("CloseWrite: %v", err)
	}
	got, err := io.ReadAll(b)
	if err != nil || string(got) != "request" {
		t.Fatalf("peer ReadAll = %q, %v; want the request and a clean EOF", got, err)
	}
	if _, err := a.Write([]byte("more")); err == nil {
		t.Fatal("Write after CloseWrite succeeded")
	}
	// The half-closed side still reads the reply.
	mustWrite(t, b, []byte("response"))
	if err := b.Close(); err != nil {
		t.Fatalf("peer Close: %v", err)
	}
	got, err = io.ReadAll(a)
	if err != nil || string(got) != "response" {
		t.Fatalf("ReadAll after CloseWrite = %q, %v", got, err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("Close after CloseWrite: %v", err)
	}
}

func TestReadDeadlineMidFrame(t *testing.T) {
	raw, rc := rawToKeyed(t)
	f := seal(t, sealer(), TypeData, []byte("split across a timeout"))
	mustWrite(t, raw, f[:HeaderLen+5])
	if err := rc.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, err := rc.Read(buf)
	var ne net.Error
	if n != 0 || !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read mid-frame = %d, %v; want a timeout", n, err)
	}
	// The rest of the frame arrives: reading resumes where it stopped.
	mustWrite(t, raw, f[HeaderLen+5:])
	if err := rc.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if n, err := rc.Read(buf); err != nil || string(buf[:n]) != "split across a timeout" {
		t.Fatalf("Read after the timeout = %q, %v", buf[:n], err)
	}
	// The same for a timeout inside the header, in the handshake phase.
	raw2, rc2 := rawToKeyed(t)
	mustWrite(t, raw2, []byte{FrameClientHello})
	_ = rc2.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	if _, _, err := rc2.ReadFrame(10); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("ReadFrame mid-header: %v", err)
	}
	mustWrite(t, raw2, []byte{0, 2, 'o', 'k'})
	_ = rc2.SetReadDeadline(time.Time{})
	if typ, body, err := rc2.ReadFrame(10); err != nil || typ != FrameClientHello || string(body) != "ok" {
		t.Fatalf("ReadFrame after the timeout = 0x%02x %q %v", typ, body, err)
	}
}

func TestLargeWriteSplit(t *testing.T) {
	a, b := keyedPair(t)
	data := make([]byte, 2*MaxPlaintext+10)
	rand.Read(data)
	done := make(chan error, 1)
	go func() {
		n, err := a.Write(data)
		if err == nil && n != len(data) {
			err = io.ErrShortWrite
		}
		if err == nil {
			err = a.Close()
		}
		done <- err
	}()
	// Read the raw frames b's socket receives.
	raw, err := io.ReadAll(b.NetConn())
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Write: %v", err)
	}
	wantBodies := []int{MaxBody, MaxBody, 10 + 1 + TagLen, 1 + TagLen} // 3 data records + close
	var frames [][]byte
	for rest := raw; len(rest) > 0; {
		if len(rest) < HeaderLen {
			t.Fatalf("trailing %d bytes", len(rest))
		}
		n := int(rest[1])<<8 | int(rest[2])
		frames = append(frames, rest[:HeaderLen+n])
		rest = rest[HeaderLen+n:]
	}
	if len(frames) != len(wantBodies) {
		t.Fatalf("%d frames, want %d", len(frames), len(wantBodies))
	}
	o := NewHalf(testKeys[0], 0)
	var got []byte
	for i, f := range frames {
		if f[0] != FrameRecord || len(f)-HeaderLen != wantBodies[i] {
			t.Fatalf("frame %d: type 0x%02x body %d, want a record of %d", i, f[0], len(f)-HeaderLen, wantBodies[i])
		}
		typ, c, err := o.Open(f[:HeaderLen], f[HeaderLen:])
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if i == len(frames)-1 {
			if typ != TypeClose || len(c) != 0 {
				t.Fatalf("last frame: type 0x%02x, %d bytes; want an empty close record", typ, len(c))
			}
			continue
		}
		if typ != TypeData {
			t.Fatalf("frame %d: type 0x%02x", i, typ)
		}
		got = append(got, c...)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("records do not carry the written data")
	}
}

// TestLargeWriteRoundTrip moves several megabytes through a keyed pair with frequent rekeys.
func TestLargeWriteRoundTrip(t *testing.T) {
	a, b := keyedPair(t)
	a.SetRekeyAfter(5)
	data := make([]byte, 3<<20+17)
	rand.Read(data)
	go func() {
		_, _ = a.Write(data)
		_ = a.Close()
	}()
	got, err := io.ReadAll(b)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("ReadAll: %d bytes, %v (equal %v)", len(got), err, bytes.Equal(got, data))
	}
}

// TestConcurrentReadWrite runs a reader and a writer on each side at once (for -race).
func TestConcurrentReadWrite(t *testing.T) {
	a, b := keyedPair(t)
	const n = 200
	var wg sync.WaitGroup
	for _, p := range [][2]*Conn{{a, b}, {b, a}} {
		w, r := p[0], p[1]
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := range n {
				if _, err := w.Write([]byte{byte(i)}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			buf := make([]byte, n)
			if _, err := io.ReadFull(r, buf); err != nil {
				t.Error(err)
				return
			}
			for i := range n {
				if buf[i] != byte(i) {
					t.Errorf("byte %d = %d", i, buf[i])
					return
				}
			}
		}()
	}
	wg.Wait()
}

// TestCloseInterruptsBlockedRead checks that Close makes a Read blocked on the network
// return.
func TestCloseInterruptsBlockedRead(t *testing.T) {
	a, _ := keyedPair(t)
	done := make(chan error, 1)
	go func() {
		_, err := a.Read(make([]byte, 1))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	a.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("blocked Read returned no error after Close")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not interrupt a blocked Read")
	}
}
