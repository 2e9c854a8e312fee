// SPDX-License-Identifier: Apache-2.0

// Package proxyproto writes and parses PROXY protocol version 2 headers, the binary header a
// proxy sends ahead of a forwarded connection to tell the server who the client is (HAProxy's
// "The PROXY protocol", section 2.2). netauthd's backend mode forwards each authenticated
// connection to a local service with such a header: the client's and the service's
// addresses, and TLVs carrying the identity netauth established (see Identity and
// docs/PORTING.md).
//
// The parser is strict: it accepts only version 2, the LOCAL and PROXY commands, stream
// transports (or UNSPEC), an address block of the right size, TLVs that exactly fill the
// header, and a correct CRC32C when one is present. It never reads past the header, so the
// connection's own data stays unread.
package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/netip"
)

// Signature is the 12 bytes every version 2 header starts with.
const Signature = "\r\n\r\n\x00\r\nQUIT\n"

// Sizes of the header's parts.
const (
	// FixedLen is the length of the fixed part: signature, version and command, family and
	// transport, and the length of the rest.
	FixedLen = 16
	// MaxLen bounds the variable part (addresses and TLVs) this package writes and accepts.
	// The protocol allows up to 65535 bytes; netauth's headers need a few hundred.
	MaxLen = 4096
	// MaxUniqueIDLen is the longest PP2_TYPE_UNIQUE_ID value the protocol allows.
	MaxUniqueIDLen = 128

	inet4Len = 12  // source and destination IPv4 addresses and ports
	inet6Len = 36  // source and destination IPv6 addresses and ports
	unixLen  = 216 // source and destination socket paths, 108 bytes each
	unixPath = 108
)

// Command says whether the header describes a proxied connection.
type Command byte

const (
	// Local is a connection the proxy made on its own (such as a health check): the receiver
	// uses the connection's real addresses and ignores the header's.
	Local Command = 0x0
	// Proxy is a connection relayed for a client, which the header's addresses describe.
	Proxy Command = 0x1
)

// Family is the address family and transport of the original connection (the header's
// 14th byte).
type Family byte

const (
	// Unspec carries no addresses (used with Local).
	Unspec Family = 0x00
	// TCP4 is TCP over IPv4.
	TCP4 Family = 0x11
	// TCP6 is TCP over IPv6.
	TCP6 Family = 0x21
	// UnixStream is a Unix stream socket.
	UnixStream Family = 0x31
)

// String names the family as the protocol's specification does.
func (f Family) String() string {
	switch f {
	case Unspec:
		return "UNSPEC"
	case TCP4:
		return "TCP4"
	case TCP6:
		return "TCP6"
	case UnixStream:
		return "UNIX"
	}
	return fmt.Sprintf("family(%#02x)", byte(f))
}

// Standard TLV types used by netauth.
const (
	// TypeCRC32C is PP2_TYPE_CRC32C: the CRC32c of the whole header with this value zeroed.
	TypeCRC32C byte = 0x03
	// TypeNoop is PP2_TYPE_NOOP: padding, ignored.
	TypeNoop byte = 0x04
	// TypeUniqueID is PP2_TYPE_UNIQUE_ID: an opaque identifier of the connection, at most 128
	// bytes. netauth sends the handshake hash, unique to each connection.
	TypeUniqueID byte = 0x05
)

// TLV is one type-length-value field of a header.
type TLV struct {
	Type  byte
	Value []byte
}

// Header is a PROXY protocol version 2 header.
type Header struct {
	// Command is Proxy for a relayed connection, Local otherwise.
	Command Command
	// Family is the original connection's address family and transport.
	Family Family
	// Source and Destination are the client's and the proxy's addresses (TCP4: both
	// IPv4; TCP6: IPv6, possibly IPv4-mapped).
	Source, Destination netip.AddrPort
	// SourcePath and DestinationPath are the socket paths of a UnixStream connection
	// (without the NUL padding; an abstract socket's name starts with a NUL).
	SourcePath, DestinationPath string
	// TLVs are the header's TLVs, in order.
	TLVs []TLV
}

// Find returns the value of the first TLV of type typ, and whether there is one.
func (h *Header) Find(typ byte) ([]byte, bool) {
	for _, t := range h.TLVs {
		if t.Type == typ {
			return t.Value, true
		}
	}
	return nil, false
}

// addrLen returns the size of the address block of family f.
func addrLen(f Family) (int, bool) {
	switch f {
	case Unspec:
		return 0, true
	case TCP4:
		return inet4Len, true
	case TCP6:
		return inet6Len, true
	case UnixStream:
		return unixLen, true
	}
	return 0, false
}

// Marshal returns the header in its wire form. It refuses a header that Parse would refuse:
// an unknown command or family, addresses that do not fit the family, a TLV longer than
// 65535 bytes, a UNIQUE_ID longer than 128 bytes, or a variable part longer than MaxLen.
// A CRC32C TLV, if present, must have a 4-byte value, which Marshal fills in.
func (h *Header) Marshal() ([]byte, error) {
	if h.Command != Local && h.Command != Proxy {
		return nil, fmt.Errorf("proxyproto: command %#x: want LOCAL (0) or PROXY (1)", byte(h.Command))
	}
	n, ok := addrLen(h.Family)
	if !ok {
		return nil, fmt.Errorf("proxyproto: unknown family %s", h.Family)
	}
	if h.Command == Proxy && h.Family == Unspec {
		return nil, errors.New("proxyproto: a PROXY header needs addresses (family TCP4, TCP6 or UNIX)")
	}
	crcs := 0
	for _, t := range h.TLVs {
		n += 3 + len(t.Value)
		if err := checkTLV(t); err != nil {
			return nil, err
		}
		if t.Type == TypeCRC32C {
			crcs++
		}
	}
	if crcs > 1 {
		return nil, errors.New("proxyproto: two CRC32C TLVs")
	}
	if n > MaxLen {
		return nil, fmt.Errorf("proxyproto: header of %d bytes after the fixed part; at most %d allowed", n, MaxLen)
	}
	b := make([]byte, FixedLen, FixedLen+n)
	copy(b, Signature)
	b[12] = 0x20 | byte(h.Command)
	b[13] = byte(h.Family)
	binary.BigEndian.PutUint16(b[14:], uint16(n))
	switch h.Family {
	case TCP4:
		if !h.Source.Addr().Is4() || !h.Destination.Addr().Is4() {
			return nil, fmt.Errorf("proxyproto: TCP4 header with addresses %v and %v: both must be IPv4", h.Source, h.Destination)
		}
		s, d := h.Source.Addr().As4(), h.Destination.Addr().As4()
		b = append(append(b, s[:]...), d[:]...)
		b = binary.BigEndian.AppendUint16(b, h.Source.Port())
		b = binary.BigEndian.AppendUint16(b, h.Destination.Port())
	case TCP6:
		if !h.Source.Addr().IsValid() || !h.Destination.Addr().IsValid() || h.Source.Addr().Zone() != "" || h.Destination.Addr().Zone() != "" {
			return nil, fmt.Errorf("proxyproto: TCP6 header with addresses %v and %v: both must be IP addresses without a zone", h.Source, h.Destination)
		}
		s, d := h.Source.Addr().As16(), h.Destination.Addr().As16()
		b = append(append(b, s[:]...), d[:]...)
		b = binary.BigEndian.AppendUint16(b, h.Source.Port())
		b = binary.BigEndian.AppendUint16(b, h.Destination.Port())
	case UnixStream:
		for _, p := range []string{h.SourcePath, h.DestinationPath} {
			if len(p) > unixPath {
				return nil, fmt.Errorf("proxyproto: Unix socket path of %d bytes; at most %d fit", len(p), unixPath)
			}
			var field [unixPath]byte
			copy(field[:], p)
			b = append(b, field[:]...)
		}
	}
	crcAt := -1
	for _, t := range h.TLVs {
		b = append(b, t.Type)
		b = binary.BigEndian.AppendUint16(b, uint16(len(t.Value)))
		if t.Type == TypeCRC32C {
			crcAt = len(b)
			b = append(b, 0, 0, 0, 0)
			continue
		}
		b = append(b, t.Value...)
	}
	if crcAt >= 0 {
		binary.BigEndian.PutUint32(b[crcAt:], crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)))
	}
	return b, nil
}

// checkTLV reports a TLV that cannot be written or that Parse would refuse.
func checkTLV(t TLV) error {
	switch {
	case len(t.Value) > 0xffff:
		return fmt.Errorf("proxyproto: TLV %#02x of %d bytes; at most 65535 fit", t.Type, len(t.Value))
	case t.Type == TypeUniqueID && len(t.Value) > MaxUniqueIDLen:
		return fmt.Errorf("proxyproto: UNIQUE_ID of %d bytes; at most %d allowed", len(t.Value), MaxUniqueIDLen)
	case t.Type == TypeCRC32C && len(t.Value) != 4:
		return fmt.Errorf("proxyproto: CRC32C TLV of %d bytes; want 4", len(t.Value))
	}
	return nil
}

// Read reads one header from r, and nothing after it: it reads the fixed part, then exactly
// the length that part announces. It returns the parsed header and the bytes it read.
func Read(r io.Reader) (*Header, []byte, error) {
	b := make([]byte, FixedLen, FixedLen+64)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, nil, fmt.Errorf("proxyproto: reading the header: %w", err)
	}
	if err := checkFixed(b); err != nil {
		return nil, nil, err
	}
	n := int(binary.BigEndian.Uint16(b[14:]))
	b = append(b, make([]byte, n)...)
	if _, err := io.ReadFull(r, b[FixedLen:]); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, nil, fmt.Errorf("proxyproto: reading the %d bytes of addresses and TLVs: %w", n, err)
	}
	h, _, err := Parse(b)
	if err != nil {
		return nil, nil, err
	}
	return h, b, nil
}

// checkFixed checks the fixed part of a header (b holds at least FixedLen bytes).
func checkFixed(b []byte) error {
	if !bytes.Equal(b[:12], []byte(Signature)) {
		return errors.New("proxyproto: no PROXY protocol version 2 signature: the peer did not send a PROXY header")
	}
	if b[12]>>4 != 2 {
		return fmt.Errorf("proxyproto: version %d: want 2", b[12]>>4)
	}
	if c := Command(b[12] & 0x0f); c != Local && c != Proxy {
		return fmt.Errorf("proxyproto: command %#x: want LOCAL (0) or PROXY (1)", byte(c))
	}
	f := Family(b[13])
	if _, ok := addrLen(f); !ok {
		return fmt.Errorf("proxyproto: family and transport %#02x: want UNSPEC, TCP4, TCP6 or UNIX stream", b[13])
	}
	if Command(b[12]&0x0f) == Proxy && f == Unspec {
		return errors.New("proxyproto: PROXY command with family UNSPEC: a proxied connection needs addresses")
	}
	n := int(binary.BigEndian.Uint16(b[14:]))
	if n > MaxLen {
		return fmt.Errorf("proxyproto: header announces %d bytes after the fixed part; at most %d accepted", n, MaxLen)
	}
	if need, _ := addrLen(f); n < need {
		return fmt.Errorf("proxyproto: header announces %d bytes, less than the %d of its %s addresses", n, need, f)
	}
	return nil
}

// Parse parses the header at the start of b and returns it with its length in bytes; b may
// hold more data after the header.
func Parse(b []byte) (*Header, int, error) {
	if len(b) < FixedLen {
		return nil, 0, fmt.Errorf("proxyproto: %d bytes; a header has at least %d", len(b), FixedLen)
	}
	if err := checkFixed(b); err != nil {
		return nil, 0, err
	}
	n := int(binary.BigEndian.Uint16(b[14:]))
	if len(b) < FixedLen+n {
		return nil, 0, fmt.Errorf("proxyproto: header announces %d bytes after the fixed part, only %d present", n, len(b)-FixedLen)
	}
	whole := b[:FixedLen+n]
	h := &Header{Command: Command(b[12] & 0x0f), Family: Family(b[13])}
	p := whole[FixedLen:]
	switch h.Family {
	case TCP4:
		h.Source = netip.AddrPortFrom(netip.AddrFrom4([4]byte(p[0:4])), binary.BigEndian.Uint16(p[8:]))
		h.Destination = netip.AddrPortFrom(netip.AddrFrom4([4]byte(p[4:8])), binary.BigEndian.Uint16(p[10:]))
		p = p[inet4Len:]
	case TCP6:
		h.Source = netip.AddrPortFrom(netip.AddrFrom16([16]byte(p[0:16])), binary.BigEndian.Uint16(p[32:]))
		h.Destination = netip.AddrPortFrom(netip.AddrFrom16([16]byte(p[16:32])), binary.BigEndian.Uint16(p[34:]))
		p = p[inet6Len:]
	case UnixStream:
		h.SourcePath = string(bytes.TrimRight(p[:unixPath], "\x00"))
		h.DestinationPath = string(bytes.TrimRight(p[unixPath:unixLen], "\x00"))
		p = p[unixLen:]
	}
	crcAt := -1
	for len(p) > 0 {
		if len(p) < 3 {
			return nil, 0, fmt.Errorf("proxyproto: %d bytes left after the TLVs, too few for another", len(p))
		}
		typ, l := p[0], int(binary.BigEndian.Uint16(p[1:]))
		if len(p) < 3+l {
			return nil, 0, fmt.Errorf("proxyproto: TLV %#02x announces %d bytes, only %d left in the header", typ, l, len(p)-3)
		}
		t := TLV{Type: typ, Value: bytes.Clone(p[3 : 3+l])}
		if t.Value == nil {
			t.Value = []byte{}
		}
		if err := checkTLV(t); err != nil {
			return nil, 0, err
		}
		if typ == TypeCRC32C {
			if crcAt >= 0 {
				return nil, 0, errors.New("proxyproto: two CRC32C TLVs")
			}
			crcAt = len(whole) - len(p) + 3
		}
		h.TLVs = append(h.TLVs, t)
		p = p[3+l:]
	}
	if crcAt >= 0 {
		want := binary.BigEndian.Uint32(whole[crcAt:])
		c := bytes.Clone(whole)
		clear(c[crcAt : crcAt+4])
		if got := crc32.Checksum(c, crc32.MakeTable(crc32.Castagnoli)); got != want {
			return nil, 0, fmt.Errorf("proxyproto: CRC32C %#08x does not match the header's %#08x: the header was altered", want, got)
		}
	}
	return h, len(whole), nil
}
