// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestNonDumpable: the acceptor is non-dumpable (PR_SET_DUMPABLE 0): no core dump of its
// keys, no tracing or reading of its memory by another process of its account. /proc/PID/status
// has no field for it, so the acceptor is judged by what the kernel does to a non-dumpable
// process's /proc/PID files: they belong to root, although the acceptor does not run as root.
// (The monitor cannot be judged here: starting a child with other credentials, as the monitor
// starts its acceptor, leaves a Go process non-dumpable whatever it asked for. As a user other
// than root it starts its acceptor with its own credentials; TestUnprivilegedDaemon checks it
// there.)
func TestNonDumpable(t *testing.T) {
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
