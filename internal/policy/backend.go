// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
)

// maxUnixPath is the longest Unix socket path the kernel accepts (the
// 108-byte sun_path, less its terminating NUL).
const maxUnixPath = 107

// ParseBackend splits the address of a backend directive into the network
// and address net.Dial takes: "tcp:HOST:PORT" gives ("tcp", "HOST:PORT")
// and "unix:/path" gives ("unix", "/path"). HOST is an IP address (IPv6 in
// brackets) or "localhost"; host names are not resolved. PORT is 1 to
// 65535. The Unix path is absolute and at most 107 bytes.
func ParseBackend(s string) (network, address string, err error) {
	if msg := backendProblem(s); msg != "" {
		return "", "", fmt.Errorf("policy: %s", msg)
	}
	network, address, _ = strings.Cut(s, ":")
	return network, address, nil
}

// backendProblem returns what is wrong with backend address s, or "".
func backendProblem(s string) string {
	network, address, ok := strings.Cut(s, ":")
	switch {
	case !ok || (network != "tcp" && network != "unix"):
		return fmt.Sprintf("backend %s: want \"tcp:HOST:PORT\" (such as tcp:127.0.0.1:1143) or \"unix:/path/of/socket\"", q(s))
	case network == "unix" && !filepath.IsAbs(address):
		return fmt.Sprintf("backend %s: the socket path is not absolute: write it starting with \"/\"", q(s))
	case network == "unix" && len(address) > maxUnixPath:
		return fmt.Sprintf("backend %s: the socket path is %d bytes; the kernel allows at most %d", q(s), len(address), maxUnixPath)
	case network == "unix":
		return ""
	}
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Sprintf("backend %s: want tcp:HOST:PORT, such as tcp:127.0.0.1:1143 or tcp:[::1]:1143", q(s))
	}
	if n, err := strconv.Atoi(port); err != nil || !isDigits(port) || n < 1 || n > 65535 {
		return fmt.Sprintf("backend %s: port %s: want a number from 1 to 65535", q(s), q(port))
	}
	if host == "localhost" {
		return ""
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return fmt.Sprintf("backend %s: host %s: want an IP address or \"localhost\"; host names are not resolved", q(s), q(host))
	}
	return ""
}

// backendLoopback reports whether backend address s (which must be valid)
// stays on this machine: a Unix socket, "localhost" or a loopback address.
func backendLoopback(s string) bool {
	network, address, _ := strings.Cut(s, ":")
	if network == "unix" {
		return true
	}
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}
