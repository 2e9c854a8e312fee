// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth"
	"ubns.dev/netauth/internal/testutil"
)

// needOpenSSH skips a test without OpenSSH's tools (CI installs openssh-client).
func needOpenSSH(t testing.TB) {
	t.Helper()
	for _, tool := range []string{"ssh-keygen", "ssh-agent", "ssh-add"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (CI installs openssh-client)", tool)
		}
	}
}

// keygen runs ssh-keygen with args.
func keygen(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command("ssh-keygen", args...).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// userCA is a user certificate authority made with ssh-keygen, with a KRL (ssh-keygen -k) of
// the certificates it revoked, in a root-owned directory as netauthd -check wants them.
type userCA struct {
	dir, key, pub, krl string
}

func newUserCA(t testing.TB) *userCA {
	t.Helper()
	needOpenSSH(t)
	ca := &userCA{dir: testutil.OpenDir(t, "netauthd-ca-")}
	ca.key = filepath.Join(ca.dir, "user_ca")
	ca.pub, ca.krl = ca.key+".pub", filepath.Join(ca.dir, "revoked_keys")
	keygen(t, "-q", "-t", "ed25519", "-N", "", "-C", "user CA", "-f", ca.key)
	keygen(t, "-q", "-k", "-f", ca.krl)
	return ca
}

// revoke adds serial to the KRL, as an administrator does: ssh-keygen -k -u.
func (ca *userCA) revoke(t testing.TB, serial uint64) {
	t.Helper()
	spec := filepath.Join(t.TempDir(), "spec")
	if err := os.WriteFile(spec, []byte("serial: "+strconv.FormatUint(serial, 10)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	keygen(t, "-q", "-k", "-u", "-f", ca.krl, "-s", ca.pub, spec)
}

// certHolder is a key and its certificate in a stock ssh-agent.
type certHolder struct {
	sock string
	cert *ssh.Certificate
}

// issue makes a key, certifies it with ssh-keygen -s and opts (-I, -n, -z, -V, -O ...), and
// loads both into a new ssh-agent.
func (ca *userCA) issue(t testing.TB, opts ...string) *certHolder {
	t.Helper()
	dir := t.TempDir()
	id := filepath.Join(dir, "id")
	keygen(t, "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", id)
	keygen(t, append(append([]string{"-q", "-s", ca.key}, opts...), id+".pub")...)
	text, err := os.ReadFile(id + "-cert.pub")
	if err != nil {
		t.Fatal(err)
	}
	k, _, _, _, err := ssh.ParseAuthorizedKey(text)
	if err != nil {
		t.Fatal(err)
	}
	h := &certHolder{cert: k.(*ssh.Certificate), sock: startAgent(t)}
	cmd := exec.Command("ssh-add", id)
	cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK="+h.sock)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ssh-add: %v: %s", err, out)
	}
	return h
}

// startAgent runs a stock ssh-agent until the test ends and waits until it accepts
// connections (its socket appears a moment before it listens).
func startAgent(t testing.TB) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	cmd := exec.Command("ssh-agent", "-D", "-a", sock)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		c, err := net.Dial("unix", sock)
		if err == nil {
			c.Close()
			return sock
		}
		if time.Now().After(deadline) {
			t.Fatalf("ssh-agent does not accept connections: %v", err)
		}
	}
}

// config is a client configuration for user that signs with the certificate in h's agent.
func (h *certHolder) config(user, knownHosts string) *netauth.Config {
	return &netauth.Config{User: user, AgentSocket: h.sock, KeyFingerprint: ssh.FingerprintSHA256(h.cert),
		KnownHostsFile: knownHosts, KnownHostsFiles: []netauth.KnownHostsFile{}, TicketCache: netauth.NewMemoryTicketCache(8)}
}

// certGlobals are the global directives that make a testbed trust ca's certificates.
func certGlobals(ca *userCA) string {
	return "trusted-user-ca-keys " + ca.pub + "\nrevoked-keys " + ca.krl + "\n\n"
}

// TestUserCertificate: netauthd with trusted-user-ca-keys accepts a user whose key is known
// only through a certificate made by ssh-keygen -s and held by a stock ssh-agent; the next
// connection resumes; the audit record names the certificate, and netauth audit export's
// ssh-keygen -Y verify command accepts it. Certificates that are expired, not yet valid,
// without the user's principal, from an address source-address does not list, or revoked
// by serial in the KRL are refused.
func TestUserCertificate(t *testing.T) {
	ca := newUserCA(t)
	ca.revoke(t, 66)
	tb := newTestbed(t, certGlobals(ca)+whoamiService)
	alice := ca.issue(t, "-I", "alice@laptop", "-n", "netauth-alice,staff", "-z", "42", "-V", "-5m:+1h", "-O", "source-address=127.0.0.0/8")
	cfg := alice.config("netauth-alice", tb.known)
	for i, want := range []string{"false", "true"} {
		got, err := tb.whoami("whoami", "netauth-alice", cfg)
		if err != nil || got["user"] != "netauth-alice" || got["resumed"] != want {
			t.Fatalf("connection %d: %v %v", i, got, err)
		}
	}

	// The accepted full handshake's record names the certificate, and exports.
	var seq uint64
	for _, line := range readLines(t, tb.auditLog) {
		var r struct {
			Seq        uint64 `json:"seq"`
			Decision   string `json:"decision"`
			Mode       string `json:"mode"`
			CertKeyID  string `json:"cert_key_id"`
			CertSerial uint64 `json:"cert_serial"`
			CertCAFP   string `json:"cert_ca_fp"`
		}
		if json.Unmarshal([]byte(line), &r) != nil || r.Decision != "accepted" || r.Mode != "full" {
			continue
		}
		caKey, _, _, _, _ := ssh.ParseAuthorizedKey(mustRead(t, ca.pub))
		if r.CertKeyID != "alice@laptop" || r.CertSerial != 42 || r.CertCAFP != ssh.FingerprintSHA256(caKey) {
			t.Fatalf("audit record does not name the certificate: %s", line)
		}
		seq = r.Seq
	}
	if seq == 0 {
		t.Fatal("no accepted full handshake in the audit log")
	}
	// The record is exported once a checkpoint the host key signs covers it (within seconds).
	exportDir := t.TempDir()
	var out []byte
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		out, err = exec.Command(buildNetauth(t), "audit", "export", "-seq", strconv.FormatUint(seq, 10), "-dir", exportDir,
			"-host-key", filepath.Join(tb.dir, "host_key.pub"), tb.auditLog).CombinedOutput()
		if err == nil {
			break
		}
		if !strings.Contains(string(out), "not yet covered by a host signature") || time.Now().After(deadline) {
			t.Fatalf("netauth audit export: %v\n%s", err, out)
		}
	}
	if signers := string(mustRead(t, filepath.Join(exportDir, "allowed_signers"))); !strings.HasPrefix(signers, `netauth-alice cert-authority,namespaces="netauth-v1@ubns.dev" `) {
		t.Fatalf("allowed_signers: %q", signers)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	verify := exec.Command("/bin/sh", "-c", lines[len(lines)-1])
	verify.Dir = exportDir
	if res, err := verify.CombinedOutput(); err != nil || !strings.Contains(string(res), `Good "netauth-v1@ubns.dev" signature for netauth-alice`) {
		t.Fatalf("%s: %v\n%s", lines[len(lines)-1], err, res)
	}

	for _, tc := range []struct {
		name string
		opts []string
	}{
		{"expired", []string{"-n", "netauth-alice", "-V", "20200101:20200102"}},
		{"not yet valid", []string{"-n", "netauth-alice", "-V", "+1h:+2h"}},
		{"wrong principal", []string{"-n", "netauth-bob,alice"}},
		{"source-address mismatch", []string{"-n", "netauth-alice", "-O", "source-address=192.0.2.0/24,10.0.0.1"}},
		{"revoked serial", []string{"-n", "netauth-alice", "-z", "66"}},
		{"force-command", []string{"-n", "netauth-alice", "-O", "force-command=/bin/true"}},
	} {
		h := ca.issue(t, append([]string{"-I", tc.name}, tc.opts...)...)
		_, err := tb.whoami("whoami", "netauth-alice", h.config("netauth-alice", tb.known))
		wantRefused(t, tc.name, err, netauth.CodeNotAuthorized)
	}
}

// TestUserCertificateLive: the revocation check keeps certificate sessions (it checks the
// certificate, not an authorized key the user does not have), closes a session whose serial
// is added to the KRL (ssh-keygen -k -u, no reload) or whose certificate expires, and after a
// reload that no longer trusts the CA; a reload with a broken CA file is refused and keeps
// the running configuration.
func TestUserCertificateLive(t *testing.T) {
	ca := newUserCA(t)
	echo := strings.Replace(strings.Replace(whoamiService, "args whoami", "args echo", 1), "users netauth-alice netauth-bob", "users netauth-alice netauth-bob netauth-carol", 1)
	// A small clock skew, so that a certificate's expiry shows soon (the skew widens validity).
	tb := newTestbed(t, certGlobals(ca)+"max-clock-skew 3s\n"+echo)
	type session struct {
		c net.Conn
		r *bufio.Reader
	}
	dial := func(user string, h *certHolder) (*session, error) {
		c, err := netauth.Dial("tcp", tb.addr("whoami"), h.config(user, tb.known))
		if err != nil {
			return nil, err
		}
		t.Cleanup(func() { c.Close() })
		if err := c.Handshake(); err != nil {
			return nil, err
		}
		return &session{c, bufio.NewReader(c)}, nil
	}
	echoOK := func(what string, s *session) {
		t.Helper()
		_ = s.c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(s.c, "ping\n"); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if line, err := s.r.ReadString('\n'); err != nil || line != "ping\n" {
			t.Fatalf("%s: echo %q %v", what, line, err)
		}
	}
	closedWithin := func(what string, s *session, limit time.Duration) {
		t.Helper()
		_ = s.c.SetReadDeadline(time.Now().Add(limit))
		_, err := s.r.ReadByte()
		if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("%s: session still open after %v (%v)", what, limit, err)
		}
		if !errors.Is(err, netauth.ErrRevoked) {
			t.Fatalf("%s: the client reads %v, want access revoked", what, err)
		}
	}
	aliceCert := ca.issue(t, "-I", "alice", "-n", "netauth-alice", "-z", "5")
	bobCert := ca.issue(t, "-I", "bob", "-n", "netauth-bob", "-z", "6")
	carolCert := ca.issue(t, "-I", "carol", "-n", "netauth-carol", "-z", "7", "-V", "-1m:+5s")
	alice, err := dial("netauth-alice", aliceCert)
	if err != nil {
		t.Fatal(err)
	}
	bob, err := dial("netauth-bob", bobCert)
	if err != nil {
		t.Fatal(err)
	}
	carol, err := dial("netauth-carol", carolCert)
	if err != nil {
		t.Fatal(err)
	}
	// Several revocation checks (every 200ms) later, the sessions are still up.
	time.Sleep(time.Second)
	echoOK("alice after the revocation checks", alice)
	echoOK("bob after the revocation checks", bob)

	ca.revoke(t, 5)
	closedWithin("alice, serial revoked", alice, 5*time.Second)
	echoOK("bob after alice's revocation", bob)
	_, err = dial("netauth-alice", aliceCert)
	if err == nil {
		t.Fatal("alice's revoked certificate accepted")
	}
	wantRefused(t, "alice after revocation", err, netauth.CodeNotAuthorized)

	// Carol's certificate expires 5s after it was made (and 3s of skew).
	closedWithin("carol, certificate expired", carol, 15*time.Second)

	// A reload with a CA file that does not parse is refused; the CA in force stays.
	if err := os.WriteFile(ca.pub, []byte("not a key\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := tb.d.Reload(context.Background()); err == nil || !strings.Contains(err.Error(), "trusted-user-ca-keys") {
		t.Fatalf("reload with a broken CA file: %v", err)
	}
	echoOK("bob after a refused reload", bob)
	if _, err := dial("netauth-bob", bobCert); err != nil {
		t.Fatalf("bob after a refused reload: %v", err)
	}
	// A reload that trusts another CA closes bob's session.
	other := newUserCA(t)
	if err := os.WriteFile(ca.pub, mustRead(t, other.pub), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := tb.d.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	closedWithin("bob, CA no longer trusted", bob, 5*time.Second)
	_, err = dial("netauth-bob", bobCert)
	wantRefused(t, "bob after the reload", err, netauth.CodeNotAuthorized)
}

// readLines returns the lines of a file.
func readLines(t testing.TB, path string) []string {
	t.Helper()
	return strings.Split(strings.TrimSpace(string(mustRead(t, path))), "\n")
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestUserCertificatePrincipals: with authorized-principals-dir (sshd's
// AuthorizedPrincipalsFile DIR/%u) or authorized-principals-command, a certificate
// authenticates as a user when it carries a principal the user's list names, and no longer by
// carrying the user name; a user without a list gets no certificate access.
func TestUserCertificatePrincipals(t *testing.T) {
	ca := newUserCA(t)
	principals := filepath.Join(ca.dir, "principals")
	if err := os.Mkdir(principals, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(principals, "netauth-alice"), []byte("# alice's roles\nstaff\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	command := filepath.Join(ca.dir, "principals.sh")
	if err := os.WriteFile(command, []byte("#!/bin/sh\n[ \"$1\" = netauth-alice ] && echo staff\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	staff := ca.issue(t, "-I", "staff", "-n", "staff")
	named := ca.issue(t, "-I", "named", "-n", "netauth-alice,netauth-bob")
	for _, source := range []string{"authorized-principals-dir " + principals, "authorized-principals-command " + command + " %u"} {
		t.Run(strings.Fields(source)[0], func(t *testing.T) {
			tb := newTestbed(t, certGlobals(ca)+source+"\n"+whoamiService)
			if got, err := tb.whoami("whoami", "netauth-alice", staff.config("netauth-alice", tb.known)); err != nil || got["user"] != "netauth-alice" {
				t.Fatalf("alice with principal staff: %v %v", got, err)
			}
			_, err := tb.whoami("whoami", "netauth-alice", named.config("netauth-alice", tb.known))
			wantRefused(t, "alice with her name as principal, not in her list", err, netauth.CodeNotAuthorized)
			_, err = tb.whoami("whoami", "netauth-bob", named.config("netauth-bob", tb.known))
			wantRefused(t, "bob, who has no list", err, netauth.CodeNotAuthorized)
		})
	}
}
