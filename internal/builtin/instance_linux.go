// SPDX-License-Identifier: Apache-2.0

package builtin

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"syscall"
)

// checkPrivateNetns refuses to go on unless the worker runs in a network namespace other
// than netauthd's (hostInode): a program listening on a loopback port in netauthd's namespace
// would be reachable by every local user.
func checkPrivateNetns(hostInode uint64) error {
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/self/ns/net", &st); err != nil {
		return fmt.Errorf("instance-listen tcp: cannot tell which network namespace the worker runs in: %w", err)
	}
	if st.Ino == hostInode {
		return fmt.Errorf("instance-listen tcp: the worker runs in netauthd's own network namespace, where the instance's port would be reachable by every local user; refusing to start it")
	}
	return nil
}

// killGroupButSelf sends SIGKILL to every process of the worker's process group but the
// worker itself: the instance's children, which a cgroup-less worker finds in /proc.
func killGroupButSelf() {
	self := os.Getpid()
	pgid := syscall.Getpgrp()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...: comm may hold anything, so read after its last ")".
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := bytes.Fields(stat[i+1:])
		if len(f) < 3 {
			continue
		}
		if g, err := strconv.Atoi(string(f[2])); err == nil && g == pgid {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}
