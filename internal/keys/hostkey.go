// SPDX-License-Identifier: Apache-2.0

package keys

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/crypto/ssh"
)

// maxHostKeyFileSize bounds how much of a host key file LoadHostKey reads.
const maxHostKeyFileSize = 64 << 10

// GenerateHostKey makes a new Ed25519 host key from the randomness in rand
// (crypto/rand.Reader when rand is nil).
func GenerateHostKey(rand io.Reader) (ed25519.PrivateKey, error) {
	_, key, err := ed25519.GenerateKey(rand)
	if err != nil {
		return nil, fmt.Errorf("keys: generating host key: %w", err)
	}
	return key, nil
}

// WriteHostKey writes key to path in OpenSSH private key format, with mode
// 0600, and its public half to path+".pub" in authorized_keys form (with
// comment, mode 0644). Each file is written atomically: to a temporary file
// in the same directory that is then renamed over the old one.
func WriteHostKey(path string, key ed25519.PrivateKey, comment string) error {
	priv, pub, err := encodeHostKey(key, comment)
	if err != nil {
		return err
	}
	if err := writeAtomic(path, priv, 0o600, true); err != nil {
		return err
	}
	return writeAtomic(path+".pub", pub, 0o644, true)
}

func encodeHostKey(key ed25519.PrivateKey, comment string) (priv, pub []byte, err error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, nil, fmt.Errorf("keys: host key is %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	block, err := ssh.MarshalPrivateKey(key, comment)
	if err != nil {
		return nil, nil, fmt.Errorf("keys: encoding host key: %w", err)
	}
	sshPub, err := ssh.NewPublicKey(key.Public())
	if err != nil {
		return nil, nil, fmt.Errorf("keys: encoding host public key: %w", err)
	}
	pub = ssh.MarshalAuthorizedKey(sshPub) // ends in "\n"
	if comment != "" {
		pub = append(pub[:len(pub)-1], " "+comment+"\n"...)
	}
	return pem.EncodeToMemory(block), pub, nil
}

// writeAtomic writes data to a temporary file next to path with mode perm,
// syncs it, and moves it to path. With replace, an existing file at path is
// replaced; without it, an existing file is left alone and the error wraps
// fs.ErrExist.
func writeAtomic(path string, data []byte, perm os.FileMode, replace bool) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return fmt.Errorf("keys: writing %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err = f.Chmod(perm); err != nil {
		return fmt.Errorf("keys: writing %s: %w", path, err)
	}
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("keys: writing %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("keys: writing %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("keys: writing %s: %w", path, err)
	}
	if replace {
		err = os.Rename(tmp, path)
	} else {
		// A hard link fails if path exists, so concurrent creators cannot
		// overwrite each other's key.
		if err = os.Link(tmp, path); err == nil {
			os.Remove(tmp)
		}
	}
	if err != nil {
		return fmt.Errorf("keys: writing %s: %w", path, err)
	}
	if d, derr := os.Open(dir); derr == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// LoadHostKey reads an Ed25519 private key in OpenSSH format (or PKCS#8
// PEM) from path. Like sshd, it refuses a file that its group or other users
// can access. It fails with a clear error when the file is missing, does not
// hold a private key, holds a key of another type, or is protected by a
// passphrase.
func LoadHostKey(path string) (ed25519.PrivateKey, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("keys: host key %s does not exist: %w", path, err)
		}
		return nil, fmt.Errorf("keys: host key: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("keys: host key: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("keys: host key %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("keys: host key %s has permissions %#o, which are too open: it must not be accessible by group or others (chmod 600 %s)", path, perm, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxHostKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("keys: host key %s: %w", path, err)
	}
	if len(data) > maxHostKeyFileSize {
		return nil, fmt.Errorf("keys: host key %s is larger than %d bytes", path, maxHostKeyFileSize)
	}
	if block, _ := pem.Decode(data); block == nil {
		return nil, fmt.Errorf("keys: host key %s does not contain a PEM-encoded private key", path)
	}
	raw, err := ssh.ParseRawPrivateKey(data)
	if err != nil {
		var pm *ssh.PassphraseMissingError
		if errors.As(err, &pm) {
			return nil, fmt.Errorf("keys: host key %s is encrypted with a passphrase; netauth needs an unencrypted host key: %w", path, err)
		}
		return nil, fmt.Errorf("keys: host key %s is not a usable private key: %w", path, err)
	}
	var key ed25519.PrivateKey
	switch k := raw.(type) {
	case ed25519.PrivateKey:
		key = k
	case *ed25519.PrivateKey:
		key = *k
	default:
		return nil, fmt.Errorf("keys: host key %s is a %T, but netauth host keys must be Ed25519", path, raw)
	}
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("keys: host key %s has a malformed Ed25519 key", path)
	}
	return key, nil
}

// LoadOrCreateHostKey loads the host key at path or, when no file exists
// there, generates a new Ed25519 key and writes it as WriteHostKey does
// (creating the parent directory with mode 0700 if it is missing). created
// reports whether a new key was made. If another process creates the key at
// the same time, the key it wrote is loaded instead.
func LoadOrCreateHostKey(path string) (key ed25519.PrivateKey, created bool, err error) {
	if _, err := os.Lstat(path); err == nil || !errors.Is(err, fs.ErrNotExist) {
		key, err := LoadHostKey(path)
		return key, false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, false, fmt.Errorf("keys: creating host key directory: %w", err)
	}
	key, err = GenerateHostKey(rand.Reader)
	if err != nil {
		return nil, false, err
	}
	priv, pub, err := encodeHostKey(key, "netauth host key")
	if err != nil {
		return nil, false, err
	}
	if err := writeAtomic(path, priv, 0o600, false); err != nil {
		if errors.Is(err, fs.ErrExist) {
			key, err := LoadHostKey(path)
			return key, false, err
		}
		return nil, false, err
	}
	if err := writeAtomic(path+".pub", pub, 0o644, true); err != nil {
		return nil, true, err
	}
	return key, true, nil
}

// HostCertWarnBefore is how long before its expiry LoadHostCertificate warns that a host
// certificate is about to expire.
const HostCertWarnBefore = 7 * 24 * time.Hour

// LoadHostCertificate reads the OpenSSH host certificate at path (the -cert.pub file
// `ssh-keygen -s CA -h -I id -n names host_key.pub` writes) for the host key key. It
// refuses a file that does not hold one certificate, a certificate that is not a host
// certificate, one for another key, one whose CA signature does not verify, one without
// principals, with critical options, or expired or not yet valid at now. warning, if not
// empty, says the certificate expires within HostCertWarnBefore.
func LoadHostCertificate(path string, key ed25519.PrivateKey, now time.Time) (cert *ssh.Certificate, warning string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, "", fmt.Errorf("keys: host certificate: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 4*MaxHostCertLen+1))
	if err != nil {
		return nil, "", fmt.Errorf("keys: host certificate %s: %w", path, err)
	}
	if len(data) > 4*MaxHostCertLen {
		return nil, "", fmt.Errorf("keys: host certificate %s is larger than %d bytes", path, 4*MaxHostCertLen)
	}
	pub, _, _, rest, err := ssh.ParseAuthorizedKey(data)
	if err != nil {
		return nil, "", fmt.Errorf("keys: host certificate %s: %w", path, err)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, "", fmt.Errorf("keys: host certificate %s holds more than one key", path)
	}
	cert, ok := pub.(*ssh.Certificate)
	if !ok {
		return nil, "", fmt.Errorf("keys: %s is a %s key, not a certificate", path, pub.Type())
	}
	if err := CheckHostCertificate(cert, key, now); err != nil {
		return nil, "", fmt.Errorf("keys: host certificate %s: %w", path, err)
	}
	if cert.ValidBefore != ssh.CertTimeInfinity && cert.ValidBefore <= 1<<62 {
		if until := time.Unix(int64(cert.ValidBefore), 0); until.Sub(now) < HostCertWarnBefore {
			warning = fmt.Sprintf("host certificate %s (id %q) expires at %s", path, cert.KeyId, until.UTC().Format(time.RFC3339))
		}
	}
	return cert, warning, nil
}

// CheckHostCertificate returns an error unless cert is a host certificate for key that a
// netauth server can present at now: an ssh-ed25519 certificate within MaxHostCertLen
// bytes, valid at now, with principals and no critical options, and signed by its CA.
func CheckHostCertificate(cert *ssh.Certificate, key ed25519.PrivateKey, now time.Time) error {
	if cert.Type() != ssh.CertAlgoED25519v01 {
		return fmt.Errorf("a %s certificate; netauth host certificates are %s", cert.Type(), ssh.CertAlgoED25519v01)
	}
	if len(key) != ed25519.PrivateKeySize {
		return errors.New("no Ed25519 host key")
	}
	hostPub, err := ssh.NewPublicKey(key.Public())
	if err != nil {
		return err
	}
	if !bytes.Equal(cert.Key.Marshal(), hostPub.Marshal()) {
		return fmt.Errorf("certifies %s, not the host key %s", Fingerprint(cert.Key), Fingerprint(hostPub))
	}
	if cert.CertType != ssh.HostCert {
		return errors.New("not a host certificate (sign it with ssh-keygen -h)")
	}
	if len(cert.ValidPrincipals) == 0 {
		return errors.New("no principals: clients check the host name against them (ssh-keygen -n)")
	}
	if problem := checkHostCert(cert, "", true, now); problem != "" {
		return errors.New(problem)
	}
	return nil
}
