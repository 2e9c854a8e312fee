// SPDX-License-Identifier: Apache-2.0

// Package builtin holds the workers netauthd can run without any program installed: the small
// services whoami (the embedded default) and echo (for tests and benchmarks), and the workers
// of the exec, backend, http-backend and instance modes, which start an unmodified program
// for each connection (exec), forward each connection to a local service with a PROXY protocol
// header (backend), forward each HTTP request to a local HTTP service with identity headers
// (http-backend), or start the user's own instance of an unmodified server and relay each
// connection to it (instance). Each
// runs as a netauthd worker, receiving its connections through netauth.Listen like any other
// service.
package builtin

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"strings"

	"ubns.dev/netauth"
	"ubns.dev/netauth/internal/logging"
)

// Names lists the built-in services.
func Names() []string {
	return []string{"backend", "echo", "exec", "http-backend", "instance", "whoami"}
}

// Usage describes the arguments of each built-in service.
const Usage = `built-in services:
  whoami                      answer each line with who the client is and which process serves it
  echo                        send back everything received
  exec -- PROGRAM [ARG...]    run PROGRAM (an absolute path) for each connection, the stream on
                              its standard input and output
  backend tcp:HOST:PORT|unix:/PATH
                              forward each connection to a local service, after a PROXY
                              protocol version 2 header carrying the client's identity
  http-backend tcp:HOST:PORT|unix:/PATH [HEADER...]
                              serve each connection as HTTP/1.1, forwarding each request to a
                              local HTTP service with the client's identity headers (HEADER,
                              default Remote-User X-Forwarded-User, set to the user's name)
  instance -listen socket-activation|unix|tcp [-start-timeout D] [-host-netns INODE] -- PROGRAM [ARG...]
                              run the user's own instance of PROGRAM (an absolute path) and
                              relay each connection to it`

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

// NewLogger returns the logger of a built-in worker: slog JSON records on w (its standard
// error), one a line, at every level, without times. netauthd reads them from the worker's
// output and logs each at its level, with its own time, hiding those below its log level.
func NewLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug, ReplaceAttr: logging.DropTime}))
}

// Run serves the built-in service name, with its arguments args, as a netauthd worker and
// returns the exit status: 2 for a usage error (reported on stderr with Usage, as text for a
// person), 1 if the worker could not serve. Once it serves, it logs slog JSON records on
// stderr (NewLogger). The name SpareArg runs a spare worker (Spare), which becomes the
// worker of the built-in service netauthd assigns it.
func Run(name string, args []string, stderr io.Writer) int {
	// serve serves the connections netauthd hands over until it stops; handlers of one
	// connection at a time are served by ln.Serve.
	var serve func(ln *netauth.Listener) error
	byHandler := func(h func(*netauth.Conn), err error) (func(*netauth.Listener) error, error) {
		return func(ln *netauth.Listener) error { return ln.Serve(h) }, err
	}
	var err error
	switch name {
	case SpareArg:
		if len(args) > 0 {
			fmt.Fprintf(stderr, "a spare worker takes no arguments, got %q\n", args)
			return 2
		}
		return Spare(Runner(stderr), stderr)
	case "exec":
		serve, err = byHandler(execHandler(args, NewLogger(stderr)))
	case "backend":
		serve, err = byHandler(backendHandler(args, NewLogger(stderr)))
	case "http-backend":
		var hb *httpBackendWorker
		if hb, err = httpBackendHandler(args, NewLogger(stderr)); err == nil {
			serve = func(ln *netauth.Listener) error { return hb.serve(ln) }
		}
	case "instance":
		return runInstance(args, stderr)
	default:
		h := handler(name)
		switch {
		case h == nil:
			err = fmt.Errorf("unknown built-in service %q (have: %s)", name, strings.Join(Names(), ", "))
		case len(args) > 0:
			err = fmt.Errorf("the built-in service %q takes no arguments, got %q", name, args)
		}
		serve, _ = byHandler(h, nil)
	}
	if err != nil {
		fmt.Fprintf(stderr, "%v\n%s\n", err, Usage)
		return 2
	}
	if !netauth.IsWorker() {
		fmt.Fprintf(stderr, "the built-in service %q runs only as a netauthd worker\n", name)
		return 2
	}
	log := NewLogger(stderr)
	ln, err := netauth.Listen("", "", nil)
	if err != nil {
		log.Error("the worker cannot take connections", "service", name, "err", err)
		return 1
	}
	if err := serve(ln); err != nil {
		log.Error("the worker stopped serving", "service", name, "err", err)
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
