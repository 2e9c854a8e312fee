// SPDX-License-Identifier: Apache-2.0

package keys

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"
)

// MaxSignatureSize is the largest binary SSHSIG signature Verify accepts, in
// bytes. It is checked before any parsing.
const MaxSignatureSize = 16 << 10

const (
	sshsigMagic   = "SSHSIG"
	sshsigVersion = 1
	armorBegin    = "-----BEGIN SSH SIGNATURE-----"
	armorEnd      = "-----END SSH SIGNATURE-----"
	armorLineLen  = 70
)

// SignedData returns the bytes an SSH key signs for an SSHSIG signature over
// message in namespace, using the hash algorithm "sha512" (as ssh-keygen -Y
// sign does).
func SignedData(namespace string, message []byte) []byte {
	h := sha512.Sum512(message)
	return signedData(namespace, "", "sha512", h[:])
}

func signedData(namespace, reserved, hashAlg string, digest []byte) []byte {
	b := make([]byte, 0, len(sshsigMagic)+16+len(namespace)+len(reserved)+len(hashAlg)+len(digest))
	b = append(b, sshsigMagic...)
	b = appendString(b, []byte(namespace))
	b = appendString(b, []byte(reserved))
	b = appendString(b, []byte(hashAlg))
	b = appendString(b, digest)
	return b
}

func appendString(b, s []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// Sign makes a binary (unarmored) SSHSIG signature over message in
// namespace with signer, hashing the message with SHA-512. RSA keys sign with
// rsa-sha2-512, which needs a signer that implements ssh.AlgorithmSigner (as
// signers from ssh.NewSignerFromKey and from golang.org/x/crypto/ssh/agent
// clients do). A signer whose public key is an OpenSSH user certificate (as an agent lists
// a certificate next to its key) signs with the certificate's key, and the signature names
// the certificate; host certificates are refused.
func Sign(signer ssh.Signer, namespace string, message []byte) ([]byte, error) {
	if namespace == "" {
		return nil, errors.New("keys: sshsig: empty namespace")
	}
	pub := signer.PublicKey()
	c, err := AsCertificate(pub)
	if err != nil {
		return nil, fmt.Errorf("keys: sshsig: signer: %w", err)
	}
	if c != nil {
		if c.CertType != ssh.UserCert {
			return nil, errors.New("keys: sshsig: only user certificates may sign")
		}
		pub = c
	}
	data := SignedData(namespace, message)
	var sig *ssh.Signature
	if Underlying(pub).Type() == ssh.KeyAlgoRSA {
		as, ok := signer.(ssh.AlgorithmSigner)
		if !ok {
			return nil, errors.New("keys: sshsig: signer for an RSA key cannot sign with rsa-sha2-512 (it does not implement ssh.AlgorithmSigner)")
		}
		sig, err = as.SignWithAlgorithm(rand.Reader, data, ssh.KeyAlgoRSASHA512)
	} else {
		sig, err = signer.Sign(rand.Reader, data)
	}
	if err != nil {
		return nil, fmt.Errorf("keys: sshsig: signing with %s key %s: %w", pub.Type(), Fingerprint(pub), err)
	}
	if err := checkSigFormat(pub, sig); err != nil {
		return nil, err
	}
	return Assemble(pub, namespace, sig), nil
}

// Assemble builds the binary SSHSIG signature from a public key and a
// signature that key already made over SignedData(namespace, message). It is
// for signatures made elsewhere, such as by a remote ssh-agent.
func Assemble(pub ssh.PublicKey, namespace string, sig *ssh.Signature) []byte {
	b := make([]byte, 0, 64+len(namespace)+len(sig.Blob)+len(sig.Rest)+128)
	b = append(b, sshsigMagic...)
	b = binary.BigEndian.AppendUint32(b, sshsigVersion)
	b = appendString(b, pub.Marshal())
	b = appendString(b, []byte(namespace))
	b = appendString(b, nil) // reserved
	b = appendString(b, []byte("sha512"))
	b = appendString(b, ssh.Marshal(sig))
	return b
}

// MaxRSABits is the largest RSA modulus, in bits, that an SSHSIG signature
// may carry: verifying with a larger key costs more than a handshake is worth
// (a 16384-bit key takes milliseconds), so such keys are refused before any
// signature work.
const MaxRSABits = 8192

// SSHSIG is a parsed binary SSHSIG signature whose structure has been checked
// but whose signature has not been verified yet: Key is only the key the
// signature claims to be from. A server checks that the claimed key is one it
// would accept before it spends a verification on it.
type SSHSIG struct {
	Key       ssh.PublicKey
	namespace string
	reserved  string
	hashAlg   string
	sig       *ssh.Signature
}

// ParseSSHSIG parses a binary SSHSIG signature and checks everything but the
// signature itself: the size limit (MaxSignatureSize), the magic and version
// 1, that the namespace matches exactly, that the hash is sha256 or sha512,
// that the signature format suits the key type (RSA must use rsa-sha2-256 or
// rsa-sha2-512, never SHA-1 ssh-rsa), that RSA keys have at most MaxRSABits,
// and that no bytes trail any field. The key may be an OpenSSH user certificate (not a host
// certificate): then the signature is its key's, and these checks apply to that key; whether
// the certificate itself is to be trusted is for the caller to decide (package usercert).
func ParseSSHSIG(blob []byte, namespace string) (*SSHSIG, error) {
	if len(blob) > MaxSignatureSize {
		return nil, fmt.Errorf("keys: sshsig: signature is %d bytes, more than %d", len(blob), MaxSignatureSize)
	}
	if namespace == "" {
		return nil, errors.New("keys: sshsig: empty namespace")
	}
	rest, ok := bytes.CutPrefix(blob, []byte(sshsigMagic))
	if !ok {
		return nil, errors.New("keys: sshsig: bad magic")
	}
	if len(rest) < 4 {
		return nil, errors.New("keys: sshsig: truncated version")
	}
	if v := binary.BigEndian.Uint32(rest); v != sshsigVersion {
		return nil, fmt.Errorf("keys: sshsig: unsupported version %d", v)
	}
	rest = rest[4:]
	var fields [5][]byte
	names := [5]string{"public key", "namespace", "reserved", "hash algorithm", "signature"}
	for i := range fields {
		var err error
		if fields[i], rest, err = readString(rest); err != nil {
			return nil, fmt.Errorf("keys: sshsig: %s: %w", names[i], err)
		}
	}
	if len(rest) != 0 {
		return nil, errors.New("keys: sshsig: trailing bytes after signature")
	}
	pubBlob, ns, reserved, hashAlg, sigBlob := fields[0], fields[1], fields[2], fields[3], fields[4]

	pub, err := ssh.ParsePublicKey(pubBlob)
	if err != nil {
		return nil, fmt.Errorf("keys: sshsig: public key: %w", err)
	}
	if c, ok := pub.(*ssh.Certificate); ok {
		if c.CertType != ssh.UserCert {
			return nil, errors.New("keys: sshsig: a host certificate cannot sign an authenticator")
		}
		if _, ok := c.Key.(*ssh.Certificate); ok {
			return nil, errors.New("keys: sshsig: certificate of a certificate")
		}
	}
	if err := checkRSASize(Underlying(pub)); err != nil {
		return nil, err
	}
	if string(ns) != namespace {
		return nil, fmt.Errorf("keys: sshsig: namespace %q, want %q", ns, namespace)
	}
	switch string(hashAlg) {
	case "sha256", "sha512":
	default:
		return nil, fmt.Errorf("keys: sshsig: unsupported hash algorithm %q", hashAlg)
	}
	sig, err := parseSignature(sigBlob)
	if err != nil {
		return nil, err
	}
	if err := checkSigFormat(pub, sig); err != nil {
		return nil, err
	}
	return &SSHSIG{Key: pub, namespace: namespace, reserved: string(reserved), hashAlg: string(hashAlg), sig: sig}, nil
}

// AsCertificate returns k as an OpenSSH certificate, or nil if it is none. An agent names its
// keys as opaque keys (an agent.Key: a type and a blob), so a certificate it lists is no
// *ssh.Certificate: that is parsed (an error if its blob does not parse).
func AsCertificate(k ssh.PublicKey) (*ssh.Certificate, error) {
	if c, ok := k.(*ssh.Certificate); ok {
		return c, nil
	}
	if !strings.HasSuffix(k.Type(), "-cert-v01@openssh.com") {
		return nil, nil
	}
	p, err := ssh.ParsePublicKey(k.Marshal())
	if err != nil {
		return nil, fmt.Errorf("keys: parsing a %s key: %w", k.Type(), err)
	}
	c, ok := p.(*ssh.Certificate)
	if !ok {
		return nil, fmt.Errorf("keys: key of type %s is no certificate", k.Type())
	}
	return c, nil
}

// Underlying returns a certificate's key, and any other key itself.
func Underlying(k ssh.PublicKey) ssh.PublicKey {
	if c, ok := k.(*ssh.Certificate); ok {
		return c.Key
	}
	return k
}

// Verify checks that the signature is the claimed key's over message (for a certificate,
// its key's).
func (s *SSHSIG) Verify(message []byte) error {
	var digest []byte
	if s.hashAlg == "sha256" {
		h := sha256.Sum256(message)
		digest = h[:]
	} else {
		h := sha512.Sum512(message)
		digest = h[:]
	}
	data := signedData(s.namespace, s.reserved, s.hashAlg, digest)
	if err := s.Key.Verify(data, s.sig); err != nil {
		return fmt.Errorf("keys: sshsig: bad signature by %s key %s: %w", s.Key.Type(), Fingerprint(s.Key), err)
	}
	return nil
}

// Verify checks a binary SSHSIG signature over message in namespace and
// returns the key that made it: ParseSSHSIG's checks, then the signature
// (FIDO sk- keys included).
func Verify(blob []byte, namespace string, message []byte) (ssh.PublicKey, error) {
	s, err := ParseSSHSIG(blob, namespace)
	if err != nil {
		return nil, err
	}
	if err := s.Verify(message); err != nil {
		return nil, err
	}
	return s.Key, nil
}

// checkRSASize refuses RSA keys larger than MaxRSABits.
func checkRSASize(pub ssh.PublicKey) error {
	cp, ok := pub.(ssh.CryptoPublicKey)
	if !ok {
		return nil
	}
	if k, ok := cp.CryptoPublicKey().(*rsa.PublicKey); ok && k.N.BitLen() > MaxRSABits {
		return fmt.Errorf("keys: sshsig: %d-bit RSA key, more than %d bits", k.N.BitLen(), MaxRSABits)
	}
	return nil
}

// readString reads an SSH wire-format string (uint32 length, then bytes).
func readString(b []byte) (s, rest []byte, err error) {
	if len(b) < 4 {
		return nil, nil, errors.New("truncated length")
	}
	n := binary.BigEndian.Uint32(b)
	b = b[4:]
	if uint64(n) > uint64(len(b)) {
		return nil, nil, errors.New("truncated data")
	}
	return b[:n], b[n:], nil
}

// parseSignature parses an SSH signature: string format, string blob, and
// for sk- keys the flags and counter, kept in Rest.
func parseSignature(b []byte) (*ssh.Signature, error) {
	format, rest, err := readString(b)
	if err != nil {
		return nil, fmt.Errorf("keys: sshsig: signature format: %w", err)
	}
	blob, rest, err := readString(rest)
	if err != nil {
		return nil, fmt.Errorf("keys: sshsig: signature blob: %w", err)
	}
	sig := &ssh.Signature{Format: string(format), Blob: blob}
	if len(rest) > 0 {
		sig.Rest = rest
	}
	return sig, nil
}

// checkSigFormat checks that sig's format is allowed for pub's key type and
// that nothing follows the signature except, for sk- keys, the flags byte and
// counter.
func checkSigFormat(pub ssh.PublicKey, sig *ssh.Signature) error {
	kt := Underlying(pub).Type()
	switch kt {
	case ssh.KeyAlgoRSA:
		if sig.Format != ssh.KeyAlgoRSASHA256 && sig.Format != ssh.KeyAlgoRSASHA512 {
			return fmt.Errorf("keys: sshsig: signature format %q not allowed for %s keys (want rsa-sha2-256 or rsa-sha2-512)", sig.Format, kt)
		}
	case ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521,
		ssh.KeyAlgoSKED25519, ssh.KeyAlgoSKECDSA256:
		if sig.Format != kt {
			return fmt.Errorf("keys: sshsig: signature format %q not allowed for %s keys", sig.Format, kt)
		}
	default:
		return fmt.Errorf("keys: sshsig: unsupported key type %q", kt)
	}
	want := 0
	if strings.HasPrefix(kt, "sk-") {
		want = 5 // byte flags, uint32 counter
	}
	if len(sig.Rest) != want {
		return fmt.Errorf("keys: sshsig: %d bytes after the %s signature, want %d", len(sig.Rest), kt, want)
	}
	return nil
}

// Armor converts a binary SSHSIG signature to the text form ssh-keygen -Y
// reads and writes: a BEGIN line, base64 in lines of 70 characters, and an
// END line, each ending in "\n".
func Armor(blob []byte) []byte {
	enc := base64.StdEncoding.EncodeToString(blob)
	var b bytes.Buffer
	b.Grow(len(enc) + len(enc)/armorLineLen + len(armorBegin) + len(armorEnd) + 4)
	b.WriteString(armorBegin + "\n")
	for len(enc) > 0 {
		n := min(armorLineLen, len(enc))
		b.WriteString(enc[:n])
		b.WriteByte('\n')
		enc = enc[n:]
	}
	b.WriteString(armorEnd + "\n")
	return b.Bytes()
}

// Unarmor converts the text form of an SSHSIG signature (as Armor and
// ssh-keygen -Y sign write it) back to binary. Surrounding whitespace and
// CRLF line endings are accepted; the decoded signature may not exceed
// MaxSignatureSize.
func Unarmor(text []byte) ([]byte, error) {
	if len(text) > 2*MaxSignatureSize {
		return nil, fmt.Errorf("keys: sshsig: armored signature is %d bytes, more than %d", len(text), 2*MaxSignatureSize)
	}
	t := bytes.TrimSpace(text)
	body, ok := bytes.CutPrefix(t, []byte(armorBegin))
	if !ok {
		return nil, errors.New("keys: sshsig: missing " + armorBegin + " line")
	}
	body, ok = bytes.CutSuffix(body, []byte(armorEnd))
	if !ok {
		return nil, errors.New("keys: sshsig: missing " + armorEnd + " line")
	}
	if len(body) == 0 || (body[0] != '\n' && body[0] != '\r') || (body[len(body)-1] != '\n') {
		return nil, errors.New("keys: sshsig: BEGIN and END markers must be on lines of their own")
	}
	var b64 []byte
	for _, line := range bytes.Split(body, []byte("\n")) {
		line = bytes.TrimSuffix(line, []byte("\r"))
		for _, c := range line {
			if !base64Char(c) {
				return nil, errors.New("keys: sshsig: armored signature has a non-base64 byte")
			}
		}
		b64 = append(b64, line...)
	}
	blob, err := base64.StdEncoding.Strict().DecodeString(string(b64))
	if err != nil {
		return nil, fmt.Errorf("keys: sshsig: armored signature: %w", err)
	}
	if len(blob) == 0 {
		return nil, errors.New("keys: sshsig: armored signature is empty")
	}
	if len(blob) > MaxSignatureSize {
		return nil, fmt.Errorf("keys: sshsig: signature is %d bytes, more than %d", len(blob), MaxSignatureSize)
	}
	return blob, nil
}

func base64Char(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '/' || c == '='
}
