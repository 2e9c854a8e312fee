// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// program writes an executable file with mode perm in a new temporary
// directory and returns its path.
func program(t *testing.T, perm os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "worker")
	if err := os.WriteFile(path, []byte("#!/bin/sh\nexit 0\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	// Set the mode explicitly: WriteFile's is filtered by the umask.
	if err := os.Chmod(path, perm); err != nil {
		t.Fatal(err)
	}
	return path
}

// checkSrc parses src (in which PROG stands for prog) and runs Check.
func checkSrc(t *testing.T, src, prog string) ([]string, Errors) {
	t.Helper()
	c := mustParse(t, strings.ReplaceAll(src, "PROG", prog))
	warnings, err := c.Check()
	if err == nil {
		return warnings, nil
	}
	var errs *Errors
	if !errors.As(err, &errs) {
		t.Fatalf("Check error %T %v, want *Errors", err, err)
	}
	return warnings, *errs
}

// hasMsg reports whether one of msgs contains want.
func hasMsg(msgs []string, want string) bool {
	for _, m := range msgs {
		if strings.Contains(m, want) {
			return true
		}
	}
	return false
}

// messages returns the errors' strings.
func messages(errs Errors) []string {
	var out []string
	for _, e := range errs {
		out = append(out, e.Error())
	}
	return out
}

// okService is a service that passes Check when PROG is a good program.
const okService = "service whoami {\n listen 127.0.0.1:4000\n program PROG\n users *\n}\n"

func TestCheckProgram(t *testing.T) {
	good := program(t, 0o755)
	warnings, errs := checkSrc(t, okService, good)
	if errs != nil {
		t.Fatalf("Check of a root-owned 0755 program: %v", errs)
	}
	if hasMsg(warnings, "whoami") {
		t.Errorf("unexpected warnings about the service: %q", warnings)
	}

	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "subdir"), 0o755); err != nil {
		t.Fatal(err)
	}
	open := t.TempDir()
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	inOpen := filepath.Join(open, "worker")
	if err := os.WriteFile(inOpen, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(inOpen, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(inOpen, link); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name, prog, want string
	}{
		{"world writable", program(t, 0o777), "is writable by group or others (mode 0777)"},
		{"group writable", program(t, 0o775), "is writable by group or others (mode 0775)"},
		{"not executable", program(t, 0o644), "is not executable (mode 0644)"},
		{"missing", filepath.Join(dir, "nope"), "does not exist"},
		{"directory", filepath.Join(dir, "subdir"), "is not a regular file"},
		{"writable directory", inOpen, "directory " + open + " (above program " + inOpen + ") is writable by group or others"},
		{"symlink into writable directory", link, "directory " + open + " (above program " + link + ") is writable by group or others"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errs := checkSrc(t, okService, tt.prog)
			if len(errs) != 1 || errs[0].Line != 3 || !strings.Contains(errs[0].Msg, tt.want) {
				t.Errorf("Check errors %q, want one on line 3 containing %q", messages(errs), tt.want)
			}
		})
	}
}

func TestCheckProgramOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("ownership is only checked when running as root")
	}
	prog := program(t, 0o755)
	if err := os.Chown(prog, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	_, errs := checkSrc(t, okService, prog)
	if len(errs) != 1 || !strings.Contains(errs[0].Msg, "is owned by uid 65534, not root") {
		t.Errorf("Check errors %q, want one about the owner", messages(errs))
	}
}

func TestCheckAccounts(t *testing.T) {
	prog := program(t, 0o755)
	src := `service a {
 listen :4001
 program PROG
 users root netauth-no-such-user *
 groups netauth-no-such-group root
 run-as account netauth-no-such-account
}
service b {
 listen :4002
 program PROG
 groups root
 run-as account root
}
service c {
 listen :4003
 program PROG
}
`
	warnings, errs := checkSrc(t, src, prog)
	wantErrs := []string{
		`netauthd.conf:6: service "a": run-as account "netauth-no-such-account" does not exist: create it (for example "useradd --system --no-create-home netauth-no-such-account") or change run-as`,
		`netauthd.conf:12: service "b": run-as account "root" has uid 0: workers must never run as root; use an unprivileged account`,
	}
	if got := messages(errs); strings.Join(got, "\n") != strings.Join(wantErrs, "\n") {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantErrs, "\n"))
	}
	for _, want := range []string{
		`netauthd.conf:4: service "a": user "netauth-no-such-user" does not exist (yet), so this entry has no effect`,
		`netauthd.conf:5: service "a": group "netauth-no-such-group" does not exist (yet), so this entry has no effect`,
		`netauthd.conf:14: service "c" allows nobody: it lists no users or groups; add "users NAME...", "groups NAME..." or "users *" (every user with a key)`,
	} {
		if !hasMsg(warnings, want) {
			t.Errorf("warnings %q lack %q", warnings, want)
		}
	}
	if hasMsg(warnings, `user "root"`) || hasMsg(warnings, `group "root"`) {
		t.Errorf("warnings about existing root: %q", warnings)
	}
}

func TestCheckListenOverlap(t *testing.T) {
	prog := program(t, 0o755)
	src := `service a {
 listen 127.0.0.1:5000 [::1]:5001 :5002
 listen 127.0.0.1:5003
 listen 0.0.0.0:5003
 program PROG
 users *
}
service b {
 listen 127.0.0.1:5000
 listen localhost:5001
 listen 10.1.2.3:5002
 listen [::1]:5004
 listen 127.0.0.2:5004
 program PROG
 users *
}
`
	_, errs := checkSrc(t, src, prog)
	want := []string{
		`netauthd.conf:4: service "a": listen 0.0.0.0:5003 overlaps listen 127.0.0.1:5003 on line 3: the same address and port cannot be bound twice; keep one`,
		`netauthd.conf:9: service "b": listen 127.0.0.1:5000 overlaps listen 127.0.0.1:5000 of service "a" (line 2): each address and port can belong to one service only`,
		`netauthd.conf:10: service "b": listen localhost:5001 overlaps listen [::1]:5001 of service "a" (line 2): each address and port can belong to one service only`,
		`netauthd.conf:11: service "b": listen 10.1.2.3:5002 overlaps listen :5002 of service "a" (line 2): each address and port can belong to one service only`,
	}
	if got := messages(errs); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestBindingOverlap(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{":80", ":80", true},
		{":80", ":81", false},
		{":80", "127.0.0.1:80", true},
		{":80", "[::1]:80", true},
		{"0.0.0.0:80", "[::1]:80", false},
		{"0.0.0.0:80", "10.0.0.1:80", true},
		{"[::]:80", "10.0.0.1:80", true},
		{"[::]:80", "0.0.0.0:80", true},
		{"127.0.0.1:80", "[::ffff:127.0.0.1]:80", true},
		{"127.0.0.1:80", "127.0.0.2:80", false},
		{"localhost:80", "127.0.0.1:80", true},
		{"localhost:80", "[::1]:80", true},
		{"localhost:80", "10.0.0.1:80", false},
		{"[fe80::1%eth0]:80", "[fe80::1%eth1]:80", false},
	}
	for _, tt := range tests {
		a, okA := bindingOf(tt.a)
		b, okB := bindingOf(tt.b)
		if !okA || !okB {
			t.Fatalf("bindingOf(%q), bindingOf(%q) failed", tt.a, tt.b)
		}
		if got, rev := a.overlaps(b), b.overlaps(a); got != tt.want || rev != tt.want {
			t.Errorf("overlap(%s, %s) = %v, reversed %v; want %v", tt.a, tt.b, got, rev, tt.want)
		}
	}
}

func TestCheckGlobals(t *testing.T) {
	prog := program(t, 0o755)
	keysDir := t.TempDir()
	src := fmt.Sprintf(`authorized-keys-dir %s
key-command PROG --all
service a {
 listen :6000
 mode per-connection
 program PROG
 users *
 idle-timeout 1m
}
`, keysDir)
	warnings, errs := checkSrc(t, src, prog)
	if errs != nil {
		t.Fatalf("Check: %v", errs)
	}
	for _, want := range []string{
		`netauthd.conf:2: key-command has no %u argument, so it is not told which user's keys to print: add %u where the user name goes`,
		`netauthd.conf:8: service "a": idle-timeout is ignored in per-connection mode`,
	} {
		if !hasMsg(warnings, want) {
			t.Errorf("warnings %q lack %q", warnings, want)
		}
	}

	if err := os.Chmod(keysDir, 0o777); err != nil {
		t.Fatal(err)
	}
	_, errs = checkSrc(t, src, prog)
	if len(errs) != 1 || errs[0].Line != 1 || !strings.Contains(errs[0].Msg, "authorized-keys-dir "+keysDir+" is writable by group or others") {
		t.Errorf("Check errors %q, want one about the keys directory", messages(errs))
	}

	_, errs = checkSrc(t, "key-command /nonexistent/netauth-keys %u\n", prog)
	if len(errs) != 1 || errs[0].Msg != "key-command program /nonexistent/netauth-keys does not exist" {
		t.Errorf("Check errors %q, want one about the missing key command", messages(errs))
	}

	warnings, errs = checkSrc(t, "authorized-keys-dir none\n", prog)
	if errs != nil || !hasMsg(warnings, "no key source") || !hasMsg(warnings, "no services are defined") {
		t.Errorf("Check = %q, %v; want warnings about key sources and services", warnings, errs)
	}
}

func TestCheckConfigFile(t *testing.T) {
	prog := program(t, 0o755)
	path := filepath.Join(t.TempDir(), "netauthd.conf")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(okService, "PROG", prog)), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		perm os.FileMode
		ok   bool
	}{{0o644, true}, {0o600, true}, {0o666, false}} {
		if err := os.Chmod(path, tt.perm); err != nil {
			t.Fatal(err)
		}
		c, err := Load(path)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Check()
		if (err == nil) != tt.ok || (err != nil && !strings.Contains(err.Error(), "configuration file "+path+" is writable by group or others")) {
			t.Errorf("Check of a mode %#o configuration file: %v", tt.perm, err)
		}
	}
}

func TestDefault(t *testing.T) {
	prog := program(t, 0o755)
	c := Default(prog)
	warnings, err := c.Check()
	if err != nil {
		t.Fatalf("Default is not valid: %v", err)
	}
	if hasMsg(warnings, "whoami") {
		t.Errorf("Default has warnings about its service: %q", warnings)
	}
	s := c.Lookup("whoami")
	if c.HostKey != BuiltinHostKey || c.AuditLog != DefaultAuditLog || c.AuthorizedKeysDir != DefaultAuthorizedKeysDir ||
		!c.HomeAuthorizedKeys || c.KeyCommand != nil || c.TicketLifetime != time.Hour || c.Path != "" ||
		s == nil || len(c.Services) != 1 || s.Program != prog || s.Mode != PerUser || !s.RunAsUser ||
		strings.Join(s.Listen, " ") != "127.0.0.1:4000" || !s.Allowed("anyone", nil) {
		t.Errorf("Default(%q) = %+v, service %+v", prog, c, s)
	}
}

func TestCheckValidatesHandBuilt(t *testing.T) {
	c := Default("bin/whoami")
	c.RevocationCheck = 0
	c.TicketLifetime = ResumptionOff
	s := c.Services[0]
	s.Listen = append(s.Listen, "nowhere")
	s.MaxWorkers = 0
	s.Mode = Mode(9)
	c.Services = append(c.Services, &Service{Name: "whoami", Listen: []string{":1"}, Program: "/x", RunAsUser: true, Account: "svc", MaxWorkers: 1, MaxConnsPerUser: 1, IdleTimeout: time.Second})
	_, err := c.Check()
	want := []string{
		"built-in configuration: revocation-check 0s is too short: the minimum is 100ms",
		`built-in configuration: listen "nowhere": want HOST:PORT, such as 127.0.0.1:4000, [::1]:4000 or :4000`,
		`built-in configuration: service "whoami": unknown mode(9): want per-user, per-connection, exec, backend, http-backend or instance`,
		`built-in configuration: program "bin/whoami" is not an absolute path: write it starting with "/"`,
		`built-in configuration: max-workers 0: must be at least 1`,
		`built-in configuration: service "whoami" is defined twice: rename or remove one`,
		`built-in configuration: service "whoami" runs as the user but also names account "svc": choose one`,
	}
	if err == nil || err.Error() != strings.Join(want, "\n") && !strings.HasPrefix(err.Error(), strings.Join(want, "\n")+"\n") {
		t.Errorf("Check errors:\n%v\nwant them to start with:\n%s", err, strings.Join(want, "\n"))
	}
}
