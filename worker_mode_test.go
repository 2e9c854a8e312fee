// SPDX-License-Identifier: Apache-2.0

package netauth

import (
	"bytes"
	"log/slog"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"ubns.dev/netauth/internal/handoff"
)

// TestListenWorkerModeLogs: Listen says, once, at Info, that it runs as a netauthd worker.
func TestListenWorkerModeLogs(t *testing.T) {
	daemonEnd, f, err := handoff.Pair()
	if err != nil {
		t.Fatal(err)
	}
	defer daemonEnd.Close()
	fd, err := syscall.Dup(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	t.Setenv(handoff.Env, strconv.Itoa(fd))
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	l, err := Listen("tcp", "127.0.0.1:4000", &ServerConfig{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	out := buf.String()
	if n := strings.Count(out, "worker mode"); n != 1 || !strings.Contains(out, "level=INFO") ||
		!strings.Contains(out, "addr=127.0.0.1:4000") {
		t.Fatalf("Listen in worker mode logged %q; want one Info line saying so", out)
	}
	if l.Addr().Network() != "netauthd" {
		t.Fatalf("worker Listener's address: %v", l.Addr())
	}
}
