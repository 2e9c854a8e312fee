// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"testing"

	"golang.org/x/crypto/ssh"
	sshagent "golang.org/x/crypto/ssh/agent"

	"ubns.dev/netauth/internal/keys"
)

// marshalCounter is a public key that counts how often its wire form is asked for: a
// fingerprint or a parse of an opaque agent key asks once each.
type marshalCounter struct {
	ssh.PublicKey
	n int
}

func (k *marshalCounter) Marshal() []byte {
	k.n++
	return k.PublicKey.Marshal()
}

// TestSignRestrictionCost: a raw sign request of data that is no netauth signed data (SSH's
// own signatures) does not look up host restrictions (the key's fingerprint, a certificate's
// parse): it costs what the keyring's signature costs. Netauth signed data computes the key's
// fingerprint once.
func TestSignRestrictionCost(t *testing.T) {
	key, pub := newEd25519(t)
	cert := redteamUserCert(t, pub)
	withCert := key
	withCert.Certificate = cert
	freeKey, freePub := newEd25519(t)
	a := New(Options{Restrictions: map[string][]string{keys.Fingerprint(pub): {keys.Fingerprint(newHostKey(t))}}})
	for _, k := range []sshagent.AddedKey{key, withCert, freeKey} {
		if err := a.Add(k); err != nil {
			t.Fatal(err)
		}
	}
	// marshals returns how often sign asks for the wire form of k.
	marshals := func(k ssh.PublicKey, sign func(ssh.PublicKey) error) int {
		t.Helper()
		c := &marshalCounter{PublicKey: k}
		if err := sign(c); err != nil {
			t.Fatal(err)
		}
		return c.n
	}
	ordinary := []byte("ssh login session data")
	netauth := keys.SignedData(Namespace, statementFor(t, newHostKey(t)))
	opaqueCert := &sshagent.Key{Format: cert.Type(), Blob: cert.Marshal()} // as a sign request names it
	for _, tc := range []struct {
		name  string
		key   ssh.PublicKey
		data  []byte
		extra int
	}{
		{"restricted key, ordinary data", pub, ordinary, 0},
		{"certificate of a restricted key, ordinary data", opaqueCert, ordinary, 0},
		{"unrestricted key, netauth data", freePub, netauth, 1},
	} {
		keyring := marshals(tc.key, func(k ssh.PublicKey) error { _, err := a.keyring.SignWithFlags(k, tc.data, 0); return err })
		agent := marshals(tc.key, func(k ssh.PublicKey) error { _, err := a.SignWithFlags(k, tc.data, 0); return err })
		if agent != keyring+tc.extra {
			t.Errorf("%s: the agent's sign asks for the key's wire form %d times, the keyring's %d: want %d more", tc.name, agent, keyring, tc.extra)
		}
	}
}
