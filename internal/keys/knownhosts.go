// SPDX-License-Identifier: Apache-2.0

package keys

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// DefaultKnownHostsPath returns the known_hosts file netauth clients use:
// $NETAUTH_KNOWN_HOSTS if set, else $XDG_CONFIG_HOME/netauth/known_hosts,
// else ~/.config/netauth/known_hosts.
func DefaultKnownHostsPath() (string, error) {
	if p := os.Getenv("NETAUTH_KNOWN_HOSTS"); p != "" {
		return p, nil
	}
	if d := os.Getenv("XDG_CONFIG_HOME"); d != "" {
		return filepath.Join(d, "netauth", "known_hosts"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("keys: finding the known_hosts file: %w", err)
	}
	return filepath.Join(home, ".config", "netauth", "known_hosts"), nil
}

// KnownHosts is a known_hosts file in OpenSSH's format that pins the host
// keys of netauth servers. Hosts are written as knownhosts.Normalize gives
// them: "[host]:port", or plain "host" for port 22.
type KnownHosts struct {
	// Path is the file's name.
	Path string
}

// HostKeyError reports that a server's host key is not the one pinned for
// it: unknown, changed, or revoked. Its message tells the user what to do.
type HostKeyError struct {
	// Host is the host and port as given to Check.
	Host string
	// Fingerprint is the SHA256 fingerprint of the key the server presented.
	Fingerprint string
	// KeyType is the type of the key the server presented, such as
	// "ssh-ed25519".
	KeyType string
	// Changed reports that a different key is pinned for Host.
	Changed bool
	// Known lists, when Changed, the pinned keys as "path:line fingerprint".
	Known []string
	// Revoked reports that the presented key is marked @revoked.
	Revoked bool
	// RevokedAt is, when Revoked, the "path:line" of the @revoked entry.
	RevokedAt string
	// RevokedWhat, when Revoked, says what the @revoked entry names if not the key itself
	// (the certificate authority that signed the server's certificate).
	RevokedWhat string
	// Cert reports that the server presented a host certificate; Fingerprint and KeyType
	// are then its key's.
	Cert bool
	// CertProblem says, when Cert, why the certificate was not accepted (no matching
	// @cert-authority line, or why it is not valid for the host).
	CertProblem string
	// SSHKnown lists, for an unknown key, the different Ed25519 keys OpenSSH's
	// known_hosts files hold for the host (as "path:line fingerprint"): sshd's, which
	// netauthd need not share.
	SSHKnown []string
	// Path is the known_hosts file that decided: the one pinning another key when
	// Changed, else the first file checked (where netauth trust writes).
	Path string
}

// Error returns a message saying what is wrong and how to fix it.
func (e *HostKeyError) Error() string {
	switch {
	case e.Revoked && e.RevokedWhat != "":
		return fmt.Sprintf("netauth: host certificate for %s (key %s) is signed by %s, which is REVOKED by %s; refusing to connect", e.Host, e.Fingerprint, e.RevokedWhat, e.RevokedAt)
	case e.Revoked:
		return fmt.Sprintf("netauth: host key for %s (%s) is REVOKED by %s; refusing to connect", e.Host, e.Fingerprint, e.RevokedAt)
	case e.Changed:
		pins := make([]string, len(e.Known))
		for i, k := range e.Known {
			loc, fp, _ := strings.Cut(k, " ")
			pins[i] = loc + " pins " + fp
		}
		return fmt.Sprintf("netauth: HOST KEY CHANGED for %s: server presented %s, but %s; this may be an attack. "+
			"If the change is expected, remove the old entry (ssh-keygen -R '%s' -f %s) and run: netauth trust %s",
			e.Host, e.Fingerprint, strings.Join(pins, ", "), knownhosts.Normalize(e.Host), e.Path, e.Host)
	default:
		var b strings.Builder
		if e.Cert {
			fmt.Fprintf(&b, "netauth: host certificate for %s not accepted: %s; ", e.Host, e.CertProblem)
		} else {
			b.WriteString("netauth: ")
		}
		fmt.Fprintf(&b, "unknown host key for %s (%s %s)", e.Host, keyTypeLabel(e.KeyType), e.Fingerprint)
		if len(e.SSHKnown) > 0 {
			fmt.Fprintf(&b, " (OpenSSH's known_hosts has another key for the host, sshd's: %s; netauthd may use a key of its own)", strings.Join(e.SSHKnown, ", "))
		}
		fmt.Fprintf(&b, "; if this is the right key, trust it with: netauth trust %s", e.Host)
		return b.String()
	}
}

// keyTypeLabel gives the short key type name ssh-keygen -l prints.
func keyTypeLabel(t string) string {
	switch t {
	case ssh.KeyAlgoED25519:
		return "ED25519"
	case ssh.KeyAlgoRSA:
		return "RSA"
	case ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521:
		return "ECDSA"
	case "":
		return "key"
	}
	return t
}

// Check returns nil if key is pinned for hostport ("host:port") in the file,
// or is a host certificate signed by a @cert-authority the file names for
// it. A missing file counts as empty. If the key is unknown, changed, or
// revoked, the error is a *HostKeyError; other errors are about the file or
// hostport.
func (k KnownHosts) Check(hostport string, key ssh.PublicKey) error {
	return HostChecker{Files: []KnownHostsFile{{Path: k.Path}}}.Check(hostport, key)
}

// Add appends a line pinning key for hostport ("host:port") to the file,
// creating its directory (mode 0700) and the file (mode 0600) if needed.
func (k KnownHosts) Add(hostport string, key ssh.PublicKey) error {
	if _, _, err := net.SplitHostPort(hostport); err != nil {
		return fmt.Errorf("keys: known_hosts: bad host %q: %w", hostport, err)
	}
	if err := os.MkdirAll(filepath.Dir(k.Path), 0o700); err != nil {
		return fmt.Errorf("keys: known_hosts: %w", err)
	}
	f, err := os.OpenFile(k.Path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("keys: known_hosts: %w", err)
	}
	line := knownhosts.Line([]string{knownhosts.Normalize(hostport)}, key) + "\n"
	// Keep the new entry on a line of its own if the file lacks a final
	// newline.
	if fi, err := f.Stat(); err == nil && fi.Size() > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, fi.Size()-1); err != nil && err != io.EOF {
			f.Close()
			return fmt.Errorf("keys: known_hosts: %w", err)
		}
		if last[0] != '\n' {
			line = "\n" + line
		}
	}
	if _, err := f.WriteString(line); err != nil {
		f.Close()
		return fmt.Errorf("keys: known_hosts: writing %s: %w", k.Path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("keys: known_hosts: writing %s: %w", k.Path, err)
	}
	return nil
}

// KnownHostsFile is one known_hosts file a HostChecker reads.
type KnownHostsFile struct {
	// Path is the file's name. A missing file counts as empty.
	Path string
	// SSH marks a file of OpenSSH's own (~/.ssh/known_hosts, /etc/ssh/ssh_known_hosts): its
	// entries match the dialed host on any port, since they record sshd's port (22, written
	// as the plain host name) and the machine's host key, which netauthd may share (a hashed
	// name matches the plain host, or "[host]:port" of the dialed port only). A
	// mismatch in such a file is not a changed key: netauthd may use a key of its own.
	SSH bool
}

// HostChecker checks a server's host key against a list of known_hosts files, in
// order, the way OpenSSH's client does (sshd(8), SSH_KNOWN_HOSTS FILE FORMAT): host
// patterns with wildcards and negation, hashed names, "[host]:port", @cert-authority
// and @revoked.
//
// A key is refused if any file marks it, or the CA that signed its certificate,
// @revoked (whatever the line's host pattern). A host certificate is accepted if a
// @cert-authority line for the host in any file names its CA and the certificate is a
// valid host certificate for the host name (principals, validity by Now, no critical
// options). Otherwise the key itself (a certificate's key, for a certificate that is
// not accepted) must be pinned: the first netauth file (SSH false) that has an
// Ed25519 key for the host decides, and a different key there is a changed key, even if
// a later file lists the presented one. Only when no netauth file pins the host do the
// SSH files count, where any entry with the presented key trusts it.
type HostChecker struct {
	Files []KnownHostsFile
	// Now returns the time certificates are checked at (time.Now if nil).
	Now func() time.Time
}

// MaxHostCertLen bounds the SSH wire form of a host certificate netauth accepts.
const MaxHostCertLen = 2048

// Check returns nil if key (a plain key or a host certificate) is trusted for
// hostport ("host:port"). If it is unknown, changed, or revoked, the error is a
// *HostKeyError; other errors are about the files or hostport.
func (c HostChecker) Check(hostport string, key ssh.PublicKey) error {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return fmt.Errorf("keys: known_hosts: bad host %q: %w", hostport, err)
	}
	host = strings.ToLower(host)
	exact := host
	if port != "22" {
		exact = "[" + host + "]:" + port
	}
	plain := key
	cert, isCert := key.(*ssh.Certificate)
	if isCert {
		plain = cert.Key
	}
	herr := &HostKeyError{Host: hostport, Fingerprint: Fingerprint(plain), KeyType: plain.Type()}
	if len(c.Files) > 0 {
		herr.Path = c.Files[0].Path
	}
	files := make([][]khEntry, len(c.Files))
	for i, f := range c.Files {
		if files[i], err = loadKnownHosts(f); err != nil {
			return err
		}
	}
	plainWire := plain.Marshal()
	var caWire []byte
	if isCert {
		caWire = cert.SignatureKey.Marshal()
	}
	// Revocations apply whatever the host.
	for _, entries := range files {
		for _, e := range entries {
			if e.marker != "revoked" {
				continue
			}
			// As OpenSSH's sshkey_equal_public: a line holding a certificate revokes its key.
			w := Underlying(e.key).Marshal()
			if bytes.Equal(w, plainWire) || (caWire != nil && bytes.Equal(w, caWire)) {
				herr.Revoked = true
				herr.RevokedAt = e.where()
				if !bytes.Equal(w, plainWire) {
					herr.RevokedWhat = "the certificate authority " + Fingerprint(Underlying(e.key)) + " that signed it"
				}
				return herr
			}
		}
	}
	if isCert {
		herr.Cert = true
		problem := fmt.Sprintf("no @cert-authority line for %s names its CA (%s)", exact, Fingerprint(cert.SignatureKey))
	ca:
		for i, entries := range files {
			for _, e := range entries {
				if e.marker == "cert-authority" && e.matches(host, exact, c.Files[i].SSH) && bytes.Equal(e.key.Marshal(), caWire) {
					if problem = checkHostCert(cert, host, false, c.now()); problem == "" {
						return nil
					}
					problem = fmt.Sprintf("certificate by CA %s (%s): %s", Fingerprint(cert.SignatureKey), e.where(), problem)
					break ca
				}
			}
		}
		herr.CertProblem = problem
	}
	for i, entries := range files {
		if c.Files[i].SSH {
			continue
		}
		var pins []string
		for _, e := range entries {
			if e.marker != "" || e.key.Type() != plain.Type() || !e.matches(host, exact, false) {
				continue
			}
			if bytes.Equal(e.key.Marshal(), plainWire) {
				return nil
			}
			pins = append(pins, e.where()+" "+Fingerprint(e.key))
		}
		if len(pins) > 0 {
			herr.Changed, herr.Known, herr.Path = true, pins, c.Files[i].Path
			return herr
		}
	}
	for i, entries := range files {
		if !c.Files[i].SSH {
			continue
		}
		for _, e := range entries {
			if e.marker != "" || e.key.Type() != plain.Type() || !e.matches(host, exact, true) {
				continue
			}
			if bytes.Equal(e.key.Marshal(), plainWire) {
				return nil
			}
			herr.SSHKnown = append(herr.SSHKnown, e.where()+" "+Fingerprint(e.key))
		}
	}
	return herr
}

func (c HostChecker) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// checkHostCert returns why cert is not a valid host certificate for host at now ("" if
// it is), as OpenSSH's sshkey_cert_check_host does: a host certificate, within its
// validity, with principals (patterns) of which one matches host, no critical options,
// and a valid signature by its CA (an RSA CA's with rsa-sha2-256 or rsa-sha2-512, never
// SHA-1 ssh-rsa, as OpenSSH 8.8 and later require). anyHost skips the principal match (a
// server checking its own certificate); a client's empty host name is matched like any
// other, so that only a principal pattern that matches the empty name accepts it.
func checkHostCert(cert *ssh.Certificate, host string, anyHost bool, now time.Time) string {
	switch {
	case cert.CertType != ssh.HostCert:
		return "not a host certificate"
	case len(cert.Marshal()) > MaxHostCertLen:
		return fmt.Sprintf("larger than %d bytes", MaxHostCertLen)
	case uint64(now.Unix()) < cert.ValidAfter:
		return "not yet valid (valid from " + certTime(cert.ValidAfter) + ")"
	case cert.ValidBefore != ssh.CertTimeInfinity && uint64(now.Unix()) >= cert.ValidBefore:
		return "expired (valid until " + certTime(cert.ValidBefore) + ")"
	case len(cert.ValidPrincipals) == 0:
		return "it lacks a principal list"
	case len(cert.CriticalOptions) != 0:
		return "it contains unsupported critical options"
	}
	if cert.SignatureKey != nil && cert.SignatureKey.Type() == ssh.KeyAlgoRSA && cert.Signature != nil &&
		cert.Signature.Format != ssh.KeyAlgoRSASHA256 && cert.Signature.Format != ssh.KeyAlgoRSASHA512 {
		return fmt.Sprintf("its RSA CA signed it with %q, not rsa-sha2-256 or rsa-sha2-512", cert.Signature.Format)
	}
	matched := ""
	if anyHost {
		matched = cert.ValidPrincipals[0]
	}
	for _, p := range cert.ValidPrincipals {
		if matched != "" {
			break
		}
		if globMatch(host, strings.ToLower(p)) {
			matched = p
			break
		}
	}
	if matched == "" {
		return fmt.Sprintf("its principals %q do not include %s", cert.ValidPrincipals, host)
	}
	// CheckCert verifies the CA's signature (and repeats the checks above).
	cc := &ssh.CertChecker{Clock: func() time.Time { return now }}
	if err := cc.CheckCert(matched, cert); err != nil {
		return err.Error()
	}
	return ""
}

func certTime(t uint64) string {
	if t > 1<<62 {
		return "forever"
	}
	return time.Unix(int64(t), 0).UTC().Format(time.RFC3339)
}

// khEntry is one parsed known_hosts line.
type khEntry struct {
	marker   string // "", "cert-authority" or "revoked"
	patterns []string
	key      ssh.PublicKey
	path     string
	line     int
}

func (e *khEntry) where() string { return fmt.Sprintf("%s:%d", e.path, e.line) }

// matches reports whether the entry's host patterns match the host, as OpenSSH's
// match_hostname does: a negated pattern that matches excludes the line, otherwise
// one pattern must match. exact is the name OpenSSH looks up: the host, or
// "[host]:port" for a port other than 22. With anyPort, a pattern matches the host on
// any port: "[pattern]:port" is compared by its host part, and a hashed name matches
// the host or exact.
func (e *khEntry) matches(host, exact string, anyPort bool) bool {
	found := false
	for _, p := range e.patterns {
		neg := strings.HasPrefix(p, "!")
		if neg {
			p = p[1:]
		}
		var m bool
		switch {
		case strings.HasPrefix(p, "|1|"):
			m = hashedMatch(p, exact) || (anyPort && hashedMatch(p, host))
		case anyPort:
			hp := p
			if strings.HasPrefix(hp, "[") {
				if i := strings.LastIndex(hp, "]:"); i > 0 {
					hp = hp[1:i]
				}
			}
			m = globMatch(host, strings.ToLower(hp))
		default:
			m = globMatch(exact, strings.ToLower(p))
		}
		if m && neg {
			return false
		}
		found = found || m
	}
	return found
}

// hashedMatch reports whether the hashed name "|1|salt|hash" (ssh-keygen -H) is name:
// HMAC-SHA1 keyed by the salt.
func hashedMatch(pattern, name string) bool {
	parts := strings.Split(pattern, "|")
	if len(parts) != 4 {
		return false
	}
	salt, err1 := base64.StdEncoding.DecodeString(parts[2])
	want, err2 := base64.StdEncoding.DecodeString(parts[3])
	if err1 != nil || err2 != nil {
		return false
	}
	m := hmac.New(sha1.New, salt)
	m.Write([]byte(name))
	return hmac.Equal(m.Sum(nil), want)
}

// globMatch matches s against an OpenSSH pattern: '*' matches any run of characters, '?'
// one character.
func globMatch(s, pattern string) bool {
	// Iterative matching with backtracking to the last '*'.
	si, pi, star, mark := 0, 0, -1, 0
	for si < len(s) {
		switch {
		case pi < len(pattern) && (pattern[pi] == '?' || pattern[pi] == s[si]):
			si++
			pi++
		case pi < len(pattern) && pattern[pi] == '*':
			star, mark = pi, si
			pi++
		case star >= 0:
			pi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for pi < len(pattern) && pattern[pi] == '*' {
		pi++
	}
	return pi == len(pattern)
}

// maxKnownHostsSize bounds how much of a known_hosts file is read.
const maxKnownHostsSize = 16 << 20

// knownHostsCache keeps parsed known_hosts files, keyed by path, while the file stays the same
// (same inode, size, modification and change times): a client dialing often (every resumed
// connection checks the host key) does not read and parse the file each time. It is a cache
// of the file system, shared by the process like the file itself.
var knownHostsCache sync.Map // path -> knownHostsEntry

type knownHostsEntry struct {
	id      fileID
	ssh     bool
	entries []khEntry
}

// fileID identifies a version of a file.
type fileID struct {
	ino, size            int64
	mtimeNsec, ctimeNsec int64
}

func idOf(fi fs.FileInfo) (fileID, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, false
	}
	return fileID{ino: int64(st.Ino), size: fi.Size(), mtimeNsec: fi.ModTime().UnixNano(),
		ctimeNsec: st.Ctim.Sec*1e9 + st.Ctim.Nsec}, true
}

// loadKnownHosts returns the entries of f (none if it does not exist). A malformed line is
// an error in a netauth file; in an SSH file it is skipped, as ssh does (it may hold a key
// type this implementation does not know).
func loadKnownHosts(f KnownHostsFile) ([]khEntry, error) {
	fh, err := os.Open(f.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("keys: known_hosts: %w", err)
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return nil, fmt.Errorf("keys: known_hosts: %w", err)
	}
	id, ok := idOf(fi)
	if ok {
		if v, hit := knownHostsCache.Load(f.Path); hit && v.(knownHostsEntry).id == id && v.(knownHostsEntry).ssh == f.SSH {
			return v.(knownHostsEntry).entries, nil
		}
	}
	data, err := io.ReadAll(io.LimitReader(fh, maxKnownHostsSize+1))
	if err != nil {
		return nil, fmt.Errorf("keys: known_hosts %s: %w", f.Path, err)
	}
	if len(data) > maxKnownHostsSize {
		return nil, fmt.Errorf("keys: known_hosts %s is larger than %d bytes", f.Path, maxKnownHostsSize)
	}
	var entries []khEntry
	for n, line := range bytes.Split(data, []byte("\n")) {
		t := bytes.TrimSpace(line)
		if len(t) == 0 || t[0] == '#' {
			continue
		}
		marker, hosts, key, _, _, err := ssh.ParseKnownHosts(t)
		if err != nil {
			if f.SSH {
				continue
			}
			return nil, fmt.Errorf("keys: known_hosts %s:%d: %w", f.Path, n+1, err)
		}
		entries = append(entries, khEntry{marker: marker, patterns: hosts, key: key, path: f.Path, line: n + 1})
	}
	if ok {
		knownHostsCache.Store(f.Path, knownHostsEntry{id: id, ssh: f.SSH, entries: entries})
	}
	return entries, nil
}
