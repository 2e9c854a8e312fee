// SPDX-License-Identifier: Apache-2.0

package record

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"testing"
)

// capConn records what is written to it; with limit >= 0, a Write takes at most limit more
// bytes and then times out, as a socket whose write deadline passed.
type capConn struct {
	net.Conn
	out    bytes.Buffer
	limit  int
	writes int
}

func (c *capConn) Write(p []byte) (int, error) {
	c.writes++
	if c.limit >= 0 && len(p) > c.limit {
		n := c.limit
		c.out.Write(p[:n])
		c.limit = 0
		return n, os.ErrDeadlineExceeded
	}
	if c.limit >= 0 {
		c.limit -= len(p)
	}
	c.out.Write(p)
	return len(p), nil
}

// openAll opens the records of stream with a fresh Half for testKeys[0] (rekeying where
// told) and returns the data and the number of records.
func openAll(t *testing.T, stream []byte) ([]byte, int) {
	t.Helper()
	h := NewHalf(testKeys[0], 0)
	var data []byte
	n := 0
	for rest := stream; len(rest) > 0; n++ {
		if len(rest) < HeaderLen {
			t.Fatalf("trailing %d bytes", len(rest))
		}
		l := int(rest[1])<<8 | int(rest[2])
		if len(rest) < HeaderLen+l {
			t.Fatalf("record %d cut: %d of %d bytes", n, len(rest)-HeaderLen, l)
		}
		typ, content, err := h.Open(rest[:HeaderLen], append([]byte(nil), rest[HeaderLen:HeaderLen+l]...))
		if err != nil {
			t.Fatalf("record %d: %v", n, err)
		}
		switch typ {
		case TypeRekey:
			h.Rekey()
		case TypeData:
			data = append(data, content...)
		default:
			t.Fatalf("record %d: type 0x%02x", n, typ)
		}
		rest = rest[HeaderLen+l:]
	}
	return data, n
}

// TestWriteBatch: a large Write seals several records and sends them with one write.
func TestWriteBatch(t *testing.T) {
	cc := &capConn{limit: -1}
	c := NewConn(cc)
	c.SetKeys(NewHalf(testKeys[0], 0), NewHalf(testKeys[1], 0))
	p := make([]byte, 2*writeBatch*writeChunk+5)
	rand.Read(p)
	if n, err := c.Write(p); n != len(p) || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if cc.writes != 3 {
		t.Fatalf("%d writes for %d records, want 3 (batches of %d)", cc.writes, 2*writeBatch+1, writeBatch)
	}
	if got, _ := openAll(t, cc.out.Bytes()); !bytes.Equal(got, p) {
		t.Fatal("records do not carry the data")
	}
}

// TestWriteTimeoutInBatch: a write that times out inside a batch of records counts as written
// the records of which something went out (their rest goes out first on the next Write) and
// takes back the others, as if never sealed: with the deadline lifted, writing the rest gives
// the peer exactly the data, in records it opens in order, across rekeys.
func TestWriteTimeoutInBatch(t *testing.T) {
	rec := HeaderLen + writeChunk + 1 + TagLen // a full record on the wire
	for _, tc := range []struct {
		name  string
		limit int // bytes the first write takes
		want  int // records counted as written
	}{
		{"nothing sent", 0, 0},
		{"inside the first record", 10, 1},
		{"at the second record", rec, 1},
		{"inside the second record", rec + 1, 2},
		{"inside the last record", (writeBatch-1)*rec + 100, writeBatch}, // past the rekey records too
	} {
		for _, rekeyAfter := range []uint64{DefaultRekeyAfter, 2} {
			cc := &capConn{limit: tc.limit}
			c := NewConn(cc)
			c.SetKeys(NewHalf(testKeys[0], 0), NewHalf(testKeys[1], 0))
			c.SetRekeyAfter(rekeyAfter)
			p := make([]byte, writeBatch*writeChunk+100)
			rand.Read(p)
			n, err := c.Write(p)
			if !errors.Is(err, os.ErrDeadlineExceeded) || n != tc.want*writeChunk {
				t.Fatalf("%s, rekey after %d: Write = %d, %v; want %d and a timeout", tc.name, rekeyAfter, n, err, tc.want*writeChunk)
			}
			cc.limit = -1
			if m, err := c.Write(p[n:]); m != len(p)-n || err != nil {
				t.Fatalf("%s, rekey after %d: second Write = %d, %v", tc.name, rekeyAfter, m, err)
			}
			if got, _ := openAll(t, cc.out.Bytes()); !bytes.Equal(got, p) {
				t.Fatalf("%s, rekey after %d: the peer does not get the data written", tc.name, rekeyAfter)
			}
		}
	}
}

// TestReadIntoCaller: records are read intact whatever the size of the reader's buffer:
// large enough for a record's content and its inner type (decrypted straight into it), just
// too small for that (decrypted in the read buffer and copied), or smaller than the content.
func TestReadIntoCaller(t *testing.T) {
	sizes := []int{0, 1, 100, 4000, MaxPlaintext - 1, MaxPlaintext}
	for _, bufLen := range []int{1, 99, 100, 101, 4001, MaxPlaintext, MaxPlaintext + 1, 256 << 10} {
		raw, rc := rawToKeyed(t)
		s := sealer()
		var want []byte
		go func() {
			var stream []byte
			for _, n := range sizes {
				content := make([]byte, n)
				rand.Read(content)
				want = append(want, content...)
				stream, _ = s.Seal(stream, TypeData, content)
			}
			stream, _ = s.Seal(stream, TypeClose, nil)
			_, _ = raw.Write(stream)
		}()
		var got []byte
		buf := make([]byte, bufLen)
		for {
			n, err := rc.Read(buf)
			if n > bufLen {
				t.Fatalf("buffer of %d: Read returned %d", bufLen, n)
			}
			got = append(got, buf[:n]...)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("buffer of %d: %v", bufLen, err)
			}
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("buffer of %d: %d bytes read, %d written (equal %v)", bufLen, len(got), len(want), bytes.Equal(got, want))
		}
	}
}

// TestSealOpenNoAllocs: sealing into a buffer with room, and opening, allocate nothing (the
// nonce's bytes used to escape to the heap, one allocation per record each way).
func TestSealOpenNoAllocs(t *testing.T) {
	s, o := NewHalf(testKeys[0], 0), NewHalf(testKeys[0], 0)
	content := make([]byte, 1000)
	buf := make([]byte, 0, 2000)
	dst := make([]byte, 2000)
	var frame []byte
	if a := testing.AllocsPerRun(100, func() {
		var err error
		if frame, err = s.Seal(buf[:0], TypeData, content); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Errorf("Seal: %v allocations per record, want 0", a)
	}
	s = NewHalf(testKeys[0], 0)
	if a := testing.AllocsPerRun(100, func() {
		frame, _ = s.Seal(buf[:0], TypeData, content)
		if _, _, err := o.OpenTo(dst, frame[:HeaderLen], frame[HeaderLen:]); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Errorf("Seal and OpenTo: %v allocations per record, want 0", a)
	}
}

// TestWriteBatchBufferReturned: a Write of several records seals them in a pooled buffer,
// not in the connection's own, which stays the size small writes need.
func TestWriteBatchBufferReturned(t *testing.T) {
	cc := &capConn{limit: -1}
	c := NewConn(cc)
	c.SetKeys(NewHalf(testKeys[0], 0), NewHalf(testKeys[1], 0))
	mustWrite(t, c, []byte("small"))
	small := cap(c.out.buf)
	mustWrite(t, c, make([]byte, 1<<20))
	mustWrite(t, c, []byte("small again"))
	if got := cap(c.out.buf); got != small {
		t.Fatalf("the connection's write buffer holds %d bytes after a large Write, %d before", got, small)
	}
	if got, _ := openAll(t, cc.out.Bytes()); len(got) != 1<<20+len("small")+len("small again") {
		t.Fatalf("the peer gets %d bytes", len(got))
	}
}

// BenchmarkSealOpen seals and opens full records (AES-256-GCM, 64 KiB), as a bulk transfer's
// two ends do: the cryptographic part of the record layer's CPU per byte, with which
// docs/BENCHMARKS.md computes the floor of BenchmarkBulkCompare.
func BenchmarkSealOpen(b *testing.B) {
	s, o := NewHalf(testKeys[0], 0), NewHalf(testKeys[0], 0)
	content := make([]byte, MaxPlaintext)
	rand.Read(content)
	buf := make([]byte, 0, HeaderLen+MaxBody)
	dst := make([]byte, MaxPlaintext+1)
	b.SetBytes(MaxPlaintext)
	for b.Loop() {
		frame, err := s.Seal(buf[:0], TypeData, content)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := o.OpenTo(dst, frame[:HeaderLen], frame[HeaderLen:]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/MaxPlaintext, "ns/B")
}

// TestReadIntoCallerTampered: a record that fails authentication leaves none of its
// decryption in the reader's buffer, which it is decrypted straight into: with the tag
// altered, AES-GCM's keystream still turns the body into the sender's plaintext, and a caller
// that looks at its buffer after the error (beyond n = 0) must not find it there.
func TestReadIntoCallerTampered(t *testing.T) {
	secret := bytes.Repeat([]byte("secret payload "), 100)
	orig := seal(t, sealer(), TypeData, secret)
	for _, where := range []int{HeaderLen, len(orig) - TagLen - 1, len(orig) - 1} {
		raw, rc := rawToKeyed(t)
		bad := append([]byte(nil), orig...)
		bad[where] ^= 0x01
		mustWrite(t, raw, bad)
		buf := make([]byte, 2*len(secret))
		n, err := rc.Read(buf)
		if n != 0 || !errors.Is(err, ErrAuth) {
			t.Fatalf("byte %d altered: %d bytes, %v; want ErrAuth", where, n, err)
		}
		if bytes.Contains(buf, []byte("secret payload")) {
			t.Fatalf("byte %d altered: the caller's buffer holds the record's unauthenticated plaintext", where)
		}
	}
}
