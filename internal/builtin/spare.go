// SPDX-License-Identifier: Apache-2.0

package builtin

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"ubns.dev/netauth/internal/handoff"
)

// SpareArg, given where a built-in service's name goes ("netauthd-acceptor -worker -spare"),
// starts a spare worker (Spare). It is no service: netauthd starts spares itself.
const SpareArg = handoff.SpareArg

// Spare runs a spare worker: a built-in worker process netauthd starts before a user needs
// one, so that a user's first connection does not wait for a program to start. It waits on
// the control descriptor netauthd gave it (handoff.Env) for its one assignment
// (handoff.Assignment), reading nothing else from anywhere; then, before anything else, it
// takes the assigned user's credentials for good (see become), sets the assigned environment
// and working directory, tells netauthd it did (handoff.TypeAssigned), and calls run with the
// assigned arguments: what follows netauthd's built-in worker command on the command line of
// a worker started afresh, the service's name first. It returns run's exit status; 0 when
// netauthd closes the channel without an assignment (a spare it no longer needs); and 1,
// saying why on stderr, when it cannot take its assignment (netauthd then starts the worker
// afresh). Once started by netauthd, it logs slog JSON records on stderr (NewLogger).
func Spare(run func(args []string) int, stderr io.Writer) int {
	fd, err := strconv.Atoi(os.Getenv(handoff.Env))
	if err != nil || fd < 3 {
		fmt.Fprintln(stderr, "a spare worker runs only as started by netauthd")
		return 2
	}
	log := NewLogger(stderr)
	ppid := os.Getppid()
	prepare()
	a, err := handoff.ReceiveAssignment(fd)
	if errors.Is(err, io.EOF) {
		return 0
	}
	if err != nil {
		log.Error("spare worker: receiving the assignment", "err", err)
		return 1
	}
	if a.Args[0] == SpareArg {
		log.Error("spare worker: assigned to be a spare again")
		return 1
	}
	if err := become(a, fd, ppid, log); err != nil {
		log.Error("spare worker: taking the assignment failed", "uid", a.UID, "err", err)
		return 1
	}
	if err := handoff.SendAssigned(fd); err != nil {
		log.Error("spare worker: answering the assignment", "err", err)
		return 1
	}
	return run(a.Args)
}

// Runner returns the function a spare of this package's built-in services calls with its
// assignment's arguments: Run(args[0], args[1:], stderr).
func Runner(stderr io.Writer) func(args []string) int {
	return func(args []string) int { return Run(args[0], args[1:], stderr) }
}
