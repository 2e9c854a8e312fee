// SPDX-License-Identifier: Apache-2.0

package handshake

// Deterministic test vectors (docs/PROTOCOL.md §11). Each scenario runs the real client and
// server over an in-memory connection that records every byte, then recomputes the
// handshake independently: the hybrid full handshake (NNhfs, which flynn/noise does not have)
// from the specification with the standard library alone (crypto/sha256, crypto/hkdf,
// AES-GCM, crypto/ecdh, crypto/mlkem), the resumption (NNpsk0) with github.com/flynn/noise
// (its own DH25519, not our x25519 package); decrypts every record with the split keys, and
// writes what it saw to a file in testdata/vectors. The test fails if a file differs from what
// the code produces now; go test ./internal/handshake -run TestVectors -update rewrites the
// files.

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/mlkem"
	"crypto/mlkem/mlkemtest"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flynn/noise"
	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth/internal/kem"
	"ubns.dev/netauth/internal/keys"
	"ubns.dev/netauth/internal/record"
	"ubns.dev/netauth/internal/x25519"
)

var updateVectors = flag.Bool("update", false, "rewrite testdata/vectors from the current implementation")

const vectorDir = "../../testdata/vectors"

// vectorTime is the base time of every vector: 2026-11-27T12:00:00Z.
const vectorTime = 1795780800

// vectorInput derives a fixed 32-byte input from a label, so the inputs look random but are
// reproducible. The files record every input value; the labels are only informative.
func vectorInput(label string) []byte {
	h := sha256.Sum256([]byte("netauth-v1 test vector: " + label))
	return h[:]
}

// fixedReader hands out a fixed byte string and fails when it runs out, so a vector fails
// loudly if the code starts consuming randomness differently.
type fixedReader struct{ b []byte }

func (r *fixedReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, errors.New("fixed randomness exhausted")
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

// memPipe is one direction of memConn: an unbounded buffer that also keeps a log of every
// byte ever written.
type memPipe struct {
	mu           sync.Mutex
	cond         *sync.Cond
	buf          []byte
	log          []byte
	writerClosed bool
	readerClosed bool
}

func newMemPipe() *memPipe {
	p := &memPipe{}
	p.cond = sync.NewCond(&p.mu)
	return p
}

func (p *memPipe) wire() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]byte(nil), p.log...)
}

// memConn is a buffered in-memory net.Conn: writes never block (unlike net.Pipe), so a
// record.Conn can flush a whole flight and then read.
type memConn struct {
	in, out *memPipe
}

func memConnPair() (client, server *memConn) {
	c2s, s2c := newMemPipe(), newMemPipe()
	return &memConn{in: s2c, out: c2s}, &memConn{in: c2s, out: s2c}
}

func (c *memConn) Read(b []byte) (int, error) {
	p := c.in
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.buf) == 0 && !p.writerClosed && !p.readerClosed {
		p.cond.Wait()
	}
	if p.readerClosed {
		return 0, net.ErrClosed
	}
	if len(p.buf) == 0 {
		return 0, io.EOF
	}
	n := copy(b, p.buf)
	p.buf = p.buf[n:]
	return n, nil
}

func (c *memConn) Write(b []byte) (int, error) {
	p := c.out
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.writerClosed {
		return 0, net.ErrClosed
	}
	p.buf = append(p.buf, b...)
	p.log = append(p.log, b...)
	p.cond.Broadcast()
	return len(b), nil
}

func (c *memConn) Close() error {
	for _, p := range []*memPipe{c.out, c.in} {
		p.mu.Lock()
		if p == c.out {
			p.writerClosed = true
		} else {
			p.readerClosed = true
		}
		p.cond.Broadcast()
		p.mu.Unlock()
	}
	return nil
}

type memAddr struct{}

func (memAddr) Network() string { return "mem" }
func (memAddr) String() string  { return "mem" }

func (c *memConn) LocalAddr() net.Addr              { return memAddr{} }
func (c *memConn) RemoteAddr() net.Addr             { return memAddr{} }
func (c *memConn) SetDeadline(time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }

// vecFile builds a vector file: "name: hex" lines, long values continued on lines indented by
// two spaces, "#" comments.
type vecFile struct{ b strings.Builder }

func (f *vecFile) comment(format string, a ...any) {
	s := fmt.Sprintf(format, a...)
	for _, line := range strings.Split(s, "\n") {
		if line == "" {
			f.b.WriteString("#\n")
		} else {
			f.b.WriteString("# " + line + "\n")
		}
	}
}

func (f *vecFile) blank() { f.b.WriteString("\n") }

func (f *vecFile) hex(name string, v []byte) {
	h := hex.EncodeToString(v)
	if h == "" {
		f.b.WriteString(name + ":\n")
		return
	}
	for first := true; len(h) > 0; first = false {
		n := min(64, len(h))
		if first {
			f.b.WriteString(name + ": " + h[:n] + "\n")
		} else {
			f.b.WriteString("  " + h[:n] + "\n")
		}
		h = h[n:]
	}
}

func (f *vecFile) str(name, v string) {
	f.comment("%s = %q", name, v)
	f.hex(name, []byte(v))
}

func (f *vecFile) u64(name string, v uint64, note string) {
	f.comment("%s = %d%s", name, v, note)
	f.hex(name, binary.BigEndian.AppendUint64(nil, v))
}

// parseVectorFile reads the format vecFile writes.
func parseVectorFile(data string) (map[string][]byte, error) {
	m := map[string][]byte{}
	cur := ""
	for i, line := range strings.Split(data, "\n") {
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
			cur = ""
		case strings.HasPrefix(line, "  "):
			if cur == "" {
				return nil, fmt.Errorf("line %d: continuation without a value", i+1)
			}
			v, err := hex.DecodeString(strings.TrimSpace(line))
			if err != nil {
				return nil, fmt.Errorf("line %d: %v", i+1, err)
			}
			m[cur] = append(m[cur], v...)
		default:
			name, val, ok := strings.Cut(line, ":")
			if !ok {
				return nil, fmt.Errorf("line %d: no ':'", i+1)
			}
			if _, dup := m[name]; dup {
				return nil, fmt.Errorf("line %d: duplicate %s", i+1, name)
			}
			v, err := hex.DecodeString(strings.TrimSpace(val))
			if err != nil {
				return nil, fmt.Errorf("line %d: %v", i+1, err)
			}
			m[name], cur = v, name
		}
	}
	return m, nil
}

// checkVectorFile compares got with the stored file, or rewrites it with -update.
func checkVectorFile(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join(vectorDir, name)
	if *updateVectors {
		if err := os.MkdirAll(vectorDir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run TestVectors -update to create it)", err)
	}
	if string(want) == got {
		return
	}
	wl, gl := strings.Split(string(want), "\n"), strings.Split(got, "\n")
	for i := 0; i < max(len(wl), len(gl)); i++ {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w != g {
			t.Fatalf("%s differs from the implementation at line %d:\nstored: %s\nnow:    %s", path, i+1, w, g)
		}
	}
}

func readVectorFile(t *testing.T, name string) map[string][]byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(vectorDir, name))
	if err != nil {
		t.Fatal(err)
	}
	m, err := parseVectorFile(string(data))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return m
}

// splitFrames cuts a byte stream into frames.
func splitFrames(t *testing.T, b []byte) [][]byte {
	t.Helper()
	var out [][]byte
	for len(b) > 0 {
		if len(b) < record.HeaderLen {
			t.Fatalf("stream ends inside a frame header")
		}
		n := record.HeaderLen + int(binary.BigEndian.Uint16(b[1:3]))
		if len(b) < n {
			t.Fatalf("stream ends inside a frame")
		}
		out = append(out, b[:n])
		b = b[n:]
	}
	return out
}

var innerNames = map[byte]string{
	record.TypeData:       "data",
	record.TypeClose:      "close",
	record.TypeRekey:      "rekey",
	record.TypeServerAuth: "server_auth",
	record.TypeClientAuth: "client_auth",
	record.TypeVerdict:    "verdict",
	record.TypeBinder:     "binder",
}

var frameNames = map[byte]string{
	record.FrameClientHello: "client_hello",
	record.FrameServerHello: "server_hello",
	record.FrameAlert:       "alert",
}

// writeFrames lists the frames of one direction, decrypting records with cs (nil before keys
// exist) and, after the record whose inner type is in switchAfter, with app (the key
// schedule's application key), and returns the decrypted record contents by inner type.
func writeFrames(t *testing.T, f *vecFile, dir string, frames [][]byte, cs, app *noise.CipherState, verbose bool, switchAfter ...byte) map[byte][][]byte {
	t.Helper()
	contents := map[byte][][]byte{}
	for i, fr := range frames {
		if fr[0] != record.FrameRecord {
			name, ok := frameNames[fr[0]]
			if !ok {
				t.Fatalf("%s frame %d: unknown frame type 0x%02x", dir, i, fr[0])
			}
			f.comment("%s frame %d: %s frame (type 0x%02x), plaintext", dir, i, name, fr[0])
			f.hex(fmt.Sprintf("%s_%d_%s", dir, i, name), fr)
			continue
		}
		if cs == nil {
			t.Fatalf("%s frame %d: record before keys", dir, i)
		}
		n := cs.Nonce()
		pt, err := cs.Decrypt(nil, fr[:record.HeaderLen], fr[record.HeaderLen:])
		if err != nil {
			t.Fatalf("%s frame %d: independent decryption failed: %v", dir, i, err)
		}
		typ := pt[len(pt)-1]
		name, ok := innerNames[typ]
		if !ok {
			t.Fatalf("%s frame %d: unknown inner type 0x%02x", dir, i, typ)
		}
		f.comment("%s frame %d: record, nonce %d, inner type 0x%02x (%s)", dir, i, n, typ, name)
		if verbose {
			f.hex(fmt.Sprintf("%s_%d_nonce", dir, i), binary.BigEndian.AppendUint64(make([]byte, 4), n))
			f.hex(fmt.Sprintf("%s_%d_ad", dir, i), fr[:record.HeaderLen])
		}
		f.hex(fmt.Sprintf("%s_%d_%s_plaintext", dir, i, name), pt)
		f.hex(fmt.Sprintf("%s_%d_%s", dir, i, name), fr)
		contents[typ] = append(contents[typ], pt[:len(pt)-1])
		if typ == record.TypeRekey {
			cs.Rekey()
			f.hex(fmt.Sprintf("%s_key_after_rekey_%d", dir, i), unsafeKey(cs))
		}
		if app != nil && slices.Contains(switchAfter, typ) && (typ != record.TypeVerdict || pt[0] == byte(CodeOK)) {
			cs, app = app, nil
			f.comment("%s: the next records are under the application key, from nonce 0", dir)
		}
	}
	return contents
}

// noiseHKDF is Noise's HKDF (spec §4.3) with two outputs, from crypto/hkdf: an extract with
// the chaining key as salt and an expand with empty info.
func noiseHKDF(t *testing.T, ck, ikm []byte) (out1, out2 []byte) {
	t.Helper()
	okm, err := hkdf.Key(sha256.New, ikm, ck, "", 64)
	if err != nil {
		t.Fatal(err)
	}
	return okm[:32], okm[32:]
}

// vectorChainingKey recomputes, from the spec alone, the chaining key of a resumption after
// message 2 (§4): the protocol name, MixKeyAndHash(psk), MixKey(e) for each ephemeral, and
// MixKey(ee).
func vectorChainingKey(t *testing.T, psk []byte, ce, se x25519.KeyPair) []byte {
	t.Helper()
	ck := make([]byte, 32)
	copy(ck, "Noise_NNpsk0_25519_AESGCM_SHA256")
	ck, _ = noiseHKDF(t, ck, psk)
	ck, _ = noiseHKDF(t, ck, ce.Public[:])
	ck, _ = noiseHKDF(t, ck, se.Public[:])
	ee, _ := vectorX25519(t, ce, se)
	ck, _ = noiseHKDF(t, ck, ee)
	return ck
}

// vectorX25519 computes X25519(client ephemeral, server ephemeral) with crypto/ecdh from the
// private key's bytes, and checks both public keys against crypto/ecdh's.
func vectorX25519(t *testing.T, ce, se x25519.KeyPair) (ee []byte, err error) {
	t.Helper()
	priv, err := ecdh.X25519().NewPrivateKey(ce.PrivateKey().Bytes())
	if err != nil {
		t.Fatal(err)
	}
	spriv, err := ecdh.X25519().NewPrivateKey(se.PrivateKey().Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(priv.PublicKey().Bytes(), ce.Public[:]) || !bytes.Equal(spriv.PublicKey().Bytes(), se.Public[:]) {
		t.Fatal("an ephemeral public key is not its private key's")
	}
	if ee, err = priv.ECDH(spriv.PublicKey()); err != nil {
		t.Fatal(err)
	}
	return ee, nil
}

// hfsVector is the full handshake, Noise_NNhfs_25519+MLKEM768_AESGCM_SHA256 (§3.2),
// recomputed step by step from the specification with the standard library alone: none of
// internal/noise, internal/kem or internal/x25519 takes part.
type hfsVector struct {
	h0         []byte // initial h and ck: SHA-256 of the protocol name
	msg1, msg2 []byte // NNhfs messages 1 (e || ek) and 2 (e || ENCRYPT(ct) || tag)
	ek, ct     []byte // the client's encapsulation key and the server's ciphertext
	shared     []byte // the ML-KEM-768 shared secret
	ckEE       []byte // ck after MixKey(ee), before MixKey(shared)
	encCT      []byte // the ciphertext as sent: encrypted under the key of ee
	ck, h      []byte // final chaining key and handshake hash
	k1, k2     []byte // Split()
	dk         *mlkem.DecapsulationKey768
	hAfterPro  []byte
	hAfterMsg1 []byte
}

func vectorHFS(t *testing.T, pro []byte, ce, se x25519.KeyPair, kemSeed, kemRand []byte) *hfsVector {
	t.Helper()
	v := &hfsVector{}
	name := sha256.Sum256([]byte("Noise_NNhfs_25519+MLKEM768_AESGCM_SHA256")) // 40 bytes: hashed (Noise §5.2)
	h, ck := name[:], name[:]
	v.h0 = h
	mixHash := func(d []byte) {
		s := sha256.New()
		s.Write(h)
		s.Write(d)
		h = s.Sum(nil)
	}
	var k []byte
	var n uint64
	mixKey := func(ikm []byte) { ck, k = noiseHKDF(t, ck, ikm); n = 0 }
	encryptAndHash := func(pt []byte) []byte {
		block, err := aes.NewCipher(k)
		if err != nil {
			t.Fatal(err)
		}
		gcm, err := cipher.NewGCM(block)
		if err != nil {
			t.Fatal(err)
		}
		out := gcm.Seal(nil, binary.BigEndian.AppendUint64(make([]byte, 4), n), pt, h)
		n++
		mixHash(out)
		return out
	}
	mixHash(pro)
	v.hAfterPro = h
	var err error
	if v.dk, err = mlkem.NewDecapsulationKey768(kemSeed); err != nil {
		t.Fatal(err)
	}
	v.ek = v.dk.EncapsulationKey().Bytes()
	// -> e, e1: no key yet, so both travel in clear and EncryptAndHash is MixHash, as it is for
	// the empty payload.
	mixHash(ce.Public[:])
	mixHash(v.ek)
	mixHash(nil)
	v.msg1 = append(append([]byte(nil), ce.Public[:]...), v.ek...)
	v.hAfterMsg1 = h
	// <- e, ee, ekem1
	mixHash(se.Public[:])
	ee, _ := vectorX25519(t, ce, se)
	mixKey(ee)
	v.ckEE = ck
	if v.shared, v.ct, err = mlkemtest.Encapsulate768(v.dk.EncapsulationKey(), kemRand); err != nil {
		t.Fatal(err)
	}
	v.encCT = encryptAndHash(v.ct)
	mixKey(v.shared)
	tag := encryptAndHash(nil)
	v.msg2 = append(append(append([]byte(nil), se.Public[:]...), v.encCT...), tag...)
	v.ck, v.h = ck, h
	v.k1, v.k2 = noiseHKDF(t, ck, nil)
	return v
}

// vectorSecrets runs the key schedule of §3.9 with crypto/hkdf: application keys and the
// resumption secret.
func vectorSecrets(t *testing.T, ck, h []byte) (c2s, s2c, resumption []byte) {
	t.Helper()
	prk, err := hkdf.Extract(sha256.New, h, ck)
	if err != nil {
		t.Fatal(err)
	}
	out := make([][]byte, 3)
	for i, label := range []string{"netauth-v2 application client to server", "netauth-v2 application server to client", "netauth-v2 resumption"} {
		if out[i], err = hkdf.Expand(sha256.New, prk, label, 32); err != nil {
			t.Fatal(err)
		}
	}
	return out[0], out[1], out[2]
}

func unsafeKey(cs *noise.CipherState) []byte {
	k := cs.UnsafeKey()
	return k[:]
}

var vectorSuite = noise.NewCipherSuite(noise.DH25519, noise.CipherAESGCM, noise.HashSHA256)

// vectorEnv holds the long-term keys shared by all handshake vectors.
type vectorEnv struct {
	hostSeed, userSeed []byte
	hostKey            ed25519.PrivateKey
	hostPub            ssh.PublicKey
	user               keySigner
}

func newVectorEnv(t *testing.T) *vectorEnv {
	e := &vectorEnv{hostSeed: vectorInput("host key"), userSeed: vectorInput("user key")}
	e.hostKey = ed25519.NewKeyFromSeed(e.hostSeed)
	var err error
	if e.hostPub, err = ssh.NewPublicKey(e.hostKey.Public()); err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(ed25519.NewKeyFromSeed(e.userSeed))
	if err != nil {
		t.Fatal(err)
	}
	e.user = keySigner{s}
	return e
}

// hsScenario is one handshake vector.
type hsScenario struct {
	file, title string
	notes       string
	clientTime  int64
	serverTime  int64
	ephLabel    string // client and server ephemeral seeds, and the ML-KEM inputs, are derived from it
	session     *Session
	// tickets is the server's ticket key set; ticketInputs lists the randomness it will
	// draw (key id, key, nonce) or the stored key it already holds, for the file.
	tickets     *TicketKeys
	ticketRand  []byte
	storedKeyID []byte
	storedKey   []byte
	revoked     bool // the server no longer authorizes the user's key
	// hostCert, if set, is the host certificate the server presents (signed by the CA whose
	// Ed25519 seed is caSeed).
	hostCert *ssh.Certificate
	caSeed   []byte
}

type hsOutcome struct {
	c2s, s2c   []byte
	cli        *Client
	cliErr     error
	sess       *Session
	verdictErr error
	srv        *Result
	srvErr     error
}

// vectorKEMSeed is the client's ML-KEM-768 seed d || z for a scenario, and vectorKEMRand
// the server's encapsulation randomness m.
func vectorKEMSeed(label string) []byte {
	return append(vectorInput(label+": client ML-KEM seed d"), vectorInput(label+": client ML-KEM seed z")...)
}

func vectorKEMRand(label string) []byte { return vectorInput(label + ": server ML-KEM encapsulation") }

func (e *vectorEnv) run(t *testing.T, sc *hsScenario) *hsOutcome {
	t.Helper()
	ce, err := x25519.Generate(bytes.NewReader(vectorInput(sc.ephLabel + ": client ephemeral")))
	if err != nil {
		t.Fatal(err)
	}
	se, err := x25519.Generate(bytes.NewReader(vectorInput(sc.ephLabel + ": server ephemeral")))
	if err != nil {
		t.Fatal(err)
	}
	dk, err := kem.Generate(bytes.NewReader(vectorKEMSeed(sc.ephLabel)))
	if err != nil {
		t.Fatal(err)
	}
	kemRand := vectorKEMRand(sc.ephLabel)
	scfg := &ServerConfig{
		HostKey:  e.hostKey,
		HostCert: sc.hostCert,
		Service:  "echo",
		Tickets:  sc.tickets,
		Eligible: eligibleKey(func(user string) ssh.PublicKey {
			if user == "alice" && !sc.revoked {
				return e.user.PublicKey()
			}
			return nil
		}),
		Replay:    NewReplayCache(0),
		Now:       func() time.Time { return time.Unix(sc.serverTime, 0) },
		Ephemeral: func() (x25519.KeyPair, error) { return se, nil },
		Encapsulate: func(ek *mlkem.EncapsulationKey768) ([]byte, []byte, error) {
			return mlkemtest.Encapsulate768(ek, kemRand)
		},
	}
	scfg.Authorize = admitting(scfg.Eligible)
	ccfg := &ClientConfig{
		User:   "alice",
		Signer: e.user,
		CheckHostKey: func(k ssh.PublicKey, svc string) error {
			want := e.hostPub.Marshal()
			if sc.hostCert != nil {
				want = sc.hostCert.Marshal()
			}
			if !bytes.Equal(k.Marshal(), want) || svc != "echo" {
				return errors.New("wrong host key")
			}
			return nil
		},
		Service:   "echo",
		Session:   sc.session,
		Now:       func() time.Time { return time.Unix(sc.clientTime, 0) },
		Ephemeral: func() (x25519.KeyPair, error) { return ce, nil },
		KEM:       func() (*mlkem.DecapsulationKey768, error) { return dk, nil },
	}

	cc, scn := memConnPair()
	o := &hsOutcome{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		rc := record.NewConn(scn)
		o.srv, o.srvErr = RunServer(rc, scfg)
		if o.srvErr != nil {
			scn.Close()
			return
		}
		buf := make([]byte, 4)
		if _, err := io.ReadFull(rc, buf); err != nil || string(buf) != "ping" {
			o.srvErr = fmt.Errorf("server read %q, %v", buf, err)
			scn.Close()
			return
		}
		if _, err := rc.Write([]byte("pong")); err != nil {
			o.srvErr = err
		}
		if _, err := rc.Read(buf); err != io.EOF {
			o.srvErr = fmt.Errorf("server: %v instead of io.EOF after the close record", err)
		}
		rc.Close()
	}()
	cliDone := make(chan struct{})
	go func() {
		defer close(cliDone)
		rc := record.NewConn(cc)
		o.cli, o.cliErr = RunClient(rc, ccfg)
		if o.cliErr != nil {
			cc.Close()
			return
		}
		// Application data pipelined behind ClientAuth, before the verdict is read.
		if _, err := rc.Write([]byte("ping")); err != nil {
			o.cliErr = err
			cc.Close()
			return
		}
		if o.cli.Pending() {
			o.sess, o.verdictErr = o.cli.ReadVerdict(time.Unix(sc.clientTime, 0))
			if o.verdictErr != nil {
				cc.Close()
				return
			}
		}
		buf := make([]byte, 4)
		if _, err := io.ReadFull(rc, buf); err != nil || string(buf) != "pong" {
			o.cliErr = fmt.Errorf("client read %q, %v", buf, err)
		}
		rc.Close()
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cc.Close()
		scn.Close()
		t.Fatal("handshake vector timed out")
	}
	<-cliDone
	o.c2s, o.s2c = cc.out.wire(), scn.out.wire()

	e.describe(t, sc, o, ce, se)
	return o
}

// describe recomputes the handshake independently, checks the implementation against it, and
// writes the vector file.
func (e *vectorEnv) describe(t *testing.T, sc *hsScenario, o *hsOutcome, ce, se x25519.KeyPair) {
	t.Helper()
	c2s, s2c := splitFrames(t, o.c2s), splitFrames(t, o.s2c)
	if len(c2s) == 0 || c2s[0][0] != record.FrameClientHello || len(s2c) == 0 || s2c[0][0] != record.FrameServerHello {
		t.Fatalf("unexpected first frames")
	}
	hello := c2s[0]
	ch, err := parseClientHello(hello[record.HeaderLen:])
	if err != nil {
		t.Fatal(err)
	}
	pro := hello[:len(hello)-len(ch.Noise)]
	sh := s2c[0][record.HeaderLen:]
	resumed := sh[0] == ModeResume

	// The client's message 1, recomputed: NNhfs always (from the specification, with the
	// standard library), NNpsk0 too when a ticket is offered (with flynn/noise, from the same
	// 32 random bytes), and the server's message 2 of the mode it chose, likewise.
	if NoiseFull != "Noise_NNhfs_25519+MLKEM768_AESGCM_SHA256" || NoiseResume != "Noise_NNpsk0_25519_AESGCM_SHA256" {
		t.Fatal("protocol names differ from docs/PROTOCOL.md")
	}
	cSeed := vectorInput(sc.ephLabel + ": client ephemeral")
	sSeed := vectorInput(sc.ephLabel + ": server ephemeral")
	kemSeed, kemRand := vectorKEMSeed(sc.ephLabel), vectorKEMRand(sc.ephLabel)
	hfs := vectorHFS(t, pro, ce, se, kemSeed, kemRand)
	wantLen := NoiseMessage1Full
	if ch.Mode == ModeResume {
		wantLen += 16
	}
	if len(ch.Noise) != wantLen || !bytes.Equal(hfs.msg1, ch.Noise[:len(hfs.msg1)]) {
		t.Fatalf("NNhfs message 1 (e || ek) differs from the ClientHello's Noise message")
	}
	var psk, pskMsg1 []byte
	var pskCli *noise.HandshakeState
	if ch.Mode == ModeResume {
		psk = sc.session.Secret
		pskCli, err = noise.NewHandshakeState(noise.Config{CipherSuite: vectorSuite, Random: bytes.NewReader(cSeed),
			Pattern: noise.HandshakeNN, Initiator: true, Prologue: pro, PresharedKey: psk})
		if err != nil {
			t.Fatal(err)
		}
		if pskMsg1, _, _, err = pskCli.WriteMessage(nil, nil); err != nil {
			t.Fatal(err)
		}
		if len(pskMsg1) != 48 || !bytes.Equal(pskMsg1[:DHLen], ch.Noise[:DHLen]) || !bytes.Equal(pskMsg1[DHLen:], ch.Noise[NoiseMessage1Full:]) {
			t.Fatalf("the resume-mode Noise message is not e || ek || the tag of NNpsk0 message 1")
		}
	}

	var h, kc2s, ks2c, ck, msg2 []byte
	if resumed {
		srvHS, err := noise.NewHandshakeState(noise.Config{CipherSuite: vectorSuite, Random: bytes.NewReader(sSeed),
			Pattern: noise.HandshakeNN, Prologue: pro, PresharedKey: psk})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := srvHS.ReadMessage(nil, pskMsg1); err != nil {
			t.Fatal(err)
		}
		m2, cs1, cs2, err := srvHS.WriteMessage(nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := pskCli.ReadMessage(nil, m2); err != nil {
			t.Fatal(err)
		}
		h, msg2 = srvHS.ChannelBinding(), m2
		if !bytes.Equal(h, pskCli.ChannelBinding()) {
			t.Fatal("recomputed handshake hashes differ")
		}
		kc2s, ks2c = unsafeKey(cs1), unsafeKey(cs2)
		ck = vectorChainingKey(t, psk, ce, se)
		if k1, k2 := noiseHKDF(t, ck, nil); !bytes.Equal(k1, kc2s) || !bytes.Equal(k2, ks2c) {
			t.Fatal("the recomputed chaining key does not give the oracle's Split() keys")
		}
	} else {
		h, kc2s, ks2c, ck, msg2 = hfs.h, hfs.k1, hfs.k2, hfs.ck, hfs.msg2
		if got, err := hfs.dk.Decapsulate(hfs.ct); err != nil || !bytes.Equal(got, hfs.shared) {
			t.Fatal("the client's key does not decapsulate the server's ciphertext to the same secret")
		}
	}
	if !bytes.Equal(msg2, sh[1:]) {
		t.Fatalf("ServerHello Noise message differs from the recomputed one")
	}
	if !bytes.Equal(msg2[:DHLen], se.Public[:]) {
		t.Fatalf("Noise message 2 does not start with the server's ephemeral")
	}
	if o.cli == nil || !bytes.Equal(o.cli.Result.HandshakeHash, h) {
		t.Fatal("client's handshake hash differs from the recomputed one")
	}
	if o.srv != nil && !bytes.Equal(o.srv.HandshakeHash, h) {
		t.Fatal("server's handshake hash differs from the recomputed one")
	}
	if o.cli.Result.Resumed != resumed || (o.srv != nil && o.srv.Resumed != resumed) {
		t.Fatal("Resumed flags disagree with the ServerHello mode")
	}
	appC2S, appS2C, resumption := vectorSecrets(t, ck, h)
	if o.sess != nil && !bytes.Equal(o.sess.Secret, resumption) {
		t.Fatal("the client's resumption secret differs from the key schedule's")
	}

	f := &vecFile{}
	f.comment("netauth protocol version %d test vector: %s", Version, sc.title)
	f.comment("Format and meaning: docs/PROTOCOL.md §11. Values are hex; a line starting with two")
	f.comment("spaces continues the value above it. Generated by internal/handshake/vectors_test.go.")
	if sc.notes != "" {
		f.comment("")
		f.comment("%s", sc.notes)
	}
	f.blank()
	f.comment("== Inputs ==")
	f.comment("Host key: Ed25519 seed (RFC 8032 private key) and the public key in SSH wire form.")
	f.hex("host_key_seed", e.hostSeed)
	f.hex("host_public_key", e.hostPub.Marshal())
	if c := sc.hostCert; c != nil {
		ca := ed25519.NewKeyFromSeed(sc.caSeed)
		caPub, _ := ssh.NewPublicKey(ca.Public())
		f.comment("Host CA key (Ed25519): seed and SSH wire form; it signs the host certificate.")
		f.hex("host_ca_key_seed", sc.caSeed)
		f.hex("host_ca_public_key", caPub.Marshal())
		f.comment("Host certificate (OpenSSH PROTOCOL.certkeys, ssh-ed25519-cert-v01@openssh.com): type host,")
		f.comment("serial %d, key id %q, principals %q, valid from %d to %d,", c.Serial, c.KeyId, c.ValidPrincipals, c.ValidAfter, c.ValidBefore)
		f.comment("no options or extensions, nonce %x;", c.Nonce)
		f.comment("the CA's signature is deterministic (Ed25519). ServerAuth's host_key carries it.")
		f.hex("host_certificate", c.Marshal())
	}
	f.comment("User key (ssh-ed25519, signs the authenticator): seed and SSH wire form.")
	f.hex("user_key_seed", e.userSeed)
	f.hex("user_public_key", e.user.PublicKey().Marshal())
	f.str("user", "alice")
	f.str("service", "echo")
	f.u64("client_time", uint64(sc.clientTime), " ("+time.Unix(sc.clientTime, 0).UTC().Format(time.RFC3339)+"), Unix seconds")
	f.u64("server_time", uint64(sc.serverTime), " ("+time.Unix(sc.serverTime, 0).UTC().Format(time.RFC3339)+"), Unix seconds")
	f.comment("The client reads the Verdict at client_time too (a session's expiry counts from it).")
	f.comment("Server settings, in seconds: the ticket lifetime (also the ticket key rotation interval)")
	f.comment("and the maximum clock skew.")
	f.u64("ticket_lifetime", uint64(sc.tickets.Lifetime()/time.Second), " s")
	f.u64("max_clock_skew", uint64(DefaultMaxClockSkew/time.Second), " s")
	if sc.revoked {
		f.comment("Server policy: no key is authorized for user alice (her key was removed).")
	} else {
		f.comment("Server policy: user alice may use service echo with user_public_key, and no other key.")
	}
	f.comment("Ephemeral X25519 keys: the 32 random bytes drawn, the clamped private key, the public key.")
	f.hex("client_ephemeral_random", cSeed)
	f.hex("client_ephemeral_private", ce.PrivateKey().Bytes())
	f.hex("client_ephemeral_public", ce.Public[:])
	f.hex("server_ephemeral_random", sSeed)
	f.hex("server_ephemeral_private", se.PrivateKey().Bytes())
	f.hex("server_ephemeral_public", se.Public[:])
	f.comment("ML-KEM-768 (FIPS 203): the client's 64-byte decapsulation key seed d || z")
	f.comment("(ML-KEM.KeyGen_internal(d, z)) and its encapsulation key, which every ClientHello carries.")
	f.hex("client_kem_seed", kemSeed)
	f.hex("client_kem_encapsulation_key", hfs.ek)
	if !resumed {
		f.comment("The server's 32 bytes of encapsulation randomness m (ML-KEM.Encaps_internal(ek, m)).")
		f.hex("server_kem_random", kemRand)
	}
	if sc.session != nil {
		f.comment("The client offers the session stored by full.txt (its field \"session\").")
		f.hex("offered_ticket", sc.session.Ticket)
		f.hex("offered_resumption_secret", sc.session.Secret)
	}
	switch {
	case sc.storedKeyID != nil:
		f.comment("The server's ticket key set holds only the key full.txt created, at full.txt's server_time")
		f.comment("(%d), which is the newest key and seals nothing here.", vectorTime+2)
		f.hex("server_ticket_key_id", sc.storedKeyID)
		f.hex("server_ticket_key", sc.storedKey)
	case sc.ticketRand != nil:
		f.comment("The server's ticket key set is empty; sealing a ticket draws key id (8), key (32), nonce (12).")
		f.hex("ticket_key_id", sc.ticketRand[:8])
		f.hex("ticket_key", sc.ticketRand[8:40])
		f.hex("ticket_nonce", sc.ticketRand[40:52])
	}
	f.blank()

	f.comment("== Noise handshake (%s) ==", map[bool]string{false: NoiseFull, true: NoiseResume}[resumed])
	f.comment("Prologue: every byte of the ClientHello frame before the Noise message, header included.")
	f.hex("prologue", pro)
	f.comment("NNhfs message 1 (e || ek): the client's ephemeral public key and encapsulation key, in clear.")
	f.hex("nnhfs_message_1", hfs.msg1)
	if ch.Mode == ModeResume {
		f.comment("NNpsk0 message 1 (e || tag of the empty payload). The ClientHello's Noise message is")
		f.comment("e || ek || tag: NNhfs message 1 followed by this tag.")
		f.hex("nnpsk0_message_1", pskMsg1)
	}
	if !resumed {
		f.comment("NNhfs step by step. h and ck start as SHA-256 of the protocol name (40 bytes, more")
		f.comment("than 32); then MixHash(prologue); message 1: MixHash(e), MixHash(ek), MixHash(\"\");")
		f.comment("message 2: MixHash(e), MixKey(ee), EncryptAndHash(ciphertext), MixKey(shared secret),")
		f.comment("EncryptAndHash(\"\").")
		f.hex("initial_h", hfs.h0)
		f.hex("h_after_prologue", hfs.hAfterPro)
		f.hex("h_after_message_1", hfs.hAfterMsg1)
		f.hex("chaining_key_after_ee", hfs.ckEE)
		f.comment("The ML-KEM-768 ciphertext and shared secret of ML-KEM.Encaps_internal(ek, server_kem_random),")
		f.comment("then the ciphertext as message 2 carries it: encrypted under the key of ee (nonce 0,")
		f.comment("ad = h), 1088 + 16 bytes.")
		f.hex("kem_ciphertext", hfs.ct)
		f.hex("kem_shared_secret", hfs.shared)
		f.hex("kem_ciphertext_encrypted", hfs.encCT)
	}
	f.hex("noise_message_2", msg2)
	f.hex("handshake_hash", h)
	f.comment("Handshake-record keys: Split() output 1 encrypts client->server, output 2 server->client,")
	f.comment("up to and including the client's ClientAuth or Binder and the server's Verdict.")
	f.hex("key_client_to_server", kc2s)
	f.hex("key_server_to_client", ks2c)
	f.comment("Key schedule (docs/PROTOCOL.md §3.9): the chaining key after message 2, then")
	f.comment("prk = HKDF-Extract(salt = chaining_key, ikm = handshake_hash) and HKDF-Expand(prk, label, 32).")
	f.hex("chaining_key", ck)
	f.hex("app_key_client_to_server", appC2S)
	f.hex("app_key_server_to_client", appS2C)
	f.hex("resumption_secret", resumption)
	f.blank()

	suite := noise.NewCipherSuite(noise.DH25519, noise.CipherAESGCM, noise.HashSHA256)
	cs := func(k []byte) *noise.CipherState { return noise.UnsafeNewCipherState(suite, [32]byte(k), 0) }
	f.comment("== Frames, client to server ==")
	cContents := writeFrames(t, f, "c2s", c2s, cs(kc2s), cs(appC2S), false, record.TypeClientAuth, record.TypeBinder)
	f.blank()
	f.comment("== Frames, server to client ==")
	sContents := writeFrames(t, f, "s2c", s2c, cs(ks2c), cs(appS2C), false, record.TypeVerdict)
	f.blank()

	if sa := sContents[record.TypeServerAuth]; len(sa) == 1 {
		e.describeFull(t, f, sc, o, h, sa[0], cContents, sContents)
	} else if len(sa) != 0 {
		t.Fatal("more than one ServerAuth")
	}
	if resumed {
		describeResumed(t, f, psk, h, cContents, sContents)
	}

	f.comment("== Whole streams ==")
	f.hex("wire_client_to_server", o.c2s)
	f.hex("wire_server_to_client", o.s2c)
	if o.sess != nil {
		f.blank()
		f.comment("== Client session cache entry (informative, docs/PROTOCOL.md §5.4) ==")
		f.hex("session", o.sess.Marshal())
	}
	checkVectorFile(t, sc.file, f.b.String())
}

// describeFull checks and documents the authentication records of a full handshake.
func (e *vectorEnv) describeFull(t *testing.T, f *vecFile, sc *hsScenario, o *hsOutcome, h, saBody []byte, cContents, sContents map[byte][][]byte) {
	t.Helper()
	f.comment("== Full-handshake authentication ==")
	sa, err := parseServerAuth(saBody)
	if err != nil {
		t.Fatal(err)
	}
	sigData := append([]byte(HostSigContext), h...)
	var sig ssh.Signature
	if err := ssh.Unmarshal(sa.Signature, &sig); err != nil || !ed25519.Verify(e.hostKey.Public().(ed25519.PublicKey), sigData, sig.Blob) {
		t.Fatal("host signature does not verify independently")
	}
	if sc.hostCert != nil {
		if !bytes.Equal(sa.HostKey, sc.hostCert.Marshal()) {
			t.Fatal("ServerAuth does not carry the host certificate")
		}
		if err := keys.CheckHostCertificate(sc.hostCert, e.hostKey, time.Unix(sc.clientTime, 0)); err != nil {
			t.Fatal(err)
		}
		f.comment("ServerAuth's host_key is the host certificate; host_sig is still by the certified")
		f.comment("Ed25519 key, and the statement's host-key line names that key, not the certificate.")
	}
	f.comment("Host signature: Ed25519 over \"netauth-v1 host signature\\0\" || handshake_hash, SSH wire form.")
	f.hex("host_signature_data", sigData)
	f.hex("host_signature", sa.Signature)

	ca := cContents[record.TypeClientAuth]
	if len(ca) != 1 {
		t.Fatal("no ClientAuth record")
	}
	auth, err := parseClientAuth(ca[0])
	if err != nil {
		t.Fatal(err)
	}
	stmt := fmt.Sprintf("netauth-authenticator-v1\nhandshake-hash %x\nhost-key ssh-ed25519 %s\nservice echo\nuser alice\ntime %d\n",
		h, base64.StdEncoding.EncodeToString(e.hostPub.Marshal()), sc.clientTime)
	if !bytes.Equal(o.cli.Result.Statement, []byte(stmt)) || (o.srv != nil && !bytes.Equal(o.srv.Statement, []byte(stmt))) {
		t.Fatalf("statement differs from the specified text:\n%s", o.cli.Result.Statement)
	}
	if _, err := keys.Verify(auth.SSHSIG, Namespace, []byte(stmt)); err != nil {
		t.Fatal(err)
	}
	f.comment("Statement signed by the user (text, each line ends in \\n):")
	for _, line := range strings.SplitAfter(strings.TrimSuffix(stmt, "\n"), "\n") {
		f.comment("  %s", strings.TrimSuffix(line, "\n"))
	}
	f.hex("statement", []byte(stmt))
	f.comment("SSHSIG: the data the user key signs (\"SSHSIG\" || string namespace || string reserved ||")
	f.comment("string \"sha512\" || string SHA-512(statement)), then the binary signature.")
	f.hex("sshsig_signed_data", keys.SignedData(Namespace, []byte(stmt)))
	f.hex("sshsig", auth.SSHSIG)
	f.comment("The same signature armored, checkable with")
	f.comment("  ssh-keygen -Y verify -f allowed_signers -I alice -n %s -s sig < statement", Namespace)
	f.comment("where allowed_signers holds the line")
	f.comment("  alice %s", strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(e.user.PublicKey())), "\n"))
	f.comment("%s", strings.TrimSuffix(string(keys.Armor(auth.SSHSIG)), "\n"))
	keygenVerifyVector(t, e, []byte(stmt), auth.SSHSIG)
	f.comment("ClientAuth fields")
	f.u64("client_auth_time", auth.Time, "")

	vs := sContents[record.TypeVerdict]
	if len(vs) != 1 {
		t.Fatal("no Verdict record")
	}
	v, err := parseVerdict(vs[0])
	if err != nil {
		t.Fatal(err)
	}
	f.comment("Verdict: code %d (%s), ticket lifetime %d s", v.Code, v.Code, v.Lifetime)
	if len(v.Ticket) != 0 {
		f.hex("ticket", v.Ticket)
		var key []byte
		switch {
		case sc.ticketRand != nil && bytes.Equal(v.Ticket[:8], sc.ticketRand[:8]):
			key = sc.ticketRand[8:40]
		case sc.storedKeyID != nil && bytes.Equal(v.Ticket[:8], sc.storedKeyID):
			key = sc.storedKey
		default:
			t.Fatal("ticket sealed under an unexpected key")
		}
		block, _ := aes.NewCipher(key)
		gcm, _ := cipher.NewGCM(block)
		pt, err := gcm.Open(nil, v.Ticket[8:20], v.Ticket[20:], append([]byte(ticketAD), v.Ticket[:8]...))
		if err != nil {
			t.Fatalf("ticket does not open independently: %v", err)
		}
		f.comment("Ticket plaintext (version || issued || expiry || user || SHA-256(user key) || service ||")
		f.comment("SHA-256(host key) || resumption secret); AD = \"netauth-v1 ticket\\0\" || key id.")
		f.comment("The resumption secret in it is the key schedule's (resumption_secret above): it")
		f.comment("never travels.")
		f.hex("ticket_plaintext", pt)
	}
	f.blank()
}

// describeResumed checks and documents the Binder and the Verdict of a resumed handshake.
func describeResumed(t *testing.T, f *vecFile, psk, h []byte, cContents, sContents map[byte][][]byte) {
	t.Helper()
	f.comment("== Resumption ==")
	m := hmac.New(sha256.New, psk)
	m.Write([]byte("netauth-v1 resumption binder\x00"))
	m.Write(h)
	binder := m.Sum(nil)
	if b := cContents[record.TypeBinder]; len(b) != 1 || !bytes.Equal(b[0], binder) {
		t.Fatal("the client's Binder differs from the one recomputed independently")
	}
	f.comment("Binder: HMAC-SHA256(key = offered_resumption_secret,")
	f.comment("                    \"netauth-v1 resumption binder\" || 0x00 || handshake_hash).")
	vs := sContents[record.TypeVerdict]
	if len(vs) != 1 {
		t.Fatal("no Verdict record")
	}
	v, err := parseVerdict(vs[0])
	if err != nil {
		t.Fatal(err)
	}
	f.comment("Verdict: code %d (%s), ticket lifetime %d s, no ticket (a resumption issues none).", v.Code, v.Code, v.Lifetime)
	if len(v.Ticket) != 0 || v.Lifetime != 0 {
		t.Fatal("a resumed handshake's Verdict carries a ticket")
	}
	f.blank()
}

// keygenVerifyVector checks the vector's authenticator with ssh-keygen when it is installed.
func keygenVerifyVector(t *testing.T, e *vectorEnv, stmt, sig []byte) {
	t.Helper()
	keygen, err := exec.LookPath("ssh-keygen")
	if err != nil {
		return
	}
	dir := t.TempDir()
	signers := filepath.Join(dir, "allowed_signers")
	sigFile := filepath.Join(dir, "sig")
	if err := os.WriteFile(signers, append([]byte("alice "), ssh.MarshalAuthorizedKey(e.user.PublicKey())...), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sigFile, keys.Armor(sig), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(keygen, "-Y", "verify", "-f", signers, "-I", "alice", "-n", Namespace, "-s", sigFile)
	cmd.Stdin = bytes.NewReader(stmt)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen -Y verify: %v\n%s", err, out)
	}
}

// storedTicketKeys returns a key set holding one stored key, created at created.
func storedTicketKeys(id, key []byte, created time.Time) *TicketKeys {
	k := &ticketKey{created: created}
	copy(k.id[:], id)
	copy(k.key[:], key)
	return &TicketKeys{lifetime: DefaultTicketTTL, rand: &fixedReader{}, keys: []*ticketKey{k}}
}

func ticketRand(label string) []byte {
	return append(append(vectorInput(label + ": ticket key id")[:8:8], vectorInput(label+": ticket key")...),
		vectorInput(label + ": ticket nonce")[:12]...)
}

func TestVectors(t *testing.T) {
	e := newVectorEnv(t)

	// 1. Full handshake, issuing a ticket.
	fullRand := ticketRand("full")
	o := e.run(t, &hsScenario{
		file:       "full.txt",
		title:      "hybrid full handshake (Noise_NNhfs_25519+MLKEM768_AESGCM_SHA256)",
		notes:      "The client pipelines a data record (\"ping\") right after ClientAuth; the server answers\nwith the Verdict, then \"pong\"; both sides end with a close record.",
		clientTime: vectorTime,
		serverTime: vectorTime + 2,
		ephLabel:   "full",
		tickets:    NewTicketKeys(time.Hour, &fixedReader{b: fullRand}),
		ticketRand: fullRand,
	})
	if o.cliErr != nil || o.srvErr != nil || o.verdictErr != nil || o.sess == nil {
		t.Fatalf("full: client %v, server %v, verdict %v", o.cliErr, o.srvErr, o.verdictErr)
	}

	// Everything after this point starts from the stored full vector, not from o: a stored
	// session must keep producing the stored resumed vector.
	full := readVectorFile(t, "full.txt")
	sessionFrom := func() *Session {
		s, err := ParseSession(full["session"])
		if err != nil {
			t.Fatalf("full.txt session: %v", err)
		}
		return s
	}
	created := time.Unix(vectorTime+2, 0)
	keyID, key := full["ticket_key_id"], full["ticket_key"]
	if len(keyID) != 8 || len(key) != 32 {
		t.Fatal("full.txt lacks the ticket key")
	}

	// 2. Resumption with the stored session.
	o = e.run(t, &hsScenario{
		file:        "resume.txt",
		title:       "resumed handshake (Noise_NNpsk0_25519_AESGCM_SHA256) with the session of full.txt",
		notes:       "No ServerAuth and no ClientAuth: the client's first record is the Binder, followed at once\nby a pipelined data record (\"ping\"); the server's first record is the Verdict (code 0, no\nticket), then \"pong\"; both sides end with a close record.",
		clientTime:  vectorTime + 600,
		serverTime:  vectorTime + 602,
		ephLabel:    "resume",
		session:     sessionFrom(),
		tickets:     storedTicketKeys(keyID, key, created),
		storedKeyID: keyID,
		storedKey:   key,
	})
	if o.cliErr != nil || o.srvErr != nil || !o.cli.Result.Resumed || !o.srv.Resumed || o.srv.User != "alice" {
		t.Fatalf("resume: client %v, server %v", o.cliErr, o.srvErr)
	}

	// 3. Fallback: the server no longer holds the ticket's key (for example after a restart)
	// and answers with a full handshake, issuing a new ticket.
	fbRand := ticketRand("fallback")
	o = e.run(t, &hsScenario{
		file:       "fallback.txt",
		title:      "ticket offered but unknown to the server: fallback to a full handshake",
		notes:      "The server's ticket keys do not include the ticket's key id, so it reads the first 1216\nbytes of the resume-mode Noise message (e || ek) as NNhfs message 1 and answers with a\nhybrid full handshake (ServerHello mode 0).",
		clientTime: vectorTime + 900,
		serverTime: vectorTime + 902,
		ephLabel:   "fallback",
		session:    sessionFrom(),
		tickets:    NewTicketKeys(time.Hour, &fixedReader{b: fbRand}),
		ticketRand: fbRand,
	})
	if o.cliErr != nil || o.srvErr != nil || o.verdictErr != nil || o.cli.Result.Resumed || !o.cli.Result.Offered || o.sess == nil {
		t.Fatalf("fallback: client %v, server %v, verdict %v", o.cliErr, o.srvErr, o.verdictErr)
	}

	// 4. Revocation: the ticket is valid but the key is no longer authorized; the server falls
	// back to a full handshake and refuses it with not_authorized.
	o = e.run(t, &hsScenario{
		file:        "revoked.txt",
		title:       "ticket refused because the key was revoked: full handshake refused (not_authorized)",
		notes:       "The server opens the ticket but Authorize refuses the user's key, so it falls back to a\n(hybrid) full handshake and answers ClientAuth with a Verdict of code 5 (not_authorized), then closes the\nconnection without a close record. The client's pipelined data record is never read; the\nclient, refused, sends nothing more and closes the connection.",
		clientTime:  vectorTime + 1200,
		serverTime:  vectorTime + 1202,
		ephLabel:    "revoked",
		session:     sessionFrom(),
		tickets:     storedTicketKeys(keyID, key, created),
		storedKeyID: keyID,
		storedKey:   key,
		revoked:     true,
	})
	var re *RefusedError
	var r *Refusal
	if o.cliErr != nil || !errors.As(o.verdictErr, &re) || re.Code != CodeNotAuthorized ||
		!errors.As(o.srvErr, &r) || r.Code != CodeNotAuthorized || o.cli.Result.Resumed {
		t.Fatalf("revoked: client %v, verdict %v, server %v", o.cliErr, o.verdictErr, o.srvErr)
	}

	// 5. A full handshake whose server presents a host certificate (§3.3).
	caSeed := vectorInput("host CA key")
	caSigner, err := ssh.NewSignerFromKey(ed25519.NewKeyFromSeed(caSeed))
	if err != nil {
		t.Fatal(err)
	}
	hostCert := &ssh.Certificate{Key: e.hostPub, Serial: 1, CertType: ssh.HostCert, KeyId: "echo host",
		ValidPrincipals: []string{"echo.example"}, ValidAfter: vectorTime - 3600, ValidBefore: vectorTime + 365*86400}
	if err := hostCert.SignCert(bytes.NewReader(vectorInput("host certificate nonce")), caSigner); err != nil {
		t.Fatal(err)
	}
	hcRand := ticketRand("hostcert")
	o = e.run(t, &hsScenario{
		file:       "hostcert.txt",
		title:      "hybrid full handshake with a host certificate",
		notes:      "As full.txt, but ServerAuth carries an OpenSSH host certificate of the host key, signed by\na host CA; the host signature, the statement and the ticket bind the host key itself.",
		clientTime: vectorTime + 1500,
		serverTime: vectorTime + 1502,
		ephLabel:   "hostcert",
		tickets:    NewTicketKeys(time.Hour, &fixedReader{b: hcRand}),
		ticketRand: hcRand,
		hostCert:   hostCert,
		caSeed:     caSeed,
	})
	if o.cliErr != nil || o.srvErr != nil || o.verdictErr != nil || o.sess == nil {
		t.Fatalf("hostcert: client %v, server %v, verdict %v", o.cliErr, o.srvErr, o.verdictErr)
	}
	if !bytes.Equal(o.sess.HostKey, hostCert.Marshal()) || !bytes.Equal(o.cli.Result.HostKey.Marshal(), e.hostPub.Marshal()) {
		t.Fatal("hostcert: the session must keep the certificate, the result the host key")
	}

	t.Run("version", testVersionVector)
	t.Run("records", testRecordsVector)
}

// testVersionVector: a version-2 ClientHello, and a ClientHello for a later version longer
// than this version's limit, each get a version_unsupported alert naming this version. There
// is no negotiation down to version 2 (docs/PROTOCOL.md §1, §10.2).
func testVersionVector(t *testing.T) {
	e := newVectorEnv(t)
	// A version-2 client's full-mode ClientHello: its ephemeral key only, no encapsulation key.
	v2e, err := x25519.Generate(bytes.NewReader(vectorInput("version: version-2 client ephemeral")))
	if err != nil {
		t.Fatal(err)
	}
	v2 := frame(record.FrameClientHello, append([]byte(Magic+"\x02\x00\x00\x00"), v2e.Public[:]...))
	later := append([]byte(Magic), Version+1, ModeFull, 0, 0)
	for len(later) < MaxClientHello+200 {
		later = append(later, vectorInput(fmt.Sprintf("version: client share %d", len(later)))...)
	}
	laterHello := frame(record.FrameClientHello, later)
	wantAlert := []byte{record.FrameAlert, 0, AlertLen, byte(CodeVersionUnsupported), Version}
	for _, hello := range [][]byte{v2, laterHello} {
		cc, scn := memConnPair()
		if _, err := cc.Write(hello); err != nil {
			t.Fatal(err)
		}
		_, err := RunServer(record.NewConn(scn), &ServerConfig{HostKey: e.hostKey, Service: "echo",
			Eligible: func(*Result) error { return nil }, Authorize: admitAll,
			Ephemeral: func() (x25519.KeyPair, error) { return x25519.KeyPair{}, errors.New("not reached") }})
		var r *Refusal
		if !errors.As(err, &r) || r.Code != CodeVersionUnsupported {
			t.Fatalf("server: %v", err)
		}
		if alert := scn.out.wire(); !bytes.Equal(alert, wantAlert) {
			t.Fatalf("alert %x", alert)
		}
	}
	// The client side reports the code.
	cc2, scn2 := memConnPair()
	scn2.Write(wantAlert)
	scn2.Close()
	_, err = RunClient(record.NewConn(cc2), &ClientConfig{User: "alice", Ephemeral: func() (x25519.KeyPair, error) {
		return x25519.Generate(bytes.NewReader(vectorInput("version: client ephemeral")))
	}})
	var re *RefusedError
	if !errors.As(err, &re) || re.Code != CodeVersionUnsupported {
		t.Fatalf("client: %v", err)
	}

	f := &vecFile{}
	f.comment("netauth protocol version %d test vector: version negotiation", Version)
	f.comment("Format and meaning: docs/PROTOCOL.md §11. Generated by internal/handshake/vectors_test.go.")
	f.comment("")
	f.comment("Two connections to a version-%d server, each answered with an alert frame: code 2", Version)
	f.comment("(version_unsupported) and the server's own highest version, %d; then the server closes.", Version)
	f.comment("")
	f.comment("1. A version-2 client's full-mode ClientHello (%d body bytes: its X25519 key, no ML-KEM", len(v2)-record.HeaderLen)
	f.comment("   key). Version 3 has no X25519-only handshake, and no negotiation down to one.")
	f.hex("v2_c2s_0_client_hello", v2)
	f.hex("v2_s2c_0_alert", wantAlert)
	f.comment("2. A client speaking version %d sends a ClientHello of %d body bytes, more than a", Version+1, len(later))
	f.comment("   version-%d ClientHello may have (%d); the server reads the version byte before it", Version, MaxClientHello)
	f.comment("   checks the length.")
	f.hex("v4_c2s_0_client_hello", laterHello)
	f.hex("v4_s2c_0_alert", wantAlert)
	checkVectorFile(t, "version.txt", f.b.String())
}

// testRecordsVector: records with fixed keys, a rekey, and a close.
func testRecordsVector(t *testing.T) {
	key := [32]byte(vectorInput("records: key"))
	peerKey := [32]byte(vectorInput("records: peer key"))
	cc, scn := memConnPair()
	sender, receiver := record.NewConn(cc), record.NewConn(scn)
	sender.SetKeys(record.NewHalf(key, 0), record.NewHalf(peerKey, 0))
	receiver.SetKeys(record.NewHalf(peerKey, 0), record.NewHalf(key, 0))
	sender.SetRekeyAfter(3)
	msgs := []string{"first record", "", "third record, then a rekey record", "after the rekey"}
	var all []byte
	for _, m := range msgs {
		if m == "" {
			// Write skips empty writes; queue an empty data record directly.
			if err := sender.QueueRecord(record.TypeData, nil); err != nil {
				t.Fatal(err)
			}
			if err := sender.Flush(); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if _, err := sender.Write([]byte(m)); err != nil {
			t.Fatal(err)
		}
		all = append(all, m...)
	}
	if err := sender.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(receiver)
	if err != nil || !bytes.Equal(got, all) {
		t.Fatalf("receiver read %q, %v", got, err)
	}
	wire := cc.out.wire()

	f := &vecFile{}
	f.comment("netauth protocol version %d test vector: record layer", Version)
	f.comment("Format and meaning: docs/PROTOCOL.md §11. Generated by internal/handshake/vectors_test.go.")
	f.comment("")
	f.comment("One direction, keyed with a fixed key, nonce starting at 0, rekeying after every 3 records")
	f.comment("(DefaultRekeyAfter is 2^20; 3 is set here to exercise the rekey). Records: data, an empty data")
	f.comment("record, data (the 3rd record, so a rekey record follows it), data under the new key, close.")
	f.comment("Each record: frame = 0x17 || length || AES-256-GCM(key, nonce, plaintext, ad = frame header);")
	f.comment("plaintext = content || inner type; nonce = 00000000 || 8-byte big-endian counter.")
	f.blank()
	f.hex("key", key[:])
	f.blank()
	cs := noise.UnsafeNewCipherState(vectorSuite, key, 0)
	writeFrames(t, f, "record", splitFrames(t, wire), cs, nil, true)
	f.blank()
	f.hex("wire", wire)
	checkVectorFile(t, "records.txt", f.b.String())
}

// TestTamperedTagFallsBack checks what docs/PROTOCOL.md §4 and §10.2 say about the 16-byte
// tag of NNpsk0 message 1: the NN transcript does not cover it, so altering it in transit
// makes the server fall back to a full handshake (ServerHello mode 0) rather than fail.
func TestTamperedTagFallsBack(t *testing.T) {
	e := newVectorEnv(t)
	full := readVectorFile(t, "full.txt")
	sess, err := ParseSession(full["session"])
	if err != nil {
		t.Fatal(err)
	}
	ce, _ := x25519.Generate(bytes.NewReader(vectorInput("tamper: client ephemeral")))
	se, _ := x25519.Generate(bytes.NewReader(vectorInput("tamper: server ephemeral")))
	cc, _ := memConnPair()
	go RunClient(record.NewConn(cc), &ClientConfig{User: "alice", Session: sess,
		Ephemeral: func() (x25519.KeyPair, error) { return ce, nil }})
	var hello []byte
	for deadline := time.Now().Add(5 * time.Second); ; {
		if hello = cc.out.wire(); len(hello) > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cc.Close()
	if len(hello) == 0 || hello[0] != record.FrameClientHello {
		t.Fatal("no ClientHello")
	}
	hello[len(hello)-1] ^= 1 // last byte of the NNpsk0 tag

	c2, s2 := memConnPair()
	c2.Write(hello)
	done := make(chan struct{})
	go func() {
		defer close(done)
		RunServer(record.NewConn(s2), &ServerConfig{HostKey: e.hostKey, Service: "echo",
			Tickets:   storedTicketKeys(full["ticket_key_id"], full["ticket_key"], time.Unix(vectorTime+2, 0)),
			Eligible:  eligibleKey(func(string) ssh.PublicKey { return e.user.PublicKey() }),
			Authorize: admitAll,
			Now:       func() time.Time { return time.Unix(vectorTime+60, 0) },
			Ephemeral: func() (x25519.KeyPair, error) { return se, nil },
		})
	}()
	typ, body, err := record.NewConn(c2).ReadFrame(MaxServerHello)
	c2.Close()
	<-done
	if err != nil || typ != record.FrameServerHello || body[0] != ModeFull {
		t.Fatalf("server answered type 0x%02x mode %x, %v; want a full-mode ServerHello", typ, body[:1], err)
	}
	// Untampered, the same ClientHello resumes.
	hello[len(hello)-1] ^= 1
	c3, s3 := memConnPair()
	c3.Write(hello)
	done = make(chan struct{})
	go func() {
		defer close(done)
		RunServer(record.NewConn(s3), &ServerConfig{HostKey: e.hostKey, Service: "echo",
			Tickets:   storedTicketKeys(full["ticket_key_id"], full["ticket_key"], time.Unix(vectorTime+2, 0)),
			Eligible:  eligibleKey(func(string) ssh.PublicKey { return e.user.PublicKey() }),
			Authorize: admitAll,
			Now:       func() time.Time { return time.Unix(vectorTime+60, 0) },
			Ephemeral: func() (x25519.KeyPair, error) { return se, nil },
		})
	}()
	typ, body, err = record.NewConn(c3).ReadFrame(MaxServerHello)
	c3.Close()
	<-done
	if err != nil || typ != record.FrameServerHello || body[0] != ModeResume {
		t.Fatalf("untampered: type 0x%02x, %v; want a resume-mode ServerHello", typ, err)
	}
}
