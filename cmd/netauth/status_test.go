// SPDX-License-Identifier: Apache-2.0

package main

import (
	"path/filepath"
	"testing"
)

// TestStatusNotRunning: netauth status with no netauthd says so in one line, naming the
// control socket it looked for, and exits 1.
func TestStatusNotRunning(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "control")
	code, out, errOut := runCLI("status", "-control", sock)
	if want := "netauth status: netauthd is not running (no control socket at " + sock + ")\n"; code != 1 || out != "" || errOut != want {
		t.Fatalf("exit %d, stdout %q, stderr %q; want exit 1 and %q", code, out, errOut, want)
	}
}
