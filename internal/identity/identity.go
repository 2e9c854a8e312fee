// SPDX-License-Identifier: Apache-2.0

// Package identity is the one description of who a netauth handshake authenticated. The
// handshake produces it, the server's authorization decides on it, and it travels unchanged
// to the application (netauth.Conn.Identity, which is this type), to netauthd's worker (the
// handoff message), to the audit record and to the PROXY protocol header of the backend mode.
package identity

import (
	"crypto/sha256"
	"encoding/base64"
	"time"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth/internal/keys"
)

// Identity is who a connection's handshake authenticated, and how.
type Identity struct {
	// User is the authenticated user name.
	User string
	// Key is the user's public key; KeyType and KeyFingerprint describe it
	// ("ssh-ed25519", "SHA256:..."). Set them together with SetKey. Key may be an OpenSSH
	// user certificate (KeyType "ssh-ed25519-cert-v01@openssh.com" and so on, and
	// KeyFingerprint then the certificate's); CertKeyID, CertSerial and CertCAFingerprint
	// then describe it: its key id, its serial and the SHA256 fingerprint of the CA key that
	// signed it (empty and zero for a plain key).
	Key               ssh.PublicKey
	KeyType           string
	KeyFingerprint    string
	CertKeyID         string
	CertSerial        uint64
	CertCAFingerprint string
	// HostKey is the server's Ed25519 host key and HostKeyFingerprint its fingerprint (set
	// them together with SetHostKey).
	HostKey            ssh.PublicKey
	HostKeyFingerprint string
	// Service is the service name the server announced.
	Service string
	// Resumed reports whether the connection was authenticated with a ticket (no signature).
	Resumed bool
	// AuthTime is when the user last signed an authenticator: the time of this handshake, or
	// for a resumed connection the time of the full handshake that issued the ticket.
	AuthTime time.Time
	// HandshakeHash is the Noise handshake hash, unique to this connection (channel binding).
	HandshakeHash []byte
	// Statement and Signature are the signed authenticator of a full handshake (SSHSIG in
	// namespace "netauth-v1@ubns.dev"); anyone can check them with ssh-keygen -Y verify.
	// Empty for resumed connections.
	Statement []byte
	Signature []byte
}

// SetKey sets the user's key and the fields that describe it (nil clears them).
func (id *Identity) SetKey(k ssh.PublicKey) {
	id.Key, id.KeyType, id.KeyFingerprint = k, "", ""
	id.CertKeyID, id.CertSerial, id.CertCAFingerprint = "", 0, ""
	if k != nil {
		id.KeyType, id.KeyFingerprint = k.Type(), ssh.FingerprintSHA256(k)
	}
	if c, ok := k.(*ssh.Certificate); ok {
		id.CertKeyID, id.CertSerial = c.KeyId, c.Serial
		if c.SignatureKey != nil {
			id.CertCAFingerprint = ssh.FingerprintSHA256(c.SignatureKey)
		}
	}
}

// SetHostKey sets the host key and its fingerprint (nil clears them).
func (id *Identity) SetHostKey(k ssh.PublicKey) {
	id.HostKey, id.HostKeyFingerprint = k, ""
	if k != nil {
		id.HostKeyFingerprint = ssh.FingerprintSHA256(k)
	}
}

// KeyHash is the SHA-256 of a public key's SSH wire form: the hash a SHA256 fingerprint
// encodes, and what a resumption ticket holds instead of the key.
func KeyHash(k ssh.PublicKey) [sha256.Size]byte { return sha256.Sum256(k.Marshal()) }

// Authenticator returns the signed authenticator of a full handshake: the statement text and
// the signature in the armored form ssh-keygen uses, so that
//
//	ssh-keygen -Y verify -f allowed_signers -I USER -n netauth-v1@ubns.dev -s SIGFILE < STATEMENTFILE
//
// checks it. It returns nil slices for resumed connections (no signature was made).
func (id Identity) Authenticator() (statement, armoredSignature []byte) {
	if len(id.Signature) == 0 {
		return nil, nil
	}
	return id.Statement, keys.Armor(id.Signature)
}

// HashFingerprint is the SHA256 fingerprint ("SHA256:...") of the key whose hash (KeyHash) is h.
func HashFingerprint(h [sha256.Size]byte) string {
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(h[:])
}
