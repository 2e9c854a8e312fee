// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"

	"ubns.dev/netauth/internal/policy"
)

// systemdDefaultName reports whether name is one systemd gives a socket without
// FileDescriptorName=: "unknown" (sd_listen_fds_with_names without LISTEN_FDNAMES) or the
// socket unit's name ("netauthd.socket").
func systemdDefaultName(name string) bool {
	return name == "unknown" || strings.HasSuffix(name, ".socket")
}

// splitInherited sorts the socket-activation listeners into those named after a service and
// those to match by address (names nil: all of them), and checks the names against cfg.
func splitInherited(cfg *policy.Config, lns []net.Listener, names []string) (byAddr []net.Listener, named map[string][]net.Listener, err error) {
	if names == nil {
		return lns, nil, nil
	}
	if len(names) != len(lns) {
		return nil, nil, fmt.Errorf("netauthd: socket activation: %d names for %d sockets", len(names), len(lns))
	}
	services := make(map[string]bool, len(cfg.Services))
	for _, sc := range cfg.Services {
		services[sc.Name] = true
	}
	named = make(map[string][]net.Listener)
	var unknown []string
	for i, ln := range lns {
		switch name := names[i]; {
		case services[name]:
			named[name] = append(named[name], ln)
		case systemdDefaultName(name):
			byAddr = append(byAddr, ln)
		default:
			unknown = append(unknown, fmt.Sprintf("%q (%s)", name, ln.Addr()))
		}
	}
	if len(unknown) > 0 {
		return nil, nil, fmt.Errorf("netauthd: socket activation: systemd passed sockets named %s, but no service in %s has that name: FileDescriptorName= in the .socket unit must be the name of the service the socket is for (services: %s)",
			strings.Join(unknown, ", "), configName(cfg), strings.Join(serviceNames(cfg), ", "))
	}
	if len(named) == 0 {
		return byAddr, nil, nil
	}
	if err := checkNamed(cfg, named); err != nil {
		return nil, nil, err
	}
	return byAddr, named, nil
}

// checkNamed checks that, sockets being passed by name, every service of cfg has one and
// every name is a service's.
func checkNamed(cfg *policy.Config, named map[string][]net.Listener) error {
	var errs []error
	have := make(map[string]bool, len(cfg.Services))
	for _, sc := range cfg.Services {
		have[sc.Name] = true
		if len(named[sc.Name]) == 0 {
			errs = append(errs, fmt.Errorf("netauthd: socket activation: service %q has no socket: systemd passes this daemon's sockets by name (FileDescriptorName=), and none is named %q; add to the .socket unit a ListenStream= for it with FileDescriptorName=%s", sc.Name, sc.Name, sc.Name))
		}
	}
	var gone []string
	for name := range named {
		if !have[name] {
			gone = append(gone, name)
		}
	}
	sort.Strings(gone)
	for _, name := range gone {
		errs = append(errs, fmt.Errorf("netauthd: socket activation: systemd passed a socket named %q, but no service in %s has that name (a service's socket stays until systemd closes it: remove it from the .socket unit and restart)", name, configName(cfg)))
	}
	return errors.Join(errs...)
}

func serviceNames(cfg *policy.Config) []string {
	out := make([]string, 0, len(cfg.Services))
	for _, sc := range cfg.Services {
		out = append(out, sc.Name)
	}
	return out
}

func configName(cfg *policy.Config) string {
	if cfg.Path == "" {
		return "the configuration"
	}
	return cfg.Path
}
