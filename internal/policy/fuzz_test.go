// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics and returns either a valid
// configuration or an *Errors whose every entry names a line of the input.
func FuzzParse(f *testing.F) {
	example, err := os.ReadFile(exampleConfig)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	f.Add([]byte{})
	f.Add([]byte("args \"unterminated\n"))
	f.Add([]byte("service a {\n listen :1\n program /p\n"))
	f.Add([]byte("service a {\n args " + strings.Repeat("x", 70000) + "\n}\n"))
	f.Add([]byte("service a{\n}\n}\nservice a {\nservice\n{\n listen ::1:2 }\n"))
	f.Add([]byte("host-key \"a\\\"b\\\\c\"#x\nticket-lifetime off\n\r\n"))
	f.Add([]byte("service imap {\n listen :143\n mode exec\n exec-worker per-connection\n program /usr/lib/dovecot/imap\n args -c /etc/d.conf\n users *\n}\n"))
	f.Add([]byte("service web {\n listen [::1]:80\n mode backend\n backend tcp:[::1]:8080\n run-as account www\n}\nservice u {\n listen :1\n mode backend\n backend unix:/run/s\n program /p\n exec-worker x\n}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.conf", bytes.NewReader(data))
		if err != nil {
			var errs *Errors
			if !errors.As(err, &errs) {
				if len(data) > MaxFileSize {
					return
				}
				t.Fatalf("Parse error %T %v, want *Errors", err, err)
			}
			if c != nil || len(*errs) == 0 || len(*errs) > MaxErrors {
				t.Fatalf("Parse returned %v and %d errors", c, len(*errs))
			}
			lines := bytes.Count(data, []byte("\n")) + 1
			for _, e := range *errs {
				if e.Line < 1 || e.Line > lines || e.Msg == "" || e.Path != "fuzz.conf" {
					t.Fatalf("error %q outside the %d lines of the input", e, lines)
				}
			}
			return
		}
		if c == nil {
			t.Fatal("Parse returned neither a configuration nor an error")
		}
		// Everything Parse accepts must pass the value rules Check applies.
		var errs collector
		c.validate(&errs, nil)
		if len(errs.errs) != 0 {
			t.Fatalf("Parse accepted a configuration that fails validation: %v", errs.errs)
		}
		for _, s := range c.Services {
			if _, ok := bindingOf(s.Listen[0]); !ok {
				t.Fatalf("accepted listen address %q has no binding", s.Listen[0])
			}
			s.Allowed("alice", []string{"staff"})
			if s.Mode == Backend || s.Mode == HTTPBackend {
				if _, _, err := ParseBackend(s.Backend); err != nil || s.RunAsUser || s.Program != "" {
					t.Fatalf("accepted backend service %+v: %v", s, err)
				}
			} else if s.Program == "" || s.Backend != "" {
				t.Fatalf("accepted service %+v without a program or with a backend", s)
			}
		}
	})
}
