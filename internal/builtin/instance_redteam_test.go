// SPDX-License-Identifier: Apache-2.0

package builtin

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestRedteamInstanceShimEnvOnly: NETAUTH_INSTANCE_SHIM in the environment alone does not make
// a program built with this package (netauthd, netauthd-acceptor, netauth) execute its first
// argument, resolved against the working directory: whoever can carry an environment
// variable into someone else's run of one of them (a sudo rule keeping the environment) could
// otherwise have their program run in its place. Here the test binary, given it, runs as it
// does without it (programArg "exit": status 3) and the program named by its first argument,
// in the working directory, is not run.
func TestRedteamInstanceShimEnvOnly(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	if err := os.WriteFile(filepath.Join(dir, programArg), []byte("#!/bin/sh\ntouch "+marker+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, programArg, "exit")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), shimEnv+"=1")
	out, err := cmd.CombinedOutput()
	if _, serr := os.Stat(marker); serr == nil {
		t.Errorf("with only %s=1 in its environment, the binary executed ./%s (output %q)", shimEnv, programArg, out)
	}
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
		t.Errorf("with %s=1 in its environment, the binary exited %v (output %q), want status 3 as without it", shimEnv, err, out)
	}
}
