// SPDX-License-Identifier: Apache-2.0

package proxyproto

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
	"ubns.dev/netauth/internal/identity"
)

// vector is a TCP4 header written by hand from the specification: PROXY, 192.0.2.1:56324 to
// 198.51.100.7:143, with a UNIQUE_ID "ab" and a NOOP.
const vector = "0d0a0d0a000d0a515549540a" + "21" + "11" + "0014" +
	"c0000201" + "c6336407" + "dc04" + "008f" +
	"05" + "0002" + "6162" +
	"04" + "0000"

func TestParseVector(t *testing.T) {
	b, _ := hex.DecodeString(vector)
	h, n, err := Parse(append(b, "A1 NOOP\r\n"...))
	if err != nil {
		t.Fatal(err)
	}
	want := &Header{
		Command: Proxy, Family: TCP4,
		Source:      netip.MustParseAddrPort("192.0.2.1:56324"),
		Destination: netip.MustParseAddrPort("198.51.100.7:143"),
		TLVs:        []TLV{{TypeUniqueID, []byte("ab")}, {TypeNoop, []byte{}}},
	}
	if n != len(b) || !reflect.DeepEqual(h, want) {
		t.Fatalf("Parse = %+v, %d; want %+v, %d", h, n, want, len(b))
	}
	out, err := want.Marshal()
	if err != nil || !bytes.Equal(out, b) {
		t.Fatalf("Marshal = %x, %v; want %x", out, err, b)
	}
}

func TestRoundTrip(t *testing.T) {
	auth := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	id := &identity.Identity{User: "alice", KeyFingerprint: "SHA256:abc", KeyType: "ssh-ed25519", Service: "imap", Resumed: true, AuthTime: auth, HandshakeHash: bytes.Repeat([]byte{7}, 32)}
	for _, h := range []*Header{
		{Command: Proxy, Family: TCP4, Source: netip.MustParseAddrPort("127.0.0.1:5000"), Destination: netip.MustParseAddrPort("127.0.0.1:143"), TLVs: TLVs(id)},
		{Command: Proxy, Family: TCP6, Source: netip.MustParseAddrPort("[2001:db8::1]:5000"), Destination: netip.MustParseAddrPort("[::ffff:10.0.0.1]:143"), TLVs: TLVs(id)},
		{Command: Proxy, Family: UnixStream, SourcePath: "/run/client", DestinationPath: "\x00abstract", TLVs: []TLV{{TypeCRC32C, make([]byte, 4)}, {TypeUser, []byte("bob")}}},
		{Command: Local, Family: Unspec},
		{Command: Local, Family: TCP4, Source: netip.MustParseAddrPort("0.0.0.0:0"), Destination: netip.MustParseAddrPort("0.0.0.0:0")},
	} {
		b, err := h.Marshal()
		if err != nil {
			t.Fatalf("Marshal(%+v): %v", h, err)
		}
		got, gotBytes, err := Read(bytes.NewReader(append(b, "rest"...)))
		if err != nil {
			t.Fatalf("Read of %+v: %v", h, err)
		}
		if !bytes.Equal(gotBytes, b) {
			t.Fatalf("Read returned %x, want %x", gotBytes, b)
		}
		if got.Command != h.Command || got.Family != h.Family || got.Source != h.Source || got.Destination != h.Destination ||
			got.SourcePath != h.SourcePath || got.DestinationPath != h.DestinationPath || len(got.TLVs) != len(h.TLVs) {
			t.Fatalf("round trip: %+v, want %+v", got, h)
		}
		if h.Command == Proxy && h.Family != UnixStream {
			gotID, err := IdentityOf(got)
			if err != nil || !reflect.DeepEqual(gotID, id) {
				t.Fatalf("IdentityOf = %+v, %v; want %+v", gotID, err, id)
			}
		}
	}
}

// TestReadStopsAtHeader: Read consumes the header and nothing more, so the stream's own data
// is still there.
func TestReadStopsAtHeader(t *testing.T) {
	h := &Header{Command: Proxy, Family: TCP4, Source: netip.MustParseAddrPort("127.0.0.1:1"), Destination: netip.MustParseAddrPort("127.0.0.1:2")}
	b, _ := h.Marshal()
	r := bufio.NewReader(io.MultiReader(bytes.NewReader(b), strings.NewReader("DATA")))
	if _, _, err := Read(r); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(r)
	if string(rest) != "DATA" {
		t.Fatalf("after the header: %q", rest)
	}
}

func TestParseRejects(t *testing.T) {
	good, _ := hex.DecodeString(vector)
	mod := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	for _, tt := range []struct {
		name string
		b    []byte
		want string
	}{
		{"short", good[:10], "a header has at least 16"},
		{"version 1 text", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), "no PROXY protocol version 2 signature"},
		{"version 1", mod(func(b []byte) []byte { b[12] = 0x11; return b }), "version 1: want 2"},
		{"command", mod(func(b []byte) []byte { b[12] = 0x22; return b }), "command 0x2"},
		{"datagram", mod(func(b []byte) []byte { b[13] = 0x12; return b }), "family and transport 0x12"},
		{"proxy unspec", mod(func(b []byte) []byte { b[13] = 0x00; return b }), "PROXY command with family UNSPEC"},
		{"too long", mod(func(b []byte) []byte { b[14], b[15] = 0x10, 0x01; return b }), "announces 4097 bytes"},
		{"short addresses", mod(func(b []byte) []byte { b[15] = 11; return b[:16+11] }), "less than the 12 of its TCP4 addresses"},
		{"truncated", good[:len(good)-1], "only 19 present"},
		{"TLV overrun", mod(func(b []byte) []byte { b[len(b)-1] = 1; return b }), "TLV 0x04 announces 1 bytes, only 0 left"},
		{"TLV fragment", mod(func(b []byte) []byte { b[15] = 0x15; return append(b, 0) }), "bytes left after the TLVs"},
		{"long unique id", append(mod(func(b []byte) []byte { b[14], b[15] = 0, 12+3+129; return b[:16+12] }), append([]byte{5, 0, 129}, make([]byte, 129)...)...), "UNIQUE_ID of 129 bytes"},
	} {
		if _, _, err := Parse(tt.b); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Parse error %v, want %q", tt.name, err, tt.want)
		}
	}
	// A truncated stream is an unexpected EOF.
	if _, _, err := Read(bytes.NewReader(good[:20])); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("Read of a truncated header: %v", err)
	}
	if _, _, err := Read(bytes.NewReader(nil)); !errors.Is(err, io.EOF) {
		t.Errorf("Read of nothing: %v", err)
	}
}

func TestCRC32C(t *testing.T) {
	h := &Header{Command: Proxy, Family: TCP4, Source: netip.MustParseAddrPort("127.0.0.1:1"), Destination: netip.MustParseAddrPort("127.0.0.1:2"),
		TLVs: []TLV{{TypeCRC32C, []byte{0, 0, 0, 0}}, {TypeUser, []byte("alice")}}}
	b, err := h.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := Parse(b); err != nil {
		t.Fatalf("Parse with a CRC32C: %v", err)
	}
	b[len(b)-1] ^= 1 // "alicd"
	if _, _, err := Parse(b); err == nil || !strings.Contains(err.Error(), "the header was altered") {
		t.Fatalf("Parse of an altered header: %v", err)
	}
	h.TLVs = append(h.TLVs, TLV{TypeCRC32C, make([]byte, 4)})
	if _, err := h.Marshal(); err == nil {
		t.Fatal("Marshal accepted two CRC32C TLVs")
	}
}

func TestMarshalRejects(t *testing.T) {
	v4 := netip.MustParseAddrPort("127.0.0.1:1")
	v6 := netip.MustParseAddrPort("[::1]:1")
	for _, h := range []*Header{
		{Command: 2, Family: TCP4, Source: v4, Destination: v4},
		{Command: Proxy, Family: 0x12, Source: v4, Destination: v4},
		{Command: Proxy, Family: Unspec},
		{Command: Proxy, Family: TCP4, Source: v4, Destination: v6},
		{Command: Proxy, Family: TCP6, Source: v6},
		{Command: Proxy, Family: UnixStream, SourcePath: strings.Repeat("x", 109)},
		{Command: Proxy, Family: TCP4, Source: v4, Destination: v4, TLVs: []TLV{{TypeUniqueID, make([]byte, 129)}}},
		{Command: Proxy, Family: TCP4, Source: v4, Destination: v4, TLVs: []TLV{{TypeCRC32C, nil}}},
		{Command: Proxy, Family: TCP4, Source: v4, Destination: v4, TLVs: []TLV{{0xE0, make([]byte, MaxLen)}}},
	} {
		if b, err := h.Marshal(); err == nil {
			t.Errorf("Marshal(%+v) = %x, want an error", h, b)
		}
	}
}

func TestIdentityOfRejects(t *testing.T) {
	id := &identity.Identity{User: "alice", KeyFingerprint: "SHA256:x", KeyType: "ssh-ed25519", Service: "imap", AuthTime: time.Unix(0, 0), HandshakeHash: []byte{1}}
	base := func() *Header {
		return &Header{Command: Proxy, Family: TCP4, TLVs: TLVs(id)}
	}
	if got, err := IdentityOf(base()); err != nil || got.User != "alice" || got.Resumed || !got.AuthTime.Equal(time.Unix(0, 0)) {
		t.Fatalf("IdentityOf = %+v, %v", got, err)
	}
	set := func(typ byte, v string) *Header {
		h := base()
		for i := range h.TLVs {
			if h.TLVs[i].Type == typ {
				h.TLVs[i].Value = []byte(v)
			}
		}
		return h
	}
	drop := func(typ byte) *Header {
		h := base()
		var out []TLV
		for _, t := range h.TLVs {
			if t.Type != typ {
				out = append(out, t)
			}
		}
		h.TLVs = out
		return h
	}
	dup := base()
	dup.TLVs = append(dup.TLVs, TLV{TypeUser, []byte("root")})
	local := base()
	local.Command = Local
	for name, h := range map[string]*Header{
		"local": local, "duplicate user": dup, "no user": drop(TypeUser), "no hash": drop(TypeUniqueID),
		"empty user": set(TypeUser, ""), "control character": set(TypeUser, "al\nice"), "not UTF-8": set(TypeService, "\xff"),
		"resumed yes": set(TypeResumed, "yes"), "bad time": set(TypeAuthTime, "yesterday"), "no time": drop(TypeAuthTime),
		"long key type": set(TypeKeyType, strings.Repeat("k", 257)),
	} {
		if got, err := IdentityOf(h); err == nil {
			t.Errorf("%s: IdentityOf = %+v, want an error", name, got)
		}
	}
}
