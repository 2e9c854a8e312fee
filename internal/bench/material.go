// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"time"

	"golang.org/x/crypto/ssh"
)

// material is the keys and certificates of one run: the netauth host key (shared by every
// netauth server of the run), the user's key (also held by the run's agent), a key no server
// knows (the agent's first key), and a private CA with a TLS server and client certificate
// (ECDSA P-256).
type material struct {
	hostSeed []byte
	hostKey  ed25519.PrivateKey
	hostPub  ssh.PublicKey
	user     ssh.Signer
	userKey  ed25519.PrivateKey // user's private key, for the agent
	otherKey ed25519.PrivateKey // a key of the agent's that no server accepts

	tlsServerCert [][]byte // DER chain
	tlsServerKey  []byte   // PKCS #8 DER
	tlsClient     tls.Certificate
	tlsCA         []byte // DER
}

// newMaterial generates the keys and certificates.
func newMaterial() (*material, error) {
	m := &material{hostSeed: make([]byte, ed25519.SeedSize)}
	if _, err := rand.Read(m.hostSeed); err != nil {
		return nil, err
	}
	m.hostKey = ed25519.NewKeyFromSeed(m.hostSeed)
	var err error
	if m.hostPub, err = ssh.NewPublicKey(m.hostKey.Public()); err != nil {
		return nil, err
	}
	if _, m.userKey, err = ed25519.GenerateKey(rand.Reader); err != nil {
		return nil, err
	}
	if m.user, err = ssh.NewSignerFromKey(m.userKey); err != nil {
		return nil, err
	}
	if _, m.otherKey, err = ed25519.GenerateKey(rand.Reader); err != nil {
		return nil, err
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "netauth bench CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	if m.tlsCA, err = x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey); err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(m.tlsCA)
	if err != nil {
		return nil, err
	}
	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage) ([]byte, *ecdsa.PrivateKey, error) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), DNSNames: []string{cn},
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		return der, k, err
	}
	srvDER, srvKey, err := leaf(2, "localhost", x509.ExtKeyUsageServerAuth)
	if err != nil {
		return nil, err
	}
	m.tlsServerCert = [][]byte{srvDER}
	if m.tlsServerKey, err = x509.MarshalPKCS8PrivateKey(srvKey); err != nil {
		return nil, err
	}
	cliDER, cliKey, err := leaf(3, "nobody", x509.ExtKeyUsageClientAuth)
	if err != nil {
		return nil, err
	}
	m.tlsClient = tls.Certificate{Certificate: [][]byte{cliDER}, PrivateKey: cliKey}
	return m, nil
}

// newUserSigner returns a fresh Ed25519 user key.
func newUserSigner() (ssh.Signer, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return ssh.NewSignerFromKey(priv)
}

// tlsServerConfig is the TLS 1.3 server side: it requires a client certificate from the CA.
func tlsServerConfig(chain [][]byte, keyDER, caDER []byte) (*tls.Config, error) {
	key, err := x509.ParsePKCS8PrivateKey(keyDER)
	if err != nil {
		return nil, fmt.Errorf("TLS server key: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, fmt.Errorf("TLS CA: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: chain, PrivateKey: key}},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool, MinVersion: tls.VersionTLS13}, nil
}

// tlsClientConfig is the TLS 1.3 client side, with its certificate; resume gives it a session
// cache.
func (m *material) tlsClientConfig(resume bool) *tls.Config {
	ca, _ := x509.ParseCertificate(m.tlsCA)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	cfg := &tls.Config{Certificates: []tls.Certificate{m.tlsClient}, RootCAs: pool, ServerName: "localhost",
		MinVersion: tls.VersionTLS13}
	if resume {
		cfg.ClientSessionCache = tls.NewLRUClientSessionCache(16)
	}
	return cfg
}
