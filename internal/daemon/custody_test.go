// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"ubns.dev/netauth/internal/audit"
	"ubns.dev/netauth/internal/handoff"
	"ubns.dev/netauth/internal/handshake"
	"ubns.dev/netauth/internal/record"
)

// TestSocketSwapGetsNothing plays a compromised acceptor that lets an honest user authenticate,
// then commits her session with a socket of its own: its own connection to the service port.
// It holds the handshake-record keys, so it can read the Verdict the worker sends first, but
// the worker goes on under application keys only the user and the monitor derived: the
// attacker's records are refused, it gets nothing it can decrypt, the worker drops the
// connection, and the audit log says so.
func TestSocketSwapGetsNothing(t *testing.T) {
	tb := newTestbed(t, whoamiService)
	e := newEvilAcceptor(t, tb)
	atk, err := net.Dial("tcp", e.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer atk.Close()
	theirs, err := e.ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer theirs.Close()
	swapped, err := theirs.(*net.TCPConn).File()
	if err != nil {
		t.Fatal(err)
	}
	defer swapped.Close()

	var hs *record.State // the acceptor's handshake-record state at message 3
	alice := tb.config("netauth-alice")
	alice.DisableResumption = true
	clientErr, _, _ := e.connect("netauth-alice", alice, tamperCore{
		conn: func(*os.File) *os.File { return swapped },
		commit: func(c tamperCore, req *commitRequest, f *os.File) ([]byte, error) {
			cp := *req.state
			hs = &cp
			return c.a.call(handoff.TypeCommit, req.marshal(), f)
		},
	})
	if clientErr == nil {
		t.Fatal("alice's own connection was served although her session went to another socket")
	}
	if hs == nil {
		t.Fatal("the acceptor never committed")
	}
	// The acceptor lets go of its copies of the swapped socket: only the worker holds it now.
	swapped.Close()
	theirs.Close()

	// The attacker's view: the Verdict opens under the handshake key it holds.
	_ = atk.SetDeadline(time.Now().Add(10 * time.Second))
	in := record.NewHalf(hs.SendKey, hs.SendNonce)
	typ, content, err := readRecordWith(atk, in)
	if err != nil || typ != record.TypeVerdict || len(content) == 0 || content[0] != byte(handshake.CodeOK) {
		t.Fatalf("first record on the swapped socket: type 0x%02x, %v; want the accepting Verdict", typ, err)
	}
	// Its whoami request, sealed under the only client key it has, is refused by the worker.
	out := record.NewHalf(hs.RecvKey, hs.RecvNonce)
	req, err := out.Seal(nil, record.TypeData, []byte("?\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := atk.Write(req); err != nil {
		t.Fatal(err)
	}
	// Nothing else it receives opens under its key, and the worker closes the connection.
	for {
		typ, content, err := readRecordWith(atk, in)
		if errors.Is(err, io.EOF) || errors.Is(err, errConnReset) {
			break
		}
		if err == nil {
			t.Fatalf("the attacker decrypted a record of type 0x%02x: %q", typ, content)
		}
		if !errors.Is(err, record.ErrAuth) {
			t.Fatalf("reading the swapped socket: %v", err)
		}
	}
	waitUntil(t, 10*time.Second, func() string { return "no audit record of the dropped session" },
		func() bool {
			return tb.auditCount(audit.Refused, "failed authentication") > 0 || tb.auditSummarized("record_auth_failed") > 0
		})
}

// errConnReset stands for a connection the peer reset (the worker may close with unread
// data pending).
var errConnReset = errors.New("connection reset")

// readRecordWith reads one record frame from c and opens it with h; a frame h cannot open is
// record.ErrAuth (and h's counter does not advance).
func readRecordWith(c net.Conn, h *record.Half) (byte, []byte, error) {
	hdr := make([]byte, record.HeaderLen)
	if _, err := io.ReadFull(c, hdr); err != nil {
		if isReset(err) {
			return 0, nil, errConnReset
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, nil, io.EOF
		}
		return 0, nil, err
	}
	body := make([]byte, int(hdr[1])<<8|int(hdr[2]))
	if _, err := io.ReadFull(c, body); err != nil {
		if isReset(err) {
			return 0, nil, errConnReset
		}
		return 0, nil, err
	}
	if hdr[0] != record.FrameRecord {
		return 0, nil, record.ErrUnexpectedFrame
	}
	return h.Open(hdr, body)
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && !op.Timeout()
}
