// SPDX-License-Identifier: Apache-2.0

package handshake

import (
	"bytes"
	"crypto/ed25519"
	"crypto/mlkem"
	"crypto/mlkem/mlkemtest"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth/internal/kem"
	"ubns.dev/netauth/internal/keys"
	"ubns.dev/netauth/internal/record"
	"ubns.dev/netauth/internal/x25519"
)

// fzRand returns a deterministic random stream.
func fzRand(label string) io.Reader {
	var seed [32]byte
	copy(seed[:], label)
	return mrand.NewChaCha8(seed)
}

// fzServerWorld is a deterministic server and client: fixed host, user, ephemeral and
// ML-KEM keys, encapsulation randomness, ticket keys and clock, so a recorded client
// transcript replays exactly against a fresh server.
type fzServerWorld struct {
	hostKey   ed25519.PrivateKey
	hostPub   ssh.PublicKey
	user      keySigner
	tickets   *TicketKeys
	now       time.Time
	serverEph x25519.KeyPair
	clientEph x25519.KeyPair
	clientKEM *mlkem.DecapsulationKey768
	encRand   []byte // the server's encapsulation randomness

	full    []byte   // client bytes of an accepted full handshake
	resume  []byte   // client bytes of an accepted resumed handshake
	session *Session // the session the full handshake issued
	sa      []byte   // the ServerAuth content the server sends
	ca      []byte   // the ClientAuth content the client sent
	verdict []byte   // the accepting Verdict content
}

var (
	fzWorldOnce sync.Once
	fzWorld     *fzServerWorld
	fzWorldErr  error
)

// fzGetWorld builds the world once per process and records the two transcripts.
func fzGetWorld(t testing.TB) *fzServerWorld {
	t.Helper()
	fzWorldOnce.Do(func() { fzWorld, fzWorldErr = fzNewWorld() })
	if fzWorldErr != nil {
		t.Fatalf("fuzz world: %v", fzWorldErr)
	}
	return fzWorld
}

func fzNewWorld() (*fzServerWorld, error) {
	w := &fzServerWorld{now: time.Unix(1_800_000_000, 0)}
	w.hostKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))
	w.hostPub, _ = ssh.NewPublicKey(w.hostKey.Public())
	us, err := ssh.NewSignerFromKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{2}, 32)))
	if err != nil {
		return nil, err
	}
	w.user = keySigner{us}
	w.tickets = NewTicketKeys(time.Hour, fzRand("ticket keys"))
	if w.serverEph, err = x25519.Generate(fzRand("server ephemeral")); err != nil {
		return nil, err
	}
	if w.clientEph, err = x25519.Generate(fzRand("client ephemeral")); err != nil {
		return nil, err
	}
	if w.clientKEM, err = kem.Generate(fzRand("client KEM key")); err != nil {
		return nil, err
	}
	w.encRand = make([]byte, 32)
	if _, err := io.ReadFull(fzRand("server encapsulation"), w.encRand); err != nil {
		return nil, err
	}

	tr, err := w.runTranscript(nil)
	if err != nil {
		return nil, fmt.Errorf("recording the full handshake: %w", err)
	}
	if tr.srv.Resumed || tr.session == nil {
		return nil, errors.New("full handshake resumed or issued no ticket")
	}
	w.full, w.session = tr.sent, tr.session
	w.ca = (&clientAuth{User: "alice", Time: uint64(w.now.Unix()), SSHSIG: tr.srv.Signature}).marshal()
	w.sa = (&serverAuth{HostKey: w.hostPub.Marshal(), Signature: hostSignature(w.hostKey, tr.srv.HandshakeHash), Service: "echo"}).marshal()
	w.verdict = (&verdict{Code: CodeOK, Lifetime: 3600, Ticket: w.session.Ticket}).marshal()

	sess := *w.session
	sess.Secret = append([]byte(nil), w.session.Secret...) // RunClient's caller zeroes its copy
	tr, err = w.runTranscript(&sess)
	if err != nil {
		return nil, fmt.Errorf("recording the resumed handshake: %w", err)
	}
	if !tr.srv.Resumed || !tr.cli.Result.Resumed {
		return nil, errors.New("second handshake did not resume")
	}
	w.resume = tr.sent
	return w, nil
}

func (w *fzServerWorld) serverConfig() *ServerConfig {
	cfg := &ServerConfig{
		HostKey: w.hostKey,
		Service: "echo",
		Tickets: w.tickets,
		Eligible: eligibleKey(func(user string) ssh.PublicKey {
			if user == "alice" {
				return w.user.PublicKey()
			}
			return nil
		}),
		Replay:    NewReplayCache(0),
		Now:       func() time.Time { return w.now },
		Ephemeral: func() (x25519.KeyPair, error) { return w.serverEph, nil },
		Encapsulate: func(ek *mlkem.EncapsulationKey768) ([]byte, []byte, error) {
			return mlkemtest.Encapsulate768(ek, w.encRand)
		},
	}
	cfg.Authorize = admitting(cfg.Eligible)
	return cfg
}

func (w *fzServerWorld) clientConfig(sess *Session) *ClientConfig {
	return &ClientConfig{
		User:   "alice",
		Signer: w.user,
		CheckHostKey: func(k ssh.PublicKey, _ string) error {
			if !bytes.Equal(k.Marshal(), w.hostPub.Marshal()) {
				return errors.New("wrong host key")
			}
			return nil
		},
		Session:   sess,
		Now:       func() time.Time { return w.now },
		Ephemeral: func() (x25519.KeyPair, error) { return w.clientEph, nil },
		KEM:       func() (*mlkem.DecapsulationKey768, error) { return w.clientKEM, nil },
	}
}

// fzMalformedKey returns a copy of a ClientHello frame (full or resume mode) whose
// encapsulation key has a first coefficient of 4095, not reduced modulo q = 3329: the right
// size, refused by FIPS 203's modulus check.
func fzMalformedKey(hello []byte) []byte {
	b := append([]byte(nil), hello...)
	at := len(b) - NoiseMessage1Full + DHLen // a full-mode hello ends with e || ek
	if b[record.HeaderLen+len(Magic)+1] == ModeResume {
		at -= 16 // e || ek || tag
	}
	b[at] = 0xff
	b[at+1] |= 0x0f
	return b
}

// fzRecConn records what is written to it.
type fzRecConn struct {
	net.Conn
	sent *bytes.Buffer
}

func (c fzRecConn) Write(p []byte) (int, error) {
	c.sent.Write(p)
	return c.Conn.Write(p)
}

type fzTranscript struct {
	sent    []byte // every byte the client sent
	cli     *Client
	srv     *Result
	session *Session // issued by a full handshake
}

// runTranscript runs the world's client (offering sess) against its server over a pipe.
func (w *fzServerWorld) runTranscript(sess *Session) (*fzTranscript, error) {
	cn, sn := net.Pipe()
	defer cn.Close()
	defer sn.Close()
	type srvOut struct {
		res *Result
		err error
	}
	ch := make(chan srvOut, 1)
	go func() {
		res, err := RunServer(record.NewConn(sn), w.serverConfig())
		ch <- srvOut{res, err}
	}()
	var sent bytes.Buffer
	tr := &fzTranscript{}
	var err error
	tr.cli, err = RunClient(record.NewConn(fzRecConn{cn, &sent}), w.clientConfig(sess))
	if err == nil && tr.cli.Pending() {
		tr.session, err = tr.cli.ReadVerdict(w.now)
	}
	if err != nil {
		cn.Close()
		<-ch
		return nil, err
	}
	o := <-ch
	if o.err != nil {
		return nil, o.err
	}
	tr.srv, tr.sent = o.res, sent.Bytes()
	return tr, nil
}

// fzConn reads a fixed input (then io.EOF) and records what is written.
type fzConn struct {
	net.Conn
	in  []byte
	out bytes.Buffer
}

// RemoteAddr names the fuzzed client.
func (c *fzConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1} }

func (c *fzConn) Read(p []byte) (int, error) {
	if len(c.in) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.in)
	c.in = c.in[n:]
	return n, nil
}

func (c *fzConn) Write(p []byte) (int, error)      { return c.out.Write(p) }
func (c *fzConn) Close() error                     { return nil }
func (c *fzConn) SetDeadline(time.Time) error      { return nil }
func (c *fzConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fzConn) SetWriteDeadline(time.Time) error { return nil }

// fzFrames splits a byte stream into frames; a trailing partial frame is returned as the
// last element.
func fzFrames(b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		if len(b) < record.HeaderLen {
			return append(out, b)
		}
		n := record.HeaderLen + (int(b[1])<<8 | int(b[2]))
		if len(b) < n {
			return append(out, b)
		}
		out = append(out, b[:n])
		b = b[n:]
	}
	return out
}

// body returns a copy of a frame's body.
func fzBody(f []byte) []byte { return append([]byte(nil), f[record.HeaderLen:]...) }

func fzCat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// fzHeader returns a frame header of type typ claiming n bytes of body.
func fzHeader(typ byte, n int) []byte { return []byte{typ, byte(n >> 8), byte(n)} }

// fzU16 prefixes b with its 16-bit length.
func fzU16(b []byte) []byte { return fzCat([]byte{byte(len(b) >> 8), byte(len(b))}, b) }

// fzCheckMalformed fails unless err is one a parser may return.
func fzCheckMalformed(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, errMalformed) && !errors.Is(err, errVersion) {
		t.Fatalf("parser error %v wraps neither errMalformed nor errVersion", err)
	}
}

func FuzzParseClientHello(f *testing.F) {
	w := fzGetWorld(f)
	full := fzBody(fzFrames(w.full)[0])
	resume := fzBody(fzFrames(w.resume)[0])
	noiseResume := make([]byte, NoiseMessage1Resume)
	hello := func(ver, mode byte, ticket, noise []byte) []byte {
		return fzCat([]byte(Magic), []byte{ver, mode}, fzU16(ticket), noise)
	}
	f.Add(full)                                                                     // valid full-mode ClientHello
	f.Add(resume)                                                                   // valid resume-mode ClientHello with a real ticket
	f.Add(hello(Version, ModeResume, make([]byte, MaxTicketSize), noiseResume))     // max frame: largest ticket, MaxClientHello bytes
	f.Add(hello(Version, ModeResume, make([]byte, MaxTicketSize+1), noiseResume))   // frame+1: ticket one byte too long
	f.Add([]byte{})                                                                 // empty
	f.Add([]byte("netauth"))                                                        // truncated after the magic
	f.Add([]byte("netauth\x03"))                                                    // truncated after the version
	f.Add([]byte("netauth\x03\x00"))                                                // truncated after the mode
	f.Add([]byte("netauth\x03\x00\x00"))                                            // truncated inside the ticket length
	f.Add(full[:len(full)-1])                                                       // truncated inside the encapsulation key
	f.Add(full[:len(full)-KEMKeyLen])                                               // ephemeral key only, as version 2 sent it
	f.Add(fzCat(full, []byte{0}))                                                   // one trailing byte
	f.Add(resume[:len(resume)-1])                                                   // truncated inside the NNpsk0 tag
	f.Add(fzCat(resume[:len(resume)-NoiseMessage1Resume], resume[len(resume)-48:])) // resume-mode Noise message without the encapsulation key
	f.Add(resume[:len(resume)-NoiseMessage1Resume-3])                               // truncated inside the ticket
	f.Add(fzBody(fzMalformedKey(fzFrames(w.full)[0])))                              // malformed encapsulation key: the parser does not look inside
	f.Add(hello(Version+1, ModeFull, nil, make([]byte, NoiseMessage1Full)))         // wrong version byte
	f.Add(hello(2, ModeFull, nil, make([]byte, 32)))                                // a version-2 ClientHello
	f.Add(hello(Version, 2, nil, make([]byte, NoiseMessage1Full)))                  // unknown mode byte
	f.Add(hello(Version, ModeFull, []byte{1}, make([]byte, NoiseMessage1Full)))     // ticket in a full hello
	f.Add(hello(Version, ModeResume, nil, noiseResume))                             // resume without a ticket
	f.Add(hello(Version, ModeResume, []byte{1}, make([]byte, NoiseMessage1Full)))   // resume with a full-mode Noise message
	f.Add(hello(Version, ModeFull, nil, make([]byte, NoiseMessage1Resume)))         // full with a resume-mode Noise message
	f.Add(fzCat([]byte("NETAUTH"), full[len(Magic):]))                              // wrong magic
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))                                         // not netauth at all
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := parseClientHello(body)
		if err != nil {
			fzCheckMalformed(t, err)
			return
		}
		if !bytes.Equal(m.body(), body) {
			t.Fatalf("parse then marshal changed the ClientHello")
		}
		if len(body) > MaxClientHello {
			t.Fatalf("accepted a %d-byte ClientHello, limit %d", len(body), MaxClientHello)
		}
		switch m.Mode {
		case ModeFull:
			if len(m.Ticket) != 0 || len(m.Noise) != NoiseMessage1Full {
				t.Fatalf("full hello with %d-byte ticket, %d-byte Noise message", len(m.Ticket), len(m.Noise))
			}
		case ModeResume:
			if len(m.Ticket) == 0 || len(m.Ticket) > MaxTicketSize || len(m.Noise) != NoiseMessage1Resume {
				t.Fatalf("resume hello with %d-byte ticket, %d-byte Noise message", len(m.Ticket), len(m.Noise))
			}
		default:
			t.Fatalf("accepted mode %d", m.Mode)
		}
		if m.Version != Version {
			t.Fatalf("accepted version %d", m.Version)
		}
	})
}

func FuzzParseServerHello(f *testing.F) {
	f.Add(fzCat([]byte{ModeFull}, make([]byte, NoiseMessage2Full)))       // valid full-mode ServerHello (max frame)
	f.Add(fzCat([]byte{ModeResume}, make([]byte, NoiseMessage2Resume)))   // valid resume-mode ServerHello
	f.Add(fzCat([]byte{ModeResume}, make([]byte, NoiseMessage2Full)))     // resume mode with a full-mode message
	f.Add(fzCat([]byte{ModeFull}, make([]byte, NoiseMessage2Resume)))     // full mode without a ciphertext, as version 2 sent it
	f.Add(fzCat([]byte{2}, make([]byte, NoiseMessage2Full)))              // wrong mode byte
	f.Add(fzCat([]byte{ModeFull}, make([]byte, NoiseMessage2Full+1)))     // max+1: one byte too long
	f.Add(fzCat([]byte{ModeFull}, make([]byte, NoiseMessage2Full-1)))     // short Noise message (short tag)
	f.Add(fzCat([]byte{ModeFull}, make([]byte, NoiseMessage2Full-16-1)))  // ciphertext one byte short, no payload tag
	f.Add(fzCat([]byte{ModeResume}, make([]byte, NoiseMessage2Resume+1))) // resume mode, one byte too long
	f.Add([]byte{ModeFull})                                               // truncated after the mode
	f.Add([]byte{})                                                       // empty
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := parseServerHello(body)
		if err != nil {
			fzCheckMalformed(t, err)
			return
		}
		if got := m.marshal(); !bytes.Equal(got, fzCat(fzHeader(record.FrameServerHello, len(body)), body)) {
			t.Fatal("parse then marshal changed the ServerHello")
		}
		if len(body) > MaxServerHello || (m.Mode == ModeFull) != (len(body) == 1+NoiseMessage2Full) ||
			(m.Mode == ModeResume) != (len(body) == 1+NoiseMessage2Resume) {
			t.Fatalf("accepted a %d-byte ServerHello with mode %d", len(body), m.Mode)
		}
	})
}

func FuzzParseServerAuth(f *testing.F) {
	w := fzGetWorld(f)
	hk, sig := w.hostPub.Marshal(), hostSignature(w.hostKey, make([]byte, HashLen))
	sa := func(hk, sig, svc []byte) []byte { return fzCat(fzU16(hk), fzU16(sig), fzU16(svc)) }
	f.Add(w.sa)                                                 // valid ServerAuth
	f.Add(sa(hk, sig, bytes.Repeat([]byte{'s'}, MaxNameLen)))   // max frame: longest service name
	f.Add(sa(hk, sig, bytes.Repeat([]byte{'s'}, MaxNameLen+1))) // service one byte too long
	f.Add(sa(fzCat(hk, []byte{0}), sig, []byte("echo")))        // host key one byte too long
	f.Add(sa(hk, fzCat(sig, []byte{0}), []byte("echo")))        // signature one byte too long
	f.Add(sa(hk, sig[:len(sig)-1], []byte("echo")))             // short signature
	f.Add(sa(nil, sig, []byte("echo")))                         // empty host key
	f.Add(sa(hk, nil, []byte("echo")))                          // empty signature
	f.Add(sa(hk, sig, nil))                                     // empty service
	f.Add(sa(hk, sig, []byte("../etc")))                        // invalid service name
	f.Add(fzCat(w.sa, []byte{0}))                               // trailing byte
	f.Add([]byte{})                                             // empty
	f.Add(w.sa[:1])                                             // truncated inside the host key length
	f.Add(w.sa[:2+len(hk)])                                     // truncated after the host key
	f.Add(w.sa[:len(w.sa)-1])                                   // truncated inside the service
	f.Fuzz(func(t *testing.T, c []byte) {
		m, err := parseServerAuth(c)
		if err != nil {
			fzCheckMalformed(t, err)
			return
		}
		if !bytes.Equal(m.marshal(), c) {
			t.Fatal("parse then marshal changed the ServerAuth")
		}
		if len(m.HostKey) == 0 || len(m.HostKey) > MaxHostKeyLen || len(m.Signature) == 0 || len(m.Signature) > MaxHostSigLen {
			t.Fatalf("accepted host key of %d bytes, signature of %d", len(m.HostKey), len(m.Signature))
		}
		if keys.ValidName(m.Service) != nil {
			t.Fatalf("accepted an invalid service name")
		}
	})
}

func FuzzParseClientAuth(f *testing.F) {
	w := fzGetWorld(f)
	ca := func(user []byte, tm uint64, sig []byte) []byte {
		return (&clientAuth{User: string(user), Time: tm, SSHSIG: sig}).marshal()
	}
	sig := (func() []byte { m, _ := parseClientAuth(w.ca); return m.SSHSIG })()
	f.Add(w.ca)                                                 // valid ClientAuth
	f.Add(ca([]byte("alice"), 0, make([]byte, MaxSSHSIGLen)))   // max frame: largest SSHSIG
	f.Add(ca([]byte("alice"), 0, make([]byte, MaxSSHSIGLen+1))) // SSHSIG one byte too long
	f.Add(ca(bytes.Repeat([]byte{'u'}, MaxNameLen), 1, sig))    // longest user name
	f.Add(ca(bytes.Repeat([]byte{'u'}, MaxNameLen+1), 1, sig))  // user name one byte too long
	f.Add(ca(nil, 1, sig))                                      // empty user name
	f.Add(ca([]byte("al/ce"), 1, sig))                          // invalid user name
	f.Add(ca([]byte("alice"), 1, nil))                          // empty SSHSIG
	f.Add(ca([]byte("alice"), 1<<63, sig))                      // time out of range
	f.Add(fzCat(w.ca, []byte{0}))                               // trailing byte
	f.Add([]byte{})                                             // empty
	f.Add(w.ca[:1])                                             // truncated inside the user length
	f.Add(w.ca[:2+5+4])                                         // truncated inside the time
	f.Add(w.ca[:2+5+8+1])                                       // truncated inside the SSHSIG length
	f.Add(w.ca[:len(w.ca)-1])                                   // truncated inside the SSHSIG
	f.Fuzz(func(t *testing.T, c []byte) {
		m, err := parseClientAuth(c)
		if err != nil {
			fzCheckMalformed(t, err)
			return
		}
		if !bytes.Equal(m.marshal(), c) {
			t.Fatal("parse then marshal changed the ClientAuth")
		}
		if keys.ValidName(m.User) != nil || len(m.SSHSIG) == 0 || len(m.SSHSIG) > MaxSSHSIGLen {
			t.Fatalf("accepted user %q with a %d-byte SSHSIG", m.User, len(m.SSHSIG))
		}
	})
}

func FuzzParseVerdict(f *testing.F) {
	w := fzGetWorld(f)
	v := func(code Code, life uint32, ticket []byte) []byte {
		return (&verdict{Code: code, Lifetime: life, Ticket: ticket}).marshal()
	}
	f.Add(w.verdict)                                               // valid accepting verdict with a ticket
	f.Add(v(CodeOK, 0, nil))                                       // accepted without a ticket
	f.Add(v(CodeNotAuthorized, 0, nil))                            // refusal
	f.Add(v(CodeNotAuthorized, 60, []byte{1}))                     // refusal carrying a ticket
	f.Add(v(CodeNotAuthorized, 60, nil))                           // refusal carrying a lifetime
	f.Add(v(CodeOK, 60, make([]byte, MaxTicketSize)))              // max frame: largest ticket
	f.Add(v(CodeOK, 60, make([]byte, MaxTicketSize+1)))            // ticket one byte too long
	f.Add(fzCat(v(CodeOK, 60, []byte{1}), make([]byte, 2+PSKLen))) // a version-1 secret field after the ticket
	f.Add(v(255, 0, nil))                                          // unknown code
	f.Add(fzCat(w.verdict, []byte{0}))                             // trailing byte
	f.Add([]byte{})                                                // empty
	f.Add([]byte{0})                                               // truncated after the code
	f.Add([]byte{0, 0, 0, 0, 0})                                   // truncated after the lifetime
	f.Add(w.verdict[:len(w.verdict)-1])                            // truncated inside the ticket
	f.Fuzz(func(t *testing.T, c []byte) {
		m, err := parseVerdict(c)
		if err != nil {
			fzCheckMalformed(t, err)
			return
		}
		if !bytes.Equal(m.marshal(), c) {
			t.Fatal("parse then marshal changed the Verdict")
		}
		if len(m.Ticket) > MaxTicketSize || (m.Code != CodeOK && (len(m.Ticket) != 0 || m.Lifetime != 0)) {
			t.Fatalf("accepted verdict code %d with lifetime %d and a %d-byte ticket", m.Code, m.Lifetime, len(m.Ticket))
		}
	})
}

func FuzzParseSession(f *testing.F) {
	w := fzGetWorld(f)
	valid := w.session.Marshal()
	big := *w.session
	big.UserKey = make([]byte, MaxSessionSize)    // the whole session exceeds MaxSessionSize
	f.Add(valid)                                  // valid session
	f.Add(big.Marshal())                          // frame+1: larger than MaxSessionSize
	f.Add(fzCat(valid, []byte{0}))                // trailing byte
	f.Add([]byte{})                               // empty
	f.Add([]byte{sessionVersion})                 // truncated after the version
	f.Add(fzCat([]byte{2}, valid[1:]))            // wrong version byte
	f.Add(valid[:1+2+len(w.session.Ticket)])      // truncated after the ticket
	f.Add(valid[:1+2+len(w.session.Ticket)+2+31]) // short secret
	f.Add(valid[:len(valid)-1])                   // truncated inside the user name
	f.Fuzz(func(t *testing.T, p []byte) {
		s, err := ParseSession(p)
		if err != nil {
			if len(p) > MaxSessionSize && !strings.Contains(err.Error(), "too large") {
				t.Fatalf("oversized session: %v", err)
			}
			return
		}
		if !bytes.Equal(s.Marshal(), p) {
			t.Fatal("parse then marshal changed the session")
		}
		if len(s.Secret) != PSKLen || len(s.Ticket) == 0 || len(s.Ticket) > MaxTicketSize || len(p) > MaxSessionSize {
			t.Fatalf("accepted a session with a %d-byte secret and %d-byte ticket", len(s.Secret), len(s.Ticket))
		}
	})
}

func FuzzTicketContents(f *testing.F) {
	tc := &ticketContents{Issued: 1, Expiry: 2, User: "alice", KeyHash: [32]byte{1}, Service: "echo"}
	valid := tc.marshal()
	f.Add(valid)                       // valid contents
	f.Add(fzCat(valid, []byte{0}))     // trailing byte
	f.Add(valid[:len(valid)-1])        // truncated inside the secret
	f.Add(valid[:len(valid)-PSKLen])   // truncated before the secret
	f.Add([]byte{})                    // empty
	f.Add(fzCat([]byte{2}, valid[1:])) // wrong version byte
	f.Fuzz(func(t *testing.T, p []byte) {
		c, err := parseTicketContents(p)
		if err != nil {
			if !errors.Is(err, ErrTicketInvalid) {
				t.Fatalf("error %v", err)
			}
			return
		}
		if !bytes.Equal(c.marshal(), p) {
			t.Fatal("parse then marshal changed the ticket contents")
		}
	})
}

// FuzzTicketOpen opens arbitrary bytes as a ticket. Only tickets the keys sealed may open,
// with the contents sealed, and only before they expire.
func FuzzTicketOpen(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	tk := NewTicketKeys(time.Hour, fzRand("fuzz ticket keys"))
	other := NewTicketKeys(time.Hour, fzRand("other ticket keys"))
	type issued struct {
		c       *ticketContents
		expired bool
	}
	sealed := map[string]issued{}
	seal := func(k *TicketKeys, c *ticketContents) []byte {
		tkt, err := k.seal(c, now)
		if err != nil {
			f.Fatal(err)
		}
		return tkt
	}
	live := &ticketContents{Issued: uint64(now.Unix()), Expiry: uint64(now.Add(time.Hour).Unix()), User: "alice", KeyHash: [32]byte{1}, Service: "echo"}
	live.Secret[0] = 1
	dead := &ticketContents{Issued: uint64(now.Unix()) - 7200, Expiry: uint64(now.Unix()), User: "alice", KeyHash: [32]byte{1}, Service: "echo"}
	t1, t2 := seal(tk, live), seal(tk, dead)
	sealed[string(t1)] = issued{live, false}
	sealed[string(t2)] = issued{dead, true}
	f.Add(t1)                                                               // valid ticket
	f.Add(t2)                                                               // expired exactly now
	f.Add(seal(other, live))                                                // sealed under another server's key
	f.Add(fzCat(t1[:ticketKeyIDLen], make([]byte, len(t1)-ticketKeyIDLen))) // right key id, garbage ciphertext
	f.Add(fzCat(t1, []byte{0}))                                             // trailing byte
	f.Add(t1[:len(t1)-1])                                                   // short tag
	f.Add(t1[:minTicketLen])                                                // minimum length: empty contents
	f.Add(t1[:minTicketLen-1])                                              // one byte below the minimum
	f.Add(make([]byte, MaxTicketSize))                                      // max size
	f.Add(make([]byte, MaxTicketSize+1))                                    // max+1
	f.Add([]byte{})                                                         // empty
	f.Add(t1[:ticketKeyIDLen])                                              // truncated after the key id
	f.Add(t1[:ticketKeyIDLen+ticketNonceLen])                               // truncated after the nonce
	f.Fuzz(func(t *testing.T, p []byte) {
		c, err := tk.open(p, now)
		want, ok := sealed[string(p)]
		switch {
		case ok && want.expired:
			if !errors.Is(err, ErrTicketExpired) {
				t.Fatalf("expired ticket: %v", err)
			}
		case ok:
			if err != nil {
				t.Fatalf("issued ticket did not open: %v", err)
			}
			if !bytes.Equal(c.marshal(), want.c.marshal()) {
				t.Fatal("ticket opened to different contents")
			}
		default:
			if err == nil {
				t.Fatalf("a ticket the keys never sealed opened (user %q)", c.User)
			}
			if !errors.Is(err, ErrTicketInvalid) && !errors.Is(err, ErrTicketUnknownKey) {
				t.Fatalf("error %v", err)
			}
		}
	})
}

// FuzzServerHandshake feeds arbitrary client bytes to RunServer. It must not panic, must end
// with an error or a valid result, and may send only: nothing; exactly one 5-byte alert
// carrying the refusal's code (never input bytes); or its own ServerHello, ServerAuth and at
// most one verdict, whose size on a refusal is that of a bare code.
func FuzzServerHandshake(f *testing.F) {
	w := fzGetWorld(f)
	frames := fzFrames(w.full)
	hello, auth := frames[0], frames[1]
	resumeHello := fzFrames(w.resume)[0]
	flip := func(b []byte, i int) []byte { b = append([]byte(nil), b...); b[i] ^= 1; return b }
	f.Add(w.full)                                                                                                   // accepted full handshake
	f.Add(w.resume)                                                                                                 // accepted resumed handshake
	f.Add(hello)                                                                                                    // ClientHello, then the stream ends
	f.Add(fzCat(hello, auth[:len(auth)-1]))                                                                         // truncated inside the ClientAuth tag
	f.Add(fzCat(hello, auth[:record.HeaderLen]))                                                                    // truncated after the ClientAuth header
	f.Add(fzCat(hello, flip(auth, len(auth)-1)))                                                                    // ClientAuth with a flipped tag bit
	f.Add(fzCat(hello, flip(auth, record.HeaderLen)))                                                               // ClientAuth with a flipped body bit
	f.Add(fzCat(flip(hello, len(hello)-1), auth))                                                                   // Noise message 1 altered
	f.Add(fzCat(hello, fzHeader(record.FrameRecord, 0)))                                                            // empty record: short tag
	f.Add(fzCat(hello, fzHeader(record.FrameAlert, 2), []byte{1, 1}))                                               // wrong frame type instead of ClientAuth
	f.Add(flip(resumeHello, record.HeaderLen+len(Magic)+4))                                                         // resume with a corrupted ticket: full fallback
	f.Add(flip(resumeHello, len(resumeHello)-1))                                                                    // resume with a wrong PSK tag: full fallback
	f.Add(fzCat(fzMalformedKey(hello), auth))                                                                       // malformed encapsulation key
	f.Add(fzCat(flip(hello, len(hello)-100), auth))                                                                 // encapsulation key altered (still well formed)
	f.Add(fzCat(fzMalformedKey(resumeHello), w.resume[len(resumeHello):]))                                          // resume with a malformed encapsulation key: ignored
	f.Add(fzMalformedKey(flip(resumeHello, len(resumeHello)-1)))                                                    // malformed encapsulation key, and a fallback
	f.Add(fzCat(fzHeader(record.FrameClientHello, 43), []byte(Magic), []byte{2, ModeFull, 0, 0}, make([]byte, 32))) // a version-2 ClientHello
	f.Add([]byte{})                                                                                                 // empty
	f.Add(hello[:1])                                                                                                // truncated inside the header
	f.Add(hello[:record.HeaderLen])                                                                                 // header only
	f.Add(hello[:record.HeaderLen+len(Magic)])                                                                      // truncated after the magic
	f.Add(hello[:len(hello)-1])                                                                                     // truncated inside the Noise message
	f.Add(fzHeader(record.FrameClientHello, record.MaxBody))                                                        // max frame length claimed
	f.Add(fzCat(fzHeader(record.FrameClientHello, MaxClientHello+1), make([]byte, MaxClientHello+1)))               // frame+1 over the limit
	f.Add(fzCat(fzHeader(record.FrameClientHello, MaxClientHello), make([]byte, MaxClientHello)))                   // exactly the limit, garbage
	f.Add(fzCat(fzHeader(record.FrameRecord, 5), []byte("hello")))                                                  // wrong frame type byte
	f.Add(fzCat(hello[:record.HeaderLen+len(Magic)], []byte{Version + 1}, hello[record.HeaderLen+len(Magic)+1:]))   // a later version
	f.Add(fzCat(hello[:record.HeaderLen+len(Magic)+1], []byte{7}, hello[record.HeaderLen+len(Magic)+2:]))           // unknown mode
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))                                                              // HTTP
	f.Add([]byte("SSH-2.0-OpenSSH_9.6\r\n"))                                                                        // SSH banner
	f.Add([]byte{0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5})                                                      // TLS record header

	refusalBody := len((&verdict{Code: CodeProtocolError}).marshal()) + 1 + record.TagLen
	serverAuthBody := len(w.sa) + 1 + record.TagLen
	f.Fuzz(func(t *testing.T, in []byte) {
		conn := &fzConn{in: append([]byte(nil), in...)}
		res, err := RunServer(record.NewConn(conn), w.serverConfig())
		out := conn.out.Bytes()
		var r *Refusal
		isRefusal := errors.As(err, &r)
		if isRefusal && (r.Code == CodeOK || strings.HasPrefix(r.Code.String(), "unknown")) {
			t.Fatalf("refusal with code %d", r.Code)
		}

		// Only a 5-byte alert, nothing, or the server's own handshake messages.
		if len(out) > 0 && out[0] == record.FrameAlert {
			if err == nil || !isRefusal {
				t.Fatalf("alert sent, but the result is %v", err)
			}
			want := []byte{record.FrameAlert, 0, AlertLen, byte(r.Code), Version}
			if !bytes.Equal(out, want) {
				t.Fatalf("server sent % x, want exactly the alert % x", out, want)
			}
			return
		}
		if len(out) == 0 {
			if err == nil || isRefusal {
				t.Fatalf("nothing sent, but the result is %v", err)
			}
			return
		}
		fr := fzFrames(out)
		sh := fr[0]
		if sh[0] != record.FrameServerHello || len(sh) <= record.HeaderLen || len(sh) != record.HeaderLen+1+
			map[byte]int{ModeFull: NoiseMessage2Full, ModeResume: NoiseMessage2Resume}[sh[record.HeaderLen]] {
			t.Fatalf("first frame % x is neither an alert nor a ServerHello", sh[:min(len(sh), 8)])
		}
		if sh[record.HeaderLen] == ModeResume {
			// ServerHello, then (once the binder was read) a bare-code verdict.
			if len(fr) > 2 || (err == nil && len(fr) != 2) {
				t.Fatalf("resumed with %d frames sent and error %v", len(fr), err)
			}
			if len(fr) == 2 && (fr[1][0] != record.FrameRecord || len(fr[1]) != record.HeaderLen+refusalBody) {
				t.Fatalf("resumed: second frame % x is not a bare verdict", fr[1][:min(len(fr[1]), 8)])
			}
		} else {
			if len(fr) < 2 || len(fr) > 3 || fr[1][0] != record.FrameRecord || len(fr[1]) != record.HeaderLen+serverAuthBody {
				t.Fatalf("full handshake: %d frames sent after the ServerHello, not ServerAuth and a verdict", len(fr)-1)
			}
			switch {
			case len(fr) == 2:
				if err == nil || isRefusal {
					t.Fatalf("no verdict sent, result %v", err)
				}
			case err == nil:
				if fr[2][0] != record.FrameRecord || len(fr[2])-record.HeaderLen <= refusalBody {
					t.Fatal("accepted without sending an accepting verdict")
				}
			default:
				if !isRefusal || fr[2][0] != record.FrameRecord || len(fr[2])-record.HeaderLen != refusalBody {
					t.Fatalf("refusal verdict of %d bytes (want %d), error %v", len(fr[2])-record.HeaderLen, refusalBody, err)
				}
			}
		}
		if err != nil {
			return
		}

		// A valid result: alice, with her key, on this server.
		if res == nil || res.User != "alice" || res.Key == nil || !bytes.Equal(res.Key.Marshal(), w.user.PublicKey().Marshal()) ||
			res.Service != "echo" || !bytes.Equal(res.HostKey.Marshal(), w.hostPub.Marshal()) || len(res.HandshakeHash) != HashLen {
			t.Fatalf("accepted with result %+v", res)
		}
		if !res.Resumed {
			k, err := keys.Verify(res.Signature, Namespace, res.Statement)
			if err != nil || !bytes.Equal(k.Marshal(), w.user.PublicKey().Marshal()) {
				t.Fatalf("accepted an authenticator that does not verify: %v", err)
			}
			st, err := keys.ParseStatement(res.Statement)
			if err != nil || !bytes.Equal(st.HandshakeHash, res.HandshakeHash) || st.User != "alice" {
				t.Fatalf("accepted a statement for another handshake: %v", err)
			}
		}
	})
}

// TestFuzzSeedOutcomes pins what the server does with the main FuzzServerHandshake seeds, so
// the seeds keep probing what their comments say.
func TestFuzzSeedOutcomes(t *testing.T) {
	w := fzGetWorld(t)
	frames := fzFrames(w.full)
	hello, auth := frames[0], frames[1]
	resumeHello := fzFrames(w.resume)[0]
	flip := func(b []byte, i int) []byte { b = append([]byte(nil), b...); b[i] ^= 1; return b }
	const ok = Code(255) // accepted
	const ioErr = Code(254)
	cases := []struct {
		name    string
		in      []byte
		want    Code
		resumed bool
	}{
		{"full transcript", w.full, ok, false},
		{"resume transcript", w.resume, ok, true},
		{"hello then end of stream", hello, ioErr, false},
		{"ClientAuth tag flipped", fzCat(hello, flip(auth, len(auth)-1)), CodeProtocolError, false},
		{"max frame length", fzHeader(record.FrameClientHello, record.MaxBody), CodeProtocolError, false},
		{"frame+1", fzHeader(record.FrameClientHello, MaxClientHello+1), CodeProtocolError, false},
		{"version 1", fzCat(hello[:record.HeaderLen+len(Magic)], []byte{1}, hello[record.HeaderLen+len(Magic)+1:]), CodeVersionUnsupported, false},
		{"version 2", fzCat(fzHeader(record.FrameClientHello, 43), []byte(Magic), []byte{2, ModeFull, 0, 0}, make([]byte, 32)), CodeVersionUnsupported, false},
		{"malformed encapsulation key", fzCat(fzMalformedKey(hello), auth), CodeProtocolError, false},
		{"encapsulation key altered", fzCat(flip(hello, len(hello)-100), auth), CodeProtocolError, false},
		{"resume, malformed encapsulation key ignored", fzCat(fzMalformedKey(resumeHello), w.resume[len(resumeHello):]), ok, true},
		{"resume falls back, malformed encapsulation key", fzMalformedKey(flip(resumeHello, len(resumeHello)-1)), CodeProtocolError, false},
		{"a later version", fzCat(hello[:record.HeaderLen+len(Magic)], []byte{Version + 1}, hello[record.HeaderLen+len(Magic)+1:]), CodeVersionUnsupported, false},
		{"a later version, longer than this version allows", fzCat(fzHeader(record.FrameClientHello, MaxClientHello+1200), []byte(Magic), []byte{Version + 1}, make([]byte, MaxClientHello+1200-len(Magic)-1)), CodeVersionUnsupported, false},
		{"this version, longer than it allows", fzCat(fzHeader(record.FrameClientHello, MaxClientHello+1), []byte(Magic), []byte{Version}, make([]byte, MaxClientHello-len(Magic))), CodeProtocolError, false},
		{"HTTP", []byte("GET / HTTP/1.1\r\n\r\n"), CodeProtocolError, false},
		{"wrong frame type", fzCat(fzHeader(record.FrameRecord, 5), []byte("hello")), CodeProtocolError, false},
		{"empty", nil, ioErr, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res, err := RunServer(record.NewConn(&fzConn{in: tc.in}), w.serverConfig())
			var r *Refusal
			switch {
			case tc.want == ok:
				if err != nil || res.Resumed != tc.resumed || res.User != "alice" {
					t.Fatalf("got %v, resumed %v; want accepted, resumed %v", err, res != nil && res.Resumed, tc.resumed)
				}
			case tc.want == ioErr:
				if err == nil || errors.As(err, &r) {
					t.Fatalf("got %v; want an I/O error", err)
				}
			default:
				if !errors.As(err, &r) || r.Code != tc.want {
					t.Fatalf("got %v; want a refusal with code %v", err, tc.want)
				}
			}
		})
	}
}
