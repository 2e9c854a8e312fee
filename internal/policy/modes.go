// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"fmt"
	"strings"
)

// A modeRule says what a service in one mode requires, which of the modal
// directives (serviceDirectives with modal set) it takes, what it refuses and
// why, and what it accepts but ignores. Directives that are not modal (listen,
// users, groups, run-as, max-workers, max-connections-per-user,
// idle-timeout) are taken by every mode. validate and the modes table of
// docs/CONFIG.md (ModeTable, checked by a test) read this table: a new mode is
// one row, a new modal directive one serviceDirectives entry plus its name in
// the allows (or requires) of the modes that take it.
type modeRule struct {
	mode Mode
	// requires lists what a service in this mode must have.
	requires []requirement
	// allows lists the modal directives the mode takes besides those it
	// requires.
	allows []string
	// forbids gives the reason a modal directive is not used in this mode,
	// for the directives whose general refusal ("used only in ... mode")
	// would not say enough. A modal directive the mode neither requires,
	// allows nor lists here is refused with that general refusal.
	forbids map[string]string
	// ignores lists directives the mode takes but has no use for (when
	// their condition holds): Check warns.
	ignores []ignored
}

// requirement is one thing a mode requires of a service.
type requirement struct {
	// directive is what supplies it; the error is on its line when it is
	// given, else on the service's line.
	directive string
	// what is how the requirement reads in the documentation.
	what string
	// met reports whether s satisfies it.
	met func(s *Service) bool
	// msg is the error, with %[1]s the quoted service name and %[2]s the
	// plain one.
	msg string
}

// ignored is a directive a mode takes but does not use.
type ignored struct {
	directive string
	// when, if not nil, limits the warning to the services it accepts;
	// how then says which setting it is ("with ...").
	when func(s *Service) bool
	how  string
	// why says why the directive has no effect.
	why string
}

// serviceDirective says how validate sees one service directive that the
// mode table names.
type serviceDirective struct {
	name string
	// set reports whether s has a value other than the default, so that a
	// Config built by hand is judged like a parsed one (where being written
	// in the file counts as well, even with the default value).
	set func(s *Service) bool
	// modal is true for a directive that only some modes take: refused in
	// every mode that does not require or allow it.
	modal bool
	// note is added to the general refusal of a modal directive; %s is the
	// service's mode.
	note string
}

// serviceDirectives are the service directives the mode table names.
var serviceDirectives = []serviceDirective{
	{name: "program", modal: true, set: func(s *Service) bool { return s.Program != "" }},
	{name: "args", modal: true, set: func(s *Service) bool { return len(s.Args) > 0 }},
	{name: "exec-worker", modal: true, set: func(s *Service) bool { return s.ExecWorker != PerUser },
		note: " (mode %s already says how workers are started)"},
	{name: "backend", modal: true, set: func(s *Service) bool { return s.Backend != "" }},
	{name: "identity-headers", modal: true, set: func(s *Service) bool { return len(s.IdentityHeaders) > 0 }},
	{name: "instance-listen", modal: true, set: func(s *Service) bool { return s.InstanceListen != "" }},
	{name: "instance-start-timeout", modal: true, set: func(s *Service) bool { return s.InstanceStartTimeout != 0 }},
	{name: "run-as", set: func(s *Service) bool { return !s.RunAsUser || s.Account != "" }},
	{name: "idle-timeout", set: func(s *Service) bool { return s.IdleTimeout != DefaultIdleTimeout }},
}

// Requirements shared by several modes.
var (
	needWorker = requirement{directive: "program", what: "`program`", met: func(s *Service) bool { return s.Program != "" },
		msg: `service %[1]s has no program: add "program /absolute/path/of/the/worker"`}
	perConnectionIdle = ignored{directive: "idle-timeout", how: "in per-connection mode", why: "each worker serves one connection and exits"}
)

// modeTable has one row per mode, in the order of the Mode constants.
var modeTable = []modeRule{
	{mode: PerUser, requires: []requirement{needWorker}, allows: []string{"args"}},
	{mode: PerConnection, requires: []requirement{needWorker}, allows: []string{"args"}, ignores: []ignored{perConnectionIdle}},
	{
		mode: Exec,
		requires: []requirement{{directive: "program", what: "`program`", met: func(s *Service) bool { return s.Program != "" },
			msg: `service %[1]s has no program: add "program /absolute/path/of/the/program" (in exec mode, the unmodified program run for each connection, such as /usr/lib/dovecot/imap)`}},
		allows: []string{"args", "exec-worker"},
		ignores: []ignored{{directive: "idle-timeout", how: `with "exec-worker per-connection"`, why: perConnectionIdle.why,
			when: func(s *Service) bool { return s.ExecWorker == PerConnection }}},
	},
	{
		mode: Backend,
		requires: []requirement{
			{directive: "backend", what: "`backend`", met: func(s *Service) bool { return s.Backend != "" },
				msg: `service %[1]s has no backend: add "backend tcp:127.0.0.1:PORT" or "backend unix:/path/of/socket", the local service its connections are forwarded to`},
			{directive: "run-as", what: "`run-as account NAME`", met: func(s *Service) bool { return !s.RunAsUser },
				msg: `service %[1]s in backend mode needs "run-as account NAME": its one worker forwards the connections of every user, so it cannot run as any one of them; create an unprivileged account for it (for example "useradd --system --no-create-home netauth-%[2]s")`},
		},
		forbids: map[string]string{
			"program": "netauthd's own worker forwards each connection to the backend",
			"args":    "netauthd's own worker forwards each connection to the backend",
		},
	},
	httpBackendRule,
	{
		mode: Instance,
		requires: []requirement{
			{directive: "program", what: "`program`", met: func(s *Service) bool { return s.Program != "" },
				msg: `service %[1]s has no program: add "program /absolute/path/of/the/server" (in instance mode, the unmodified server each user gets an instance of, such as /usr/bin/python3)`},
			{directive: "instance-listen", what: "`instance-listen`", met: func(s *Service) bool { return s.InstanceListen != "" },
				msg: `service %[1]s has no instance-listen: add "instance-listen socket-activation", "instance-listen unix" or "instance-listen tcp", how each user's instance of the program listens (docs/CONFIG.md, mode instance)`},
		},
		allows: []string{"args", "instance-start-timeout"},
		forbids: map[string]string{
			"exec-worker": "each user has one instance, and one worker relaying to it",
		},
	},
}

// httpBackendRule is the row of mode http-backend: backend mode's needs
// (an address and a service account), speaking HTTP to the backend.
var httpBackendRule = modeRule{
	mode: HTTPBackend,
	requires: []requirement{
		{directive: "backend", what: "`backend`", met: func(s *Service) bool { return s.Backend != "" },
			msg: `service %[1]s has no backend: add "backend tcp:127.0.0.1:PORT" or "backend unix:/path/of/socket", the local HTTP service its requests are forwarded to`},
		{directive: "run-as", what: "`run-as account NAME`", met: func(s *Service) bool { return !s.RunAsUser },
			msg: `service %[1]s in http-backend mode needs "run-as account NAME": its one worker forwards the requests of every user, so it cannot run as any one of them; create an unprivileged account for it (for example "useradd --system --no-create-home netauth-%[2]s")`},
	},
	allows: []string{"identity-headers"},
	forbids: map[string]string{
		"program": "netauthd's own worker forwards each request to the backend",
		"args":    "netauthd's own worker forwards each request to the backend",
	},
}

// modeNames lists the modes as the configuration writes them: "a, b or c".
func modeNames() string {
	names := make([]string, len(modeTable))
	for i := range modeTable {
		names[i] = modeTable[i].mode.String()
	}
	return orList(names)
}

// ruleOf returns the row of mode m, or nil for a mode that does not exist.
func ruleOf(m Mode) *modeRule {
	for i := range modeTable {
		if modeTable[i].mode == m {
			return &modeTable[i]
		}
	}
	return nil
}

// directiveOf returns the serviceDirectives entry called name, or nil.
func directiveOf(name string) *serviceDirective {
	for i := range serviceDirectives {
		if serviceDirectives[i].name == name {
			return &serviceDirectives[i]
		}
	}
	return nil
}

// given reports whether directive name is given in s: written in the file
// it was parsed from, or set to other than its default.
func (s *Service) given(name string) bool {
	if _, ok := s.lines[name]; ok {
		return true
	}
	d := directiveOf(name)
	return d != nil && d.set(s)
}

// takes reports whether the mode takes directive name: it is not modal, or
// the mode requires or allows it.
func (r *modeRule) takes(name string) bool {
	if d := directiveOf(name); d == nil || !d.modal {
		return true
	}
	for _, q := range r.requires {
		if q.directive == name {
			return true
		}
	}
	for _, a := range r.allows {
		if a == name {
			return true
		}
	}
	return false
}

// modesTaking returns the modes that take modal directive name.
func modesTaking(name string) []string {
	var out []string
	for i := range modeTable {
		if modeTable[i].takes(name) {
			out = append(out, modeTable[i].mode.String())
		}
	}
	return out
}

// refusal returns the error for modal directive d given in service s,
// whose mode r does not take it.
func (r *modeRule) refusal(s *Service, d *serviceDirective) string {
	if why, ok := r.forbids[d.name]; ok {
		return fmt.Sprintf("service %s: %s is not used in %s mode: %s; remove it", q(s.Name), d.name, r.mode, why)
	}
	modes := modesTaking(d.name)
	if len(modes) == 0 {
		return fmt.Sprintf("service %s: %s is not used in any mode; remove it", q(s.Name), d.name)
	}
	note := ""
	if d.note != "" {
		note = fmt.Sprintf(d.note, r.mode)
	}
	return fmt.Sprintf("service %s: %s is used only in %s mode: add \"mode %s\" or remove it%s", q(s.Name), d.name, orList(modes), modes[0], note)
}

// checkMode reports what service s lacks, or has too much of, for its
// mode r, and warns (when warn is not nil) about what r ignores.
func (v *validator) checkMode(s *Service, r *modeRule) {
	for _, need := range r.requires {
		if !need.met(s) {
			v.errs.add(s.line(need.directive), fmt.Sprintf(need.msg, q(s.Name), s.Name))
		}
	}
	for i := range serviceDirectives {
		d := &serviceDirectives[i]
		if d.modal && s.given(d.name) && !r.takes(d.name) {
			v.errs.add(s.line(d.name), r.refusal(s, d))
		}
	}
	if v.warn == nil {
		return
	}
	for _, ig := range r.ignores {
		if s.given(ig.directive) && (ig.when == nil || ig.when(s)) {
			v.warn(s.line(ig.directive), fmt.Sprintf("service %s: %s is ignored %s (%s): remove it", q(s.Name), ig.directive, ig.how, ig.why))
		}
	}
}

// orList joins words as "a", "a or b", "a, b or c".
func orList(words []string) string {
	if len(words) <= 1 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

// ModeTable returns the table of service modes as docs/CONFIG.md shows it
// (Markdown): what each mode requires, which mode-specific directives it
// also takes, which it refuses, and which it ignores.
func ModeTable() string {
	var b strings.Builder
	b.WriteString("| Mode | Requires | Also takes | Refuses | Ignores (`-check` warns) |\n|---|---|---|---|---|\n")
	code := func(names []string) string {
		if len(names) == 0 {
			return "—"
		}
		out := make([]string, len(names))
		for i, n := range names {
			out[i] = "`" + n + "`"
		}
		return strings.Join(out, ", ")
	}
	for i := range modeTable {
		r := &modeTable[i]
		var needs, refused, ignores []string
		for _, need := range r.requires {
			needs = append(needs, need.what)
		}
		for _, d := range serviceDirectives {
			if d.modal && !r.takes(d.name) {
				refused = append(refused, d.name)
			}
		}
		for _, ig := range r.ignores {
			s := "`" + ig.directive + "`"
			if ig.when != nil {
				s += " " + strings.ReplaceAll(ig.how, `"`, "`")
			}
			ignores = append(ignores, s)
		}
		ignored := "—"
		if len(ignores) > 0 {
			ignored = strings.Join(ignores, ", ")
		}
		required := "—"
		if len(needs) > 0 {
			required = strings.Join(needs, ", ")
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", r.mode, required, code(r.allows), code(refused), ignored)
	}
	return b.String()
}
