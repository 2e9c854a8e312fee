// SPDX-License-Identifier: Apache-2.0

// Command whoami is the smallest useful netauth service: it tells each client who the server
// knows them as, and which process (uid, gid, groups, pid) serves them.
//
// Started by netauthd, it receives connections already authenticated, authorized, and
// encrypted, and runs as the user (see examples/netauthd.conf). Started by hand, it is its
// own server (in-process mode) with the given host key and authorized_keys directory.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"

	"ubns.dev/netauth"
)

func main() {
	addr := flag.String("listen", "127.0.0.1:4000", "address, when not run by netauthd")
	hostKeyPath := flag.String("host-key", "whoami_host_key", "host key file, when not run by netauthd")
	keyDir := flag.String("keys", "/etc/netauth/authorized_keys", "directory of per-user authorized_keys files, when not run by netauthd")
	flag.Parse()

	cfg := &netauth.ServerConfig{Service: "whoami", Keys: netauth.UserKeyFiles(*keyDir)}
	if !netauth.IsWorker() {
		key, _, err := netauth.LoadOrCreateHostKey(*hostKeyPath)
		if err != nil {
			log.Fatal(err)
		}
		cfg.HostKey = key
	}

	// The netauth part: one call to get authenticated connections, one to serve them.
	ln, err := netauth.Listen("tcp", *addr, cfg)
	if err != nil {
		log.Fatal(err)
	}
	err = ln.Serve(func(c *netauth.Conn) {
		id := c.Identity()
		groups, _ := os.Getgroups()
		fmt.Fprintf(c, "user=%s uid=%d gid=%d groups=%v pid=%d resumed=%v\n",
			id.User, os.Getuid(), os.Getgid(), groups, os.Getpid(), id.Resumed)
	})
	if err != nil {
		log.Fatal(err)
	}
}
