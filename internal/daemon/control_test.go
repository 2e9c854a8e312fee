// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"ubns.dev/netauth"
	"ubns.dev/netauth/internal/policy"
)

// TestControlStatus: the control socket, private to root, lists the service, the worker the
// daemon started for alice (her user, its pid, her live connection) and the counters.
func TestControlStatus(t *testing.T) {
	tb := newTestbed(t, echoService)
	sock := filepath.Join(t.TempDir(), "run", "control")
	cs, err := tb.d.ListenControl(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	for path, want := range map[string]os.FileMode{filepath.Dir(sock): 0o700, sock: 0o600} {
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != want {
			t.Fatalf("%s: mode %v, %v; want %v", path, fi.Mode().Perm(), err, want)
		}
	}
	tb.echoSession(t, "echo", "netauth-alice")
	if c, err := netauth.Dial("tcp", tb.addr("echo"), tb.config("netauth-carol")); err == nil {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte("x\n"))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatal("carol was let in")
		}
		c.Close()
	}
	pid := tb.liveWorkerPid("echo", "netauth-alice")
	st, err := QueryStatus(context.Background(), sock)
	if err != nil {
		t.Fatal(err)
	}
	if st.Pid != os.Getpid() || len(st.Services) != 1 || st.Services[0].Name != "echo" || st.Services[0].Mode != "per-user" ||
		len(st.Services[0].Listen) != 1 || st.Services[0].Listen[0] != tb.addr("echo") {
		t.Fatalf("status: %+v", st)
	}
	if len(st.Workers) != 1 {
		t.Fatalf("workers: %+v", st.Workers)
	}
	w := st.Workers[0]
	if w.Pid != pid || pid == 0 || w.User != "netauth-alice" || w.Service != "echo" || w.Connections != 1 ||
		time.Since(w.Started) < 0 || time.Since(w.Started) > time.Minute {
		t.Fatalf("worker %+v, want pid %d of netauth-alice with 1 connection", w, pid)
	}
	if st.Accepted != 1 {
		t.Errorf("accepted %d, want 1", st.Accepted)
	}
	// The refusal is counted once its audit record is written, after the client saw it.
	for deadline := time.Now().Add(5 * time.Second); st.Refused != 1 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		if st, err = QueryStatus(context.Background(), sock); err != nil {
			t.Fatal(err)
		}
	}
	if st.Refused != 1 {
		t.Errorf("refused %d, want 1", st.Refused)
	}
	var out bytes.Buffer
	st.Write(&out, time.Now())
	for _, want := range []string{"accepted 1, refused 1", "echo ", "per-user", tb.addr("echo"), "netauth-alice", strconv.Itoa(pid)} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("printed status lacks %q:\n%s", want, out.String())
		}
	}
	// A fixed set of requests, each one bounded line.
	for req, want := range map[string]string{
		"workers\n":                    "unknown request",
		strings.Repeat("s", 100):       "want one request line",
		"status":                       "want one request line", // no newline before EOF
		RequestStatus + "\n":           "",
		RequestStatus + " extra\n":     "unknown request",
		strings.Repeat("x", 70) + "\n": "want one request line",
	} {
		if got := rawControl(t, sock, req); !strings.Contains(got, want) || (want == "" && !strings.Contains(got, `"status"`)) {
			t.Errorf("request %.20q: answer %q, want %q", req, got, want)
		}
	}
	cs.Close()
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("socket left after Close: %v", err)
	}
}

// rawControl sends req on the control socket and returns the answer.
func rawControl(t *testing.T, sock, req string) string {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte(req))
	c.(*net.UnixConn).CloseWrite()
	var b bytes.Buffer
	b.ReadFrom(c)
	return b.String()
}

// TestControlRefusesOthers: a peer that is not root gets no status, even when the socket's
// permissions would let it connect (SO_PEERCRED, not only the file's mode, decides).
func TestControlRefusesOthers(t *testing.T) {
	tb := newTestbed(t, echoService)
	tb.echoSession(t, "echo", "netauth-alice")
	dir, err := os.MkdirTemp("", "netauthd-control-") // not t.TempDir, whose parent is private
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "run", "control")
	cs, err := tb.d.ListenControl(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	// Open the way, as a mistaken chmod would.
	for _, p := range []string{dir, filepath.Dir(sock), sock} {
		os.Chmod(p, 0o777)
	}
	// The system's python3 (one in root's home would not be reachable by bob).
	py := "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		t.Fatal("python3 is needed (CI installs it)")
	}
	bob, err := policy.LookupAccount("netauth-bob")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, "-c", `import socket,sys
s=socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"status\n")
s.shutdown(socket.SHUT_WR)
d=b""
while True:
    c=s.recv(4096)
    if not c: break
    d+=c
sys.stdout.write(d.decode())`, sock)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: bob.UID, Gid: bob.GID}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python as netauth-bob: %v: %s", err, out)
	}
	var r controlReply
	if err := json.Unmarshal(out, &r); err != nil || r.Status != nil || r.Error != "not permitted" {
		t.Fatalf("netauth-bob got %q", out)
	}
	// Root still gets its answer.
	if _, err := QueryStatus(context.Background(), sock); err != nil {
		t.Fatal(err)
	}
}

// TestControlExistingDirectory: a control socket put in a directory that was already there
// (such as -control /run/control or /tmp/control) leaves the directory's mode alone, since
// narrowing it to 0700 would lock every other user out of it, and is refused in a directory
// others may write to, where they could swap the socket.
func TestControlExistingDirectory(t *testing.T) {
	tb := newTestbed(t, echoService)
	shared := filepath.Join(t.TempDir(), "shared")
	if err := os.Mkdir(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	cs, err := tb.d.ListenControl(filepath.Join(shared, "control"))
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	if fi, err := os.Stat(shared); err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("%s: %v, %v; want its mode left at 0755", shared, fi.Mode().Perm(), err)
	}
	if _, err := QueryStatus(context.Background(), filepath.Join(shared, "control")); err != nil {
		t.Fatal(err)
	}

	open := filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(open, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, os.ModeSticky|0o777); err != nil {
		t.Fatal(err)
	}
	if cs, err := tb.d.ListenControl(filepath.Join(open, "control")); err == nil {
		cs.Close()
		t.Fatal("a control socket in a directory anyone may write to was accepted")
	}
	if fi, err := os.Stat(open); err != nil || fi.Mode()&(os.ModePerm|os.ModeSticky) != 0o777|os.ModeSticky {
		t.Fatalf("%s: %v, %v; want its mode left at 1777", open, fi.Mode(), err)
	}
}

// TestControlPath: -control's value, "none" for no socket, and root's default.
func TestControlPath(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "control")
	if p := ControlPath("none"); p != "" {
		t.Errorf("-control none: %q", p)
	}
	if p := ControlPath(sock); p != sock {
		t.Errorf("-control %s: %q", sock, p)
	}
	if os.Geteuid() == 0 && ControlPath("") != "/run/netauthd/control" {
		t.Errorf("root's default: %q", ControlPath(""))
	}
}

// TestQueryStatusErrors: what QueryStatus says when there is no netauthd to ask, and when
// nothing listens on a socket left behind.
func TestQueryStatusErrors(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "control")
	_, err := QueryStatus(context.Background(), sock)
	if !errors.Is(err, ErrNotRunning) || err.Error() != "netauthd is not running (no control socket at "+sock+")" {
		t.Errorf("no socket: %v", err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if _, err := QueryStatus(context.Background(), sock); !errors.Is(err, ErrNotRunning) || !strings.Contains(err.Error(), sock) {
		t.Errorf("a stale socket: %v", err)
	}
}
