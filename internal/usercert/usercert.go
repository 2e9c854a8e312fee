// SPDX-License-Identifier: Apache-2.0

// Package usercert decides OpenSSH user certificates the way sshd does with TrustedUserCAKeys
// and AuthorizedPrincipalsFile/AuthorizedPrincipalsCommand: a certificate authenticates a user
// when a trusted CA signed it as a user certificate, it is valid now, its principals allow the
// user, and its critical options are understood and met. Revocation (RevokedKeys, package
// krl) is the caller's: the handshake checks the certificate, its key and its CA against the
// revoked keys before it asks Check.
package usercert

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth/internal/keys"
)

// MaxCAFileSize is the largest trusted CA keys file (and principals file or command output)
// read, in bytes; MaxCAKeys the most CA keys one file may hold.
const (
	MaxCAFileSize = keys.MaxKeyFileSize
	MaxCAKeys     = 1000
)

// MaxCertSize is the largest certificate (its wire form) Check considers. A certificate
// arrives inside an SSHSIG signature, which is at most keys.MaxSignatureSize bytes, so this
// bound is met by every certificate that reaches it; it is checked again here for callers
// that get certificates elsewhere.
const MaxCertSize = keys.MaxSignatureSize

// maxVerified bounds the certificates whose CA signature verified that a Checker remembers.
const maxVerified = 4096

// smallMatch is the largest product of the lengths of a certificate's principals and a
// user's authorized principals that checkPrincipals compares pair by pair; beyond it, it
// matches through a set.
const smallMatch = 256

// maxPrincipalsPerUser bounds the principals a file or command may list for one user.
const maxPrincipalsPerUser = 1000

// DefaultPrincipalsTTL is how long a Checker decides re-checks of live sessions
// (WithCachedPrincipals) with the answer its principals sources gave for a user, when
// Checker.PrincipalsTTL is zero. A principal removed from a user's list therefore ends that
// user's live certificate sessions within this time plus the interval of the re-checks.
const DefaultPrincipalsTTL = 30 * time.Second

// principalsErrorTTL is the longest a re-check uses an answer in which a principals source
// failed: a failing source (a command that times out) is not run at every re-check of every
// session, and a source that recovers is asked again soon.
const principalsErrorTTL = 5 * time.Second

// maxCachedPrincipals bounds the users whose principals answers a Checker remembers;
// maxCachedAnswer is the most bytes of principals one remembered answer may hold (a longer
// one is used once and not remembered).
const (
	maxCachedPrincipals = 1024
	maxCachedAnswer     = 64 << 10
)

// PrincipalSource lists the principals a user's certificate may carry to authenticate as
// that user (sshd's AuthorizedPrincipalsFile and AuthorizedPrincipalsCommand).
type PrincipalSource interface {
	Principals(ctx context.Context, user string) ([]string, error)
}

// PrincipalsDir reads Dir/<user>, one principal per line in sshd's AuthorizedPrincipalsFile
// format: blank lines and lines starting with "#" are skipped. A line that carries
// authorized_keys options before the principal ("from=... name") grants nothing, since
// netauth does not apply those options. A missing file lists no principals; a file that
// group or others may write is refused, as is one larger than MaxCAFileSize.
type PrincipalsDir struct{ Dir string }

// Principals reads the user's principals file.
func (d PrincipalsDir) Principals(_ context.Context, user string) ([]string, error) {
	if err := keys.ValidName(user); err != nil {
		return nil, err
	}
	if d.Dir == "" {
		return nil, errors.New("usercert: PrincipalsDir has no directory")
	}
	path := filepath.Join(d.Dir, user)
	data, err := readFile(path, true)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return ParsePrincipals(data, path)
}

// PrincipalsCommand runs a program, like sshd's AuthorizedPrincipalsCommand: each "%u" in
// its arguments is replaced by the user name, and its standard output is read as a principals
// file (see PrincipalsDir). The program runs as keys.Command runs it (time and output bounds).
type PrincipalsCommand keys.Command

// Principals runs the command for user.
func (c PrincipalsCommand) Principals(ctx context.Context, user string) ([]string, error) {
	out, err := keys.Command(c).Output(ctx, user)
	if err != nil {
		return nil, fmt.Errorf("usercert: %w", err)
	}
	return ParsePrincipals(out, "output of "+c.Path)
}

// ParsePrincipals parses a principals file (see PrincipalsDir).
func ParsePrincipals(data []byte, name string) ([]string, error) {
	var out []string
	for n, line := range bytes.Split(data, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		if bytes.ContainsAny(line, " \t") {
			continue // options before the principal: not applied, so the line grants nothing
		}
		if len(out) == maxPrincipalsPerUser {
			return nil, fmt.Errorf("usercert: %s:%d: more than %d principals", name, n+1, maxPrincipalsPerUser)
		}
		out = append(out, string(line))
	}
	return out, nil
}

// readFile reads a regular file of at most MaxCAFileSize bytes; strict refuses one that group
// or others may write.
func readFile(path string, strict bool) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("usercert: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("usercert: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("usercert: %s is not a regular file", path)
	}
	if fi.Size() > MaxCAFileSize {
		return nil, fmt.Errorf("usercert: %s is larger than %d bytes", path, MaxCAFileSize)
	}
	if strict && fi.Mode().Perm()&0o022 != 0 {
		return nil, fmt.Errorf("usercert: %s is writable by group or others (mode %#o); refusing it", path, fi.Mode().Perm())
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxCAFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("usercert: reading %s: %w", path, err)
	}
	if len(data) > MaxCAFileSize {
		return nil, fmt.Errorf("usercert: %s is larger than %d bytes", path, MaxCAFileSize)
	}
	return data, nil
}

// LoadCAKeys reads a trusted CA keys file (sshd's TrustedUserCAKeys): one public key per line
// in authorized_keys format, blank lines and "#" comments skipped. A line with options, a
// certificate or a line that is not a key is an error, so that a damaged file is noticed.
func LoadCAKeys(path string) ([]ssh.PublicKey, error) {
	data, err := readFile(path, false)
	if err != nil {
		return nil, err
	}
	return ParseCAKeys(data, path)
}

// ParseCAKeys parses the contents of a trusted CA keys file (see LoadCAKeys).
func ParseCAKeys(data []byte, name string) ([]ssh.PublicKey, error) {
	var out []ssh.PublicKey
	for n, line := range bytes.Split(data, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		k, _, opts, _, err := ssh.ParseAuthorizedKey(line)
		if err != nil {
			return nil, fmt.Errorf("usercert: %s:%d: cannot parse key: %w", name, n+1, err)
		}
		if len(opts) > 0 {
			return nil, fmt.Errorf("usercert: %s:%d: options are not allowed on a CA key", name, n+1)
		}
		if _, ok := k.(*ssh.Certificate); ok {
			return nil, fmt.Errorf("usercert: %s:%d: a certificate cannot be a CA key", name, n+1)
		}
		if len(out) == MaxCAKeys {
			return nil, fmt.Errorf("usercert: %s: more than %d CA keys", name, MaxCAKeys)
		}
		out = append(out, k)
	}
	return out, nil
}

// Checker decides user certificates. Its fields must not change once it is in use; its
// methods are safe for concurrent use.
type Checker struct {
	// CAs are the trusted user CA keys (TrustedUserCAKeys). A certificate signed by any other
	// key is refused.
	CAs []ssh.PublicKey
	// Principals, if not empty, are where the principals allowed for a user come from (an
	// AuthorizedPrincipalsFile and/or AuthorizedPrincipalsCommand): the certificate must
	// carry one that any of them lists. If empty, it must carry the user name.
	Principals []PrincipalSource
	// PrincipalsTTL is how long a re-check of a live session (a Check whose context
	// WithCachedPrincipals marked) may decide with an answer the Principals gave before
	// instead of asking them again: zero means DefaultPrincipalsTTL, a negative value that
	// every check asks. A handshake's check always asks.
	PrincipalsTTL time.Duration

	once       sync.Once
	caSet      map[string]struct{}
	mu         sync.Mutex
	verified   map[[sha256.Size]byte]*ssh.Certificate
	principals map[string]*principalsAnswer // by user name; guarded by mu
}

// principalsAnswer is what the Principals said for a user at a time: for each source, its
// list or its error.
type principalsAnswer struct {
	at     time.Time
	lists  [][]string
	errs   []error
	failed bool // a source failed
	size   int  // bytes of principals
}

type cachedPrincipalsKey struct{}

// WithCachedPrincipals returns ctx marked so that a Check made with it may decide the
// principals with an answer the Principals gave for the user within PrincipalsTTL (or, when
// a source failed, within a few seconds), instead of asking them again. It is for re-checks
// of live sessions, which a server makes for every session at a short interval (netauthd:
// revocation-check), where asking each time would run an authorized principals command as
// often as that for every user. A handshake asks every time, as sshd does, so that a change
// to a user's principals decides the next connection at once.
func WithCachedPrincipals(ctx context.Context) context.Context {
	return context.WithValue(ctx, cachedPrincipalsKey{}, true)
}

// usesCachedPrincipals reports whether ctx was marked by WithCachedPrincipals.
func usesCachedPrincipals(ctx context.Context) bool {
	v, _ := ctx.Value(cachedPrincipalsKey{}).(bool)
	return v
}

// Error is why a certificate is refused. Lookup is true when the refusal comes from a failed
// principals lookup (the server's failure, not the certificate's).
type Error struct {
	Reason string
	Lookup bool
	Err    error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return "usercert: " + e.Reason + ": " + e.Err.Error()
	}
	return "usercert: " + e.Reason
}

func (e *Error) Unwrap() error { return e.Err }

func refuse(format string, args ...any) error {
	return &Error{Reason: fmt.Sprintf(format, args...)}
}

func (c *Checker) init() {
	c.once.Do(func() {
		c.caSet = make(map[string]struct{}, len(c.CAs))
		for _, k := range c.CAs {
			c.caSet[string(k.Marshal())] = struct{}{}
		}
		c.verified = make(map[[sha256.Size]byte]*ssh.Certificate)
		c.principals = make(map[string]*principalsAnswer)
	})
}

// Trusted reports whether k is one of the trusted CA keys.
func (c *Checker) Trusted(k ssh.PublicKey) bool {
	if c == nil || k == nil {
		return false
	}
	c.init()
	_, ok := c.caSet[string(k.Marshal())]
	return ok
}

// Known returns the certificate whose SHA-256 (of its wire form) is h, if Check accepted it
// before (and remembers it): a resumption's ticket holds only that hash. Check it again before
// use: validity, revocation and principals may have changed.
func (c *Checker) Known(h [sha256.Size]byte) *ssh.Certificate {
	if c == nil {
		return nil
	}
	c.init()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.verified[h]
}

// Adopt makes c remember the certificates old remembers whose CA c trusts too (their CA
// signature verified, which depends on nothing else), so that checks made anew, when a server
// reads its configuration again, still know the certificates its tickets name;
// each is checked again in full before use (Known). The principals answers old remembers
// are not adopted: c asks its own Principals afresh, so that a changed principals
// configuration decides live sessions from the first re-check. Call it before c is in use.
func (c *Checker) Adopt(old *Checker) {
	if c == nil || old == nil || c == old {
		return
	}
	c.init()
	old.init()
	old.mu.Lock()
	certs := make(map[[sha256.Size]byte]*ssh.Certificate, len(old.verified))
	for h, cert := range old.verified {
		if _, ok := c.caSet[string(cert.SignatureKey.Marshal())]; ok {
			certs[h] = cert
		}
	}
	old.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	for h, cert := range certs {
		if len(c.verified) >= maxVerified {
			break
		}
		c.verified[h] = cert
	}
}

// Check decides whether cert authenticates user, for a client at address client (host:port,
// as net.Conn.RemoteAddr gives it), at time now with clock skew skew. The checks that cost no
// public-key operation come first; then the CA's signature is verified, only once per
// certificate (a certificate that verified is remembered, up to a bound); and last, when
// Principals are configured, they are asked: a principals file is read, or a command run, only
// for a certificate the CA signed, never for one a client made up. A re-check of a live
// session whose ctx WithCachedPrincipals marked may instead use an answer they gave within
// PrincipalsTTL before now (now dates the answers too). The error is an *Error.
func (c *Checker) Check(ctx context.Context, cert *ssh.Certificate, user, client string, now time.Time, skew time.Duration) error {
	if c == nil {
		return refuse("no trusted user CA keys are configured")
	}
	c.init()
	wire := cert.Marshal()
	if len(wire) > MaxCertSize {
		return refuse("certificate is %d bytes, more than %d", len(wire), MaxCertSize)
	}
	if cert.CertType != ssh.UserCert {
		return refuse("certificate %q is not a user certificate (type %d)", cert.KeyId, cert.CertType)
	}
	ca := cert.SignatureKey
	if ca == nil {
		return refuse("certificate has no CA key")
	}
	if _, ok := ca.(*ssh.Certificate); ok {
		return refuse("certificate %q is signed by a certificate", cert.KeyId)
	}
	if _, ok := cert.Key.(*ssh.Certificate); ok {
		return refuse("certificate %q certifies a certificate", cert.KeyId)
	}
	if _, ok := c.caSet[string(ca.Marshal())]; !ok {
		return refuse("certificate %q is signed by CA %s, which is not trusted", cert.KeyId, ssh.FingerprintSHA256(ca))
	}
	if err := checkValidity(cert, now, skew); err != nil {
		return err
	}
	if err := checkCriticalOptions(cert, client); err != nil {
		return err
	}
	if len(c.Principals) == 0 {
		if err := c.checkPrincipals(ctx, cert, user, now); err != nil {
			return err
		}
	}
	if err := c.checkSignature(cert, wire); err != nil {
		return err
	}
	if len(c.Principals) > 0 {
		return c.checkPrincipals(ctx, cert, user, now)
	}
	return nil
}

// checkValidity checks valid_after <= now < valid_before, each widened by skew.
func checkValidity(cert *ssh.Certificate, now time.Time, skew time.Duration) error {
	n := now.Unix()
	s := int64(skew / time.Second)
	late := uint64(max(n+s, 0))
	early := uint64(max(n-s, 0))
	if cert.ValidAfter > late {
		return refuse("certificate %q is not valid before %d (server time %d)", cert.KeyId, cert.ValidAfter, n)
	}
	if cert.ValidBefore != ssh.CertTimeInfinity && early >= cert.ValidBefore {
		return refuse("certificate %q expired at %d (server time %d)", cert.KeyId, cert.ValidBefore, n)
	}
	return nil
}

// checkCriticalOptions enforces source-address against the client's address and refuses
// force-command (netauth runs no command for the client) and every option it does not know,
// as sshd refuses options it does not recognise.
func checkCriticalOptions(cert *ssh.Certificate, client string) error {
	for name, val := range cert.CriticalOptions {
		switch name {
		case "source-address":
			if err := checkSourceAddress(val, client); err != nil {
				return refuse("certificate %q: %v", cert.KeyId, err)
			}
		case "force-command":
			return refuse("certificate %q forces a command, which netauth cannot run", cert.KeyId)
		default:
			return refuse("certificate %q has critical option %q, which netauth does not support", cert.KeyId, name)
		}
	}
	return nil
}

// checkSourceAddress checks the client's address against a source-address list: addresses
// and CIDR prefixes, separated by commas.
func checkSourceAddress(list, client string) error {
	host := client
	if h, _, err := net.SplitHostPort(client); err == nil {
		host = h
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return errors.New("source-address is set and the client address is not an IP address")
	}
	addr = addr.Unmap().WithZone("")
	for _, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		var p netip.Prefix
		if strings.Contains(item, "/") {
			if p, err = netip.ParsePrefix(item); err != nil {
				return fmt.Errorf("source-address %q does not parse", item)
			}
		} else {
			a, err := netip.ParseAddr(item)
			if err != nil {
				return fmt.Errorf("source-address %q does not parse", item)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		p = netip.PrefixFrom(p.Addr().Unmap(), min(p.Bits(), p.Addr().Unmap().BitLen()))
		if p.Contains(addr) {
			return nil
		}
	}
	return fmt.Errorf("client address %s is not in source-address", addr)
}

// checkPrincipals checks that the certificate carries a principal allowed for user, at now.
func (c *Checker) checkPrincipals(ctx context.Context, cert *ssh.Certificate, user string, now time.Time) error {
	if len(c.Principals) == 0 {
		for _, p := range cert.ValidPrincipals {
			if p == user {
				return nil
			}
		}
		return refuse("certificate %q has no principal %q", cert.KeyId, user)
	}
	recheck := usesCachedPrincipals(ctx)
	var ans *principalsAnswer
	if recheck {
		ans = c.cachedPrincipals(user, now)
	}
	if ans != nil {
		return matchPrincipals(ans, cert, user)
	}
	ans = c.askPrincipals(ctx, user, now)
	err := matchPrincipals(ans, cert, user)
	// A re-check remembers what it was told (the user has a live session). A handshake
	// replaces an answer remembered for the user, and adds one only when it accepted: a client
	// holding one genuine certificate cannot fill the cache by asking for any user name.
	c.rememberPrincipals(user, ans, recheck || err == nil)
	return err
}

// askPrincipals asks every principals source about user (all of them, so that the answer can
// be remembered whole; netauthd configures one).
func (c *Checker) askPrincipals(ctx context.Context, user string, now time.Time) *principalsAnswer {
	ans := &principalsAnswer{at: now, lists: make([][]string, len(c.Principals)), errs: make([]error, len(c.Principals))}
	for i, src := range c.Principals {
		ans.lists[i], ans.errs[i] = src.Principals(ctx, user)
		if ans.errs[i] != nil {
			ans.failed = true
		}
		for _, p := range ans.lists[i] {
			ans.size += len(p)
		}
	}
	return ans
}

// cachedPrincipals returns the answer remembered for user if it is still to be used at now.
func (c *Checker) cachedPrincipals(user string, now time.Time) *principalsAnswer {
	c.mu.Lock()
	defer c.mu.Unlock()
	ans := c.principals[user]
	if ans == nil || !c.fresh(ans, now) {
		return nil
	}
	return ans
}

// fresh reports whether ans may still be used at now. An answer dated after now (the clock
// went back) is not.
func (c *Checker) fresh(ans *principalsAnswer, now time.Time) bool {
	ttl := c.PrincipalsTTL
	if ttl == 0 {
		ttl = DefaultPrincipalsTTL
	}
	if ans.failed {
		ttl = min(ttl, principalsErrorTTL)
	}
	age := now.Sub(ans.at)
	return age >= 0 && age < ttl
}

// rememberPrincipals remembers ans for user in place of an older answer remembered before,
// or, if there is none, when add is set: then, at the bound, answers no longer fresh are forgotten
// first, and if none is, one at random.
func (c *Checker) rememberPrincipals(user string, ans *principalsAnswer, add bool) {
	if c.PrincipalsTTL < 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	prev, had := c.principals[user]
	if had && prev.at.After(ans.at) {
		return // a check that asked later already answered
	}
	if ans.size > maxCachedAnswer {
		delete(c.principals, user)
		return
	}
	if !had && !add {
		return
	}
	if !had && len(c.principals) >= maxCachedPrincipals {
		for u, a := range c.principals {
			if !c.fresh(a, ans.at) {
				delete(c.principals, u)
			}
		}
		for u := range c.principals {
			if len(c.principals) < maxCachedPrincipals {
				break
			}
			delete(c.principals, u)
		}
	}
	c.principals[user] = ans
}

// matchPrincipals checks that the certificate carries a principal ans allows for user.
func matchPrincipals(ans *principalsAnswer, cert *ssh.Certificate, user string) error {
	var lookupErr error
	var certSet map[string]struct{}
	for i, allowed := range ans.lists {
		if err := ans.errs[i]; err != nil {
			lookupErr = err
			continue
		}
		if len(allowed)*len(cert.ValidPrincipals) <= smallMatch {
			for _, a := range allowed {
				if slices.Contains(cert.ValidPrincipals, a) {
					return nil
				}
			}
			continue
		}
		// Both lists may be long (a certificate the CA issued may carry a thousand principals,
		// and anyone who saw it can send it): match through a set, in time linear in their
		// lengths.
		if certSet == nil {
			certSet = make(map[string]struct{}, len(cert.ValidPrincipals))
			for _, p := range cert.ValidPrincipals {
				certSet[p] = struct{}{}
			}
		}
		for _, a := range allowed {
			if _, ok := certSet[a]; ok {
				return nil
			}
		}
	}
	if lookupErr != nil {
		return &Error{Reason: fmt.Sprintf("looking up the authorized principals of user %q", user), Lookup: true, Err: lookupErr}
	}
	return refuse("certificate %q has no principal authorized for user %q", cert.KeyId, user)
}

// checkSignature verifies the CA's signature over the certificate, unless it verified before.
func (c *Checker) checkSignature(cert *ssh.Certificate, wire []byte) error {
	h := sha256.Sum256(wire)
	c.mu.Lock()
	_, ok := c.verified[h]
	c.mu.Unlock()
	if ok {
		return nil
	}
	sig := cert.Signature
	if sig == nil {
		return refuse("certificate %q is not signed", cert.KeyId)
	}
	ca := cert.SignatureKey
	switch ca.Type() {
	case ssh.KeyAlgoRSA:
		if sig.Format != ssh.KeyAlgoRSASHA256 && sig.Format != ssh.KeyAlgoRSASHA512 {
			return refuse("certificate %q is signed with %q, not rsa-sha2-256 or rsa-sha2-512", cert.KeyId, sig.Format)
		}
	default:
		if sig.Format != ca.Type() {
			return refuse("certificate %q is signed with %q by a %s key", cert.KeyId, sig.Format, ca.Type())
		}
	}
	if err := canonicalSignature(cert); err != nil {
		return err
	}
	// The signed part is the certificate's wire form without its final signature field.
	c2 := *cert
	c2.Signature = nil
	signed := c2.Marshal()
	signed = signed[:len(signed)-4]
	if err := ca.Verify(signed, sig); err != nil {
		return &Error{Reason: fmt.Sprintf("certificate %q: the CA signature does not verify", cert.KeyId), Err: err}
	}
	c.mu.Lock()
	if len(c.verified) >= maxVerified {
		for k := range c.verified {
			delete(c.verified, k)
			break
		}
	}
	c.verified[h] = cert
	c.mu.Unlock()
	return nil
}

// canonicalSignature refuses an ECDSA CA signature whose r or s is not in its shortest
// encoding. Such a signature verifies (OpenSSH and x/crypto skip leading zero bytes), so
// without this check anyone who saw one certificate of an ECDSA CA (certificates are public)
// could make any number of distinct certificates that verify, each taking a place in the
// cache of verified certificates and evicting those other users' tickets name. What remains
// (s or n-s) makes at most two forms of each certificate the CA issued.
func canonicalSignature(cert *ssh.Certificate) error {
	switch cert.SignatureKey.Type() {
	case ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521, ssh.KeyAlgoSKECDSA256:
	default:
		return nil
	}
	var rs struct{ R, S *big.Int }
	if err := ssh.Unmarshal(cert.Signature.Blob, &rs); err != nil {
		return &Error{Reason: fmt.Sprintf("certificate %q: malformed CA signature", cert.KeyId), Err: err}
	}
	if !bytes.Equal(ssh.Marshal(&rs), cert.Signature.Blob) {
		return refuse("certificate %q: the CA signature is not in its canonical encoding", cert.KeyId)
	}
	return nil
}
