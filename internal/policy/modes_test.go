// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestModeStringExecBackend(t *testing.T) {
	if Exec.String() != "exec" || Backend.String() != "backend" {
		t.Errorf("Mode strings: %v %v", Exec, Backend)
	}
}

func TestParseExecAndBackend(t *testing.T) {
	c := mustParse(t, `service imap {
 listen 127.0.0.1:1143
 mode exec
 program /usr/lib/dovecot/imap
 args -c /etc/netauth/dovecot.conf
 users *
}
service imap1 {
 listen 127.0.0.1:1144
 mode exec
 exec-worker per-connection
 program /usr/lib/dovecot/imap
 users *
}
service web {
 listen :8443
 mode backend
 backend tcp:127.0.0.1:8080
 run-as account netauth-web
 users *
}
service web6 {
 listen :8444
 mode backend
 backend "unix:/run/web app/sock"
 run-as account netauth-web
 users *
}
`)
	imap := c.Lookup("imap")
	if imap.Mode != Exec || imap.ExecWorker != PerUser || imap.Program != "/usr/lib/dovecot/imap" ||
		!reflect.DeepEqual(imap.Args, []string{"-c", "/etc/netauth/dovecot.conf"}) || !imap.RunAsUser ||
		imap.WorkerPerConnection() || imap.WorkerShared() {
		t.Errorf("imap = %+v", imap)
	}
	if s := c.Lookup("imap1"); s.ExecWorker != PerConnection || !s.WorkerPerConnection() || s.WorkerShared() {
		t.Errorf("imap1 = %+v", s)
	}
	web := c.Lookup("web")
	if web.Mode != Backend || web.Backend != "tcp:127.0.0.1:8080" || web.RunAsUser || web.Account != "netauth-web" ||
		web.Program != "" || !web.WorkerShared() || web.WorkerPerConnection() {
		t.Errorf("web = %+v", web)
	}
	if s := c.Lookup("web6"); s.Backend != "unix:/run/web app/sock" {
		t.Errorf("web6 backend = %q", s.Backend)
	}
	if !mustParse(t, svc(" listen :1\n mode per-connection\n program /p\n")).Services[0].WorkerPerConnection() {
		t.Errorf("per-connection mode does not give a worker per connection")
	}
}

func TestParseExecBackendErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		line int
		msg  string // the whole message, or a prefix when it ends in "..."
	}{
		{"exec without program", svc(" listen :1\n mode exec\n"), 1,
			`service "whoami" has no program: add "program /absolute/path/of/the/program" (in exec mode, the unmodified program run for each connection, such as /usr/lib/dovecot/imap)`},
		{"exec relative program", svc(" listen :1\n mode exec\n program imap\n"), 4,
			`program "imap" is not an absolute path: write it starting with "/"`},
		{"bad exec-worker", svc(" listen :1\n mode exec\n program /p\n exec-worker each\n"), 5,
			`exec-worker "each": want per-user (one worker per user starts the program for each of their connections) or per-connection (a new worker for every connection)`},
		{"exec-worker outside exec", svc(" listen :1\n program /p\n exec-worker per-connection\n"), 4,
			`service "whoami": exec-worker is used only in exec mode: add "mode exec" or remove it (mode per-user already says how workers are started)`},
		{"backend without backend", svc(" listen :1\n mode backend\n run-as account svc\n"), 1,
			`service "whoami" has no backend: add "backend tcp:127.0.0.1:PORT" or "backend unix:/path/of/socket", the local service its connections are forwarded to`},
		{"backend without account", svc(" listen :1\n mode backend\n backend tcp:127.0.0.1:80\n"), 1,
			`service "whoami" in backend mode needs "run-as account NAME": its one worker forwards the connections of every user, so it cannot run as any one of them; create an unprivileged account for it (for example "useradd --system --no-create-home netauth-whoami")`},
		{"backend as user", svc(" listen :1\n mode backend\n backend tcp:127.0.0.1:80\n run-as user\n"), 5,
			`service "whoami" in backend mode needs "run-as account NAME"...`},
		{"backend with program", svc(" listen :1\n mode backend\n program /p\n args x\n backend unix:/s\n run-as account svc\n"), 4,
			`service "whoami": program is not used in backend mode: netauthd's own worker forwards each connection to the backend; remove it`},
		{"backend outside backend mode", svc(" listen :1\n program /p\n backend tcp:127.0.0.1:80\n"), 4,
			`service "whoami": backend is used only in backend or http-backend mode: add "mode backend" or remove it`},
		{"backend no network", svc(" listen :1\n mode backend\n backend 127.0.0.1:80\n run-as account svc\n"), 4,
			`backend "127.0.0.1:80": want "tcp:HOST:PORT" (such as tcp:127.0.0.1:1143) or "unix:/path/of/socket"`},
		{"backend host name", svc(" listen :1\n mode backend\n backend tcp:example.org:80\n run-as account svc\n"), 4,
			`backend "tcp:example.org:80": host "example.org": want an IP address or "localhost"; host names are not resolved`},
		{"backend port 0", svc(" listen :1\n mode backend\n backend tcp:127.0.0.1:0\n run-as account svc\n"), 4,
			`backend "tcp:127.0.0.1:0": port "0": want a number from 1 to 65535`},
		{"backend no port", svc(" listen :1\n mode backend\n backend tcp:127.0.0.1\n run-as account svc\n"), 4,
			`backend "tcp:127.0.0.1": want tcp:HOST:PORT, such as tcp:127.0.0.1:1143 or tcp:[::1]:1143`},
		{"backend relative socket", svc(" listen :1\n mode backend\n backend unix:run/s\n run-as account svc\n"), 4,
			`backend "unix:run/s": the socket path is not absolute: write it starting with "/"`},
		{"backend long socket", svc(" listen :1\n mode backend\n backend unix:/" + strings.Repeat("s", 107) + "\n run-as account svc\n"), 4,
			`backend "unix:/sss...`},
		{"backend twice", svc(" listen :1\n mode backend\n backend unix:/a\n backend unix:/b\n run-as account svc\n"), 5,
			`"backend" is given twice in service "whoami" (first on line 4): keep one`},
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

func TestParseBackend(t *testing.T) {
	for _, tt := range []struct{ in, network, address string }{
		{"tcp:127.0.0.1:1143", "tcp", "127.0.0.1:1143"},
		{"tcp:[::1]:8080", "tcp", "[::1]:8080"},
		{"tcp:localhost:25", "tcp", "localhost:25"},
		{"unix:/run/dovecot/imap", "unix", "/run/dovecot/imap"},
	} {
		n, a, err := ParseBackend(tt.in)
		if err != nil || n != tt.network || a != tt.address {
			t.Errorf("ParseBackend(%q) = %q, %q, %v", tt.in, n, a, err)
		}
	}
	for _, in := range []string{"", "tcp:", "udp:127.0.0.1:53", "tcp:127.0.0.1:65536", "tcp::80", "unix:", "unix:x", "tcp:127.0.0.1:+80"} {
		if _, _, err := ParseBackend(in); err == nil {
			t.Errorf("ParseBackend(%q) succeeded", in)
		}
	}
	for in, want := range map[string]bool{
		"tcp:127.0.0.1:1": true, "tcp:127.9.9.9:1": true, "tcp:[::1]:1": true, "tcp:localhost:1": true,
		"unix:/s": true, "tcp:10.0.0.1:1": false, "tcp:[::ffff:127.0.0.1]:1": true, "tcp:[2001:db8::1]:1": false,
	} {
		if got := backendLoopback(in); got != want {
			t.Errorf("backendLoopback(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestCheckExecAndBackend(t *testing.T) {
	prog := program(t, 0o755)
	// An exec service's program gets the same checks as a worker program.
	warnings, errs := checkSrc(t, "service imap {\n listen 127.0.0.1:0\n mode exec\n exec-worker per-connection\n program PROG\n users *\n idle-timeout 1m\n}\n", prog)
	if errs != nil || !hasMsg(warnings, `netauthd.conf:7: service "imap": idle-timeout is ignored with "exec-worker per-connection"`) {
		t.Errorf("Check = %q, %v; want the idle-timeout warning", warnings, errs)
	}
	_, errs = checkSrc(t, "service imap {\n listen 127.0.0.1:0\n mode exec\n program /nonexistent/imap\n users *\n}\n", prog)
	if len(errs) != 1 || errs[0].Line != 4 || errs[0].Msg != "program /nonexistent/imap does not exist" {
		t.Errorf("Check errors %q, want one about the missing program", messages(errs))
	}

	// A backend's account must exist and must not be root.
	_, errs = checkSrc(t, "service web {\n listen 127.0.0.1:0\n mode backend\n backend tcp:127.0.0.1:8080\n run-as account root\n users *\n}\n", prog)
	if len(errs) != 1 || errs[0].Line != 5 || !strings.Contains(errs[0].Msg, "has uid 0") {
		t.Errorf("Check errors %q, want one about the root account", messages(errs))
	}
	account := nonRootAccount(t)
	warnings, errs = checkSrc(t, "service web {\n listen 127.0.0.1:0\n mode backend\n backend tcp:10.1.2.3:8080\n run-as account "+account+"\n users *\n}\n", prog)
	if errs != nil || !hasMsg(warnings, `netauthd.conf:4: service "web": backend tcp:10.1.2.3:8080 is not a loopback address`) {
		t.Errorf("Check = %q, %v; want a warning about the remote backend", warnings, errs)
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "sock")
	warnings, errs = checkSrc(t, "service web {\n listen 127.0.0.1:0\n mode backend\n backend unix:"+sock+"\n run-as account "+account+"\n users *\n}\n", prog)
	if errs != nil || !hasMsg(warnings, "backend socket "+sock+" does not exist (yet)") {
		t.Errorf("Check = %q, %v; want a warning about the missing socket", warnings, errs)
	}
	if err := os.WriteFile(sock, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, errs = checkSrc(t, "service web {\n listen 127.0.0.1:0\n mode backend\n backend unix:"+sock+"\n run-as account "+account+"\n users *\n}\n", prog)
	if len(errs) != 1 || errs[0].Msg != `service "web": backend `+sock+` is not a socket` {
		t.Errorf("Check errors %q, want one about the regular file", messages(errs))
	}
	os.Remove(sock)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	warnings, errs = checkSrc(t, "service web {\n listen 127.0.0.1:0\n mode backend\n backend unix:"+sock+"\n run-as account "+account+"\n users *\n}\n", prog)
	if errs != nil || hasMsg(warnings, "backend") {
		t.Errorf("Check = %q, %v; want no problem with a listening socket", warnings, errs)
	}
}

// nonRootAccount returns an existing account other than root, or skips.
func nonRootAccount(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"nobody", "daemon", "bin"} {
		if a, err := LookupAccount(name); err == nil && a.UID != 0 {
			return name
		}
	}
	t.Skip("no unprivileged system account (nobody, daemon, bin) to run a backend worker as")
	return ""
}

func TestCheckValidatesHandBuiltModes(t *testing.T) {
	base := func() *Service {
		return &Service{Name: "s", Listen: []string{":1"}, RunAsUser: true, MaxWorkers: 1, MaxConnsPerUser: 1, IdleTimeout: time.Second}
	}
	for _, tt := range []struct {
		name string
		edit func(s *Service)
		want string
	}{
		{"backend with program", func(s *Service) {
			s.Mode, s.Program, s.Backend, s.RunAsUser, s.Account = Backend, "/p", "unix:/s", false, "svc"
		}, `service "s": program is not used in backend mode: netauthd's own worker forwards each connection to the backend; remove it`},
		{"backend without backend", func(s *Service) { s.Mode, s.RunAsUser, s.Account = Backend, false, "svc" }, `service "s" has no backend: add`},
		{"backend bad address", func(s *Service) { s.Mode, s.Backend, s.RunAsUser, s.Account = Backend, "tcp:x", false, "svc" }, `backend "tcp:x": want tcp:HOST:PORT`},
		{"backend as user", func(s *Service) { s.Mode, s.Backend = Backend, "unix:/s" }, `service "s" in backend mode needs "run-as account NAME"`},
		{"backend elsewhere", func(s *Service) { s.Program, s.Backend = "/p", "unix:/s" }, `service "s": backend is used only in backend or http-backend mode`},
		{"exec-worker elsewhere", func(s *Service) { s.Program, s.ExecWorker = "/p", PerConnection }, `service "s": exec-worker is used only in exec mode`},
		{"exec-worker unknown", func(s *Service) { s.Mode, s.Program, s.ExecWorker = Exec, "/p", Backend }, `service "s": unknown exec-worker backend`},
		{"exec without program", func(s *Service) { s.Mode = Exec }, `service "s" has no program`},
	} {
		s := base()
		tt.edit(s)
		c := newConfig("")
		c.Services = []*Service{s}
		var errs collector
		c.validate(&errs, nil)
		if len(errs.errs) == 0 || !strings.Contains(errs.errs[0].Msg, tt.want) {
			t.Errorf("%s: validate = %v, want %q", tt.name, errs.errs, tt.want)
		}
	}
}
