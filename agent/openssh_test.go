// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"ubns.dev/netauth/internal/testutil"

	"golang.org/x/crypto/ssh"
	sshagent "golang.org/x/crypto/ssh/agent"

	"ubns.dev/netauth/internal/keys"
)

// needTools skips the test unless the named OpenSSH programs are installed.
func needTools(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			t.Skipf("%s not installed: %v", n, err)
		}
	}
}

// sshKeygen makes an unencrypted Ed25519 key at path with ssh-keygen and
// returns its public key.
func sshKeygen(t *testing.T, path string) ssh.PublicKey {
	t.Helper()
	testutil.SSHKeygen(t, "-q", "-t", "ed25519", "-N", "", "-C", "test@netauth", "-f", path)
	return testutil.ReadPublicKey(t, path+".pub")
}

// openSSH runs an OpenSSH program against the agent at sock, with extra
// environment variables, and returns its combined output.
func openSSH(sock string, stdin []byte, env []string, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(append(os.Environ(), "SSH_AUTH_SOCK="+sock, "DISPLAY="), env...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestOpenSSHTools drives the agent with ssh-add and ssh-keygen.
func TestOpenSSHTools(t *testing.T) {
	needTools(t, "ssh-add", "ssh-keygen")
	dir := t.TempDir()
	idPath, ridPath := filepath.Join(dir, "id"), filepath.Join(dir, "rid")
	pub, rpub := sshKeygen(t, idPath), sshKeygen(t, ridPath)
	fp, rfp := keys.Fingerprint(pub), keys.Fingerprint(rpub)
	allowedHost := newHostKey(t)
	a := New(Options{Restrictions: map[string][]string{rfp: {keys.Fingerprint(allowedHost)}}})
	sock := serve(t, a)
	c := dial(t, sock)
	run := func(env []string, args ...string) (string, error) {
		return openSSH(sock, nil, env, "ssh-add", args...)
	}

	// Add and list.
	if out, err := run(nil, idPath, ridPath); err != nil {
		t.Fatalf("ssh-add: %v\n%s", err, out)
	}
	out, err := run(nil, "-l")
	if err != nil || !strings.Contains(out, fp) || !strings.Contains(out, rfp) {
		t.Fatalf("ssh-add -l: %v\n%s\nwant %s and %s", err, out, fp, rfp)
	}

	// Raw SSHSIG signing through the plain agent protocol, as ssh-keygen -Y
	// sign does it: allowed for the unrestricted key in any namespace, and
	// for the restricted key outside netauth's.
	msg := filepath.Join(dir, "msg")
	if err := os.WriteFile(msg, []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sign := func(key, ns string) error {
		os.Remove(msg + ".sig")
		out, err := openSSH(sock, nil, nil, "ssh-keygen", "-Y", "sign", "-f", key+".pub", "-n", ns, msg)
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
	if err := sign(idPath, Namespace); err != nil {
		t.Errorf("ssh-keygen -Y sign -n %s with an unrestricted key: %v", Namespace, err)
	} else {
		armored, err := os.ReadFile(msg + ".sig")
		if err != nil {
			t.Fatal(err)
		}
		blob, err := keys.Unarmor(armored)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := keys.Verify(blob, Namespace, []byte("hello\n")); err != nil || keys.Fingerprint(got) != fp {
			t.Errorf("keys.Verify of ssh-keygen's signature: %v", err)
		}
	}
	if err := sign(ridPath, Namespace); err == nil {
		t.Errorf("ssh-keygen -Y sign -n %s with a host-restricted key succeeded", Namespace)
	}
	if err := sign(ridPath, "file"); err != nil {
		t.Errorf("ssh-keygen -Y sign -n file with a host-restricted key: %v", err)
	}

	// netauth-sign output verifies with ssh-keygen -Y verify.
	stmt := statementFor(t, allowedHost)
	for _, k := range []ssh.PublicKey{pub, rpub} {
		blob, err := SignStatement(c, k, stmt)
		if err != nil {
			t.Fatalf("SignStatement: %v", err)
		}
		sigPath, signers := filepath.Join(dir, "stmt.sig"), filepath.Join(dir, "allowed_signers")
		if err := os.WriteFile(sigPath, keys.Armor(blob), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(signers, []byte("alice "+string(ssh.MarshalAuthorizedKey(k))), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := openSSH(sock, stmt, nil, "ssh-keygen", "-Y", "verify", "-f", signers, "-I", "alice", "-n", Namespace, "-s", sigPath)
		if err != nil {
			t.Errorf("ssh-keygen -Y verify of a netauth-sign signature: %v\n%s", err, out)
		}
	}

	// Lock and unlock with a passphrase from an askpass program.
	askpass := filepath.Join(dir, "askpass")
	if err := os.WriteFile(askpass, []byte("#!/bin/sh\necho \"$NETAUTH_TEST_PASS\"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	pass := func(p string) []string {
		return []string{"SSH_ASKPASS=" + askpass, "SSH_ASKPASS_REQUIRE=force", "NETAUTH_TEST_PASS=" + p}
	}
	exp := time.Now().Add(time.Hour)
	if err := PutTicket(c, "t", []byte("secret"), exp); err != nil {
		t.Fatal(err)
	}
	if out, err := run(pass("hunter2"), "-x"); err != nil {
		t.Fatalf("ssh-add -x: %v\n%s", err, out)
	}
	if out, _ := run(nil, "-l"); strings.Contains(out, fp) {
		t.Errorf("ssh-add -l lists keys while locked:\n%s", out)
	}
	if _, _, err := GetTicket(c, "t"); err == nil || errors.Is(err, ErrNoTicket) || errors.Is(err, ErrUnsupported) {
		t.Errorf("GetTicket while locked: err = %v, want a failure", err)
	}
	if _, err := SignStatement(c, pub, stmt); err == nil {
		t.Error("SignStatement while locked succeeded")
	}
	if out, err := run(pass("wrong"), "-X"); err == nil {
		t.Errorf("ssh-add -X with the wrong passphrase succeeded:\n%s", out)
	}
	if out, err := run(pass("hunter2"), "-X"); err != nil {
		t.Fatalf("ssh-add -X: %v\n%s", err, out)
	}
	if out, err := run(nil, "-l"); err != nil || !strings.Contains(out, fp) {
		t.Errorf("ssh-add -l after unlock: %v\n%s", err, out)
	}
	if _, _, err := GetTicket(c, "t"); !errors.Is(err, ErrNoTicket) {
		t.Errorf("GetTicket after lock and unlock: err = %v, want ErrNoTicket", err)
	}

	// Delete one key, then all.
	if out, err := run(nil, "-d", idPath+".pub"); err != nil {
		t.Fatalf("ssh-add -d: %v\n%s", err, out)
	}
	if out, _ := run(nil, "-l"); strings.Contains(out, fp) || !strings.Contains(out, rfp) {
		t.Errorf("ssh-add -l after -d:\n%s\nwant only %s", out, rfp)
	}
	if err := PutTicket(c, "t", []byte("secret"), exp); err != nil {
		t.Fatal(err)
	}
	if out, err := run(nil, "-D"); err != nil {
		t.Fatalf("ssh-add -D: %v\n%s", err, out)
	}
	if out, _ := run(nil, "-l"); strings.Contains(out, rfp) {
		t.Errorf("ssh-add -l after -D:\n%s", out)
	}
	if _, _, err := GetTicket(c, "t"); !errors.Is(err, ErrNoTicket) {
		t.Errorf("GetTicket after ssh-add -D: err = %v, want ErrNoTicket", err)
	}
}

// TestStockSSHAgent checks that a stock OpenSSH ssh-agent is recognized as
// lacking the netauth extensions and that its plain signer makes netauth
// signatures.
func TestStockSSHAgent(t *testing.T) {
	needTools(t, "ssh-agent")
	sock, _ := testutil.StartSSHAgent(t)
	c, closer, err := Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closer.Close() })

	edKey, _ := newEd25519(t)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []sshagent.AddedKey{edKey, {PrivateKey: rsaKey}} {
		if err := c.Add(k); err != nil {
			t.Fatal(err)
		}
	}
	signers, err := c.Signers()
	if err != nil || len(signers) != 2 {
		t.Fatalf("Signers = %d, %v; want 2", len(signers), err)
	}
	stmt := statementFor(t, newHostKey(t))
	exp := time.Now().Add(time.Hour)
	if err := PutTicket(c, "id", []byte("t"), exp); !errors.Is(err, ErrUnsupported) {
		t.Errorf("PutTicket: err = %v, want ErrUnsupported", err)
	}
	if _, _, err := GetTicket(c, "id"); !errors.Is(err, ErrUnsupported) {
		t.Errorf("GetTicket: err = %v, want ErrUnsupported", err)
	}
	if err := DeleteTicket(c, "id"); !errors.Is(err, ErrUnsupported) {
		t.Errorf("DeleteTicket: err = %v, want ErrUnsupported", err)
	}
	for _, s := range signers {
		if _, err := SignStatement(c, s.PublicKey(), stmt); !errors.Is(err, ErrUnsupported) {
			t.Errorf("SignStatement: err = %v, want ErrUnsupported", err)
		}
		// The fallback: SSHSIG through the plain signer.
		blob, err := keys.Sign(s, Namespace, stmt)
		if err != nil {
			t.Fatalf("%s: keys.Sign with the agent's signer: %v", s.PublicKey().Type(), err)
		}
		if got, err := keys.Verify(blob, Namespace, stmt); err != nil || !bytes.Equal(got.Marshal(), s.PublicKey().Marshal()) {
			t.Errorf("%s: keys.Verify: %v", s.PublicKey().Type(), err)
		}
	}
}

// Environment of the peer-credential helper process.
const (
	helperEnv     = "NETAUTH_AGENT_TEST_HELPER"
	helperSockEnv = "NETAUTH_AGENT_TEST_SOCK"
)

// TestPeerCredHelper is not a test: TestPeerCredRefusesOtherUsers runs the
// test binary as another user with this test selected, to connect to an
// agent and report whether it answered.
func TestPeerCredHelper(t *testing.T) {
	if os.Getenv(helperEnv) != "1" {
		t.Skip("helper process for TestPeerCredRefusesOtherUsers")
	}
	c, closer, err := Dial(os.Getenv(helperSockEnv))
	if err != nil {
		fmt.Printf("dial failed: %v\n", err)
		os.Exit(0)
	}
	defer closer.Close()
	fmt.Printf("connected uid=%d\n", os.Getuid())
	if _, err := c.List(); err != nil {
		fmt.Printf("no answer: %v\n", err)
	} else {
		fmt.Println("answered")
	}
	os.Exit(0)
}

// TestPeerCredRefusesOtherUsers connects to the agent as another user
// (uid 65534) through a socket that file permissions would let it use, and
// checks that the SO_PEERCRED check refuses it while the agent's own user is
// served.
func TestPeerCredRefusesOtherUsers(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to run a process as another user")
	}
	const nobody = 65534
	// A directory everyone can reach, holding a copy of the test binary.
	base := testutil.OpenDir(t, "netauth-peercred-")
	bin := testutil.SelfCopy(t, base, "agent.test")

	logs := &testutil.Buffer{}
	a := New(Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	ln, path, err := Listen(base)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	// Open the directory and socket to everyone, for this test only, so
	// that only the peer credential check stands in the way.
	if err := os.Chmod(filepath.Dir(path), 0o711); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o777); err != nil {
		t.Fatal(err)
	}

	helper := func(cred *syscall.Credential) string {
		t.Helper()
		cmd := exec.Command(bin, "-test.run=^TestPeerCredHelper$")
		cmd.Dir = "/"
		cmd.Env = []string{helperEnv + "=1", helperSockEnv + "=" + path, "PATH=/usr/bin:/bin"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		out, err := cmd.CombinedOutput()
		if err != nil {
			if cred != nil && errors.Is(err, syscall.EPERM) {
				t.Skipf("cannot run a process as uid %d: %v", cred.Uid, err)
			}
			t.Fatalf("helper: %v\n%s", err, out)
		}
		return string(out)
	}

	if out := helper(nil); !strings.Contains(out, "answered") {
		t.Fatalf("helper as root: want an answer, got:\n%s", out)
	}
	out := helper(&syscall.Credential{Uid: nobody, Gid: nobody})
	t.Logf("helper as uid %d:\n%s", nobody, out)
	if !strings.Contains(out, fmt.Sprintf("connected uid=%d", nobody)) {
		t.Fatalf("helper as uid %d did not connect (file permissions?):\n%s", nobody, out)
	}
	if strings.Contains(out, "answered") || !strings.Contains(out, "no answer") {
		t.Errorf("helper as uid %d: want no answer, got:\n%s", nobody, out)
	}
	if want := fmt.Sprintf("uid=%d", nobody); !strings.Contains(logs.String(), want) || !strings.Contains(logs.String(), "refused") {
		t.Errorf("refusal not logged with %s; log:\n%s", want, logs)
	}
}
