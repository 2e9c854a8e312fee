// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/PID/stat's CPU times: 100 on every Linux
// architecture Go supports.
const clockTicks = 100

// procCPU returns the CPU time the process pid has used so far, all its threads together:
// the sum over /proc/PID/task/*/schedstat of the first field (nanoseconds on a CPU; the
// file of /proc/PID itself covers its main thread only). Where the kernel keeps no
// schedstat, it falls back to utime + stime of /proc/PID/stat, in clock ticks (10 ms).
// The time of threads that exited is not counted by the schedstat sum; the Go processes
// measured here keep their threads.
func procCPU(pid int) (time.Duration, error) {
	dir := filepath.Join("/proc", strconv.Itoa(pid), "task")
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("process %d: %w", pid, err)
	}
	var sum time.Duration
	for _, t := range tasks {
		data, err := os.ReadFile(filepath.Join(dir, t.Name(), "schedstat"))
		if errors.Is(err, os.ErrNotExist) {
			if _, serr := os.Stat(filepath.Join(dir, t.Name())); serr == nil {
				return procStatCPU(pid) // no schedstat in this kernel
			}
			continue // the thread exited meanwhile
		}
		if err != nil {
			return 0, fmt.Errorf("process %d: %w", pid, err)
		}
		f := strings.Fields(string(data))
		if len(f) == 0 {
			return 0, fmt.Errorf("process %d: empty schedstat", pid)
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("process %d: schedstat: %w", pid, err)
		}
		sum += time.Duration(ns)
	}
	return sum, nil
}

// procStatCPU returns utime + stime from /proc/PID/stat (all threads, clock ticks).
func procStatCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, fmt.Errorf("process %d: %w", pid, err)
	}
	// The command name in parentheses may contain anything; the fields after it are fixed:
	// state is field 3 of the file, utime 14 and stime 15.
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return 0, fmt.Errorf("process %d: malformed stat", pid)
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("process %d: malformed stat", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("process %d: malformed stat", pid)
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}
