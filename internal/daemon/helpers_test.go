// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func syscallGetsid() (int, int, error) {
	sid, err := unix.Getsid(0)
	return sid, 0, err
}

func killPid(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }

// waitGone waits until process pid no longer exists (it has been reaped).
func waitGone(t *testing.T, pid int, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); os.IsNotExist(err) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("process %d still exists after %v", pid, limit)
}
