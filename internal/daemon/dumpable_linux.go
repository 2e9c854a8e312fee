// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// setNonDumpable marks this process non-dumpable (prctl PR_SET_DUMPABLE 0): the kernel writes
// no core dump of it, and only a process with CAP_SYS_PTRACE may trace it or open its
// /proc/PID files such as mem, environ and fd, which become owned by root. The monitor holds
// the host key and the ticket keys, the acceptor the record keys of handshakes in progress;
// neither must end up in a core file or be readable by another process of its account. The
// setting is per process and survives until exec: workers, which netauthd starts with exec,
// are not affected.
func setNonDumpable() error {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_DUMPABLE, 0): %w", err)
	}
	return nil
}
