// SPDX-License-Identifier: Apache-2.0

package netauth

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"time"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth/internal/handshake"
	"ubns.dev/netauth/internal/keys"
	"ubns.dev/netauth/internal/record"
)

// LoadOrCreateHostKey loads the OpenSSH-format Ed25519 host key at path, generating and
// saving a new one (mode 0600, with path+".pub") if the file does not exist.
func LoadOrCreateHostKey(path string) (key ed25519.PrivateKey, created bool, err error) {
	return keys.LoadOrCreateHostKey(path)
}

// DefaultKnownHostsFile returns the known_hosts file a zero Config uses.
func DefaultKnownHostsFile() (string, error) { return keys.DefaultKnownHostsPath() }

// Trust pins key as the host key of hostport in the known_hosts file (DefaultKnownHostsFile
// if file is empty).
func Trust(file, hostport string, key ssh.PublicKey) error {
	if file == "" {
		var err error
		if file, err = keys.DefaultKnownHostsPath(); err != nil {
			return err
		}
	}
	return keys.KnownHosts{Path: file}.Add(hostport, key)
}

// errGotHostKey stops a handshake once the host key is known.
var errGotHostKey = errors.New("host key received")

// FetchHostKey connects to a netauth server and returns its host key and service name,
// verified by the server's signature over the handshake but NOT checked against known_hosts:
// the caller decides whether to trust it (as ssh-keyscan does). No user authenticates; the
// server sees an abandoned handshake.
func FetchHostKey(ctx context.Context, network, hostport string) (ssh.PublicKey, string, error) {
	nc, err := (&net.Dialer{}).DialContext(ctx, network, hostport)
	if err != nil {
		return nil, "", fmt.Errorf("netauth: %w", err)
	}
	defer nc.Close()
	deadline := time.Now().Add(DefaultHandshakeTimeout)
	if d, ok := ctx.Deadline(); ok {
		deadline = d
	}
	_ = nc.SetDeadline(deadline)
	var got ssh.PublicKey
	var service string
	cfg := &handshake.ClientConfig{
		User: "nobody",
		CheckHostKey: func(k ssh.PublicKey, svc string) error {
			got, service = k, svc
			return errGotHostKey
		},
		Ephemeral: clientKeys().Get,
		KEM:       clientKEMKeys().Get,
	}
	_, err = handshake.RunClient(record.NewConn(nc), cfg)
	if !errors.Is(err, errGotHostKey) {
		if err == nil {
			err = errors.New("netauth: server completed a handshake without authenticating")
		}
		return nil, "", err
	}
	return got, service, nil
}
