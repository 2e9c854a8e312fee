// SPDX-License-Identifier: Apache-2.0

// Package builtin holds the small services netauthd can run without any program installed:
// whoami (the embedded default) and echo (for tests and benchmarks). Each runs as a netauthd
// worker, receiving its connections through netauth.Listen like any other service.
package builtin

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"

	"ubns.dev/netauth"
)

// Names lists the built-in services.
func Names() []string { return []string{"echo", "whoami"} }

// handler returns the built-in service called name.
func handler(name string) func(*netauth.Conn) {
	switch name {
	case "whoami":
		return Whoami
	case "echo":
		return Echo
	}
	return nil
}

// Run serves the built-in service name as a netauthd worker and returns the exit status.
func Run(name string, stderr io.Writer) int {
	h := handler(name)
	if h == nil {
		fmt.Fprintf(stderr, "unknown built-in service %q (have: %s)\n", name, strings.Join(Names(), ", "))
		return 2
	}
	if !netauth.IsWorker() {
		fmt.Fprintf(stderr, "the built-in service %q runs only as a netauthd worker\n", name)
		return 2
	}
	ln, err := netauth.Listen("", "", nil)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if err := ln.Serve(h); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}

// Describe is the whoami answer: who the server knows the client as, and the process (its
// uid, gid, groups and pid) that serves it.
func Describe(id netauth.Identity) string {
	groups, _ := os.Getgroups()
	sort.Ints(groups)
	gs := make([]string, len(groups))
	for i, g := range groups {
		gs[i] = strconv.Itoa(g)
	}
	return fmt.Sprintf("user=%s uid=%d gid=%d groups=%s pid=%d service=%s key=%s resumed=%v",
		id.User, os.Getuid(), os.Getgid(), strings.Join(gs, ","), os.Getpid(), id.Service, id.KeyFingerprint, id.Resumed)
}

// Whoami answers every line the client sends (or the connection itself, for a client that
// sends nothing and closes its side) with Describe.
func Whoami(c *netauth.Conn) {
	r := bufio.NewReader(c)
	for {
		_, err := r.ReadString('\n')
		if _, werr := fmt.Fprintln(c, Describe(c.Identity())); werr != nil || err != nil {
			return
		}
	}
}

// Echo sends back everything it reads.
func Echo(c *netauth.Conn) {
	_, _ = io.Copy(c, c)
}
