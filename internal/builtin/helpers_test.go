// SPDX-License-Identifier: Apache-2.0

package builtin

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
	"ubns.dev/netauth/internal/testutil"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth"
)

// programArg marks the test binary started as the program of an exec worker.
const programArg = "builtin-test-program"

// TestMain lets the test binary double as the program an exec worker runs.
func TestMain(m *testing.M) {
	if len(os.Args) == 3 && os.Args[1] == programArg {
		os.Exit(testProgram(os.Args[2]))
	}
	os.Exit(m.Run())
}

// records returns the worker's log records, each line of its standard error parsed as a JSON
// object (failing the test on a line that is not one).
func (s *server) records(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(s.stderr.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("the worker logged a line that is not a JSON record: %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// hasRecord reports whether the worker logged a record at level with message msg and the
// attributes attrs (values compared as fmt prints them).
func (s *server) hasRecord(t *testing.T, level, msg string, attrs map[string]any) bool {
	t.Helper()
next:
	for _, r := range s.records(t) {
		if r["level"] != level || r["msg"] != msg {
			continue
		}
		for k, v := range attrs {
			if fmt.Sprint(r[k]) != fmt.Sprint(v) {
				continue next
			}
		}
		return true
	}
	return false
}

// programReport is what the test program prints.
type programReport struct {
	Stdin string            `json:"stdin"`
	Env   map[string]string `json:"env"`
	FDs   []string          `json:"fds"`
	PID   int               `json:"pid"`
}

// testProgram is the exec test program. "report" reads its standard input to the end, writes
// a line to standard error and prints a programReport; "wait" prints its pid and then waits
// for a signal, ignoring the end of its input; "exit" exits with status 3 at once.
func testProgram(mode string) int {
	switch mode {
	case "report":
		in, _ := io.ReadAll(os.Stdin)
		fmt.Fprintln(os.Stderr, "read", len(in), "bytes")
		rep := programReport{Stdin: string(in), Env: map[string]string{}, PID: os.Getpid()}
		for _, kv := range os.Environ() {
			k, v, _ := strings.Cut(kv, "=")
			rep.Env[k] = v
		}
		entries, _ := os.ReadDir("/proc/self/fd")
		for _, e := range entries {
			target, _ := os.Readlink("/proc/self/fd/" + e.Name())
			rep.FDs = append(rep.FDs, e.Name()+"="+target)
		}
		_ = json.NewEncoder(os.Stdout).Encode(rep)
		return 0
	case "wait":
		fmt.Println(os.Getpid())
		_, _ = io.Copy(io.Discard, os.Stdin)
		time.Sleep(time.Hour)
		return 0
	case "exit":
		return 3
	case "forge":
		// Lines that look like the worker's own records, and a line longer than a record's
		// "line" holds.
		fmt.Fprintln(os.Stderr, `{"level":"ERROR","msg":"forged","user":"root"}`)
		fmt.Fprintln(os.Stderr, strings.Repeat("z", 3*maxLogLine))
		return 0
	}
	return 2
}

// server is an in-process netauth server running one built-in handler, with a client
// configuration that trusts it.
type server struct {
	addr   string
	client *netauth.Config
	stderr *testutil.Buffer
}

// newServer serves handler (made by make from the given stderr) for user "alice".
func newServer(t *testing.T, handler func(*netauth.Conn)) *server {
	t.Helper()
	return newListenerServer(t, func(ln *netauth.Listener) error { return ln.Serve(handler) })
}

// newListenerServer runs serve on a listener of user "alice"'s connections.
func newListenerServer(t *testing.T, serve func(*netauth.Listener) error) *server {
	t.Helper()
	_, hostKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, userKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(userKey)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := netauth.Listen("tcp", "127.0.0.1:0", &netauth.ServerConfig{
		HostKey: hostKey,
		Service: "svc",
		Keys:    netauth.StaticKeys{"alice": {signer.PublicKey()}},
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = serve(ln)
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	s := &server{addr: ln.Addr().String()}
	known := filepath.Join(t.TempDir(), "known_hosts")
	hostPub, _ := ssh.NewPublicKey(hostKey.Public())
	if err := netauth.Trust(known, s.addr, hostPub); err != nil {
		t.Fatal(err)
	}
	s.client = &netauth.Config{User: "alice", Signer: signer, KnownHostsFile: known, TicketCache: netauth.NewMemoryTicketCache(4)}
	return s
}

func (s *server) dial(t *testing.T) *netauth.Conn {
	t.Helper()
	c, err := netauth.Dial("tcp", s.addr, s.client)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitFor polls cond until it holds or limit passes.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", limit, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func sortedKeys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
