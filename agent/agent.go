// SPDX-License-Identifier: Apache-2.0

// Package agent implements the netauth agent: an SSH agent (it speaks the
// ssh-agent protocol, so ssh-add and ssh work with it) that also signs
// netauth authenticator statements and caches the resumption tickets netauth
// servers issue, so that every process of a user can resume a session.
//
// The netauth additions are SSH_AGENTC_EXTENSION requests whose contents are
// encoded in SSH wire format:
//
//	netauth-ticket-put@ubns.dev     string id, string ticket, uint64 expiry
//	                                -> SSH_AGENT_SUCCESS
//	netauth-ticket-get@ubns.dev     string id
//	                                -> SSH_AGENT_SUCCESS, bool found,
//	                                   string ticket, uint64 expiry
//	netauth-ticket-delete@ubns.dev  string id
//	                                -> SSH_AGENT_SUCCESS
//	netauth-sign@ubns.dev           string public key blob, string statement
//	                                -> SSH_AGENT_SUCCESS, string SSHSIG blob
//	netauth-chain@ubns.dev          string visited agent ids
//	                                -> SSH_AGENT_SUCCESS, bool loop
//
// Expiry times are Unix seconds. A ticket that is not cached is reported
// with found set to false, so a client can tell a cache miss
// (SSH_AGENT_SUCCESS) from an invalid or refused request
// (SSH_AGENT_EXTENSION_FAILURE) and from an agent that does not know the
// extension at all (SSH_AGENT_FAILURE, as a stock OpenSSH ssh-agent answers).
//
// # Upstream agent
//
// An agent with an upstream (Options.Upstream: the ssh-agent, gpg-agent,
// password manager or security-key agent the user already runs) sits on top
// of it:
//
//   - List returns the agent's own identities first, then the upstream's
//     (keys and certificates) that it does not hold itself. The upstream is
//     asked on every list request, over a connection of its own, so keys
//     added to it at any time are seen at once; nothing of it is cached.
//   - A sign request for a key the agent does not hold goes to the upstream
//     unchanged (same key blob, data and flags), so the upstream's own
//     checks (ssh-add -c confirmation, a security key's touch) still apply;
//     netauth-sign for an upstream key is made the same way, as a plain
//     sign request over the SSHSIG signed data. Host restrictions apply to
//     upstream keys as to the agent's own.
//   - Add, remove, remove-all, lock and unlock act on the agent's own keys
//     only: ssh-add adds to the netauth agent, ssh-add -d cannot remove an
//     upstream key (remove it with the upstream's own socket), and ssh-add
//     -x locks only the netauth agent (while it is locked, it neither lists
//     nor uses the upstream's keys). The ticket cache is the agent's own.
//     Other extensions are not passed on.
//   - Requests to the upstream are bounded (Options.UpstreamTimeout for
//     connecting and listing, UpstreamSignTimeout for a signature, which may
//     wait for the user). An upstream that does not answer, or is gone,
//     costs its keys only: they are not listed and signing with them fails
//     with an error naming the upstream socket; the agent's own keys work.
//   - Before every upstream request the agent sends ExtChain (below) to the
//     upstream, so that a chain of netauth agents that leads back to itself
//     is refused (ErrUpstreamLoop) instead of recursing.
//
// PutTicket, GetTicket, DeleteTicket and SignStatement are the client side
// of these extensions; they work with any ssh/agent.ExtendedAgent, and
// return ErrUnsupported for an agent without them.
package agent

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	sshagent "golang.org/x/crypto/ssh/agent"

	"ubns.dev/netauth/internal/keys"
)

// Namespace is the SSHSIG namespace of netauth authenticator statements.
const Namespace = "netauth-v1@ubns.dev"

// Names of the netauth agent extensions.
const (
	ExtTicketPut    = "netauth-ticket-put@ubns.dev"
	ExtTicketGet    = "netauth-ticket-get@ubns.dev"
	ExtTicketDelete = "netauth-ticket-delete@ubns.dev"
	ExtSign         = "netauth-sign@ubns.dev"
)

// Limits on cached tickets.
const (
	// MaxTicketIDSize is the longest ticket id the agent stores, in bytes.
	MaxTicketIDSize = 512
	// MaxTicketSize is the longest ticket the agent stores, in bytes: a client's
	// cached session, which holds the user's key or certificate (up to 16 KiB) and
	// the host's key or certificate.
	MaxTicketSize = 24 << 10
	// MaxTicketBytes bounds the bytes of all the tickets an agent stores together;
	// when a new one would pass it, the tickets expiring first are evicted.
	MaxTicketBytes = 16 << 20
	// DefaultMaxTickets is the number of tickets an agent caches when
	// Options.MaxTickets is not set.
	DefaultMaxTickets = 4096
)

// msgSuccess is SSH_AGENT_SUCCESS, the first byte of every successful
// extension response.
const msgSuccess = 6

// sshsigMagic starts every SSHSIG signed-data blob (and every SSHSIG
// signature blob).
const sshsigMagic = "SSHSIG"

// errLocked is returned by the netauth extensions while the agent is locked.
var errLocked = errors.New("agent: locked")

// Options configures an Agent. The zero value is usable.
type Options struct {
	// Logger receives the agent's log records; nil discards them.
	Logger *slog.Logger
	// Restrictions maps a user key fingerprint ("SHA256:...") to the host
	// key fingerprints that key may authenticate to through netauth. A key
	// without an entry is unrestricted. A restricted key is also refused for
	// netauth SSHSIG signatures made through the plain ssh-agent sign
	// request, so the restriction cannot be bypassed; other signatures
	// (SSH logins) are still made. A restriction on a key applies to its
	// certificates as well, which sign with it.
	Restrictions map[string][]string
	// MaxTickets is the number of tickets the agent caches; when it is full
	// the ticket that expires soonest is evicted. Zero or negative means
	// DefaultMaxTickets.
	MaxTickets int
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Upstream is the socket of an agent to chain to (see the package
	// documentation, "Upstream agent"); empty means none.
	Upstream string
	// UpstreamTimeout bounds connecting to the upstream agent and listing
	// its keys; zero means DefaultUpstreamTimeout.
	UpstreamTimeout time.Duration
	// UpstreamSignTimeout bounds a signature by the upstream agent; zero
	// means DefaultUpstreamSignTimeout.
	UpstreamSignTimeout time.Duration
	// Socket is the path the agent serves on, if known; CheckUpstream
	// refuses an upstream that is this very socket.
	Socket string
}

// ticket is one cached resumption ticket.
type ticket struct {
	data   []byte
	expiry time.Time
}

// wipe zeroes the ticket's bytes.
func (t *ticket) wipe() {
	clear(t.data)
	t.data = nil
}

// Agent is an in-memory SSH agent with the netauth extensions. It
// implements golang.org/x/crypto/ssh/agent.ExtendedAgent and is safe for
// concurrent use. Keys are held by an ssh/agent keyring, so the standard
// operations (list, add, remove, lock, sign) behave as that keyring's do,
// and return its errors unwrapped (the ssh-agent server recognizes the
// keyring's "locked" error by identity).
type Agent struct {
	log          *slog.Logger
	keyring      sshagent.ExtendedAgent
	restrictions map[string]map[string]bool
	maxTickets   int
	now          func() time.Time
	uid          int
	id           [agentIDSize]byte // identifies the agent in ExtChain requests

	upstream            string
	upstreamTimeout     time.Duration
	upstreamSignTimeout time.Duration
	socket              string

	mu      sync.Mutex // guards locked and tickets; held across Lock/Unlock
	locked  bool
	tickets map[string]*ticket
	// ticketBytes is the size of every ticket in tickets together.
	ticketBytes int
}

// New returns an empty agent configured by opts.
func New(opts Options) *Agent {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	maxTickets := opts.MaxTickets
	if maxTickets <= 0 {
		maxTickets = DefaultMaxTickets
	}
	restrictions := make(map[string]map[string]bool, len(opts.Restrictions))
	for key, hosts := range opts.Restrictions {
		set := make(map[string]bool, len(hosts))
		for _, h := range hosts {
			set[h] = true
		}
		restrictions[key] = set
	}
	// NewKeyring's concrete type implements ExtendedAgent (SignWithFlags);
	// fall back to a plain wrapper should that ever change.
	kr := sshagent.NewKeyring()
	ext, ok := kr.(sshagent.ExtendedAgent)
	if !ok {
		ext = plainKeyring{kr}
	}
	a := &Agent{
		log:                 log,
		keyring:             ext,
		restrictions:        restrictions,
		maxTickets:          maxTickets,
		now:                 now,
		uid:                 os.Getuid(),
		tickets:             make(map[string]*ticket),
		upstream:            opts.Upstream,
		upstreamTimeout:     opts.UpstreamTimeout,
		upstreamSignTimeout: opts.UpstreamSignTimeout,
		socket:              opts.Socket,
	}
	if a.upstreamTimeout <= 0 {
		a.upstreamTimeout = DefaultUpstreamTimeout
	}
	if a.upstreamSignTimeout <= 0 {
		a.upstreamSignTimeout = DefaultUpstreamSignTimeout
	}
	if _, err := rand.Read(a.id[:]); err != nil {
		panic("agent: no randomness: " + err.Error())
	}
	return a
}

// plainKeyring adapts an Agent without SignWithFlags to ExtendedAgent.
type plainKeyring struct{ sshagent.Agent }

func (k plainKeyring) SignWithFlags(key ssh.PublicKey, data []byte, flags sshagent.SignatureFlags) (*ssh.Signature, error) {
	if flags != 0 {
		return nil, fmt.Errorf("agent: signature flags %d not supported", flags)
	}
	return k.Sign(key, data)
}

func (k plainKeyring) Extension(string, []byte) ([]byte, error) {
	return nil, sshagent.ErrExtensionUnsupported
}

// List returns the identities the agent holds (none while it is locked):
// its own first, then those of the upstream agent that it does not hold
// itself. An upstream agent that cannot be reached, or that leads back to
// this agent, is logged and contributes nothing.
func (a *Agent) List() ([]*sshagent.Key, error) {
	own, err := a.keyring.List()
	if err != nil || a.upstream == "" || a.isLocked() {
		return own, err
	}
	up, err := a.upstreamList()
	if err != nil {
		a.log.Warn("listing the upstream agent's keys failed; listing only the agent's own", "err", err)
		return own, nil
	}
	seen := make(map[string]bool, len(own))
	for _, k := range own {
		seen[string(k.Blob)] = true
	}
	for _, k := range up {
		if !seen[string(k.Blob)] {
			seen[string(k.Blob)] = true
			own = append(own, k)
		}
	}
	return own, nil
}

// isLocked reports whether the agent is locked.
func (a *Agent) isLocked() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.locked
}

// Add adds a private key to the agent.
func (a *Agent) Add(key sshagent.AddedKey) error {
	return a.keyring.Add(key)
}

// Remove removes the identity with the given public key.
func (a *Agent) Remove(key ssh.PublicKey) error {
	return a.keyring.Remove(key)
}

// RemoveAll removes every identity and wipes every cached ticket.
func (a *Agent) RemoveAll() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.keyring.RemoveAll(); err != nil {
		return err
	}
	a.wipeTicketsLocked()
	return nil
}

// Lock locks the agent with passphrase and wipes every cached ticket. While
// locked, the agent lists no keys, refuses to sign, and fails every netauth
// extension.
func (a *Agent) Lock(passphrase []byte) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.keyring.Lock(passphrase); err != nil {
		return err
	}
	a.locked = true
	a.wipeTicketsLocked()
	a.log.Info("agent locked")
	return nil
}

// Unlock undoes Lock if passphrase matches.
func (a *Agent) Unlock(passphrase []byte) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.keyring.Unlock(passphrase); err != nil {
		a.log.Warn("agent unlock failed", "err", err)
		return err
	}
	a.locked = false
	a.log.Info("agent unlocked")
	return nil
}

// Signers returns signers for all the keys the agent holds.
func (a *Agent) Signers() ([]ssh.Signer, error) {
	return a.keyring.Signers()
}

// Sign signs data with the key. It refuses netauth SSHSIG signed data for a
// host-restricted key (see Options.Restrictions).
func (a *Agent) Sign(key ssh.PublicKey, data []byte) (*ssh.Signature, error) {
	return a.SignWithFlags(key, data, 0)
}

// SignWithFlags signs data with the key, like Sign, honouring the RSA
// signature algorithm flags.
func (a *Agent) SignWithFlags(key ssh.PublicKey, data []byte, flags sshagent.SignatureFlags) (*ssh.Signature, error) {
	// Only netauth's signed data concerns host restrictions: other signatures (SSH's own) do
	// not pay for looking them up.
	if isNetauthSignedData(data) && len(a.restrictions) > 0 {
		if fp := keys.Fingerprint(key); len(a.restrictionsOf(key, fp)) > 0 {
			a.log.Warn("refused raw netauth signature with a host-restricted key", "key", fp)
			return nil, fmt.Errorf("agent: key %s is host-restricted; netauth signatures must use %s", fp, ExtSign)
		}
	}
	if a.upstream == "" || a.isLocked() || a.ownKey(key) {
		return a.keyring.SignWithFlags(key, data, flags)
	}
	return a.upstreamSign(key, data, flags)
}

// restrictionsOf returns the host restrictions that apply to key: those naming it and, for a
// certificate, those naming its key (the fingerprint ssh-keygen -l prints for the key file),
// since a certificate signs with its key. fp is key's fingerprint.
func (a *Agent) restrictionsOf(key ssh.PublicKey, fp string) []map[string]bool {
	if len(a.restrictions) == 0 {
		return nil
	}
	var out []map[string]bool
	if r := a.restrictions[fp]; r != nil {
		out = append(out, r)
	}
	// A sign request names its key as an opaque blob (an sshagent.Key). A certificate that
	// does not parse has no key to name.
	if cert, _ := keys.AsCertificate(key); cert != nil {
		if r := a.restrictions[keys.Fingerprint(cert.Key)]; r != nil {
			out = append(out, r)
		}
	}
	return out
}

// hostAllowed reports whether key, whose fingerprint is keyFP, may sign a netauth statement
// for the host key whose fingerprint is hostFP: every restriction that applies to it must list
// the host.
func (a *Agent) hostAllowed(key ssh.PublicKey, keyFP, hostFP string) bool {
	for _, r := range a.restrictionsOf(key, keyFP) {
		if !r[hostFP] {
			return false
		}
	}
	return true
}

// isNetauthSignedData reports whether data is (or claims to be) an SSHSIG
// signed-data blob in the netauth namespace. A blob that starts with the
// SSHSIG magic but whose namespace cannot be read is treated as netauth's,
// so the check fails closed.
func isNetauthSignedData(data []byte) bool {
	rest, ok := bytes.CutPrefix(data, []byte(sshsigMagic))
	if !ok {
		return false
	}
	var hdr struct {
		Namespace string
		Rest      []byte `ssh:"rest"`
	}
	if err := ssh.Unmarshal(rest, &hdr); err != nil {
		return true
	}
	return hdr.Namespace == Namespace
}

// Extension handles the netauth extensions (see the package documentation).
// It returns ssh/agent.ErrExtensionUnsupported for any other extension type.
// A successful response starts with the SSH_AGENT_SUCCESS message number.
func (a *Agent) Extension(extensionType string, contents []byte) ([]byte, error) {
	var handle func([]byte) ([]byte, error)
	switch extensionType {
	case ExtTicketPut:
		handle = a.ticketPut
	case ExtTicketGet:
		handle = a.ticketGet
	case ExtTicketDelete:
		handle = a.ticketDelete
	case ExtSign:
		handle = a.sign
	case ExtChain:
		handle = a.chain
	default:
		return nil, sshagent.ErrExtensionUnsupported
	}
	resp, err := handle(contents)
	if err != nil {
		a.log.Debug("extension failed", "extension", extensionType, "err", err)
		return nil, err
	}
	return resp, nil
}

// Wire formats of the extension contents and responses.
type (
	ticketPutRequest struct {
		ID     string
		Ticket []byte
		Expiry uint64
	}
	ticketIDRequest struct {
		ID string
	}
	ticketGetResponse struct {
		Found  bool
		Ticket []byte
		Expiry uint64
	}
	signRequest struct {
		KeyBlob   []byte
		Statement []byte
	}
	signResponse struct {
		Signature []byte
	}
)

// success returns an SSH_AGENT_SUCCESS response carrying msg.
func success(msg any) []byte {
	return append([]byte{msgSuccess}, ssh.Marshal(msg)...)
}

// maxUnix is the last second of the year 9999; later expiry times are
// treated as this one (time.Time cannot compare much later ones).
const maxUnix = 253402300799

// unixToTime converts wire Unix seconds to a time, saturating at maxUnix.
func unixToTime(sec uint64) time.Time {
	return time.Unix(int64(min(sec, maxUnix)), 0)
}

// timeToUnix converts a time to wire Unix seconds; times before 1970 become 0.
func timeToUnix(t time.Time) uint64 {
	return uint64(max(t.Unix(), 0))
}

func checkTicketID(id string) error {
	if id == "" {
		return errors.New("agent: empty ticket id")
	}
	if len(id) > MaxTicketIDSize {
		return fmt.Errorf("agent: ticket id is %d bytes, more than %d", len(id), MaxTicketIDSize)
	}
	return nil
}

func (a *Agent) ticketPut(contents []byte) ([]byte, error) {
	var req ticketPutRequest
	if err := ssh.Unmarshal(contents, &req); err != nil {
		return nil, fmt.Errorf("agent: ticket put: %w", err)
	}
	if err := checkTicketID(req.ID); err != nil {
		return nil, fmt.Errorf("agent: ticket put: %w", err)
	}
	if len(req.Ticket) == 0 {
		return nil, errors.New("agent: ticket put: empty ticket")
	}
	if len(req.Ticket) > MaxTicketSize {
		return nil, fmt.Errorf("agent: ticket put: ticket is %d bytes, more than %d", len(req.Ticket), MaxTicketSize)
	}
	expiry := unixToTime(req.Expiry)
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.locked {
		return nil, errLocked
	}
	now := a.now()
	if !now.Before(expiry) {
		return nil, errors.New("agent: ticket put: ticket already expired")
	}
	if old, ok := a.tickets[req.ID]; ok {
		a.dropLocked(req.ID, old)
	}
	full := func() bool {
		return len(a.tickets) >= a.maxTickets || a.ticketBytes+len(req.Ticket) > MaxTicketBytes
	}
	if full() {
		a.expireLocked(now)
	}
	for full() && len(a.tickets) > 0 {
		a.evictSoonestLocked()
	}
	a.tickets[req.ID] = &ticket{data: bytes.Clone(req.Ticket), expiry: expiry}
	a.ticketBytes += len(req.Ticket)
	return []byte{msgSuccess}, nil
}

// expireLocked deletes every expired ticket.
func (a *Agent) expireLocked(now time.Time) {
	for id, t := range a.tickets {
		if !now.Before(t.expiry) {
			a.dropLocked(id, t)
		}
	}
}

// dropLocked wipes and deletes the ticket t stored under id.
func (a *Agent) dropLocked(id string, t *ticket) {
	a.ticketBytes -= len(t.data)
	t.wipe()
	delete(a.tickets, id)
}

// evictSoonestLocked deletes the ticket that expires first.
func (a *Agent) evictSoonestLocked() {
	var victim string
	var soonest *ticket
	for id, t := range a.tickets {
		if soonest == nil || t.expiry.Before(soonest.expiry) || t.expiry.Equal(soonest.expiry) && id < victim {
			victim, soonest = id, t
		}
	}
	if soonest == nil {
		return
	}
	a.dropLocked(victim, soonest)
	a.log.Debug("ticket cache full; evicted the ticket expiring first", "expiry", soonest.expiry)
}

// wipeTicketsLocked zeroes and deletes every ticket.
func (a *Agent) wipeTicketsLocked() {
	for id, t := range a.tickets {
		a.dropLocked(id, t)
	}
}

func (a *Agent) ticketGet(contents []byte) ([]byte, error) {
	var req ticketIDRequest
	if err := ssh.Unmarshal(contents, &req); err != nil {
		return nil, fmt.Errorf("agent: ticket get: %w", err)
	}
	if err := checkTicketID(req.ID); err != nil {
		return nil, fmt.Errorf("agent: ticket get: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.locked {
		return nil, errLocked
	}
	t, ok := a.tickets[req.ID]
	if ok && !a.now().Before(t.expiry) {
		a.dropLocked(req.ID, t)
		ok = false
	}
	if !ok {
		return success(ticketGetResponse{}), nil
	}
	return success(ticketGetResponse{Found: true, Ticket: t.data, Expiry: timeToUnix(t.expiry)}), nil
}

func (a *Agent) ticketDelete(contents []byte) ([]byte, error) {
	var req ticketIDRequest
	if err := ssh.Unmarshal(contents, &req); err != nil {
		return nil, fmt.Errorf("agent: ticket delete: %w", err)
	}
	if err := checkTicketID(req.ID); err != nil {
		return nil, fmt.Errorf("agent: ticket delete: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.locked {
		return nil, errLocked
	}
	if t, ok := a.tickets[req.ID]; ok {
		a.dropLocked(req.ID, t)
	}
	return []byte{msgSuccess}, nil
}

func (a *Agent) sign(contents []byte) ([]byte, error) {
	var req signRequest
	if err := ssh.Unmarshal(contents, &req); err != nil {
		return nil, fmt.Errorf("agent: netauth sign: %w", err)
	}
	if len(req.Statement) > keys.MaxStatementSize {
		return nil, fmt.Errorf("agent: netauth sign: statement is %d bytes, more than %d", len(req.Statement), keys.MaxStatementSize)
	}
	pub, err := ssh.ParsePublicKey(req.KeyBlob)
	if err != nil {
		return nil, fmt.Errorf("agent: netauth sign: %w", err)
	}
	st, err := keys.ParseStatement(req.Statement)
	if err != nil {
		return nil, fmt.Errorf("agent: netauth sign: %w", err)
	}
	keyFP := keys.Fingerprint(pub)
	hostFP := keys.Fingerprint(st.HostKey)
	if !a.hostAllowed(pub, keyFP, hostFP) {
		a.log.Warn("refused netauth signature for a host the key is not allowed for",
			"key", keyFP, "host", hostFP, "service", st.Service, "user", st.User)
		return nil, fmt.Errorf("agent: netauth sign: key %s may not be used for host %s", keyFP, hostFP)
	}

	a.mu.Lock()
	locked := a.locked
	a.mu.Unlock()
	if locked {
		return nil, errLocked
	}
	signers, err := a.keyring.Signers()
	if err != nil {
		return nil, fmt.Errorf("agent: netauth sign: %w", err)
	}
	want := pub.Marshal()
	i := slices.IndexFunc(signers, func(s ssh.Signer) bool {
		return bytes.Equal(s.PublicKey().Marshal(), want)
	})
	var sig []byte
	switch {
	case i >= 0:
		sig, err = keys.Sign(signers[i], Namespace, req.Statement)
	case a.upstream != "":
		sig, err = a.upstreamSSHSIG(pub, req.Statement)
	default:
		err = fmt.Errorf("key %s not found", keyFP)
	}
	if err != nil {
		return nil, fmt.Errorf("agent: netauth sign: %w", err)
	}
	a.log.Info("signed netauth statement", "key", keyFP, "host", hostFP, "service", st.Service, "user", st.User)
	return success(signResponse{Signature: sig}), nil
}

// Compile-time check that Agent is an ssh/agent.ExtendedAgent.
var _ sshagent.ExtendedAgent = (*Agent)(nil)
