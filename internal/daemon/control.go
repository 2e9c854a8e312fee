// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"ubns.dev/netauth/internal/policy"
	"ubns.dev/netauth/internal/unixsock"
)

// DefaultControlSocket is the control socket of a netauthd running as root ("netauthd
// -status" asks it).
const DefaultControlSocket = "/run/netauthd/control"

// Control requests: the fixed set a control socket answers, one per connection, each a line.
const (
	// RequestStatus asks for a Status.
	RequestStatus = "status"
)

// maxControlRequest bounds a control request line, newline included.
const maxControlRequest = 64

// controlTimeout bounds a control connection.
const controlTimeout = 5 * time.Second

// counts are the daemon's counters since it started.
type counts struct {
	accepted atomic.Uint64 // connections accepted (audited as accepted)
	refused  atomic.Uint64 // handshakes refused (audited as refused, each or summed)
}

// Status is what the control socket answers to RequestStatus.
type Status struct {
	Pid      int           `json:"pid"`
	Started  time.Time     `json:"started"`
	HostKey  string        `json:"host_key"` // its SHA256 fingerprint
	Config   string        `json:"config"`   // the file, or "" for the embedded default
	Services []ServiceInfo `json:"services"`
	Workers  []WorkerInfo  `json:"workers"`
	// Accepted and Refused count the connections accepted and the handshakes refused since
	// the daemon started.
	Accepted uint64 `json:"accepted"`
	Refused  uint64 `json:"refused"`
}

// ServiceInfo describes one service of the running configuration.
type ServiceInfo struct {
	Name   string   `json:"name"`
	Listen []string `json:"listen"` // the addresses it is bound to
	Mode   string   `json:"mode"`
}

// Status returns the daemon's services, workers and counters.
func (d *Daemon) Status() *Status {
	st := &Status{Pid: os.Getpid(), Started: d.since, HostKey: d.hostFP, Accepted: d.counts.accepted.Load(), Refused: d.counts.refused.Load()}
	cfg := d.Config()
	st.Config = cfg.Path
	for _, sc := range cfg.Services {
		si := ServiceInfo{Name: sc.Name, Mode: sc.Mode.String(), Listen: []string{}}
		if sc.Mode == policy.Exec {
			si.Mode += " (" + sc.ExecWorker.String() + ")"
		}
		for _, a := range d.Addrs(sc.Name) {
			si.Listen = append(si.Listen, a.String())
		}
		st.Services = append(st.Services, si)
	}
	st.Workers = d.Workers()
	if st.Workers == nil {
		st.Workers = []WorkerInfo{}
	}
	return st
}

// ControlServer is a listening control socket (ListenControl).
type ControlServer struct {
	d    *Daemon
	ln   *net.UnixListener
	path string
	// allowed reports whether a peer with this uid may ask (a variable for tests).
	allowed func(uid uint32) bool
	wg      sync.WaitGroup
	once    sync.Once
}

// ListenControl creates the control socket at path, mode 0600, and answers it until Close.
// Its directory, created with mode 0700 if missing, must be owned by this process's user; one
// that was there is left with its mode, and refused if others may write to it. Only peers
// with this process's uid (root, for netauthd as root) are answered, as the kernel recorded
// them (SO_PEERCRED). A socket left at path by an earlier run is replaced; one that a
// process still listens on, or anything else at path, is an error (see unixsock.Listen).
func (d *Daemon) ListenControl(path string) (*ControlServer, error) {
	ln, err := unixsock.Listen(path)
	if err != nil {
		return nil, fmt.Errorf("netauthd: control socket: %w", err)
	}
	euid := uint32(os.Geteuid())
	s := &ControlServer{d: d, ln: ln, path: path, allowed: func(uid uint32) bool { return uid == euid }}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

// Close stops answering and removes the socket.
func (s *ControlServer) Close() error {
	var err error
	s.once.Do(func() {
		err = s.ln.Close()
		s.wg.Wait()
	})
	return err
}

func (s *ControlServer) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.d.log.Warn("control socket", "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			s.answer(c)
		}()
	}
}

// errNotPermitted is the answer to a peer that may not ask.
const errNotPermitted = "not permitted"

// controlReply is one answer: the status, or an error.
type controlReply struct {
	Error  string  `json:"error,omitempty"`
	Status *Status `json:"status,omitempty"`
}

// answer reads one request from c and answers it.
func (s *ControlServer) answer(c *net.UnixConn) {
	c.SetDeadline(time.Now().Add(controlTimeout))
	enc := json.NewEncoder(c)
	// The request is read (bounded) before any answer, so that the peer reads the answer
	// rather than a reset connection, but used only once the peer is known.
	line, readErr := bufio.NewReaderSize(io.LimitReader(c, maxControlRequest), maxControlRequest).ReadString('\n')
	uid, err := peerUID(c)
	if err != nil || !s.allowed(uid) {
		s.d.log.Warn("control socket: peer refused", "uid", uid, "err", err)
		enc.Encode(controlReply{Error: errNotPermitted})
		return
	}
	if readErr != nil {
		enc.Encode(controlReply{Error: "want one request line, such as \"status\""})
		return
	}
	switch strings.TrimSuffix(line, "\n") {
	case RequestStatus:
		enc.Encode(controlReply{Status: s.d.Status()})
	default:
		enc.Encode(controlReply{Error: "unknown request: want \"status\""})
	}
}

// peerUID returns the uid of c's peer as the kernel recorded it when it connected.
func peerUID(c *net.UnixConn) (uint32, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if credErr != nil {
		return 0, credErr
	}
	return cred.Uid, nil
}

// ControlPath returns the control socket's path for the -control flag's value: the value, the
// default for this process's user (DefaultControlSocket as root, $XDG_RUNTIME_DIR/netauthd/control
// otherwise), or "" for none ("none", or not root and no XDG_RUNTIME_DIR).
func ControlPath(flag string) string {
	switch {
	case flag == "none":
		return ""
	case flag != "":
		return flag
	case os.Geteuid() == 0:
		return DefaultControlSocket
	case os.Getenv("XDG_RUNTIME_DIR") != "":
		return filepath.Join(os.Getenv("XDG_RUNTIME_DIR"), "netauthd", "control")
	}
	return ""
}

// Errors of QueryStatus that a person can act on; errors.Is finds them in what it returns.
var (
	// ErrNotRunning: no socket at the path, or nothing listening on it.
	ErrNotRunning = errors.New("netauthd is not running")
	// ErrPermission: the socket (or its directory) is closed to this user, or netauthd
	// refused to answer this user.
	ErrPermission = errors.New("permission denied: run as root")
)

// QueryStatus asks the netauthd listening on the control socket at path for its status.
func QueryStatus(ctx context.Context, path string) (*Status, error) {
	var dl net.Dialer
	c, err := dl.DialContext(ctx, "unix", path)
	switch {
	case errors.Is(err, syscall.ENOENT):
		return nil, fmt.Errorf("%w (no control socket at %s)", ErrNotRunning, path)
	case errors.Is(err, syscall.ECONNREFUSED):
		return nil, fmt.Errorf("%w (nothing listens on the control socket %s)", ErrNotRunning, path)
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return nil, fmt.Errorf("%w (the control socket %s is not open to uid %d)", ErrPermission, path, os.Geteuid())
	case err != nil:
		return nil, fmt.Errorf("connecting to netauthd's control socket: %w", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(controlTimeout))
	if _, err := io.WriteString(c, RequestStatus+"\n"); err != nil {
		return nil, fmt.Errorf("asking netauthd for its status: %w", err)
	}
	var r controlReply
	if err := json.NewDecoder(io.LimitReader(c, 16<<20)).Decode(&r); err != nil {
		return nil, fmt.Errorf("reading netauthd's status: %w", err)
	}
	if r.Error == errNotPermitted {
		return nil, fmt.Errorf("%w (netauthd answers only its own uid, not uid %d)", ErrPermission, os.Geteuid())
	}
	if r.Error != "" {
		return nil, fmt.Errorf("netauthd refused the request: %s", r.Error)
	}
	if r.Status == nil {
		return nil, errors.New("netauthd answered no status")
	}
	return r.Status, nil
}

// PrintStatus asks the netauthd listening on the control socket at path for its status and
// prints it to w, as netauthd -status and netauth status do.
func PrintStatus(ctx context.Context, w io.Writer, path string) error {
	st, err := QueryStatus(ctx, path)
	if err != nil {
		return err
	}
	return st.Write(w, time.Now())
}

// Write prints the status for a person, with uptimes as of now.
func (st *Status) Write(w io.Writer, now time.Time) error {
	b := &strings.Builder{}
	cfg := st.Config
	if cfg == "" {
		cfg = "embedded default"
	}
	fmt.Fprintf(b, "netauthd pid %d, up %s, configuration %s\nhost key %s\n", st.Pid, uptime(now, st.Started), cfg, st.HostKey)
	fmt.Fprintf(b, "connections accepted %d, refused %d\n", st.Accepted, st.Refused)
	fmt.Fprintf(b, "\nservices:\n")
	fmt.Fprintf(b, "  %-20s %-28s %s\n", "NAME", "MODE", "LISTEN")
	for _, s := range st.Services {
		fmt.Fprintf(b, "  %-20s %-28s %s\n", s.Name, s.Mode, strings.Join(s.Listen, " "))
	}
	fmt.Fprintf(b, "\nworkers:\n")
	fmt.Fprintf(b, "  %-20s %-20s %8s %10s %s\n", "SERVICE", "USER", "PID", "UPTIME", "CONNECTIONS")
	for _, wi := range st.Workers {
		u := wi.User
		if u == "" {
			u = "-"
		}
		fmt.Fprintf(b, "  %-20s %-20s %8d %10s %d\n", wi.Service, u, wi.Pid, uptime(now, wi.Started), wi.Connections)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// uptime formats the time from since to now in whole seconds.
func uptime(now, since time.Time) string {
	if since.IsZero() {
		return "-"
	}
	return now.Sub(since).Truncate(time.Second).String()
}
