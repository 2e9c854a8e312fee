// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/crypto/ssh"
	sshagent "golang.org/x/crypto/ssh/agent"

	"ubns.dev/netauth/internal/keys"
)

// ExtChain is the extension a netauth agent uses to find out whether its
// upstream agent leads back to itself:
//
//	netauth-chain@ubns.dev  string visited (the concatenated 16-byte ids of
//	                        the agents the request passed through)
//	                        -> SSH_AGENT_SUCCESS, bool loop
//
// An agent whose id is among the visited ones answers loop; otherwise it
// appends its id and asks its own upstream, if it has one, and passes the
// answer back. A stock ssh-agent does not know the extension and so ends
// the chain.
const ExtChain = "netauth-chain@ubns.dev"

// agentIDSize is the size of an agent's random id in ExtChain requests.
const agentIDSize = 16

// MaxChain is the longest chain of netauth agents one request may pass
// through; a longer one is treated as a loop.
const MaxChain = 16

// Default bounds on a request to the upstream agent.
const (
	// DefaultUpstreamTimeout bounds connecting to the upstream agent and
	// listing its keys.
	DefaultUpstreamTimeout = 5 * time.Second
	// DefaultUpstreamSignTimeout bounds a signature by the upstream agent,
	// which may wait for the user (ssh-add -c confirmation, a touch of a
	// security key).
	DefaultUpstreamSignTimeout = 2 * time.Minute
)

// ErrUpstreamLoop is returned when the upstream agent leads back to this
// agent (its own socket, or a chain of netauth agents).
var ErrUpstreamLoop = errors.New("agent: upstream agent leads back to this agent (a loop); point -upstream at another agent or use -upstream none")

type chainRequest struct {
	Visited []byte
}

type chainResponse struct {
	Loop bool
}

// upstreamErr wraps an error talking to the upstream agent with its path.
// The agent client does not wrap I/O errors, so a timeout is recognized by
// the deadline having passed.
func (a *Agent) upstreamErr(op string, deadline time.Time, err error) error {
	if errors.Is(err, ErrUpstreamLoop) {
		return fmt.Errorf("agent: upstream agent at %s: %w", a.upstream, err)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || !time.Now().Before(deadline) {
		return fmt.Errorf("agent: upstream agent at %s: %s: no answer within %v: %w", a.upstream, op, a.timeoutFor(op), err)
	}
	return fmt.Errorf("agent: upstream agent at %s: %s: %w", a.upstream, op, err)
}

// timeoutFor returns the bound on the upstream operation op.
func (a *Agent) timeoutFor(op string) time.Duration {
	if op == opSign {
		return a.upstreamSignTimeout
	}
	return a.upstreamTimeout
}

// opSign names the signing operation in upstream errors.
const opSign = "signing"

// withUpstream connects to the upstream agent, checks that it does not lead
// back here, and calls fn with a client for it; the whole exchange must end
// within timeout. Every request gets a connection of its own, so an
// upstream agent that restarts, or keys added to it, are seen at once.
func (a *Agent) withUpstream(op string, timeout time.Duration, visited []byte, fn func(sshagent.ExtendedAgent) error) error {
	deadline := time.Now().Add(timeout)
	d := net.Dialer{Deadline: deadline}
	c, err := d.Dial("unix", a.upstream)
	if err != nil {
		return a.upstreamErr(op, deadline, err)
	}
	defer c.Close()
	if err := c.SetDeadline(deadline); err != nil {
		return a.upstreamErr(op, deadline, err)
	}
	cl := sshagent.NewClient(c)
	loop, err := askChain(cl, append(bytes.Clone(visited), a.id[:]...))
	if err != nil {
		return a.upstreamErr(op, deadline, err)
	}
	if loop {
		a.log.Warn("upstream agent leads back to this agent; not using it", "upstream", a.upstream)
		return a.upstreamErr(op, deadline, ErrUpstreamLoop)
	}
	if fn == nil {
		return nil
	}
	if err := fn(cl); err != nil {
		return a.upstreamErr(op, deadline, err)
	}
	return nil
}

// askChain sends ExtChain to an agent and reports whether it found a loop.
// An agent without the extension (a stock ssh-agent) ends the chain.
func askChain(cl sshagent.ExtendedAgent, visited []byte) (bool, error) {
	resp, err := cl.Extension(ExtChain, ssh.Marshal(chainRequest{Visited: visited}))
	if errors.Is(err, sshagent.ErrExtensionUnsupported) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("%s: %w", ExtChain, err)
	}
	if len(resp) == 0 || resp[0] != msgSuccess {
		return false, fmt.Errorf("%s: unexpected response", ExtChain)
	}
	if len(resp) == 1 {
		// Some agents answer every extension with a bare SSH_AGENT_SUCCESS.
		return false, nil
	}
	var r chainResponse
	if err := ssh.Unmarshal(resp[1:], &r); err != nil {
		return false, fmt.Errorf("%s: malformed response: %w", ExtChain, err)
	}
	return r.Loop, nil
}

// chain answers ExtChain.
func (a *Agent) chain(contents []byte) ([]byte, error) {
	var req chainRequest
	if err := ssh.Unmarshal(contents, &req); err != nil {
		return nil, fmt.Errorf("agent: chain: %w", err)
	}
	if len(req.Visited)%agentIDSize != 0 {
		return nil, fmt.Errorf("agent: chain: visited list is %d bytes, not a multiple of %d", len(req.Visited), agentIDSize)
	}
	loop := len(req.Visited)/agentIDSize >= MaxChain
	for i := 0; !loop && i < len(req.Visited); i += agentIDSize {
		loop = bytes.Equal(req.Visited[i:i+agentIDSize], a.id[:])
	}
	if !loop && a.upstream != "" {
		err := a.withUpstream("chain check", a.upstreamTimeout, req.Visited, nil)
		loop = errors.Is(err, ErrUpstreamLoop)
		// An upstream that cannot be reached is no loop.
	}
	return success(chainResponse{Loop: loop}), nil
}

// CheckUpstream connects to the upstream agent and reports whether it can
// be used: ErrUpstreamLoop (wrapped) if it leads back to this agent, an
// error naming the socket if it cannot be reached, and nil if it can or if
// the agent has no upstream. The agent must be serving its socket already,
// so that a loop through it can be seen.
func (a *Agent) CheckUpstream() error {
	if a.upstream == "" {
		return nil
	}
	if a.socket != "" && sameFile(a.socket, a.upstream) {
		return a.upstreamErr("check", time.Now().Add(time.Hour), ErrUpstreamLoop)
	}
	return a.withUpstream("check", a.upstreamTimeout, nil, nil)
}

// sameFile reports whether the paths name the same existing file.
func sameFile(p, q string) bool {
	pi, err := os.Stat(p)
	if err != nil {
		return false
	}
	qi, err := os.Stat(q)
	if err != nil {
		return false
	}
	return os.SameFile(pi, qi)
}

// Upstream returns the socket path of the upstream agent, or "" if there is
// none.
func (a *Agent) Upstream() string { return a.upstream }

// upstreamList returns the identities of the upstream agent.
func (a *Agent) upstreamList() ([]*sshagent.Key, error) {
	var list []*sshagent.Key
	err := a.withUpstream("listing keys", a.upstreamTimeout, nil, func(cl sshagent.ExtendedAgent) error {
		var err error
		list, err = cl.List()
		return err
	})
	return list, err
}

// upstreamSign asks the upstream agent to sign data with key, passing the
// flags on unchanged.
func (a *Agent) upstreamSign(key ssh.PublicKey, data []byte, flags sshagent.SignatureFlags) (*ssh.Signature, error) {
	var sig *ssh.Signature
	err := a.withUpstream(opSign, a.upstreamSignTimeout, nil, func(cl sshagent.ExtendedAgent) error {
		var err error
		sig, err = cl.SignWithFlags(key, data, flags)
		if err != nil {
			return fmt.Errorf("refused to sign with %s (or the user declined): %w", keys.Fingerprint(key), err)
		}
		return nil
	})
	return sig, err
}

// ownKey reports whether the agent's own keyring holds key.
func (a *Agent) ownKey(key ssh.PublicKey) bool {
	list, err := a.keyring.List()
	if err != nil {
		return false
	}
	want := key.Marshal()
	for _, k := range list {
		if bytes.Equal(k.Blob, want) {
			return true
		}
	}
	return false
}

// upstreamSSHSIG makes a netauth SSHSIG signature over statement with the
// upstream agent's key pub, through its plain signing request.
func (a *Agent) upstreamSSHSIG(pub ssh.PublicKey, statement []byte) ([]byte, error) {
	var flags sshagent.SignatureFlags
	if pub.Type() == ssh.KeyAlgoRSA || pub.Type() == ssh.CertAlgoRSAv01 {
		flags = sshagent.SignatureFlagRsaSha512
	}
	sig, err := a.upstreamSign(pub, keys.SignedData(Namespace, statement), flags)
	if err != nil {
		return nil, err
	}
	return keys.Assemble(pub, Namespace, sig), nil
}
