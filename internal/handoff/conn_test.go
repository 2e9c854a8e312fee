// SPDX-License-Identifier: Apache-2.0

package handoff

import (
	"bytes"
	"encoding/binary"
	"errors"
	"golang.org/x/crypto/ssh"
	"reflect"
	"testing"
	"time"

	"ubns.dev/netauth/internal/record"
)

func TestConnRoundTrip(t *testing.T) {
	full := testConn()
	minimal := withKeys(&Conn{State: &record.State{}}) // nil fields come back nil
	large := testConn()
	large.State.Unread = bytes.Repeat([]byte{1}, 100<<10)
	large.State.Plain = bytes.Repeat([]byte{2}, 28<<10) // a full read buffer
	large.User = string(bytes.Repeat([]byte("u"), MaxNameLen))
	large.Service = string(bytes.Repeat([]byte("s"), MaxNameLen))
	large.HandshakeHash = make([]byte, MaxHashLen)
	large.Statement = make([]byte, MaxStatementLen)
	large.Signature = make([]byte, MaxSignatureLen)
	large.RemoteAddr = string(make([]byte, MaxAddrLen))
	large.LocalAddr = string(make([]byte, MaxAddrLen))
	local := testConn()
	local.AuthTime = time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("X", 3600))
	for name, c := range map[string]*Conn{"full": full, "minimal": minimal, "large": large, "local": local} {
		b := c.Marshal()
		if len(b) > MaxMessage-HeaderLen {
			t.Errorf("%s: %d bytes do not fit a message", name, len(b))
		}
		if cap(b) != len(b) {
			t.Errorf("%s: marshaled into %d bytes of a %d-byte buffer: the size estimate is off", name, len(b), cap(b))
		}
		got, err := ParseConn(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !got.AuthTime.Equal(c.AuthTime) {
			t.Errorf("%s: AuthTime %v, want %v", name, got.AuthTime, c.AuthTime)
		}
		if !bytes.Equal(got.Marshal(), b) {
			t.Errorf("%s: marshal after parse differs", name)
		}
		want := *c
		want.AuthTime, got.AuthTime = time.Time{}, time.Time{}
		if !reflect.DeepEqual(got, &want) {
			t.Errorf("%s: round trip gave\n%+v\nwant\n%+v", name, got, &want)
		}
	}
	// The zero time survives the trip.
	z := withKeys(&Conn{State: &record.State{}})
	got, err := ParseConn(z.Marshal())
	if err != nil || !got.AuthTime.IsZero() {
		t.Errorf("zero AuthTime came back as %v %v", got.AuthTime, err)
	}
}

// junkKey is a public key whose wire form is b, whatever b is.
type junkKey []byte

func (k junkKey) Type() string                        { return "junk" }
func (k junkKey) Marshal() []byte                     { return k }
func (k junkKey) Verify([]byte, *ssh.Signature) error { return errors.New("junk") }

func TestConnZero(t *testing.T) {
	c := testConn()
	hash := c.HandshakeHash
	unread := c.State.Unread
	c.Zero()
	if c.State.SendKey != ([32]byte{}) || c.State.RecvKey != ([32]byte{}) || !bytes.Equal(unread, make([]byte, len(unread))) {
		t.Error("Zero left secrets in the state")
	}
	if !bytes.Equal(hash, bytes.Repeat([]byte{0x42}, 32)) {
		t.Error("Zero wiped the handshake hash, which an Identity may share")
	}
	(&Conn{}).Zero() // no state: nothing to do
}

// fieldOffset returns the offset of the length of the i-th 32-bit length-prefixed field of a
// marshaled Conn (0: User ... 3: Service, 4: HandshakeHash ... 8: LocalAddr).
func fieldOffset(b []byte, i int) int {
	off := 1
	off += 3 + (int(b[off])<<16 | int(b[off+1])<<8 | int(b[off+2]))
	for j := 0; ; j++ {
		if j == 4 {
			off += 1 + 8 + 4 // flags, time
		}
		if j == i {
			return off
		}
		off += 4 + int(binary.BigEndian.Uint32(b[off:]))
	}
}

func TestParseConnRejects(t *testing.T) {
	good := testConn().Marshal()
	mod := func(f func(b []byte) []byte) []byte {
		return f(append([]byte(nil), good...))
	}
	flagsAt := fieldOffset(good, 4) - 13
	cases := map[string][]byte{
		"empty":     nil,
		"version":   mod(func(b []byte) []byte { b[0] = 2; return b }),
		"truncated": good[:len(good)-1],
		"trailing":  append(append([]byte(nil), good...), 0),
		"no state":  withKeys(&Conn{}).Marshal(),
		"bad state": mod(func(b []byte) []byte { b[4] = 9; return b }),
		"flags":     mod(func(b []byte) []byte { b[flagsAt] = 2; return b }),
		"nanoseconds": mod(func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[flagsAt+9:], uint32(time.Second))
			return b
		}),
		"oversized": make([]byte, MaxMessage-HeaderLen+1),
		"huge field length": mod(func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[fieldOffset(b, 0):], 1<<32-1)
			return b
		}),
	}
	over := map[string]func(c *Conn){
		"long user":      func(c *Conn) { c.User = string(make([]byte, MaxNameLen+1)) },
		"long service":   func(c *Conn) { c.Service = string(make([]byte, MaxNameLen+1)) },
		"long user key":  func(c *Conn) { c.Key = junkKey(make([]byte, MaxUserKeyLen+1)) },
		"long host key":  func(c *Conn) { c.HostKey = junkKey(make([]byte, MaxHostKeyLen+1)) },
		"bad user key":   func(c *Conn) { c.Key = junkKey([]byte("\x00\x00\x00\x0bssh-ed25519user-key")) },
		"bad host key":   func(c *Conn) { c.HostKey = junkKey([]byte("\x00\x00\x00\x0bssh-ed25519host-key")) },
		"no user key":    func(c *Conn) { c.Key = nil },
		"no host key":    func(c *Conn) { c.HostKey = nil },
		"long hash":      func(c *Conn) { c.HandshakeHash = make([]byte, MaxHashLen+1) },
		"long statement": func(c *Conn) { c.Statement = make([]byte, MaxStatementLen+1) },
		"long signature": func(c *Conn) { c.Signature = make([]byte, MaxSignatureLen+1) },
		"long remote":    func(c *Conn) { c.RemoteAddr = string(make([]byte, MaxAddrLen+1)) },
		"long local":     func(c *Conn) { c.LocalAddr = string(make([]byte, MaxAddrLen+1)) },
		"full buffer":    func(c *Conn) { c.State.Unread = make([]byte, record.MaxStateSize/2) },
	}
	for name, f := range over {
		c := testConn()
		f(c)
		cases[name] = c.Marshal()
	}
	for name, b := range cases {
		if _, err := ParseConn(b); err == nil {
			t.Errorf("%s: accepted", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

func FuzzParseConn(f *testing.F) {
	f.Add(testConn().Marshal())
	f.Add(withKeys(&Conn{State: &record.State{}}).Marshal())
	resumed := withKeys(&Conn{State: &record.State{Unread: []byte("u")}})
	resumed.User, resumed.Resumed = "u", true
	f.Add(resumed.Marshal())
	f.Add([]byte{connVersion})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConn(b)
		if err != nil {
			return
		}
		if !bytes.Equal(c.Marshal(), b) {
			t.Fatal("parse/marshal round trip changed the bytes")
		}
	})
}

func FuzzParseMessage(f *testing.F) {
	f.Add((&Message{Type: TypeConn, ID: 1, Payload: testConn().Marshal()}).marshal(), uint8(1))
	f.Add((&Message{Type: TypeAck, ID: 2}).marshal(), uint8(0))
	f.Add((&Message{Type: TypeRevoke, Payload: []byte("SHA256:x")}).marshal(), uint8(0))
	f.Add((&Message{Type: TypeExit}).marshal(), uint8(1))
	f.Add([]byte{1, 9, 0, 0}, uint8(2))
	f.Fuzz(func(t *testing.T, b []byte, nfds uint8) {
		m, err := parseMessage(b, int(nfds%3))
		if err != nil {
			return
		}
		if err := m.check(int(nfds % 3)); err != nil {
			t.Fatalf("parsed message fails Send's check: %v", err)
		}
		if !bytes.Equal(m.marshal(), b) {
			t.Fatal("parse/marshal round trip changed the bytes")
		}
	})
}
