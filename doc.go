// SPDX-License-Identifier: Apache-2.0

// Package netauth authenticates and encrypts network connections with the SSH keys and
// ssh-agent users already have, so that a server knows which user is on the other end before
// it reads a byte of application data.
//
// A client calls [Dial]. Its user's agent signs an authenticator (an SSHSIG signature over a
// statement naming this connection's handshake hash, the server's host key, the service, the
// user and the time); the server proves itself with its Ed25519 host key, which the client
// checks against netauth's known_hosts file. Traffic is encrypted with keys from a hybrid
// post-quantum Noise handshake (NNhfs: X25519 and ML-KEM-768, protocol version 3). After a
// full handshake the server issues a ticket that the agent caches, and the user's next
// connections resume with it (Noise NNpsk0: a fresh X25519 exchange keyed by the full
// handshake's resumption secret, no signature).
//
// A server calls [Listen] with its host key and a [KeySource] saying which keys may act as
// each user, and gets [Conn]s whose [Conn.Identity] names the authenticated user:
//
//	ln, err := netauth.Listen("tcp", ":4000", &netauth.ServerConfig{
//		HostKey: hostKey,
//		Keys:    netauth.UserKeyFiles("/etc/netauth/authorized_keys"),
//	})
//	...
//	c, err := ln.Accept()
//	user := c.(*netauth.Conn).Identity().User
//
// As with crypto/tls, [Client] and [Server] run netauth on connections made elsewhere, the
// handshake running on first use. [Config.DialContext] makes Dial's connections, and
// [Config.SSHHostKeyCallback] takes x/crypto/ssh host key callbacks such as knownhosts.New's.
// Under netauthd (worker mode, see [IsWorker]) Listen serves the connections netauthd hands
// over instead of listening.
//
// The wire protocol is specified in docs/PROTOCOL.md. What netauth protects against, and
// what it does not, is described there too.
package netauth
