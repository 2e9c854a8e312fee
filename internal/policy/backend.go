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

// hostPort is the rule of one directive whose value is (or includes) a
// HOST:PORT address: listen, backend's tcp: form and metrics-listen share
// one checker, and differ only in what this says.
type hostPort struct {
	// shape says how the value is written, for a value that is not
	// HOST:PORT.
	shape string
	// minPort is the lowest port allowed (0 or 1); portNote follows the
	// port range in the message.
	minPort  int
	portNote string
	// anyHost allows an empty HOST (every address).
	anyHost bool
	// loopback allows only "localhost" and loopback addresses, without a
	// zone; the message then is loopbackWant.
	loopback     bool
	loopbackWant string
	// hostWant says which hosts are allowed, for a host that is not.
	hostWant string
}

// The HOST:PORT rules of listen, backend and metrics-listen.
var (
	listenRule = hostPort{
		shape:    "want HOST:PORT, such as 127.0.0.1:4000, [::1]:4000 or :4000",
		portNote: " (0: any free port)",
		anyHost:  true,
		hostWant: `want an IP address, "localhost", or nothing (as in ":4000") for all addresses; host names are not resolved`,
	}
	backendRule = hostPort{
		shape:    "want tcp:HOST:PORT, such as tcp:127.0.0.1:1143 or tcp:[::1]:1143",
		minPort:  1,
		hostWant: `want an IP address or "localhost"; host names are not resolved`,
	}
	metricsRule = hostPort{
		shape:        "want an absolute Unix socket path or a loopback HOST:PORT such as 127.0.0.1:9464",
		minPort:      1,
		loopback:     true,
		loopbackWant: "is not a loopback address: give 127.0.0.1, [::1], localhost or a Unix socket path",
	}
)

// problem returns what is wrong with HOST:PORT address a, or "". what
// starts the message: the directive and its whole value, quoted.
func (r hostPort) problem(what, a string) string {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return what + ": " + r.shape
	}
	if n, err := strconv.Atoi(port); err != nil || !isDigits(port) || n < r.minPort || n > 65535 {
		return fmt.Sprintf("%s: port %s: want a number from %d to 65535%s", what, q(port), r.minPort, r.portNote)
	}
	if host == "localhost" || (host == "" && r.anyHost) {
		return ""
	}
	ip, err := netip.ParseAddr(host)
	switch {
	case r.loopback && (err != nil || ip.Zone() != "" || !ip.Unmap().IsLoopback()):
		return fmt.Sprintf("%s: %s %s", what, q(host), r.loopbackWant)
	case err != nil:
		return fmt.Sprintf("%s: host %s: %s", what, q(host), r.hostWant)
	}
	return ""
}

// unixPathProblem returns what is wrong with Unix socket path p, or "".
// what starts the message.
func unixPathProblem(what, p string) string {
	switch {
	case !filepath.IsAbs(p):
		return what + `: the socket path is not absolute: write it starting with "/"`
	case len(p) > maxUnixPath:
		return fmt.Sprintf("%s: the socket path is %d bytes; the kernel allows at most %d", what, len(p), maxUnixPath)
	}
	return ""
}

// listenProblem returns what is wrong with listen address a, or "".
func listenProblem(a string) string {
	return listenRule.problem("listen "+q(a), a)
}

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
	what := "backend " + q(s)
	network, address, ok := strings.Cut(s, ":")
	switch {
	case !ok || (network != "tcp" && network != "unix"):
		return what + `: want "tcp:HOST:PORT" (such as tcp:127.0.0.1:1143) or "unix:/path/of/socket"`
	case network == "unix":
		return unixPathProblem(what, address)
	}
	return backendRule.problem(what, address)
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

// metricsListenProblem returns what is wrong with metrics-listen value
// addr, or "".
func metricsListenProblem(addr string) string {
	what := "metrics-listen " + q(addr)
	if strings.HasPrefix(addr, "/") {
		return unixPathProblem(what, addr)
	}
	return metricsRule.problem(what, addr)
}

// CheckMetricsListen reports whether addr can be a metrics-listen value: an
// absolute path of at most 107 bytes (a Unix socket) or a loopback address
// with a port ("127.0.0.1:9464", "[::1]:9464", "localhost:9464"). Metrics say
// who connects and how often: they are not served on an address other hosts
// can reach. The error is the one validate reports for the directive.
func CheckMetricsListen(addr string) error {
	if msg := metricsListenProblem(addr); msg != "" {
		return fmt.Errorf("%s", msg)
	}
	return nil
}
