// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"fmt"
	"path/filepath"
	"time"

	"ubns.dev/netauth/internal/keys"
)

// validator holds the state of one validate.
type validator struct {
	errs *collector
	// warn, if not nil, receives warnings: directives a mode ignores.
	warn func(line int, msg string)
}

// validate reports every value rule c breaks, whoever made c: Parse runs it
// on what it read (after the syntax errors, so that one run reports both),
// Check on any Config (Default's, or one built by hand). An error names the
// line the value was given on, from the bookkeeping Parse keeps; a Config
// built by hand has none and gets the same message with no line. warn, if
// not nil, receives the warnings of the mode table.
//
// The rules: absolute paths; duration and number ranges; names of
// services, users, groups and accounts; listen, backend and metrics-listen
// addresses; no service name or listen address twice; and what each mode
// requires, takes and refuses (modeTable).
func (c *Config) validate(errs *collector, warn func(line int, msg string)) {
	v := &validator{errs: errs, warn: warn}
	v.globals(c)
	first := map[string]*Service{}
	for _, s := range c.Services {
		v.service(s, first)
	}
}

// errorf records an error at line.
func (v *validator) errorf(line int, format string, args ...any) {
	v.errs.add(line, fmt.Sprintf(format, args...))
}

// path reports v at line if it is not an absolute path; what names it.
func (v *validator) path(line int, what, p string) {
	if !filepath.IsAbs(p) {
		v.errorf(line, "%s %s is not an absolute path: write it starting with \"/\"", what, q(p))
	}
}

// duration reports d, of directive name at line, if it is not within
// [min, max] (max 0: no maximum).
func (v *validator) duration(line int, name string, d, min, max time.Duration) {
	if msg := durationProblem(name, formatDuration(d), d, min, max); msg != "" {
		v.errs.add(line, msg)
	}
}

// globalPaths are the global directives whose value is an absolute path;
// optional ones may be empty (written "none"). A new path directive is one
// entry here.
var globalPaths = []struct {
	name     string
	get      func(c *Config) string
	optional bool
}{
	{"host-key", func(c *Config) string { return c.HostKey }, false},
	{"audit-log", func(c *Config) string { return c.AuditLog }, false},
	{"authorized-keys-dir", func(c *Config) string { return c.AuthorizedKeysDir }, true},
	{"trusted-user-ca-keys", func(c *Config) string { return c.TrustedUserCAKeys }, true},
	{"authorized-principals-dir", func(c *Config) string { return c.AuthorizedPrincipalsDir }, true},
	{"revoked-keys", func(c *Config) string { return c.RevokedKeys }, true},
	{"host-certificate", func(c *Config) string { return c.HostCertificate }, true},
}

// globalDurations are the global duration directives and their bounds (max
// 0: none). A negative value of one with off set means "off" and is not
// checked.
var globalDurations = []struct {
	name     string
	get      func(c *Config) time.Duration
	min, max time.Duration
	off      bool
}{
	{"ticket-lifetime", func(c *Config) time.Duration { return c.TicketLifetime }, minTicketLifetime, maxTicketLifetime, true},
	{"max-clock-skew", func(c *Config) time.Duration { return c.MaxClockSkew }, minClockSkew, maxClockSkew, false},
	{"handshake-timeout", func(c *Config) time.Duration { return c.HandshakeTimeout }, minHandshakeTimeout, maxHandshakeTimeout, false},
	{"revocation-check", func(c *Config) time.Duration { return c.RevocationCheck }, minRevocationCheck, maxRevocationCheck, false},
}

// globals checks the global directives.
func (v *validator) globals(c *Config) {
	for _, g := range globalPaths {
		if p := g.get(c); p != "" || !g.optional {
			v.path(c.line(g.name), g.name, p)
		}
	}
	v.command(c, "key-command", c.KeyCommand)
	v.command(c, "authorized-principals-command", c.AuthorizedPrincipalsCommand)
	if c.AuthorizedPrincipalsDir != "" && c.AuthorizedPrincipalsCommand != nil {
		v.errorf(c.line("authorized-principals-command"), "authorized-principals-command and authorized-principals-dir are both set: a user's principals come from one of them; remove the other")
	}
	for _, g := range globalDurations {
		if d := g.get(c); d >= 0 || !g.off {
			v.duration(c.line(g.name), g.name, d, g.min, g.max)
		}
	}
	switch n := c.SpareWorkers; {
	case n < 0:
		v.errorf(c.line("spare-workers"), "spare-workers %d: want a whole number from 0 (no spare workers) to %d", n, MaxSpareWorkers)
	case n > MaxSpareWorkers:
		v.errorf(c.line("spare-workers"), "spare-workers %d is too large: the maximum is %d", n, MaxSpareWorkers)
	}
	if c.MetricsListen != "" {
		if msg := metricsListenProblem(c.MetricsListen); msg != "" {
			v.errs.add(c.line("metrics-listen"), msg)
		}
	}
}

// command checks a global program directive: nil (not set) or an absolute
// program followed by its arguments.
func (v *validator) command(c *Config, name string, cmd []string) {
	switch {
	case cmd == nil:
	case len(cmd) == 0:
		v.errorf(c.line(name), "%s is empty: give a program or leave it out", name)
	default:
		v.path(c.line(name), name+" program", cmd[0])
	}
}

// firstOn says where a duplicate was first given, or nothing for a Config
// without lines.
func firstOn(line int) string {
	if line <= 0 {
		return ""
	}
	return fmt.Sprintf(" (first on line %d)", line)
}

// service checks service s; first maps each service name seen so far to
// its service.
func (v *validator) service(s *Service, first map[string]*Service) {
	if keys.ValidName(s.Name) != nil {
		v.errorf(s.Line, "service name %s is not valid: %s", q(s.Name), nameRule)
	} else if f, dup := first[s.Name]; dup {
		v.errorf(s.Line, "service %s is defined twice%s: rename or remove one", q(s.Name), firstOn(f.Line))
	} else {
		first[s.Name] = s
	}
	v.listen(s)
	r := ruleOf(s.Mode)
	if r == nil {
		v.errorf(s.line("mode"), "service %s: unknown %s: want %s", q(s.Name), s.Mode, modeNames())
	} else {
		v.checkMode(s, r)
	}
	takes := func(name string) bool { return r == nil || r.takes(name) }
	if s.Program != "" && takes("program") {
		v.path(s.line("program"), "program", s.Program)
	}
	if s.Backend != "" && takes("backend") {
		if msg := backendProblem(s.Backend); msg != "" {
			v.errs.add(s.line("backend"), msg)
		}
	}
	if len(s.IdentityHeaders) > 0 && takes("identity-headers") {
		for _, msg := range IdentityHeadersProblems(s.IdentityHeaders) {
			v.errs.add(s.line("identity-headers"), msg)
		}
	}
	v.instance(s, takes)
	if s.ExecWorker != PerUser && s.ExecWorker != PerConnection {
		v.errorf(s.line("exec-worker"), "service %s: unknown exec-worker %s: want per-user or per-connection", q(s.Name), s.ExecWorker)
	}
	for i, u := range s.Users {
		if u != "*" && keys.ValidName(u) != nil {
			v.errorf(s.entryLine(s.userLines, i), "user name %s is not valid: %s (or \"*\" for every user with a key)", q(u), nameRule)
		}
	}
	for i, g := range s.Groups {
		switch {
		case g == "*":
			v.errorf(s.entryLine(s.groupLines, i), "groups cannot be \"*\": to allow every user with a key write \"users *\"")
		case keys.ValidName(g) != nil:
			v.errorf(s.entryLine(s.groupLines, i), "group name %s is not valid: %s", q(g), nameRule)
		}
	}
	switch {
	case s.RunAsUser && s.Account != "":
		v.errorf(s.line("run-as"), "service %s runs as the user but also names account %s: choose one", q(s.Name), q(s.Account))
	case !s.RunAsUser && keys.ValidName(s.Account) != nil:
		v.errorf(s.line("run-as"), "run-as account name %s is not valid: %s", q(s.Account), nameRule)
	}
	v.limit(s.line("max-workers"), "max-workers", s.MaxWorkers)
	v.limit(s.line("max-connections-per-user"), "max-connections-per-user", s.MaxConnsPerUser)
	v.duration(s.line("idle-timeout"), "idle-timeout", s.IdleTimeout, minIdleTimeout, 0)
}

// listen checks the listen addresses of s: at least one, each valid, none
// twice.
func (v *validator) listen(s *Service) {
	if len(s.Listen) == 0 {
		v.errorf(s.Line, "service %s has no listen address: add \"listen HOST:PORT\", for example \"listen 127.0.0.1:4000\"", q(s.Name))
	}
	seen := make(map[string]int, len(s.Listen))
	for i, a := range s.Listen {
		line := s.entryLine(s.listenLines, i)
		if msg := listenProblem(a); msg != "" {
			v.errs.add(line, msg)
			continue
		}
		if f, dup := seen[a]; dup {
			v.errorf(line, "listen %s is given twice in service %s%s: keep one", a, q(s.Name), firstOn(f))
			continue
		}
		seen[a] = line
	}
}

// limit reports n, of directive name at line, if it is not from 1 to
// maxLimit.
func (v *validator) limit(line int, name string, n int) {
	switch {
	case n < 1:
		v.errorf(line, "%s %d: must be at least 1", name, n)
	case n > maxLimit:
		v.errorf(line, "%s %d is too large: the maximum is %d", name, n, maxLimit)
	}
}
