// SPDX-License-Identifier: Apache-2.0

//go:build linux

package handshake

import (
	"crypto/rand"
	"syscall"
	"testing"
	"time"
)

// cpuTime returns the CPU time this process has used.
func cpuTime(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestRetireLoopTinyLifetime: RetireLoop on a key set with a tiny ticket lifetime (a library
// server may set any) wakes at most every minRetireInterval, instead of spinning a CPU core:
// it waited one lifetime between wakes, here a nanosecond.
func TestRetireLoopTinyLifetime(t *testing.T) {
	tk := NewTicketKeys(time.Nanosecond, rand.Reader)
	stop, done := make(chan struct{}), make(chan struct{})
	before := cpuTime(t)
	go func() { defer close(done); tk.RetireLoop(stop) }()
	const window = 500 * time.Millisecond
	time.Sleep(window)
	close(stop)
	<-done
	if used := cpuTime(t) - before; used > window/5 {
		t.Fatalf("RetireLoop with a 1 ns lifetime used %v of CPU in %v", used, window)
	}
}
