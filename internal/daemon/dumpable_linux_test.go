// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestNonDumpable: the monitor and the acceptor are non-dumpable (PR_SET_DUMPABLE 0): no core
// dump of their keys, no tracing or reading of their memory by another process of their
// account. The monitor is this process, asked with PR_GET_DUMPABLE; /proc/PID/status has no
// field for it, so the acceptor is judged by what the kernel does to a non-dumpable process's
// /proc/PID files: they belong to root, although the acceptor does not run as root.
func TestNonDumpable(t *testing.T) {
	// Starting a child with other credentials happens to leave a Go process non-dumpable
	// (the child changes credentials while it still shares the parent's memory, before its
	// exec), so this process may already be: make it dumpable again, and start a daemon that
	// starts no child.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 1, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	newTestbedOpts(t, whoamiService, testbedOpts{inProcess: true})
	if v, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0); err != nil || v != 0 {
		t.Errorf("monitor: PR_GET_DUMPABLE = %d (%v), want 0", v, err)
	}

	tb := newTestbed(t, whoamiService)
	// The acceptor confines itself before it accepts, so after a connection it has.
	if _, err := tb.whoami("whoami", "netauth-alice", tb.config("netauth-alice")); err != nil {
		t.Fatal(err)
	}
	status := "/proc/" + strconv.Itoa(tb.d.AcceptorPid()) + "/status"
	data, err := os.ReadFile(status)
	if err != nil {
		t.Fatal(err)
	}
	uid := ""
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "Uid:" {
			uid = f[1]
		}
	}
	if uid == "" || uid == "0" {
		t.Fatalf("acceptor runs as uid %q; the test needs it unprivileged", uid)
	}
	var st unix.Stat_t
	if err := unix.Stat(status, &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != 0 {
		t.Errorf("acceptor (uid %s): %s is owned by uid %d, want 0 (a dumpable process owns its /proc files)", uid, status, st.Uid)
	}
}
