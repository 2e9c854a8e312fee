// SPDX-License-Identifier: Apache-2.0

package proxyproto

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"testing"
	"time"
	"ubns.dev/netauth/internal/identity"
)

// FuzzParse checks that Parse never panics, never reports more than its input, and that what
// it accepts writes back to the same bytes and parses again to the same header.
func FuzzParse(f *testing.F) {
	b, _ := hex.DecodeString(vector)
	f.Add(b)
	id := &identity.Identity{User: "alice", KeyFingerprint: "SHA256:abc", KeyType: "ssh-ed25519", Service: "imap", AuthTime: time.Unix(1e9, 0), HandshakeHash: make([]byte, 32)}
	for _, h := range []*Header{
		{Command: Proxy, Family: TCP6, Source: netip.MustParseAddrPort("[::1]:1"), Destination: netip.MustParseAddrPort("[::1]:2"), TLVs: TLVs(id)},
		{Command: Proxy, Family: UnixStream, SourcePath: "/a", DestinationPath: "/b", TLVs: []TLV{{TypeCRC32C, make([]byte, 4)}}},
		{Command: Local, Family: Unspec, TLVs: []TLV{{TypeNoop, nil}}},
	} {
		b, err := h.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(Signature + "\x21\x11\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, n, err := Parse(data)
		if err != nil {
			return
		}
		if n < FixedLen || n > len(data) || n > FixedLen+MaxLen {
			t.Fatalf("Parse reported length %d of %d bytes", n, len(data))
		}
		out, err := h.Marshal()
		if err != nil {
			t.Fatalf("Marshal of a parsed header %+v: %v", h, err)
		}
		if !bytes.Equal(out, data[:n]) {
			t.Fatalf("round trip changed the header:\n%x\n%x", data[:n], out)
		}
		again, m, err := Parse(out)
		if err != nil || m != n || again.Family != h.Family || again.Source != h.Source || len(again.TLVs) != len(h.TLVs) {
			t.Fatalf("reparse: %+v %d %v", again, m, err)
		}
		if id, err := IdentityOf(h); err == nil {
			if id.User == "" || len(id.HandshakeHash) == 0 {
				t.Fatalf("IdentityOf accepted %+v", id)
			}
		}
	})
}
