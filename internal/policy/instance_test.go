// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestParseInstance: an instance service with each way of listening parses into its fields;
// instance-start-timeout defaults to DefaultInstanceStartTimeout.
func TestParseInstance(t *testing.T) {
	c := mustParse(t, `service web {
    listen 127.0.0.1:8000
    mode instance
    instance-listen tcp
    program /usr/bin/python3
    args -m http.server %p --bind 127.0.0.1
    users *
}
service nb {
    listen 127.0.0.1:8001
    mode instance
    instance-listen unix
    instance-start-timeout 30s
    program /usr/bin/server
    args --socket=%s --title=100%%
    users *
}
`)
	web, nb := c.Services[0], c.Services[1]
	if web.Mode != Instance || web.InstanceListen != InstanceTCP || web.StartTimeout() != DefaultInstanceStartTimeout {
		t.Errorf("web: mode %s, instance-listen %q, start timeout %v", web.Mode, web.InstanceListen, web.StartTimeout())
	}
	if nb.InstanceListen != InstanceUnix || nb.StartTimeout() != 30*time.Second {
		t.Errorf("nb: instance-listen %q, start timeout %v", nb.InstanceListen, nb.StartTimeout())
	}
	got, err := InstanceArgs(nb.InstanceListen, nb.Args, "/run/x/socket", "")
	if want := []string{"--socket=/run/x/socket", "--title=100%"}; err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("InstanceArgs = %q, %v; want %q", got, err, want)
	}
	got, err = InstanceArgs(web.InstanceListen, web.Args, "", "8123")
	if want := []string{"-m", "http.server", "8123", "--bind", "127.0.0.1"}; err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("InstanceArgs = %q, %v; want %q", got, err, want)
	}
}

// TestInstanceErrors: what is wrong with an instance service is reported on its line.
func TestInstanceErrors(t *testing.T) {
	const head = "service web {\n listen :1\n mode instance\n program /usr/bin/python3\n users *\n"
	tests := []struct {
		name, body string
		line       int
		want       string
	}{
		{"no instance-listen", "", 1, `has no instance-listen: add "instance-listen socket-activation"`},
		{"unknown instance-listen", " instance-listen tcp4\n", 6, `unknown instance-listen "tcp4": want socket-activation, unix or tcp`},
		{"unix without %s", " instance-listen unix\n args -m srv\n", 7, "must contain %s"},
		{"tcp without %p", " instance-listen tcp\n args -m http.server\n", 7, "must contain %p"},
		{"tcp with %s", " instance-listen tcp\n args %s %p\n", 7, "%s is the socket path"},
		{"activation with %p", " instance-listen socket-activation\n args %p\n", 7, "remove %s and %p"},
		{"unknown placeholder", " instance-listen tcp\n args %p %d\n", 7, "unknown placeholder %d"},
		{"lone percent", " instance-listen tcp\n args %p 100%\n", 7, "lone %"},
		{"start timeout too short", " instance-listen tcp\n args %p\n instance-start-timeout 1ms\n", 8, "instance-start-timeout 1ms is too short"},
		{"start timeout too long", " instance-listen tcp\n args %p\n instance-start-timeout 1h\n", 8, "instance-start-timeout 1h is too long"},
		{"exec-worker", " instance-listen tcp\n args %p\n exec-worker per-connection\n", 8, "exec-worker is not used in instance mode: each user has one instance"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := parseErrors(t, head+tt.body+"}\n")
			if len(errs) != 1 || errs[0].Line != tt.line || !strings.Contains(errs[0].Msg, tt.want) {
				t.Errorf("errors %q, want one on line %d containing %q", messages(errs), tt.line, tt.want)
			}
		})
	}
	// The instance directives belong to mode instance.
	errs := parseErrors(t, "service w {\n listen :1\n program /bin/true\n instance-listen tcp\n users *\n}\n")
	if len(errs) != 1 || errs[0].Line != 4 || !strings.Contains(errs[0].Msg, `instance-listen is used only in instance mode`) {
		t.Errorf("instance-listen in per-user mode: %q", messages(errs))
	}
}
