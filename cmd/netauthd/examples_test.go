// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// packagedAcceptor is where the package installs netauthd-acceptor, which the examples name
// as the program of netauthd's built-in workers.
const packagedAcceptor = "/usr/libexec/netauth/netauthd-acceptor"

// TestExamplesCheck runs netauthd -check on every examples/*.conf as shipped: each must pass
// on a fresh installation, naming no program, account or file that one lacks. The only
// change is the built-in worker's program, when the package is not installed here: it is
// replaced by an executable owned by root, as the installed one is.
func TestExamplesCheck(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: -check requires worker programs and the file to be owned by root (CI runs as root)")
	}
	files, err := filepath.Glob("../../examples/*.conf")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples/*.conf: %v", err)
	}
	acceptor := packagedAcceptor
	if _, err := os.Stat(packagedAcceptor); err != nil {
		dir := t.TempDir()
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		acceptor = filepath.Join(dir, "netauthd-acceptor")
		if err := os.WriteFile(acceptor, []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			text := strings.ReplaceAll(string(data), packagedAcceptor, acceptor)
			conf := filepath.Join(t.TempDir(), filepath.Base(file))
			if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			var out, errb bytes.Buffer
			if code := run([]string{"-check", "-config", conf}, &out, &errb); code != 0 {
				t.Fatalf("netauthd -check -config %s: exit %d\n%s%s", file, code, out.String(), errb.String())
			}
			// The package creates authorized-keys-dir; a machine without it gets a warning.
			_, noKeysDir := os.Stat("/etc/netauth/authorized_keys")
			for _, w := range strings.Split(strings.TrimSpace(errb.String()), "\n") {
				if w != "" && !(noKeysDir != nil && strings.Contains(w, "authorized-keys-dir /etc/netauth/authorized_keys does not exist")) {
					t.Errorf("netauthd -check -config %s warns: %s", file, w)
				}
			}
		})
	}
}
