// SPDX-License-Identifier: Apache-2.0

package handshake

import (
	"bytes"
	"errors"
	"testing"

	"ubns.dev/netauth/internal/noise"
	"ubns.dev/netauth/internal/record"
)

// checkWorld drives the server of the fuzz world with hand-made client records after its
// ServerHello: the world's ephemeral keys are fixed, so the record keys of its full and
// resumed handshakes are known in advance.
type checkWorld struct {
	w            *fzServerWorld
	hello        []byte // ClientHello frame
	c2s, s2c     [32]byte
	hash         []byte
	serverFrames int // frames the server sends before it reads message 3
}

func newCheckWorld(t *testing.T, resume bool) *checkWorld {
	t.Helper()
	w := fzGetWorld(t)
	cw := &checkWorld{w: w, serverFrames: 2}
	transcript := w.full
	var psk []byte
	if resume {
		transcript, psk, cw.serverFrames = w.resume, w.session.Secret, 1
	}
	cw.hello = fzFrames(transcript)[0]
	ch, err := parseClientHello(fzBody(cw.hello))
	if err != nil {
		t.Fatal(err)
	}
	eph := w.clientEph
	pro := prologue(ch, len(ch.Noise))
	var hs *noise.Initiator
	if resume {
		hs, err = noise.NewInitiator(noise.NNpsk0, pro, &eph, psk)
	} else {
		hs, err = noise.NewInitiatorHFS(pro, &eph, w.clientKEM)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hs.WriteMessage1(nil, nil); err != nil {
		t.Fatal(err)
	}
	// The server's answer to the ClientHello alone.
	conn := &fzConn{in: cw.hello}
	RunServer(record.NewConn(conn), w.serverConfig())
	sh := fzFrames(conn.out.Bytes())[0]
	if sh[0] != record.FrameServerHello || (sh[record.HeaderLen] == ModeResume) != resume {
		t.Fatalf("ServerHello % x", sh[:min(len(sh), 4)])
	}
	if _, err := hs.ReadMessage2(fzBody(sh)[1:]); err != nil {
		t.Fatal(err)
	}
	keys, err := hs.Split()
	if err != nil {
		t.Fatal(err)
	}
	cw.c2s, cw.s2c, cw.hash = keys.K1, keys.K2, keys.HandshakeHash[:]
	return cw
}

// rec is one client record: inner type and content, or raw frame bytes.
type rec struct {
	typ     byte
	content []byte
	raw     []byte
}

// serve runs the server on the ClientHello followed by records (sealed in order under the
// client's key, rekeying after a rekey record) and returns the code of the Verdict it sent
// (-1 if it sent none) and its error.
func (cw *checkWorld) serve(t *testing.T, cfg *ServerConfig, recs ...rec) (int, error) {
	t.Helper()
	send := record.NewHalf(cw.c2s, 0)
	in := append([]byte(nil), cw.hello...)
	for _, r := range recs {
		if r.raw != nil {
			in = append(in, r.raw...)
			continue
		}
		var err error
		if in, err = send.Seal(in, r.typ, r.content); err != nil {
			t.Fatal(err)
		}
		if r.typ == record.TypeRekey {
			send.Rekey()
		}
	}
	conn := &fzConn{in: in}
	_, err := RunServer(record.NewConn(conn), cfg)
	fr := fzFrames(conn.out.Bytes())
	if len(fr) < cw.serverFrames || len(fr) > cw.serverFrames+1 {
		t.Fatalf("server sent %d frames", len(fr))
	}
	if len(fr) == cw.serverFrames {
		return -1, err
	}
	recv := record.NewHalf(cw.s2c, uint64(cw.serverFrames-1))
	v := fr[cw.serverFrames]
	typ, content, oerr := recv.Open(v[:record.HeaderLen], append([]byte(nil), v[record.HeaderLen:]...))
	if oerr != nil || typ != record.TypeVerdict {
		t.Fatalf("server's record after the handshake messages: type 0x%02x, %v; want a Verdict", typ, oerr)
	}
	verd, perr := parseVerdict(content)
	if perr != nil {
		t.Fatal(perr)
	}
	return int(verd.Code), err
}

func flipped(b []byte, i int) []byte {
	b = append([]byte(nil), b...)
	b[i] ^= 1
	return b
}

// TestResumeChecks pins the server's checks of a resumed handshake's first client record, in
// the order and with the codes of docs/PROTOCOL.md §4: a Verdict with a code for everything
// but the end of the stream and a close record.
func TestResumeChecks(t *testing.T) {
	cw := newCheckWorld(t, true)
	binder := resumptionBinder(cw.w.session.Secret, cw.hash)
	refuseAuthorize := cw.w.serverConfig()
	refuseAuthorize.Authorize = func(*Result) (any, error) { return nil, errors.New("key removed") }
	const none = -1
	cases := []struct {
		name string
		cfg  *ServerConfig
		recs []rec
		want int
	}{
		{"binder", nil, []rec{{typ: record.TypeBinder, content: binder}}, int(CodeOK)},
		{"rekey records, then the binder", nil, []rec{{typ: record.TypeRekey}, {typ: record.TypeRekey}, {typ: record.TypeBinder, content: binder}}, int(CodeOK)},
		{"end of stream", nil, nil, none},
		{"close record", nil, []rec{{typ: record.TypeClose}}, none},
		{"rekey, then a close record", nil, []rec{{typ: record.TypeRekey}, {typ: record.TypeClose}}, none},
		{"not a record frame", nil, []rec{{raw: []byte{record.FrameAlert, 0, 2, 1, 1}}}, int(CodeProtocolError)},
		{"record body of 16 bytes", nil, []rec{{raw: fzCat(fzHeader(record.FrameRecord, 16), make([]byte, 16))}}, int(CodeProtocolError)},
		{"record that does not decrypt", nil, []rec{{raw: fzCat(fzHeader(record.FrameRecord, 49), make([]byte, 49))}}, int(CodeProtocolError)},
		{"data record", nil, []rec{{typ: record.TypeData, content: []byte("ping")}}, int(CodeProtocolError)},
		{"ClientAuth record", nil, []rec{{typ: record.TypeClientAuth, content: cw.w.ca}}, int(CodeProtocolError)},
		{"unknown inner type", nil, []rec{{typ: 0x42, content: binder}}, int(CodeProtocolError)},
		{"33-byte binder", nil, []rec{{typ: record.TypeBinder, content: append(binder, 0)}}, int(CodeProtocolError)},
		{"31-byte binder", nil, []rec{{typ: record.TypeBinder, content: binder[:31]}}, int(CodeProtocolError)},
		{"wrong binder", nil, []rec{{typ: record.TypeBinder, content: flipped(binder, 31)}}, int(CodeAuthFailed)},
		{"key no longer authorized", refuseAuthorize, []rec{{typ: record.TypeBinder, content: binder}}, int(CodeNotAuthorized)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			if cfg == nil {
				cfg = cw.w.serverConfig()
			}
			code, err := cw.serve(t, cfg, tc.recs...)
			if code != tc.want {
				t.Fatalf("Verdict code %d (-1: none), want %d; server: %v", code, tc.want, err)
			}
			var r *Refusal
			switch {
			case tc.want == int(CodeOK):
				if err != nil {
					t.Fatalf("accepted with error %v", err)
				}
			case tc.want == none:
				if err == nil || errors.As(err, &r) {
					t.Fatalf("server: %v, want an I/O error without refusal", err)
				}
			default:
				if !errors.As(err, &r) || int(r.Code) != tc.want {
					t.Fatalf("server: %v, want a refusal with code %d", err, tc.want)
				}
			}
		})
	}
}

// TestFullHandshakeRecordChecks: before ClientAuth the server skips rekey records, refuses a
// record body under 17 bytes with a protocol_error Verdict, and sends no Verdict after a
// close record (docs/PROTOCOL.md §3.7).
func TestFullHandshakeRecordChecks(t *testing.T) {
	cw := newCheckWorld(t, false)
	cases := []struct {
		name string
		recs []rec
		want int
	}{
		{"ClientAuth", []rec{{typ: record.TypeClientAuth, content: cw.w.ca}}, int(CodeOK)},
		{"rekey, then ClientAuth", []rec{{typ: record.TypeRekey}, {typ: record.TypeClientAuth, content: cw.w.ca}}, int(CodeOK)},
		{"record body of 16 bytes", []rec{{raw: fzCat(fzHeader(record.FrameRecord, 16), make([]byte, 16))}}, int(CodeProtocolError)},
		{"data record", []rec{{typ: record.TypeData, content: []byte("ping")}}, int(CodeProtocolError)},
		{"close record", []rec{{typ: record.TypeClose}}, -1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, err := cw.serve(t, cw.w.serverConfig(), tc.recs...)
			if code != tc.want {
				t.Fatalf("Verdict code %d (-1: none), want %d; server: %v", code, tc.want, err)
			}
		})
	}
}

// TestClientSkipsRekeyBeforeVerdict: the client, too, processes rekey records wherever they
// come, here before the Verdict of a resumed handshake, whose counter is then 1, not 0.
func TestClientSkipsRekeyBeforeVerdict(t *testing.T) {
	cw := newCheckWorld(t, true)
	conn := &fzConn{in: fzFrames(cw.w.resume)[0]}
	RunServer(record.NewConn(conn), cw.w.serverConfig())
	sh := fzFrames(conn.out.Bytes())[0]
	send := record.NewHalf(cw.s2c, 0)
	in := append([]byte(nil), sh...)
	in, _ = send.Seal(in, record.TypeRekey, nil)
	send.Rekey()
	in, _ = send.Seal(in, record.TypeVerdict, (&verdict{Code: CodeOK}).marshal())
	sess := *cw.w.session
	sess.Secret = append([]byte(nil), cw.w.session.Secret...)
	cc := &fzConn{in: in}
	cli, err := RunClient(record.NewConn(cc), cw.w.clientConfig(&sess))
	if err != nil || !cli.Result.Resumed {
		t.Fatalf("client: %v", err)
	}
	if _, err := cli.ReadVerdict(cw.w.now); err != nil {
		t.Fatalf("Verdict after a rekey record: %v", err)
	}
	if !bytes.Equal(cli.Result.HandshakeHash, cw.hash) {
		t.Fatal("handshake hash differs")
	}
}
