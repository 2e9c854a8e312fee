// SPDX-License-Identifier: Apache-2.0

package netauth_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"log"
	"net"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth"
)

// A client connects as the current user, with the keys in its agent ($NETAUTH_AUTH_SOCK or
// $SSH_AUTH_SOCK), to a server whose host key is in netauth's known_hosts.
func ExampleDial() {
	c, err := netauth.Dial("tcp", "server.example:4000", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "hello\n"); err != nil {
		log.Fatal(err)
	}
	reply, err := io.ReadAll(c) // the first read also reads the server's verdict
	if err != nil {
		log.Fatal(err) // a refusal is a *netauth.RefusedError saying why
	}
	fmt.Printf("%s (resumed: %v)\n", reply, c.Identity().Resumed)
}

// A server in a single program: its own host key, one authorized_keys file per user, and a
// policy callback. Each accepted connection names its authenticated user.
func ExampleListen() {
	hostKey, _, err := netauth.LoadOrCreateHostKey("/var/lib/example/host_ed25519_key")
	if err != nil {
		log.Fatal(err)
	}
	ln, err := netauth.Listen("tcp", ":4000", &netauth.ServerConfig{
		HostKey: hostKey,
		Service: "greeter",
		Keys:    netauth.UserKeyFiles("/etc/netauth/authorized_keys"),
	})
	if err != nil {
		log.Fatal(err)
	}
	for {
		c, err := ln.AcceptNetauth()
		if err != nil {
			log.Fatal(err)
		}
		go func() {
			defer c.Close()
			fmt.Fprintf(c, "hello %s\n", c.Identity().User)
		}()
	}
}

// Client and Server run netauth on connections made elsewhere, here the two ends of a
// net.Pipe, as tls.Client and tls.Server do: the handshake runs on the first Read or Write
// (or on Handshake). The client signs with a key held in memory and checks the server's
// host key with an x/crypto/ssh host key callback (knownhosts.New gives one from OpenSSH
// known_hosts files); a pipe has no address, so Config.ServerAddr names the server.
func ExampleClient() {
	_, hostKey, _ := ed25519.GenerateKey(rand.Reader)
	hostPub, _ := ssh.NewPublicKey(hostKey.Public())
	_, userKey, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := ssh.NewSignerFromKey(userKey)

	serverConfig := &netauth.ServerConfig{
		HostKey: hostKey,
		Service: "greeter",
		Keys:    netauth.StaticKeys{"alice": {signer.PublicKey()}},
	}
	clientConfig := &netauth.Config{
		User:               "alice",
		Signer:             signer,
		Service:            "greeter",
		ServerAddr:         "greeter.example:4000",
		SSHHostKeyCallback: ssh.FixedHostKey(hostPub),
		TicketCache:        netauth.NewMemoryTicketCache(16),
	}
	for range 2 {
		clientEnd, serverEnd := net.Pipe()
		go func() {
			s := netauth.Server(serverEnd, serverConfig)
			defer s.Close()
			if err := s.Handshake(); err != nil {
				return
			}
			fmt.Fprintf(s, "hello %s", s.Identity().User)
		}()
		c := netauth.Client(clientEnd, clientConfig)
		reply, err := io.ReadAll(c) // the first read runs the handshake
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s (resumed: %v)\n", reply, c.Identity().Resumed)
		c.Close()
	}
	// Output:
	// hello alice (resumed: false)
	// hello alice (resumed: true)
}
