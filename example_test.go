// SPDX-License-Identifier: Apache-2.0

package netauth_test

import (
	"fmt"
	"io"
	"log"

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
