// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

// handBuilt returns a valid Config built without Parse: one per-user
// service, as Default makes it.
func handBuilt() *Config {
	return Default("/usr/libexec/netauth/netauthd-acceptor")
}

// TestValidateSameErrorFromParseAndCheck: a bad value gets the same message
// from Parse, on the line it is written on, and from Check on a Config built
// by hand with the same value, with no line.
func TestValidateSameErrorFromParseAndCheck(t *testing.T) {
	const service = "service whoami {\n listen 127.0.0.1:4000\n program /usr/libexec/netauth/netauthd-acceptor\n users *\n"
	tests := []struct {
		name string
		// src is a configuration whose line 'line' holds the bad value.
		src  string
		line int
		edit func(c *Config)
	}{
		{"relative host-key", "host-key host_key\n", 1, func(c *Config) { c.HostKey = "host_key" }},
		{"relative authorized-keys-dir", "authorized-keys-dir keys\n", 1, func(c *Config) { c.AuthorizedKeysDir = "keys" }},
		{"relative key-command", "key-command netauth-keys %u\n", 1, func(c *Config) { c.KeyCommand = []string{"netauth-keys", "%u"} }},
		{"short revocation-check", "revocation-check 10ms\n", 1, func(c *Config) { c.RevocationCheck = 10 * time.Millisecond }},
		{"long ticket-lifetime", "ticket-lifetime 48h\n", 1, func(c *Config) { c.TicketLifetime = 48 * time.Hour }},
		{"too many spare workers", "spare-workers 65\n", 1, func(c *Config) { c.SpareWorkers = 65 }},
		{"metrics not loopback", "metrics-listen 0.0.0.0:9464\n", 1, func(c *Config) { c.MetricsListen = "0.0.0.0:9464" }},
		{"bad service name", "service -x {\n listen :1\n program /p\n}\n", 1, func(c *Config) { c.Services[0].Name = "-x" }},
		{"bad listen", service + " listen example.org:80\n}\n", 5, func(c *Config) { c.Services[0].Listen = []string{"example.org:80"} }},
		{"relative program", "service whoami {\n listen :1\n program bin/whoami\n}\n", 3, func(c *Config) { c.Services[0].Program = "bin/whoami" }},
		{"bad user", service + " users al/ice\n}\n", 5, func(c *Config) { c.Services[0].Users = []string{"*", "al/ice"} }},
		{"star group", service + " groups *\n}\n", 5, func(c *Config) { c.Services[0].Groups = []string{"*"} }},
		{"bad account", service + " run-as account -x\n}\n", 5, func(c *Config) { c.Services[0].RunAsUser, c.Services[0].Account = false, "-x" }},
		{"zero max-workers", service + " max-workers 0\n}\n", 5, func(c *Config) { c.Services[0].MaxWorkers = 0 }},
		{"large max-connections", service + " max-connections-per-user 1000001\n}\n", 5, func(c *Config) { c.Services[0].MaxConnsPerUser = 1000001 }},
		{"short idle-timeout", service + " idle-timeout 0s\n}\n", 5, func(c *Config) { c.Services[0].IdleTimeout = 0 }},
		{"exec without program", "service whoami {\n listen :1\n mode exec\n}\n", 1, func(c *Config) { c.Services[0].Mode, c.Services[0].Program = Exec, "" }},
		{"exec-worker outside exec", service + " exec-worker per-connection\n}\n", 5, func(c *Config) { c.Services[0].ExecWorker = PerConnection }},
		{"backend outside backend mode", service + " backend tcp:127.0.0.1:80\n}\n", 5, func(c *Config) { c.Services[0].Backend = "tcp:127.0.0.1:80" }},
		{"backend as user", "service whoami {\n listen :1\n mode backend\n backend unix:/run/b\n run-as user\n}\n", 5, func(c *Config) {
			s := c.Services[0]
			s.Mode, s.Program, s.Backend = Backend, "", "unix:/run/b"
		}},
		{"backend with args", "service whoami {\n listen :1\n mode backend\n backend unix:/run/b\n run-as account svc\n args x\n}\n", 6, func(c *Config) {
			s := c.Services[0]
			s.Mode, s.Program, s.Args, s.Backend, s.RunAsUser, s.Account = Backend, "", []string{"x"}, "unix:/run/b", false, "svc"
		}},
		{"backend host name", "service whoami {\n listen :1\n mode backend\n backend tcp:example.org:80\n run-as account svc\n}\n", 4, func(c *Config) {
			s := c.Services[0]
			s.Mode, s.Program, s.Backend, s.RunAsUser, s.Account = Backend, "", "tcp:example.org:80", false, "svc"
		}},
		{"backend socket path too long", "service whoami {\n listen :1\n mode backend\n backend unix:/" + strings.Repeat("s", 107) + "\n run-as account svc\n}\n", 4, func(c *Config) {
			s := c.Services[0]
			s.Mode, s.Program, s.Backend, s.RunAsUser, s.Account = Backend, "", "unix:/"+strings.Repeat("s", 107), false, "svc"
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			perrs := parseErrors(t, tt.src)
			if len(perrs) != 1 || perrs[0].Line != tt.line {
				t.Fatalf("Parse errors %q, want one on line %d", messages(perrs), tt.line)
			}
			c := handBuilt()
			if errs := validateErrors(c); len(errs) != 0 {
				t.Fatalf("the unedited hand-built configuration fails validation: %q", messages(errs))
			}
			tt.edit(c)
			_, err := c.Check()
			var cerrs *Errors
			if !errors.As(err, &cerrs) {
				t.Fatalf("Check of the hand-built configuration: %v, want *Errors", err)
			}
			got := (*cerrs)[0]
			if got.Msg != perrs[0].Msg || got.Line != 0 || got.Path != "" {
				t.Errorf("Check's first error\n  %s\nParse's\n  %s\nwant the same message, with no line", got, perrs[0])
			}
		})
	}
}

// validateErrors runs validate on c alone.
func validateErrors(c *Config) Errors {
	errs := collector{path: c.Path}
	c.validate(&errs, nil)
	return errs.errs
}

// TestValidateModeTable walks the mode table: for every mode and every
// modal directive, a service of that mode that sets the directive is
// accepted if the mode requires or allows it and refused, with the table's
// reason, otherwise; leaving out what a mode requires gives the table's
// message; and the table's ignored directives give its warning.
func TestValidateModeTable(t *testing.T) {
	// setters gives each directive a valid value other than its default.
	setters := map[string]func(s *Service){
		"program":          func(s *Service) { s.Program = "/usr/lib/dovecot/imap" },
		"args":             func(s *Service) { s.Args = []string{"-c", "/etc/x.conf"} },
		"exec-worker":      func(s *Service) { s.ExecWorker = PerConnection },
		"backend":          func(s *Service) { s.Backend = "tcp:127.0.0.1:8080" },
		"identity-headers": func(s *Service) { s.IdentityHeaders = []string{"X-Grafana-User"} },
		"run-as":           func(s *Service) { s.RunAsUser, s.Account = false, "netauth-svc" },
		"idle-timeout":     func(s *Service) { s.IdleTimeout = time.Minute },
		"instance-listen": func(s *Service) {
			s.InstanceListen = InstanceSocketActivation
		},
		"instance-start-timeout": func(s *Service) { s.InstanceStartTimeout = time.Minute },
	}
	for _, d := range serviceDirectives {
		if setters[d.name] == nil {
			t.Fatalf("serviceDirectives has %q, which this test cannot set: add it to setters", d.name)
		}
	}
	// base returns a service of rule's mode with every requirement met.
	base := func(r *modeRule) *Service {
		s := newService("s", 0)
		s.Mode = r.mode
		s.Listen = []string{"127.0.0.1:1"}
		s.Users = []string{"*"}
		for _, need := range r.requires {
			setters[need.directive](s)
			if !need.met(s) {
				t.Fatalf("mode %s: setting %s does not meet its requirement", r.mode, need.directive)
			}
		}
		return s
	}
	validate := func(s *Service) (Errors, []string) {
		c := newConfig("")
		c.Services = []*Service{s}
		errs := collector{}
		var warnings []string
		c.validate(&errs, func(_ int, msg string) { warnings = append(warnings, msg) })
		return errs.errs, warnings
	}
	modes := 0
	for !strings.HasPrefix(Mode(modes).String(), "mode(") {
		modes++
	}
	if len(modeTable) != modes {
		t.Errorf("the mode table has %d rows, want one per mode (%d)", len(modeTable), modes)
	}
	for i := range modeTable {
		r := &modeTable[i]
		if errs, warnings := validate(base(r)); len(errs) != 0 || len(warnings) != 0 {
			t.Errorf("mode %s with its requirements: %q, warnings %q; want none", r.mode, messages(errs), warnings)
		}
		for _, need := range r.requires {
			s := newService("s", 0)
			s.Mode, s.Listen, s.Users = r.mode, []string{"127.0.0.1:1"}, []string{"*"}
			for _, other := range r.requires {
				if other.directive != need.directive {
					setters[other.directive](s)
				}
			}
			errs, _ := validate(s)
			want := strings.ReplaceAll(strings.ReplaceAll(need.msg, "%[1]s", `"s"`), "%[2]s", "s")
			if len(errs) != 1 || errs[0].Msg != want {
				t.Errorf("mode %s without %s: %q, want %q", r.mode, need.directive, messages(errs), want)
			}
		}
		for _, d := range serviceDirectives {
			s := base(r)
			setters[d.name](s)
			errs, warnings := validate(s)
			required := false
			for _, need := range r.requires {
				required = required || need.directive == d.name
			}
			switch {
			case !d.modal || required || contains(r.allows, d.name):
				if len(errs) != 0 {
					t.Errorf("mode %s takes %s, but validate refuses it: %q", r.mode, d.name, messages(errs))
				}
			case r.forbids[d.name] != "":
				if len(errs) != 1 || !strings.Contains(errs[0].Msg, d.name+" is not used in "+r.mode.String()+" mode: "+r.forbids[d.name]) {
					t.Errorf("mode %s with %s: %q, want the table's reason %q", r.mode, d.name, messages(errs), r.forbids[d.name])
				}
			default:
				want := d.name + " is used only in " + orList(modesTaking(d.name)) + " mode"
				if len(errs) != 1 || !strings.Contains(errs[0].Msg, want) {
					t.Errorf("mode %s with %s: %q, want %q", r.mode, d.name, messages(errs), want)
				}
			}
			ignoredHere := false
			for _, ig := range r.ignores {
				if ig.directive == d.name && (ig.when == nil || ig.when(s)) {
					ignoredHere = true
					if len(warnings) != 1 || !strings.Contains(warnings[0], d.name+" is ignored "+ig.how+" ("+ig.why+")") {
						t.Errorf("mode %s with %s: warnings %q, want the table's", r.mode, d.name, warnings)
					}
				}
			}
			if !ignoredHere && len(warnings) != 0 {
				t.Errorf("mode %s with %s: unexpected warnings %q", r.mode, d.name, warnings)
			}
		}
	}
	// The conditional ignore: exec with per-connection workers ignores
	// idle-timeout; with per-user workers it uses it.
	s := base(ruleOf(Exec))
	s.IdleTimeout = time.Minute
	if _, w := validate(s); len(w) != 0 {
		t.Errorf("exec per-user with idle-timeout: warnings %q", w)
	}
	s.ExecWorker = PerConnection
	if _, w := validate(s); len(w) != 1 || !strings.Contains(w[0], `idle-timeout is ignored with "exec-worker per-connection"`) {
		t.Errorf("exec per-connection with idle-timeout: warnings %q", w)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestModeTableInConfigDoc: docs/CONFIG.md shows the mode table as
// ModeTable renders it.
func TestModeTableInConfigDoc(t *testing.T) {
	data, err := os.ReadFile("../../docs/CONFIG.md")
	if err != nil {
		t.Fatal(err)
	}
	if table := ModeTable(); !strings.Contains(string(data), table) {
		t.Errorf("docs/CONFIG.md does not contain the mode table; put this under Modes:\n%s", table)
	}
}
