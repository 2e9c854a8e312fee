// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"golang.org/x/crypto/ssh"
	sshagent "golang.org/x/crypto/ssh/agent"

	"ubns.dev/netauth/internal/keys"
)

// ErrUnsupported is returned by the extension helpers when the agent does
// not implement the netauth extensions, as a stock OpenSSH ssh-agent does
// not. Callers then sign with the agent's plain signer and do without the
// ticket cache.
var ErrUnsupported = errors.New("agent: netauth extensions not supported by this agent")

// ErrNoTicket is returned by GetTicket when the agent holds no live ticket
// under the id.
var ErrNoTicket = errors.New("agent: no ticket")

// Environment variables naming agent sockets.
const (
	// SockEnv names the netauth agent socket; it takes precedence.
	SockEnv = "NETAUTH_AUTH_SOCK"
	// SSHSockEnv names an ssh-agent socket, used when SockEnv is not set.
	SSHSockEnv = "SSH_AUTH_SOCK"
)

// SocketPath returns the agent socket to use: $NETAUTH_AUTH_SOCK if set,
// else $SSH_AUTH_SOCK, else an error telling the user how to start an agent.
func SocketPath() (string, error) {
	if p := os.Getenv(SockEnv); p != "" {
		return p, nil
	}
	if p := os.Getenv(SSHSockEnv); p != "" {
		return p, nil
	}
	return "", fmt.Errorf("agent: no agent: neither %s nor %s is set; start one with eval \"$(netauth agent)\" (or eval \"$(ssh-agent)\") and add your key with ssh-add", SockEnv, SSHSockEnv)
}

// Dial connects to the agent listening on the Unix socket at path. It
// returns a client for it and the connection, which the caller closes when
// done with the client.
func Dial(path string) (sshagent.ExtendedAgent, io.Closer, error) {
	c, err := net.Dial("unix", path)
	if err != nil {
		return nil, nil, fmt.Errorf("agent: dial: %w", err)
	}
	return sshagent.NewClient(c), c, nil
}

// call sends a netauth extension request and returns the response
// payload after its SSH_AGENT_SUCCESS byte. An agent that does not know the
// extension yields ErrUnsupported.
func call(a sshagent.ExtendedAgent, ext string, req any) ([]byte, error) {
	resp, err := a.Extension(ext, ssh.Marshal(req))
	if errors.Is(err, sshagent.ErrExtensionUnsupported) {
		return nil, ErrUnsupported
	}
	if err != nil {
		return nil, fmt.Errorf("agent: %s: %w", ext, err)
	}
	if len(resp) == 0 || resp[0] != msgSuccess {
		return nil, fmt.Errorf("agent: %s: unexpected response", ext)
	}
	return resp[1:], nil
}

// PutTicket stores a resumption ticket in the agent under id, replacing any
// ticket stored under the same id. The agent forgets it at expiry.
func PutTicket(a sshagent.ExtendedAgent, id string, ticket []byte, expiry time.Time) error {
	if err := checkTicketID(id); err != nil {
		return err
	}
	if len(ticket) == 0 || len(ticket) > MaxTicketSize {
		return fmt.Errorf("agent: ticket is %d bytes, want 1 to %d", len(ticket), MaxTicketSize)
	}
	if expiry.Unix() <= 0 {
		return fmt.Errorf("agent: ticket expiry %v is not after 1970", expiry)
	}
	rest, err := call(a, ExtTicketPut, ticketPutRequest{ID: id, Ticket: ticket, Expiry: timeToUnix(expiry)})
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return fmt.Errorf("agent: %s: unexpected response", ExtTicketPut)
	}
	return nil
}

// GetTicket returns the ticket stored under id and its expiry. It returns
// ErrNoTicket if there is none (or it has expired), and ErrUnsupported if
// the agent has no ticket cache.
func GetTicket(a sshagent.ExtendedAgent, id string) (ticket []byte, expiry time.Time, err error) {
	if err := checkTicketID(id); err != nil {
		return nil, time.Time{}, err
	}
	rest, err := call(a, ExtTicketGet, ticketIDRequest{ID: id})
	if err != nil {
		return nil, time.Time{}, err
	}
	if len(rest) == 0 {
		// A bare SSH_AGENT_SUCCESS: not a netauth agent.
		return nil, time.Time{}, ErrUnsupported
	}
	var resp ticketGetResponse
	if err := ssh.Unmarshal(rest, &resp); err != nil {
		return nil, time.Time{}, fmt.Errorf("agent: %s: malformed response: %w", ExtTicketGet, err)
	}
	if !resp.Found {
		return nil, time.Time{}, ErrNoTicket
	}
	if len(resp.Ticket) == 0 || len(resp.Ticket) > MaxTicketSize {
		return nil, time.Time{}, fmt.Errorf("agent: %s: response ticket is %d bytes", ExtTicketGet, len(resp.Ticket))
	}
	return resp.Ticket, unixToTime(resp.Expiry), nil
}

// DeleteTicket removes the ticket stored under id, if any.
func DeleteTicket(a sshagent.ExtendedAgent, id string) error {
	if err := checkTicketID(id); err != nil {
		return err
	}
	rest, err := call(a, ExtTicketDelete, ticketIDRequest{ID: id})
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return fmt.Errorf("agent: %s: unexpected response", ExtTicketDelete)
	}
	return nil
}

// SignStatement asks the agent to sign an authenticator statement with the
// key pub through the netauth-sign extension, and returns the binary SSHSIG
// signature in namespace Namespace. It returns ErrUnsupported if the agent
// lacks the extension; the caller then signs with keys.Sign and the agent's
// plain signer for pub.
func SignStatement(a sshagent.ExtendedAgent, pub ssh.PublicKey, statement []byte) ([]byte, error) {
	if len(statement) > keys.MaxStatementSize {
		return nil, fmt.Errorf("agent: statement is %d bytes, more than %d", len(statement), keys.MaxStatementSize)
	}
	rest, err := call(a, ExtSign, signRequest{KeyBlob: pub.Marshal(), Statement: statement})
	if err != nil {
		return nil, err
	}
	if len(rest) == 0 {
		return nil, ErrUnsupported
	}
	var resp signResponse
	if err := ssh.Unmarshal(rest, &resp); err != nil {
		return nil, fmt.Errorf("agent: %s: malformed response: %w", ExtSign, err)
	}
	if len(resp.Signature) == 0 {
		return nil, fmt.Errorf("agent: %s: empty signature", ExtSign)
	}
	return resp.Signature, nil
}
