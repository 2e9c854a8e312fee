// SPDX-License-Identifier: Apache-2.0

package netauth

import (
	"context"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth/internal/keys"
	"ubns.dev/netauth/internal/krl"
	"ubns.dev/netauth/internal/usercert"
)

// LoadUserCAKeys reads a file of trusted user CA keys, as sshd's TrustedUserCAKeys: one public
// key per line in authorized_keys format, blank lines and "#" comments skipped. A line with
// options, a certificate, or a line that is not a key is an error. Use the keys as
// ServerConfig.TrustedUserCAKeys.
func LoadUserCAKeys(path string) ([]ssh.PublicKey, error) { return usercert.LoadCAKeys(path) }

// RevokedKeys is a list of revoked keys and certificates, as sshd's RevokedKeys (see
// LoadRevokedKeys).
type RevokedKeys struct{ set *krl.Set }

// LoadRevokedKeys reads a revoked keys file: an OpenSSH key revocation list (a KRL, as
// `ssh-keygen -k` writes it) or a plain list of public keys in authorized_keys format. A key
// is revoked when it is listed (for a certificate: its key), and a certificate also when its
// CA key is listed, or the KRL revokes its serial (under its CA) or its key id. Files larger
// than 16 MiB are refused.
func LoadRevokedKeys(path string) (*RevokedKeys, error) {
	s, err := krl.Load(path)
	if err != nil {
		return nil, err
	}
	return &RevokedKeys{set: s}, nil
}

// ParseRevokedKeys parses the contents of a revoked keys file (see LoadRevokedKeys).
func ParseRevokedKeys(data []byte) (*RevokedKeys, error) {
	s, err := krl.Parse(data)
	if err != nil {
		return nil, err
	}
	return &RevokedKeys{set: s}, nil
}

// Revoked reports whether key (a plain key or a certificate) is revoked.
func (r *RevokedKeys) Revoked(key ssh.PublicKey) bool { return r != nil && r.set.Revoked(key) }

// PrincipalSource lists the certificate principals that may authenticate as a user (see
// AuthorizedPrincipalsDir and AuthorizedPrincipalsCommand).
type PrincipalSource interface {
	Principals(ctx context.Context, user string) ([]string, error)
}

// AuthorizedPrincipalsDir returns a PrincipalSource reading dir/<user>, one principal per line,
// as sshd's AuthorizedPrincipalsFile: blank lines and "#" comments are skipped, and a line with
// options before its principal grants nothing (netauth does not apply them). A missing file
// lists none; a file group or others may write is refused.
func AuthorizedPrincipalsDir(dir string) PrincipalSource { return usercert.PrincipalsDir{Dir: dir} }

// AuthorizedPrincipalsCommand returns a PrincipalSource running a program, as sshd's
// AuthorizedPrincipalsCommand: each "%u" in args is replaced by the user name, and the
// program prints principals in the format of AuthorizedPrincipalsDir's files.
func AuthorizedPrincipalsCommand(path string, args ...string) PrincipalSource {
	return usercert.PrincipalsCommand(keys.Command{Path: path, Args: args})
}

// revokedSet is the revoked keys of a server configuration (nil: none).
func (cfg *ServerConfig) revokedSet() *krl.Set {
	if cfg.RevokedKeys == nil {
		return nil
	}
	return cfg.RevokedKeys.set
}

// userCertChecker is the certificate checker of a server configuration, nil if it trusts no
// user CA.
func (cfg *ServerConfig) userCertChecker() *usercert.Checker {
	if len(cfg.TrustedUserCAKeys) == 0 {
		return nil
	}
	c := &usercert.Checker{CAs: cfg.TrustedUserCAKeys}
	for _, p := range cfg.AuthorizedPrincipals {
		c.Principals = append(c.Principals, p)
	}
	return c
}
