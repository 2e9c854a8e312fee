// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"crypto/ed25519"
	"crypto/mlkem"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"

	"ubns.dev/netauth/internal/handshake"
	"ubns.dev/netauth/internal/kem"
	"ubns.dev/netauth/internal/x25519"
)

// The floors say what no implementation of netauth's protocol could beat on this machine at
// the time of the run, measured in the same run as the rows they bound.
//
// A connection's floor (latency): a connect-send-recv needs one round trip more than plain
// TCP's (the client's data follows the server's first message), plus the public-key
// operations on the handshake's critical path, one after the other. With the pools of
// pre-generated keys (internal/x25519, internal/kem) key generation is off that path, so a
// resumed handshake (Noise NNpsk0) waits for the server's X25519 and then the client's;
// a full one (NNhfs, protocol version 3) for the server's X25519, its parsing of the
// client's ML-KEM-768 encapsulation key and encapsulation to it and its host signature,
// then the client's X25519, decapsulation, check of the host signature and user signature,
// then the server's verification of that signature.
//
// The server's CPU floor (per handshake): what the server computes, on or off the critical
// path: its ephemeral key generation and X25519 (resumed), plus the parsing of the
// encapsulation key and the encapsulation, the host signature and the verification of the
// user's signature (full).

// echoTwice is the floor's network part: connect, send msgSize bytes, receive them back, do
// it again on the same connection, close. It runs against an echo server that answers every
// request (serverAddrs.TCPEcho).
func echoTwice(addr string) func() error {
	return func() error {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		var req, resp [msgSize]byte
		for i := range req {
			req[i] = byte(i)
		}
		for range 2 {
			if _, err := c.Write(req[:]); err != nil {
				return fmt.Errorf("write: %w", err)
			}
			if _, err := io.ReadFull(c, resp[:]); err != nil {
				return fmt.Errorf("read: %w", err)
			}
			if resp != req {
				return errors.New("the reply differs from the request")
			}
		}
		return c.Close()
	}
}

// pkOps are the public-key operations of a handshake's critical path, with their keys made
// in advance as the pools make them.
type pkOps struct {
	client, server x25519.KeyPair
	ek             []byte // the client's ML-KEM-768 encapsulation key, as sent
	dk             *mlkem.DecapsulationKey768
	host, user     ed25519.PrivateKey
	hostMsg        []byte // what the host signs: the context and a handshake hash
	userMsg        []byte // what the user signs: SSHSIG's signed data
}

func newPKOps(host ed25519.PrivateKey) (*pkOps, error) {
	p := &pkOps{host: host}
	var err error
	if p.client, err = x25519.Generate(rand.Reader); err != nil {
		return nil, err
	}
	if p.server, err = x25519.Generate(rand.Reader); err != nil {
		return nil, err
	}
	if p.dk, err = mlkem.GenerateKey768(); err != nil {
		return nil, err
	}
	p.ek = p.dk.EncapsulationKey().Bytes()
	if _, p.user, err = ed25519.GenerateKey(rand.Reader); err != nil {
		return nil, err
	}
	hash := make([]byte, 32)
	_, _ = rand.Read(hash)
	p.hostMsg = append([]byte(handshake.HostSigContext), hash...)
	// SSHSIG's signed data: "SSHSIG", the namespace, a reserved string, "sha512" and the
	// statement's SHA-512, each but the first with a length prefix.
	p.userMsg = make([]byte, 6+4+len(handshake.Namespace)+4+4+6+4+64)
	_, _ = rand.Read(p.userMsg)
	return p, nil
}

// resumed runs a resumed handshake's operations: the server's X25519, then the client's.
func (p *pkOps) resumed() error {
	if _, err := p.server.DH(p.client.Public); err != nil {
		return err
	}
	_, err := p.client.DH(p.server.Public)
	return err
}

// full runs a full handshake's operations in their order.
func (p *pkOps) full() error {
	// The server: X25519, ML-KEM-768 encapsulation to the client's key, host signature.
	if _, err := p.server.DH(p.client.Public); err != nil {
		return err
	}
	ek, err := kem.ParseEncapsulationKey(p.ek)
	if err != nil {
		return err
	}
	_, ct, err := kem.Encapsulate(ek)
	if err != nil {
		return err
	}
	hostSig := ed25519.Sign(p.host, p.hostMsg)
	// The client: X25519, decapsulation, the host signature's check, the user's signature.
	if _, err := p.client.DH(p.server.Public); err != nil {
		return err
	}
	if _, err := p.dk.Decapsulate(ct); err != nil {
		return err
	}
	if !ed25519.Verify(p.host.Public().(ed25519.PublicKey), p.hostMsg, hostSig) {
		return errors.New("host signature check failed")
	}
	userSig := ed25519.Sign(p.user, p.userMsg)
	// The server: the user's signature's check.
	if !ed25519.Verify(p.user.Public().(ed25519.PublicKey), p.userMsg, userSig) {
		return errors.New("user signature check failed")
	}
	return nil
}

// serverOps are the server's public-key operations per handshake, for its CPU floor.
type serverOps struct {
	host    ed25519.PrivateKey
	peer    x25519.KeyPair
	ek      []byte
	userPub ed25519.PublicKey
	msg     []byte
	userSig []byte
}

func newServerOps(host ed25519.PrivateKey) (*serverOps, error) {
	s := &serverOps{host: host, msg: make([]byte, 200)}
	var err error
	if s.peer, err = x25519.Generate(rand.Reader); err != nil {
		return nil, err
	}
	var userPriv ed25519.PrivateKey
	if s.userPub, userPriv, err = ed25519.GenerateKey(rand.Reader); err != nil {
		return nil, err
	}
	s.userSig = ed25519.Sign(userPriv, s.msg)
	dk, err := mlkem.GenerateKey768()
	if err != nil {
		return nil, err
	}
	s.ek = dk.EncapsulationKey().Bytes()
	return s, nil
}

// run runs one handshake's server operations: an ephemeral key generation and X25519, and
// for a full handshake the parsing of the client's encapsulation key and encapsulation to
// it, the host's signature and the verification of the user's.
func (s *serverOps) run(full bool) error {
	kp, err := x25519.Generate(rand.Reader)
	if err != nil {
		return err
	}
	if _, err := kp.DH(s.peer.Public); err != nil {
		return err
	}
	if !full {
		return nil
	}
	ek, err := kem.ParseEncapsulationKey(s.ek)
	if err != nil {
		return err
	}
	if _, _, err := kem.Encapsulate(ek); err != nil {
		return err
	}
	_ = ed25519.Sign(s.host, s.msg[:64])
	if !ed25519.Verify(s.userPub, s.msg, s.userSig) {
		return errors.New("Ed25519 verification failed")
	}
	return nil
}
