// SPDX-License-Identifier: Apache-2.0

package metrics

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestListen: a Unix socket (replacing a stale one, never another file) or a loopback port;
// nothing else.
func TestListen(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "metrics.sock")
	stale, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()
	l, err := Listen(sock)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket %v %v, want mode 0600", fi, err)
	}
	l.Close()

	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if l, err := Listen(file); err == nil || !strings.Contains(err.Error(), "not a socket") {
		if l != nil {
			l.Close()
		}
		t.Fatalf("Listen on a regular file: %v, want refused", err)
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "keep" {
		t.Fatalf("the file was touched: %q %v", b, err)
	}

	for _, bad := range []string{"0.0.0.0:9464", ":9464", "192.0.2.1:9464"} {
		if l, err := Listen(bad); err == nil {
			l.Close()
			t.Errorf("Listen(%s) succeeded, want refused", bad)
		}
	}
}
