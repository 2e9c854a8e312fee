// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"fmt"
	"strings"
	"time"
)

// How the program of an Instance service listens (the instance-listen directive).
const (
	// InstanceSocketActivation passes the program a listening Unix socket as descriptor 3,
	// with LISTEN_FDS=1, LISTEN_FDNAMES (the service's name) and LISTEN_PID (the program's
	// own pid), as systemd's socket activation does.
	InstanceSocketActivation = "socket-activation"
	// InstanceUnix substitutes a Unix socket path, in a directory only the user can reach,
	// for "%s" in the program's arguments; the program listens on it.
	InstanceUnix = "unix"
	// InstanceTCP substitutes a loopback TCP port for "%p" in the program's arguments; the
	// program listens on 127.0.0.1 at that port, in a network namespace of its own, which
	// only its worker reaches (netauthd must run as root).
	InstanceTCP = "tcp"
)

// Bounds and default of instance-start-timeout.
const (
	DefaultInstanceStartTimeout = 5 * time.Second
	minInstanceStartTimeout     = 100 * time.Millisecond
	maxInstanceStartTimeout     = 5 * time.Minute
)

// instanceListens are the values of instance-listen, in the order the documentation gives
// them.
var instanceListens = []string{InstanceSocketActivation, InstanceUnix, InstanceTCP}

// InstanceArgs returns args with the placeholders of an Instance service's arguments
// replaced: "%s" by socket, "%p" by port and "%%" by "%". Any other "%" is an error, as
// is a placeholder that method does not give (socket for unix, port for tcp, neither for
// socket-activation), or, for unix and tcp, arguments without their placeholder (the
// program would not know where to listen).
func InstanceArgs(method string, args []string, socket, port string) ([]string, error) {
	out := make([]string, len(args))
	used := map[byte]bool{}
	for i, a := range args {
		var b strings.Builder
		for j := 0; j < len(a); j++ {
			if a[j] != '%' {
				b.WriteByte(a[j])
				continue
			}
			if j+1 == len(a) {
				return nil, fmt.Errorf("argument %q ends with a lone %%: write %%%% for a %%", a)
			}
			j++
			switch c := a[j]; c {
			case '%':
				b.WriteByte('%')
			case 's', 'p':
				used[c] = true
				if c == 's' {
					b.WriteString(socket)
				} else {
					b.WriteString(port)
				}
			default:
				return nil, fmt.Errorf("argument %q: unknown placeholder %%%c: want %%s (the Unix socket path), %%p (the TCP port) or %%%% (a %%)", a, c)
			}
		}
		out[i] = b.String()
	}
	switch method {
	case InstanceUnix:
		if used['p'] {
			return nil, fmt.Errorf("%%p is the port of \"instance-listen tcp\"; with instance-listen unix, put %%s where the program takes the socket path")
		}
		if !used['s'] {
			return nil, fmt.Errorf("with instance-listen unix, the arguments must contain %%s where the program takes the path of the Unix socket it listens on")
		}
	case InstanceTCP:
		if used['s'] {
			return nil, fmt.Errorf("%%s is the socket path of \"instance-listen unix\"; with instance-listen tcp, put %%p where the program takes the port it listens on (on 127.0.0.1)")
		}
		if !used['p'] {
			return nil, fmt.Errorf("with instance-listen tcp, the arguments must contain %%p where the program takes the port it listens on (on 127.0.0.1)")
		}
	case InstanceSocketActivation:
		if used['s'] || used['p'] {
			return nil, fmt.Errorf("with instance-listen socket-activation, the program gets its socket as descriptor 3: remove %%s and %%p")
		}
	default:
		return nil, fmt.Errorf("unknown instance-listen %q: want %s", method, orList(instanceListens))
	}
	return out, nil
}

// instance checks the instance directives of s, whose mode takes them.
func (v *validator) instance(s *Service, takes func(string) bool) {
	if takes("instance-start-timeout") && s.given("instance-start-timeout") {
		v.duration(s.line("instance-start-timeout"), "instance-start-timeout", s.InstanceStartTimeout, minInstanceStartTimeout, maxInstanceStartTimeout)
	}
	if !takes("instance-listen") || s.InstanceListen == "" {
		return
	}
	known := false
	for _, m := range instanceListens {
		known = known || m == s.InstanceListen
	}
	if !known {
		v.errorf(s.line("instance-listen"), "service %s: unknown instance-listen %s: want %s", q(s.Name), q(s.InstanceListen), orList(instanceListens))
		return
	}
	if _, err := InstanceArgs(s.InstanceListen, s.Args, "/socket", "1"); err != nil {
		v.errorf(s.line("args"), "service %s: %v", q(s.Name), err)
	}
}
