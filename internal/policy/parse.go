// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"ubns.dev/netauth/internal/keys"
)

// MaxFileSize is the largest configuration file Parse and Load accept, in
// bytes.
const MaxFileSize = 1 << 20

// Bounds of the numeric and duration directives.
const (
	maxLimit            = 1_000_000
	minTicketLifetime   = time.Second
	maxTicketLifetime   = 24 * time.Hour
	minClockSkew        = time.Second
	maxClockSkew        = time.Hour
	minHandshakeTimeout = 100 * time.Millisecond
	maxHandshakeTimeout = 10 * time.Minute
	minRevocationCheck  = 100 * time.Millisecond
	maxRevocationCheck  = time.Hour
	minIdleTimeout      = time.Millisecond
)

// Load reads and parses the configuration file at path. A file larger than
// MaxFileSize is refused before it is read. Errors in the file are reported
// as by Parse.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("policy: reading configuration: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("policy: reading configuration: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("policy: reading configuration: %s is not a regular file", path)
	}
	if fi.Size() > MaxFileSize {
		return nil, fmt.Errorf("policy: reading configuration: %s is %d bytes; a configuration may be at most %d bytes", path, fi.Size(), MaxFileSize)
	}
	return Parse(path, f)
}

// Parse reads a configuration from r; path names it in errors and becomes
// Config.Path. It reports every error it finds (up to MaxErrors), not just
// the first, as an *Errors whose entries each name the line at fault. A
// failure to read r, or input larger than MaxFileSize, is reported as a
// plain error instead.
func Parse(path string, r io.Reader) (*Config, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("policy: reading %s: %w", path, err)
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("policy: reading %s: larger than %d bytes", path, MaxFileSize)
	}
	p := &parser{
		errs:     collector{path: path},
		cfg:      newConfig(path),
		services: map[string]int{},
		dirs:     directiveTable(),
	}
	p.parse(data)
	if err := p.errs.err(); err != nil {
		return nil, err
	}
	return p.cfg, nil
}

// token is one value of a line.
type token struct {
	text string
	// quoted is true if any part of the value was quoted, so that a
	// quoted "}" or "{" is a plain value rather than punctuation.
	quoted bool
}

// is reports whether t is the unquoted word s.
func (t token) is(s string) bool { return !t.quoted && t.text == s }

// parser holds the state of one Parse.
type parser struct {
	errs collector
	cfg  *Config
	// svc is the service whose block is open, or nil.
	svc *Service
	// services maps each service name to its line.
	services map[string]int
	// firstService is the line of the first "service", or 0.
	firstService int
	// dirs is the directive table.
	dirs []directive
	// entries maps "directive\x00value" to its line for the values of the
	// open service's repeatable directives, to find duplicates.
	entries map[string]int
	// braceNext is true when the previous directive was "service NAME"
	// without "{", so that a lone "{" on the next line is not reported
	// a second time.
	braceNext bool
}

// errorf records an error at line n.
func (p *parser) errorf(n int, format string, args ...any) {
	p.errs.add(n, fmt.Sprintf(format, args...))
}

// parse parses the whole input.
func (p *parser) parse(data []byte) {
	lineNo := 0
	for len(data) > 0 && !p.errs.full {
		lineNo++
		var line []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			line, data = data, nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		toks, msg := splitLine(line)
		if msg != "" {
			p.errorf(lineNo, "%s", msg)
			continue
		}
		if len(toks) == 0 {
			continue
		}
		p.line(lineNo, toks)
	}
	if p.svc != nil {
		p.errorf(p.svc.Line, "service %s is not closed: add a line with only \"}\" after its directives", q(p.svc.Name))
		p.closeService()
	}
}

// line handles one non-empty line.
func (p *parser) line(n int, toks []token) {
	braceNext := p.braceNext
	p.braceNext = false
	first := toks[0]
	switch {
	case first.is("}"):
		if len(toks) > 1 {
			p.errorf(n, "\"}\" must be on a line of its own")
		}
		if p.svc == nil {
			p.errorf(n, "\"}\" without a service block to close")
			return
		}
		p.closeService()
		return
	case first.is("{"):
		if braceNext && len(toks) == 1 {
			return // reported with the "service" line
		}
		p.errorf(n, "unexpected \"{\": a block starts with \"service NAME {\" on one line")
		return
	case first.text == "service":
		p.service(n, toks[1:])
		return
	}

	// A "}" ending a directive's line closes the block after reporting.
	closeAfter := false
	if last := toks[len(toks)-1]; len(toks) > 1 && last.is("}") && p.svc != nil {
		p.errorf(n, "\"}\" must be on a line of its own")
		toks = toks[:len(toks)-1]
		closeAfter = true
	}
	p.directive(n, first.text, toks[1:])
	if closeAfter {
		p.closeService()
	}
}

// service handles a "service" line; args are the values after "service".
func (p *parser) service(n int, args []token) {
	if p.svc != nil {
		p.errorf(n, "service block starts inside service %s, which is not closed: add a line with only \"}\" before this one", q(p.svc.Name))
		p.closeService()
	}
	if p.firstService == 0 {
		p.firstService = n
	}
	name := ""
	closeNow := false
	switch {
	case len(args) == 0:
		p.errorf(n, "service needs a name: write \"service NAME {\"")
	case len(args) == 1 && !args[0].quoted && len(args[0].text) > 1 && strings.HasSuffix(args[0].text, "{"):
		name = strings.TrimSuffix(args[0].text, "{")
		p.errorf(n, "put a space between the service name and \"{\": write \"service %s {\"", name)
	case len(args) == 1:
		name = args[0].text
		p.errorf(n, "service %s: the line must end with \"{\": write \"service %s {\"", q(name), name)
		p.braceNext = true
	case args[1].is("{") && len(args) == 2:
		name = args[0].text
	case args[1].is("{"):
		name = args[0].text
		p.errorf(n, "unexpected %s after \"{\": put each directive on a line of its own", q(args[2].text))
		closeNow = args[len(args)-1].is("}")
	default:
		name = args[0].text
		p.errorf(n, "service name must be one word followed by \"{\": write \"service NAME {\"")
	}
	if name != "" && keys.ValidName(name) != nil {
		p.errorf(n, "service name %s is not valid: %s", q(name), nameRule)
	} else if first, dup := p.services[name]; dup && name != "" {
		p.errorf(n, "service %s is defined twice (first on line %d): rename or remove one", q(name), first)
	} else if name != "" {
		p.services[name] = n
	}
	p.svc = newService(name, n)
	p.entries = map[string]int{}
	if closeNow {
		p.closeService()
	}
}

// closeService ends the open service block, reports what it lacks and adds
// it to the configuration.
func (p *parser) closeService() {
	s := p.svc
	p.svc = nil
	if len(s.Listen) == 0 {
		p.errorf(s.Line, "service %s has no listen address: add \"listen HOST:PORT\", for example \"listen 127.0.0.1:4000\"", q(s.Name))
	}
	switch {
	case s.Mode == Backend:
		p.closeBackend(s)
	case s.Program == "" && s.Mode == Exec:
		p.errorf(s.Line, "service %s has no program: add \"program /absolute/path/of/the/program\" (in exec mode, the unmodified program run for each connection, such as /usr/lib/dovecot/imap)", q(s.Name))
	case s.Program == "":
		p.errorf(s.Line, "service %s has no program: add \"program /absolute/path/of/the/worker\"", q(s.Name))
	}
	if line, ok := s.lines["backend"]; ok && s.Mode != Backend {
		p.errorf(line, "service %s: backend is used only in backend mode: add \"mode backend\" or remove it", q(s.Name))
	}
	if line, ok := s.lines["exec-worker"]; ok && s.Mode != Exec {
		p.errorf(line, "service %s: exec-worker is used only in exec mode: add \"mode exec\" or remove it (mode %s already says how workers are started)", q(s.Name), s.Mode)
	}
	p.cfg.Services = append(p.cfg.Services, s)
}

// closeBackend reports what a backend service lacks or has too much of.
func (p *parser) closeBackend(s *Service) {
	for _, name := range []string{"program", "args"} {
		if line, ok := s.lines[name]; ok {
			p.errorf(line, "service %s: %s is not used in backend mode: netauthd's own worker forwards each connection to the backend; remove it", q(s.Name), name)
		}
	}
	if _, ok := s.lines["backend"]; !ok {
		p.errorf(s.Line, "service %s has no backend: add \"backend tcp:127.0.0.1:PORT\" or \"backend unix:/path/of/socket\", the local service its connections are forwarded to", q(s.Name))
	}
	if _, ok := s.lines["run-as"]; !ok || s.RunAsUser {
		p.errorf(s.line("run-as"), "service %s in backend mode needs \"run-as account NAME\": its one worker forwards the connections of every user, so it cannot run as any one of them; create an unprivileged account for it (for example \"useradd --system --no-create-home netauth-%s\")", q(s.Name), s.Name)
	}
}

// directive handles a directive line other than "service" and "}".
func (p *parser) directive(n int, name string, args []token) {
	d := p.findDirective(name)
	if d == nil {
		p.unknown(n, name)
		return
	}
	where := ""
	var seen map[string]int
	switch {
	case d.global && p.svc != nil:
		p.errorf(n, "%s is a global directive and cannot be inside service %s: move it above the first service block", q(name), q(p.svc.Name))
		return
	case d.global && p.firstService != 0:
		p.errorf(n, "global directive %s comes after the first service block (line %d): move it above the service blocks", q(name), p.firstService)
		return
	case d.global:
		seen = p.cfg.lines
	case p.svc == nil:
		p.errorf(n, "%s belongs inside a service block: \"service NAME {\" ... \"}\"", q(name))
		return
	default:
		seen = p.svc.lines
		where = " in service " + q(p.svc.Name)
	}
	if first, ok := seen[name]; ok && !d.repeat {
		p.errorf(n, "%s is given twice%s (first on line %d): keep one", q(name), where, first)
		return
	}
	if _, ok := seen[name]; !ok {
		seen[name] = n
	}
	if len(args) < d.min {
		p.errorf(n, "%s needs a value: write \"%s\"", q(name), d.usage)
		return
	}
	if d.max >= 0 && len(args) > d.max {
		p.errorf(n, "%s takes %s, got %d: write \"%s\"%s", q(name), valueCount(d.max), len(args), d.usage, d.hint)
		return
	}
	vals := make([]string, len(args))
	for i, a := range args {
		vals[i] = a.text
	}
	d.set(p, n, vals)
}

// unknown reports an unknown directive, with a suggestion if one is close.
func (p *parser) unknown(n int, name string) {
	where := ""
	if p.svc != nil {
		where = " in service " + q(p.svc.Name)
	}
	if s := suggest(p.dirs, name); s != "" {
		p.errorf(n, "unknown directive %s%s (did you mean %q?)", q(name), where, s)
		return
	}
	var names []string
	for _, d := range p.dirs {
		if d.global == (p.svc == nil) {
			names = append(names, d.name)
		}
	}
	if p.svc == nil {
		names = append(names, "service")
	}
	p.errorf(n, "unknown directive %s%s: want one of %s", q(name), where, strings.Join(names, ", "))
}

// valueCount describes a number of values.
func valueCount(n int) string {
	switch n {
	case 0:
		return "no value"
	case 1:
		return "one value"
	}
	return fmt.Sprintf("at most %d values", n)
}

// directive describes one configuration directive.
type directive struct {
	name   string
	global bool
	// repeat allows the directive more than once; values accumulate.
	repeat bool
	// min and max bound the number of values; max -1 is unbounded.
	min, max int
	// usage shows how to write it; hint is added to a too-many-values
	// error.
	usage, hint string
	set         func(p *parser, line int, vals []string)
}

// directiveTable returns every directive but "service".
func directiveTable() []directive {
	return []directive{
		{name: "host-key", global: true, min: 1, max: 1, usage: "host-key /absolute/path", hint: pathHint, set: func(p *parser, n int, v []string) {
			p.path(n, "host-key", v[0], &p.cfg.HostKey)
		}},
		{name: "audit-log", global: true, min: 1, max: 1, usage: "audit-log /absolute/path", hint: pathHint, set: func(p *parser, n int, v []string) {
			p.path(n, "audit-log", v[0], &p.cfg.AuditLog)
		}},
		{name: "authorized-keys-dir", global: true, min: 1, max: 1, usage: "authorized-keys-dir /absolute/path", hint: pathHint, set: func(p *parser, n int, v []string) {
			if v[0] == "none" {
				p.cfg.AuthorizedKeysDir = ""
				return
			}
			p.path(n, "authorized-keys-dir", v[0], &p.cfg.AuthorizedKeysDir)
		}},
		{name: "home-authorized-keys", global: true, min: 1, max: 1, usage: "home-authorized-keys yes", set: func(p *parser, n int, v []string) {
			switch v[0] {
			case "yes":
				p.cfg.HomeAuthorizedKeys = true
			case "no":
				p.cfg.HomeAuthorizedKeys = false
			default:
				p.errorf(n, "home-authorized-keys %s: want yes or no", q(v[0]))
			}
		}},
		{name: "key-command", global: true, min: 1, max: -1, usage: "key-command /absolute/path/of/program [ARG...]", set: func(p *parser, n int, v []string) {
			if !filepath.IsAbs(v[0]) {
				p.errorf(n, "key-command program %s is not an absolute path: write it starting with \"/\"", q(v[0]))
				return
			}
			p.cfg.KeyCommand = v
		}},
		{name: "ticket-lifetime", global: true, min: 1, max: 1, usage: "ticket-lifetime 1h", set: func(p *parser, n int, v []string) {
			if v[0] == "off" || v[0] == "0" {
				p.cfg.TicketLifetime = ResumptionOff
				return
			}
			p.duration(n, "ticket-lifetime", v[0], minTicketLifetime, maxTicketLifetime, &p.cfg.TicketLifetime)
		}},
		{name: "max-clock-skew", global: true, min: 1, max: 1, usage: "max-clock-skew 5m", set: func(p *parser, n int, v []string) {
			p.duration(n, "max-clock-skew", v[0], minClockSkew, maxClockSkew, &p.cfg.MaxClockSkew)
		}},
		{name: "handshake-timeout", global: true, min: 1, max: 1, usage: "handshake-timeout 10s", set: func(p *parser, n int, v []string) {
			p.duration(n, "handshake-timeout", v[0], minHandshakeTimeout, maxHandshakeTimeout, &p.cfg.HandshakeTimeout)
		}},
		{name: "revocation-check", global: true, min: 1, max: 1, usage: "revocation-check 1s", set: func(p *parser, n int, v []string) {
			p.duration(n, "revocation-check", v[0], minRevocationCheck, maxRevocationCheck, &p.cfg.RevocationCheck)
		}},
		{name: "spare-workers", global: true, min: 1, max: 1, usage: "spare-workers 1", set: func(p *parser, n int, v []string) {
			i, err := strconv.Atoi(v[0])
			switch {
			case !isDigits(v[0]) || err != nil:
				p.errorf(n, "spare-workers %s: want a whole number from 0 (no spare workers) to %d", q(v[0]), MaxSpareWorkers)
			case i > MaxSpareWorkers:
				p.errorf(n, "spare-workers %s is too large: the maximum is %d", v[0], MaxSpareWorkers)
			default:
				p.cfg.SpareWorkers = i
			}
		}},
		{name: "metrics-listen", global: true, min: 1, max: 1, usage: "metrics-listen /run/netauth/metrics.sock", set: func(p *parser, n int, v []string) {
			// Checked by Config.validate, like a Config not made by Parse.
			p.cfg.MetricsListen = v[0]
		}},

		{name: "listen", repeat: true, min: 1, max: -1, usage: "listen HOST:PORT", set: func(p *parser, n int, v []string) {
			s := p.svc
			for _, a := range v {
				if msg := listenProblem(a); msg != "" {
					p.errorf(n, "%s", msg)
					continue
				}
				if first, ok := p.firstEntry("listen", a, n); !ok {
					p.errorf(n, "listen %s is given twice in service %s (first on line %d): keep one", a, q(s.Name), first)
					continue
				}
				s.Listen = append(s.Listen, a)
				s.listenLines = append(s.listenLines, n)
			}
		}},
		{name: "mode", min: 1, max: 1, usage: "mode per-user", set: func(p *parser, n int, v []string) {
			switch v[0] {
			case "per-user":
				p.svc.Mode = PerUser
			case "per-connection":
				p.svc.Mode = PerConnection
			case "exec":
				p.svc.Mode = Exec
			case "backend":
				p.svc.Mode = Backend
			default:
				p.errorf(n, "mode %s: want per-user, per-connection, exec or backend", q(v[0]))
			}
		}},
		{name: "program", min: 1, max: 1, usage: "program /absolute/path", hint: "; put the program's arguments in \"args\"", set: func(p *parser, n int, v []string) {
			p.path(n, "program", v[0], &p.svc.Program)
		}},
		{name: "args", min: 1, max: -1, usage: "args VALUE...", set: func(p *parser, n int, v []string) {
			p.svc.Args = v
		}},
		{name: "backend", min: 1, max: 1, usage: "backend tcp:HOST:PORT\" or \"backend unix:/path", set: func(p *parser, n int, v []string) {
			if msg := backendProblem(v[0]); msg != "" {
				p.errorf(n, "%s", msg)
				return
			}
			p.svc.Backend = v[0]
		}},
		{name: "exec-worker", min: 1, max: 1, usage: "exec-worker per-user\" or \"exec-worker per-connection", set: func(p *parser, n int, v []string) {
			switch v[0] {
			case "per-user":
				p.svc.ExecWorker = PerUser
			case "per-connection":
				p.svc.ExecWorker = PerConnection
			default:
				p.errorf(n, "exec-worker %s: want per-user (one worker per user starts the program for each of their connections) or per-connection (a new worker for every connection)", q(v[0]))
			}
		}},
		{name: "users", repeat: true, min: 1, max: -1, usage: "users NAME...", set: func(p *parser, n int, v []string) {
			s := p.svc
			for _, u := range v {
				if u != "*" && keys.ValidName(u) != nil {
					p.errorf(n, "user name %s is not valid: %s (or \"*\" for every user with a key)", q(u), nameRule)
					continue
				}
				if _, ok := p.firstEntry("users", u, n); ok {
					s.Users = append(s.Users, u)
					s.userLines = append(s.userLines, n)
				}
			}
		}},
		{name: "groups", repeat: true, min: 1, max: -1, usage: "groups NAME...", set: func(p *parser, n int, v []string) {
			s := p.svc
			for _, g := range v {
				if g == "*" {
					p.errorf(n, "groups cannot be \"*\": to allow every user with a key write \"users *\"")
					continue
				}
				if keys.ValidName(g) != nil {
					p.errorf(n, "group name %s is not valid: %s", q(g), nameRule)
					continue
				}
				if _, ok := p.firstEntry("groups", g, n); ok {
					s.Groups = append(s.Groups, g)
					s.groupLines = append(s.groupLines, n)
				}
			}
		}},
		{name: "run-as", min: 1, max: 2, usage: "run-as user\" or \"run-as account NAME", set: func(p *parser, n int, v []string) {
			s := p.svc
			switch {
			case v[0] == "user" && len(v) == 1:
				s.RunAsUser, s.Account = true, ""
			case v[0] == "user":
				p.errorf(n, "run-as user takes no name: it runs workers as the authenticated user; for a fixed account write \"run-as account %s\"", v[1])
			case v[0] == "account" && len(v) == 1:
				p.errorf(n, "run-as account needs the account's name: write \"run-as account NAME\"")
			case v[0] == "account" && keys.ValidName(v[1]) != nil:
				p.errorf(n, "run-as account name %s is not valid: %s", q(v[1]), nameRule)
			case v[0] == "account":
				s.RunAsUser, s.Account = false, v[1]
			default:
				p.errorf(n, "run-as %s: want \"run-as user\" or \"run-as account NAME\"", q(v[0]))
			}
		}},
		{name: "max-workers", min: 1, max: 1, usage: "max-workers 256", set: func(p *parser, n int, v []string) {
			p.limit(n, "max-workers", v[0], &p.svc.MaxWorkers)
		}},
		{name: "max-connections-per-user", min: 1, max: 1, usage: "max-connections-per-user 64", set: func(p *parser, n int, v []string) {
			p.limit(n, "max-connections-per-user", v[0], &p.svc.MaxConnsPerUser)
		}},
		{name: "idle-timeout", min: 1, max: 1, usage: "idle-timeout 5m", set: func(p *parser, n int, v []string) {
			p.duration(n, "idle-timeout", v[0], minIdleTimeout, 0, &p.svc.IdleTimeout)
		}},
	}
}

// pathHint is added when a path directive gets more than one value.
const pathHint = " (put a path that contains spaces in double quotes)"

// nameRule says what a valid name is.
const nameRule = `use 1 to 64 characters from A-Z a-z 0-9 . _ @ -, not starting with "-" or "."`

// findDirective returns the directive called name, or nil.
func (p *parser) findDirective(name string) *directive {
	for i := range p.dirs {
		if p.dirs[i].name == name {
			return &p.dirs[i]
		}
	}
	return nil
}

// firstEntry records value v of repeatable directive name on line n of
// the open service and reports whether it is new; if not, it returns the
// line v was first given on.
func (p *parser) firstEntry(name, v string, n int) (int, bool) {
	key := name + "\x00" + v
	if first, ok := p.entries[key]; ok {
		return first, false
	}
	p.entries[key] = n
	return n, true
}

// path stores v in dst if it is an absolute path.
func (p *parser) path(n int, name, v string, dst *string) {
	if !filepath.IsAbs(v) {
		p.errorf(n, "%s %s is not an absolute path: write it starting with \"/\"", name, q(v))
		return
	}
	*dst = v
}

// duration stores v in dst if it is a duration of at least min and, if
// max is not 0, at most max.
func (p *parser) duration(n int, name, v string, min, max time.Duration, dst *time.Duration) {
	d, err := time.ParseDuration(v)
	switch {
	case err != nil && isDigits(v):
		p.errorf(n, "%s %s: a duration needs a unit: write for example %ss or %sm", name, q(v), v, v)
	case err != nil:
		p.errorf(n, "%s %s: want a duration such as 90s, 5m or 1h", name, q(v))
	default:
		if msg := durationProblem(name, v, d, min, max); msg != "" {
			p.errorf(n, "%s", msg)
			return
		}
		*dst = d
	}
}

// durationProblem returns what is wrong with duration d, written as v, of
// directive name, or "" if it is within [min, max] (max 0: no maximum).
func durationProblem(name, v string, d, min, max time.Duration) string {
	switch {
	case d < 0:
		return fmt.Sprintf("%s %s: must not be negative", name, v)
	case d < min:
		return fmt.Sprintf("%s %s is too short: the minimum is %s", name, v, formatDuration(min))
	case max > 0 && d > max:
		return fmt.Sprintf("%s %s is too long: the maximum is %s", name, v, formatDuration(max))
	}
	return ""
}

// limit stores v in dst if it is a whole number from 1 to maxLimit.
func (p *parser) limit(n int, name, v string, dst *int) {
	if !isDigits(strings.TrimPrefix(v, "-")) {
		p.errorf(n, "%s %s: want a whole number such as 100", name, q(v))
		return
	}
	i, err := strconv.Atoi(v)
	switch {
	case err != nil || i > maxLimit:
		p.errorf(n, "%s %s is too large: the maximum is %d", name, q(v), maxLimit)
	case i <= 0:
		p.errorf(n, "%s %s: must be at least 1", name, v)
	default:
		*dst = i
	}
}

// listenProblem returns what is wrong with listen address a, or "".
func listenProblem(a string) string {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Sprintf("listen %s: want HOST:PORT, such as 127.0.0.1:4000, [::1]:4000 or :4000", q(a))
	}
	if n, err := strconv.Atoi(port); err != nil || !isDigits(port) || n < 0 || n > 65535 {
		return fmt.Sprintf("listen %s: port %s: want a number from 0 to 65535 (0: any free port)", q(a), q(port))
	}
	if host == "" || host == "localhost" {
		return ""
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return fmt.Sprintf("listen %s: host %s: want an IP address, \"localhost\", or nothing (as in \":4000\") for all addresses; host names are not resolved", q(a), q(host))
	}
	return ""
}

// splitLine splits a line into values, dropping any comment. It returns a
// message saying what is wrong with a malformed line.
func splitLine(line []byte) ([]token, string) {
	for i := 0; i < len(line); i++ {
		if c := line[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return nil, fmt.Sprintf("control character 0x%02x at column %d: remove it", c, i+1)
		}
	}
	var toks []token
	i := 0
	for {
		for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
			i++
		}
		if i == len(line) || line[i] == '#' {
			return toks, ""
		}
		var b []byte
		t := token{}
		for i < len(line) && line[i] != ' ' && line[i] != '\t' && line[i] != '#' {
			if line[i] != '"' {
				b = append(b, line[i])
				i++
				continue
			}
			t.quoted = true
			start := i
			i++
			closed := false
			for i < len(line) && !closed {
				switch c := line[i]; c {
				case '"':
					closed = true
					i++
				case '\\':
					if i+1 == len(line) {
						i++
						break
					}
					if e := line[i+1]; e != '"' && e != '\\' {
						r, _ := utf8.DecodeRune(line[i+1:])
						return nil, fmt.Sprintf("unknown escape \\%c at column %d: inside double quotes only \\\" and \\\\ are escapes (write \\\\ for a backslash)", r, i+1)
					}
					b = append(b, line[i+1])
					i += 2
				default:
					b = append(b, c)
					i++
				}
			}
			if !closed {
				return nil, fmt.Sprintf("the double quote at column %d is not closed: add the closing \"", start+1)
			}
		}
		t.text = string(b)
		toks = append(toks, t)
	}
}

// suggest returns the name in dirs (or "service") closest to name, or ""
// if none is close.
func suggest(dirs []directive, name string) string {
	if len(name) > 64 {
		return ""
	}
	lower := strings.ToLower(name)
	best, bestDist := "", 3
	names := []string{"service"}
	for _, d := range dirs {
		names = append(names, d.name)
	}
	for _, cand := range names {
		d := editDistance(lower, cand)
		if len(lower) >= 4 && (strings.HasPrefix(cand, lower) || strings.HasPrefix(lower, cand)) {
			d = min(d, 1)
		}
		if d < bestDist && d <= max(1, len(cand)/3) {
			best, bestDist = cand, d
		}
	}
	return best
}

// editDistance returns the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// q quotes a value for an error message, shortening a long one.
func q(s string) string {
	const maxShown = 60
	if len(s) > maxShown {
		cut := maxShown
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return strconv.Quote(s[:cut]) + "..."
	}
	return strconv.Quote(s)
}

// isDigits reports whether s is a non-empty string of ASCII digits.
func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// itoa formats an int.
func itoa(i int) string { return strconv.Itoa(i) }

// formatDuration formats d the way it would be written in the file, such
// as "1h" or "1h30m" rather than "1h0m0s".
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}
