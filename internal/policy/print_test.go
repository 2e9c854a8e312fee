// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// exported returns a copy of c without what Parse records only for its
// messages (lines), so that two configurations can be compared.
func exported(c *Config) Config {
	out := *c
	out.lines = nil
	out.Services = nil
	for _, s := range c.Services {
		t := *s
		t.Line = 0
		t.lines, t.listenLines, t.userLines, t.groupLines = nil, nil, nil, nil
		out.Services = append(out.Services, &t)
	}
	return out
}

// roundTrip prints c, parses the output back, and fails unless it gives c.
func roundTrip(t *testing.T, c *Config) string {
	t.Helper()
	var b strings.Builder
	if _, err := c.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	back, err := Parse(c.Path, strings.NewReader(b.String()))
	if err != nil {
		t.Fatalf("printed configuration does not parse: %v\n%s", err, b.String())
	}
	if got, want := exported(back), exported(c); !reflect.DeepEqual(got, want) {
		t.Fatalf("printed configuration parses to\n%+v\nwant\n%+v\nprinted:\n%s", got, want, b.String())
	}
	return b.String()
}

func TestWriteToDefault(t *testing.T) {
	c := Default("/usr/libexec/netauth/netauthd-acceptor")
	c.Services[0].Args = []string{"-worker", "whoami"}
	out := roundTrip(t, c)
	// Every default is spelled out.
	for _, want := range []string{
		"host-key " + BuiltinHostKey + "\n",
		"audit-log " + DefaultAuditLog + "\n",
		"authorized-keys-dir " + DefaultAuthorizedKeysDir + "\n",
		"home-authorized-keys yes\n",
		"ticket-lifetime 1h\n",
		"max-clock-skew 5m\n",
		"handshake-timeout 10s\n",
		"revocation-check 1s\n",
		"spare-workers 2\n",
		"    mode per-user\n",
		"    run-as user\n",
		"    max-workers 256\n",
		"    max-connections-per-user 64\n",
		"    idle-timeout 5m\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestWriteToExamples(t *testing.T) {
	paths, err := filepath.Glob("../../examples/*.conf")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	for _, p := range paths {
		c, err := Load(p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		roundTrip(t, c)
	}
	// The package's conffile.
	c, err := Load("../../packaging/netauthd.conf")
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c)
}

func TestWriteToUnusualValues(t *testing.T) {
	const conf = `host-key "/etc/net auth/key"
audit-log /var/log/a#b
authorized-keys-dir none
home-authorized-keys no
key-command /usr/bin/keys %u "a \"quoted\" \\ value" "}"
ticket-lifetime off
max-clock-skew 90s
handshake-timeout 1500ms
revocation-check 30m
spare-workers 0
metrics-listen 127.0.0.1:9464
service one {
    listen [::1]:1 :2
    mode exec
    exec-worker per-connection
    program /bin/cat
    args "" "{" "#x" -n
    users alice *
    groups staff wheel
    max-workers 1
    max-connections-per-user 1000000
    idle-timeout 1ms
}
service two {
    listen 127.0.0.1:3
    mode backend
    backend unix:/run/x.sock
    run-as account netauth-web
    groups staff
}
service three {
    listen localhost:0
    mode per-connection
    program /bin/true
    users bob
    idle-timeout 1h30m
}
`
	c, err := Parse("t.conf", strings.NewReader(conf))
	if err != nil {
		t.Fatal(err)
	}
	if c.TicketLifetime != ResumptionOff || c.HandshakeTimeout != 1500*time.Millisecond {
		t.Fatalf("parsed %v %v", c.TicketLifetime, c.HandshakeTimeout)
	}
	out := roundTrip(t, c)
	for _, want := range []string{"ticket-lifetime off\n", "authorized-keys-dir none\n", `host-key "/etc/net auth/key"`, "    idle-timeout 1h30m\n", "    run-as account netauth-web\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
