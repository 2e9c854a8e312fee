// SPDX-License-Identifier: Apache-2.0

package builtin

import (
	"log/slog"
	"slices"
	"strings"
	"syscall"
	"testing"

	"ubns.dev/netauth/internal/handoff"
	"ubns.dev/netauth/internal/trace"
)

// TestInstanceRefusesHostNetns: with instance-listen tcp the worker refuses to start the
// program in the network namespace it was told is netauthd's, and refuses to run without
// being told which that is: never the shared loopback.
func TestInstanceRefusesHostNetns(t *testing.T) {
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/self/ns/net", &st); err != nil {
		t.Fatal(err)
	}
	if err := checkPrivateNetns(st.Ino); err == nil || !strings.Contains(err.Error(), "reachable by every local user") {
		t.Errorf("checkPrivateNetns(own namespace) = %v, want a refusal", err)
	}
	if err := checkPrivateNetns(st.Ino + 1); err != nil {
		t.Errorf("checkPrivateNetns(another namespace) = %v", err)
	}
	log := slog.New(slog.DiscardHandler)
	if _, err := parseInstance([]string{"-listen", "tcp", "--", "/usr/bin/python3", "%p"}, log); err == nil || !strings.Contains(err.Error(), "-host-netns") {
		t.Errorf("tcp without -host-netns: %v, want an error", err)
	}
	for _, args := range [][]string{
		{"-listen", "unix", "--", "python3", "%s"},                        // not absolute
		{"-listen", "unix", "--", "/usr/bin/python3"},                     // no %s
		{"-listen", "bogus", "--", "/usr/bin/python3"},                    // unknown method
		{"-listen", "socket-activation"},                                  // no program
		{"-listen", "unix", "-start-timeout", "0s", "--", "/bin/x", "%s"}, // no time to start
	} {
		if _, err := parseInstance(args, log); err == nil {
			t.Errorf("parseInstance(%q) succeeded", args)
		}
	}
	if iw, err := parseInstance([]string{"-listen", "tcp", "-host-netns", "7", "--", "/usr/bin/python3", "-m", "http.server", "%p"}, log); err != nil || iw.hostNetns != 7 || iw.path != "/usr/bin/python3" {
		t.Errorf("parseInstance: %+v, %v", iw, err)
	}
}

// TestInstanceEnviron: the instance's program gets the worker's environment without the
// worker's control and trace descriptors, socket-activation variables of its own or the
// shim's marker, and with everything else.
func TestInstanceEnviron(t *testing.T) {
	for _, k := range []string{handoff.Env, trace.Env, "LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PID", shimEnv} {
		t.Setenv(k, "3")
	}
	t.Setenv("NETAUTH_SERVICE", "notes")
	env := (&instanceWorker{}).environ()
	if !slices.Contains(env, "NETAUTH_SERVICE=notes") {
		t.Errorf("NETAUTH_SERVICE is not kept: %q", env)
	}
	for _, kv := range env {
		switch k, _, _ := strings.Cut(kv, "="); k {
		case handoff.Env, trace.Env, "LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PID", shimEnv:
			t.Errorf("the program gets %s", kv)
		}
	}
}
