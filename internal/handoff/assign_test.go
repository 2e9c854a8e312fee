// SPDX-License-Identifier: Apache-2.0

package handoff

import (
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

func testAssignment() *Assignment {
	return &Assignment{
		SetCredentials: true, UID: 1001, GID: 1002, Groups: []uint32{1002, 27, 100},
		Dir:  "/home/alice",
		Env:  []string{"PATH=/usr/bin:/bin", "HOME=/home/alice", "NETAUTH_USER=alice", "EMPTY="},
		Args: []string{"exec", "--", "/usr/lib/dovecot/imap", ""},
	}
}

func TestAssignmentRoundTrip(t *testing.T) {
	for _, a := range []*Assignment{
		testAssignment(),
		{UID: 1000, GID: 1000, Groups: []uint32{}, Dir: "/", Env: []string{}, Args: []string{"whoami"}},
	} {
		b, err := a.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseAssignment(b)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, a) {
			t.Errorf("round trip: got %+v, want %+v", got, a)
		}
		// Every prefix and every longer input is refused.
		for i := range b {
			if _, err := ParseAssignment(b[:i]); err == nil {
				t.Errorf("a %d-byte prefix of a %d-byte assignment parsed", i, len(b))
			}
		}
		if _, err := ParseAssignment(append(b, 0)); err == nil {
			t.Error("an assignment with a trailing byte parsed")
		}
	}
}

// TestAssignmentLimits: Marshal refuses an assignment beyond the limits, and ParseAssignment
// refuses one whose counts announce more than the limits before allocating for them.
func TestAssignmentLimits(t *testing.T) {
	long := strings.Repeat("x", MaxAssignString+1)
	for name, change := range map[string]func(a *Assignment){
		"no arguments":          func(a *Assignment) { a.Args = nil },
		"too many arguments":    func(a *Assignment) { a.Args = make([]string, MaxAssignArgs+1) },
		"too many variables":    func(a *Assignment) { a.Env = make([]string, MaxAssignEnv+1) },
		"too many groups":       func(a *Assignment) { a.Groups = make([]uint32, MaxAssignGroups+1) },
		"relative directory":    func(a *Assignment) { a.Dir = "home/alice" },
		"long argument":         func(a *Assignment) { a.Args = []string{long} },
		"long directory":        func(a *Assignment) { a.Dir = "/" + long },
		"NUL in an argument":    func(a *Assignment) { a.Args = []string{"who\x00ami"} },
		"NUL in a variable":     func(a *Assignment) { a.Env = []string{"A=b\x00c"} },
		"variable without =":    func(a *Assignment) { a.Env = []string{"PATH"} },
		"variable without name": func(a *Assignment) { a.Env = []string{"=x"} },
	} {
		a := testAssignment()
		change(a)
		if b, err := a.Marshal(); err == nil {
			t.Errorf("%s: marshaled (%d bytes)", name, len(b))
		}
	}
	// Counts beyond the limits, with nothing after them.
	header := []byte{assignVersion, 1, 0, 0, 3, 0xe9, 0, 0, 3, 0xea}
	if _, err := ParseAssignment(append(header, 0xff, 0xff)); err == nil {
		t.Error("65535 groups parsed")
	}
	noGroupsDir := append(append([]byte{}, header...), 0, 0, 0, 1, '/')
	if _, err := ParseAssignment(append(noGroupsDir, 0xff, 0xff)); err == nil {
		t.Error("65535 arguments parsed")
	}
	if _, err := ParseAssignment(append(noGroupsDir, 0, 1, 0, 1, 'x', 0xff, 0xff)); err == nil {
		t.Error("65535 variables parsed")
	}
	if _, err := ParseAssignment(append(noGroupsDir, 0, 1, 0, 1, 'x', 0, 0)); err != nil {
		t.Errorf("the same assignment with no variables: %v", err)
	}
	bad := append([]byte{}, noGroupsDir...)
	bad[1] = 2 // an unknown flag
	if _, err := ParseAssignment(append(bad, 0, 1, 0, 1, 'x', 0, 0)); err == nil {
		t.Error("an assignment with an unknown flag parsed")
	}
}

// TestReceiveAssignment: a spare receives its assignment with plain system calls on its
// descriptor, answers TypeAssigned, and refuses any other message (closing a descriptor that
// came with it); a closed channel is io.EOF.
func TestReceiveAssignment(t *testing.T) {
	d, f, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	defer f.Close()
	fd := int(f.Fd()) // blocking, as a spare inherits it
	a := testAssignment()
	payload, err := a.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Send(&Message{Type: TypeAssign, Payload: payload}, nil); err != nil {
		t.Fatal(err)
	}
	got, err := ReceiveAssignment(fd)
	if err != nil || !reflect.DeepEqual(got, a) {
		t.Fatalf("ReceiveAssignment: %+v %v", got, err)
	}
	if err := SendAssigned(fd); err != nil {
		t.Fatal(err)
	}
	if m, f, err := d.Recv(); err != nil || f != nil || m.Type != TypeAssigned {
		t.Fatalf("after SendAssigned: %+v %v %v", m, f, err)
	}

	pf := pipeFile(t)
	before := countFDs(t)
	if err := d.Send(&Message{Type: TypeConn, ID: 1, Payload: testConn().Marshal()}, pf); err != nil {
		t.Fatal(err)
	}
	if _, err := ReceiveAssignment(fd); err == nil || !strings.Contains(err.Error(), "want assign") {
		t.Errorf("a conn message instead of an assignment: %v", err)
	}
	checkFDs(t, before)
	if err := d.Send(&Message{Type: TypeAssign, Payload: []byte{9}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ReceiveAssignment(fd); err == nil {
		t.Error("a malformed assignment was received")
	}
	d.Close()
	if _, err := ReceiveAssignment(fd); !errors.Is(err, io.EOF) {
		t.Errorf("after the daemon closed the channel: %v, want io.EOF", err)
	}
}

// TestAssignMessages: TypeAssign carries a payload and no descriptor, TypeAssigned neither.
func TestAssignMessages(t *testing.T) {
	d, w := pair(t)
	for _, m := range []*Message{
		{Type: TypeAssign},
		{Type: TypeAssign, Payload: make([]byte, MaxRequest+1)},
		{Type: TypeAssigned, Payload: []byte{1}},
	} {
		if err := d.Send(m, nil); err == nil {
			t.Errorf("sent %v with %d bytes", m.Type, len(m.Payload))
		}
	}
	if err := d.Send(&Message{Type: TypeAssign, Payload: []byte{1}}, pipeFile(t)); err == nil {
		t.Error("sent an assignment with a descriptor")
	}
	if err := w.Send(&Message{Type: TypeAssigned}, nil); err != nil {
		t.Fatal(err)
	}
	if m, _, err := d.Recv(); err != nil || m.Type != TypeAssigned || m.Type.String() != "assigned" || TypeAssign.String() != "assign" {
		t.Fatalf("%+v %v", m, err)
	}
}

// TestSendReady: an instance worker's TypeReady, sent on the raw control descriptor before
// netauth.Listen takes it, arrives as a message with neither payload nor descriptor, and one
// with a payload is refused.
func TestSendReady(t *testing.T) {
	d, w := pair(t)
	if err := d.Send(&Message{Type: TypeReady, Payload: []byte{1}}, nil); err == nil {
		t.Error("sent a ready message with a payload")
	}
	var serr error
	if err := w.sc.Control(func(fd uintptr) { serr = SendReady(int(fd)) }); err != nil || serr != nil {
		t.Fatal(err, serr)
	}
	if m, f, err := d.Recv(); err != nil || f != nil || m.Type != TypeReady || m.Type.String() != "ready" {
		t.Fatalf("%+v %v %v", m, f, err)
	}
}
