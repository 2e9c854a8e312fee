// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckMetricsListen: -check refuses a metrics-listen address other hosts could reach,
// and accepts a loopback one.
func TestCheckMetricsListen(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		addr string
		code int
	}{
		{"0.0.0.0:9464", 1},
		{"127.0.0.1:9464", 0},
	} {
		path := filepath.Join(dir, "netauthd.conf")
		if err := os.WriteFile(path, []byte("metrics-listen "+tc.addr+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		var out, errb bytes.Buffer
		code := run([]string{"-check", "-config", path}, &out, &errb)
		if code != tc.code {
			t.Fatalf("metrics-listen %s: -check exit %d, want %d; stderr: %s", tc.addr, code, tc.code, errb.String())
		}
		if tc.code != 0 && !strings.Contains(errb.String(), `netauthd.conf:1: metrics-listen "0.0.0.0:9464": "0.0.0.0" is not a loopback address`) {
			t.Errorf("-check output does not say why:\n%s", errb.String())
		}
	}
}
