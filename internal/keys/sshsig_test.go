// SPDX-License-Identifier: Apache-2.0

package keys

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"ubns.dev/netauth/internal/testutil"
)

const testNamespace = "netauth-test@ubns.dev"

// keygenVerify checks an SSHSIG blob with ssh-keygen -Y verify.
func keygenVerify(t *testing.T, pub ssh.PublicKey, namespace string, blob, message []byte) error {
	t.Helper()
	dir := t.TempDir()
	signers := filepath.Join(dir, "allowed_signers")
	if err := os.WriteFile(signers, []byte("tester "+authLine(pub)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sigFile := filepath.Join(dir, "msg.sig")
	if err := os.WriteFile(sigFile, Armor(blob), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := runErr(message, nil, openssh(t, "ssh-keygen"), "-Y", "verify", "-f", signers, "-I", "tester", "-n", namespace, "-s", sigFile)
	return err
}

func TestSignVerify(t *testing.T) {
	message := []byte("the statement\n")
	for _, kind := range []string{"ed25519", "ecdsa-p256", "ecdsa-p384", "rsa-3072"} {
		t.Run(kind, func(t *testing.T) {
			s := newSigner(t, kind)
			blob, err := Sign(s, testNamespace, message)
			if err != nil {
				t.Fatal(err)
			}
			pub, err := Verify(blob, testNamespace, message)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(pub.Marshal(), s.PublicKey().Marshal()) {
				t.Fatal("Verify returned a different key")
			}
			if err := keygenVerify(t, s.PublicKey(), testNamespace, blob, message); err != nil {
				t.Fatalf("ssh-keygen -Y verify: %v", err)
			}
			if err := keygenVerify(t, s.PublicKey(), "other@ubns.dev", blob, message); err == nil {
				t.Fatal("ssh-keygen accepted the wrong namespace")
			}
			if _, err := Unarmor(Armor(blob)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// plainSigner hides every method of a signer except those of ssh.Signer.
type plainSigner struct{ s ssh.Signer }

func (p plainSigner) PublicKey() ssh.PublicKey { return p.s.PublicKey() }
func (p plainSigner) Sign(r io.Reader, data []byte) (*ssh.Signature, error) {
	return p.s.Sign(r, data)
}

func TestSignRSANeedsAlgorithmSigner(t *testing.T) {
	s := newSigner(t, "rsa-3072")
	if _, err := Sign(plainSigner{s}, testNamespace, []byte("m")); err == nil || !strings.Contains(err.Error(), "rsa-sha2-512") {
		t.Fatalf("Sign with a plain RSA signer: %v, want an error naming rsa-sha2-512", err)
	}
	if _, err := Sign(s, "", []byte("m")); err == nil {
		t.Fatal("Sign with an empty namespace succeeded")
	}
}

// buildSSHSIG assembles an SSHSIG blob field by field.
func buildSSHSIG(magic string, version uint32, fields ...[]byte) []byte {
	b := []byte(magic)
	b = binary.BigEndian.AppendUint32(b, version)
	for _, f := range fields {
		b = appendString(b, f)
	}
	return b
}

func TestVerifyRejects(t *testing.T) {
	message := []byte("message")
	ed := newSigner(t, "ed25519")
	rsaS := newSigner(t, "rsa-3072").(ssh.AlgorithmSigner)
	good, err := Sign(ed, testNamespace, message)
	if err != nil {
		t.Fatal(err)
	}
	sigOver := func(s ssh.AlgorithmSigner, algo, hashAlg string, digest []byte) []byte {
		sig, err := s.SignWithAlgorithm(rand.Reader, signedData(testNamespace, "", hashAlg, digest), algo)
		if err != nil {
			t.Fatal(err)
		}
		return ssh.Marshal(sig)
	}
	sha1RSA, err := rsaS.SignWithAlgorithm(rand.Reader, SignedData(testNamespace, message), ssh.KeyAlgoRSA)
	if err != nil {
		t.Fatal(err)
	}
	edSig := good[len(good)-(4+83):] // string(signature) of an Ed25519 SSHSIG
	tampered := bytes.Clone(good)
	tampered[len(tampered)-1] ^= 1
	edPub := ed.PublicKey().Marshal()
	ns := []byte(testNamespace)

	tests := []struct {
		name      string
		blob      []byte
		namespace string
		message   []byte
	}{
		{"wrong namespace", good, "other@ubns.dev", message},
		{"namespace prefix", good, testNamespace[:5], message},
		{"empty namespace", good, "", message},
		{"wrong message", good, testNamespace, []byte("messagf")},
		{"tampered signature", tampered, testNamespace, message},
		{"ssh-rsa sha1", Assemble(rsaS.PublicKey(), testNamespace, sha1RSA), testNamespace, message},
		{"oversized", append(bytes.Clone(good), make([]byte, MaxSignatureSize)...), testNamespace, message},
		{"trailing byte", append(bytes.Clone(good), 0), testNamespace, message},
		{"wrong magic", append([]byte("SSHSIH"), good[6:]...), testNamespace, message},
		{"version 2", buildSSHSIG("SSHSIG", 2, edPub, ns, nil, []byte("sha512"), edSig[4:]), testNamespace, message},
		{"hash sha1", buildSSHSIG("SSHSIG", 1, edPub, ns, nil, []byte("sha1"), edSig[4:]), testNamespace, message},
		{"empty", nil, testNamespace, message},
		{"certificate-free key mismatch", buildSSHSIG("SSHSIG", 1, newPub(t).Marshal(), ns, nil, []byte("sha512"), edSig[4:]), testNamespace, message},
		{"sig format mismatch", buildSSHSIG("SSHSIG", 1, rsaS.PublicKey().Marshal(), ns, nil, []byte("sha512"), edSig[4:]), testNamespace, message},
		{"sk trailer on plain key", buildSSHSIG("SSHSIG", 1, edPub, ns, nil, []byte("sha512"), append(bytes.Clone(edSig[4:]), 1, 0, 0, 0, 1)), testNamespace, message},
	}
	// Every truncation of a valid blob fails.
	for i := range len(good) {
		tests = append(tests, struct {
			name      string
			blob      []byte
			namespace string
			message   []byte
		}{"truncated", good[:i], testNamespace, message})
	}
	for _, tt := range tests {
		if pub, err := Verify(tt.blob, tt.namespace, tt.message); err == nil {
			t.Errorf("%s: Verify = %v, want error", tt.name, pub)
		}
	}

	// rsa-sha2-256 with a sha256 message hash is fine.
	h := sha256Sum(message)
	ok := buildSSHSIG("SSHSIG", 1, rsaS.PublicKey().Marshal(), ns, nil, []byte("sha256"), sigOver(rsaS, ssh.KeyAlgoRSASHA256, "sha256", h))
	if _, err := Verify(ok, testNamespace, message); err != nil {
		t.Errorf("rsa-sha2-256 over sha256: %v", err)
	}
}

func TestAssemble(t *testing.T) {
	s := newSigner(t, "ecdsa-p256")
	msg := []byte("remote")
	sig, err := s.Sign(rand.Reader, SignedData(testNamespace, msg))
	if err != nil {
		t.Fatal(err)
	}
	blob := Assemble(s.PublicKey(), testNamespace, sig)
	if _, err := Verify(blob, testNamespace, msg); err != nil {
		t.Fatal(err)
	}
}

func TestKeygenSignOurVerify(t *testing.T) {
	keygen := openssh(t, "ssh-keygen")
	dir := t.TempDir()
	message := []byte("signed by ssh-keygen\n")
	tests := []struct {
		typ   string
		extra []string
	}{
		{"ed25519", nil},
		{"ecdsa", nil},
		{"rsa", []string{"-b", "3072"}},
	}
	for _, tt := range tests {
		for _, hashAlg := range []string{"", "sha256", "sha512"} {
			keyFile := filepath.Join(dir, tt.typ)
			if _, err := os.Stat(keyFile); err != nil {
				sshKeygen(t, dir, tt.typ, tt.typ, "", tt.extra...)
			}
			args := []string{"-Y", "sign", "-f", keyFile, "-n", testNamespace}
			if hashAlg != "" {
				args = append(args, "-O", "hashalg="+hashAlg)
			}
			armored := run(t, message, keygen, args...)
			blob, err := Unarmor(armored)
			if err != nil {
				t.Fatalf("%s %s: Unarmor: %v", tt.typ, hashAlg, err)
			}
			pub, err := Verify(blob, testNamespace, message)
			if err != nil {
				t.Fatalf("%s %s: Verify: %v", tt.typ, hashAlg, err)
			}
			pubText, err := os.ReadFile(keyFile + ".pub")
			if err != nil {
				t.Fatal(err)
			}
			want, _, _, _, err := ssh.ParseAuthorizedKey(pubText)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(pub.Marshal(), want.Marshal()) {
				t.Fatalf("%s: Verify returned another key", tt.typ)
			}
			if !bytes.Equal(Armor(blob), armored) {
				t.Errorf("%s %s: Armor(Unarmor(x)) != x:\n%s\n%s", tt.typ, hashAlg, Armor(blob), armored)
			}
			if _, err := Verify(blob, "other", message); err == nil {
				t.Errorf("%s: wrong namespace accepted", tt.typ)
			}
		}
	}

	// Ed25519 signatures are deterministic, so ours must equal ssh-keygen's
	// byte for byte.
	signer := loadSigner(t, filepath.Join(dir, "ed25519"))
	ours, err := Sign(signer, testNamespace, message)
	if err != nil {
		t.Fatal(err)
	}
	theirs := run(t, message, keygen, "-Y", "sign", "-f", filepath.Join(dir, "ed25519"), "-n", testNamespace)
	if !bytes.Equal(Armor(ours), theirs) {
		t.Errorf("our Ed25519 signature differs from ssh-keygen's:\n%s\n%s", Armor(ours), theirs)
	}
}

func loadSigner(t *testing.T, path string) ssh.Signer {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.ParsePrivateKey(data)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// startAgent starts a real ssh-agent and returns its socket path.
func startAgent(t *testing.T) string {
	t.Helper()
	sock, _ := testutil.StartSSHAgent(t)
	return sock
}

func TestAgentSign(t *testing.T) {
	sock := startAgent(t)
	dir := t.TempDir()
	edKey := sshKeygen(t, dir, "ed", "ed25519", "")
	rsaKey := sshKeygen(t, dir, "rsa", "rsa", "", "-b", "3072")
	for _, k := range []string{edKey, rsaKey} {
		if _, err := runErr(nil, []string{"SSH_AUTH_SOCK=" + sock}, openssh(t, "ssh-add"), "-q", k); err != nil {
			t.Fatalf("ssh-add: %v", err)
		}
	}
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	signers, err := agent.NewClient(conn).Signers()
	if err != nil {
		t.Fatal(err)
	}
	if len(signers) != 2 {
		t.Fatalf("agent has %d keys, want 2", len(signers))
	}
	message := []byte("signed through ssh-agent\n")
	for _, s := range signers {
		blob, err := Sign(s, testNamespace, message)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Verify(blob, testNamespace, message); err != nil {
			t.Fatalf("%s: %v", s.PublicKey().Type(), err)
		}
		if err := keygenVerify(t, s.PublicKey(), testNamespace, blob, message); err != nil {
			t.Fatalf("%s: ssh-keygen -Y verify: %v", s.PublicKey().Type(), err)
		}
	}
}

func TestArmor(t *testing.T) {
	for _, n := range []int{0, 1, 52, 53, 54, 200} {
		blob := bytes.Repeat([]byte{0xfb}, n)
		text := Armor(blob)
		for _, line := range strings.Split(strings.TrimSuffix(string(text), "\n"), "\n") {
			if len(line) > 70 {
				t.Errorf("armored line of %d bytes", len(line))
			}
		}
		back, err := Unarmor(text)
		if n == 0 {
			if err == nil {
				t.Errorf("Unarmor accepted an empty body")
			}
			continue
		}
		if err != nil || !bytes.Equal(back, blob) {
			t.Errorf("Unarmor(Armor(%d bytes)) = %x, %v", n, back, err)
		}
		crlf := []byte("\n  " + strings.ReplaceAll(string(text), "\n", "\r\n") + "\n")
		if back, err := Unarmor(crlf); err != nil || !bytes.Equal(back, blob) {
			t.Errorf("Unarmor(CRLF) = %x, %v", back, err)
		}
	}
	bad := []string{
		"",
		"-----BEGIN SSH SIGNATURE-----\nAAAA\n",
		"AAAA\n-----END SSH SIGNATURE-----\n",
		"-----BEGIN SSH SIGNATURE-----AAAA-----END SSH SIGNATURE-----",
		"-----BEGIN SSH SIGNATURE-----\nAA AA\n-----END SSH SIGNATURE-----\n",
		"-----BEGIN SSH SIGNATURE-----\nAAA\n-----END SSH SIGNATURE-----\n",
		"-----BEGIN SSH SIGNATURE-----\nAA!A\n-----END SSH SIGNATURE-----\n",
		"-----BEGIN PGP SIGNATURE-----\nAAAA\n-----END PGP SIGNATURE-----\n",
		"-----BEGIN SSH SIGNATURE-----\n" + strings.Repeat("AAAA", MaxSignatureSize) + "\n-----END SSH SIGNATURE-----\n",
	}
	for _, b := range bad {
		if _, err := Unarmor([]byte(b)); err == nil {
			t.Errorf("Unarmor(%.60q) succeeded", b)
		}
	}
}

func FuzzVerify(f *testing.F) {
	// The key must be the same in every fuzzing worker process.
	s, err := ssh.NewSignerFromKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, ed25519.SeedSize)))
	if err != nil {
		f.Fatal(err)
	}
	message := []byte("fuzz")
	good, err := Sign(s, testNamespace, message)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	// Truncate at each field boundary: magic, version, then each string.
	cuts := []int{0, 3, 6, 10}
	rest := good[10:]
	off := 10
	for range 5 {
		n := int(binary.BigEndian.Uint32(rest))
		cuts = append(cuts, off+2, off+4, off+4+n/2)
		off += 4 + n
		rest = good[off:]
		cuts = append(cuts, off)
	}
	for _, c := range cuts {
		if c <= len(good) {
			f.Add(good[:c])
		}
	}
	f.Add(append(bytes.Clone(good), make([]byte, MaxSignatureSize)...))
	f.Add(append([]byte("SSHSIH"), good[6:]...))
	v2 := bytes.Clone(good)
	v2[9] = 2
	f.Add(v2)
	huge := bytes.Clone(good)
	binary.BigEndian.PutUint32(huge[10:], 0xffffffff)
	f.Add(huge)
	f.Fuzz(func(t *testing.T, blob []byte) {
		pub, err := Verify(blob, testNamespace, message)
		if err == nil && !bytes.Equal(pub.Marshal(), s.PublicKey().Marshal()) {
			t.Fatalf("Verify accepted a signature by another key")
		}
	})
}

// TestVerifySecurityKey checks an sk-ssh-ed25519@openssh.com signature, made
// here the way a FIDO authenticator makes it.
func TestVerifySecurityKey(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	const app = "ssh:"
	var pubBlob []byte
	pubBlob = appendString(pubBlob, []byte(ssh.KeyAlgoSKED25519))
	pubBlob = appendString(pubBlob, pub)
	pubBlob = appendString(pubBlob, []byte(app))
	skPub, err := ssh.ParsePublicKey(pubBlob)
	if err != nil {
		t.Fatal(err)
	}
	message := []byte("touch me")
	sign := func(flags byte) []byte {
		appHash := sha256Sum([]byte(app))
		dataHash := sha256Sum(SignedData(testNamespace, message))
		signed := append(append(appHash, flags, 0, 0, 0, 7), dataHash...)
		sig := &ssh.Signature{
			Format: ssh.KeyAlgoSKED25519,
			Blob:   ed25519.Sign(priv, signed),
			Rest:   []byte{flags, 0, 0, 0, 7},
		}
		return Assemble(skPub, testNamespace, sig)
	}
	got, err := Verify(sign(1), testNamespace, message)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Marshal(), pubBlob) {
		t.Fatal("Verify returned another key")
	}
	if err := keygenVerify(t, skPub, testNamespace, sign(1), message); err != nil {
		t.Fatalf("ssh-keygen -Y verify: %v", err)
	}
	// Without the user-presence flag the signature is refused.
	if _, err := Verify(sign(0), testNamespace, message); err == nil {
		t.Fatal("Verify accepted a signature without user presence")
	}
}
