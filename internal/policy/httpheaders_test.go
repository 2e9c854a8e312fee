// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseHTTPBackend(t *testing.T) {
	c := mustParse(t, `service grafana {
 listen :8443
 mode http-backend
 backend tcp:127.0.0.1:3000
 identity-headers X-WEBAUTH-USER Remote-User
 run-as account netauth-grafana
 users *
}
service wiki {
 listen :8444
 mode http-backend
 backend unix:/run/wiki/http.sock
 run-as account netauth-wiki
 users *
}
`)
	g := c.Lookup("grafana")
	if g.Mode != HTTPBackend || g.Mode.String() != "http-backend" || g.Backend != "tcp:127.0.0.1:3000" ||
		!reflect.DeepEqual(g.UserHeaders(), []string{"X-WEBAUTH-USER", "Remote-User"}) ||
		!g.WorkerShared() || g.WorkerPerConnection() || g.RunAsUser || g.Account != "netauth-grafana" {
		t.Errorf("grafana = %+v", g)
	}
	if w := c.Lookup("wiki"); w.IdentityHeaders != nil || !reflect.DeepEqual(w.UserHeaders(), DefaultIdentityHeaders) {
		t.Errorf("wiki's headers = %q, %q; want the defaults", w.IdentityHeaders, w.UserHeaders())
	}
	// What Print writes parses back to the same services.
	var b bytes.Buffer
	if _, err := c.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	again := mustParse(t, b.String())
	if h := again.Lookup("grafana").IdentityHeaders; !reflect.DeepEqual(h, g.IdentityHeaders) {
		t.Errorf("printed and parsed again: identity-headers %q, want %q\n%s", h, g.IdentityHeaders, b.String())
	}
	if m := again.Lookup("wiki").Mode; m != HTTPBackend {
		t.Errorf("printed and parsed again: mode %s", m)
	}
}

func TestParseHTTPBackendErrors(t *testing.T) {
	base := " listen :1\n mode http-backend\n backend tcp:127.0.0.1:3000\n run-as account svc\n"
	tests := []struct {
		name string
		src  string
		line int
		msg  string // the whole message, or a prefix when it ends in "..."
	}{
		{"no backend", svc(" listen :1\n mode http-backend\n run-as account svc\n"), 1,
			`service "whoami" has no backend: add "backend tcp:127.0.0.1:PORT" or "backend unix:/path/of/socket", the local HTTP service its requests are forwarded to`},
		{"as user", svc(" listen :1\n mode http-backend\n backend tcp:127.0.0.1:3000\n"), 1,
			`service "whoami" in http-backend mode needs "run-as account NAME"...`},
		{"program", svc(base + " program /p\n"), 6,
			`service "whoami": program is not used in http-backend mode: netauthd's own worker forwards each request to the backend; remove it`},
		{"headers in backend mode", svc(" listen :1\n mode backend\n backend tcp:127.0.0.1:3000\n run-as account svc\n identity-headers Remote-User\n"), 6,
			`service "whoami": identity-headers is used only in http-backend mode: add "mode http-backend" or remove it`},
		{"underscore", svc(base + " identity-headers Remote_User\n"), 6,
			`identity-headers "Remote_User": use only letters, digits and "-" in a header name...`},
		{"netauth's own", svc(base + " identity-headers x-netauth-user\n"), 6,
			`identity-headers "x-netauth-user": the X-Netauth-* headers are netauthd's own and always set; name others`},
		{"framing", svc(base + " identity-headers Content-Length\n"), 6,
			`identity-headers "Content-Length": this header says how the request is carried...`},
		{"hop by hop", svc(base + " identity-headers Connection\n"), 6, `identity-headers "Connection": this header says...`},
		{"forwarding", svc(base + " identity-headers X-Forwarded-For\n"), 6, `identity-headers "X-Forwarded-For": this header says...`},
		{"dash", svc(base + " identity-headers -User\n"), 6, `identity-headers "-User": a header name does not start or end with "-"`},
		{"long", svc(base + " identity-headers " + strings.Repeat("h", 65) + "\n"), 6, `identity-headers "hhh...`},
		{"twice", svc(base + " identity-headers Remote-User remote-user\n"), 6,
			`identity-headers "remote-user" is given twice (header names ignore case): keep one`},
		{"too many", svc(base + " identity-headers A B C D E F G H I\n"), 6, `identity-headers gives 9 names; at most 8 are allowed`},
		{"unknown mode", svc(" listen :1\n mode http\n"), 3, `mode "http": want per-user, per-connection, exec, backend, http-backend or instance`},
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

// TestHTTPBackendExample: the service examples/http-backend.conf shows (commented out, as it
// names an account a fresh installation lacks) is valid once uncommented.
func TestHTTPBackendExample(t *testing.T) {
	data, err := os.ReadFile("../../examples/http-backend.conf")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	in := false
	services := 0
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "#service ") {
			in = true
			services++
		}
		if in {
			line = strings.TrimPrefix(line, "#")
		}
		if line == "}" {
			in = false
		}
		out = append(out, line)
	}
	if services == 0 {
		t.Fatal("examples/http-backend.conf shows no service")
	}
	c, err := Parse("http-backend.conf", strings.NewReader(strings.Join(out, "\n")))
	if err != nil {
		t.Fatalf("the uncommented example: %v", err)
	}
	n := 0
	for _, s := range c.Services {
		if s.Mode == HTTPBackend {
			n++
		}
	}
	if n != services {
		t.Errorf("the example shows %d services, %d of them in http-backend mode; want all", services, n)
	}
}

// TestCheckHTTPBackend: -check looks at an http-backend service's backend as at a backend
// service's: a remote address and a missing socket are warnings.
func TestCheckHTTPBackend(t *testing.T) {
	prog := program(t, 0o755)
	account := nonRootAccount(t)
	warnings, errs := checkSrc(t, "service app {\n listen 127.0.0.1:0\n mode http-backend\n backend tcp:10.1.2.3:8080\n run-as account "+account+"\n users *\n}\n", prog)
	if errs != nil || !hasMsg(warnings, `netauthd.conf:4: service "app": backend tcp:10.1.2.3:8080 is not a loopback address`) {
		t.Errorf("Check = %q, %v; want a warning about the remote backend", warnings, errs)
	}
	sock := filepath.Join(t.TempDir(), "sock")
	warnings, errs = checkSrc(t, "service app {\n listen 127.0.0.1:0\n mode http-backend\n backend unix:"+sock+"\n run-as account "+account+"\n users *\n}\n", prog)
	if errs != nil || !hasMsg(warnings, "backend socket "+sock+" does not exist (yet)") {
		t.Errorf("Check = %q, %v; want a warning about the missing socket", warnings, errs)
	}
}
