// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"crypto/ed25519"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth/internal/keys"
	"ubns.dev/netauth/internal/krl"
	"ubns.dev/netauth/internal/policy"
	"ubns.dev/netauth/internal/usercert"
)

// certState is what the certificate directives of a configuration say, read from their files:
// the host certificate presented, the user certificate checks and the revoked keys. The
// monitor alone reads those files and decides with them; the acceptor never needs them. It is
// read at start and again on every reload, and the revoked keys also whenever the file
// changes (refreshRevoked). A certState does not change once made: a new one replaces it.
type certState struct {
	hostCert  *ssh.Certificate
	userCerts *usercert.Checker // nil: certificates are refused
	revoked   *krl.Set          // nil: none revoked
	skew      time.Duration     // max-clock-skew, the certificates' validity skew
	// revokedPath and revokedStamp are the revoked-keys file and what its stat said when it
	// was read, so that the revocation check reads it again only when it changed.
	revokedPath  string
	revokedStamp fileStamp
}

// fileStamp is what tells that a file changed: its identity, size and times.
type fileStamp struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64 // nanoseconds
}

// stampOf returns the stamp of the file at path.
func stampOf(path string) (fileStamp, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return fileStamp{}, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	return stampFromStat(&st), nil
}

// stampFromStat returns the stamp of the file st describes.
func stampFromStat(st *syscall.Stat_t) fileStamp {
	return fileStamp{dev: uint64(st.Dev), ino: st.Ino, size: st.Size,
		mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano()}
}

// principalsTTL is how long the revocation check decides a live certificate session with the
// principals the authorized principals dir or command gave for its user (usercert's
// Checker.PrincipalsTTL; zero: usercert.DefaultPrincipalsTTL). Handshakes always ask. Tests
// shorten it.
var principalsTTL time.Duration

// loadCerts reads the certificate files cfg names for host key key. warnings are said in
// the log (a host certificate about to expire).
func loadCerts(cfg *policy.Config, key ed25519.PrivateKey) (cs *certState, warnings []string, err error) {
	cs = &certState{skew: cfg.MaxClockSkew}
	if cfg.HostCertificate != "" {
		cert, warning, err := keys.LoadHostCertificate(cfg.HostCertificate, key, time.Now())
		if err != nil {
			return nil, nil, fmt.Errorf("host-certificate: %w", err)
		}
		if warning != "" {
			warnings = append(warnings, warning)
		}
		cs.hostCert = cert
	}
	if cfg.RevokedKeys != "" {
		cs.revokedPath = cfg.RevokedKeys
		if cs.revoked, cs.revokedStamp, err = loadRevoked(cfg.RevokedKeys); err != nil {
			return nil, nil, fmt.Errorf("revoked-keys: %w", err)
		}
	}
	if cfg.TrustedUserCAKeys != "" {
		cas, err := usercert.LoadCAKeys(cfg.TrustedUserCAKeys)
		if err != nil {
			return nil, nil, fmt.Errorf("trusted-user-ca-keys: %w", err)
		}
		uc := &usercert.Checker{CAs: cas, PrincipalsTTL: principalsTTL}
		if cfg.AuthorizedPrincipalsDir != "" {
			uc.Principals = append(uc.Principals, usercert.PrincipalsDir{Dir: cfg.AuthorizedPrincipalsDir})
		}
		if cmd := cfg.AuthorizedPrincipalsCommand; len(cmd) > 0 {
			uc.Principals = append(uc.Principals, usercert.PrincipalsCommand{Path: cmd[0], Args: cmd[1:]})
		}
		cs.userCerts = uc
	}
	return cs, warnings, nil
}

// loadRevoked reads a revoked-keys file, refusing one that is not a regular file (a named
// pipe would block the read), that group or others may write or, when netauthd runs as root,
// that another user owns (as policy's check does at start and reload: the file is read again
// at run time, when a symlink or a new file may have taken its place). The checks and the read
// are of the one file opened, and the stamp returned is what it was before the read: a change
// made while it was read shows at the next look.
func loadRevoked(path string) (*krl.Set, fileStamp, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fileStamp{}, err
	}
	defer f.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return nil, fileStamp{}, &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	stamp := stampFromStat(&st)
	perm := os.FileMode(st.Mode).Perm()
	switch {
	case st.Mode&syscall.S_IFMT != syscall.S_IFREG:
		return nil, fileStamp{}, fmt.Errorf("%s is not a regular file; refusing it", path)
	case perm&0o022 != 0:
		return nil, fileStamp{}, fmt.Errorf("%s is writable by group or others (mode %#o); refusing it", path, perm)
	case os.Geteuid() == 0 && st.Uid != 0:
		return nil, fileStamp{}, fmt.Errorf("%s is owned by uid %d, not root; refusing it", path, st.Uid)
	case st.Size > krl.MaxSize:
		return nil, fileStamp{}, fmt.Errorf("%s is %d bytes, more than %d", path, st.Size, krl.MaxSize)
	}
	data, err := io.ReadAll(io.LimitReader(f, krl.MaxSize+1))
	if err != nil {
		return nil, fileStamp{}, fmt.Errorf("reading %s: %w", path, err)
	}
	if len(data) > krl.MaxSize {
		return nil, fileStamp{}, fmt.Errorf("%s is more than %d bytes", path, krl.MaxSize)
	}
	set, err := krl.Parse(data)
	if err != nil {
		return nil, fileStamp{}, fmt.Errorf("%w (in %s)", err, path)
	}
	return set, stamp, nil
}

// withRevoked returns a copy of cs with revoked keys set. The user certificate checks stay the
// same (with what they remember): the handshake, not the Checker, applies the revoked keys.
func (cs *certState) withRevoked(set *krl.Set, stamp fileStamp) *certState {
	n := *cs
	n.revoked, n.revokedStamp = set, stamp
	return &n
}

// currentCerts returns the certificate state in force.
func (d *Daemon) currentCerts() *certState {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.certs
}

// setCertsLocked puts cs in force for every service's handshakes. Its user certificate checks
// remember the certificates verified under the state it replaces whose CA they still trust, so
// that the tickets naming them resume. Callers hold d.mu.
func (d *Daemon) setCertsLocked(cs *certState) error {
	if d.certs != nil && cs.userCerts != nil {
		cs.userCerts.Adopt(d.certs.userCerts)
	}
	for name, s := range d.services {
		if err := s.core.SetCertificates(cs.hostCert, cs.userCerts, cs.revoked); err != nil {
			return fmt.Errorf("service %q: %w", name, err)
		}
	}
	d.certs = cs
	return nil
}

// refreshRevoked reads the revoked-keys file again if it changed since it was read, so that a
// key or certificate revoked with ssh-keygen -k -u is refused, and its live sessions closed,
// at the next revocation checks without a reload. A changed file is applied only once a look
// finds it as the look before found it: ssh-keygen -k -u, an editor or a shell redirection
// rewrite the file in place (truncate, then write), and a file read in between, empty or half
// written, would parse and un-revoke what it no longer lists. A file that cannot be read or
// does not parse keeps the list in force and is tried again at the next check; the log says
// so once per distinct error.
func (d *Daemon) refreshRevoked() {
	cs := d.currentCerts()
	if cs == nil || cs.revokedPath == "" {
		return
	}
	seen, err := stampOf(cs.revokedPath)
	if err == nil {
		d.mu.Lock()
		settled := seen == d.revokedSeen
		d.revokedSeen = seen
		d.mu.Unlock()
		if seen == cs.revokedStamp || !settled {
			return // unchanged, or changed since the last look: maybe still being written
		}
	}
	set, stamp, err := loadRevoked(cs.revokedPath)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.certs != cs {
		return // a reload replaced them meanwhile
	}
	if err != nil {
		if msg := err.Error(); msg != d.revokedErr {
			d.revokedErr = msg
			d.log.Error("revoked-keys changed but cannot be read; keeping the revoked keys read before", "path", cs.revokedPath, "err", err)
		}
		return
	}
	d.revokedErr = ""
	if stamp != seen {
		d.revokedSeen = stamp // it changed again: apply it once it stays so
		return
	}
	if err := d.setCertsLocked(cs.withRevoked(set, stamp)); err != nil {
		d.log.Error("revoked-keys: not applied", "err", err)
		return
	}
	d.log.Info("revoked-keys read again", "path", cs.revokedPath, "entries", set.Len())
}
