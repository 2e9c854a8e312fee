// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"errors"
	"io/fs"
	"os"
	"time"

	"ubns.dev/netauth/internal/keys"
)

// Defaults of the global directives.
const (
	DefaultHostKey           = "/var/lib/netauth/host_ed25519_key"
	DefaultAuditLog          = "/var/log/netauth/audit.log"
	DefaultAuthorizedKeysDir = "/etc/netauth/authorized_keys"
	DefaultTicketLifetime    = time.Hour
	DefaultMaxClockSkew      = 5 * time.Minute
	DefaultHandshakeTimeout  = 10 * time.Second
	DefaultRevocationCheck   = time.Second
	DefaultSpareWorkers      = 2
)

// MaxSpareWorkers bounds the spare-workers directive.
const MaxSpareWorkers = 64

// Defaults of the service directives.
const (
	DefaultMaxWorkers      = 256
	DefaultMaxConnsPerUser = 64
	DefaultIdleTimeout     = 5 * time.Minute
)

// ResumptionOff is the TicketLifetime of a configuration that turns
// resumption off ("ticket-lifetime off" or "ticket-lifetime 0"). Any
// negative TicketLifetime means the same.
const ResumptionOff time.Duration = -1

// BuiltinHostKey is the host key of the configuration Default
// returns, used when netauthd runs without a configuration file: the
// same file as a configuration without host-key uses, so that moving
// between the two keeps the key clients have pinned.
const BuiltinHostKey = DefaultHostKey

// LegacyHostKey is where a configuration without host-key kept its host
// key before the default became DefaultHostKey. HostKeyFile still uses it
// when it exists and DefaultHostKey does not.
const LegacyHostKey = "/etc/netauth/host_ed25519_key"

// Mode says how a service's connections are spread over worker processes.
type Mode int

const (
	// PerUser runs one worker per (user, service) and hands it each of the
	// user's connections; the worker exits after its idle timeout.
	PerUser Mode = iota
	// PerConnection runs a new worker, still as the user, for every
	// connection.
	PerConnection
	// Exec serves each connection with an unmodified program (Program and
	// Args) whose standard input and output are the decrypted stream. The
	// program is started by netauthd's own built-in worker, which runs as
	// the user like a PerUser worker, or one per connection when
	// ExecWorker is PerConnection.
	Exec
	// Backend forwards each connection to a local TCP or Unix service
	// (Backend), preceded by a PROXY protocol version 2 header that names
	// the client and carries the authenticated identity. One built-in
	// worker per service does the forwarding, as the service's run-as
	// account.
	Backend
	// HTTPBackend serves each connection as HTTP/1.1 with a reverse proxy
	// to a local HTTP service (Backend), in one built-in worker per
	// service as the service's run-as account like Backend. Instead of a
	// PROXY header it removes the identity headers the client sent and
	// sets its own on every request (IdentityHeaders).
	HTTPBackend
	// Instance runs, for each user, that user's own instance of an unmodified server
	// (Program and Args), started as the user on their first connection and kept while they
	// have connections (up to IdleTimeout after the last), and relays each of the user's
	// connections to it. How the program listens is InstanceListen.
	Instance
)

// String returns the mode as it is written in the configuration file.
func (m Mode) String() string {
	switch m {
	case PerUser:
		return "per-user"
	case PerConnection:
		return "per-connection"
	case Exec:
		return "exec"
	case Backend:
		return "backend"
	case HTTPBackend:
		return "http-backend"
	case Instance:
		return "instance"
	}
	return "mode(" + itoa(int(m)) + ")"
}

// Config is a parsed netauthd configuration.
type Config struct {
	// Path is the file the configuration was read from; empty for Default.
	Path string
	// HostKey is the server's Ed25519 host key file.
	HostKey string
	// AuditLog is the file audit records are appended to.
	AuditLog string
	// AuthorizedKeysDir holds one admin-owned authorized_keys file per
	// user; empty when turned off ("authorized-keys-dir none").
	AuthorizedKeysDir string
	// HomeAuthorizedKeys says whether each user's ~/.ssh/authorized_keys
	// is also read.
	HomeAuthorizedKeys bool
	// KeyCommand is the program and arguments that print a user's keys,
	// with "%u" standing for the user name; nil if not set.
	KeyCommand []string
	// TicketLifetime is how long resumption tickets are valid; negative
	// (ResumptionOff) when resumption is turned off.
	TicketLifetime time.Duration
	// MaxClockSkew bounds the difference between a client's clock and the
	// server's.
	MaxClockSkew time.Duration
	// HandshakeTimeout bounds a whole handshake.
	HandshakeTimeout time.Duration
	// RevocationCheck is how often live sessions are re-checked against
	// keys and policy.
	RevocationCheck time.Duration
	// SpareWorkers is how many spare built-in workers netauthd keeps
	// started ahead of need, to become the next workers of services that
	// run a built-in worker; 0 turns spares off.
	SpareWorkers int
	// MetricsListen is where Prometheus metrics are served: an absolute Unix socket path or
	// a loopback HOST:PORT; empty (the default) serves none.
	MetricsListen string
	// TrustedUserCAKeys is a file of user CA keys (sshd's TrustedUserCAKeys), one per line
	// in authorized_keys format: a user certificate one of them signed may authenticate as a
	// user its principals allow. Empty (the default): certificates are refused.
	TrustedUserCAKeys string
	// AuthorizedPrincipalsDir holds one principals file per user, named after the user
	// (sshd's AuthorizedPrincipalsFile /DIR/%u): a certificate must carry one of the
	// principals the user's file lists. Empty: the certificate must carry the user's name
	// (unless AuthorizedPrincipalsCommand is set).
	AuthorizedPrincipalsDir string
	// AuthorizedPrincipalsCommand is the program and arguments that print a user's
	// principals (sshd's AuthorizedPrincipalsCommand), with "%u" standing for the user
	// name; nil if not set. Not with AuthorizedPrincipalsDir.
	AuthorizedPrincipalsCommand []string
	// RevokedKeys is a file of revoked keys and certificates (sshd's RevokedKeys): an
	// OpenSSH KRL (ssh-keygen -k) or a list of public keys. Empty: none.
	RevokedKeys string
	// HostCertificate is an OpenSSH host certificate of the host key (ssh-keygen -s CA -h),
	// presented to clients instead of the bare key. Empty: none.
	HostCertificate string
	// Services are the services, in file order.
	Services []*Service

	// lines maps each global directive to the line it was given on.
	lines map[string]int
}

// Service is one service block of the configuration.
type Service struct {
	// Name is the service's name, valid by keys.ValidName.
	Name string
	// Line is the line of the service's "service" directive.
	Line int
	// Listen are the host:port addresses the service accepts connections
	// on; at least one.
	Listen []string
	// Mode says how connections are spread over workers.
	Mode Mode
	// Program is the absolute path of the worker program; in Exec mode,
	// of the program run for each connection. Backend mode has none.
	Program string
	// Args are the program's arguments (without the program name).
	Args []string
	// ExecWorker says how the connections of an Exec service are spread
	// over the built-in workers that start the program: PerUser (the
	// default) or PerConnection. Other modes leave it PerUser.
	ExecWorker Mode
	// Backend is the local service a Backend or HTTPBackend service
	// forwards to, "tcp:HOST:PORT" or "unix:/absolute/path" (see
	// ParseBackend); empty in the other modes.
	Backend string
	// IdentityHeaders are the request headers an HTTPBackend service sets
	// to the user's name ("identity-headers"); empty means
	// DefaultIdentityHeaders (see UserHeaders).
	IdentityHeaders []string
	// InstanceListen says how an Instance service's program listens: InstanceSocketActivation,
	// InstanceUnix or InstanceTCP; empty in the other modes.
	InstanceListen string
	// InstanceStartTimeout bounds how long an Instance service's program has, once started,
	// to accept connections; 0 means DefaultInstanceStartTimeout (see StartTimeout).
	InstanceStartTimeout time.Duration
	// Users are the user names allowed to use the service; "*" allows
	// every user with a key.
	Users []string
	// Groups are the group names whose members may use the service.
	Groups []string
	// RunAsUser is true when workers run as the authenticated user
	// ("run-as user", the default).
	RunAsUser bool
	// Account is the account workers run as when RunAsUser is false
	// ("run-as account NAME").
	Account string
	// MaxWorkers bounds the service's live workers.
	MaxWorkers int
	// MaxConnsPerUser bounds each user's live connections to the service.
	MaxConnsPerUser int
	// IdleTimeout is how long a worker with no connection lives on (a
	// per-user worker, an Exec service's per-user worker, a Backend
	// service's worker, or an Instance service's worker and its program);
	// per-connection workers ignore it.
	IdleTimeout time.Duration

	// lines maps each directive to the first line it was given on.
	lines map[string]int
	// listenLines, userLines and groupLines give the line of each entry
	// of Listen, Users and Groups.
	listenLines, userLines, groupLines []int
}

// StartTimeout returns how long an Instance service's program has, once started, to accept
// connections: InstanceStartTimeout, or DefaultInstanceStartTimeout when that is 0.
func (s *Service) StartTimeout() time.Duration {
	if s.InstanceStartTimeout == 0 {
		return DefaultInstanceStartTimeout
	}
	return s.InstanceStartTimeout
}

// WorkerPerConnection reports whether every connection to the service gets
// a worker of its own: mode per-connection, or mode exec with
// "exec-worker per-connection".
func (s *Service) WorkerPerConnection() bool {
	return s.Mode == PerConnection || (s.Mode == Exec && s.ExecWorker == PerConnection)
}

// WorkerShared reports whether one worker serves the connections of every
// user of the service (mode backend or http-backend, whose worker runs as
// the service's account), rather than one worker per user or per
// connection.
func (s *Service) WorkerShared() bool { return s.Mode == Backend || s.Mode == HTTPBackend }

// Lookup returns the service called name, or nil if there is none.
func (c *Config) Lookup(name string) *Service {
	for _, s := range c.Services {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// Allowed reports whether user, a member of groups, may use the service:
// the user is listed by name, "*" is listed, or one of groups is listed. A
// service with neither users nor groups allows nobody, and an invalid user
// name is never allowed.
func (s *Service) Allowed(user string, groups []string) bool {
	if keys.ValidName(user) != nil {
		return false
	}
	for _, u := range s.Users {
		if u == "*" || u == user {
			return true
		}
	}
	for _, g := range s.Groups {
		for _, h := range groups {
			if g == h {
				return true
			}
		}
	}
	return false
}

// Default returns the configuration netauthd uses when it runs without a
// configuration file: host key BuiltinHostKey, the default audit
// log, keys from DefaultAuthorizedKeysDir and each user's
// ~/.ssh/authorized_keys, and one service "whoami" on 127.0.0.1:4000,
// per-user, running whoamiProgram as the user, open to every user with a
// key.
func Default(whoamiProgram string) *Config {
	c := newConfig("")
	c.HostKey = BuiltinHostKey
	c.HomeAuthorizedKeys = true
	s := newService("whoami", 0)
	s.Listen = []string{"127.0.0.1:4000"}
	s.Program = whoamiProgram
	s.Users = []string{"*"}
	c.Services = []*Service{s}
	return c
}

// HostKeyFile returns the host key file netauthd uses: c.HostKey, except
// when the configuration does not name one (host-key absent, or the
// configuration Default returns), DefaultHostKey does not exist and
// LegacyHostKey does. Then it returns LegacyHostKey and legacy true, so
// that a server set up before the default moved keeps its key; the caller
// should log a notice asking for the file to be moved or named.
func (c *Config) HostKeyFile() (path string, legacy bool) {
	return c.hostKeyFile(DefaultHostKey, LegacyHostKey)
}

func (c *Config) hostKeyFile(def, old string) (string, bool) {
	if c.line("host-key") != 0 || c.HostKey != def {
		return c.HostKey, false
	}
	if _, err := os.Lstat(def); !errors.Is(err, fs.ErrNotExist) {
		return c.HostKey, false
	}
	if _, err := os.Lstat(old); err != nil {
		return c.HostKey, false
	}
	return old, true
}

// newConfig returns a configuration with every global default set.
func newConfig(path string) *Config {
	return &Config{
		Path:              path,
		HostKey:           DefaultHostKey,
		AuditLog:          DefaultAuditLog,
		AuthorizedKeysDir: DefaultAuthorizedKeysDir,
		TicketLifetime:    DefaultTicketLifetime,
		MaxClockSkew:      DefaultMaxClockSkew,
		HandshakeTimeout:  DefaultHandshakeTimeout,
		RevocationCheck:   DefaultRevocationCheck,
		SpareWorkers:      DefaultSpareWorkers,
		lines:             map[string]int{},
	}
}

// newService returns a service with every default set.
func newService(name string, line int) *Service {
	return &Service{
		Name:            name,
		Line:            line,
		Mode:            PerUser,
		RunAsUser:       true,
		MaxWorkers:      DefaultMaxWorkers,
		MaxConnsPerUser: DefaultMaxConnsPerUser,
		IdleTimeout:     DefaultIdleTimeout,
		lines:           map[string]int{},
	}
}

// line returns the line global directive name was given on, or 0.
func (c *Config) line(name string) int {
	return c.lines[name]
}

// line returns the line directive name was given on in the service, or the
// service's own line.
func (s *Service) line(name string) int {
	if l, ok := s.lines[name]; ok {
		return l
	}
	return s.Line
}

// entryLine returns lines[i], or the service's line if lines has no entry
// i (as for a Service not made by Parse).
func (s *Service) entryLine(lines []int, i int) int {
	if i < len(lines) {
		return lines[i]
	}
	return s.Line
}
