// SPDX-License-Identifier: Apache-2.0

package handoff

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/sys/unix"
)

// A spare worker is a built-in worker process netauthd starts before it is needed. It waits
// on its control channel for exactly one TypeAssign message, takes the credentials, working
// directory, environment and arguments the message gives, answers TypeAssigned, and from then
// on is a worker like any other on the same channel. Until it is assigned it has received
// nothing but what netauthd gave it when it started it.

// SpareArg, given to netauthd's built-in worker command (Options.Self in package daemon) where
// a built-in service's name goes, starts a spare worker: "netauthd-acceptor -worker -spare".
const SpareArg = "-spare"

// Limits on an Assignment. An assignment is made by netauthd from its configuration and the
// user database, never from network bytes; the limits only keep a marshaled one inside a
// MaxRequest message.
const (
	MaxAssignGroups = 4096    // supplementary groups (Linux's NGROUPS_MAX is 65536; few systems come near this)
	MaxAssignArgs   = 256     // arguments
	MaxAssignEnv    = 64      // environment variables
	MaxAssignString = 8 << 10 // one argument, variable or the directory
)

const assignVersion = 1

// Assignment is the payload of a TypeAssign message: whom a spare worker becomes and what it
// runs.
type Assignment struct {
	// SetCredentials says the spare must take UID, GID and Groups (netauthd is root). When
	// false (netauthd is not root and its workers keep its credentials) the spare keeps its
	// own, and must already have UID.
	SetCredentials bool
	UID, GID       uint32
	Groups         []uint32
	// Dir is the working directory (absolute).
	Dir string
	// Env is the whole environment, as "NAME=value" entries.
	Env []string
	// Args are the built-in worker's arguments: what follows netauthd's built-in worker
	// command (Options.Self) on the command line of a worker started afresh, the built-in
	// service's name first.
	Args []string
}

// check reports what is wrong with a, or nil.
func (a *Assignment) check() error {
	switch {
	case len(a.Groups) > MaxAssignGroups:
		return fmt.Errorf("handoff: assignment with %d groups, at most %d", len(a.Groups), MaxAssignGroups)
	case len(a.Args) == 0:
		return errors.New("handoff: assignment without arguments")
	case len(a.Args) > MaxAssignArgs:
		return fmt.Errorf("handoff: assignment with %d arguments, at most %d", len(a.Args), MaxAssignArgs)
	case len(a.Env) > MaxAssignEnv:
		return fmt.Errorf("handoff: assignment with %d environment variables, at most %d", len(a.Env), MaxAssignEnv)
	case !filepath.IsAbs(a.Dir):
		return errors.New("handoff: assignment's directory is not an absolute path")
	}
	strs := append(append([]string{a.Dir}, a.Args...), a.Env...)
	for _, s := range strs {
		if len(s) > MaxAssignString {
			return fmt.Errorf("handoff: assignment string of %d bytes, at most %d", len(s), MaxAssignString)
		}
		// Arguments and variables become C strings (the process's command line and
		// environment blocks).
		if strings.IndexByte(s, 0) >= 0 {
			return errors.New("handoff: assignment string with a NUL byte")
		}
	}
	for _, kv := range a.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return errors.New("handoff: assignment's environment entry is not NAME=value")
		}
	}
	return nil
}

// Marshal encodes a.
func (a *Assignment) Marshal() ([]byte, error) {
	if err := a.check(); err != nil {
		return nil, err
	}
	b := cryptobyte.NewBuilder(nil)
	b.AddUint8(assignVersion)
	var flags uint8
	if a.SetCredentials {
		flags = 1
	}
	b.AddUint8(flags)
	b.AddUint32(a.UID)
	b.AddUint32(a.GID)
	b.AddUint16(uint16(len(a.Groups)))
	for _, g := range a.Groups {
		b.AddUint32(g)
	}
	addString := func(s string) { b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(s)) }) }
	addString(a.Dir)
	for _, list := range [][]string{a.Args, a.Env} {
		b.AddUint16(uint16(len(list)))
		for _, s := range list {
			addString(s)
		}
	}
	out, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("handoff: marshaling an assignment: %w", err)
	}
	if len(out) > MaxRequest {
		return nil, fmt.Errorf("handoff: assignment of %d bytes exceeds %d", len(out), MaxRequest)
	}
	return out, nil
}

// ParseAssignment decodes a TypeAssign payload, checking every limit before allocating.
func ParseAssignment(p []byte) (*Assignment, error) {
	bad := errors.New("handoff: malformed assignment")
	s := cryptobyte.String(p)
	var version, flags uint8
	a := &Assignment{}
	var n uint16
	if !s.ReadUint8(&version) || version != assignVersion || !s.ReadUint8(&flags) || flags > 1 ||
		!s.ReadUint32(&a.UID) || !s.ReadUint32(&a.GID) || !s.ReadUint16(&n) {
		return nil, bad
	}
	a.SetCredentials = flags == 1
	if int(n) > MaxAssignGroups || len(s) < 4*int(n) {
		return nil, bad
	}
	a.Groups = make([]uint32, n)
	for i := range a.Groups {
		s.ReadUint32(&a.Groups[i])
	}
	readString := func(dst *string) bool {
		var v cryptobyte.String
		if !s.ReadUint16LengthPrefixed(&v) || len(v) > MaxAssignString {
			return false
		}
		*dst = string(v)
		return true
	}
	if !readString(&a.Dir) {
		return nil, bad
	}
	for _, l := range []struct {
		dst *[]string
		max int
	}{{&a.Args, MaxAssignArgs}, {&a.Env, MaxAssignEnv}} {
		if !s.ReadUint16(&n) || int(n) > l.max || len(s) < 2*int(n) {
			return nil, bad
		}
		*l.dst = make([]string, n)
		for i := range *l.dst {
			if !readString(&(*l.dst)[i]) {
				return nil, bad
			}
		}
	}
	if !s.Empty() {
		return nil, bad
	}
	if err := a.check(); err != nil {
		return nil, err
	}
	return a, nil
}

// ReceiveAssignment waits on the control descriptor fd of a spare worker (blocking) for its
// TypeAssign message and returns the assignment. It reads with plain system calls on fd
// (neither duplicating, wrapping nor closing it), so the spare's fd is the same descriptor,
// untouched, when the worker it becomes takes the channel over. It returns io.EOF (wrapped)
// when netauthd closed the channel without assigning the spare, and an error for any other
// message; every descriptor that came with one is closed.
func ReceiveAssignment(fd int) (*Assignment, error) {
	m, f, err := recv(fd)
	for errors.Is(err, unix.EAGAIN) { // a descriptor in non-blocking mode
		if _, err = retry(func() (int, error) {
			return unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, -1)
		}); err != nil {
			return nil, fmt.Errorf("handoff: waiting for an assignment: %w", err)
		}
		m, f, err = recv(fd)
	}
	if f != nil {
		f.Close()
	}
	if err != nil {
		return nil, err
	}
	if m.Type != TypeAssign {
		return nil, fmt.Errorf("handoff: a spare worker received a %v message, want assign", m.Type)
	}
	a, err := ParseAssignment(m.Payload)
	clear(m.Payload)
	return a, err
}

// SendAssigned tells netauthd, on the control descriptor fd of a spare worker, that the spare
// took its assignment.
func SendAssigned(fd int) error {
	return sendBare(fd, TypeAssigned)
}

// SendReady tells netauthd, on the control descriptor fd, that the instance an instance
// worker started accepts connections (TypeReady). The worker sends it before it takes any
// connection (before netauth.Listen takes the descriptor).
func SendReady(fd int) error {
	return sendBare(fd, TypeReady)
}

// sendBare sends a message of type t with no ID, payload or descriptor on fd.
func sendBare(fd int, t Type) error {
	b := (&Message{Type: t}).marshal()
	for {
		err := unix.Sendmsg(fd, b, nil, nil, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("handoff: sending %v: %w", t, os.NewSyscallError("sendmsg", err))
		}
		return nil
	}
}
