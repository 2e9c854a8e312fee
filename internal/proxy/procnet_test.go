// SPDX-License-Identifier: Apache-2.0

package proxy

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

// Rows as a little-endian kernel prints them.
const (
	header  = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode"
	rowV4   = "   1: 0100007F:94A8 0100007F:B17B 01 00000000:00000000 00:00000000 00000000  1000        0 4711 1 000000001b2fcf5d 20 4 30 10 -1"
	rowV6   = "   0: 00000000000000000000000001000000:1F90 00000000000000000000000001000000:C350 01 00000000:00000000 00:00000000 00000000  1001        0 99 1 0000000000000000 20 4 30 10 -1"
	rowMapd = "   2: 0000000000000000FFFF00000100007F:94A8 0000000000000000FFFF00000100007F:B17B 05 00000000:00000000 00:00000000 00000000  1002        0 77 1 0000000000000000 20 4 30 10 -1"
	// The TIME_WAIT remnant of a closed socket: uid 0, inode 0, shown here in the FIN_WAIT2
	// substate.
	rowTW = "   3: 0100007F:94A8 0100007F:B17B 05 00000000:00000000 03:00000B5A 00000000     0        0 0 3 000000001b2fcf5d"
)

func littleEndian() bool { return binary.NativeEndian.Uint16([]byte{1, 0}) == 1 }

func TestParseProcNetTCPLine(t *testing.T) {
	if !littleEndian() {
		t.Skip("the sample rows are those of a little-endian kernel")
	}
	for _, tc := range []struct {
		line string
		want socketEntry
	}{
		{rowV4, socketEntry{netip.MustParseAddrPort("127.0.0.1:38056"), netip.MustParseAddrPort("127.0.0.1:45435"), tcpEstablished, 1000, 4711}},
		{rowV6, socketEntry{netip.MustParseAddrPort("[::1]:8080"), netip.MustParseAddrPort("[::1]:50000"), tcpEstablished, 1001, 99}},
		{rowMapd, socketEntry{netip.MustParseAddrPort("[::ffff:127.0.0.1]:38056"), netip.MustParseAddrPort("[::ffff:127.0.0.1]:45435"), tcpFinWait2, 1002, 77}},
		{rowTW, socketEntry{netip.MustParseAddrPort("127.0.0.1:38056"), netip.MustParseAddrPort("127.0.0.1:45435"), tcpFinWait2, 0, 0}},
	} {
		got, err := parseProcNetTCPLine(tc.line)
		if err != nil {
			t.Errorf("parse(%q): %v", tc.line, err)
			continue
		}
		if got != tc.want {
			t.Errorf("parse(%q) = %+v, want %+v", tc.line, got, tc.want)
		}
		again, err := parseProcNetTCPLine(formatProcNetTCPLine(got))
		if err != nil || again != got {
			t.Errorf("format/parse round trip of %+v: %+v, %v", got, again, err)
		}
	}
}

func TestParseProcNetTCPLineErrors(t *testing.T) {
	for _, line := range []string{
		"",
		header,
		"   1: 0100007F:94A8 0100007F:B17B 01 00000000:00000000 00:00000000 00000000  1000",                                // too short
		"   x: 0100007F:94A8 0100007F:B17B 01 00000000:00000000 00:00000000 00000000  1000 0 4711",                         // slot
		"   1 0100007F:94A8 0100007F:B17B 01 00000000:00000000 00:00000000 00000000  1000 0 4711",                          // slot colon
		"   1: 0100007F94A8 0100007F:B17B 01 00000000:00000000 00:00000000 00000000  1000 0 4711",                          // no colon
		"   1: 0100007F:94A 0100007F:B17B 01 00000000:00000000 00:00000000 00000000  1000 0 4711",                          // short port
		"   1: 0100007F:94AG 0100007F:B17B 01 00000000:00000000 00:00000000 00000000  1000 0 4711",                         // bad port
		"   1: 0100007:94A8 0100007F:B17B 01 00000000:00000000 00:00000000 00000000  1000 0 4711",                          // short address
		"   1: 0100007G:94A8 0100007F:B17B 01 00000000:00000000 00:00000000 00000000  1000 0 4711",                         // bad address
		"   1: 0100007F:94A8 00000000000000000000000001000000:B17B 01 00000000:00000000 00:00000000 00000000  1000 0 4711", // families
		"   1: 0100007F:94A8 0100007F:B17B 1 00000000:00000000 00:00000000 00000000  1000 0 4711",                          // state width
		"   1: 0100007F:94A8 0100007F:B17B 0G 00000000:00000000 00:00000000 00000000  1000 0 4711",                         // state
		"   1: 0100007F:94A8 0100007F:B17B 01 00000000:00000000 00:00000000 00000000  -1 0 4711",                           // uid
		"   1: 0100007F:94A8 0100007F:B17B 01 00000000:00000000 00:00000000 00000000  4294967296 0 4711",
		"   1: 0100007F:94A8 0100007F:B17B 01 00000000:00000000 00:00000000 00000000  1000 0 x", // inode
	} {
		if e, err := parseProcNetTCPLine(line); err == nil {
			t.Errorf("parse(%q) = %+v, want an error", line, e)
		}
	}
}

func TestFindTCPOwner(t *testing.T) {
	if !littleEndian() {
		t.Skip("the sample rows are those of a little-endian kernel")
	}
	client := netip.MustParseAddrPort("127.0.0.1:38056")
	server := netip.MustParseAddrPort("127.0.0.1:45435")
	listen := strings.Replace(rowV4, "01 00000000", "0A 00000000", 1)
	for _, tc := range []struct {
		name      string
		table     string
		uid       uint32
		found     bool
		wantError bool
	}{
		{"established", header + "\n" + rowV6 + "\n" + rowV4 + "\n", 1000, true, false},
		{"IPv4-mapped in tcp6", header + "\n" + rowV6 + "\n" + rowMapd + "\n", 1002, true, false},
		{"the remnant of a closed socket is not believed", header + "\n" + rowTW + "\n", 0, false, false},
		{"a listening socket is not a client", header + "\n" + listen + "\n", 0, false, false},
		{"same owner twice", header + "\n" + rowV4 + "\n" + rowV4 + "\n", 1000, true, false},
		{"different owners", header + "\n" + rowV4 + "\n" + strings.Replace(rowV4, " 1000 ", " 1001 ", 1) + "\n", 0, false, true},
		{"reversed direction", header + "\n" + formatProcNetTCPLine(socketEntry{server, client, tcpEstablished, 5, 1}) + "\n", 0, false, false},
		{"malformed row", header + "\n" + "   1: garbage\n", 0, false, true},
		{"empty", "", 0, false, false},
	} {
		uid, found, err := findTCPOwner(strings.NewReader(tc.table), client, server)
		if (err != nil) != tc.wantError || found != tc.found || uid != tc.uid {
			t.Errorf("%s: findTCPOwner = %d, %v, %v; want %d, %v, error %v", tc.name, uid, found, err, tc.uid, tc.found, tc.wantError)
		}
	}
	if _, _, err := findTCPOwner(strings.NewReader(header+"\n"+rowV4+"\n"+strings.Replace(rowV4, " 1000 ", " 0 ", 1)), client, server); !errors.Is(err, errAmbiguousOwner) {
		t.Errorf("ambiguous rows: %v, want errAmbiguousOwner", err)
	}
}

// TestTCPOwnerStates follows a real client socket through a half-close (still its owner's)
// and a full close (no longer anyone's: the lookup must fail).
func TestTCPOwnerStates(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	client := s.RemoteAddr().(*net.TCPAddr).AddrPort()
	server := s.LocalAddr().(*net.TCPAddr).AddrPort()

	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if uid, err := tcpOwner(procNet, client, server); err != nil || uid != os.Getuid() {
		t.Errorf("after the client's half-close: tcpOwner = %d, %v; want %d", uid, err, os.Getuid())
	}
	c.Close()
	// Once the client's socket is closed the kernel keeps an ownerless remnant.
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := tcpOwner(procNet, client, server)
		if err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("tcpOwner still finds an owner for a closed client socket")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// FuzzParseProcNetTCPLine checks that the row parser never panics, and that whatever it
// accepts survives a round trip through the kernel's format.
func FuzzParseProcNetTCPLine(f *testing.F) {
	for _, s := range []string{rowV4, rowV6, rowMapd, rowTW, header, "", "   1: 0100007F:94A8 0100007F:B17B 01"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		e, err := parseProcNetTCPLine(line)
		if err != nil {
			return
		}
		if !e.Local.Addr().IsValid() || !e.Remote.Addr().IsValid() {
			t.Fatalf("parse(%q) accepted an invalid address: %+v", line, e)
		}
		again, err := parseProcNetTCPLine(formatProcNetTCPLine(e))
		if err != nil {
			t.Fatalf("parse(format(%+v)): %v", e, err)
		}
		if again != e {
			t.Fatalf("round trip of %q: %+v, then %+v", line, e, again)
		}
		// Scanning a table made of the row must find it when it is a live connected socket.
		if strings.ContainsAny(line, "\r\n") {
			return // more than one row to the scanner
		}
		uid, found, err := findTCPOwner(strings.NewReader(line+"\n"), e.Local, e.Remote)
		if err != nil {
			t.Fatalf("findTCPOwner on an accepted row %q: %v", line, err)
		}
		if want := connectedState(e.State) && e.Inode != 0; found != want || found && uid != e.UID {
			t.Fatalf("findTCPOwner on %q = %d, %v; want found %v uid %d", line, uid, found, want, e.UID)
		}
	})
}
