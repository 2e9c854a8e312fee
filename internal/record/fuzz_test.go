// SPDX-License-Identifier: Apache-2.0

package record

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
)

// fuzzSeal seals records for seeds with the key the fuzz targets open with.
func fuzzSeal(h *Half, typ byte, content []byte) []byte {
	f, err := h.Seal(nil, typ, content)
	if err != nil {
		panic(err)
	}
	return f
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// FuzzOpen opens arbitrary bytes as one record frame (header || body) with a fixed key. Open
// must fail with ErrAuth or ErrFrameTooShort, unless the bytes are exactly a record sealed
// under that key and nonce, which sealing the opened content again must reproduce.
func FuzzOpen(f *testing.F) {
	valid := fuzzSeal(sealer(), TypeData, []byte("hello"))
	maxRec := fuzzSeal(sealer(), TypeData, make([]byte, MaxPlaintext))
	empty := fuzzSeal(sealer(), TypeData, nil)
	f.Add(valid)                                              // a valid record
	f.Add(empty)                                              // smallest valid record: tag and inner type only
	f.Add(maxRec)                                             // max frame: body of MaxBody bytes
	f.Add(append(append([]byte(nil), maxRec...), 0))          // frame+1: a byte past the max frame
	f.Add(fuzzSeal(sealer(), TypeClose, nil))                 // a close record
	f.Add([]byte{})                                           // empty input
	f.Add([]byte{FrameRecord})                                // truncated inside the header (type only)
	f.Add([]byte{FrameRecord, 0})                             // truncated inside the length
	f.Add([]byte{FrameRecord, 0, 17})                         // header only, no body
	f.Add(append([]byte{FrameRecord, 0, 16}, empty[3:19]...)) // short tag: 16 bytes, no inner type
	f.Add(append([]byte{FrameRecord, 0, 15}, empty[3:18]...)) // short tag: 15 bytes
	f.Add(append([]byte{FrameAlert}, valid[1:]...))           // wrong type byte in the header
	f.Add(valid[:len(valid)-1])                               // truncated inside the tag
	f.Add(valid[:len(valid)-TagLen])                          // truncated before the tag
	f.Fuzz(func(t *testing.T, data []byte) {
		hdr, body := data[:min(len(data), HeaderLen)], data[min(len(data), HeaderLen):]
		orig := append([]byte(nil), data...)
		h := sealer()
		typ, content, err := h.Open(hdr, append([]byte(nil), body...))
		_, nonce := h.Key()
		if err != nil {
			if !errors.Is(err, ErrAuth) && !errors.Is(err, ErrFrameTooShort) {
				t.Fatalf("unexpected error %v", err)
			}
			if len(body) < TagLen+1 && !errors.Is(err, ErrFrameTooShort) {
				t.Fatalf("body of %d bytes: %v, want ErrFrameTooShort", len(body), err)
			}
			if typ != 0 || content != nil || nonce != 0 {
				t.Fatalf("failed Open returned type %d, %d bytes, nonce %d", typ, len(content), nonce)
			}
			return
		}
		if nonce != 1 {
			t.Fatalf("nonce %d after one record", nonce)
		}
		again := fuzzSeal(sealer(), typ, content)
		if !bytes.Equal(again, orig) {
			t.Fatalf("opened type 0x%02x with %d bytes, but sealing them gives a different frame", typ, len(content))
		}
	})
}

// chunkConn serves a byte stream in chunks of a fixed size, then io.EOF.
type chunkConn struct {
	net.Conn
	data  []byte
	chunk int
}

func (c *chunkConn) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), c.chunk)], c.data)
	c.data = c.data[n:]
	return n, nil
}

func (c *chunkConn) Write(p []byte) (int, error) { return len(p), nil }
func (c *chunkConn) Close() error                { return nil }

// refDecode is a straightforward reference decoder of a record stream: the application data
// it carries and the error that ends it.
func refDecode(stream []byte) ([]byte, error) {
	h := sealer()
	var data []byte
	for {
		if len(stream) < HeaderLen {
			return data, ErrTruncated
		}
		n := int(stream[1])<<8 | int(stream[2])
		if len(stream) < HeaderLen+n {
			return data, ErrTruncated
		}
		hdr := append([]byte(nil), stream[:HeaderLen]...)
		body := append([]byte(nil), stream[HeaderLen:HeaderLen+n]...)
		stream = stream[HeaderLen+n:]
		if hdr[0] != FrameRecord {
			return data, ErrUnexpectedFrame
		}
		typ, content, err := h.Open(hdr, body)
		if err != nil {
			return data, err
		}
		switch typ {
		case TypeRekey:
			h.Rekey()
		case TypeClose:
			return data, io.EOF
		case TypeData:
			data = append(data, content...)
		default:
			return data, ErrUnexpectedFrame
		}
	}
}

// FuzzConnRead feeds arbitrary bytes to a keyed record.Conn, delivered in chunks of a size
// taken from the first input byte and read with a buffer whose size is the second byte. The
// connection must never panic, must return exactly the data a reference decoder finds, and
// must end with the same error, which then sticks.
func FuzzConnRead(f *testing.F) {
	rec := func(h *Half, typ byte, s string) []byte { return fuzzSeal(h, typ, []byte(s)) }
	// A valid stream: data, an empty data record, a rekey, data under the new key, close.
	h := sealer()
	r0 := rec(h, TypeData, "first")
	r1 := rec(h, TypeData, "")
	rk := rec(h, TypeRekey, "")
	h.Rekey()
	r2 := rec(h, TypeData, "after rekey")
	cl := rec(h, TypeClose, "")
	stream := cat(r0, r1, rk, r2, cl)
	maxRec := fuzzSeal(sealer(), TypeData, make([]byte, MaxPlaintext))
	closeAfterMax := func() []byte {
		h := sealer()
		return cat(fuzzSeal(h, TypeData, make([]byte, MaxPlaintext)), fuzzSeal(h, TypeClose, nil))
	}()

	add := func(chunk, rbuf byte, s []byte) { f.Add(append([]byte{chunk, rbuf}, s...)) }
	add(255, 255, stream)                                    // valid stream with a rekey, read in large chunks
	add(0, 0, stream)                                        // the same, delivered and read one byte at a time
	add(2, 7, stream)                                        // chunks that straddle headers and tags
	add(255, 255, cat(r0, r1, rk, r2))                       // valid records, stream ends without close
	add(255, 255, closeAfterMax)                             // max frame then close
	add(255, 255, maxRec)                                    // max frame, then the stream ends
	add(255, 255, cat(maxRec, []byte{0}))                    // frame+1: one byte past the max frame
	add(255, 255, nil)                                       // empty stream
	add(255, 255, r0[:1])                                    // truncated in the header's type
	add(255, 255, r0[:2])                                    // truncated in the header's length
	add(255, 255, r0[:HeaderLen])                            // truncated after the header
	add(255, 255, r0[:HeaderLen+3])                          // truncated in the ciphertext
	add(255, 255, r0[:len(r0)-TagLen])                       // truncated before the tag
	add(255, 255, r0[:len(r0)-1])                            // truncated in the tag
	add(255, 255, cat(r0, r1[:5]))                           // a record then a truncated one
	add(255, 255, cat([]byte{FrameRecord, 0, 16}, r0[3:19])) // short tag: 16-byte body
	add(255, 255, cat([]byte{FrameRecord, 0, 0}))            // empty record body
	add(255, 255, cat([]byte{FrameAlert}, r0[1:]))           // wrong frame type byte
	add(255, 255, cat([]byte{FrameClientHello, 0, 1, 0}))    // plaintext frame after keys
	add(255, 255, cat(r0, r0))                               // replayed record
	add(255, 255, cat(r2, r0))                               // record under the wrong key
	add(255, 255, rec(sealer(), TypeVerdict, "late"))        // handshake record after keys
	f.Add([]byte{})                                          // no config bytes at all
	f.Fuzz(func(t *testing.T, data []byte) {
		chunk, rbuf := 1, 1
		if len(data) >= 2 {
			chunk, rbuf = 1+int(data[0])*8, 1+int(data[1])
			data = data[2:]
		} else {
			data = nil
		}
		wantData, wantErr := refDecode(data)

		cc := &chunkConn{data: append([]byte(nil), data...), chunk: chunk}
		rc := NewConn(cc)
		rc.SetKeys(NewHalf(testKeys[1], 0), sealer())
		var got []byte
		buf := make([]byte, rbuf)
		var err error
		for i := 0; ; i++ {
			if i > len(data)+2 {
				t.Fatalf("no error after %d reads of a %d-byte stream", i, len(data))
			}
			var n int
			n, err = rc.Read(buf)
			if n < 0 || n > len(buf) {
				t.Fatalf("Read returned %d", n)
			}
			got = append(got, buf[:n]...)
			if err != nil {
				if n != 0 {
					t.Fatalf("Read returned %d bytes with error %v", n, err)
				}
				break
			}
			if n == 0 {
				t.Fatal("Read returned 0 bytes and no error")
			}
		}
		if !bytes.Equal(got, wantData) {
			t.Fatalf("read %d bytes, reference decoder %d (or different bytes)", len(got), len(wantData))
		}
		if !errors.Is(err, wantErr) {
			t.Fatalf("error %v, reference %v", err, wantErr)
		}
		if errors.Is(wantErr, ErrTruncated) && errors.Is(err, io.EOF) {
			t.Fatal("a stream without a close record ended in io.EOF")
		}
		if _, err2 := rc.Read(buf); !errors.Is(err2, wantErr) {
			t.Fatalf("error did not stick: then %v", err2)
		}
	})
}
