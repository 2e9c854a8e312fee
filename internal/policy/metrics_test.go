// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"strings"
	"testing"
)

// TestCheckMetricsListen: metrics-listen takes a Unix socket path or a loopback address with
// a port, and nothing other hosts could reach; Parse refuses anything else on its line, and
// CheckMetricsListen says the same.
func TestCheckMetricsListen(t *testing.T) {
	prog := program(t, 0o755)
	for _, ok := range []string{"/run/netauth/metrics.sock", "127.0.0.1:9464", "127.1.2.3:9464", "[::1]:9464", "localhost:9464", "[::ffff:127.0.0.1]:9464"} {
		c := mustParse(t, "metrics-listen "+ok+"\n"+strings.ReplaceAll(okService, "PROG", prog))
		if c.MetricsListen != ok {
			t.Errorf("metrics-listen %s parsed as %q", ok, c.MetricsListen)
		}
		if _, errs := checkSrc(t, "metrics-listen "+ok+"\n"+okService, prog); errs != nil {
			t.Errorf("metrics-listen %s: %q, want no error", ok, messages(errs))
		}
	}
	for bad, want := range map[string]string{
		"0.0.0.0:9464":                 "is not a loopback address",
		":9464":                        "is not a loopback address",
		"[::]:9464":                    "is not a loopback address",
		"192.0.2.1:9464":               "is not a loopback address",
		"example.com:9464":             "is not a loopback address",
		"[fe80::1%lo]:9464":            "is not a loopback address",
		"127.0.0.1":                    "want an absolute Unix socket path or a loopback HOST:PORT",
		"metrics.sock":                 "want an absolute Unix socket path or a loopback HOST:PORT",
		"127.0.0.1:http":               `port "http": want a number from 1 to 65535`,
		"127.0.0.1:0":                  `port "0": want a number from 1 to 65535`,
		"127.0.0.1:65536":              `port "65536": want a number from 1 to 65535`,
		"/" + strings.Repeat("m", 107): "the socket path is 108 bytes; the kernel allows at most 107",
	} {
		errs := parseErrors(t, "metrics-listen "+bad+"\n"+strings.ReplaceAll(okService, "PROG", prog))
		if len(errs) != 1 || errs[0].Line != 1 || !strings.Contains(errs[0].Msg, want) {
			t.Errorf("metrics-listen %s: errors %q, want one on line 1 saying %q", bad, messages(errs), want)
		}
		if err := CheckMetricsListen(bad); err == nil || err.Error() != errs[0].Msg {
			t.Errorf("CheckMetricsListen(%s) = %v, want the parser's %q", bad, err, errs[0].Msg)
		}
	}
	if d := Default(prog); d.MetricsListen != "" {
		t.Errorf("default metrics-listen %q, want none", d.MetricsListen)
	}
}
