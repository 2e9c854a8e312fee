// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"ubns.dev/netauth/internal/keys"
	"ubns.dev/netauth/internal/krl"
	"ubns.dev/netauth/internal/usercert"
)

// Check validates what parsing cannot, against the running system:
//
//   - the configuration file (if Path names one), each worker program, the key-command program
//     and the authorized-keys-dir (and every directory above them) are not
//     writable by group or others, and, when the daemon runs as root, are
//     owned by root;
//   - programs exist and are regular executable files;
//   - run-as accounts exist and are not root (uid 0);
//   - listen addresses do not overlap, within a service or across
//     services;
//   - a backend service's Unix socket, if it exists, is a socket;
//   - trusted-user-ca-keys, revoked-keys and host-certificate exist, are
//     trusted files as above and parse (the host certificate is a valid host
//     certificate of the host key), and authorized-principals-dir and the
//     authorized-principals-command program are trusted as the key sources
//     are.
//
// First it runs the value rules Parse runs (validate), with the same
// messages, so that a Config not made by Parse (such as Default's, or one
// built by hand) is held to them too; a Config without lines gets them
// without a line.
//
// Problems that make the configuration unusable are returned as an
// *Errors. Problems that only make part of it ineffective are returned as
// warnings, each formatted "file:line: message": a listed user or group
// that does not exist, a service that allows nobody, a program that users
// outside its group cannot execute, no key source, no services, a
// key-command without "%u", idle-timeout set where every connection gets
// its own worker, a backend Unix socket that does not exist yet, and a
// backend TCP address that is not a loopback address.
func (c *Config) Check() (warnings []string, err error) {
	k := &checker{cfg: c, errs: collector{path: c.Path}, root: os.Geteuid() == 0}
	c.validate(&k.errs, func(line int, msg string) { k.warn(line, "%s", msg) })
	if _, err := os.Stat(c.Path); c.Path != "" && err == nil {
		// A configuration read from elsewhere than a file has none to check.
		k.trustedFile(0, "configuration file", c.Path)
	}
	k.keySources()
	k.certificates()
	if len(c.Services) == 0 {
		k.warn(0, "no services are defined, so netauthd accepts no connections: add a \"service NAME { ... }\" block")
	}
	for _, s := range c.Services {
		k.service(s)
	}
	k.listeners()
	return k.warnings, k.errs.err()
}

// checker holds the state of one Check.
type checker struct {
	cfg      *Config
	errs     collector
	warnings []string
	// root is true when the daemon runs as root, so that files it runs
	// must be owned by root.
	root bool
}

// errorf records an error at line.
func (k *checker) errorf(line int, format string, args ...any) {
	k.errs.add(line, fmt.Sprintf(format, args...))
}

// warn records a warning at line.
func (k *checker) warn(line int, format string, args ...any) {
	e := &Error{Path: k.cfg.Path, Line: line, Msg: fmt.Sprintf(format, args...)}
	k.warnings = append(k.warnings, e.Error())
}

// keySources checks the global key sources.
func (k *checker) keySources() {
	c := k.cfg
	if c.AuthorizedKeysDir == "" && !c.HomeAuthorizedKeys && len(c.KeyCommand) == 0 && c.TrustedUserCAKeys == "" {
		k.warn(0, "no key source: authorized-keys-dir is none, home-authorized-keys is no and there is no key-command or trusted-user-ca-keys, so nobody can authenticate")
	}
	if dir := c.AuthorizedKeysDir; dir != "" {
		line := c.line("authorized-keys-dir")
		fi, err := os.Stat(dir)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			k.warn(line, "authorized-keys-dir %s does not exist, so it gives no keys: create it (owned by root, mode 755) with one authorized_keys file per user, named after the user", dir)
		case err != nil:
			k.errorf(line, "authorized-keys-dir: %v", err)
		case !fi.IsDir():
			k.errorf(line, "authorized-keys-dir %s is not a directory", dir)
		default:
			// Whoever can write there can add keys for any user.
			k.trustedFile(line, "authorized-keys-dir", dir)
		}
	}
	if len(c.KeyCommand) > 0 {
		line := c.line("key-command")
		k.program(line, "key-command program", c.KeyCommand[0], false)
		hasUser := false
		for _, a := range c.KeyCommand[1:] {
			hasUser = hasUser || strings.Contains(a, "%u")
		}
		if !hasUser {
			k.warn(line, "key-command has no %%u argument, so it is not told which user's keys to print: add %%u where the user name goes")
		}
	}
}

// certificates checks the certificate directives against the system: the
// files exist, only root can change them, and they parse.
func (k *checker) certificates() {
	c := k.cfg
	if p := c.TrustedUserCAKeys; p != "" {
		line := c.line("trusted-user-ca-keys")
		if k.existingFile(line, "trusted-user-ca-keys", p) {
			switch cas, err := usercert.LoadCAKeys(p); {
			case err != nil:
				k.errorf(line, "trusted-user-ca-keys: %v", err)
			case len(cas) == 0:
				k.warn(line, "trusted-user-ca-keys %s lists no key, so no certificate is accepted", p)
			}
		}
	} else if c.AuthorizedPrincipalsDir != "" || c.AuthorizedPrincipalsCommand != nil {
		k.warn(0, "authorized principals are configured but trusted-user-ca-keys is not, so no certificate is accepted and they have no effect")
	}
	if dir := c.AuthorizedPrincipalsDir; dir != "" {
		line := c.line("authorized-principals-dir")
		fi, err := os.Stat(dir)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			k.warn(line, "authorized-principals-dir %s does not exist, so no certificate is accepted: create it (owned by root, mode 755) with one principals file per user, named after the user", dir)
		case err != nil:
			k.errorf(line, "authorized-principals-dir: %v", err)
		case !fi.IsDir():
			k.errorf(line, "authorized-principals-dir %s is not a directory", dir)
		default:
			k.trustedFile(line, "authorized-principals-dir", dir)
		}
	}
	if cmd := c.AuthorizedPrincipalsCommand; len(cmd) > 0 && filepath.IsAbs(cmd[0]) {
		line := c.line("authorized-principals-command")
		k.program(line, "authorized-principals-command program", cmd[0], false)
		hasUser := false
		for _, a := range cmd[1:] {
			hasUser = hasUser || strings.Contains(a, "%u")
		}
		if !hasUser {
			k.warn(line, "authorized-principals-command has no %%u argument, so it is not told which user's principals to print: add %%u where the user name goes")
		}
	}
	if p := c.RevokedKeys; p != "" {
		line := c.line("revoked-keys")
		if k.existingFile(line, "revoked-keys", p) {
			if _, err := krl.Load(p); err != nil {
				k.errorf(line, "revoked-keys: %v", err)
			}
		}
	}
	if p := c.HostCertificate; p != "" {
		line := c.line("host-certificate")
		if k.existingFile(line, "host-certificate", p) {
			k.hostCertificate(line, p)
		}
	}
}

// existingFile checks that path is a regular file only root can change, and
// reports whether it is worth reading.
func (k *checker) existingFile(line int, what, path string) bool {
	if !filepath.IsAbs(path) {
		return false // validate reported it
	}
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		k.errorf(line, "%s %s does not exist", what, path)
		return false
	case err != nil:
		k.errorf(line, "%s: %v", what, err)
		return false
	case !fi.Mode().IsRegular():
		k.errorf(line, "%s %s is not a regular file", what, path)
		return false
	}
	n := len(k.errs.errs)
	k.trustedFile(line, what, path)
	return len(k.errs.errs) == n
}

// hostCertificate checks that the host certificate at path is a valid host
// certificate of the host key, and warns when it expires soon.
func (k *checker) hostCertificate(line int, path string) {
	hostKey, _ := k.cfg.HostKeyFile()
	key, err := keys.LoadHostKey(hostKey)
	if errors.Is(err, fs.ErrNotExist) {
		k.errorf(line, "host-certificate %s: the host key %s does not exist yet, so the certificate cannot be of it: start netauthd once without host-certificate (it creates the key), then sign %s.pub", path, hostKey, hostKey)
		return
	}
	if err != nil {
		k.errorf(line, "host-certificate: reading the host key: %v", err)
		return
	}
	_, warning, err := keys.LoadHostCertificate(path, key, time.Now())
	clear(key)
	if err != nil {
		k.errorf(line, "host-certificate: %v", err)
		return
	}
	if warning != "" {
		k.warn(line, "%s: renew it (ssh-keygen -s CA -h) and reload", warning)
	}
}

// service checks one service against the system.
func (k *checker) service(s *Service) {
	if s.Program != "" && filepath.IsAbs(s.Program) {
		k.program(s.line("program"), "program", s.Program, s.RunAsUser)
	}
	if len(s.Users) == 0 && len(s.Groups) == 0 {
		k.warn(s.Line, "service %s allows nobody: it lists no users or groups; add \"users NAME...\", \"groups NAME...\" or \"users *\" (every user with a key)", q(s.Name))
	}
	if !s.RunAsUser && keys.ValidName(s.Account) == nil {
		line := s.line("run-as")
		a, err := LookupAccount(s.Account)
		var unknown user.UnknownUserError
		switch {
		case errors.As(err, &unknown):
			k.errorf(line, "service %s: run-as account %s does not exist: create it (for example \"useradd --system --no-create-home %s\") or change run-as", q(s.Name), q(s.Account), s.Account)
		case err != nil:
			k.errorf(line, "service %s: run-as account: %v", q(s.Name), err)
		case a.UID == 0:
			k.errorf(line, "service %s: run-as account %s has uid 0: workers must never run as root; use an unprivileged account", q(s.Name), q(s.Account))
		}
	}
	for i, u := range s.Users {
		if u == "*" || keys.ValidName(u) != nil {
			continue
		}
		_, err := user.Lookup(u)
		var unknown user.UnknownUserError
		switch {
		case errors.As(err, &unknown):
			k.warn(s.entryLine(s.userLines, i), "service %s: user %s does not exist (yet), so this entry has no effect", q(s.Name), q(u))
		case err != nil:
			k.warn(s.entryLine(s.userLines, i), "service %s: looking up user %s: %v", q(s.Name), q(u), err)
		}
	}
	for i, g := range s.Groups {
		if keys.ValidName(g) != nil {
			continue
		}
		_, err := user.LookupGroup(g)
		var unknown user.UnknownGroupError
		switch {
		case errors.As(err, &unknown):
			k.warn(s.entryLine(s.groupLines, i), "service %s: group %s does not exist (yet), so this entry has no effect", q(s.Name), q(g))
		case err != nil:
			k.warn(s.entryLine(s.groupLines, i), "service %s: looking up group %s: %v", q(s.Name), q(g), err)
		}
	}
	if (s.Mode == Backend || s.Mode == HTTPBackend) && backendProblem(s.Backend) == "" {
		k.backend(s)
	}
}

// backend checks a backend service's address against the system: a Unix
// socket that does not exist (yet) and a TCP address off this machine are
// warnings.
func (k *checker) backend(s *Service) {
	line := s.line("backend")
	network, address, _ := strings.Cut(s.Backend, ":")
	if network == "unix" {
		fi, err := os.Stat(address)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			k.warn(line, "service %s: backend socket %s does not exist (yet), so connections fail until the backend service creates it", q(s.Name), address)
		case err != nil:
			k.warn(line, "service %s: backend socket: %v", q(s.Name), err)
		case fi.Mode()&fs.ModeSocket == 0:
			k.errorf(line, "service %s: backend %s is not a socket", q(s.Name), address)
		}
		return
	}
	if !backendLoopback(s.Backend) {
		k.warn(line, "service %s: backend %s is not a loopback address, so the forwarded connections and the identity header the backend trusts cross the network unencrypted: run the backend on this machine (127.0.0.1, [::1] or a Unix socket)", q(s.Name), s.Backend)
	}
}

// program checks that path is a regular executable file that only root
// (when the daemon runs as root) can change. forUsers is true when users
// other than the owner run it, so that it should be executable by others.
func (k *checker) program(line int, what, path string, forUsers bool) {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		k.errorf(line, "%s %s does not exist", what, path)
		return
	case err != nil:
		k.errorf(line, "%s: %v", what, err)
		return
	case !fi.Mode().IsRegular():
		k.errorf(line, "%s %s is not a regular file", what, path)
		return
	case fi.Mode().Perm()&0o111 == 0:
		k.errorf(line, "%s %s is not executable (mode %#o): run \"chmod 755 %s\"", what, path, fi.Mode().Perm(), path)
		return
	case forUsers && fi.Mode().Perm()&0o001 == 0:
		k.warn(line, "%s %s is not executable by others (mode %#o), so workers of users outside its group cannot start", what, path, fi.Mode().Perm())
	}
	k.trustedFile(line, what, path)
}

// trustedFile checks that path and every directory above it (as written
// and with symbolic links resolved) cannot be changed by anyone but root:
// none is writable by group or others, except a directory with the sticky
// bit (such as /tmp), and, when the daemon runs as root, each is owned by
// root. It reports the first problem found.
func (k *checker) trustedFile(line int, what, path string) {
	chains := [][]string{ancestry(path)}
	if real, err := filepath.EvalSymlinks(path); err == nil && real != filepath.Clean(path) {
		chains = append(chains, ancestry(real))
	}
	for _, chain := range chains {
		for i, p := range chain {
			fi, err := os.Stat(p)
			if err != nil {
				k.errorf(line, "%s: %v", what, err)
				return
			}
			name := what + " " + path
			if i > 0 {
				name = "directory " + p + " (above " + what + " " + path + ")"
			}
			perm := fi.Mode().Perm()
			sticky := fi.IsDir() && fi.Mode()&fs.ModeSticky != 0
			if perm&0o022 != 0 && !sticky {
				k.errorf(line, "%s is writable by group or others (mode %#o), so they could change what netauthd trusts: run \"chmod go-w %s\"", name, perm, p)
				return
			}
			if uid, ok := fileOwner(fi); ok && k.root && uid != 0 {
				k.errorf(line, "%s is owned by uid %d, not root, so that user could change what netauthd trusts: run \"chown root %s\"", name, uid, p)
				return
			}
		}
	}
}

// ancestry returns path, cleaned and made absolute, followed by each
// directory above it up to "/".
func ancestry(path string) []string {
	p, err := filepath.Abs(path)
	if err != nil {
		p = filepath.Clean(path)
	}
	chain := []string{p}
	for {
		dir := filepath.Dir(p)
		if dir == p {
			return chain
		}
		chain = append(chain, dir)
		p = dir
	}
}

// binding is the set of local addresses a listen address takes on its
// port.
type binding struct {
	port       int
	all4, all6 bool
	addrs      []netip.Addr
}

// bindingOf describes listen address a, which must be valid.
func bindingOf(a string) (binding, bool) {
	host, port, err := splitListen(a)
	if err != nil {
		return binding{}, false
	}
	b := binding{port: port}
	switch host {
	case "":
		b.all4, b.all6 = true, true
	case "localhost":
		b.addrs = []netip.Addr{netip.AddrFrom4([4]byte{127, 0, 0, 1}), netip.IPv6Loopback()}
	default:
		addr, err := netip.ParseAddr(host)
		if err != nil {
			return binding{}, false
		}
		addr = addr.Unmap()
		switch {
		case addr.IsUnspecified() && addr.Is4():
			b.all4 = true
		case addr.IsUnspecified():
			// "[::]" listens on IPv4 as well, as Go's net.Listen does.
			b.all4, b.all6 = true, true
		default:
			b.addrs = []netip.Addr{addr}
		}
	}
	return b, true
}

// covers reports whether b takes addr.
func (b binding) covers(addr netip.Addr) bool {
	if (addr.Is4() && b.all4) || (addr.Is6() && b.all6) {
		return true
	}
	for _, a := range b.addrs {
		if a == addr {
			return true
		}
	}
	return false
}

// overlaps reports whether b and o cannot both be bound.
func (b binding) overlaps(o binding) bool {
	if b.port != o.port || b.port == 0 { // port 0: the kernel picks a distinct free port
		return false
	}
	if (b.all4 && o.all4) || (b.all6 && o.all6) {
		return true
	}
	for _, a := range o.addrs {
		if b.covers(a) {
			return true
		}
	}
	for _, a := range b.addrs {
		if o.covers(a) {
			return true
		}
	}
	return false
}

// splitListen splits a listen address into host and numeric port.
func splitListen(a string) (string, int, error) {
	if msg := listenProblem(a); msg != "" {
		return "", 0, errors.New(msg)
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return "", 0, err
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		return "", 0, fmt.Errorf("policy: listen port %q: %w", port, err)
	}
	return host, n, nil
}

// listeners reports listen addresses that overlap.
func (k *checker) listeners() {
	type entry struct {
		svc  *Service
		addr string
		line int
		b    binding
	}
	var seen []entry
	for _, s := range k.cfg.Services {
		for i, a := range s.Listen {
			b, ok := bindingOf(a)
			if !ok {
				continue
			}
			e := entry{svc: s, addr: a, line: s.entryLine(s.listenLines, i), b: b}
			for _, o := range seen {
				if !b.overlaps(o.b) {
					continue
				}
				if o.svc == s {
					k.errorf(e.line, "service %s: listen %s overlaps listen %s on line %d: the same address and port cannot be bound twice; keep one", q(s.Name), a, o.addr, o.line)
				} else {
					k.errorf(e.line, "service %s: listen %s overlaps listen %s of service %s (line %d): each address and port can belong to one service only", q(s.Name), a, o.addr, q(o.svc.Name), o.line)
				}
				break
			}
			seen = append(seen, e)
		}
	}
}
