// SPDX-License-Identifier: Apache-2.0

package proxy

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// How the owner of a loopback TCP connection is found.
//
// A TCP connection to the proxy carries no credentials, so the proxy asks the kernel which
// local socket is at the other end and who owns it. It asks NETLINK_SOCK_DIAG for that one
// socket (sockdiag.go) where the kernel offers it. This file is the fallback for kernels and
// sandboxes without it (inet_diag is a module that may be missing, and netlink may be
// filtered): it reads the kernel's socket tables, /proc/self/net/tcp and /proc/self/net/tcp6,
// which are present wherever /proc is mounted, need no privilege, and are plain text that a
// fuzzed parser can check. The price is a walk of every socket per accepted connection, about
// 20 ms with 6,000 sockets.
//
// The client's row is the one whose local address is the accepted connection's remote address
// and whose remote address is the proxy's listening address. Only a row that is a live socket
// is believed: its state is one a connected socket passes through (ESTABLISHED, or a closing
// state after a half-close, as when a client sends its request and shuts down its sending
// side) and its inode is not zero, meaning a process still holds the socket open. The kernel
// lists the remnant of a socket closed by its owner (a TIME_WAIT entry, which may show the
// state FIN_WAIT2) with uid 0 and inode 0: believing it would let a client that connects,
// sends and closes at once pass as root. A row missing because the table changed while it was
// read (the kernel produces it in pieces) is looked for again a few times; if it is still
// missing, or if rows disagree, the connection is refused (fail closed).

// TCP states as printed in the "st" column (include/net/tcp_states.h).
const (
	tcpEstablished = 0x01
	tcpFinWait1    = 0x04
	tcpFinWait2    = 0x05
	tcpCloseWait   = 0x08
	tcpLastAck     = 0x09
	tcpClosing     = 0x0B
)

// connectedState reports whether a socket in state st has been connected and not yet closed
// by its owner's peer entirely: ESTABLISHED or one of the states after a half-close.
func connectedState(st uint8) bool {
	switch st {
	case tcpEstablished, tcpFinWait1, tcpFinWait2, tcpCloseWait, tcpLastAck, tcpClosing:
		return true
	}
	return false
}

// socketEntry is one row of /proc/net/tcp or /proc/net/tcp6.
type socketEntry struct {
	Local  netip.AddrPort
	Remote netip.AddrPort
	State  uint8
	UID    uint32
	Inode  uint64 // zero when no process holds the socket open
}

// parseProcNetTCPLine parses one data row of /proc/net/tcp or /proc/net/tcp6:
//
//	sl  local_address rem_address   st tx_queue:rx_queue tr:tm->when retrnsmt   uid  timeout inode ...
//	0: 0100007F:94A8 0100007F:B17B 01 00000000:00000000 00:00000000 00000000  1000        0 4711 ...
//
// Addresses are hexadecimal 32-bit words in host byte order (8 digits for IPv4, 32 for IPv6)
// and ports are big-endian hexadecimal numbers; the state is hexadecimal, the uid and inode
// decimal.
func parseProcNetTCPLine(line string) (socketEntry, error) {
	f := strings.Fields(line)
	if len(f) < 10 {
		return socketEntry{}, fmt.Errorf("socket table row has %d fields, want at least 10", len(f))
	}
	if len(f[0]) < 2 || !strings.HasSuffix(f[0], ":") {
		return socketEntry{}, fmt.Errorf("socket table row starts with %q, want a slot number and a colon", f[0])
	}
	if _, err := strconv.ParseUint(f[0][:len(f[0])-1], 10, 64); err != nil {
		return socketEntry{}, fmt.Errorf("socket table row slot %q: %w", f[0], err)
	}
	var e socketEntry
	var err error
	if e.Local, err = parseHexAddrPort(f[1]); err != nil {
		return socketEntry{}, fmt.Errorf("local address: %w", err)
	}
	if e.Remote, err = parseHexAddrPort(f[2]); err != nil {
		return socketEntry{}, fmt.Errorf("remote address: %w", err)
	}
	if e.Local.Addr().Is4() != e.Remote.Addr().Is4() {
		return socketEntry{}, fmt.Errorf("local address %s and remote address %s are of different families", e.Local, e.Remote)
	}
	if len(f[3]) != 2 {
		return socketEntry{}, fmt.Errorf("state %q is not two hexadecimal digits", f[3])
	}
	st, err := strconv.ParseUint(f[3], 16, 8)
	if err != nil {
		return socketEntry{}, fmt.Errorf("state %q: %w", f[3], err)
	}
	e.State = uint8(st)
	uid, err := strconv.ParseUint(f[7], 10, 32)
	if err != nil {
		return socketEntry{}, fmt.Errorf("uid %q: %w", f[7], err)
	}
	e.UID = uint32(uid)
	if e.Inode, err = strconv.ParseUint(f[9], 10, 64); err != nil {
		return socketEntry{}, fmt.Errorf("inode %q: %w", f[9], err)
	}
	return e, nil
}

// parseHexAddrPort parses an address column such as "0100007F:94A8".
func parseHexAddrPort(s string) (netip.AddrPort, error) {
	host, port, ok := strings.Cut(s, ":")
	if !ok || len(port) != 4 {
		return netip.AddrPort{}, fmt.Errorf("%q is not ADDRESS:PORT in hexadecimal", s)
	}
	p, err := strconv.ParseUint(port, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("port in %q: %w", s, err)
	}
	if len(host) != 8 && len(host) != 32 {
		return netip.AddrPort{}, fmt.Errorf("address in %q has %d hexadecimal digits, want 8 or 32", s, len(host))
	}
	raw, err := hex.DecodeString(host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("address in %q: %w", s, err)
	}
	// Each 32-bit word was printed as a number, so its bytes appear in host order.
	b := make([]byte, len(raw))
	for i := 0; i < len(raw); i += 4 {
		binary.NativeEndian.PutUint32(b[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	addr, _ := netip.AddrFromSlice(b)
	return netip.AddrPortFrom(addr, uint16(p)), nil
}

// formatHexAddrPort is the inverse of parseHexAddrPort: it writes an address column as the
// kernel does.
func formatHexAddrPort(ap netip.AddrPort) string {
	raw := ap.Addr().AsSlice()
	var sb strings.Builder
	for i := 0; i < len(raw); i += 4 {
		fmt.Fprintf(&sb, "%08X", binary.NativeEndian.Uint32(raw[i:]))
	}
	fmt.Fprintf(&sb, ":%04X", ap.Port())
	return sb.String()
}

// formatProcNetTCPLine writes e as a row of the kernel's socket table (slot 0, zero queues
// and timers).
func formatProcNetTCPLine(e socketEntry) string {
	return fmt.Sprintf("   0: %s %s %02X 00000000:00000000 00:00000000 00000000 %5d        0 %d 1 0000000000000000 20 4 30 10 -1",
		formatHexAddrPort(e.Local), formatHexAddrPort(e.Remote), e.State, e.UID, e.Inode)
}

// errAmbiguousOwner reports that more than one established socket matched.
var errAmbiguousOwner = errors.New("several sockets with different owners match the connection")

// findTCPOwner scans a socket table in the /proc/net/tcp format for the live connected socket
// (see connectedState; inode not zero) whose local address is local and whose remote address
// is remote, comparing IPv4-mapped
// IPv6 addresses as IPv4. It returns the socket's uid and whether a row matched. A row that
// does not parse is an error: the format is not the one this code knows.
func findTCPOwner(r io.Reader, local, remote netip.AddrPort) (uid uint32, found bool, err error) {
	local = unmapAddrPort(local)
	remote = unmapAddrPort(remote)
	sc := bufio.NewScanner(r)
	first := true
	for sc.Scan() {
		line := sc.Text()
		if first {
			first = false
			if f := strings.Fields(line); len(f) > 0 && f[0] == "sl" {
				continue // the header
			}
		}
		if strings.TrimSpace(line) == "" {
			continue
		}
		e, err := parseProcNetTCPLine(line)
		if err != nil {
			return 0, false, err
		}
		if !connectedState(e.State) || e.Inode == 0 || unmapAddrPort(e.Local) != local || unmapAddrPort(e.Remote) != remote {
			continue
		}
		if found && e.UID != uid {
			return 0, false, errAmbiguousOwner
		}
		uid, found = e.UID, true
	}
	if err := sc.Err(); err != nil {
		return 0, false, fmt.Errorf("reading the socket table: %w", err)
	}
	return uid, found, nil
}

// unmapAddrPort turns an IPv4-mapped IPv6 address into the IPv4 address.
func unmapAddrPort(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// tcpOwner returns the uid of the process owning the local TCP socket whose address is client
// and which is connected to server (the proxy's listening address). procNet is the directory
// holding the kernel's tables (/proc/self/net). See the comment at the top of this file.
func tcpOwner(procNet string, client, server netip.AddrPort) (int, error) {
	const attempts = 3
	for attempt := range attempts {
		if attempt > 0 {
			time.Sleep(time.Duration(attempt) * 5 * time.Millisecond)
		}
		var uid uint32
		found := false
		for _, name := range []string{"tcp", "tcp6"} {
			path := filepath.Join(procNet, name)
			b, err := os.ReadFile(path)
			if errors.Is(err, fs.ErrNotExist) && name == "tcp6" {
				continue // IPv6 is disabled in this kernel
			}
			if err != nil {
				return 0, fmt.Errorf("reading the kernel's socket table: %w", err)
			}
			u, ok, err := findTCPOwner(bytes.NewReader(b), client, server)
			if err != nil {
				return 0, fmt.Errorf("parsing %s: %w", path, err)
			}
			if !ok {
				continue
			}
			if found && u != uid {
				return 0, fmt.Errorf("looking up %s: %w", client, errAmbiguousOwner)
			}
			uid, found = u, true
		}
		if found {
			return int(uid), nil
		}
	}
	return 0, fmt.Errorf("no open connected socket from %s to %s in %s/tcp or %s/tcp6 (the client may have gone)", client, server, procNet, procNet)
}
