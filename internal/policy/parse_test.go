// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// exampleConfig is the file shipped as examples/netauthd.conf.
const exampleConfig = "../../examples/netauthd.conf"

// stripped returns a copy of c without its unexported bookkeeping, for
// comparison with a Config written out in a test.
func stripped(c *Config) *Config {
	out := *c
	out.lines = nil
	out.Services = nil
	for _, s := range c.Services {
		t := *s
		t.lines, t.listenLines, t.userLines, t.groupLines = nil, nil, nil, nil
		out.Services = append(out.Services, &t)
	}
	return &out
}

// mustParse parses src and fails the test on any error.
func mustParse(t *testing.T, src string) *Config {
	t.Helper()
	c, err := Parse("netauthd.conf", strings.NewReader(src))
	if err != nil {
		t.Fatalf("Parse: %v\ninput:\n%s", err, src)
	}
	return c
}

// parseErrors parses src, which must be invalid, and returns its errors.
func parseErrors(t *testing.T, src string) Errors {
	t.Helper()
	c, err := Parse("netauthd.conf", strings.NewReader(src))
	if err == nil {
		t.Fatalf("Parse succeeded (%+v), want errors\ninput:\n%s", c, src)
	}
	var errs *Errors
	if !errors.As(err, &errs) {
		t.Fatalf("Parse error %T %v, want *Errors", err, err)
	}
	if c != nil {
		t.Errorf("Parse returned a config along with errors")
	}
	return *errs
}

func TestParseExample(t *testing.T) {
	// Copy the shipped example, so that it can never stop parsing.
	data, err := os.ReadFile(exampleConfig)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "netauthd.conf")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatalf("Load(%s): %v", path, err)
	}
	want := &Config{
		Path:               path,
		HostKey:            "/var/lib/netauth/host_ed25519_key",
		AuditLog:           "/var/log/netauth/audit.log",
		AuthorizedKeysDir:  "/etc/netauth/authorized_keys",
		HomeAuthorizedKeys: false,
		TicketLifetime:     time.Hour,
		MaxClockSkew:       5 * time.Minute,
		HandshakeTimeout:   10 * time.Second,
		RevocationCheck:    time.Second,
		SpareWorkers:       DefaultSpareWorkers,
		Services: []*Service{{
			Name:            "whoami",
			Line:            lineOf(t, string(data), "service whoami {"),
			Listen:          []string{"127.0.0.1:4000"},
			Mode:            PerUser,
			Program:         "/usr/libexec/netauth/netauthd-acceptor",
			Args:            []string{"-worker", "whoami"},
			Users:           []string{"*"},
			RunAsUser:       true,
			MaxWorkers:      100,
			MaxConnsPerUser: 10,
			IdleTimeout:     5 * time.Minute,
		}, {
			Name:            "echo",
			Line:            lineOf(t, string(data), "service echo {"),
			Listen:          []string{"127.0.0.1:4001"},
			Mode:            PerConnection,
			Program:         "/usr/libexec/netauth/netauthd-acceptor",
			Args:            []string{"-worker", "echo"},
			Users:           []string{"*"},
			RunAsUser:       true,
			MaxWorkers:      DefaultMaxWorkers,
			MaxConnsPerUser: DefaultMaxConnsPerUser,
			IdleTimeout:     DefaultIdleTimeout,
		}},
	}
	if g := stripped(got); !reflect.DeepEqual(g, want) {
		t.Errorf("example parsed to\n%+v\nwant\n%+v", g, want)
		for i := range min(len(g.Services), len(want.Services)) {
			t.Errorf("service %d:\n%+v\nwant\n%+v", i, *g.Services[i], *want.Services[i])
		}
	}
	if got.Lookup("whoami") != got.Services[0] || got.Lookup("nope") != nil {
		t.Errorf("Lookup does not find the services")
	}

	// The service blocks commented out (they need Dovecot, an account) parse once
	// uncommented.
	var lines []string
	in := false
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "#service ") {
			in = true
		}
		if in {
			l = strings.TrimPrefix(l, "#")
		}
		if in && l == "}" {
			in = false
		}
		lines = append(lines, l)
	}
	all := strings.Join(lines, "\n")
	if got, err = Parse(path, strings.NewReader(all)); err != nil {
		t.Fatalf("the example with its services uncommented: %v", err)
	}
	want.Services = append(want.Services, &Service{
		Name:            "imap",
		Line:            lineOf(t, all, "service imap {"),
		Listen:          []string{"127.0.0.1:1143"},
		Mode:            Exec,
		Program:         "/usr/lib/dovecot/imap",
		Args:            []string{"-c", "/etc/netauth/dovecot-imap.conf"},
		Users:           []string{"*"},
		RunAsUser:       true,
		MaxWorkers:      DefaultMaxWorkers,
		MaxConnsPerUser: DefaultMaxConnsPerUser,
		IdleTimeout:     DefaultIdleTimeout,
	}, &Service{
		Name:            "web",
		Line:            lineOf(t, all, "service web {"),
		Listen:          []string{":8443"},
		Mode:            Backend,
		Backend:         "tcp:127.0.0.1:8080",
		Groups:          []string{"staff"},
		Account:         "netauth-web",
		MaxWorkers:      DefaultMaxWorkers,
		MaxConnsPerUser: DefaultMaxConnsPerUser,
		IdleTimeout:     DefaultIdleTimeout,
	})
	if g := stripped(got); !reflect.DeepEqual(g, want) {
		for i := range min(len(g.Services), len(want.Services)) {
			t.Errorf("uncommented, service %d:\n%+v\nwant\n%+v", i, *g.Services[i], *want.Services[i])
		}
		t.Errorf("uncommented, %d services, want %d", len(g.Services), len(want.Services))
	}
}

// lineOf returns the 1-based line of the first line of text containing s.
func lineOf(t *testing.T, text, s string) int {
	t.Helper()
	for i, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			return i + 1
		}
	}
	t.Fatalf("%q not found", s)
	return 0
}

func TestParseDefaults(t *testing.T) {
	c := mustParse(t, "service s {\n listen :4000\n program /bin/true\n}\n")
	want := &Config{
		Path:              "netauthd.conf",
		HostKey:           DefaultHostKey,
		AuditLog:          DefaultAuditLog,
		AuthorizedKeysDir: DefaultAuthorizedKeysDir,
		TicketLifetime:    DefaultTicketLifetime,
		MaxClockSkew:      DefaultMaxClockSkew,
		HandshakeTimeout:  DefaultHandshakeTimeout,
		RevocationCheck:   DefaultRevocationCheck,
		SpareWorkers:      DefaultSpareWorkers,
		Services: []*Service{{
			Name: "s", Line: 1, Listen: []string{":4000"}, Mode: PerUser, Program: "/bin/true",
			RunAsUser: true, MaxWorkers: DefaultMaxWorkers, MaxConnsPerUser: DefaultMaxConnsPerUser,
			IdleTimeout: DefaultIdleTimeout,
		}},
	}
	if g := stripped(c); !reflect.DeepEqual(g, want) {
		t.Errorf("got\n%+v\n%+v\nwant\n%+v\n%+v", g, *g.Services[0], want, *want.Services[0])
	}
}

// TestParseSpareWorkers: spare-workers takes 0 (off) to MaxSpareWorkers.
func TestParseSpareWorkers(t *testing.T) {
	for _, n := range []int{0, 2, MaxSpareWorkers} {
		if c := mustParse(t, fmt.Sprintf("spare-workers %d\n", n)); c.SpareWorkers != n {
			t.Errorf("spare-workers %d: got %d", n, c.SpareWorkers)
		}
	}
}

func TestParseEmpty(t *testing.T) {
	for _, src := range []string{"", "\n\n", "# only a comment\n", "   \t  \r\n"} {
		c := mustParse(t, src)
		if len(c.Services) != 0 || c.HostKey != DefaultHostKey {
			t.Errorf("Parse(%q) = %+v", src, c)
		}
	}
}

func TestParseValues(t *testing.T) {
	c := mustParse(t, `host-key "/etc/net auth/key"
authorized-keys-dir none
home-authorized-keys yes
ticket-lifetime off
max-clock-skew 90s
handshake-timeout 1500ms
revocation-check 2s
service a {
	listen [::1]:80 localhost:81
	listen 10.0.0.1:82
	mode per-connection
	program /srv/a
	args "" "say \"hi\"" back\slash "x\\y" a"b c"d # comment
	users * carol
	users carol dave
	groups wheel
	groups admins
	run-as account svc-a
	max-workers 1
	max-connections-per-user 1000000
	idle-timeout 1s
}
service b {
	listen :9000 # no program args, users or groups
	program /srv/b
}
`)
	if c.HostKey != "/etc/net auth/key" || c.AuthorizedKeysDir != "" || !c.HomeAuthorizedKeys ||
		c.TicketLifetime != ResumptionOff || c.MaxClockSkew != 90*time.Second ||
		c.HandshakeTimeout != 1500*time.Millisecond || c.RevocationCheck != 2*time.Second || c.KeyCommand != nil {
		t.Errorf("globals: %+v", c)
	}
	a := c.Lookup("a")
	if a == nil {
		t.Fatal("service a missing")
	}
	wantArgs := []string{"", `say "hi"`, `back\slash`, `x\y`, "ab cd"}
	if !reflect.DeepEqual(a.Args, wantArgs) {
		t.Errorf("args = %q, want %q", a.Args, wantArgs)
	}
	if !reflect.DeepEqual(a.Listen, []string{"[::1]:80", "localhost:81", "10.0.0.1:82"}) ||
		!reflect.DeepEqual(a.Users, []string{"*", "carol", "dave"}) ||
		!reflect.DeepEqual(a.Groups, []string{"wheel", "admins"}) ||
		a.Mode != PerConnection || a.RunAsUser || a.Account != "svc-a" ||
		a.MaxWorkers != 1 || a.MaxConnsPerUser != 1000000 || a.IdleTimeout != time.Second {
		t.Errorf("service a: %+v", a)
	}
	if !reflect.DeepEqual(a.userLines, []int{14, 14, 15}) || !reflect.DeepEqual(a.listenLines, []int{9, 9, 10}) {
		t.Errorf("entry lines: users %v listen %v", a.userLines, a.listenLines)
	}
	if b := c.Lookup("b"); b == nil || b.Line != 23 || b.Args != nil || len(b.Users) != 0 {
		t.Errorf("service b: %+v", b)
	}
}

func TestParseTicketLifetimeZero(t *testing.T) {
	if c := mustParse(t, "ticket-lifetime 0\n"); c.TicketLifetime >= 0 {
		t.Errorf("ticket-lifetime 0 gave %v, want a negative value", c.TicketLifetime)
	}
}

func TestParseCRLF(t *testing.T) {
	c := mustParse(t, "service s {\r\n listen :1\r\n program /x\r\n}\r\n")
	if c.Services[0].Program != "/x" {
		t.Errorf("program = %q", c.Services[0].Program)
	}
}

// svc wraps service directives in a block starting on line 1, so that
// body line i is file line i+1; the block has a listen and a program unless
// the body gives its own.
func svc(body string) string {
	return "service whoami {\n" + body + "}\n"
}

func TestParseErrors(t *testing.T) {
	const minimal = " listen :4000\n program /bin/true\n"
	tests := []struct {
		name string
		src  string
		line int
		msg  string // the whole message, or a prefix when it ends in "..."
	}{
		{"unknown with suggestion", svc(minimal + " lisen :4001\n"), 4,
			`unknown directive "lisen" in service "whoami" (did you mean "listen"?)`},
		{"unknown global with suggestion", "hostkey /k\n", 1,
			`unknown directive "hostkey" (did you mean "host-key"?)`},
		{"unknown case", svc(minimal + " Program /bin/true\n"), 4,
			`unknown directive "Program" in service "whoami" (did you mean "program"?)`},
		{"unknown no suggestion", svc(minimal + " frobnicate yes\n"), 4,
			`unknown directive "frobnicate" in service "whoami": want one of listen, mode, program, args, backend, identity-headers, instance-listen, instance-start-timeout, exec-worker, users, groups, run-as, max-workers, max-connections-per-user, idle-timeout`},
		{"unknown global no suggestion", "frobnicate yes\n", 1,
			`unknown directive "frobnicate": want one of host-key, audit-log, authorized-keys-dir, home-authorized-keys, key-command, ticket-lifetime, max-clock-skew, handshake-timeout, revocation-check, spare-workers, metrics-listen, trusted-user-ca-keys, authorized-principals-dir, authorized-principals-command, revoked-keys, host-certificate, service`},
		{"bad mode", svc(minimal + " mode peruser\n"), 4,
			`mode "peruser": want per-user, per-connection, exec, backend, http-backend or instance`},
		{"no program", svc(" listen :4000\n"), 1,
			`service "whoami" has no program: add "program /absolute/path/of/the/worker"`},
		{"no listen", svc(" program /bin/true\n"), 1,
			`service "whoami" has no listen address: add "listen HOST:PORT", for example "listen 127.0.0.1:4000"`},
		{"missing close", "\n\nservice whoami {\n" + minimal, 3,
			`service "whoami" is not closed: add a line with only "}" after its directives`},
		{"missing close before next", "service a {\n" + minimal + "service b {\n" + minimal + "}\n", 4,
			`service block starts inside service "a", which is not closed: add a line with only "}" before this one`},
		{"close without service", "}\n", 1, `"}" without a service block to close`},
		{"close twice", svc(minimal) + "}\n", 5, `"}" without a service block to close`},
		{"close with junk", "service a {\n" + minimal + "} x\n", 4, `"}" must be on a line of its own`},
		{"close at end of directive", "service a {\n listen :1\n program /bin/true }\n", 3, `"}" must be on a line of its own`},
		{"duplicate service", svc(minimal) + svc(minimal), 5,
			`service "whoami" is defined twice (first on line 1): rename or remove one`},
		{"program twice", svc(minimal + " program /bin/false\n"), 4,
			`"program" is given twice in service "whoami" (first on line 3): keep one`},
		{"global twice", "host-key /a\nhost-key /b\n", 2, `"host-key" is given twice (first on line 1): keep one`},
		{"mode twice", svc(minimal + " mode per-user\n mode per-user\n"), 5,
			`"mode" is given twice in service "whoami" (first on line 4): keep one`},
		{"run-as twice", svc(minimal + " run-as user\n run-as user\n"), 5,
			`"run-as" is given twice in service "whoami" (first on line 4): keep one`},
		{"listen twice same address", svc(minimal + " listen :4000\n"), 4,
			`listen :4000 is given twice in service "whoami" (first on line 2): keep one`},
		{"bad duration", "ticket-lifetime 1 hour\n", 1,
			`"ticket-lifetime" takes one value, got 2: write "ticket-lifetime 1h"`},
		{"bad duration word", "max-clock-skew five\n", 1,
			`max-clock-skew "five": want a duration such as 90s, 5m or 1h`},
		{"duration without unit", svc(minimal + " idle-timeout 300\n"), 4,
			`idle-timeout "300": a duration needs a unit: write for example 300s or 300m`},
		{"negative duration", "handshake-timeout -5s\n", 1, `handshake-timeout -5s: must not be negative`},
		{"zero duration", "revocation-check 0s\n", 1, `revocation-check 0s is too short: the minimum is 100ms`},
		{"spare workers not a number", "spare-workers two\n", 1, `spare-workers "two": want a whole number from 0 (no spare workers) to 64`},
		{"negative spare workers", "spare-workers -1\n", 1, `spare-workers "-1": want a whole number from 0 (no spare workers) to 64`},
		{"too many spare workers", "spare-workers 65\n", 1, `spare-workers 65 is too large: the maximum is 64`},
		{"long duration", "ticket-lifetime 48h\n", 1, `ticket-lifetime 48h is too long: the maximum is 24h`},
		{"zero idle", svc(minimal + " idle-timeout 0\n"), 4, `idle-timeout 0s is too short: the minimum is 1ms`},
		{"zero limit", svc(minimal + " max-workers 0\n"), 4, `max-workers 0: must be at least 1`},
		{"negative limit", svc(minimal + " max-connections-per-user -3\n"), 4,
			`max-connections-per-user -3: must be at least 1`},
		{"word limit", svc(minimal + " max-workers ten\n"), 4, `max-workers "ten": want a whole number such as 100`},
		{"huge limit", svc(minimal + " max-workers 99999999999999999999\n"), 4,
			`max-workers "99999999999999999999" is too large: the maximum is 1000000`},
		{"relative program", svc(" listen :4000\n program bin/whoami\n"), 3,
			`program "bin/whoami" is not an absolute path: write it starting with "/"`},
		{"program with space", svc(" listen :4000\n program /usr/my prog\n"), 3,
			`"program" takes one value, got 2: write "program /absolute/path"; put the program's arguments in "args"`},
		{"relative host key", "host-key host_key\n", 1, `host-key "host_key" is not an absolute path: write it starting with "/"`},
		{"relative key command", "key-command netauth-keys %u\n", 1,
			`key-command program "netauth-keys" is not an absolute path: write it starting with "/"`},
		{"global in service", svc(minimal + " host-key /k\n"), 4,
			`"host-key" is a global directive and cannot be inside service "whoami": move it above the first service block`},
		{"global after service", svc(minimal) + "audit-log /a\n", 5,
			`global directive "audit-log" comes after the first service block (line 1): move it above the service blocks`},
		{"service directive outside", "listen :4000\n", 1,
			`"listen" belongs inside a service block: "service NAME {" ... "}"`},
		{"service directive after block", svc(minimal) + "users alice\n", 5,
			`"users" belongs inside a service block: "service NAME {" ... "}"`},
		{"service without name", "service\n", 1, `service needs a name: write "service NAME {"`},
		{"service without brace", "service whoami\n{\n" + minimal + "}\n", 1,
			`service "whoami": the line must end with "{": write "service whoami {"`},
		{"service brace attached", "service whoami{\n" + minimal + "}\n", 1,
			`put a space between the service name and "{": write "service whoami {"`},
		{"service two words", "service who ami {\n" + minimal + "}\n", 1,
			`service name must be one word followed by "{": write "service NAME {"`},
		{"service one line", "service whoami { listen :1 }\n", 1,
			`unexpected "listen" after "{": put each directive on a line of its own`},
		{"bad service name", "service -x {\n" + minimal + "}\n", 1,
			`service name "-x" is not valid: use 1 to 64 characters from A-Z a-z 0-9 . _ @ -, not starting with "-" or "."`},
		{"stray brace", "{\n", 1, `unexpected "{": a block starts with "service NAME {" on one line`},
		{"missing value", svc(minimal + " users\n"), 4, `"users" needs a value: write "users NAME..."`},
		{"missing path", "authorized-keys-dir\n", 1,
			`"authorized-keys-dir" needs a value: write "authorized-keys-dir /absolute/path" or "authorized-keys-dir none"`},
		{"bad user", svc(minimal + " users al/ice\n"), 4,
			`user name "al/ice" is not valid: use 1 to 64 characters from A-Z a-z 0-9 . _ @ -, not starting with "-" or "." (or "*" for every user with a key)`},
		{"star group", svc(minimal + " groups *\n"), 4,
			`groups cannot be "*": to allow every user with a key write "users *"`},
		{"bad group", svc(minimal + " groups .x\n"), 4, `group name ".x" is not valid: ...`},
		{"run-as root", svc(minimal + " run-as root\n"), 4, `run-as "root": want "run-as user" or "run-as account NAME"`},
		{"run-as account no name", svc(minimal + " run-as account\n"), 4,
			`run-as account needs the account's name: write "run-as account NAME"`},
		{"run-as user name", svc(minimal + " run-as user bob\n"), 4,
			`run-as user takes no name: it runs workers as the authenticated user; for a fixed account write "run-as account bob"`},
		{"run-as too many", svc(minimal + " run-as account a b\n"), 4,
			`"run-as" takes at most 2 values, got 3: write "run-as user" or "run-as account NAME"`},
		{"home keys", "home-authorized-keys true\n", 1, `home-authorized-keys "true": want yes or no`},
		{"listen no port", svc(" listen 127.0.0.1\n program /p\n"), 2,
			`listen "127.0.0.1": want HOST:PORT, such as 127.0.0.1:4000, [::1]:4000 or :4000`},
		{"listen port big", svc(" listen :65536\n program /p\n"), 2, `listen ":65536": port "65536": want a number from 0 to 65535 (0: any free port)`},
		{"listen port name", svc(" listen :http\n program /p\n"), 2, `listen ":http": port "http": want a number from 0 to 65535 (0: any free port)`},
		{"listen host name", svc(" listen example.org:80\n program /p\n"), 2,
			`listen "example.org:80": host "example.org": want an IP address, "localhost", or nothing (as in ":4000") for all addresses; host names are not resolved`},
		{"listen v6 unbracketed", svc(" listen ::1:80\n program /p\n"), 2, `listen "::1:80": want HOST:PORT...`},
		{"unterminated quote", `args "hello` + "\n", 1, `the double quote at column 6 is not closed: add the closing "`},
		{"bad escape", svc(minimal + ` args "a\n"` + "\n"), 4, `unknown escape \n at column 9: inside double quotes only \" and \\ are escapes (write \\ for a backslash)`},
		{"control character", "host-key /a\x00b\n", 1, `control character 0x00 at column 12: remove it`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := parseErrors(t, tt.src)
			e := errs[0]
			prefix, isPrefix := strings.CutSuffix(tt.msg, "...")
			if e.Line != tt.line || e.Path != "netauthd.conf" ||
				(isPrefix && !strings.HasPrefix(e.Msg, prefix)) || (!isPrefix && e.Msg != tt.msg) {
				t.Errorf("first error\n  %s\nwant\n  netauthd.conf:%d: %s\nall errors:\n%v", e, tt.line, tt.msg, errs)
			}
		})
	}
}

func TestParseReportsEveryError(t *testing.T) {
	src := `hostkey /k
ticket-lifetime forever
service whoami {
    lisen :4000
    mode peruser
}
`
	errs := parseErrors(t, src)
	want := []string{
		`netauthd.conf:1: unknown directive "hostkey" (did you mean "host-key"?)`,
		`netauthd.conf:2: ticket-lifetime "forever": want a duration such as 90s, 5m or 1h`,
		`netauthd.conf:4: unknown directive "lisen" in service "whoami" (did you mean "listen"?)`,
		`netauthd.conf:5: mode "peruser": want per-user, per-connection, exec, backend, http-backend or instance`,
		`netauthd.conf:3: service "whoami" has no listen address: add "listen HOST:PORT", for example "listen 127.0.0.1:4000"`,
		`netauthd.conf:3: service "whoami" has no program: add "program /absolute/path/of/the/worker"`,
	}
	if got := errs.Error(); got != strings.Join(want, "\n") {
		t.Errorf("errors:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
	var one *Error
	if err := error(&errs); !errors.As(err, &one) || one != errs[0] {
		t.Errorf("errors.As does not find the first *Error")
	}
}

func TestParseErrorLimit(t *testing.T) {
	src := strings.Repeat("bogus\n", 500)
	errs := parseErrors(t, src)
	if len(errs) != MaxErrors {
		t.Fatalf("%d errors, want %d", len(errs), MaxErrors)
	}
	last := errs[len(errs)-1]
	if last.Line != MaxErrors || !strings.HasPrefix(last.Msg, "too many errors") {
		t.Errorf("last error %v", last)
	}
}

func TestParseLongValues(t *testing.T) {
	long := strings.Repeat("x", 100000)
	errs := parseErrors(t, long+"\n")
	if len(errs[0].Error()) > 600 { // the list of directives and a bounded quote of the name
		t.Errorf("error message for a long directive is %d bytes long", len(errs[0].Error()))
	}
	c := mustParse(t, svc(" listen :1\n program /p\n args "+long+"\n"))
	if c.Services[0].Args[0] != long {
		t.Errorf("long argument not kept")
	}
}

func TestParseTooLarge(t *testing.T) {
	big := strings.Repeat("# filler\n", MaxFileSize/9+1)
	if _, err := Parse("big.conf", strings.NewReader(big)); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("Parse of %d bytes: %v", len(big), err)
	}
	path := filepath.Join(t.TempDir(), "big.conf")
	if err := os.WriteFile(path, []byte(big), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Errorf("Load of %d bytes: %v", len(big), err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.conf")); err == nil {
		t.Errorf("Load of a missing file succeeded")
	}
}

func TestErrorFormat(t *testing.T) {
	for _, tt := range []struct {
		e    Error
		want string
	}{
		{Error{"a.conf", 3, "bad"}, "a.conf:3: bad"},
		{Error{"a.conf", 0, "bad"}, "a.conf: bad"},
		{Error{"", 0, "bad"}, "built-in configuration: bad"},
	} {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("%+v.Error() = %q, want %q", tt.e, got, tt.want)
		}
	}
}

func TestModeString(t *testing.T) {
	if PerUser.String() != "per-user" || PerConnection.String() != "per-connection" || Mode(7).String() != "mode(7)" {
		t.Errorf("Mode strings: %v %v %v", PerUser, PerConnection, Mode(7))
	}
}

func TestAllowed(t *testing.T) {
	s := &Service{Users: []string{"alice", "bob"}, Groups: []string{"staff"}}
	star := &Service{Users: []string{"*"}}
	nobody := &Service{}
	groupOnly := &Service{Groups: []string{"staff", "wheel"}}
	tests := []struct {
		s      *Service
		user   string
		groups []string
		want   bool
	}{
		{s, "alice", nil, true},
		{s, "bob", []string{"users"}, true},
		{s, "carol", nil, false},
		{s, "carol", []string{"users", "staff"}, true},
		{s, "Alice", nil, false},
		{star, "anyone", nil, true},
		{star, "", nil, false},
		{star, "../etc", nil, false},
		{nobody, "alice", []string{"staff"}, false},
		{groupOnly, "dave", []string{"wheel"}, true},
		{groupOnly, "dave", []string{"alice"}, false},
		{groupOnly, "staff", nil, false},
	}
	for _, tt := range tests {
		if got := tt.s.Allowed(tt.user, tt.groups); got != tt.want {
			t.Errorf("%+v.Allowed(%q, %q) = %v, want %v", tt.s, tt.user, tt.groups, got, tt.want)
		}
	}
}

func TestSuggest(t *testing.T) {
	for in, want := range map[string]string{
		"lisen": "listen", "host_key": "host-key", "user": "users", "group": "groups",
		"max-connections": "max-connections-per-user", "runas": "run-as", "Service": "service",
		"xyz": "", "frobnicate": "", "": "",
	} {
		if got := suggest(directiveTable(), in); got != want {
			t.Errorf("suggest(%q) = %q, want %q", in, got, want)
		}
	}
}

func BenchmarkParseExample(b *testing.B) {
	data, err := os.ReadFile(exampleConfig)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := Parse("netauthd.conf", bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
	}
}

func TestParseManyValuesIsFast(t *testing.T) {
	var b strings.Builder
	b.WriteString("service s {\n program /p\n listen")
	for i := 1; i <= 60000; i++ {
		fmt.Fprintf(&b, " :%d", i)
	}
	b.WriteString("\n users")
	for i := range 60000 {
		fmt.Fprintf(&b, " u%d", i)
	}
	b.WriteString("\n}\n")
	start := time.Now()
	c, err := Parse("big.conf", strings.NewReader(b.String()))
	if err != nil || len(c.Services[0].Listen) != 60000 || len(c.Services[0].Users) != 60000 {
		t.Fatalf("Parse: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Parse of %d bytes took %v", b.Len(), d)
	}
}

func TestParseRecoversWithOneError(t *testing.T) {
	const minimal = " listen :4000\n program /bin/true\n"
	for _, src := range []string{
		"service whoami\n{\n" + minimal + "}\n",
		"service whoami{\n" + minimal + "}\n",
		"service a {\n" + minimal + "service b {\n" + minimal + "}\n",
		"service a {\n" + minimal + " users x }\nservice b {\n" + minimal + "}\n",
		"service a {\n" + minimal + "} junk\nservice b {\n" + minimal + "}\n",
		"service a {\n" + minimal + "}\n}\n",
	} {
		errs := parseErrors(t, src)
		if len(errs) != 1 {
			t.Errorf("input\n%s\ngave %d errors, want 1:\n%v", src, len(errs), errs)
		}
	}
}
