// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
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
// the first, as an *Errors whose entries each name the line at fault: first
// the syntax errors (tokens, blocks, directive names, where each goes, how
// many values, values that are not a number, duration or keyword), then
// every value rule the configuration breaks (see Check, which applies the
// same rules to a Config not made by Parse). A
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
		errs: collector{path: path},
		cfg:  newConfig(path),
		dirs: directiveTable(),
	}
	p.parse(data)
	// The values are checked by the one validate step every Config goes
	// through, which names the lines Parse recorded.
	p.cfg.validate(&p.errs, nil)
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
	// firstService is the line of the first "service", or 0.
	firstService int
	// dirs is the directive table.
	dirs []directive
	// entries holds "directive\x00value" for the users and groups of the
	// open service, so that a name listed twice is kept once.
	entries map[string]bool
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
	p.svc = newService(name, n)
	p.entries = map[string]bool{}
	if closeNow {
		p.closeService()
	}
}

// closeService ends the open service block and adds it to the
// configuration, unless it has no name (an error already reported): what it
// lacks or has too much of is for validate to say.
func (p *parser) closeService() {
	s := p.svc
	p.svc = nil
	if s.Name != "" {
		p.cfg.Services = append(p.cfg.Services, s)
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

// optionalPath is a global directive whose value is an absolute path or
// "none" (empty).
func optionalPath(name string, field func(c *Config) *string) directive {
	return directive{name: name, global: true, min: 1, max: 1, usage: name + " /absolute/path\" or \"" + name + " none", hint: pathHint, set: func(p *parser, n int, v []string) {
		if v[0] == "none" {
			*field(p.cfg) = ""
			return
		}
		*field(p.cfg) = v[0]
	}}
}

// directiveTable returns every directive but "service". Its set functions
// are syntax only: they turn the values into the Config's types where the
// type is the syntax (a number, a duration, yes/no, a keyword) and store
// them; every rule about the values is validate's.
func directiveTable() []directive {
	return []directive{
		{name: "host-key", global: true, min: 1, max: 1, usage: "host-key /absolute/path", hint: pathHint, set: func(p *parser, n int, v []string) {
			p.cfg.HostKey = v[0]
		}},
		{name: "audit-log", global: true, min: 1, max: 1, usage: "audit-log /absolute/path", hint: pathHint, set: func(p *parser, n int, v []string) {
			p.cfg.AuditLog = v[0]
		}},
		optionalPath("authorized-keys-dir", func(c *Config) *string { return &c.AuthorizedKeysDir }),
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
			p.cfg.KeyCommand = v
		}},
		{name: "ticket-lifetime", global: true, min: 1, max: 1, usage: "ticket-lifetime 1h", set: func(p *parser, n int, v []string) {
			if v[0] == "off" || v[0] == "0" {
				p.cfg.TicketLifetime = ResumptionOff
				return
			}
			p.duration(n, "ticket-lifetime", v[0], &p.cfg.TicketLifetime)
		}},
		{name: "max-clock-skew", global: true, min: 1, max: 1, usage: "max-clock-skew 5m", set: func(p *parser, n int, v []string) {
			p.duration(n, "max-clock-skew", v[0], &p.cfg.MaxClockSkew)
		}},
		{name: "handshake-timeout", global: true, min: 1, max: 1, usage: "handshake-timeout 10s", set: func(p *parser, n int, v []string) {
			p.duration(n, "handshake-timeout", v[0], &p.cfg.HandshakeTimeout)
		}},
		{name: "revocation-check", global: true, min: 1, max: 1, usage: "revocation-check 1s", set: func(p *parser, n int, v []string) {
			p.duration(n, "revocation-check", v[0], &p.cfg.RevocationCheck)
		}},
		{name: "spare-workers", global: true, min: 1, max: 1, usage: "spare-workers 1", set: func(p *parser, n int, v []string) {
			i, err := strconv.Atoi(v[0])
			if !isDigits(v[0]) || err != nil {
				p.errorf(n, "spare-workers %s: want a whole number from 0 (no spare workers) to %d", q(v[0]), MaxSpareWorkers)
				return
			}
			p.cfg.SpareWorkers = i
		}},
		{name: "metrics-listen", global: true, min: 1, max: 1, usage: "metrics-listen /run/netauth/metrics.sock", set: func(p *parser, n int, v []string) {
			p.cfg.MetricsListen = v[0]
		}},
		optionalPath("trusted-user-ca-keys", func(c *Config) *string { return &c.TrustedUserCAKeys }),
		optionalPath("authorized-principals-dir", func(c *Config) *string { return &c.AuthorizedPrincipalsDir }),
		{name: "authorized-principals-command", global: true, min: 1, max: -1, usage: "authorized-principals-command /absolute/path/of/program [ARG...]", set: func(p *parser, n int, v []string) {
			p.cfg.AuthorizedPrincipalsCommand = v
		}},
		optionalPath("revoked-keys", func(c *Config) *string { return &c.RevokedKeys }),
		optionalPath("host-certificate", func(c *Config) *string { return &c.HostCertificate }),

		{name: "listen", repeat: true, min: 1, max: -1, usage: "listen HOST:PORT", set: func(p *parser, n int, v []string) {
			s := p.svc
			for _, a := range v {
				s.Listen = append(s.Listen, a)
				s.listenLines = append(s.listenLines, n)
			}
		}},
		{name: "mode", min: 1, max: 1, usage: "mode per-user", set: func(p *parser, n int, v []string) {
			for i := range modeTable {
				if modeTable[i].mode.String() == v[0] {
					p.svc.Mode = modeTable[i].mode
					return
				}
			}
			p.errorf(n, "mode %s: want %s", q(v[0]), modeNames())
		}},
		{name: "program", min: 1, max: 1, usage: "program /absolute/path", hint: "; put the program's arguments in \"args\"", set: func(p *parser, n int, v []string) {
			p.svc.Program = v[0]
		}},
		{name: "args", min: 1, max: -1, usage: "args VALUE...", set: func(p *parser, n int, v []string) {
			p.svc.Args = v
		}},
		{name: "backend", min: 1, max: 1, usage: "backend tcp:HOST:PORT\" or \"backend unix:/path", set: func(p *parser, n int, v []string) {
			p.svc.Backend = v[0]
		}},
		{name: "identity-headers", min: 1, max: -1, usage: "identity-headers NAME...", set: func(p *parser, n int, v []string) {
			p.svc.IdentityHeaders = v
		}},
		{name: "instance-listen", min: 1, max: 1, usage: "instance-listen socket-activation|unix|tcp", set: func(p *parser, n int, v []string) {
			p.svc.InstanceListen = v[0] // checked by validate
		}},
		{name: "instance-start-timeout", min: 1, max: 1, usage: "instance-start-timeout 5s", set: func(p *parser, n int, v []string) {
			p.duration(n, "instance-start-timeout", v[0], &p.svc.InstanceStartTimeout)
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
				if p.firstEntry("users", u) {
					s.Users = append(s.Users, u)
					s.userLines = append(s.userLines, n)
				}
			}
		}},
		{name: "groups", repeat: true, min: 1, max: -1, usage: "groups NAME...", set: func(p *parser, n int, v []string) {
			s := p.svc
			for _, g := range v {
				if p.firstEntry("groups", g) {
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
			p.duration(n, "idle-timeout", v[0], &p.svc.IdleTimeout)
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

// firstEntry records value v of repeatable directive name in the open
// service and reports whether it is new there.
func (p *parser) firstEntry(name, v string) bool {
	key := name + "\x00" + v
	if p.entries[key] {
		return false
	}
	p.entries[key] = true
	return true
}

// duration stores v in dst if it is written as a duration. A duration is
// written without a sign: a negative one is refused here, as the Config
// cannot hold it (a negative TicketLifetime means resumption is off).
func (p *parser) duration(n int, name, v string, dst *time.Duration) {
	d, err := time.ParseDuration(v)
	switch {
	case err != nil && isDigits(v):
		p.errorf(n, "%s %s: a duration needs a unit: write for example %ss or %sm", name, q(v), v, v)
	case err != nil:
		p.errorf(n, "%s %s: want a duration such as 90s, 5m or 1h", name, q(v))
	case d < 0:
		p.errorf(n, "%s", durationProblem(name, v, d, 0, 0))
	default:
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

// limit stores v in dst if it is a whole number that fits an int; its
// range is validate's. One that does not fit gets validate's wording.
func (p *parser) limit(n int, name, v string, dst *int) {
	if !isDigits(strings.TrimPrefix(v, "-")) {
		p.errorf(n, "%s %s: want a whole number such as 100", name, q(v))
		return
	}
	i, err := strconv.Atoi(v)
	switch {
	case err != nil && strings.HasPrefix(v, "-"):
		p.errorf(n, "%s %s: must be at least 1", name, q(v))
	case err != nil:
		p.errorf(n, "%s %s is too large: the maximum is %d", name, q(v), maxLimit)
	default:
		*dst = i
	}
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
